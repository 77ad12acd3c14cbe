"""Sums over input rows, accumulated batch by batch so that no activation is kept.

`Statistics` holds what one-shot pruning needs of a weight's inputs: the Gram matrix `X^T X`
(SparseGPT) or each input's sum of squares (Wanda). `LeastSquares` holds `X^T X` and `X^T Y` of
input and target rows, and solves for the weights that map one to the other (the channel
update step).
"""

from __future__ import annotations

import numpy as np

from tfprune.calibration.ridge import ridge_solve

__all__ = ["Statistics", "LeastSquares"]


class Statistics:
    """Running `X^T X` (`full=True`) or each column's sum of squares over input rows.

    Args:
        inputs: The width of a row.
        full: Whether to keep the whole Gram matrix (else its diagonal only).
        label: What the rows are the inputs of, for the error message.

    Raises:
        ValueError: From `add`, on NaN or Inf rows, naming `label`.

    Example:

    >>> stats = Statistics(2, True, "weight 'fc/kernel'")
    >>> stats.add(np.array([[1.0, 2.0], [3.0, 0.0]]))
    >>> stats.gram.tolist(), stats.squares.tolist(), stats.rows
    ([[10.0, 2.0], [2.0, 4.0]], [10.0, 4.0], 2)
    """

    def __init__(self, inputs: int, full: bool, label: str) -> None:
        self.full, self.label, self.rows = full, label, 0
        self.gram = np.zeros((inputs, inputs) if full else (inputs,), np.float64)

    def add(self, rows: np.ndarray) -> None:
        if not np.all(np.isfinite(rows)):
            raise ValueError(
                f"The calibration inputs of {self.label} hold NaN or Inf values; one-shot "
                "pruning needs finite activations (check the calibration data and the layers "
                "before this one)."
            )
        rows = rows.astype(np.float64)
        self.rows += rows.shape[0]
        if self.full:
            self.gram += rows.T @ rows
        else:
            self.gram += np.einsum("ij,ij->j", rows, rows)

    @property
    def squares(self) -> np.ndarray:
        """Each input's sum of squares over the rows seen."""
        return np.diag(self.gram) if self.full else self.gram


class LeastSquares:
    """Running `X^T X` and `X^T Y` over pairs of input rows `X` and target rows `Y`.

    Example:

    >>> fit = LeastSquares(2, 1)
    >>> x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> fit.add(x, x @ np.array([[2.0], [3.0]]))
    >>> np.round(fit.solve(0.0), 6).tolist()
    [[2.0], [3.0]]
    """

    def __init__(self, inputs: int, outputs: int) -> None:
        self.gram = np.zeros((inputs, inputs), np.float64)
        self.cross = np.zeros((inputs, outputs), np.float64)

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        x, y = x.astype(np.float64), y.astype(np.float64)
        self.gram += x.T @ x
        self.cross += x.T @ y

    def solve(self, dampening: float) -> np.ndarray:
        """The `[inputs, outputs]` weights of the damped least-squares fit (see `ridge`)."""
        return ridge_solve(self.gram, self.cross, dampening)
