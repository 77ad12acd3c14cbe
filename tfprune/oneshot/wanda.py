"""Wanda (Sun et al. 2023): prune by `|w| * ||x||`, comparing the weights of each output.

On a weight as a matrix `W` `[outputs, inputs]` (see `tfprune.masks.views`), each entry scores
`|w_ij| * ||X_j||` with `X_j` the j-th input over the calibration rows; no weight is updated.
"""

from __future__ import annotations

import numpy as np

from tfprune.masks.magnitude import num_pruned

__all__ = ["wanda_scores", "wanda_mask"]


def wanda_scores(matrix: np.ndarray, squares: np.ndarray) -> np.ndarray:
    """`|w_ij| * ||X_j||` for `matrix` `[outputs, inputs]`, from each input's sum of squares."""
    return np.abs(matrix) * np.sqrt(squares)[None, :]


def wanda_mask(matrix: np.ndarray, squares: np.ndarray, sparsity: float) -> np.ndarray:
    """Wanda's mask of `matrix` `[outputs, inputs]` (True = pruned): within each output, the
    smallest scores; `round(sparsity * size)` in all, the remainder over outputs going to the
    smallest next-in-line scores. Ties go to the earlier input.

    Example:

    >>> matrix = np.array([[1.0, 2.0], [3.0, 0.5]])
    >>> wanda_mask(matrix, np.array([4.0, 1.0]), 0.5).tolist()  # scores [[2, 2], [6, 0.5]]
    [[True, False], [False, True]]
    """
    score = wanda_scores(matrix, squares)
    outputs, inputs = score.shape
    k = num_pruned(score.size, sparsity)
    base, extra = divmod(k, outputs)
    pruned = smallest_per_row(score, base)
    if extra:
        # Each output's next in line: its smallest score not yet pruned (the earliest on ties).
        rest = np.where(pruned, np.inf, score)
        nxt_at = np.argmin(rest, axis=1)
        nxt = rest[np.arange(outputs), nxt_at]
        rows = np.argsort(nxt, kind="stable")[:extra]
        pruned[rows, nxt_at[rows]] = True
    return pruned


def smallest_per_row(score: np.ndarray, count: int) -> np.ndarray:
    """True at the `count` smallest entries of each row of `score`, ties to the earlier
    column: a stable sort's first `count`, found by partition (linear time, not a sort).

    Example:

    >>> smallest_per_row(np.array([[3.0, 1.0, 1.0, 0.0]]), 2).tolist()
    [[False, True, False, True]]
    """
    rows, cols = score.shape
    if count <= 0:
        return np.zeros(score.shape, bool)
    if count >= cols:
        return np.ones(score.shape, bool)
    # The count-th smallest value of each row; everything below it is pruned, and of the
    # entries equal to it, as many as are still needed, earliest first.
    kth = np.partition(score, count - 1, axis=1)[:, count - 1 : count]
    below = score < kth
    tied = score == kth
    need = count - below.sum(axis=1, keepdims=True)
    if np.array_equal(tied.sum(axis=1, keepdims=True), need):  # no tie to break (usual)
        return below | tied
    return below | (tied & (np.cumsum(tied, axis=1) <= need))
