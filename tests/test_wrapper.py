"""PruneLowMagnitude on every supported layer type."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers, ops

import tfprune

R = np.random.default_rng(0)


def floats(*shape):
    return R.standard_normal(shape).astype("float32")


def built(layer, shape):
    layer.build(shape)
    return layer


@keras.saving.register_keras_serializable(package="tests")
class Scale(keras.layers.Layer, tfprune.PrunableLayer):
    """A custom layer that opts in through PrunableLayer."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], 4), name="w")
        self.b = self.add_weight(shape=(4,), name="b", initializer="ones")

    def call(self, x):
        return ops.matmul(x, self.w) + self.b

    def get_prunable_weights(self):
        return [self.w]


CASES = {
    "Dense": (lambda: layers.Dense(4), lambda: floats(2, 5), ["kernel"]),
    "EinsumDense": (
        lambda: layers.EinsumDense("ab,bc->ac", output_shape=4, bias_axes="c"),
        lambda: floats(2, 5),
        ["kernel"],
    ),
    "Conv1D": (lambda: layers.Conv1D(3, 2), lambda: floats(2, 6, 3), ["kernel"]),
    "Conv2D": (lambda: layers.Conv2D(3, 2), lambda: floats(2, 6, 6, 3), ["kernel"]),
    "Conv3D": (lambda: layers.Conv3D(2, 2), lambda: floats(1, 4, 4, 4, 2), ["kernel"]),
    "Conv1DTranspose": (lambda: layers.Conv1DTranspose(3, 2), lambda: floats(2, 5, 3), ["kernel"]),
    "Conv2DTranspose": (
        lambda: layers.Conv2DTranspose(3, 2),
        lambda: floats(2, 5, 5, 3),
        ["kernel"],
    ),
    "Conv3DTranspose": (
        lambda: layers.Conv3DTranspose(2, 2),
        lambda: floats(1, 3, 3, 3, 2),
        ["kernel"],
    ),
    "SeparableConv1D": (
        lambda: layers.SeparableConv1D(4, 2),
        lambda: floats(2, 6, 3),
        ["pointwise_kernel"],
    ),
    "SeparableConv2D": (
        lambda: layers.SeparableConv2D(4, 2),
        lambda: floats(2, 6, 6, 3),
        ["pointwise_kernel"],
    ),
    "DepthwiseConv1D": (lambda: layers.DepthwiseConv1D(2), lambda: floats(2, 6, 3), ["kernel"]),
    "DepthwiseConv2D": (lambda: layers.DepthwiseConv2D(2), lambda: floats(2, 6, 6, 3), ["kernel"]),
    "Embedding": (
        lambda: layers.Embedding(20, 4),
        lambda: R.integers(0, 20, (2, 5)).astype("int32"),
        ["embeddings"],
    ),
    "SimpleRNN": (
        lambda: layers.SimpleRNN(4),
        lambda: floats(2, 5, 3),
        ["kernel", "recurrent_kernel"],
    ),
    "LSTM": (lambda: layers.LSTM(4), lambda: floats(2, 5, 3), ["kernel", "recurrent_kernel"]),
    "GRU": (lambda: layers.GRU(4), lambda: floats(2, 5, 3), ["kernel", "recurrent_kernel"]),
    "Bidirectional": (
        lambda: layers.Bidirectional(layers.LSTM(3)),
        lambda: floats(2, 5, 3),
        ["kernel", "recurrent_kernel"] * 2,
    ),
    "TimeDistributed": (
        lambda: layers.TimeDistributed(layers.Dense(4)),
        lambda: floats(2, 5, 3),
        ["kernel"],
    ),
    "PrunableLayer": (lambda: Scale(), lambda: floats(2, 5), ["w"]),
}


def model_for(name):
    make_layer, make_input, _ = CASES[name]
    x = make_input()
    inp = keras.Input(x.shape[1:], dtype=x.dtype)
    wrapper = tfprune.PruneLowMagnitude(make_layer())
    model = keras.Model(inp, wrapper(inp))
    return model, wrapper, x


@pytest.mark.parametrize("name", sorted(CASES))
def test_wraps_exactly_the_prunable_weights(name):
    model, wrapper, _ = model_for(name)
    assert [w.name for w, _ in wrapper.pruned_weights] == CASES[name][2]
    assert all("bias" not in w.name for w, _ in wrapper.pruned_weights)


@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_pass_uses_masked_weights(name):
    model, wrapper, x = model_for(name)
    wrapper.update_masks(0.5)
    # Move the stored weights away from zero where masked: the output must not change.
    for w, m in wrapper.pruned_weights:
        w.assign(w.value + (1 - ops.cast(m.value, w.dtype)) * 3.0)
    got = ops.convert_to_numpy(model(x))
    raw = [ops.convert_to_numpy(w.value) for w, _ in wrapper.pruned_weights]
    for w, m in wrapper.pruned_weights:
        w.assign(w.value * ops.cast(m.value, w.dtype))
    expected = ops.convert_to_numpy(wrapper.layer(x))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    for (w, _), value in zip(wrapper.pruned_weights, raw, strict=True):
        w.assign(value)


@pytest.mark.parametrize("name", sorted(CASES))
def test_masks_and_step_survive_save_and_load(name, tmp_path):
    model, wrapper, x = model_for(name)
    wrapper.update_masks(0.7, step=12)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    again = loaded.layers[-1]
    assert isinstance(again, tfprune.PruneLowMagnitude)
    assert int(again.pruning_step) == 12
    for (_, m0), (w1, m1) in zip(wrapper.pruned_weights, again.pruned_weights, strict=True):
        np.testing.assert_array_equal(ops.convert_to_numpy(m0), ops.convert_to_numpy(m1))
        stored = ops.convert_to_numpy(w1)
        assert np.all(stored[ops.convert_to_numpy(m1) == 0] == 0)
    np.testing.assert_allclose(
        ops.convert_to_numpy(model(x)), ops.convert_to_numpy(loaded(x)), rtol=1e-6, atol=1e-6
    )


