"""Channel pruning and trim: groups from the graph, masks of whole channels, exact trim."""

from __future__ import annotations

import os
import warnings

import keras
import numpy as np
import pytest
from conftest import compile_model
from tiny_models import random_weights

import tfprune
from tfprune.channels.plan import kept_groups
from tfprune.core.find import pruning_wrappers
from tfprune.core.groups import reached

L = keras.layers


def residual_se_cnn() -> keras.Model:
    """Residual add, BN, depthwise, squeeze-excite, concatenation, separable, flatten."""
    inputs = keras.Input((10, 10, 3))
    x = L.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU()(x)
    y = L.Conv2D(8, 1, name="expand")(x)
    y = L.DepthwiseConv2D(3, padding="same", name="dw")(y)
    x = L.Add(name="residual")([x, y])
    gate = L.GlobalAveragePooling2D(keepdims=True)(x)
    gate = L.Dense(4, activation="relu", name="se_reduce")(gate)
    gate = L.Dense(8, activation="sigmoid", name="se_expand")(gate)
    x = L.Multiply(name="excite")([x, gate])
    a = L.Conv2D(6, 1, name="branch_a")(x)
    b = L.SeparableConv2D(6, 3, padding="same", name="branch_b")(x)
    x = L.Concatenate(name="concat")([a, b])
    x = L.MaxPooling2D()(x)
    x = L.Flatten()(x)
    x = L.Dense(12, activation="relu", name="fc")(x)
    return keras.Model(inputs, L.Dense(3, name="logits")(x))


def ops_and_reshape() -> keras.Model:
    """`x + y` and `keras.ops` operations of the model's own code, Reshape, Conv1D, GAP."""
    inputs = keras.Input((8, 4))
    x = L.Conv1D(6, 3, padding="same", name="c1")(inputs)
    y = L.Conv1D(6, 1, name="c2")(inputs)
    x = keras.ops.relu(x + y)
    x = L.Reshape((2, 4, 6))(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(2, name="head")(x))


def recurrent_text() -> keras.Model:
    inputs = keras.Input((7,), dtype="int32")
    x = L.Embedding(40, 12, name="embed")(inputs)
    x = L.LSTM(10, return_sequences=True, name="lstm")(x)
    x = L.GRU(8, name="gru")(x)
    return keras.Model(inputs, L.Dense(4, name="head")(x))


def transposed_and_pooling() -> keras.Model:
    inputs = keras.Input((6, 6, 2))
    x = L.Conv2D(8, 3, strides=2, padding="same", name="down")(inputs)
    x = L.Conv2DTranspose(6, 3, strides=2, padding="same", name="up")(x)
    x = L.AveragePooling2D(2)(x)
    x = L.Dropout(0.1)(x)
    x = L.GlobalMaxPooling2D()(x)
    return keras.Model(inputs, L.Dense(2, name="head")(x))


def attention_block() -> keras.Model:
    """Self-attention in a residual, a feed-forward block, cross-attention with a key."""
    inputs = keras.Input((6, 16))
    x = L.Normalization(name="norm")(inputs)
    x = L.Dense(16, name="proj")(x)
    x = L.Add()([x, L.MultiHeadAttention(4, 8, name="self_attention")(x, x)])
    x = L.Dense(32, activation="gelu", name="ffn_up")(x)
    x = L.Dense(16, name="ffn_down")(x)
    x = L.MultiHeadAttention(2, 4, name="cross")(query=x, value=inputs, key=x)
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, L.Dense(3, name="head")(x))


def nested_models() -> keras.Model:
    """A Functional backbone and a Sequential block used as layers of an outer model."""
    backbone_in = keras.Input((8, 8, 3))
    b = L.Conv2D(8, 3, padding="same", activation="relu", name="backbone_conv")(backbone_in)
    b = L.Conv2D(8, 1, name="backbone_project")(b)
    backbone = keras.Model(backbone_in, b, name="backbone")
    block = keras.Sequential(
        [keras.Input((8,)), L.Dense(12, activation="relu", name="block_up"), L.Dense(8)],
        name="block",
    )
    inputs = keras.Input((8, 8, 3))
    x = L.GlobalAveragePooling2D()(backbone(inputs))
    x = block(L.Dense(8, name="pre")(x))
    return keras.Model(inputs, L.Dense(2, name="head")(x))


