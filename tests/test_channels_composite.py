"""Channel pruning inside layers made of layers, and on KerasHub backbones and tasks."""

from __future__ import annotations

import os
import warnings

import keras
import keras_hub
import numpy as np
import pytest
from tiny_models import random_weights

import tfprune
from tfprune.core.find import pruning_wrappers
from tfprune.models.registry import weight_label
from tfprune.models.walk import walk

L = keras.layers
HALF = tfprune.ConstantSparsity(0.5, begin_step=0)
TINY = {
    "vocabulary_size": 50,
    "num_layers": 2,
    "num_heads": 2,
    "hidden_dim": 16,
    "intermediate_dim": 32,
    "max_sequence_length": 8,
}


def _numpy(value):
    return np.concatenate(
        [np.ravel(keras.ops.convert_to_numpy(v)) for v in keras.tree.flatten(value)]
    )


def _assert_same(a, b):
    np.testing.assert_allclose(_numpy(a), _numpy(b), rtol=1e-4, atol=1e-5)


def _tokens(rows: int = 4, extra: tuple[str, ...] = ()) -> dict:
    rng = np.random.default_rng(0)
    x = {"token_ids": rng.integers(0, 50, (rows, 8)), "padding_mask": np.ones((rows, 8), "int32")}
    return x | {name: np.zeros((rows, 8), "int32") for name in extra}


def sequence_tagger() -> keras.Model:
    """TimeDistributed Dense, a Bidirectional LSTM (concatenated) and GRU (summed)."""
    inputs = keras.Input((5, 6))
    x = L.TimeDistributed(L.Dense(8, activation="relu"), name="td")(inputs)
    x = L.Bidirectional(L.LSTM(6, return_sequences=True), name="bi_lstm")(x)
    x = L.Bidirectional(L.GRU(4), merge_mode="sum", name="bi_gru")(x)
    return keras.Model(inputs, L.Dense(3, name="head")(x))


def test_time_distributed_and_bidirectional_layers_are_pruned_inside():
    model = random_weights(sequence_tagger())
    pruned = tfprune.prune_channels(model, HALF)
    trimmed = tfprune.trim(pruned)
    x = np.random.default_rng(1).random((4, 5, 6)).astype("float32")
    _assert_same(trimmed(x), pruned(x))
    assert trimmed.get_layer("td").layer.units == 4
    lstm = trimmed.get_layer("bi_lstm")
    # Concatenated: each direction removes half of its own units (all four gates of each).
    assert lstm.forward_layer.units == lstm.backward_layer.units == 3
    assert tuple(lstm.forward_layer.cell.kernel.shape) == (4, 12)
    gru = trimmed.get_layer("bi_gru")
    assert gru.forward_layer.units == gru.backward_layer.units == 2
    assert trimmed.outputs[0].shape == model.outputs[0].shape


def test_summed_directions_lose_the_same_units():
    pruned = tfprune.prune_channels(random_weights(sequence_tagger()), HALF)
    (wrapper,) = [w for w in pruning_wrappers(pruned) if w.layer.name == "bi_gru"]
    masks = {
        weight_label(wrapper.layer, w): keras.ops.convert_to_numpy(m)
        for w, m in wrapper.pruned_weights
    }
    # Labels name the directions ("forward_gru_1/gru_cell/recurrent_kernel").
    forward, backward = (
        next(m for label, m in masks.items() if label.startswith(side) and "recurrent" in label)
        for side in ("forward", "backward")
    )
    forward, backward = forward.any(axis=1), backward.any(axis=1)
    np.testing.assert_array_equal(forward, backward)
    assert forward.sum() == 2


@pytest.mark.parametrize("task", ["backbone", "causal_lm", "classifier"])
def test_keras_hub_transformers_lose_feed_forward_units_and_keep_heads(task):
    keras.utils.set_random_seed(0)
    if task == "classifier":
        model = keras_hub.models.BertTextClassifier(
            keras_hub.models.BertBackbone(**TINY), num_classes=3, preprocessor=None
        )
        x = _tokens(extra=("segment_ids",))
    else:
        model = keras_hub.models.GPT2Backbone(**TINY)
        if task == "causal_lm":
            model = keras_hub.models.GPT2CausalLM(model, preprocessor=None)
        x = _tokens()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pruned = tfprune.prune_channels(model, HALF)  # unsupported="raise": nothing unknown
    told = " ".join(str(w.message) for w in caught if "Channels kept" in str(w.message))
    if task != "backbone":  # the hidden features end at the logits, through LayerNorms
        assert "LayerNormalization" in told
    trimmed = tfprune.trim(pruned)
    _assert_same(trimmed.predict(x, verbose=0), pruned.predict(x, verbose=0))
    blocks = [x for x in walk(trimmed) if type(x).__name__.startswith("Transformer")]
    assert len(blocks) == 2 and all(b.intermediate_dim == 16 for b in blocks)
    for block in blocks:  # heads and hidden features are kept whole
        shapes = {weight_label(block, v): tuple(v.shape) for v in block.weights}
        (query,) = [shape for label, shape in shapes.items() if label.endswith("query/kernel")]
        assert query == (16, 2, 8)
        assert shapes["feedforward_intermediate_dense/kernel"] == (16, 16)
    embeddings = [x for x in walk(trimmed) if type(x).__name__ == "ReversibleEmbedding"]
    assert len(embeddings) == 1  # a task's tied token embedding stays one shared layer
    for a, b in zip(trimmed.outputs, model.outputs, strict=True):
        assert a.shape == b.shape


