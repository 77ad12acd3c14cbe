"""One-shot pruning of trained models: magnitude, Wanda and SparseGPT, with no training."""

from __future__ import annotations

import keras
import keras_hub
import numpy as np
import pytest
from conftest import compile_model
from tiny_models import digits

import tfprune
from tfprune.masks.magnitude import num_pruned
from tfprune.models.views import matrix_view

METHODS = ("magnitude", "wanda", "sparsegpt")


@pytest.fixture(scope="module")
def trained():
    """An MLP 784-128-64-10 trained 4 epochs on 2,048 digits, and its data."""
    (x, y), (xt, yt) = digits(2048, 512)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu", name="fc1"),
            keras.layers.Dense(64, activation="relu", name="fc2"),
            keras.layers.Dense(10, name="out"),
        ]
    )
    compile_model(model).fit(x, y, epochs=4, batch_size=64, verbose=0)
    return model, (x, y), (xt, yt)


def accuracy(model, x, y):
    return float(np.mean(model.predict(x, verbose=0).argmax(-1) == y))


def kernels(model):
    stripped = tfprune.strip_pruning(model) if tfprune.core.find.is_pruned(model) else model
    return {
        layer.name: keras.ops.convert_to_numpy(layer.kernel)
        for layer in stripped.layers
        if hasattr(layer, "kernel")
    }


@pytest.mark.parametrize("method", METHODS)
def test_each_method_prunes_exactly_round_sparsity_times_size_of_every_weight(trained, method):
    model, (x, _), _ = trained
    pruned = tfprune.prune_one_shot(model, x[:256], 0.63, method=method)
    for name, kernel in kernels(pruned).items():
        assert np.count_nonzero(kernel == 0) == num_pruned(kernel.size, 0.63), name
    # The model given is left as it was.
    assert all(np.count_nonzero(k == 0) == 0 for k in kernels(model).values())


def test_sparsegpt_and_wanda_keep_more_accuracy_than_magnitude(trained):
    model, (x, _), (xt, yt) = trained
    dense = accuracy(model, xt, yt)
    for sparsity in (0.5, 0.7):
        scores = {
            m: accuracy(tfprune.prune_one_shot(model, x[:512], sparsity, method=m), xt, yt)
            for m in METHODS
        }
        assert scores["sparsegpt"] > scores["magnitude"] + 0.01, (sparsity, scores)
        assert scores["wanda"] > scores["magnitude"], (sparsity, scores)
        assert scores["sparsegpt"] > dense - 0.05, (sparsity, scores, dense)


def test_sparsegpt_update_lowers_each_layers_output_error_against_the_same_mask(trained):
    model, (x, _), _ = trained
    calibration = x[:256]
    pruned, stats = tfprune.prune_one_shot(model, calibration, 0.7, return_stats=True)
    assert [s.name for s in stats] == ["fc1/kernel", "fc2/kernel", "out/kernel"]
    before, after = kernels(model), kernels(pruned)
    # Each layer's input as the pruned model computes it (the layers before it pruned).
    stripped = tfprune.strip_pruning(pruned)
    for s in stats:
        layer = s.name.split("/")[0]
        inputs = keras.Model(stripped.inputs[0], stripped.get_layer(layer).input)
        rows = keras.ops.convert_to_numpy(inputs(calibration)).reshape(-1, before[layer].shape[0])
        mask_alone = np.where(after[layer] == 0, 0.0, before[layer])
        updated = np.linalg.norm(rows @ (after[layer] - before[layer]))
        not_updated = np.linalg.norm(rows @ (mask_alone - before[layer]))
        assert updated < 0.7 * not_updated, (layer, updated, not_updated)
        assert s.error < s.error_without_update
        assert s.method == "sparsegpt" and s.rows == len(calibration)
        assert 0 < s.solve_seconds < s.seconds  # its group's time includes the calibration


@pytest.mark.parametrize("method", METHODS)
def test_two_of_every_four_input_channels_hold_with_every_method(method):
    keras.utils.set_random_seed(3)
    inputs = keras.Input((6, 6, 4))
    h = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    h = keras.layers.Reshape((36, 8))(h)
    h = keras.layers.MultiHeadAttention(2, 4, name="attention")(h, h)
    outputs = keras.layers.Dense(3, name="head")(keras.layers.GlobalAveragePooling1D()(h))
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(0).standard_normal((48, 6, 6, 4)).astype("float32")
    pruned = tfprune.prune_one_shot(model, x, None, method=method, pattern=(2, 4))
    report = tfprune.check_sparsity_m_by_n(pruned, 2, 4)
    assert report.holds and len(report) == 6, str(report)
    assert all(row.sparsity == 0.5 for row in report)
    # The attention projections' groups run along their input features, as LiteRT's
    # FULLY_CONNECTED [out, in] holds them: the query kernel [features, heads, head_dim].
    query = keras.ops.convert_to_numpy(
        tfprune.strip_pruning(pruned).get_layer("attention").query_dense.kernel
    )
    per_output = np.moveaxis(query, 0, -1).reshape(-1, 2, 4)
    assert np.all(np.count_nonzero(per_output == 0, axis=-1) == 2)