def test_multi_head_attention_is_pruned_and_reloads(tmp_path):
    mha = layers.MultiHeadAttention(num_heads=2, key_dim=4)
    q, v = floats(2, 5, 8), floats(2, 6, 3)
    mha(q, v)
    wrapper = tfprune.PruneLowMagnitude(mha)
    qi, vi = keras.Input((5, 8)), keras.Input((6, 3))
    model = keras.Model([qi, vi], wrapper(qi, vi))
    assert len(wrapper.pruned_weights) == 4
    wrapper.update_masks(0.5)
    model.save(tmp_path / "mha.keras")
    loaded = keras.models.load_model(tmp_path / "mha.keras")
    np.testing.assert_allclose(
        ops.convert_to_numpy(model([q, v])), ops.convert_to_numpy(loaded([q, v])), atol=1e-6
    )


def test_unbuilt_multi_input_layer_gets_a_clear_error():
    with pytest.raises(ValueError, match="Build it before wrapping"):
        tfprune.PruneLowMagnitude(layers.MultiHeadAttention(2, 4))(
            keras.Input((5, 8)), keras.Input((6, 8))
        )


def test_embedding_mask_reaches_the_next_layer():
    inp = keras.Input((6,), dtype="int32")
    emb = tfprune.PruneLowMagnitude(layers.Embedding(10, 4, mask_zero=True))
    rnn = tfprune.PruneLowMagnitude(layers.LSTM(3))
    model = keras.Model(inp, rnn(emb(inp)))
    b = np.array([[1, 2, 3, 0, 0, 0]], dtype="int32")
    assert emb.supports_masking
    reference = keras.Model(inp, layers.LSTM(3)(layers.Embedding(10, 4, mask_zero=True)(inp)))
    reference.set_weights([ops.convert_to_numpy(w) for w in model.trainable_weights])
    np.testing.assert_allclose(
        ops.convert_to_numpy(model(b)), ops.convert_to_numpy(reference(b)), atol=1e-6
    )


def test_dropout_inside_wrapped_lstm_keeps_seed_state_moving():
    wrapper = tfprune.PruneLowMagnitude(layers.LSTM(4, dropout=0.5))
    x = floats(2, 5, 3)
    wrapper(x)
    wrapper.attach_driver()
    first = ops.convert_to_numpy(wrapper(x, training=True))
    second = ops.convert_to_numpy(wrapper(x, training=True))
    assert not np.allclose(first, second)


def test_activity_regularizer_loss_is_kept_and_sees_the_masked_output():
    wrapper = tfprune.PruneLowMagnitude(layers.Dense(3, activity_regularizer="l2"))
    inp = keras.Input((4,))
    model = keras.Model(inp, wrapper(inp))
    x = floats(2, 4)
    wrapper.update_masks(0.5)
    out = ops.convert_to_numpy(model(x))
    (loss,) = model.losses
    # Keras's "l2" activity regularizer: 0.01 * sum(y ** 2) over the batch, divided by its size.
    assert float(loss) == pytest.approx(0.01 * float(np.sum(out**2)) / len(x), rel=1e-5)
    kernel, mask = wrapper.pruned_weights[0]
    masked = x @ (ops.convert_to_numpy(kernel) * ops.convert_to_numpy(mask))
    np.testing.assert_allclose(out, masked + ops.convert_to_numpy(wrapper.layer.bias), rtol=1e-5)


@pytest.mark.parametrize(
    "layer, error, match",
    [
        (layers.Dropout(0.5), ValueError, "has no prunable weights"),
        (built(layers.BatchNormalization(), (None, 4)), ValueError, "has no prunable weights"),
        ("dense", TypeError, "Received: layer='dense'"),
        (tfprune.PruneLowMagnitude(layers.Dense(2)), ValueError, "already wrapped"),
    ],
)
def test_wrapper_rejects_bad_layers(layer, error, match):
    with pytest.raises(error, match=match):
        tfprune.PruneLowMagnitude(layer)


def test_an_unbuilt_layer_without_prunable_weights_is_refused_when_built():
    wrapper = tfprune.PruneLowMagnitude(layers.BatchNormalization())
    with pytest.raises(ValueError, match="has no prunable weights once built"):
        wrapper(floats(2, 4))


def test_wrapper_rejects_a_non_schedule():
    with pytest.raises(TypeError, match="pruning_schedule"):
        tfprune.PruneLowMagnitude(layers.Dense(2), pruning_schedule=0.5)


def test_scalar_and_empty_prunable_weights_are_handled():
    class Odd(keras.layers.Layer, tfprune.PrunableLayer):
        def build(self, input_shape):
            self.s = self.add_weight(shape=(), name="s", initializer="ones")
            self.e = self.add_weight(shape=(0, 3), name="e")

        def call(self, x):
            return x * self.s

        def get_prunable_weights(self):
            return [self.s, self.e]

    wrapper = tfprune.PruneLowMagnitude(Odd())
    wrapper(floats(2, 3))
    wrapper.update_masks(0.6)
    assert float(ops.convert_to_numpy(wrapper.pruned_weights[0][1])) == 0.0
    assert tuple(wrapper.pruned_weights[1][1].shape) == (0, 3)
