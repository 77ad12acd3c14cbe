"""Block-sparse FULLY_CONNECTED filters: LiteRT's sparse kernels read them, no DENSIFY."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from tiny_models import digits

import tfprune
from tfprune.export.describe import kernel_weights
from tfprune.export.graph import Graph


@pytest.fixture(scope="module")
def data():
    (x, y), _ = digits(256)
    return x, y


def pruned_mlp(data, block, sparsity=0.9, hidden=64):
    x, y = data
    keras.utils.set_random_seed(5)
    model = keras.Sequential(
        [
            keras.Input((28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(hidden, activation="relu", name="fc1"),
            keras.layers.Dense(32, activation="relu", name="fc2"),
            keras.layers.Dense(10, name="out"),
        ]
    )
    schedule = tfprune.ConstantSparsity(sparsity, begin_step=0, frequency=1)
    pruned = tfprune.prune_low_magnitude(model, schedule, layers=["fc1", "fc2"], block_size=block)
    pruned.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    pruned.fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    return pruned


def fc_versions(path):
    with open(path, "rb") as f:
        graph = Graph.from_bytes(f.read())
    ops = []
    for name, op in graph.subgraphs[0].walk_ops():
        code = graph.model.operatorCodes[op.opcodeIndex]
        ops.append((name, code.version))
    return ops


@pytest.mark.parametrize("quantize, block, width", [(None, (4, 1), 4), ("int8", (16, 1), 16)])
def test_block_pruned_dense_kernels_are_read_by_the_sparse_kernels(
    data, tmp_path, quantize, block, width
):
    pruned = pruned_mlp(data, block)
    result = tfprune.export.to_tflite(
        pruned, tmp_path / "m.tflite", quantize=quantize, representative_data=data[0][:32]
    )
    assert result.verification.passed  # loaded with the default XNNPACK delegate, checked
    rows = {row.name: row for row in result.tensors}
    for name in ["fc1/kernel", "fc2/kernel"]:
        assert rows[name].layout.startswith(f"1x{width} blocks"), rows[name]
        assert rows[name].sparsity == pytest.approx(0.9, abs=0.01)
    assert "DENSIFY" not in [name for name, _ in fc_versions(result.path)][:2]
    versions = [v for name, v in fc_versions(result.path) if name == "FULLY_CONNECTED"]
    assert versions.count(8) == 2  # XNNPACK leaves version-8 FCs to the sparse kernels
    assert result.bytes < result.dense_float32_bytes / (4 if quantize else 3)


def test_unstructured_kernels_keep_their_elementwise_layout(data, tmp_path):
    pruned = pruned_mlp(data, (1, 1))
    result = tfprune.export.to_tflite(pruned, tmp_path / "m.tflite")
    layouts = [row.layout for row in result.tensors if row.name.endswith("kernel")]
    assert layouts and not any("blocks" in layout for layout in layouts)


def test_speed_keeps_int8_filters_dense_and_takes_float_blocks(data, tmp_path):
    pruned = pruned_mlp(data, (16, 1))
    x = data[0][:32]
    fast = tfprune.export.to_tflite(
        pruned, tmp_path / "i.tflite", quantize="int8", representative_data=x, prefer="speed"
    )
    assert not any("blocks" in row.layout for row in fast.tensors)
    floats = tfprune.export.to_tflite(pruned, tmp_path / "f.tflite", prefer="speed")
    assert sum("1x4 blocks" in row.layout for row in floats.tensors) == 2
    lite = tfprune.export.verify.run_tflite(floats.path, tfprune.strip_pruning(pruned), [x])[0]
    np.testing.assert_allclose(lite, pruned.predict(x, verbose=0), atol=1e-4, rtol=1e-4)


def test_int8_filters_of_any_input_width_take_blocks_with_a_padded_last_one(data, tmp_path):
    # fc2 reads 60 inputs: three blocks of 16 and one of 12, padded with zeros in the file.
    pruned = pruned_mlp(data, (16, 1), hidden=60)
    x = data[0][:64]
    result = tfprune.export.to_tflite(
        pruned, tmp_path / "m.tflite", quantize="int8", representative_data=x
    )
    assert result.verification.passed and result.verification.top1_agreement >= 0.95
    rows = {row.name: row for row in result.tensors}
    assert rows["fc2/kernel"].layout.startswith("1x16 blocks"), rows["fc2/kernel"]
    assert rows["fc2/kernel"].shape == (32, 60)
    # The kernels read what Keras holds: the expanded filters are the quantized kernels.
    stripped = tfprune.strip_pruning(pruned)
    filters = dict(zip(["fc1", "fc2", "out"], kernel_weights(result.path), strict=True))
    for name in ["fc1", "fc2"]:
        kernel = keras.ops.convert_to_numpy(stripped.get_layer(name).kernel).T
        values = filters[name][1]
        assert values.shape == kernel.shape and values.dtype == np.int8
        assert not np.any(values[kernel == 0])  # every pruned weight reads as zero
        scale = np.abs(kernel).max(axis=1, keepdims=True) / 127
        scale[scale == 0] = 1  # outputs whose inputs were all pruned
        np.testing.assert_allclose(values, np.round(kernel / scale), atol=1)
    report = tfprune.check_sparsity_m_by_n(result.path, 2, 4)
    # at least the pruned share (int8 rounding adds a few zeros)
    assert [r.sparsity for r in report][:2] == pytest.approx([0.905, 0.905], abs=0.01)

    floats = tfprune.export.to_tflite(pruned_mlp(data, (4, 1), hidden=62), tmp_path / "f.tflite")
    layouts = {row.name: row.layout for row in floats.tensors}
    assert layouts["fc1/kernel"].startswith("1x4 blocks")
    # A float block padded with zeros would multiply whatever lies past the row: not written.
    assert "blocks" not in layouts["fc2/kernel"]
