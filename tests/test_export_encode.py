"""Sparse layouts: the smallest readable one is chosen, it decodes exactly, and it runs."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
from export_helpers import fit_briefly, zero_smallest
from tiny_models import digits

from tfprune.export import VerificationError, encode, flatbuffer, to_tflite, verify


def sparse_matrix(shape, sparsity, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    values = rng.standard_normal(shape).astype(dtype) + 0.5
    flat = values.reshape(-1)
    flat[rng.permutation(flat.size)[: int(round(sparsity * flat.size))]] = 0
    return flat.reshape(shape)


def decode(params, stored, view):
    """Expands our layout family (DENSE dims, then one SPARSE_CSR last dim) with NumPy."""
    *dense_dims, csr = params.dimMetadata
    assert [d.denseSize for d in dense_dims] == list(view[:-1])
    segments = np.asarray(csr.arraySegments.values, dtype=np.int64)
    indices = np.asarray(csr.arrayIndices.values, dtype=np.int64)
    out = np.zeros((int(np.prod(view[:-1])), view[-1]), dtype=stored.dtype)
    for row in range(out.shape[0]):
        span = slice(segments[row], segments[row + 1])
        out[row, indices[span]] = stored[span]
    return out.reshape(view)


def test_dense_weights_stay_dense():
    assert encode.choose_layout(np.ones((64, 784), np.float32), force_view=False) is None


def test_wide_float32_weight_uses_a_uint8_view():
    layout = encode.choose_layout(sparse_matrix((300, 784), 0.9), force_view=False)
    assert layout.reshaped and layout.index_bytes == 1 and layout.segment_bytes == 2
    assert layout.view == (960, 245)


def test_narrow_weight_keeps_its_shape_with_uint8_indices():
    layout = encode.choose_layout(sparse_matrix((10, 100), 0.9), force_view=False)
    assert not layout.reshaped
    assert layout.view == (10, 100)
    assert (layout.index_bytes, layout.segment_bytes) == (1, 1)


def test_very_sparse_small_weight_prefers_native_uint16_over_a_reshape():
    layout = encode.choose_layout(sparse_matrix((4, 300), 0.99), force_view=False)
    assert not layout.reshaped
    assert layout.index_bytes == 2


def test_int8_kernel_weights_always_go_through_a_reshape():
    layout = encode.choose_layout(sparse_matrix((10, 100), 0.9, np.int8), force_view=True)
    assert layout.reshaped


def test_barely_sparse_weight_is_not_worth_a_sparse_layout():
    # float32 CSR with uint8 indices costs 5 bytes a value: it pays from 20% zeros on.
    assert encode.choose_layout(sparse_matrix((64, 64), 0.1), force_view=False) is None
    assert encode.choose_layout(sparse_matrix((64, 64), 0.3), force_view=False) is not None


@pytest.mark.parametrize("shape", [(300, 784), (10, 100), (4, 300), (16, 3, 3, 8), (7, 130)])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int8])
def test_layout_decodes_to_the_original_values(shape, dtype):
    values = sparse_matrix(shape, 0.9, dtype)
    layout = encode.choose_layout(values, force_view=dtype == np.int8)
    params, stored = encode.csr(values.reshape(layout.view), layout)
    assert stored.size * stored.itemsize + layout.payload - stored.nbytes == layout.payload
    np.testing.assert_array_equal(decode(params, stored, layout.view).reshape(shape), values)


def test_all_zero_weight_still_encodes_one_value():
    values = np.zeros((8, 300), np.float32)
    layout = encode.choose_layout(values, force_view=False)
    params, stored = encode.csr(values.reshape(layout.view), layout)
    assert stored.size == 1
    np.testing.assert_array_equal(decode(params, stored, layout.view).reshape(values.shape), 0)


@pytest.fixture(scope="module")
def layouts_model():
    """A model whose three kernels take the three layout kinds (view, native u8, native u16)."""
    (x, y), _ = digits(n_train=512)
    keras.utils.set_random_seed(11)
    inputs = keras.Input((28, 28))
    h = keras.layers.Flatten()(inputs)
    h = keras.layers.Dense(300, activation="relu", name="wide")(h)
    h = keras.layers.Dense(4, activation="relu", name="narrow")(h)
    model = keras.Model(inputs, keras.layers.Dense(10, name="out")(h))
    fit_briefly(model, x, y)
    zero_smallest(model, 0.9)
    kernel, bias = model.get_layer("narrow").get_weights()
    model.get_layer("narrow").set_weights(
        [kernel * (np.abs(kernel) >= np.quantile(np.abs(kernel), 0.99)), bias]
    )
    return model


@pytest.mark.parametrize("quantize", [None, "float16", "dynamic", "int8"])
def test_every_layout_kind_runs_with_the_default_delegate(layouts_model, tmp_path, quantize):
    (_, _), (xt, _) = digits(n_train=0)
    result = to_tflite(
        layouts_model, tmp_path / "l.tflite", quantize=quantize, representative_data=xt
    )
    assert result.verification.passed
    layouts = {row.shape: row.layout for row in result.tensors if len(row.shape) == 2}
    assert "as [960, 245]" in layouts[(300, 784)]
    if quantize is None:
        # 12 weights left: twelve 1x4 blocks that the sparse FC kernel reads are the smallest.
        assert layouts[(4, 300)] == "1x4 blocks, CSR idx u8 seg u8"
    elif quantize == "float16":
        assert layouts[(4, 300)] == "CSR idx u16 seg u8"


def test_sparse_encoding_never_grows_a_dense_model(tmp_path):
    keras.utils.set_random_seed(5)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8)])
    sparse = to_tflite(model, tmp_path / "s.tflite", sparse=True)
    dense = to_tflite(model, tmp_path / "d.tflite", sparse=False)
    assert sparse.bytes <= dense.bytes
    assert all(row.layout == "dense" for row in sparse.tensors)


def test_unreadable_layout_is_reported_not_fatal(layouts_model, tmp_path):
    """A CSR block dimension is never written: the runtime cannot read a block size from it."""
    good = to_tflite(layouts_model, tmp_path / "good.tflite", verify=False)
    model = flatbuffer.read_model(open(good.path, "rb").read())
    s = flatbuffer.schema()
    tensor = next(t for t in model.subgraphs[0].tensors if t.sparsity is not None)
    block = s.DimensionMetadataT()
    block.format = s.DimensionType.SPARSE_CSR
    tensor.sparsity.dimMetadata.append(block)
    tensor.sparsity.traversalOrder = np.arange(len(tensor.shape) + 1, dtype=np.int32)
    tensor.sparsity.blockMap = np.asarray([len(tensor.shape) - 1], dtype=np.int32)
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(flatbuffer.write_model(model))
    with pytest.raises(VerificationError, match="does not load and run"):
        verify.smoke_test(os.fspath(bad))


def test_interpreter_crash_is_reported_not_fatal(layouts_model, tmp_path, monkeypatch):
    """A layout that kills the interpreter (SIGFPE in DENSIFY) must not kill the caller."""
    good = to_tflite(layouts_model, tmp_path / "good.tflite", verify=False)
    monkeypatch.setattr(verify, "_SMOKE_TEST", "import os, signal; os.kill(os.getpid(), 8)")
    with pytest.raises(VerificationError, match="died with signal 8"):
        verify.smoke_test(good.path)


def test_export_that_crashes_the_interpreter_leaves_no_file(layouts_model, tmp_path, monkeypatch):
    monkeypatch.setattr(verify, "_SMOKE_TEST", "import os, signal; os.kill(os.getpid(), 8)")
    with pytest.raises(VerificationError):
        to_tflite(layouts_model, tmp_path / "crash.tflite")
    assert os.listdir(tmp_path) == []
