"""Sums over input rows, accumulated batch by batch so that no activation is kept.

`Statistics` holds what one-shot pruning needs of a weight's inputs: the Gram matrix `X^T X`
(SparseGPT) or each input's sum of squares (Wanda). `LeastSquares` holds `X^T X` and `X^T Y` of
input and target rows, and solves for the weights that map one to the other (the channel
update step).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from keras import ops

from tfprune.calibration.ridge import ridge_solve

__all__ = ["Statistics", "LeastSquares", "input_rows"]


def input_rows(view: Any, x: Any, on_backend: bool) -> Any:
    """The rows `[rows, inputs]` of a weight's matrix view (`tfprune.masks.views`) from one
    input batch `x` of its layer: a backend tensor, formed where `x` is, when `on_backend` and
    the view is a reordering of the input's axes; else a float64 numpy array (a convolution's
    windows are formed on the host)."""
    if on_backend and view.order is not None:
        return ops.reshape(ops.transpose(x, view.order(len(x.shape))), (-1, view.inputs))
    return view.rows(np.asarray(ops.convert_to_numpy(x), np.float64))


class Statistics:
    """Running `X^T X` (`full=True`) or each column's sum of squares over input rows.

    On the host (the default) the sums are float64 numpy arrays. With `on_backend`, they are
    float32 tensors on the Keras backend's device, accumulated where the rows are (a backend
    tensor is never copied to the host; the float32 the reference SparseGPT accumulates in),
    and copied to the host once, when read.

    Args:
        inputs: The width of a row.
        full: Whether to keep the whole Gram matrix (else its diagonal only).
        label: What the rows are the inputs of, for the error message.
        on_backend: Accumulate with `keras.ops` in float32 (else numpy float64).

    Raises:
        ValueError: On NaN or Inf rows, naming `label`: from `add` on the host; on the
            backend, when the sums are read (checking each batch would wait for the device).

    Example:

    >>> stats = Statistics(2, True, "weight 'fc/kernel'")
    >>> stats.add(np.array([[1.0, 2.0], [3.0, 0.0]]))
    >>> stats.gram.tolist(), stats.squares.tolist(), stats.rows
    ([[10.0, 2.0], [2.0, 4.0]], [10.0, 4.0], 2)
    """

    def __init__(self, inputs: int, full: bool, label: str, on_backend: bool = False) -> None:
        self.full, self.label, self.rows, self.on_backend = full, label, 0, on_backend
        shape = (inputs, inputs) if full else (inputs,)
        self._sum: Any = np.zeros(shape, np.float64)
        self._read: np.ndarray | None = None if on_backend else self._sum

    def add(self, rows: Any) -> None:
        """Adds the rows `[rows, inputs]` (numpy, or a backend tensor when `on_backend`)."""
        self.add_product(self.product(rows), int(rows.shape[0]))

    def product(self, rows: Any) -> Any:
        """What `rows` add to the sums (`X^T X`, or the squares), for `add_product`: weights
        that read the same rows share one product."""
        if self.on_backend:
            rows = ops.cast(rows, "float32")
            if self.full:
                return ops.matmul(ops.transpose(rows), rows)
            return ops.sum(ops.square(rows), axis=0)
        if not np.all(np.isfinite(rows)):
            self._fail()
        rows = rows.astype(np.float64)
        return rows.T @ rows if self.full else np.einsum("ij,ij->j", rows, rows)

    def add_product(self, part: Any, count: int) -> None:
        """Adds a `product` of `count` rows."""
        self.rows += count
        if self.on_backend:
            self._sum = self._sum + part if ops.is_tensor(self._sum) else part
            self._read = None
        else:
            self._sum += part  # in place: `_read` is the same array

    def _fail(self) -> None:
        raise ValueError(
            f"The calibration inputs of {self.label} hold NaN or Inf values; one-shot "
            "pruning needs finite activations (check the calibration data and the layers "
            "before this one)."
        )

    @property
    def gram(self) -> np.ndarray:
        """The sums as float64 numpy: `X^T X` (`full`), else each input's sum of squares."""
        if self._read is None:
            read = np.asarray(ops.convert_to_numpy(self._sum), np.float64)
            if not np.all(np.isfinite(read)):
                self._fail()
            self._read = read
        return self._read

    @property
    def squares(self) -> np.ndarray:
        """Each input's sum of squares over the rows seen."""
        return np.diag(self.gram) if self.full else self.gram


class LeastSquares:
    """Running `X^T X` and `X^T Y` over pairs of input rows `X` and target rows `Y`.

    On the host (the default) the sums are float64 numpy arrays. With `on_backend`, the rows
    may be backend tensors and the sums are float32 tensors accumulated on the backend's
    device (the products over the calibration rows, the costly part); `solve` reads them once
    and solves the small `inputs x inputs` system in float64 on the host, where a float32
    solve of the normal equations would lose the digits the fit needs.

    Example:

    >>> fit = LeastSquares(2, 1)
    >>> x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> fit.add(x, x @ np.array([[2.0], [3.0]]))
    >>> np.round(fit.solve(0.0), 6).tolist()
    [[2.0], [3.0]]
    """

    def __init__(self, inputs: int, outputs: int, on_backend: bool = False) -> None:
        self.on_backend = on_backend
        self.gram: Any = np.zeros((inputs, inputs), np.float64)
        self.cross: Any = np.zeros((inputs, outputs), np.float64)

    def add(self, x: Any, y: Any) -> None:
        if self.on_backend:
            x, y = ops.cast(x, "float32"), ops.cast(y, "float32")
            xt = ops.transpose(x)
            self.gram = self.gram + ops.matmul(xt, x)
            self.cross = self.cross + ops.matmul(xt, y)
            return
        x, y = x.astype(np.float64), y.astype(np.float64)
        self.gram += x.T @ x
        self.cross += x.T @ y

    def solve(self, dampening: float) -> np.ndarray:
        """The `[inputs, outputs]` weights of the damped least-squares fit (see `ridge`)."""
        gram = np.asarray(ops.convert_to_numpy(self.gram), np.float64)
        cross = np.asarray(ops.convert_to_numpy(self.cross), np.float64)
        return ridge_solve(gram, cross, dampening)
