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
    outputs, _ = score.shape
    k = num_pruned(score.size, sparsity)
    base, extra = divmod(k, outputs)
    order = np.argsort(score, axis=1, kind="stable")
    pruned = np.zeros(score.shape, bool)
    np.put_along_axis(pruned, order[:, :base], True, axis=1)
    if extra:
        nxt = np.take_along_axis(score, order[:, base : base + 1], axis=1)[:, 0]
        rows = np.argsort(nxt, kind="stable")[:extra]
        pruned[rows, order[rows, base]] = True
    return pruned