def test_channel_pruned_backbone_saves_loads_and_trims(tmp_path):
    keras.utils.set_random_seed(0)
    pruned = tfprune.prune_channels(
        keras_hub.models.GPT2Backbone(**TINY), tfprune.ConstantSparsity(0.25, begin_step=0)
    )
    path = os.fspath(tmp_path / "gpt2.keras")
    pruned.save(path)
    loaded = keras.models.load_model(path)
    x = _tokens()
    trimmed = tfprune.trim(loaded)
    _assert_same(trimmed.predict(x, verbose=0), pruned.predict(x, verbose=0))
    blocks = [x for x in walk(trimmed) if type(x).__name__ == "TransformerDecoder"]
    assert [b.intermediate_dim for b in blocks] == [24, 24]


def test_update_step_refits_inside_composite_layers():
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.GPT2Backbone(**(TINY | {"intermediate_dim": 64}))
    x = _tokens(rows=64)
    dense = backbone.predict(x, verbose=0)
    pruned = tfprune.prune_channels(backbone, HALF)
    plain = np.abs(tfprune.trim(pruned).predict(x, verbose=0) - dense).mean()
    refit = tfprune.trim(pruned, calibration_data=x, batch_size=16).predict(x, verbose=0)
    assert np.abs(refit - dense).mean() < 0.5 * plain


def test_slices_keep_channels_only_when_the_last_axis_is_whole():
    inputs = keras.Input((4, 6))
    x = L.Dense(8, name="hidden")(inputs)
    first = x[:, 0, :]  # as BERT's pooler reads its first token
    model = keras.Model(inputs, L.Dense(2, name="head")(first))
    trimmed = tfprune.trim(tfprune.prune_channels(model, HALF))
    assert trimmed.get_layer("hidden").units == 4

    some = x[..., :3]
    model = keras.Model(inputs, L.Dense(2, name="head")(some))
    with pytest.raises(ValueError, match="'get_item.*indexes the channel axis"):
        tfprune.prune_channels(model, HALF)


def test_a_subclass_of_a_known_composite_is_not_trusted():
    @keras.saving.register_keras_serializable(package="tests")
    class MyEncoder(keras_hub.layers.TransformerEncoder):
        pass

    inputs = keras.Input((4, 8))
    x = L.Dense(8, name="project")(inputs)
    x = MyEncoder(intermediate_dim=16, num_heads=2, name="mine")(x)
    x = L.GlobalAveragePooling1D()(L.Dense(6, name="hidden")(x))
    model = keras.Model(inputs, L.Dense(2, name="head")(x))
    with pytest.raises(ValueError, match="'mine' of type MyEncoder"):
        tfprune.prune_channels(model, HALF)
    with pytest.warns(UserWarning, match="mine"):
        pruned = tfprune.prune_channels(model, HALF, unsupported="keep")
    assert tfprune.trim(pruned).get_layer("hidden").units == 3


def test_a_trimmed_task_fits_its_class_built_with_the_new_width():
    keras.utils.set_random_seed(0)
    task = keras_hub.models.GPT2CausalLM(keras_hub.models.GPT2Backbone(**TINY), None)
    small = tfprune.trim(tfprune.prune_channels(task, HALF))
    rebuilt = keras_hub.models.GPT2CausalLM(
        keras_hub.models.GPT2Backbone(**(TINY | {"intermediate_dim": 16})), None
    )
    rebuilt.set_weights(small.get_weights())
    prompt = {
        "token_ids": np.array([[5, 9, 3] + [0] * 5]),
        "padding_mask": np.array([[1] * 3 + [0] * 5]),
    }
    _assert_same(rebuilt.predict(prompt, verbose=0), small.predict(prompt, verbose=0))
    ids = keras.ops.convert_to_numpy(
        rebuilt.generate(prompt, max_length=8, stop_token_ids=None)["token_ids"]
    )
    assert ids.shape == (1, 8) and list(ids[0, :3]) == [5, 9, 3]
