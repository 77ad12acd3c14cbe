"""Weights seen as matrices: `W` of shape `[outputs, inputs]`, whose product with input rows is
the layer's linear part.

A prunable weight that multiplies its layer's input is the matrix `W` for which `Y = X W^T`,
with `X` the input rows (`[rows, inputs]`). `MatrixView` reorders a weight's axes into that
matrix and back, and turns one batch of the layer's input into rows of `X`. The views here are
built from shapes and equations alone; `tfprune.models.views` says which view a layer's weight
has.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["MatrixView", "dense_view", "einsum_view", "conv_view"]


@dataclasses.dataclass
class MatrixView:
    """How a weight of shape `shape` is a matrix `[outputs, inputs]`, and how the input of its
    layer becomes rows of that matrix's inputs.

    `perm` orders the weight's axes as (input axes..., output axes...); `inputs` is the product
    of the input axes. `rows` turns one recorded input batch into `[rows, inputs]`. Where that
    is a plain reordering, `order(rank)` gives the input's axes in the order whose flattening
    is the rows (so that the rows can be formed where the input is, as a backend tensor);
    None where it is not (a convolution's windows).
    `channels_last` says whether n consecutive matrix columns are n consecutive input channels
    (the groups of an N:M pattern), of which there are `channel_count`.

    Example:

    >>> view = dense_view((3, 2))  # a Dense kernel: 3 inputs, 2 outputs
    >>> matrix = view.to_matrix(np.arange(6.0).reshape(3, 2))
    >>> matrix.shape, view.from_matrix(matrix).shape
    ((2, 3), (3, 2))
    """

    shape: tuple[int, ...]
    perm: tuple[int, ...]
    inputs: int
    rows: Callable[[np.ndarray], np.ndarray]
    channels_last: bool = True
    channel_count: int = 0
    order: Callable[[int], list[int]] | None = None

    @property
    def outputs(self) -> int:
        return int(np.prod(self.shape)) // self.inputs

    def to_matrix(self, weight: np.ndarray) -> np.ndarray:
        return np.transpose(weight, self.perm).reshape(self.inputs, self.outputs).T

    def from_matrix(self, matrix: np.ndarray) -> np.ndarray:
        permuted = [self.shape[p] for p in self.perm]
        return np.transpose(matrix.T.reshape(permuted), np.argsort(self.perm))

    def groups_fit(self, n: int) -> bool:
        """Whether N:M groups of `n` are runs of `n` consecutive matrix columns."""
        return self.channels_last and self.channel_count % n == 0


def _flatten_rows(x: np.ndarray) -> np.ndarray:
    return x.reshape(-1, x.shape[-1])


def _same_order(rank: int) -> list[int]:
    return list(range(rank))


def dense_view(shape: tuple[int, ...]) -> MatrixView:
    """The view of a kernel `[inputs, outputs]` applied to the last axis of its input (a Dense
    kernel, or the input kernel of a recurrent cell, one row per time step)."""
    return MatrixView(
        shape, (0, 1), shape[0], _flatten_rows, channel_count=shape[0], order=_same_order
    )


def einsum_view(equation: str, shape: tuple[int, ...]) -> MatrixView | None:
    """The view of an `EinsumDense` kernel of `shape` under `equation` (`"btd,dnh->btnh"`), or
    None when its contraction is no plain matrix product (batched, repeated or `...` axes)."""
    spec, out = equation.split("->")
    source, kernel = spec.split(",")
    if "." in kernel or len(kernel) != len(shape):
        return None
    leading = "..." in source
    source = source.replace("...", "")
    contracted = [i for i, a in enumerate(kernel) if a in source and a not in out]
    batched = [a for a in kernel if a in source and a in out]
    if batched or not contracted or len(set(kernel)) != len(kernel):
        return None
    outputs = [i for i in range(len(kernel)) if i not in contracted]
    inputs = int(np.prod([shape[i] for i in contracted]))
    order = [source.index(kernel[i]) for i in contracted]

    def axes(rank: int) -> list[int]:
        offset = rank - len(source) if leading else 0
        inner = [offset + i for i in order]
        return [i for i in range(rank) if i not in inner] + inner

    def rows(x: np.ndarray) -> np.ndarray:
        return np.transpose(x, axes(x.ndim)).reshape(-1, inputs)

    last = contracted[-1] == len(shape) - 2
    perm = tuple(contracted + outputs)
    return MatrixView(shape, perm, inputs, rows, last, shape[contracted[-1]], axes)


def conv_view(
    shape: tuple[int, ...],
    strides: Sequence[int],
    dilation: Sequence[int],
    padding: str,
    channels_first: bool = False,
) -> MatrixView:
    """The view of a convolution kernel `[*window, C_in, C_out]` as im2col: one input row per
    output position, the kernel window flattened (window positions, then channels)."""
    rank = len(shape) - 2
    window, channels = shape[:rank], shape[rank]
    strides, dilation = tuple(strides), tuple(dilation)

    def rows(x: np.ndarray) -> np.ndarray:
        if channels_first:
            x = np.moveaxis(x, 1, -1)
        pads = [(0, 0)]
        for size, k, s, d in zip(x.shape[1:-1], window, strides, dilation, strict=True):
            span = (k - 1) * d + 1
            if padding == "valid":
                pads.append((0, 0))
            elif padding == "causal":
                pads.append((span - 1, 0))
            else:
                total = max((-(-size // s) - 1) * s + span - size, 0)
                pads.append((total // 2, total - total // 2))
        x = np.pad(x, pads + [(0, 0)])
        # Windows of `span` with the dilation's stride, at every `stride`-th position.
        spans = [(k - 1) * d + 1 for k, d in zip(window, dilation, strict=True)]
        axes = tuple(range(1, rank + 1))
        views = np.lib.stride_tricks.sliding_window_view(x, spans, axis=axes)
        index = [slice(None)]
        index += [slice(None, None, s) for s in strides] + [slice(None)]
        index += [slice(None, None, d) for d in dilation]
        views = views[tuple(index)]  # [batch, *out, channels, *window]
        views = np.moveaxis(views, rank + 1, -1)  # [batch, *out, *window, channels]
        return views.reshape(-1, int(np.prod(window)) * channels)

    return MatrixView(
        shape, tuple(range(len(shape))), int(np.prod(shape[:-1])), rows, True, channels
    )
