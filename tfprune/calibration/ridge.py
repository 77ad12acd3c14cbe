"""The damped least-squares solve: `(X^T X + λ I) W = X^T Y`, with λ relative to the data.

SparseGPT's inverse Hessian and the channel update step (`tfprune.trim`) both damp a Gram
matrix by `dampening` times its mean diagonal, so that the same `dampening` means the same on
inputs of any scale.
"""

from __future__ import annotations

import numpy as np

__all__ = ["damped", "ridge_solve"]

# A Gram matrix of inputs that are all (nearly) zero still gets a positive ridge.
_FLOOR = 1e-12


def damped(gram: np.ndarray, dampening: float) -> np.ndarray:
    """`gram + dampening * mean(diag(gram)) * I`, a new array.

    Example:

    >>> damped(np.array([[2.0, 1.0], [1.0, 4.0]]), 0.5).tolist()
    [[3.5, 1.0], [1.0, 5.5]]
    """
    ridge = dampening * max(float(np.mean(np.diag(gram))), _FLOOR)
    return gram + ridge * np.eye(len(gram), dtype=gram.dtype)


def ridge_solve(gram: np.ndarray, cross: np.ndarray, dampening: float) -> np.ndarray:
    """The `W` that minimizes `||X W - Y||^2 + λ ||W||^2`, from `gram = X^T X` and
    `cross = X^T Y`, with `λ = dampening * mean(diag(gram))`.

    Example:

    >>> x = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    >>> w = np.array([[1.0], [-1.0]])
    >>> np.round(ridge_solve(x.T @ x, x.T @ (x @ w), 0.0), 6).tolist()
    [[1.0], [-1.0]]
    """
    return np.linalg.solve(damped(gram, dampening), cross)