@pytest.mark.parametrize(
    "layer, shape",
    [
        (keras.layers.Conv2D(5, 3, padding="same", strides=2), (9, 9, 3)),
        (keras.layers.Conv2D(5, (3, 2), padding="valid", dilation_rate=2), (9, 8, 3)),
        (keras.layers.Conv1D(4, 3, padding="causal", dilation_rate=2), (10, 3)),
        (keras.layers.Conv3D(2, 2, padding="same", strides=(1, 2, 1)), (4, 5, 3, 2)),
        (keras.layers.EinsumDense("abc,cde->abde", (3, 4, 5)), (3, 6)),
        (keras.layers.EinsumDense("abcd,cde->abe", (3, 5)), (3, 4, 5)),
        (keras.layers.EinsumDense("...b,bc->...c", 7), (2, 3, 4)),
    ],
)
def test_the_input_rows_times_the_matrix_view_reproduce_the_layer(layer, shape):
    x = np.random.default_rng(1).standard_normal((2, *shape)).astype("float32")
    y = keras.ops.convert_to_numpy(layer(x))
    view = matrix_view(layer, layer.kernel)
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    rows = view.rows(x)
    outputs = rows @ view.to_matrix(kernel).T
    bias = keras.ops.convert_to_numpy(layer.bias) if getattr(layer, "bias", None) is not None else 0
    expected = (y - bias).reshape(rows.shape[0], -1)
    np.testing.assert_allclose(outputs, expected, atol=1e-4)
    np.testing.assert_array_equal(view.from_matrix(view.to_matrix(kernel)), kernel)


def test_recurrent_input_kernels_take_the_method_and_the_rest_magnitude():
    keras.utils.set_random_seed(4)
    inputs = keras.Input((7,), dtype="int32")
    h = keras.layers.Embedding(30, 8, name="embedding")(inputs)
    h = keras.layers.LSTM(6, return_sequences=True, name="lstm")(h)
    h = keras.layers.Bidirectional(keras.layers.GRU(4, name="gru"), name="bi")(h)
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(h))
    x = np.random.default_rng(0).integers(0, 30, (24, 7)).astype("int32")
    _, stats = tfprune.prune_one_shot(model, x, 0.5, method="wanda", return_stats=True)
    methods = {s.name: (s.method, s.rows) for s in stats}
    assert methods == {
        "embedding/embeddings": ("magnitude", 0),
        "lstm/lstm_cell/kernel": ("wanda", 24 * 7),
        "lstm/lstm_cell/recurrent_kernel": ("magnitude", 0),
        "bi/forward_gru/gru_cell/kernel": ("wanda", 24 * 7),
        "bi/forward_gru/gru_cell/recurrent_kernel": ("magnitude", 0),
        "bi/backward_gru/gru_cell/kernel": ("wanda", 24 * 7),
        "bi/backward_gru/gru_cell/recurrent_kernel": ("magnitude", 0),
        "head/kernel": ("wanda", 24),
    }
    assert all(s.sparsity == 0.5 for s in stats)


def test_fine_tuning_keeps_the_one_shot_masks_and_export_works(trained, tmp_path):
    model, (x, y), (xt, yt) = trained
    pruned = tfprune.prune_one_shot(model, x[:256], 0.8, pattern=None)
    zeros = {k: v == 0 for k, v in kernels(pruned).items()}
    compile_model(pruned).fit(
        x[:512],
        y[:512],
        epochs=1,
        batch_size=64,
        verbose=0,
        callbacks=[tfprune.UpdatePruningStep()],
    )
    for name, kernel in kernels(pruned).items():
        np.testing.assert_array_equal(kernel == 0, zeros[name], err_msg=name)
    result = tfprune.export.to_tflite(pruned, tmp_path / "m.tflite")
    assert result.verification.passed


def test_calibration_batches_from_an_iterable_give_the_same_model(trained):
    model, (x, y), _ = trained
    calibration = x[:96]
    from_array = tfprune.prune_one_shot(model, calibration, 0.5, batch_size=32)
    batches = ((calibration[i : i + 32], y[i : i + 32]) for i in range(0, 96, 32))
    from_batches = tfprune.prune_one_shot(model, batches, 0.5)
    again = tfprune.prune_one_shot(model, calibration, 0.5, batch_size=32)
    for name, kernel in kernels(from_array).items():
        np.testing.assert_allclose(kernels(from_batches)[name], kernel, atol=1e-6)
        np.testing.assert_array_equal(kernels(again)[name], kernel)  # deterministic


def test_per_layer_sparsities_and_layers_left_dense(trained):
    model, (x, _), _ = trained
    pruned = tfprune.prune_one_shot(
        model, x[:128], 0.5, method="wanda", layers={"fc1": 0.9, "fc2": None, "*": 0.3}
    )
    found = kernels(pruned)
    assert np.count_nonzero(found["fc1"] == 0) == num_pruned(found["fc1"].size, 0.9)
    assert np.count_nonzero(found["fc2"] == 0) == 0
    assert np.count_nonzero(found["out"] == 0) == num_pruned(found["out"].size, 0.3)


