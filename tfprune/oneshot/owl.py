"""OWL (Yin et al. 2024, "Outlier Weighed Layerwise Sparsity"): blocks whose Wanda scores hold
more outliers keep more weights, the total sparsity unchanged.

For each group of weights (a transformer block, or one layer where the model has no blocks),
the outlier ratio is the share of its Wanda scores `|w| * ||x||` (all its weights together)
above `threshold` times their mean, on the dense model's inputs. The ratios are scaled to a
range of `2 * spread` and centred, so a group's sparsity is the target plus or minus at most
`spread`; then shifted so that the weights' sparsities average, by size, to the target, and
rounded to whole counts whose sum is exactly `round(sparsity * total)`.
"""

from __future__ import annotations

import numpy as np

from tfprune.masks.magnitude import num_pruned

__all__ = ["THRESHOLD", "SPREAD", "outlier_ratio", "group_sparsities", "exact_counts"]

# The paper's defaults for LLaMA: outliers above 5x the mean score, sparsities within ±0.08.
THRESHOLD = 5.0
SPREAD = 0.08


def outlier_ratio(scores: list[np.ndarray], threshold: float = THRESHOLD) -> float:
    """The share of all entries of `scores` above `threshold` times their mean.

    Example:

    >>> outlier_ratio([np.array([1.0, 1.0, 1.0, 9.0])], threshold=2.0)
    0.25
    """
    flat = np.concatenate([np.ravel(s) for s in scores])
    if flat.size == 0:
        return 0.0
    return float(np.mean(flat > threshold * np.mean(flat)))


def group_sparsities(
    ratios: list[float], sizes: list[int], sparsity: float, spread: float = SPREAD
) -> list[float]:
    """Each group's sparsity from its outlier ratio: more outliers, lower sparsity, within
    `sparsity ± spread` before the shift that makes the size-weighted mean `sparsity`; in
    [0, 1].

    Example:

    >>> [round(s, 3) for s in group_sparsities([0.0, 0.1], [10, 10], 0.5, spread=0.1)]
    [0.6, 0.4]
    """
    r = np.asarray(ratios, np.float64)
    n = np.asarray(sizes, np.float64)
    span = r.max() - r.min() if r.size else 0.0
    scaled = (r - r.min()) / span * 2 * spread if span > 0 else np.zeros_like(r)
    s = sparsity - (scaled - scaled.mean())
    s += sparsity - float(np.sum(s * n) / max(np.sum(n), 1.0))
    return [float(v) for v in np.clip(s, 0.0, 1.0)]


def exact_counts(sparsities: list[float], sizes: list[int], sparsity: float) -> list[int]:
    """Whole counts of pruned entries per weight, near `sparsities[i] * sizes[i]`, summing to
    exactly `round(sparsity * sum(sizes))`: the floors, then one more for the largest
    remainders (or one fewer for the smallest).

    Example:

    >>> exact_counts([0.55, 0.45], [10, 10], 0.5)
    [6, 4]
    """
    want = np.asarray(sparsities, np.float64) * np.asarray(sizes, np.float64)
    counts = np.floor(want).astype(np.int64)
    counts = np.minimum(counts, sizes)
    missing = num_pruned(int(np.sum(sizes)), sparsity) - int(counts.sum())
    remainder = want - counts
    order_up, order_down = (
        np.argsort(-remainder, kind="stable"),
        np.argsort(remainder, kind="stable"),
    )
    while missing != 0:  # ends: 0 <= round(sparsity * total) <= total
        for i in order_up if missing > 0 else order_down:
            if missing > 0 and counts[i] < sizes[i]:
                counts[i] += 1
                missing -= 1
            elif missing < 0 and counts[i] > 0:
                counts[i] -= 1
                missing += 1
            if missing == 0:
                break
    return [int(c) for c in counts]
