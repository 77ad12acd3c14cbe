"""Exact-k magnitude masks."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

from tfprune.masks import magnitude as masks


def as_np(x):
    return ops.convert_to_numpy(x)


@pytest.mark.parametrize("shape", [(), (1,), (7,), (13, 9), (3, 3, 4, 5), (300, 300)])
@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.5, 0.9, 0.97])
def test_mask_prunes_exactly_round_s_n_entries(shape, sparsity):
    w = np.random.default_rng(0).standard_normal(shape).astype("float32")
    mask = as_np(masks.magnitude_mask(w, sparsity))
    assert mask.shape == w.shape
    assert int((mask == 0).sum()) == round(sparsity * w.size)


def test_mask_prunes_the_smallest_magnitudes():
    w = np.random.default_rng(1).standard_normal((50, 40)).astype("float32")
    mask = as_np(masks.magnitude_mask(w, 0.6))
    assert np.abs(w[mask == 0]).max() <= np.abs(w[mask == 1]).min()


def test_ties_are_broken_by_position_deterministically():
    w = np.ones((4, 5), dtype="float32")
    mask = as_np(masks.magnitude_mask(w, 0.5))
    assert mask.reshape(-1).tolist() == [0.0] * 10 + [1.0] * 10


def test_already_pruned_entries_stay_pruned():
    w = np.random.default_rng(2).standard_normal((100, 100)).astype("float32")
    first = as_np(masks.magnitude_mask(w, 0.5))
    second = as_np(masks.magnitude_mask(w * first, 0.8))
    assert np.all(second[first == 0] == 0)


def test_large_weight_with_many_ties_stays_exact():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((700, 500)).astype("float32")
    w[:100] = 0.0  # a large block of ties at zero
    for s in (0.1, 0.5, 0.93):
        mask = as_np(masks.magnitude_mask(w, s))
        k = round(s * w.size)
        assert int((mask == 0).sum()) == k
        kth = np.sort(np.abs(w).ravel())[k - 1]
        assert np.all(np.abs(w[mask == 1]) >= kth)


@pytest.mark.parametrize("k", [1, 2, 5000, 99_999, 100_000])
def test_kth_smallest_matches_sort(k):
    v = np.random.default_rng(4).random(100_000).astype("float32")
    got = float(masks.kth_smallest(v, k))
    assert got == np.sort(v)[k - 1]


def test_kth_smallest_on_skewed_values_is_exact():
    v = np.concatenate([np.zeros(90_000), np.linspace(1, 2, 10_000)]).astype("float32")
    for k in (89_999, 90_000, 90_001, 95_000):
        assert float(masks.kth_smallest(v, k)) == np.sort(v)[k - 1]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_weight_raises_with_its_name(bad):
    w = np.ones((3, 3), dtype="float32")
    w[1, 1] = bad
    with pytest.raises(ValueError, match="kernel of fc1.*1 NaN or Inf"):
        masks.magnitude_mask(w, 0.5, name="kernel of fc1")


def test_empty_weight_gives_empty_mask():
    mask = as_np(masks.magnitude_mask(np.zeros((0, 4), "float32"), 0.5))
    assert mask.shape == (0, 4)


def test_sparsity_out_of_range_raises():
    with pytest.raises(ValueError, match="Received: sparsity=1.5"):
        masks.magnitude_mask(np.ones(3, "float32"), 1.5)


def test_mask_keeps_weight_dtype():
    w = np.random.default_rng(5).standard_normal((8, 8)).astype("float16")
    assert keras.backend.standardize_dtype(masks.magnitude_mask(w, 0.5).dtype) == "float16"


def test_mask_of_a_backend_tensor_matches_numpy():
    w = np.random.default_rng(6).standard_normal((40, 30)).astype("float32")
    np.testing.assert_array_equal(
        masks.magnitude_mask(ops.convert_to_tensor(w), 0.4), masks.magnitude_mask(w, 0.4)
    )


def test_kth_smallest_rejects_out_of_range_rank():
    with pytest.raises(ValueError, match="Received: k=0"):
        masks.kth_smallest(np.ones(3, "float32"), 0)


@pytest.mark.parametrize("zeros", [0.0, 0.3, 0.6])
@pytest.mark.parametrize("sparsity", [0.2, 0.5, 0.61, 0.9])
def test_mask_equals_a_stable_sort_whatever_is_already_zero(zeros, sparsity):
    """The shortcut that keeps earlier zeros and chooses among the rest picks the same
    entries as a stable sort of all magnitudes (ties, zeros included, in position order)."""
    rng = np.random.default_rng(7)
    w = rng.standard_normal((40, 50)).astype("float32").round(1)  # many ties
    w.reshape(-1)[rng.permutation(w.size)[: int(zeros * w.size)]] = 0.0
    k = round(sparsity * w.size)
    expected = np.ones(w.size, dtype="float32")
    expected[np.argsort(np.abs(w).reshape(-1), kind="stable")[:k]] = 0.0
    np.testing.assert_array_equal(masks.magnitude_mask(w, sparsity).reshape(-1), expected)