def sequential_lenet() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((12, 12, 1)),
            L.Conv2D(8, 3, activation="relu", name="conv"),
            L.MaxPooling2D(),
            L.Flatten(),
            L.Dense(16, activation="relu", name="fc"),
            L.Dense(10, name="logits"),
        ]
    )


def _inputs(model: keras.Model, n: int = 5, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (n, *model.inputs[0].shape[1:])
    if "int" in str(model.inputs[0].dtype):
        return rng.integers(0, 40, shape)
    return rng.random(shape).astype("float32")


BUILDERS = [residual_se_cnn, ops_and_reshape, recurrent_text, transposed_and_pooling]
BUILDERS += [attention_block, nested_models, sequential_lenet]


@pytest.mark.parametrize("build", BUILDERS, ids=lambda f: f.__name__)
def test_trimmed_model_computes_what_the_masked_model_computes(build):
    model = random_weights(build())
    pruned = tfprune.prune_channels(model, tfprune.ConstantSparsity(0.5, begin_step=0))
    trimmed = tfprune.trim(pruned)
    x = _inputs(model)
    # Float32 sums in another order (a smaller matmul): equal to rounding.
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(trimmed(x)),
        keras.ops.convert_to_numpy(pruned(x)),
        rtol=1e-4,
        atol=1e-5,
    )
    assert trimmed.count_params() < model.count_params()
    assert [type(layer) for layer in trimmed.layers] == [type(layer) for layer in model.layers]
    # Auto-named inputs are renamed by keras.models.clone_model itself; every layer keeps its own.
    assert [x.name for x in trimmed.layers[1:]] == [x.name for x in model.layers[1:]]
    assert trimmed.outputs[0].shape == model.outputs[0].shape


def test_channels_that_must_go_together_go_together():
    pruned = tfprune.prune_channels(
        random_weights(residual_se_cnn()), tfprune.ConstantSparsity(0.5, begin_step=0)
    )
    trimmed = tfprune.trim(pruned)
    sizes = {layer.name: [tuple(w.shape) for w in layer.weights] for layer in trimmed.layers}
    # stem, expand, the depthwise, BN and the SE gate's output share the residual's 8 channels.
    assert sizes["stem"][0][-1] == sizes["expand"][0][-1] == sizes["se_expand"][0][-1] == 4
    assert sizes["dw"][0] == (3, 3, 4, 1) and sizes["stem_bn"][0] == (4,)
    assert sizes["se_reduce"][0] == (4, 2)
    # Concatenation: both branches keep 3 of 6; Flatten repeats the 6 channels 25 times.
    assert sizes["branch_a"][0][-1] == 3 and sizes["branch_b"][1][-1] == 3
    assert sizes["fc"][0] == (25 * 6, 6)
    assert sizes["logits"][0] == (6, 3)  # the model output keeps its 3 classes
    masks = {w.layer.name: w.pruned_weights[0][1] for w in pruning_wrappers(pruned)}
    removed = [
        np.flatnonzero(~keras.ops.convert_to_numpy(masks[name]).reshape(-1, 8).any(axis=0))
        for name in ("stem", "expand", "se_expand")
    ]
    np.testing.assert_array_equal(removed[0], removed[1])
    np.testing.assert_array_equal(removed[0], removed[2])


def test_lstm_units_go_with_all_four_gates():
    pruned = tfprune.prune_channels(
        random_weights(recurrent_text()), tfprune.ConstantSparsity(0.5, begin_step=0)
    )
    trimmed = tfprune.trim(pruned)
    lstm = trimmed.get_layer("lstm")
    assert lstm.units == 5
    assert [tuple(w.shape) for w in lstm.weights] == [(6, 20), (5, 20), (20,)]
    assert trimmed.get_layer("gru").units == 4
    assert trimmed.get_layer("embed").output_dim == 6


