"""Property tests: exact counts, monotone schedules, nested masks, strip equivalence."""

from __future__ import annotations

import keras
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from keras import ops

import tfprune
from tfprune.masks.magnitude import magnitude_mask

shapes = st.lists(st.integers(1, 40), min_size=0, max_size=3).map(tuple)
sparsities = st.floats(0.0, 0.99, allow_nan=False)
quick = settings(max_examples=30, deadline=None)


@quick
@given(shape=shapes, sparsity=sparsities, seed=st.integers(0, 2**16))
def test_mask_zero_count_is_exact(shape, sparsity, seed):
    w = np.random.default_rng(seed).standard_normal(shape).astype("float32")
    mask = ops.convert_to_numpy(magnitude_mask(w, sparsity))
    assert int((mask == 0).sum()) == round(sparsity * w.size)


@st.composite
def polynomial_schedules(draw):
    s_i = draw(st.floats(0.0, 0.9))
    s_f = draw(st.floats(s_i, 0.99))
    begin = draw(st.integers(0, 50))
    end = draw(st.integers(begin, begin + 300))
    return tfprune.PolynomialDecay(
        s_i,
        s_f,
        begin_step=begin,
        end_step=end,
        power=draw(st.sampled_from([1, 2, 3, 4.5])),
        frequency=draw(st.integers(1, 40)),
    )


@quick
@given(schedule=polynomial_schedules())
def test_sparsity_never_decreases_and_ends_on_target(schedule):
    values = [schedule(t)[1] for t in range(schedule.end_step + 20)]
    assert all(b >= a - 1e-12 for a, b in zip(values, values[1:], strict=False))
    assert schedule(schedule.end_step) == (True, schedule.final_sparsity)
    updates = [t for t in range(schedule.end_step + 20) if schedule(t)[0]]
    assert updates[0] == schedule.begin_step and updates[-1] == schedule.end_step


@quick
@given(
    rows=st.integers(1, 30),
    cols=st.integers(1, 30),
    steps=st.lists(sparsities, min_size=1, max_size=5).map(sorted),
    seed=st.integers(0, 2**16),
)
def test_later_masks_contain_earlier_zeros(rows, cols, steps, seed):
    keras.utils.set_random_seed(seed)
    wrapper = tfprune.PruneLowMagnitude(keras.layers.Dense(cols))
    wrapper(np.ones((1, rows), "float32"))
    previous = None
    for s in steps:
        wrapper.update_masks(s)
        ((_, mask),) = wrapper.pruned_weights
        current = ops.convert_to_numpy(mask)
        assert int((current == 0).sum()) == round(s * rows * cols)
        if previous is not None:
            assert np.all(current[previous == 0] == 0)
        previous = current


@settings(max_examples=15, deadline=None)
@given(
    hidden=st.integers(1, 24),
    sparsity=sparsities,
    seed=st.integers(0, 2**16),
)
def test_strip_predicts_like_the_pruned_model(hidden, sparsity, seed):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(hidden, activation="relu"), keras.layers.Dense(3)]
    )
    pruned = tfprune.prune_low_magnitude(model)
    for wrapper in tfprune.core.find.pruning_wrappers(pruned):
        wrapper.update_masks(sparsity)
    x = np.random.default_rng(seed).standard_normal((5, 6)).astype("float32")
    stripped = tfprune.strip_pruning(pruned)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(pruned(x)), ops.convert_to_numpy(stripped(x))
    )


@st.composite
def channel_graphs(draw):
    """A plan of a random small model: its blocks, in order, each reading an earlier tensor."""
    kinds = ["conv", "depthwise", "bn", "activation", "add", "concat", "se"]
    blocks = []
    for index in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(kinds))
        source = draw(st.integers(0, index))
        other = draw(st.integers(0, index))
        blocks.append((kind, source, other, draw(st.integers(1, 8))))
    return {
        "channels": draw(st.integers(1, 4)),
        "stem": draw(st.integers(2, 8)),
        "blocks": blocks,
        "hidden": draw(st.integers(2, 8)),
        "seed": draw(st.integers(0, 2**16)),
        "sparsity": draw(st.floats(0.1, 0.9)),
        "allocation": draw(st.sampled_from(["layer", "global"])),
    }


def _channel_model(plan) -> keras.Model:
    """Residuals, concatenation, depthwise, BN, squeeze-excite, Flatten into Dense."""
    L = keras.layers
    inputs = keras.Input((6, 6, plan["channels"]))
    tensors = [L.Conv2D(plan["stem"], 3, padding="same")(inputs)]
    activations = ["relu", "sigmoid", "tanh"]
    for kind, source, other, size in plan["blocks"]:
        x = tensors[source]
        if kind == "conv":
            x = L.Conv2D(size + 1, 1 + 2 * (size % 2), padding="same")(x)
        elif kind == "depthwise":
            x = L.DepthwiseConv2D(3, padding="same", depth_multiplier=1 + size % 2)(x)
        elif kind == "bn":
            x = L.BatchNormalization()(x)
        elif kind == "activation":
            x = L.Activation(activations[size % 3])(x)
        elif kind in ("add", "concat"):
            y = L.Conv2D(int(x.shape[-1]), 1)(tensors[other])
            x = L.Add()([x, y]) if kind == "add" else L.Concatenate()([x, y])
        else:
            gate = L.GlobalAveragePooling2D(keepdims=True)(x)
            gate = L.Dense(int(x.shape[-1]), activation="sigmoid")(L.Dense(2)(gate))
            x = L.Multiply()([x, gate])
        tensors.append(x)
    x = L.Flatten()(L.MaxPooling2D(3)(tensors[-1]))
    outputs = L.Dense(3)(L.Dense(plan["hidden"], activation="relu")(x))
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(plan["seed"])
    for w in model.weights:
        value = rng.standard_normal(tuple(w.shape))
        w.assign((np.abs(value) + 0.5 if "variance" in w.path else value).astype(w.dtype))
    return model


@settings(max_examples=12, deadline=None)
@given(plan=channel_graphs())
def test_trim_preserves_the_outputs_of_random_channel_pruned_graphs(plan):
    model = _channel_model(plan)
    schedule = tfprune.ConstantSparsity(plan["sparsity"], begin_step=0)
    pruned = tfprune.prune_channels(model, schedule, allocation=plan["allocation"])
    trimmed = tfprune.trim(pruned)
    x = np.random.default_rng(0).random((3, 6, 6, plan["channels"])).astype("float32")
    expected = ops.convert_to_numpy(pruned(x))
    np.testing.assert_allclose(ops.convert_to_numpy(trimmed(x)), expected, rtol=1e-4, atol=1e-4)
    assert trimmed.count_params() <= model.count_params()
