"""Every KerasHub decoder family, tiny and random: pruned gradually and in one shot, stripped,
and generating with the family's own causal LM; pruned in place, saved and loaded."""

from __future__ import annotations

import keras
import keras_hub
import numpy as np
import pytest
from keras import ops
from llm_families import FAMILIES, MIXTURES, SEQUENCE, VOCABULARY, causal_lm

import tfprune
from tfprune.core.find import pruning_wrappers

SPARSITY = 0.5
PROMPT = {
    "token_ids": np.array([[5, 9, 0, 0, 0, 0, 0, 0]], "int32"),
    "padding_mask": np.array([[1, 1, 0, 0, 0, 0, 0, 0]], bool),
}


def tokens(rows: int = 8) -> dict:
    ids = np.random.default_rng(0).integers(1, VOCABULARY, (rows, SEQUENCE)).astype("int32")
    return {"token_ids": ids, "padding_mask": np.ones((rows, SEQUENCE), bool)}


def transformer_zero_share(model) -> float:
    """The share of zeros in the transformer layers' kernels (2-D and higher weights, biases
    left out: GPT-2's attention biases are [heads, head size])."""
    weights = [
        ops.convert_to_numpy(v)
        for layer in model.backbone.transformer_layers
        for v in layer.trainable_weights
        if len(v.shape) >= 2 and "bias" not in v.path.rsplit("/", 1)[-1]
    ]
    return sum(int(np.sum(w == 0)) for w in weights) / sum(w.size for w in weights)


def expert_kernels_of(model) -> list:
    """The stacked `[experts, inputs, outputs]` kernels of a mixture's transformer layers."""
    found = [
        v
        for layer in model.backbone.transformer_layers
        for v in layer.trainable_weights
        if "expert_feedforward" in v.path
    ]
    assert found and all(len(v.shape) == 3 for v in found)
    return found


def greedy(model):
    model.compile(sampler="greedy")
    prompt = dict(PROMPT)
    if isinstance(model, keras_hub.models.Gemma3CausalLM):
        # Gemma 3 returns its prompt's images: text alone is a batch of no images.
        prompt["images"] = np.zeros((1, 0, 16, 16, 3), "float32")
    return ops.convert_to_numpy(
        model.generate(prompt, max_length=SEQUENCE, stop_token_ids=None)["token_ids"]
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FAMILIES))
def test_each_family_prunes_gradually_strips_and_generates(name):
    keras.utils.set_random_seed(0)
    lm = causal_lm(name)
    x = tokens()
    schedule = tfprune.PolynomialDecay(0.0, SPARSITY, begin_step=0, end_step=1, frequency=1)
    pruned = tfprune.prune_low_magnitude(lm, schedule)
    assert pruned is not lm  # a copy: the original keeps its weights
    pruned.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        run_eagerly=True,
    )
    pruned.fit(
        x,
        x["token_ids"],
        batch_size=4,
        epochs=1,
        verbose=0,
        callbacks=[tfprune.UpdatePruningStep()],
    )
    for row in tfprune.sparsity_report(pruned):
        assert row.sparsity == pytest.approx(SPARSITY, abs=0.5 / row.nonzeros)
    stripped = tfprune.strip_pruning(pruned)
    assert not pruning_wrappers(stripped)
    fresh = causal_lm(name)
    fresh.set_weights(stripped.get_weights())
    np.testing.assert_allclose(
        fresh.predict(x, verbose=0), stripped.predict(x, verbose=0), atol=1e-5
    )
    ids = greedy(fresh)
    assert ids.shape == (1, SEQUENCE) and list(ids[0, :2]) == [5, 9]
    assert transformer_zero_share(fresh) == pytest.approx(SPARSITY, abs=0.01)
    if name in MIXTURES:  # each expert of a stacked kernel has its own exact count
        for kernel in expert_kernels_of(fresh):
            zeros = np.sum(ops.convert_to_numpy(kernel) == 0, axis=(1, 2))
            assert (zeros == round(SPARSITY * kernel.shape[1] * kernel.shape[2])).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FAMILIES))
def test_each_family_prunes_in_one_shot_by_each_method_unstructured_and_two_of_four(name):
    keras.utils.set_random_seed(0)
    lm = causal_lm(name)
    x = tokens(16)
    runs = [(m, p) for m in ("magnitude", "wanda", "sparsegpt") for p in (None, (2, 4))]
    for method, pattern in runs:
        pruned = tfprune.prune_one_shot(
            lm, x, None if pattern else SPARSITY, method=method, pattern=pattern
        )
        stripped = tfprune.strip_pruning(pruned)
        fresh = causal_lm(name)
        fresh.set_weights(stripped.get_weights())
        assert transformer_zero_share(fresh) == pytest.approx(SPARSITY, abs=0.01), method
        assert np.isfinite(fresh.predict(x, verbose=0)).all()
        if name in MIXTURES:  # experts pruned one by one, each from its own tokens
            for kernel in expert_kernels_of(fresh):
                zeros = np.sum(ops.convert_to_numpy(kernel) == 0, axis=(1, 2))
                assert (zeros == kernel.shape[1] * kernel.shape[2] // 2).all(), method


@pytest.mark.slow
@pytest.mark.parametrize("name", ["Llama", "Qwen3"])
def test_a_family_whose_layers_cannot_be_copied_is_pruned_in_place(name, tmp_path):
    keras.utils.set_random_seed(0)
    lm = causal_lm(name)
    x = tokens()
    variables = {id(v) for v in lm.weights}
    pruned = tfprune.prune_low_magnitude(lm, tfprune.ConstantSparsity(SPARSITY, 0), in_place=True)
    assert pruned is lm and isinstance(lm, type(causal_lm(name)))  # its own class
    wrappers = pruning_wrappers(lm)
    assert wrappers and all(id(v) in variables for w in wrappers for v in w.layer.weights)
    for wrapper in wrappers:
        wrapper.update_masks(SPARSITY)
    masked = greedy(lm)  # generate's cached path calls the wrappers too

    lm.save(tmp_path / "pruned.keras")
    loaded = keras.models.load_model(tmp_path / "pruned.keras")
    assert len(pruning_wrappers(loaded)) == len(wrappers)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), lm.predict(x, verbose=0), atol=1e-5)

    stripped = tfprune.strip_pruning(lm)
    assert stripped is lm and not pruning_wrappers(lm)
    assert transformer_zero_share(lm) == pytest.approx(SPARSITY, abs=0.01)
    np.testing.assert_array_equal(greedy(lm), masked)
