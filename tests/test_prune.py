"""prune_low_magnitude and strip_pruning on Sequential and Functional models."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import small_mlp
from keras import layers, ops

import tfprune


def functional_cnn():
    inp = keras.Input((28, 28, 1))
    x = layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.MaxPooling2D(name="pool")(x)
    x = layers.Flatten(name="flat")(x)
    out = layers.Dense(10, name="head")(x)
    return keras.Model(inp, out)


def two_input_model():
    a, b = keras.Input((4,), name="a"), keras.Input((3,), name="b")
    x = layers.Concatenate()([layers.Dense(5, name="da")(a), layers.Dense(5, name="db")(b)])
    return keras.Model([a, b], layers.Dense(2, name="out")(x))


@pytest.mark.parametrize("make", [small_mlp, functional_cnn, two_input_model])
def test_prunable_layers_are_wrapped_and_others_kept(make):
    model = make()
    pruned = tfprune.prune_low_magnitude(model)
    kinds = {type(layer) for layer in model.layers}
    for old, new in zip(model.layers, pruned.layers, strict=True):
        if isinstance(old, (layers.Dense, layers.Conv2D)):
            assert isinstance(new, tfprune.PruneLowMagnitude)
            assert new.layer.get_config() == old.get_config()
        else:
            assert type(new) is type(old)
    assert kinds  # the model really has layers


@pytest.mark.parametrize("make", [small_mlp, functional_cnn, two_input_model])
def test_pruning_keeps_weights_and_predictions(make):
    model = make()
    inputs = [
        np.random.default_rng(0).random((3, *i.shape[1:])).astype("float32") for i in model.inputs
    ]
    pruned = tfprune.prune_low_magnitude(model)
    np.testing.assert_allclose(
        ops.convert_to_numpy(model(inputs)), ops.convert_to_numpy(pruned(inputs)), atol=1e-6
    )


def test_original_model_is_not_shared_with_the_pruned_one():
    model = small_mlp()
    pruned = tfprune.prune_low_magnitude(model)
    before = [w.copy() for w in model.get_weights()]
    for wrapper in tfprune.core.find.pruning_wrappers(pruned):
        wrapper.update_masks(0.9)
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("make", [small_mlp, functional_cnn, two_input_model])
def test_strip_gives_plain_layers_and_identical_predictions(make):
    model = make()
    pruned = tfprune.prune_low_magnitude(model)
    for wrapper in tfprune.core.find.pruning_wrappers(pruned):
        wrapper.update_masks(0.8)
        for w, m in wrapper.pruned_weights:  # stale values at masked positions must not leak
            w.assign(w.value + (1 - ops.cast(m.value, w.dtype)))
    inputs = [
        np.random.default_rng(1).random((4, *i.shape[1:])).astype("float32") for i in model.inputs
    ]
    stripped = tfprune.strip_pruning(pruned)
    assert [type(layer) for layer in stripped.layers] == [type(layer) for layer in model.layers]

    def configs(m):
        return [x.get_config() for x in m.layers if not isinstance(x, layers.InputLayer)]

    assert configs(stripped) == configs(model)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(stripped(inputs)), ops.convert_to_numpy(pruned(inputs))
    )
    report = tfprune.sparsity_report(stripped)
    assert report and all(abs(row.sparsity - 0.8) < 0.01 for row in report)


def test_list_of_layers_and_single_layer():
    wrapped = tfprune.prune_low_magnitude([layers.Dense(2), layers.Conv2D(2, 3)])
    assert all(isinstance(w, tfprune.PruneLowMagnitude) for w in wrapped)
    assert isinstance(tfprune.prune_low_magnitude(layers.Dense(2)), tfprune.PruneLowMagnitude)


def test_schedule_is_passed_to_every_wrapper():
    schedule = tfprune.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=10)
    pruned = tfprune.prune_low_magnitude(small_mlp(), schedule)
    assert all(w.pruning_schedule is schedule for w in tfprune.core.find.pruning_wrappers(pruned))


def test_nested_model_layers_are_pruned():
    inner = keras.Sequential([keras.Input((4,)), layers.Dense(3, name="inner_dense")])
    inp = keras.Input((4,))
    outer = keras.Model(inp, layers.Dense(2, name="outer_dense")(inner(inp)))
    pruned = tfprune.prune_low_magnitude(outer)
    names = [w.layer.name for w in tfprune.core.find.pruning_wrappers(pruned)]
    assert names == ["inner_dense", "outer_dense"]


def test_pruning_twice_is_an_error():
    pruned = tfprune.prune_low_magnitude(small_mlp())
    with pytest.raises(ValueError, match="already pruned"):
        tfprune.prune_low_magnitude(pruned)


def test_model_without_prunable_layers_is_an_error():
    model = keras.Sequential([keras.Input((4,)), layers.Dropout(0.1)])
    with pytest.raises(ValueError, match="no layer with prunable weights"):
        tfprune.prune_low_magnitude(model)


def test_unbuilt_sequential_is_an_error():
    with pytest.raises(ValueError, match="not built"):
        tfprune.prune_low_magnitude(keras.Sequential([layers.Dense(2)]))


@pytest.mark.parametrize("bad", [3, "model", None, np.ones(3)])
def test_non_layer_is_a_type_error(bad):
    with pytest.raises(TypeError, match="to_prune"):
        tfprune.prune_low_magnitude(bad)


def test_tfmot_options_are_checked():
    tfprune.prune_low_magnitude(layers.Dense(2), block_size=(1, 1), block_pooling_type="AVG")
    with pytest.raises(TypeError, match="unexpected keyword argument `bogus`"):
        tfprune.prune_low_magnitude(layers.Dense(2), bogus=1)
    with pytest.raises(ValueError, match="Received: block_size=\\(0, 4\\)"):
        tfprune.prune_low_magnitude(layers.Dense(2), block_size=(0, 4))
    with pytest.raises(TypeError, match="Received: block_size='4x1'"):
        tfprune.prune_low_magnitude(layers.Dense(2), block_size="4x1")
    with pytest.raises(ValueError, match="Received: block_pooling_type='MEAN'"):
        tfprune.prune_low_magnitude(layers.Dense(2), block_pooling_type="MEAN")
    with pytest.raises(ValueError, match="0 < m < n"):
        tfprune.prune_low_magnitude(layers.Dense(2), sparsity_m_by_n=(4, 4))
    with pytest.raises(ValueError, match="cannot be used together"):
        tfprune.prune_low_magnitude(layers.Dense(2), block_size=(1, 4), sparsity_m_by_n=(2, 4))


def test_strip_a_model_that_was_never_pruned_is_an_error():
    with pytest.raises(ValueError, match="never pruned"):
        tfprune.strip_pruning(small_mlp())


def test_strip_a_non_model_is_a_type_error():
    with pytest.raises(TypeError, match="Received: model="):
        tfprune.strip_pruning("model.keras")


def test_strip_a_single_wrapper_returns_the_layer_with_zeros():
    wrapper = tfprune.PruneLowMagnitude(layers.Dense(4))
    wrapper(np.ones((1, 8), "float32"))
    wrapper.update_masks(0.5)
    layer = tfprune.strip_pruning(wrapper)
    assert isinstance(layer, layers.Dense)
    assert int((ops.convert_to_numpy(layer.kernel) == 0).sum()) == 16
