"""Precision policies and execution modes: the same pruning wherever the step runs."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import masks_of

import tfprune


@pytest.fixture
def policy():
    yield
    keras.config.set_dtype_policy("float32")


def pruned_model(dtype_policy="float32", **compile_kwargs):
    keras.config.set_dtype_policy(dtype_policy)
    keras.utils.set_random_seed(5)
    model = keras.Sequential(
        [
            keras.Input((28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu", name="fc1"),
            keras.layers.Dense(10, name="fc2"),
            keras.layers.Activation("linear", dtype="float32"),
        ]
    )
    schedule = tfprune.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=12, frequency=4)
    pruned = tfprune.prune_low_magnitude(model, schedule)
    pruned.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        **compile_kwargs,
    )
    return pruned


def train(model, mnist, epochs=2):
    (x, y), _ = mnist
    model.fit(
        x,
        y,
        batch_size=64,
        epochs=epochs,
        shuffle=False,
        verbose=0,
        callbacks=[tfprune.UpdatePruningStep()],
    )
    return model


@pytest.mark.parametrize("dtype_policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_keeps_one_byte_masks_and_float32_weights(mnist, policy, dtype_policy):
    model = train(pruned_model(dtype_policy), mnist)
    for wrapper in tfprune.core.find.pruning_wrappers(model):
        for weight, mask in wrapper.pruned_weights:
            assert (mask.dtype, weight.dtype) == ("bool", "float32")
            m = keras.ops.convert_to_numpy(mask)
            assert int((m == 0).sum()) == round(0.8 * m.size)
    assert model.layers[-1].compute_dtype == "float32"


@pytest.mark.parametrize(
    "compile_kwargs",
    [
        dict(jit_compile=True),
        dict(jit_compile=False),
        dict(run_eagerly=True),
        dict(steps_per_execution=4),
    ],
    ids=["jit", "no-jit", "eager", "spe4"],
)
def test_execution_modes_give_the_same_masks(mnist, compile_kwargs):
    reference = masks_of(train(pruned_model(steps_per_execution=1), mnist))
    for a, b in zip(reference, masks_of(train(pruned_model(**compile_kwargs), mnist)), strict=True):
        np.testing.assert_array_equal(a, b)


def test_steps_per_execution_64_reaches_the_target(mnist):
    model = train(pruned_model(steps_per_execution=64), mnist, epochs=3)
    for m in masks_of(model):
        assert int((m == 0).sum()) == round(0.8 * m.size)


def test_nan_weights_at_a_mask_update_name_the_layer(mnist):
    model = pruned_model()
    fc1 = model.layers[1]
    kernel = fc1.layer.kernel
    kernel.assign(keras.ops.where(keras.ops.arange(kernel.shape[1]) == 3, np.nan, kernel.value))
    with pytest.raises(ValueError, match="layer 'fc1'.*NaN or Inf"):
        train(model, mnist, epochs=1)


def test_layer_shared_within_a_model_gets_one_wrapper():
    shared = keras.layers.Dense(4, name="shared")
    a, b = keras.Input((4,)), keras.Input((4,))
    model = keras.Model([a, b], keras.layers.Add()([shared(a), shared(b)]))
    pruned = tfprune.prune_low_magnitude(model)
    wrappers = tfprune.core.find.pruning_wrappers(pruned)
    assert len(wrappers) == 1
    x = [np.ones((2, 4), "float32"), np.zeros((2, 4), "float32")]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(x)), keras.ops.convert_to_numpy(pruned(x)), atol=1e-6
    )


def test_layer_shared_with_another_model_is_left_alone():
    shared = keras.layers.Dense(4, name="shared")
    inp = keras.Input((4,))
    first = keras.Model(inp, shared(inp))
    second = keras.Model(inp, keras.layers.Dense(2)(shared(inp)))
    before = second.get_weights()
    pruned = tfprune.prune_low_magnitude(first)
    for wrapper in tfprune.core.find.pruning_wrappers(pruned):
        wrapper.update_masks(0.9)
    for x, y in zip(before, second.get_weights(), strict=True):
        np.testing.assert_array_equal(x, y)
