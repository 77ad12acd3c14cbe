"""SparseGPT (Frantar & Alistarh 2023): masks chosen from the inverse Hessian of a layer's
inputs, and the kept weights updated to reproduce the layer's outputs.

On a weight as a matrix `W` `[outputs, inputs]` (see `tfprune.masks.views`) with `H = X^T X`
over the calibration rows, SparseGPT prunes column block by column block, choosing each block's
mask from `w^2 / [H^-1]_jj^2` and spreading each pruned weight's error over the columns not yet
visited through the Cholesky factor of the damped inverse Hessian. Host numpy, float64,
deterministic.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tfprune.calibration.ridge import damped
from tfprune.masks.magnitude import num_pruned

__all__ = ["sparsegpt", "output_error", "output_errors"]


def _inverse_factor(gram: np.ndarray, dampening: float) -> tuple[np.ndarray, np.ndarray]:
    """The upper Cholesky factor `U` of the damped inverse Hessian (`U^T U = H^-1`), and which
    inputs were never non-zero (dead)."""
    h = gram.copy()
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    lower = np.linalg.cholesky(damped(h, dampening))
    inverse = np.linalg.inv(lower)
    return np.linalg.cholesky(inverse.T @ inverse).T, dead


def sparsegpt(
    matrix: np.ndarray,
    gram: np.ndarray,
    sparsity: float,
    *,
    m_by_n: tuple[int, int] | None = None,
    choose: Callable[[np.ndarray], np.ndarray] | None = None,
    block: int = 128,
    dampening: float = 0.01,
) -> tuple[np.ndarray, np.ndarray]:
    """SparseGPT on `matrix` `[outputs, inputs]` with `gram = X^T X`; returns the updated matrix
    (zeros where pruned) and the mask (True = pruned).

    Unstructured: each column block prunes its share of `round(sparsity * size)` (exact in all),
    the entries with the smallest `w^2 / [U]_jj^2` after the updates of earlier blocks; inputs
    never non-zero on the calibration data go first. N:M (`m_by_n`, groups of n consecutive
    columns): each group's m smallest, chosen when the group is reached. `choose`: a function
    from every entry's score `w^2 / [U]_jj^2` before any update (dead inputs 0) to the whole
    mask, chosen once (then only the weight update runs). `block` columns are pruned at a time;
    `dampening` times the Hessian's mean diagonal is added to its diagonal.
    """
    w = matrix.astype(np.float64).copy()
    outputs, inputs = w.shape
    factor, dead = _inverse_factor(gram, dampening)
    if m_by_n is not None:
        block = max(m_by_n[1], block - block % m_by_n[1])
    k = num_pruned(w.size, sparsity)
    fixed = choose is not None
    if fixed:
        score = w**2 / np.diag(factor)[None, :] ** 2
        score[:, dead] = 0.0
        pruned = np.asarray(choose(score), bool).copy()
    else:
        pruned = np.zeros(w.shape, bool)
    for start in range(0, inputs, block):
        end = min(start + block, inputs)
        w1, u1 = w[:, start:end].copy(), factor[start:end, start:end]
        errors = np.zeros_like(w1)
        diag = np.diag(u1)
        if not fixed and m_by_n is None:
            share = round(k * end / inputs) - round(k * start / inputs)
            score = w1**2 / diag[None, :] ** 2
            score[:, dead[start:end]] = -1.0
            flat = np.argsort(score, axis=None, kind="stable")[:share]
            pruned[:, start:end].flat[flat] = True
        for i in range(end - start):
            if not fixed and m_by_n is not None and i % m_by_n[1] == 0:
                m, n = m_by_n
                score = w1[:, i : i + n] ** 2 / diag[None, i : i + n] ** 2
                score[:, dead[start + i : start + i + n]] = -1.0
                lowest = np.argsort(score, axis=1, kind="stable")[:, :m]
                np.put_along_axis(pruned[:, start + i : start + i + n], lowest, True, axis=1)
            column = w1[:, i]
            kept = np.where(pruned[:, start + i], 0.0, column)
            error = (column - kept) / u1[i, i]
            w1[:, i:] -= np.outer(error, u1[i, i:])
            w1[:, i] = kept
            errors[:, i] = error
        w[:, start:end] = w1
        w[:, end:] -= errors @ factor[start:end, end:]
    w[pruned] = 0.0
    return w, pruned


def output_error(before: np.ndarray, after: np.ndarray, gram: np.ndarray) -> float:
    """`||X (after - before)^T||^2 / ||X before^T||^2`: the layer output's relative squared
    error on the calibration rows, from `gram = X^T X`."""
    return output_errors(before, [after], gram)[0]


def output_errors(before: np.ndarray, afters: list[np.ndarray], gram: np.ndarray) -> list[float]:
    """`output_error` of each of `afters`, the reference `||X before^T||^2` computed once (by
    matrix products, one per matrix)."""
    before = np.asarray(before, np.float64)
    reference = max(float(np.sum((before @ gram) * before)), 1e-30)
    out = []
    for after in afters:
        delta = np.asarray(after, np.float64) - before
        out.append(float(np.sum((delta @ gram) * delta)) / reference)
    return out
