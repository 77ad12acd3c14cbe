"""One-shot pruning of KerasHub mixtures of experts: each expert from the tokens routed to it."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops
from llm_families import SEQUENCE, VOCABULARY, causal_lm

import tfprune
from tfprune.calibration.recorder import Recorder
from tfprune.models.experts import expert_bank, is_expert_bank
from tfprune.models.walk import walk
from tfprune.oneshot.wanda import wanda_mask

pytestmark = pytest.mark.slow


def tokens(rows: int = 16) -> dict:
    ids = np.random.default_rng(0).integers(1, VOCABULARY, (rows, SEQUENCE)).astype("int32")
    return {"token_ids": ids, "padding_mask": np.ones((rows, SEQUENCE), bool)}


def banks(model) -> list:
    found = [layer for layer in walk(model) if is_expert_bank(layer)]
    assert found
    return [expert_bank(model, layer) for layer in found]


def expert_rows(stats, kernel: str = "") -> list:
    """The report rows of the first transformer layer's experts (of one kernel, or all)."""
    return [
        r
        for r in stats
        if r.name.startswith("transformer_layer_0/") and f"{kernel}/expert_" in r.name
    ]


@pytest.mark.parametrize("name", ["Mixtral", "Qwen3Moe"])
def test_each_expert_is_pruned_from_the_tokens_routed_to_it(name):
    keras.utils.set_random_seed(0)
    lm = causal_lm(name)
    x = tokens()
    pruned, stats = tfprune.prune_one_shot(lm, x, 0.5, method="wanda", return_stats=True)
    bank = banks(pruned)[0]
    # The bank's inputs in the pruned model are the ones it was pruned from: every layer
    # before it was pruned first, and it does not feed itself.
    seen = []
    with Recorder([bank.layer], lambda _, t: seen.append(ops.convert_to_numpy(t))):
        pruned(x, training=False)
    inputs = np.concatenate([t.reshape(-1, t.shape[-1]) for t in seen])
    routed = ops.convert_to_numpy(bank.routed(inputs))
    assert routed.sum(axis=1).tolist() == [bank.top_k] * len(inputs)
    gate = bank.layer._expert_feedforward_gate_dense
    kept = ops.convert_to_numpy(gate) != 0
    rows = expert_rows(stats, "expert_feedforward_gate_dense")
    assert [r.name.rsplit("/", 1)[-1] for r in rows] == [f"expert_{e}" for e in range(4)]
    differs = 0
    for e, row in enumerate(rows):
        mine = inputs[routed[:, e]]
        assert row.rows == len(mine) > 0 and row.method == "wanda"
        # The pruned gate holds the weights Wanda kept; recompute its mask from the original.
        original = ops.convert_to_numpy(banks(lm)[0].layer._expert_feedforward_gate_dense)[e]
        # Wanda's matrices are [outputs, inputs].
        expected = ~wanda_mask(original.T, np.sum(mine.astype(np.float64) ** 2, axis=0), 0.5).T
        np.testing.assert_array_equal(kept[e], expected & (original != 0))
        every = ~wanda_mask(original.T, np.sum(inputs.astype(np.float64) ** 2, axis=0), 0.5).T
        differs += int(np.any(every != expected))
    assert differs  # all tokens would have chosen other weights
    assert sum(r.rows for r in rows) == bank.top_k * len(inputs)


def test_an_expert_no_token_reaches_is_pruned_by_magnitude_and_named():
    keras.utils.set_random_seed(0)
    lm = causal_lm("Mixtral")
    bank = banks(lm)[0]
    # All router logits equal: top-k takes the lowest indices, so experts 2 and 3 get nothing.
    bank.router.kernel.assign(np.zeros(bank.router.kernel.shape, "float32"))
    with pytest.warns(UserWarning, match=r"expert\(s\) 2, 3 of layer 'experts'"):
        pruned, stats = tfprune.prune_one_shot(lm, tokens(), 0.5, return_stats=True)
    first = expert_rows(stats)
    assert len(first) == 3 * 4  # gate, up and down kernels, 4 experts each
    for row in first:
        e = int(row.name.rsplit("_", 1)[-1])
        if e >= 2:
            assert (row.method, row.rows, row.error) == ("magnitude", 0, None)
            assert row.note == f"no calibration token was routed to expert {e}"
        else:
            assert row.method == "sparsegpt" and row.rows == 16 * SEQUENCE and row.note is None
            assert 0 <= row.error <= row.error_without_update
        assert row.sparsity == 0.5
    # The unreached experts keep their largest weights.
    original = ops.convert_to_numpy(bank.layer._expert_feedforward_output_dense)[3]
    kernel = ops.convert_to_numpy(banks(pruned)[0].layer._expert_feedforward_output_dense)[3]
    kept = np.abs(original)[kernel != 0]
    assert kept.min() >= np.abs(original)[kernel == 0].max()