def test_bad_arguments_and_data_raise_clear_errors(trained, monkeypatch):
    model, (x, _), _ = trained
    with pytest.raises(ValueError, match="`method`.*Received: method='obs'"):
        tfprune.prune_one_shot(model, x[:8], 0.5, method="obs")
    with pytest.raises(ValueError, match=r"`sparsity` must be in \[0, 1\)"):
        tfprune.prune_one_shot(model, x[:8], 1.0)
    with pytest.raises(ValueError, match="must be None or 0.5"):
        tfprune.prune_one_shot(model, x[:8], 0.7, pattern=(2, 4))
    with pytest.raises(TypeError, match="sparsities"):
        tfprune.prune_one_shot(model, x[:8], 0.5, layers={"fc1": "half"})
    with pytest.raises(ValueError, match="at least one row"):
        tfprune.prune_one_shot(model, x[:0], 0.5)
    with pytest.raises(ValueError, match="yielded no batch"):
        tfprune.prune_one_shot(model, iter([]), 0.5)
    bad = x[:8].copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="'fc1/kernel' hold NaN or Inf"):
        tfprune.prune_one_shot(model, bad, 0.5)
    monkeypatch.setattr(tfprune.oneshot.solve, "MAX_HESSIAN_INPUTS", 100)
    with pytest.raises(ValueError, match="'fc1/kernel' has 784 inputs.*wanda"):
        tfprune.prune_one_shot(model, x[:8], 0.5)


@keras.saving.register_keras_serializable(package="tfprune_tests")
class TwoDense(keras.Model):
    def __init__(self, hidden=16, **kwargs):
        super().__init__(**kwargs)
        self.hidden = hidden
        self.first = keras.layers.Dense(hidden, activation="relu", name="first")
        self.second = keras.layers.Dense(3, name="second")

    def call(self, x):
        return self.second(self.first(x))

    def get_config(self):
        return {**super().get_config(), "hidden": self.hidden}


def test_a_subclassed_model_is_pruned_in_a_copy():
    model = TwoDense()
    x = np.random.default_rng(2).standard_normal((40, 8)).astype("float32")
    model(x)
    pruned, stats = tfprune.prune_one_shot(model, x, 0.5, return_stats=True)
    assert isinstance(pruned, TwoDense) and pruned is not model
    assert [(s.name, s.method, s.sparsity) for s in stats] == [
        ("first/kernel", "sparsegpt", 0.5),
        ("second/kernel", "sparsegpt", 0.5),
    ]
    assert np.count_nonzero(keras.ops.convert_to_numpy(model.first.kernel) == 0) == 0


def test_a_kerashub_causal_lm_is_pruned_layer_by_layer():
    keras.utils.set_random_seed(6)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=40,
        num_layers=1,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=12,
    )
    causal_lm = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    ids = np.random.default_rng(0).integers(1, 40, (24, 12)).astype("int32")
    data = {"token_ids": ids, "padding_mask": np.ones_like(ids, dtype=bool)}
    pruned, stats = tfprune.prune_one_shot(
        causal_lm, data, None, pattern=(2, 4), layers=["transformer_layer_*"], return_stats=True
    )
    names = [s.name.split("/", 1)[1] for s in stats]
    assert names == [
        "self_attention/query/kernel",
        "self_attention/key/kernel",
        "self_attention/value/kernel",
        "self_attention/attention_output/kernel",
        "feedforward_intermediate_dense/kernel",
        "feedforward_output_dense/kernel",
    ]
    assert all(s.method == "sparsegpt" and s.rows == 24 * 12 for s in stats)
    # On random weights the update is a heuristic per layer (damped Hessian, updates only to
    # the columns not yet visited); in all it must lower the error.
    total = sum(s.error for s in stats)
    assert total < 0.8 * sum(s.error_without_update for s in stats)
    report = tfprune.check_sparsity_m_by_n(pruned, 2, 4)
    pruned_rows = [row for row in report if "transformer_layer_0" in row.name]
    assert len(pruned_rows) == 6 and all(r.holds and r.sparsity == 0.5 for r in pruned_rows)


def test_n_m_groups_that_are_not_runs_of_matrix_columns_still_get_the_update():
    # Three input channels: LiteRT's groups of four pad each kernel position, so the 2:4 mask
    # is chosen once in the kernel's own layout and SparseGPT updates the weights around it.
    keras.utils.set_random_seed(8)
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(6, 3, name="conv")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(keras.layers.Flatten()(h)))
    x = np.random.default_rng(3).standard_normal((32, 8, 8, 3)).astype("float32")
    pruned, stats = tfprune.prune_one_shot(model, x, None, pattern=(2, 4), return_stats=True)
    assert tfprune.check_sparsity_m_by_n(pruned, 2, 4).holds
    conv = stats[0]
    assert conv.name == "conv/kernel" and conv.sparsity == pytest.approx(1 / 3)
    assert conv.error < conv.error_without_update
