"""`tfprune.export.to_tflite`: every mode loads in LiteRT, matches Keras, and fails cleanly."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from export_helpers import (
    convnet,
    fit_briefly,
    mlp,
    operator_names,
    stripped_mlp,
    two_inputs,
    zero_smallest,
)
from tiny_models import digits

import tfprune
from tfprune.export import VerificationError, bytesplit, modes, to_tflite, verify
from tfprune.export.graph import Graph, schema

MODES = [None, "float16", "dynamic", "int8"]


@pytest.fixture(scope="module")
def data():
    return digits()


@pytest.fixture(scope="module")
def model(data):
    return stripped_mlp(data, sequential=True, seed=7)


@pytest.fixture(scope="module")
def exports(model, data, tmp_path_factory):
    """Every quantize mode, sparse and dense, of the same stripped model."""
    _, (xt, _) = data
    out = tmp_path_factory.mktemp("modes")
    results = {}
    for quantize in MODES:
        for sparse in (True, False):
            path = out / f"{quantize}_{sparse}.tflite"
            results[quantize, sparse] = to_tflite(
                model, path, quantize=quantize, representative_data=xt, sparse=sparse
            )
    return results


@pytest.mark.parametrize("sparse", [True, False])
@pytest.mark.parametrize("quantize", MODES)
def test_every_mode_loads_runs_and_matches_keras(exports, model, data, quantize, sparse):
    result = exports[quantize, sparse]
    _, (xt, _) = data
    assert os.path.getsize(result.path) == result.bytes
    assert result.verification.passed
    assert result.verification.samples == len(xt)
    lite = verify.run_tflite(result.path, model, [xt])[0]
    keras_out = model.predict(xt, verbose=0)
    assert np.mean(lite.argmax(-1) == keras_out.argmax(-1)) >= 0.9
    if quantize is None:
        np.testing.assert_allclose(lite, keras_out, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("quantize", MODES)
def test_sparse_file_is_far_smaller_than_dense(exports, quantize):
    sparse, dense = exports[quantize, True], exports[quantize, False]
    assert sparse.bytes < 0.4 * dense.bytes


@pytest.mark.parametrize("quantize", MODES)
def test_dense_float32_bytes_is_the_plain_float32_file(exports, quantize):
    assert exports[quantize, True].dense_float32_bytes == exports[None, False].bytes


def test_result_lists_sparse_weights_and_prints_a_table(exports):
    result = exports[None, True]
    weights = [row for row in result.tensors if row.layout.startswith("CSR")]
    assert sorted(row.shape for row in weights) == [(10, 64), (64, 784)]
    for row in weights:
        assert row.sparsity == pytest.approx(0.9, abs=0.002)
        assert row.bytes < 0.5 * 4 * np.prod(row.shape)
    text = str(result)
    assert "CSR idx u8" in text
    assert "verification: passed" in text
    assert f"{result.bytes:,} bytes" in text
    assert f"bytes: {result.byte_split}" in text


def test_functional_model_exports(data, tmp_path):
    (x, y), (xt, _) = data
    model = zero_smallest(fit_briefly(mlp(sequential=False), x, y))
    result = to_tflite(model, tmp_path / "f.tflite", representative_data=xt)
    assert result.verification.passed
    assert any(row.layout.startswith("CSR") for row in result.tensors)


@pytest.mark.parametrize("quantize", MODES)
def test_conv_model_exports_in_every_mode(data, tmp_path, quantize):
    (x, y), (xt, _) = data
    keras.utils.set_random_seed(3)
    model = zero_smallest(fit_briefly(convnet(), x[:512, ..., None], y[:512]))
    result = to_tflite(
        model, tmp_path / "c.tflite", quantize=quantize, representative_data=xt[..., None]
    )
    assert result.verification.passed
    conv = [row for row in result.tensors if len(row.shape) == 4]
    assert conv and all(row.sparsity == pytest.approx(0.9, abs=0.01) for row in conv)


@pytest.mark.parametrize("quantize", [None, "int8"])
def test_multi_input_model_exports(data, tmp_path, quantize):
    (x, y), (xt, _) = data
    side = np.random.default_rng(0).random((len(x), 4), dtype=np.float32)
    model = two_inputs()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit([x, side], y, epochs=1, verbose=0)
    zero_smallest(model)
    rows = [xt, side[: len(xt)]]
    result = to_tflite(model, tmp_path / "m.tflite", quantize=quantize, representative_data=rows)
    assert result.verification.passed
    lite = verify.run_tflite(result.path, model, rows)[0]
    keras_out = model.predict(rows, verbose=0)
    assert np.mean(lite.argmax(-1) == keras_out.argmax(-1)) >= 0.9


def test_integer_inputs_are_verified_with_valid_indices(tmp_path):
    keras.utils.set_random_seed(9)
    tokens = keras.Input((6,), dtype="int32", name="tokens")
    x = keras.layers.Flatten()(keras.layers.Embedding(50, 8)(tokens))
    x = keras.layers.Dense(64, activation="relu")(x)
    model = zero_smallest(keras.Model(tokens, keras.layers.Dense(3)(x)))
    result = to_tflite(model, tmp_path / "tokens.tflite")
    assert result.verification.passed
    rows = np.random.default_rng(1).integers(0, 50, (16, 6)).astype("int32")
    lite = verify.run_tflite(result.path, model, [rows])[0]
    np.testing.assert_allclose(lite, model.predict(rows, verbose=0), atol=1e-4, rtol=1e-4)


def test_pruned_model_is_stripped_before_export(data, tmp_path, capsys):
    (x, y), (xt, _) = data
    schedule = tfprune.ConstantSparsity(0.9, begin_step=0, frequency=1)
    pruned = tfprune.prune_low_magnitude(mlp(sequential=False), schedule)
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.fit(x, y, epochs=1, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    result = to_tflite(pruned, tmp_path / "p.tflite", representative_data=xt, verbose=True)
    assert result.verification.passed
    stages = [line.rsplit(" (", 1)[0] for line in capsys.readouterr().err.splitlines()]
    assert stages == [
        f"export p.tflite: converted (float32): {result.dense_float32_bytes:,} bytes",
        f"export p.tflite: sparse layouts and tidying: {result.bytes:,} bytes",
        "export p.tflite: verified in LiteRT against Keras",
    ]
    weights = [row for row in result.tensors if row.layout.startswith("CSR")]
    assert len(weights) == 2
    assert all(row.sparsity == pytest.approx(0.9, abs=0.002) for row in weights)
    stripped = tfprune.strip_pruning(pruned)
    lite = verify.run_tflite(result.path, stripped, [xt])[0]
    np.testing.assert_allclose(lite, stripped.predict(xt, verbose=0), atol=1e-4, rtol=1e-4)


def test_failed_verification_raises_and_leaves_no_file(model, tmp_path, monkeypatch):
    monkeypatch.setitem(modes.MODES, None, dataclasses.replace(modes.MODES[None], tolerance=-1.0))
    path = tmp_path / "never.tflite"
    with pytest.raises(VerificationError, match="beyond the bound"):
        to_tflite(model, path)
    assert os.listdir(tmp_path) == []


def test_verify_false_skips_the_check(model, tmp_path, monkeypatch):
    monkeypatch.setitem(modes.MODES, None, dataclasses.replace(modes.MODES[None], tolerance=-1.0))
    result = to_tflite(model, tmp_path / "unchecked.tflite", verify=False)
    assert result.verification is None
    assert "verification: skipped" in str(result)
    assert os.path.exists(result.path)


@pytest.mark.parametrize("quantize", ["foo", "INT8", ""])
def test_unknown_quantize_is_a_value_error(model, tmp_path, quantize):
    with pytest.raises(ValueError, match=f"Received: quantize={quantize!r}"):
        to_tflite(model, tmp_path / "x.tflite", quantize=quantize)


def test_non_string_quantize_is_a_type_error(model, tmp_path):
    with pytest.raises(TypeError, match="Received: quantize=8"):
        to_tflite(model, tmp_path / "x.tflite", quantize=8)


def test_int8_without_representative_data_is_a_value_error(model, tmp_path):
    with pytest.raises(ValueError, match="Received: representative_data=None"):
        to_tflite(model, tmp_path / "x.tflite", quantize="int8")
    assert os.listdir(tmp_path) == []


def test_representative_data_of_the_wrong_shape_is_a_value_error(model, tmp_path):
    with pytest.raises(ValueError, match=r"representative_data.*\(28, 28\)"):
        to_tflite(model, tmp_path / "x.tflite", representative_data=np.zeros((4, 27, 28)))


@pytest.mark.parametrize("argument", ["sparse", "verify", "verbose"])
def test_non_bool_flags_are_type_errors(model, tmp_path, argument):
    with pytest.raises(TypeError, match=f"Received: {argument}='yes'"):
        to_tflite(model, tmp_path / "x.tflite", **{argument: "yes"})


def test_missing_directory_is_a_clear_error(model, tmp_path):
    path = tmp_path / "missing" / "x.tflite"
    with pytest.raises(ValueError, match="does not exist"):
        to_tflite(model, path)


def test_path_under_a_file_is_a_clear_error(model, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="Received: path="):
        to_tflite(model, blocker / "x.tflite")


def test_non_model_is_a_type_error(tmp_path):
    with pytest.raises(TypeError, match="keras.Model"):
        to_tflite("model.keras", tmp_path / "x.tflite")


def test_importing_export_loads_neither_conversion_nor_interpreter():
    code = (
        "import sys, tfprune.export; "
        "print(any(m in sys.modules for m in "
        "('tfprune.export.convert', 'ai_edge_litert.interpreter')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_lenet_at_90_percent_meets_the_size_goals(tmp_path):
    from bench.export import train_pruned

    stripped, (x, _), _ = train_pruned(epochs=1, sparsity=0.9)
    f32 = to_tflite(stripped, tmp_path / "f32.tflite", representative_data=x[:256])
    i8 = to_tflite(stripped, tmp_path / "i8.tflite", quantize="int8", representative_data=x[:256])
    assert f32.bytes <= 140_000
    assert i8.bytes <= 70_000
    assert f32.verification.passed and i8.verification.passed


def test_top1_agreement_counts_only_decisive_rows():
    # Row 0: a clear winner that the file keeps. Row 1: a near-tie (margin 0.001 of the scale)
    # that the file swaps, as 8-bit rounding may. Row 2: a clear winner the file loses.
    reference = np.array([[5.0, 0.0, 1.0], [2.0, 2.001, 0.0], [0.0, 3.0, 1.0]], np.float32)
    actual = np.array([[5.0, 0.0, 1.0], [2.001, 2.0, 0.0], [0.0, 3.0, 3.5]], np.float32)
    result = verify.compare([reference], [actual], modes.MODES["int8"])
    assert result.top1_agreement == pytest.approx(0.5)  # rows 0 and 2 count, row 1 does not
    # A sequence output is judged per time step.
    seq = verify.compare([reference[None]], [reference[None]], modes.MODES["int8"])
    assert seq.top1_agreement == 1.0
    # Without any decisive row there is nothing to judge.
    flat = np.ones((4, 3), np.float32)
    assert verify.compare([flat], [flat], modes.MODES["int8"]).top1_agreement is None


@pytest.mark.parametrize("quantize", [None, "float16", "int8"])
def test_prefer_speed_writes_no_view_and_keeps_kernels_static(model, data, tmp_path, quantize):
    """A "speed" file has no RESHAPE views: float weights are native CSR behind DENSIFY (which
    XNNPACK expands once), int8 kernel weights stay dense; "size" is never larger."""
    _, (xt, _) = data
    size = to_tflite(model, tmp_path / "size.tflite", quantize=quantize, representative_data=xt)
    speed = to_tflite(
        model, tmp_path / "speed.tflite", quantize=quantize, representative_data=xt, prefer="speed"
    )
    assert speed.verification.passed and speed.prefer == "speed"
    assert size.bytes <= speed.bytes < speed.dense_float32_bytes
    assert "RESHAPE" in operator_names(size.path) and "RESHAPE" not in operator_names(speed.path)
    layouts = {row.shape: row.layout for row in speed.tensors}
    first_kernel = layouts[(64, 784)]  # the 784 -> 64 layer's kernel, as FULLY_CONNECTED stores it
    if quantize == "int8":
        assert first_kernel == "dense (int8 kernel weights stay dense for speed)"
        assert all(layout.startswith("dense") for layout in layouts.values())
        assert "DENSIFY" not in operator_names(speed.path)
    else:
        assert first_kernel.startswith("CSR idx u16") and " as [" not in first_kernel


@pytest.mark.parametrize(("prefer", "error"), [("fast", ValueError), (1, TypeError)])
def test_unknown_prefer_is_rejected(model, tmp_path, prefer, error):
    with pytest.raises(error, match=r"`prefer`.*Received: prefer="):
        to_tflite(model, tmp_path / "m.tflite", prefer=prefer)
    assert list(tmp_path.iterdir()) == []


def read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


@pytest.mark.parametrize("quantize", [None, "int8"])
def test_byte_split_adds_up_and_matches_what_each_part_costs(exports, quantize):
    result = exports[quantize, True]
    data = read(result.path)
    split = result.byte_split
    assert split == bytesplit.split(data)
    parts = (split.weights, split.sparse_indices, split.quantization, split.names, split.graph)
    assert sum(parts) == split.total == len(data)
    graph = Graph.from_bytes(data)
    assert split.weights == sum(len(b.data) for b in graph.model.buffers if b.data is not None)
    # What the file loses without its quantization tables, written by the same writer: the
    # tables and vectors the split counts, plus the vtables and padding it leaves to "graph".
    for tensor in (t for s in graph.model.subgraphs for t in s.tensors):
        tensor.quantization = None
    loss = len(data) - len(graph.to_bytes())
    assert split.quantization <= loss <= 1.1 * split.quantization + 32
    assert (split.quantization > 0) == (quantize == "int8")
    assert split.sparse_indices > 0 and split.graph > 0


def test_byte_split_of_a_converter_file_counts_every_vector_it_repeats(exports):
    dense = exports["dynamic", False]
    split = dense.byte_split
    assert split.total == dense.bytes and split.sparse_indices == 0
    assert split.names > 100  # the converter names every tensor after its TensorFlow ops


def test_default_file_drops_internal_names_and_keeps_them_on_request(exports, model, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    plain = exports[None, True]
    named = to_tflite(model, tmp_path / "named.tflite", keep_names=True)
    assert plain.bytes < named.bytes
    assert plain.byte_split.names < named.byte_split.names
    for result in (plain, named):  # the returned rows carry the Keras names either way
        assert len([row for row in result.tensors if row.name.endswith("/kernel")]) == 2
    kept = {t.name for s in Graph.from_bytes(read(named.path)).model.subgraphs for t in s.tensors}
    dropped = {
        t.name for s in Graph.from_bytes(read(plain.path)).model.subgraphs for t in s.tensors
    }
    assert any(name and name.endswith(b"/kernel") for name in kept)
    image = model.inputs[0].name
    assert dropped == {None, image.encode(), b"output_0"}
    interpreter = Interpreter(model_path=plain.path)
    assert [d["name"] for d in interpreter.get_input_details()] == [image]


def test_buffers_start_on_16_byte_boundaries(exports):
    data = read(exports[None, True].path)
    root = schema().Model.GetRootAs(data, 0)
    base = np.frombuffer(data, np.uint8).__array_interface__["data"][0]
    starts = []
    for i in range(root.BuffersLength()):
        values = root.Buffers(i).DataAsNumpy()
        if isinstance(values, np.ndarray) and values.size:
            starts.append(values.__array_interface__["data"][0] - base)
    assert starts and all(start % 16 == 0 for start in starts)