def test_attention_heads_go_with_their_query_key_value_and_output_slices():
    pruned = tfprune.prune_channels(
        random_weights(attention_block()), tfprune.ConstantSparsity(0.5, begin_step=0)
    )
    trimmed = tfprune.trim(pruned)
    attention = trimmed.get_layer("self_attention")
    assert attention.num_heads == 2 and trimmed.get_layer("cross").num_heads == 1
    shapes = [tuple(w.shape) for w in attention.weights]
    # proj's 16 features are a residual group of their own: 8 stay, in every reader.
    assert shapes[0] == (8, 2, 8) and shapes[6] == (2, 8, 8)
    assert trimmed.get_layer("cross").weights[4].shape == (16, 1, 4)  # value: the model input


def test_nested_models_are_followed_and_trimmed_inside():
    pruned = tfprune.prune_channels(
        random_weights(nested_models()), tfprune.ConstantSparsity(0.5, begin_step=0)
    )
    trimmed = tfprune.trim(pruned)
    backbone, block = trimmed.get_layer("backbone"), trimmed.get_layer("block")
    assert backbone.get_layer("backbone_conv").filters == 4
    assert backbone.get_layer("backbone_project").filters == 4
    assert trimmed.get_layer("pre").units == 4
    assert block.inputs[0].shape == (None, 4) and block.get_layer("block_up").units == 6


@pytest.mark.parametrize("sparsity", [0.25, 0.5, 0.75])
def test_each_layer_removes_its_exact_share_of_groups(sparsity):
    model = random_weights(sequential_lenet())
    pruned = tfprune.prune_channels(model, tfprune.ConstantSparsity(sparsity, begin_step=0))
    trimmed = tfprune.trim(pruned)
    assert trimmed.get_layer("conv").filters == 8 - round(sparsity * 8)
    assert trimmed.get_layer("fc").units == 16 - round(sparsity * 16)
    assert reached(pruning_wrappers(pruned)) == pytest.approx(sparsity, abs=1 / 24)


def test_round_to_keeps_multiples_and_global_ranking_uses_one_count():
    model = random_weights(sequential_lenet())
    rounded = tfprune.trim(
        tfprune.prune_channels(model, tfprune.ConstantSparsity(0.7, begin_step=0), round_to=4)
    )
    assert rounded.get_layer("conv").filters == 4 and rounded.get_layer("fc").units == 8
    pruned = tfprune.prune_channels(
        model, tfprune.ConstantSparsity(0.5, begin_step=0), allocation="global"
    )
    keep = kept_groups(pruning_wrappers(pruned))
    assert int((~keep).sum()) == 12  # round(0.5 * 24) over both layers
    trimmed = tfprune.trim(pruned)
    assert trimmed.get_layer("conv").filters >= 1 and trimmed.get_layer("fc").units >= 1


def test_the_channels_with_the_smallest_norms_go_first():
    model = sequential_lenet()
    kernel = np.ones((3, 3, 1, 8), dtype="float32") * np.arange(1, 9, dtype="float32")
    model.get_layer("conv").kernel.assign(kernel[..., ::-1])  # channel 7 is the smallest
    model.get_layer("fc").kernel.assign(np.ones((200, 16), dtype="float32"))
    pruned = tfprune.prune_channels(
        model, tfprune.ConstantSparsity(0.25, begin_step=0), layers=["conv"]
    )
    conv = next(w for w in pruning_wrappers(pruned) if w.layer.name == "conv")
    kept = keras.ops.convert_to_numpy(conv.pruned_weights[0][1]).reshape(-1, 8).any(axis=0)
    assert kept.tolist() == [True] * 6 + [False] * 2
    # `layers` names the layers whose channels may go: fc keeps its 16 units.
    assert tfprune.trim(pruned).get_layer("fc").units == 16


