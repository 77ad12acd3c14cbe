"""The export's shared graph view, its op table, its pass order, and the byte split of a file."""

from __future__ import annotations

import inspect
import re
import warnings

import keras
import numpy as np
import pytest
from export_helpers import zero_smallest

import tfprune
from tfprune.export import bytesplit, ops, passes, to_tflite, verify
from tfprune.export.graph import schema

L = keras.layers


def test_field_slots_are_those_of_the_generated_schema():
    """The byte split reads fields by slot; each slot is the one the schema's reader uses."""
    s = schema()
    for table, fields in bytesplit.FIELDS.items():
        cls = getattr(s, table)
        for field, slot in fields.items():
            accessor = getattr(cls, "".join(part.title() for part in field.split("_")))
            offset = int(re.search(r"self\._tab\.Offset\((\d+)\)", inspect.getsource(accessor))[1])
            assert (offset - 4) // 2 == slot, (table, field)


def test_pass_order_is_checked():
    passes.check_order()
    by_name = {p.name: p for p in passes.PASSES}
    swapped = (by_name["encode"], *(p for p in passes.PASSES if p.name != "encode"))
    with pytest.raises(RuntimeError, match=r"'encode' must run after \['name', 'block_filters'\]"):
        passes.check_order(swapped)


def test_every_operator_the_registry_prunes_has_a_table_entry():
    for name in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "CONV_3D"):
        weight = ops.op(name).parameter(1)
        assert weight is not None and weight.role == "weight" and weight.sparse
    assert ops.op("GATHER").parameter(0).role == "weight"
    assert ops.op("NOT_AN_OPERATOR") == ops.Op("NOT_AN_OPERATOR")


def _layer_model(kind: str) -> tuple[keras.Model, np.ndarray]:
    keras.utils.set_random_seed(2)
    if kind == "Conv2DTranspose":
        inputs = keras.Input((6, 6, 8))
        x = L.Conv2DTranspose(32, 3, strides=2, padding="same")(inputs)
    elif kind == "Conv1DTranspose":
        inputs = keras.Input((8, 16))
        x = L.Conv1DTranspose(32, 5, strides=2, padding="same")(inputs)
    elif kind == "Conv3D":
        inputs = keras.Input((5, 5, 5, 8))
        x = L.Conv3D(32, 3)(inputs)
    elif kind == "Conv3DTranspose":
        inputs = keras.Input((3, 3, 3, 8))
        x = L.Conv3DTranspose(32, 3)(inputs)
    else:
        inputs = keras.Input((5, 64))
        x = L.EinsumDense("abc,cde->abde", output_shape=(5, 4, 32), bias_axes="de")(inputs)
    model = keras.Model(inputs, L.Dense(4)(L.Flatten()(x)))
    rng = np.random.default_rng(0)
    data = rng.uniform(0, 1, (16, *inputs.shape[1:])).astype("float32")
    return model, data


@pytest.mark.parametrize(
    "kind", ["Conv2DTranspose", "Conv1DTranspose", "Conv3D", "Conv3DTranspose", "EinsumDense"]
)
@pytest.mark.parametrize("quantize", [None, "int8"])
def test_every_prunable_kernel_is_stored_sparsely(kind, quantize, tmp_path):
    model, x = _layer_model(kind)
    pruned = tfprune.prune_low_magnitude(model, tfprune.ConstantSparsity(0.9, 0))
    for wrapper in tfprune.core.find.pruning_wrappers(pruned):
        wrapper.update_masks(0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no weight is left dense without a word
        result = to_tflite(pruned, tmp_path / "k.tflite", quantize=quantize, representative_data=x)
    assert result.verification.passed
    verify.smoke_test(result.path)
    first = tfprune.core.find.pruning_wrappers(pruned)[0]
    size = int(np.prod(first.pruned_weights[0][0].shape))
    rows = [r for r in result.tensors if int(np.prod(r.shape)) == size and r.sparsity > 0.85]
    assert rows and all(r.layout.startswith("CSR") for r in rows)


@keras.saving.register_keras_serializable(package="tests")
class Gate(keras.layers.Layer, tfprune.PrunableLayer):
    """A prunable 2-D weight that the converter multiplies elementwise (MUL), not a kernel."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=tuple(input_shape[1:]), name="gate")

    def call(self, x):
        return x * self.w

    def get_prunable_weights(self):
        return [self.w]


def test_a_pruned_weight_that_must_stay_dense_is_reported(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16))
    model = keras.Model(inputs, L.Dense(3)(L.Flatten()(Gate()(inputs))))
    zero_smallest(model)
    gate = model.layers[1]
    weights = gate.get_weights()[0]
    weights[np.abs(weights) < np.quantile(np.abs(weights), 0.9)] = 0
    gate.set_weights([weights])
    with pytest.warns(UserWarning, match=r"stored dense: gate/gate \(read as MUL input 1"):
        result = to_tflite(model, tmp_path / "g.tflite")
    (row,) = [r for r in result.tensors if r.shape == (16, 16)]
    assert row.name == "gate/gate"
    assert row.layout == "dense (read as MUL input 1, which takes dense constants only)"
