"""OWL allocation in one shot: blocks (or layers) whose Wanda scores hold more outliers keep
more weights, within the target ± the spread, with the total exact."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from llm_families import SEQUENCE, VOCABULARY, causal_lm

import tfprune
from tfprune.oneshot.owl import SPREAD


def mlp() -> keras.Model:
    keras.utils.set_random_seed(0)
    layers = [keras.Input((16,))]
    layers += [keras.layers.Dense(16, activation="relu", name=f"fc{i}") for i in range(4)]
    return keras.Sequential(layers)


def rows_with_outliers(rows: int = 256) -> np.ndarray:
    # Two input features 30x larger than the rest: fc0's scores hold the outliers.
    x = np.random.default_rng(1).standard_normal((rows, 16)).astype("float32")
    x[:, :2] *= 30.0
    return x


def kernels(model) -> dict:
    return {
        w.path: np.asarray(w)
        for w in tfprune.strip_pruning(model).weights
        if w.path.endswith("kernel") and "embedding" not in w.path
    }


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
def test_owl_gives_the_layer_with_outliers_fewer_zeros_and_keeps_the_total(method):
    model, x = mlp(), rows_with_outliers()
    pruned, stats = tfprune.prune_one_shot(
        model, x, 0.6, method=method, allocation="owl", return_stats=True
    )
    levels = {row.name.split("/")[0]: row.sparsity for row in stats}
    assert levels["fc0"] == min(levels.values()) < 0.6
    assert all(0.6 - 2 * SPREAD - 1e-9 <= s <= 0.6 + 2 * SPREAD + 1e-9 for s in levels.values())
    weights = kernels(pruned)
    zeros = sum(int((w == 0).sum()) for w in weights.values())
    assert zeros == round(0.6 * sum(w.size for w in weights.values()))
    # The wrappers' schedules hold their own sparsity: fine-tuning keeps the allocation.
    x_fit = rows_with_outliers(64)
    pruned.compile("adam", "mse")
    pruned.fit(
        x_fit, np.zeros((64, 16)), epochs=1, verbose=0, callbacks=[tfprune.UpdatePruningStep()]
    )
    after = {k.split("/")[0]: float((v == 0).mean()) for k, v in kernels(pruned).items()}
    assert after == pytest.approx(levels, abs=1 / 256)


def test_owl_on_a_decoder_llm_gives_each_block_its_sparsity():
    lm = causal_lm("Llama")
    ids = np.random.default_rng(0).integers(1, VOCABULARY, (16, SEQUENCE)).astype("int32")
    data = {"token_ids": ids, "padding_mask": np.ones((16, SEQUENCE), bool)}
    pruned, stats = tfprune.prune_one_shot(
        lm, data, 0.5, method="wanda", allocation="owl", return_stats=True, in_place=True
    )
    blocks = {}
    for row in stats:
        if "transformer_layer" in row.name:
            block = row.name.split("transformer_layer_")[1].split("/")[0]
            blocks.setdefault(block, set()).add(round(row.sparsity, 2))
    assert len(blocks) == 2 and all(len(levels) == 1 for levels in blocks.values())
    weights = [w for k, w in kernels(pruned).items() if "transformer_layer" in k]
    zeros = sum(int((w == 0).sum()) for w in weights)
    assert zeros == round(0.5 * sum(w.size for w in weights))


def test_owl_arguments_are_checked():
    model, x = mlp(), rows_with_outliers(16)
    with pytest.raises(ValueError, match="allocation"):
        tfprune.prune_one_shot(model, x, 0.5, allocation="global-ish")
    with pytest.raises(ValueError, match="owl"):
        tfprune.prune_one_shot(model, x, None, pattern=(2, 4), allocation="owl")
