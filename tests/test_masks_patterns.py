"""Block and N:M masks: exact counts, the patterns, and tfmot's own masks on the same weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tfprune.masks import patterns as masks

ORACLE = os.path.join(os.path.dirname(__file__), "tfmot_mask_oracle.py")

WEIGHTS = {
    "dense": np.random.default_rng(0).normal(size=(64, 32)).astype("float32"),
    "conv": np.random.default_rng(1).normal(size=(3, 3, 8, 16)).astype("float32"),
    "odd": np.random.default_rng(2).normal(size=(30, 10)).astype("float32"),
}
BLOCK_CASES = [
    dict(weight="dense", block=block, pooling=pooling, sparsity=sparsity)
    for block in [(1, 4), (4, 1), (2, 2), (1, 16), (16, 1)]
    for pooling in ["AVG", "MAX"]
    for sparsity in [0.5, 0.8]
]
M_BY_N_CASES = [
    dict(weight=name, m_by_n=m_by_n)
    for name in ["dense", "conv", "odd"]
    for m_by_n in [(2, 4), (1, 4), (4, 8)]
]
CASES = BLOCK_CASES + M_BY_N_CASES


@pytest.fixture(scope="module")
def tfmot_masks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("oracle")
    np.savez(folder / "weights.npz", **WEIGHTS)
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
    subprocess.run(
        [
            sys.executable,
            ORACLE,
            str(folder / "weights.npz"),
            str(folder / "masks.npz"),
            json.dumps(CASES),
        ],
        env=env,
        capture_output=True,
        timeout=300,
        check=True,
    )
    with np.load(folder / "masks.npz") as data:
        return {int(k): data[k] for k in data}


def ours(case):
    weight = WEIGHTS[case["weight"]]
    if "m_by_n" in case:
        return masks.m_by_n_mask(weight, case["m_by_n"])
    return masks.block_masks([weight], case["sparsity"], case["block"], pooling=case["pooling"])[0]


@pytest.mark.parametrize("index", range(len(CASES)), ids=[json.dumps(c) for c in CASES])
def test_the_same_mask_as_tfmot_on_the_same_weights(tfmot_masks, index):
    np.testing.assert_array_equal(ours(CASES[index]), tfmot_masks[index])


@pytest.mark.parametrize("block", [(1, 4), (4, 1), (3, 5), (16, 1), (1, 16)])
@pytest.mark.parametrize("shape", [(30, 10), (7,), (2, 3, 5, 6), (100, 10)])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 1.0])
def test_block_masks_prune_round_s_blocks_whole_on_any_shape(block, shape, sparsity):
    weight = np.random.default_rng(3).normal(size=shape).astype("float32")
    mask = masks.block_masks([weight], sparsity, block)[0]
    assert mask.shape == weight.shape
    matrix = mask.reshape(-1, shape[-1]) if len(shape) > 1 else mask.reshape(1, -1)
    rows, cols = matrix.shape
    blocks = [
        matrix[i : i + block[0], j : j + block[1]]
        for i in range(0, rows, block[0])
        for j in range(0, cols, block[1])
    ]
    assert all(b.min() == b.max() for b in blocks)  # every block whole
    assert sum(b.max() == 0 for b in blocks) == round(sparsity * len(blocks))


def test_blocks_pruned_together_share_one_threshold():
    big = np.full((4, 4), 5.0, dtype="float32")
    small = np.full((4, 4), 0.5, dtype="float32")
    first, second = masks.block_masks([big, small], 0.5, (2, 2))
    assert first.all() and not second.any()


def test_earlier_zero_blocks_stay_pruned():
    weight = np.random.default_rng(4).normal(size=(16, 16)).astype("float32")
    first = masks.block_masks([weight], 0.5, (4, 4))[0]
    again = masks.block_masks([weight * first], 0.75, (4, 4))[0]
    assert not np.any(again > first)


@pytest.mark.parametrize("m_by_n", [(2, 4), (1, 2), (3, 4), (4, 8)])
@pytest.mark.parametrize("shape", [(16, 6), (3, 3, 8, 4), (5, 12, 7), (10, 3)])
def test_m_by_n_masks_hold_the_pattern_and_keep_n_minus_m_per_group(m_by_n, shape):
    weight = np.random.default_rng(5).normal(size=shape).astype("float32")
    mask = masks.m_by_n_mask(weight, m_by_n)
    assert masks.holds_m_by_n(weight * mask, m_by_n)
    m, n = m_by_n
    inputs = shape[-2]
    groups_per_row = -(-inputs // n)
    kept_per_row = sum(min(n - m, min(n, inputs - g * n)) for g in range(groups_per_row))
    rows = mask.size // inputs
    assert int(mask.sum()) == rows * kept_per_row
    # What it keeps are the largest of each group.
    lite = np.moveaxis(weight, -1, 0).reshape(-1, inputs)
    kept = np.moveaxis(mask, -1, 0).reshape(-1, inputs).astype(bool)
    for row, keep in zip(np.abs(lite), kept, strict=True):
        for g in range(0, inputs, n):
            group, chosen = row[g : g + n], keep[g : g + n]
            if chosen.any() and (~chosen).any():
                assert group[chosen].min() >= group[~chosen].max()


def test_m_by_n_in_litert_layout_and_refusals():
    weight = np.random.default_rng(6).normal(size=(3, 3, 8, 4)).astype("float32")
    pruned = weight * masks.m_by_n_mask(weight, (2, 4))
    lite = np.transpose(pruned, (3, 0, 1, 2))  # [C_out, H, W, C_in], as LiteRT stores it
    assert masks.holds_m_by_n(lite, (2, 4), input_last=True)
    assert not masks.holds_m_by_n(weight, (2, 4))
    with pytest.raises(ValueError, match="input channels"):
        masks.m_by_n_mask(np.ones(8, "float32"), (2, 4))
    with pytest.raises(ValueError, match="NaN or Inf"):
        masks.m_by_n_mask(np.full((4, 4), np.nan, "float32"), (2, 4), name="w")
    with pytest.raises(ValueError, match="NaN or Inf"):
        masks.block_masks([np.full((4, 4), np.inf, "float32")], 0.5, (2, 2))