def test_gradual_channel_pruning_in_fit_saves_loads_and_resumes(tmp_path, mnist):
    (x, y), _ = mnist
    x = x.reshape(-1, 28, 28, 1)[:, 8:20, 8:20]
    schedule = tfprune.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=12, frequency=4)
    pruned = compile_model(tfprune.prune_channels(sequential_lenet(), schedule))
    fit = dict(batch_size=32, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    with pytest.warns(UserWarning, match="Pruning target not reached"):
        pruned.fit(x[:256], y[:256], epochs=1, **fit)  # 8 steps: updates at 0 and 4
    wrappers = pruning_wrappers(pruned)
    halfway = kept_groups(wrappers)
    assert 0 < reached(wrappers) < 0.5
    path = os.fspath(tmp_path / "channels.keras")
    pruned.save(path)
    loaded = compile_model(keras.models.load_model(path))
    np.testing.assert_array_equal(kept_groups(pruning_wrappers(loaded)), halfway)
    loaded.fit(x, y, epochs=2, **fit)  # resumes at step 4, ends past 12
    final = kept_groups(pruning_wrappers(loaded))
    assert reached(pruning_wrappers(loaded)) == pytest.approx(0.5)
    assert not np.any(final & ~halfway)  # channels removed earlier stay removed
    trimmed = tfprune.trim(loaded)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(trimmed(x[:8])),
        keras.ops.convert_to_numpy(loaded(x[:8])),
        atol=1e-5,
    )


def test_update_step_refits_what_reads_the_removed_channels(mnist):
    (x, y), (x_test, y_test) = mnist
    x, x_test = x.reshape(-1, 784), x_test.reshape(-1, 784)
    model = keras.Sequential(
        [
            keras.Input((784,)),
            L.Dense(64, activation="relu", name="h1"),
            L.Dense(64, activation="relu", name="h2"),
            L.Dense(10, name="logits"),
        ]
    )
    compile_model(model).fit(x, y, epochs=8, batch_size=64, verbose=0)
    pruned = tfprune.prune_channels(model, tfprune.ConstantSparsity(0.5, begin_step=0))
    plain = tfprune.trim(pruned)
    updated = tfprune.trim(pruned, calibration_data=x[:256])
    dense = keras.ops.convert_to_numpy(model(x_test))

    def error(m):
        return float(np.mean((keras.ops.convert_to_numpy(m(x_test)) - dense) ** 2))

    def accuracy(m):
        return float(np.mean(np.argmax(keras.ops.convert_to_numpy(m(x_test)), -1) == y_test))

    assert error(updated) < 0.5 * error(plain)
    assert accuracy(updated) >= accuracy(plain)
    assert updated.get_layer("h1").units == plain.get_layer("h1").units == 32


def test_layers_that_couple_channels_keep_them_and_say_so():
    inputs = keras.Input((6,))
    x = L.Dense(8, name="a")(inputs)
    x = L.LayerNormalization(name="norm")(x)
    x = L.Dense(8, activation="softmax", name="soft")(x)
    x = L.Dense(8, name="b")(x)
    model = keras.Model(inputs, L.Dense(2, name="out")(x))
    with pytest.warns(UserWarning, match=r"'a' \('norm' \(LayerNormalization\) couples them\)"):
        pruned = tfprune.prune_channels(model)
    trimmed = tfprune.trim(pruned)
    sizes = {name: trimmed.get_layer(name).units for name in ("a", "soft", "b")}
    assert sizes == {"a": 8, "soft": 8, "b": 4}


@keras.saving.register_keras_serializable(package="tests")
class Doubler(L.Layer):
    def call(self, x):
        return x * 2.0


def _with_custom_layer() -> keras.Model:
    inputs = keras.Input((5,))
    x = L.Dense(8, name="a")(inputs)
    x = Doubler(name="double")(x)
    x = L.Dense(6, name="b")(x)
    return keras.Model(inputs, L.Dense(2, name="out")(x))


