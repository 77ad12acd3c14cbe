"""Recurrent models through `to_tflite`: unrolled when the length is known, a loop otherwise.

The data is the embedded MNIST sample read row by row: 28 time steps of 28 pixels, a real
sequence task that a small LSTM learns in a few epochs.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from export_helpers import operator_names
from tiny_models import digits

import tfprune
from tfprune.export import ConversionError, recurrent, to_tflite, verify


@pytest.fixture(scope="module")
def data():
    return digits()


def _pruned(model, data, sparsity=0.8, epochs=2):
    (x, y), _ = data
    steps = -(-len(x) // 64) * epochs
    schedule = tfprune.PolynomialDecay(0.0, sparsity, begin_step=0, end_step=steps - 2, frequency=2)
    pruned = tfprune.prune_low_magnitude(model, schedule)
    pruned.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    pruned.fit(
        x, y, batch_size=64, epochs=epochs, verbose=0, callbacks=[tfprune.UpdatePruningStep()]
    )
    return tfprune.strip_pruning(pruned)


def row_lstm(steps=28):
    keras.utils.set_random_seed(3)
    return keras.Sequential(
        [keras.Input((steps, 28), name="rows"), keras.layers.LSTM(32), keras.layers.Dense(10)]
    )


@pytest.fixture(scope="module")
def lstm(data):
    return _pruned(row_lstm(), data)


@pytest.mark.parametrize("quantize", [None, "dynamic", "int8"])
def test_fixed_length_lstm_exports_unrolled_at_any_batch(lstm, data, tmp_path, quantize):
    _, (xt, _) = data
    path = tmp_path / "lstm.tflite"
    result = to_tflite(lstm, path, quantize=quantize, representative_data=xt)
    assert result.verification.passed
    assert result.batch_size is None
    ops = operator_names(path)
    assert "WHILE" not in ops and "FULLY_CONNECTED" in ops
    # Any batch: five rows in one invoke give what Keras gives.
    runner = verify.runner(str(path))
    assert verify.fixed_batch(runner) is None
    (got,) = verify.run_tflite(str(path), lstm, [xt[:5]])
    assert got.shape == (5, 10)
    if quantize is None:
        np.testing.assert_allclose(got, lstm.predict(xt[:5], verbose=0), atol=1e-4)
        # The kernels are named after Keras and stored once, sparsely, however many steps read them.
        rows = {row.name: row for row in result.tensors}
        assert rows["lstm_cell/kernel"].layout.startswith("CSR")
        assert rows["lstm_cell/recurrent_kernel"].sparsity == pytest.approx(0.8, abs=1e-3)
        assert sum(name.endswith("recurrent_kernel") for name in rows) == 1


def test_variable_length_lstm_stays_a_loop_at_batch_one(data, tmp_path):
    model = _pruned(row_lstm(steps=None), data, epochs=1)
    _, (xt, _) = data
    path = tmp_path / "loop.tflite"
    result = to_tflite(model, path, representative_data=xt[:40])
    assert result.batch_size == 1
    assert "batch_size=1" in str(result).splitlines()[0]
    assert "WHILE" in operator_names(path)
    # Verification fed all 40 rows, one invoke per row.
    assert result.verification.passed and result.verification.samples == 40
    latency = verify.median_latency_us(str(path), model, [xt], repeats=5)
    assert latency > 0


def test_loop_takes_an_explicit_batch_size(data, tmp_path):
    model = _pruned(row_lstm(steps=None), data, epochs=1)
    _, (xt, _) = data
    result = to_tflite(model, tmp_path / "b4.tflite", representative_data=xt[:10], batch_size=4)
    assert result.batch_size == 4
    runner = verify.runner(result.path)
    assert verify.fixed_batch(runner) == 4
    # 10 rows = two full batches and a padded one; the padding never reaches the caller.
    (got,) = verify.run_tflite(result.path, model, [xt[:10]])
    np.testing.assert_allclose(got, model.predict(xt[:10], verbose=0), atol=1e-4)


def test_int8_of_a_loop_is_a_clear_error_and_writes_nothing(data, tmp_path):
    model = row_lstm(steps=None)
    _, (xt, _) = data
    path = tmp_path / "int8.tflite"
    with pytest.raises(ConversionError, match=r"loop over time.*quantize=\"dynamic\""):
        to_tflite(model, path, quantize="int8", representative_data=xt[:8])
    assert list(tmp_path.iterdir()) == []


def test_fixed_batch_size_for_a_feed_forward_model(data, tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    _, (xt, _) = data
    result = to_tflite(
        model, tmp_path / "b3.tflite", quantize="int8", representative_data=xt[:50], batch_size=3
    )
    assert result.batch_size == 3 and result.verification.passed
    assert result.verification.samples == 50


@pytest.mark.parametrize(
    ("batch_size", "error"),
    [(0, ValueError), (-2, ValueError), ("4", TypeError), (True, TypeError)],
)
def test_bad_batch_size_is_rejected(tmp_path, batch_size, error):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(error, match=r"`batch_size`.*Received: batch_size="):
        to_tflite(model, tmp_path / "m.tflite", batch_size=batch_size)
    assert list(tmp_path.iterdir()) == []


def test_gru_bidirectional_and_embedding_export_unrolled(data, tmp_path):
    """Pixels quantized to 8 levels are tokens for an Embedding; a GRU and a bidirectional
    SimpleRNN read them. Everything is unrolled; the embedding table is stored sparsely."""
    (x, y), (xt, _) = data
    tokens, tokens_test = (np.minimum(a * 8, 7).astype("int32") for a in (x, xt))
    keras.utils.set_random_seed(1)
    inputs = keras.Input((28, 28), dtype="int32", name="tokens")
    h = keras.layers.Embedding(8, 4, name="embed")(inputs)
    h = keras.layers.Reshape((28, 112))(h)
    h = keras.layers.GRU(24, return_sequences=True, name="gru")(h)
    h = keras.layers.Bidirectional(keras.layers.SimpleRNN(16), name="birnn")(h)
    model = keras.Model(inputs, keras.layers.Dense(10, name="out")(h))
    model = _pruned(model, ((tokens, y), None), sparsity=0.75, epochs=1)
    path = tmp_path / "gru.tflite"
    result = to_tflite(model, path, representative_data=tokens_test)
    assert result.verification.passed and result.batch_size is None
    assert "WHILE" not in operator_names(path)
    rows = {row.name: row for row in result.tensors}
    assert rows["gru_cell/kernel"].layout.startswith("CSR")
    assert rows["embed/embeddings"].sparsity == pytest.approx(0.75, abs=0.05)


def test_export_copy_unrolls_only_known_short_sequences():
    short = row_lstm(steps=recurrent.MAX_UNROLLED_STEPS)
    copy = recurrent.export_copy(short)
    assert copy is not short and recurrent.loops(copy) == []
    assert [t.name for t in copy.inputs] == [t.name for t in short.inputs]
    for a, b in zip(short.get_weights(), copy.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # The original is left as it was.
    assert recurrent.loops(short) == [short.layers[0].name]

    long = row_lstm(steps=recurrent.MAX_UNROLLED_STEPS + 1)
    assert recurrent.export_copy(long) is long
    dense = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    assert recurrent.export_copy(dense) is dense and recurrent.loops(dense) == []
