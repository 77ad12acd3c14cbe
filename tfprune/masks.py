"""Magnitude masks: which entries of a weight to prune at a given sparsity.

Pure functions of tensors, written with `keras.ops` only, so they run on every Keras backend.
They run eagerly, at mask-update steps only, never inside the compiled training step.
"""

from __future__ import annotations

import math
from typing import Any

from keras import ops

__all__ = ["num_pruned", "kth_smallest", "magnitude_mask"]

# Below this many entries a full sort is as cheap as anything cleverer.
_SORT_LIMIT = 1 << 16
# Sample size for the selection: large enough that the k-th value is bracketed tightly.
_SAMPLE = 1 << 15


def num_pruned(size: int, sparsity: float) -> int:
    """Returns how many of `size` entries are pruned at `sparsity`: `round(sparsity * size)`."""
    return min(size, max(0, round(sparsity * size)))


def kth_smallest(values: Any, k: int) -> Any:
    """Returns the `k`-th smallest entry (1-based) of a 1-D tensor without sorting all of it.

    A strided sample of the values is sorted to bracket the answer between two sample
    quantiles; only the values inside that bracket (a small fraction) are then sorted. If the
    bracket misses, which a skewed sample can cause, a full sort gives the exact answer anyway.

    Args:
        values: 1-D float tensor with `n` entries, no NaN.
        k: Rank of the wanted entry, in [1, n].

    Returns:
        A scalar tensor equal to `sort(values)[k - 1]`.
    """
    n = int(values.shape[0])
    if not 1 <= k <= n:
        raise ValueError(f"Argument `k` must be in [1, {n}]. Received: k={k}")
    if n <= _SORT_LIMIT:
        return ops.sort(values)[k - 1]
    sample = ops.sort(values[:: n // _SAMPLE])
    m = int(sample.shape[0])
    centre = k / n * m
    margin = 4.0 * math.sqrt(m) + 16.0
    lo_index = int(centre - margin)
    hi_index = int(centre + margin) + 1
    in_bracket = ops.ones_like(values, dtype="bool")
    below = 0
    if lo_index > 0:
        lo = sample[lo_index]
        below = int(ops.sum(ops.cast(values < lo, "int32")))
        in_bracket = values >= lo
    if hi_index < m:
        in_bracket = ops.logical_and(in_bracket, values <= sample[hi_index])
    inside = int(ops.sum(ops.cast(in_bracket, "int32")))
    if below < k <= below + inside:
        (indices,) = ops.where(in_bracket)
        candidates = ops.take(values, indices)
        low, high = ops.min(candidates), ops.max(candidates)
        if bool(low == high):
            return low
        return ops.sort(candidates)[k - below - 1]
    return ops.sort(values)[k - 1]


def magnitude_mask(weight: Any, sparsity: float, *, name: str = "weight") -> Any:
    """Returns the 0/1 mask that prunes the `round(sparsity * n)` smallest-magnitude entries.

    Ties at the threshold are broken by position: the entries that come first in row-major
    order are pruned first, so the result is the same on every backend and every run.

    Args:
        weight: The weight tensor (any shape, scalars and empty tensors included).
        sparsity: Fraction of entries to prune, in [0, 1].
        name: Name used in error messages. Defaults to "weight".

    Returns:
        A tensor of the weight's shape and dtype holding 0 at pruned entries and 1 elsewhere.

    Raises:
        ValueError: If `sparsity` is out of range or the weight holds NaN or Inf values.

    Example:

    >>> import numpy as np
    >>> w = np.array([[0.5, -0.1], [0.3, -2.0]], dtype="float32")
    >>> ops.convert_to_numpy(magnitude_mask(w, 0.5)).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"Argument `sparsity` must be in [0, 1]. Received: sparsity={sparsity}")
    weight = ops.convert_to_tensor(weight)
    shape = tuple(weight.shape)
    size = math.prod(shape)
    k = num_pruned(size, sparsity)
    if size == 0 or k == 0:
        return ops.ones(shape, dtype=weight.dtype)
    magnitudes = ops.reshape(ops.abs(ops.cast(weight, "float32")), (size,))
    if not bool(ops.all(ops.isfinite(magnitudes))):
        bad = size - int(ops.sum(ops.cast(ops.isfinite(magnitudes), "int32")))
        raise ValueError(
            f"Cannot compute a magnitude mask for {name}: it holds {bad} NaN or Inf value(s) "
            f"out of {size}. Training has diverged; lower the learning rate or check the data."
        )
    threshold = kth_smallest(magnitudes, k)
    below = magnitudes < threshold
    still = k - int(ops.sum(ops.cast(below, "int32")))
    ties = magnitudes == threshold
    tie_rank = ops.cumsum(ops.cast(ties, "int32"))
    pruned = ops.logical_or(below, ops.logical_and(ties, tie_rank <= still))
    keep = ops.cast(ops.logical_not(pruned), weight.dtype)
    return ops.reshape(keep, shape)