def test_an_unknown_layer_is_an_error_or_kept_whole_by_option():
    model = random_weights(_with_custom_layer())
    with pytest.raises(ValueError, match="through layer 'double' of type Doubler"):
        tfprune.prune_channels(model)
    with pytest.warns(UserWarning, match="'a' \\(read by 'double'"):
        pruned = tfprune.prune_channels(model, unsupported="keep")
    trimmed = tfprune.trim(pruned)
    assert trimmed.get_layer("a").units == 8 and trimmed.get_layer("b").units == 3
    x = _inputs(model)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(trimmed(x)), keras.ops.convert_to_numpy(pruned(x)), atol=1e-5
    )


def test_bad_arguments_and_models_get_clear_errors():
    model = sequential_lenet()
    cases = [
        (dict(criterion="l3"), ValueError, "criterion"),
        (dict(round_to=0), ValueError, "round_to"),
        (dict(allocation="model"), ValueError, "allocation"),
        (dict(unsupported="ignore"), ValueError, "unsupported"),
        (dict(layers="conv"), TypeError, "layers"),
        (dict(pruning_schedule=0.5), TypeError, "pruning_schedule"),
    ]
    for kwargs, error, word in cases:
        with pytest.raises(error, match=word):
            tfprune.prune_channels(model, **kwargs)
    with pytest.raises(ValueError, match="was not pruned by channels"):
        tfprune.trim(model)
    with pytest.raises(ValueError, match="was not pruned by channels"):
        tfprune.trim(tfprune.prune_low_magnitude(model))
    pruned = tfprune.prune_channels(model)
    with pytest.raises(ValueError, match="already pruned"):
        tfprune.prune_channels(pruned)
    with pytest.raises(ValueError, match="pruned by channels"):
        pruning_wrappers(pruned)[0].update_masks(0.5)

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = L.Dense(3)

        def call(self, x):
            return self.dense(x)

    sub = Subclassed()
    sub(np.ones((1, 4)))
    with pytest.raises(ValueError, match="subclassed"):
        tfprune.prune_channels(sub)
    only_output = keras.Sequential([keras.Input((4,)), L.Dense(3)])
    with pytest.raises(ValueError, match="no channel that can be removed"):
        tfprune.prune_channels(only_output)


def test_trimmed_residual_cnn_exports_verified_files_in_every_quantization(tmp_path):
    pytest.importorskip("ai_edge_litert")
    from tfprune.export import to_tflite

    model = random_weights(residual_se_cnn())
    pruned = tfprune.prune_channels(model, tfprune.ConstantSparsity(0.5, begin_step=0))
    trimmed = tfprune.trim(pruned)
    x = _inputs(model, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dense = to_tflite(model, tmp_path / "dense.tflite")
        for quantize in (None, "dynamic", "float16", "int8"):
            path = tmp_path / f"trimmed_{quantize}.tflite"
            small = to_tflite(trimmed, path, quantize=quantize, representative_data=x)
            assert small.verification.passed, quantize
            if quantize is None:
                assert small.bytes < 0.5 * dense.bytes


@pytest.mark.slow
def test_trimmed_mobilenet_v2_exports_verified_float_and_int8_files(tmp_path):
    pytest.importorskip("ai_edge_litert")
    from tfprune.export import to_tflite

    model = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10
    )
    pruned = tfprune.prune_channels(model, tfprune.ConstantSparsity(0.5, begin_step=0), round_to=4)
    trimmed = tfprune.trim(pruned)
    x = np.random.default_rng(0).random((16, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(trimmed(x)), keras.ops.convert_to_numpy(pruned(x)), atol=1e-5
    )
    for layer in trimmed.layers:
        if isinstance(layer, (L.Conv2D, L.Dense)) and layer.name != "predictions":
            assert layer.kernel.shape[-1] % 4 == 0, layer.name
    assert trimmed.get_layer("predictions").units == 10
    sizes = {}
    for quantize in (None, "int8"):
        path = tmp_path / f"trimmed_{quantize}.tflite"
        result = to_tflite(trimmed, path, quantize=quantize, representative_data=x)
        assert result.verification.passed, quantize
        sizes[quantize] = result.bytes
    assert sizes[None] < 0.35 * 4 * model.count_params()  # the dense float32 weights alone
    assert sizes["int8"] < 0.5 * sizes[None]
