"""What the compact file keeps and drops: graph folding, metadata, names, and the size goals."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from export_helpers import fit_briefly, zero_smallest
from tiny_models import digits

import tfprune
import tfprune.demo
from tfprune.export import flatbuffer, names, tidy, to_tflite, verify
from tfprune.export.graph import Graph

MODES = [None, "float16", "dynamic", "int8"]


@pytest.fixture(scope="module")
def data():
    return digits(n_train=512)


@pytest.fixture(scope="module")
def model(data):
    """784 -> 64 -> 10 behind a Flatten, with named layers."""
    (x, y), _ = data
    keras.utils.set_random_seed(17)
    inputs = keras.Input((28, 28), name="image")
    h = keras.layers.Flatten()(inputs)
    h = keras.layers.Dense(64, activation="relu", name="fc1")(h)
    model = keras.Model(inputs, keras.layers.Dense(10, name="logits")(h))
    return zero_smallest(fit_briefly(model, x, y))


def read(path):
    with open(path, "rb") as f:
        return flatbuffer.read_model(f.read())


def operator_names(parsed) -> list[str]:
    return [name for name, _ in Graph(parsed).subgraphs[0].walk_ops()]


@pytest.mark.parametrize("quantize", MODES)
def test_flatten_reaches_fully_connected_without_shape_arithmetic(model, data, tmp_path, quantize):
    _, (xt, _) = data
    result = to_tflite(model, tmp_path / "m.tflite", quantize=quantize, representative_data=xt)
    ops = operator_names(read(result.path))
    assert not {"SHAPE", "STRIDED_SLICE", "PACK"} & set(ops)
    assert ops.count("RESHAPE") == sum(row.layout.endswith("]") for row in result.tensors)
    assert result.verification.passed


@pytest.mark.parametrize("rows", [1, 7])
def test_folded_file_keeps_a_dynamic_batch(model, data, tmp_path, rows):
    _, (xt, _) = data
    result = to_tflite(model, tmp_path / "m.tflite")
    lite = verify.run_tflite(result.path, model, [xt[:rows]])[0]
    assert lite.shape == (rows, 10)
    np.testing.assert_allclose(lite, model.predict(xt[:rows], verbose=0), atol=1e-4, rtol=1e-4)


def test_metadata_no_runtime_reads_and_the_description_go(model, tmp_path):
    parsed = read(to_tflite(model, tmp_path / "m.tflite").path)
    assert not parsed.metadata
    assert parsed.description is None
    assert [s.signatureKey for s in parsed.signatureDefs] == [b"serving_default"]


def test_float16_file_keeps_its_reduced_precision_record(model, tmp_path):
    parsed = read(to_tflite(model, tmp_path / "m.tflite", quantize="float16").path)
    assert [entry.name for entry in parsed.metadata] == [b"reduced_precision_support"]


def test_dense_export_is_the_converter_file_untouched(model, tmp_path):
    parsed = read(to_tflite(model, tmp_path / "m.tflite", sparse=False).path)
    assert b"CONVERSION_METADATA" in [entry.name for entry in parsed.metadata]


def test_no_buffer_or_operator_code_is_left_unused(model, tmp_path):
    parsed = read(to_tflite(model, tmp_path / "m.tflite").path)
    tensors = parsed.subgraphs[0].tensors
    used = {t.buffer for t in tensors} | {e.buffer for e in parsed.metadata or []}
    assert used | {0} == set(range(len(parsed.buffers)))
    codes = {op.opcodeIndex for op in parsed.subgraphs[0].operators}
    assert codes == set(range(len(parsed.operatorCodes)))


@pytest.mark.parametrize("quantize", MODES)
def test_weights_are_named_after_their_keras_variables(model, data, tmp_path, quantize):
    _, (xt, _) = data
    result = to_tflite(model, tmp_path / "m.tflite", quantize=quantize, representative_data=xt)
    named = {row.name: row.shape for row in result.tensors}
    assert named["fc1/kernel"] == (64, 784)
    assert named["logits/kernel"] == (10, 64)
    assert named["fc1/bias"] == (64,)
    assert named["logits/bias"] == (10,)


def test_inputs_and_outputs_carry_their_signature_names(model, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=to_tflite(model, tmp_path / "m.tflite").path)
    assert [d["name"] for d in interpreter.get_input_details()] == ["image"]
    assert [d["name"] for d in interpreter.get_output_details()] == ["output_0"]


def test_weights_that_match_two_variables_keep_their_converter_names(tmp_path):
    keras.utils.set_random_seed(4)
    inputs = keras.Input((32,), name="x")
    a = keras.layers.Dense(16, name="twin_a")(inputs)
    b = keras.layers.Dense(16, name="twin_b")(inputs)
    model = keras.Model(inputs, keras.layers.Concatenate()([a, b]))
    model.get_layer("twin_b").set_weights(model.get_layer("twin_a").get_weights())
    result = to_tflite(zero_smallest(model), tmp_path / "t.tflite")
    assert not [row.name for row in result.tensors if row.name.startswith("twin")]
    assert result.verification.passed


def test_tidy_steps_leave_the_outputs_bit_identical(model, data):
    from ai_edge_litert.interpreter import Interpreter

    from tfprune.export import convert

    _, (xt, _) = data
    original = convert.to_flatbuffer(model)
    graph = Graph.from_bytes(original)
    names.name_tensors(graph, model)
    assert tidy.fold_flatten(graph) == 1
    for step in (tidy.drop_unread_metadata, tidy.share_buffers, tidy.drop_unused):
        step(graph)
    names.drop_names(graph)
    tidy.trim_tables(graph)
    tidied = graph.to_bytes()
    assert len(tidied) < len(original)
    outputs = []
    for content in (original, tidied):
        runner = Interpreter(model_content=content).get_signature_runner()
        outputs.append(runner(image=xt)["output_0"])
    np.testing.assert_array_equal(outputs[0], outputs[1])


def _pruned_demo_model():
    """The demo's LeNet-300-100, a dense epoch then pruned to 90% over ~200 steps."""
    keras.utils.set_random_seed(0)
    (x, y), _ = tfprune.datasets.load_mnist_sample()
    x = x.astype("float32")
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model = tfprune.demo.lenet_300_100()
    model.compile(keras.optimizers.Adam(1e-3), loss)
    model.fit(x, y, batch_size=64, epochs=1, verbose=0)
    schedule = tfprune.PolynomialDecay(0.0, 0.9, begin_step=0, end_step=150, frequency=25)
    pruned = tfprune.prune_low_magnitude(model, schedule)
    pruned.compile(keras.optimizers.Adam(1e-3), loss)
    pruned.fit(x, y, batch_size=64, epochs=3, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    return pruned, x


@pytest.mark.slow
def test_demo_lenet_at_90_percent_meets_the_size_goals(tmp_path):
    pruned, x = _pruned_demo_model()
    f32 = to_tflite(pruned, tmp_path / "f32.tflite", representative_data=x[:256])
    i8 = to_tflite(pruned, tmp_path / "i8.tflite", quantize="int8", representative_data=x[:256])
    assert f32.bytes <= 140_000
    assert i8.bytes <= 70_000
    for result in (f32, i8):
        assert result.verification.passed
        verify.smoke_test(result.path)  # a fresh process, default (XNNPACK) delegate
        kernels = {row.name: row for row in result.tensors if row.name.endswith("/kernel")}
        assert sorted(kernels) == ["fc1/kernel", "fc2/kernel", "logits/kernel"]
        assert all(row.sparsity == pytest.approx(0.9, abs=0.01) for row in kernels.values())
