"""Magnitude masks: which entries of a weight to prune at a given sparsity.

Pure functions, no state, the same on every Keras backend. Masks are computed eagerly between
training steps, only at mask-update steps: the weight is copied to the host once and the k-th
magnitude is found by selection (numpy's O(n) introselect), not by sorting. On the host this is
tens of times faster than the same work dispatched op by op to a backend, which is what keeps
mask updates from showing up in training time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from keras import ops

__all__ = [
    "num_pruned",
    "kth_smallest",
    "magnitude_mask",
    "magnitude_masks",
    "count_nonzero",
    "sparsity",
]


def num_pruned(size: int, sparsity: float) -> int:
    """Returns how many of `size` entries are pruned at `sparsity`: `round(sparsity * size)`."""
    return min(size, max(0, round(sparsity * size)))


def kth_smallest(values: np.ndarray, k: int) -> float:
    """Returns the `k`-th smallest entry (1-based) of a 1-D array by selection, without sorting.

    Args:
        values: 1-D array with `n` entries, no NaN.
        k: Rank of the wanted entry, in [1, n].

    Returns:
        `sort(values)[k - 1]`, found in O(n).

    Raises:
        ValueError: If `k` is out of range.
    """
    n = int(values.shape[0])
    if not 1 <= k <= n:
        raise ValueError(f"Argument `k` must be in [1, {n}]. Received: k={k}")
    return values[np.argpartition(values, k - 1)[k - 1]]


def magnitude_mask(weight: Any, sparsity: float, *, name: str = "weight") -> np.ndarray:
    """Returns the 0/1 mask that prunes the `round(sparsity * n)` smallest-magnitude entries.

    Ties at the threshold are broken by position: the entries that come first in row-major
    order are pruned first, so the result is the same on every backend and every run.

    Args:
        weight: The weight: a tensor of any backend or a numpy array, of any shape (scalars and
            empty tensors included).
        sparsity: Fraction of entries to prune, in [0, 1].
        name: Name used in error messages. Defaults to "weight".

    Returns:
        A numpy array of the weight's shape and dtype holding 0 at pruned entries, 1 elsewhere.

    Raises:
        ValueError: If `sparsity` is out of range or the weight holds NaN or Inf values.

    Example:

    >>> w = np.array([[0.5, -0.1], [0.3, -2.0]], dtype="float32")
    >>> magnitude_mask(w, 0.5).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"Argument `sparsity` must be in [0, 1]. Received: sparsity={sparsity}")
    host = np.asarray(ops.convert_to_numpy(weight))
    shape, size = host.shape, host.size
    k = num_pruned(size, sparsity)
    if size == 0 or k == 0:
        return np.ones(shape, dtype=host.dtype)
    magnitudes = np.abs(host.astype(np.float32)).reshape(size)
    finite = int(np.count_nonzero(np.isfinite(magnitudes)))
    if finite != size:
        raise ValueError(
            f"Cannot compute a magnitude mask for {name}: it holds {size - finite} NaN or Inf "
            f"value(s) out of {size}. Training has diverged; lower the learning rate or check "
            "the data."
        )
    zeros = magnitudes == 0
    z = int(np.count_nonzero(zeros))
    if 0 < z <= k:
        # Entries pruned before are zeros and stay pruned: the rest are chosen among the
        # others only (the same entries as choosing among all, and at 90% ten times less work).
        rest = np.flatnonzero(~zeros)
        pruned = zeros
        if k > z:
            pruned = zeros.copy()
            pruned[rest[_smallest(magnitudes[rest], k - z)]] = True
    else:
        pruned = _smallest(magnitudes, k)
    return (~pruned).reshape(shape).astype(host.dtype)


def _smallest(magnitudes: np.ndarray, k: int) -> np.ndarray:
    """Boolean selector of the `k` smallest entries, ties taken in order of position."""
    threshold = kth_smallest(magnitudes, k)
    below = magnitudes < threshold
    still = k - int(np.count_nonzero(below))
    ties = magnitudes == threshold
    if int(np.count_nonzero(ties)) == still:
        return below | ties
    return below | (ties & (np.cumsum(ties) <= still))


def magnitude_masks(
    weights: list[Any], sparsity: float, *, names: list[str] | None = None
) -> list[np.ndarray]:
    """Masks for several weights pruned together: one threshold, `round(sparsity * n)` in all.

    The weights are taken as one vector (each flattened in row-major order, in list order), so
    ties at the threshold are broken by that position; each mask has its weight's shape.

    Args:
        weights: Tensors or arrays of any shapes.
        sparsity: Fraction of all their entries to prune, in [0, 1].
        names: Names used in error messages, one per weight. Defaults to "weight <i>".

    Returns:
        One 0/1 numpy array per weight, of its shape and dtype.

    Raises:
        ValueError: If `sparsity` is out of range or a weight holds NaN or Inf values.

    Example:

    >>> big, small = np.array([3.0, -2.0, 1.0]), np.array([0.5, 0.1])
    >>> [m.tolist() for m in magnitude_masks([big, small], 0.4)]
    [[1.0, 1.0, 1.0], [0.0, 0.0]]
    """
    hosts = finite_hosts(weights, names)
    if not hosts:
        return []
    joined = np.concatenate([h.astype(np.float32).reshape(-1) for h in hosts])
    flat = magnitude_mask(joined, sparsity, name="the weights pruned together")
    masks, start = [], 0
    for host in hosts:
        masks.append(flat[start : start + host.size].reshape(host.shape).astype(host.dtype))
        start += host.size
    return masks


def finite_hosts(weights: list[Any], names: list[str] | None) -> list[np.ndarray]:
    """The weights on the host; a `ValueError` naming the first that holds NaN or Inf."""
    hosts = [np.asarray(ops.convert_to_numpy(w)) for w in weights]
    names = names or [f"weight {i}" for i in range(len(hosts))]
    for host, name in zip(hosts, names, strict=True):
        if host.size and not np.all(np.isfinite(host)):
            bad = int(host.size - np.count_nonzero(np.isfinite(host)))
            raise ValueError(
                f"Cannot compute a magnitude mask for {name}: it holds {bad} NaN or Inf value(s) "
                f"out of {host.size}. Training has diverged; lower the learning rate or check "
                "the data."
            )
    return hosts


def count_nonzero(values: Any) -> tuple[int, int]:
    """Returns `(non-zero entries, entries)` over one tensor or array, or a list of them.

    Tensors of any backend are copied to the host once; counts are exact integers.

    Example:

    >>> count_nonzero([np.array([0.0, 1.5]), np.zeros((2, 2), dtype="uint8")])
    (1, 6)
    """
    items = values if isinstance(values, (list, tuple)) else [values]
    nonzero = total = 0
    for item in items:
        host = np.asarray(ops.convert_to_numpy(item))
        nonzero += int(np.count_nonzero(host))
        total += int(host.size)
    return nonzero, total


def sparsity(values: Any) -> float:
    """Returns the fraction of zero entries over one tensor or array, or a list of them.

    Example:

    >>> sparsity(np.array([[0.0, 2.0], [0.0, 0.0]]))
    0.75
    """
    nonzero, total = count_nonzero(values)
    return 1.0 - nonzero / total if total else 0.0
