"""The arithmetic of one-shot pruning: weights seen as matrices, their inputs' statistics, and the
Wanda and SparseGPT masks and weight updates. Host numpy, float64, deterministic.

A prunable weight that multiplies the layer's input is viewed as a matrix `W` of shape
`[outputs, inputs]` whose product with the input rows `X` (`[rows, inputs]`) is the layer's
linear part: `Y = X W^T`. `MatrixView` makes that view for Dense, EinsumDense, convolutions (as
im2col: one row per output position, the kernel window flattened) and the input kernels of
recurrent layers (one row per time step). Everything else (embeddings, depthwise and recurrent
kernels, biases) has no such view and is pruned by magnitude.

SparseGPT (Frantar & Alistarh 2023) prunes column block by column block, choosing each block's
mask from `w^2 / [H^-1]_jj^2` and spreading each pruned weight's error over the columns not yet
visited through the Cholesky factor of the damped inverse Hessian `H = X^T X`. Wanda (Sun et al.
2023) scores `|w_ij| * ||X_j||` and compares the weights of each output.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from tfprune.masks import num_pruned
from tfprune.walk import owner_of

__all__ = [
    "MatrixView",
    "channel_view",
    "pattern_masks",
    "Statistics",
    "sparsegpt",
    "wanda_mask",
    "output_error",
]

_CONVS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
_TRANSPOSED = (
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
)


@dataclasses.dataclass
class MatrixView:
    """How a weight of shape `shape` is a matrix `[outputs, inputs]`, and how the input of its
    layer becomes rows of that matrix's inputs.

    `perm` orders the weight's axes as (input axes..., output axes...); `inputs` is the product
    of the input axes. `rows` turns one recorded input batch into `[rows, inputs]`.
    """

    shape: tuple[int, ...]
    perm: tuple[int, ...]
    inputs: int
    rows: Any
    # Whether n consecutive matrix columns are n consecutive input channels (the N:M groups).
    channels_last: bool = True
    channel_count: int = 0

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

    @classmethod
    def of(cls, owner: Any, weight: Any, recurrent_parent: Any = None) -> MatrixView | None:
        """The view of `weight` of layer `owner`, or None when it has none (magnitude only).

        `recurrent_parent`: the RNN layer whose cell `owner` is (its input rows feed `kernel`).
        """
        shape = tuple(int(d) for d in weight.shape)
        name = weight.path.rsplit("/", 1)[-1]
        if recurrent_parent is not None:
            if name != "kernel" or len(shape) != 2:
                return None
            return cls(shape, (0, 1), shape[0], _flatten_rows, channel_count=shape[0])
        if isinstance(owner, keras.layers.Dense) and name == "kernel" and len(shape) == 2:
            return cls(shape, (0, 1), shape[0], _flatten_rows, channel_count=shape[0])
        if isinstance(owner, keras.layers.EinsumDense) and name == "kernel":
            return _einsum_view(owner.equation, shape)
        if isinstance(owner, _CONVS) and not isinstance(owner, _TRANSPOSED) and name == "kernel":
            if getattr(owner, "groups", 1) != 1:
                return None
            return _conv_view(owner, shape)
        return None


def channel_view(layer: Any, weight: Any) -> MatrixView | None:
    """The view N:M patterns group along, where a weight's axis -2 is not its input channels:
    an EinsumDense kernel (`[dim, heads, head_dim]` of an attention query takes `dim`), grouped
    along its contracted axes as LiteRT's FULLY_CONNECTED `[out, in]` is. None elsewhere."""
    owner = owner_of(layer, weight)
    if isinstance(owner, keras.layers.EinsumDense):
        return MatrixView.of(owner, weight)
    return None


def pattern_masks(pattern: Any, values: list, sparsity: float, names: list, views: list) -> list:
    """`pattern.masks`, with the N:M groups of weights that have a `channel_view` taken along
    their input channels."""
    if pattern.m_by_n is None or all(view is None for view in views):
        return pattern.masks(values, sparsity, names)
    pairs = list(zip(values, views, strict=True))
    oriented = [v if view is None else view.to_matrix(v).T for v, view in pairs]
    masks = pattern.masks(oriented, sparsity, names)
    return [
        m if view is None else view.from_matrix(m.T)
        for m, (_, view) in zip(masks, pairs, strict=True)
    ]


def _flatten_rows(x: np.ndarray) -> np.ndarray:
    return x.reshape(-1, x.shape[-1])


def _einsum_view(equation: str, shape: tuple[int, ...]) -> MatrixView | None:
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

    def rows(x: np.ndarray) -> np.ndarray:
        offset = x.ndim - len(source) if leading else 0
        axes = [offset + i for i in order]
        rest = [i for i in range(x.ndim) if i not in axes]
        return np.transpose(x, rest + axes).reshape(-1, inputs)

    last = contracted[-1] == len(shape) - 2
    return MatrixView(shape, tuple(contracted + outputs), inputs, rows, last, shape[contracted[-1]])


def _conv_view(layer: Any, shape: tuple[int, ...]) -> MatrixView:
    rank = len(shape) - 2
    window, channels = shape[:rank], shape[rank]
    strides = tuple(layer.strides)
    dilation = tuple(layer.dilation_rate)
    padding, first = layer.padding, layer.data_format == "channels_first"

    def rows(x: np.ndarray) -> np.ndarray:
        if first:
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


class Statistics:
    """Running `X^T X` (SparseGPT) or column sums of squares (Wanda) over input rows.

    Raises ValueError on NaN or Inf inputs, naming `label`.
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


def wanda_mask(matrix: np.ndarray, squares: np.ndarray, sparsity: float) -> np.ndarray:
    """Wanda's mask of `matrix` `[outputs, inputs]` (True = pruned): within each output, the
    smallest `|w| * ||x||`; `round(sparsity * size)` in all, the remainder over outputs going to
    the smallest next-in-line scores. Ties go to the earlier input."""
    score = np.abs(matrix) * np.sqrt(squares)[None, :]
    outputs, inputs = score.shape
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


def _inverse_factor(gram: np.ndarray, dampening: float) -> tuple[np.ndarray, np.ndarray]:
    """The upper Cholesky factor `U` of the damped inverse Hessian (`U^T U = H^-1`), and which
    inputs were never non-zero (dead)."""
    h = gram.copy()
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    h[np.diag_indices_from(h)] += dampening * float(np.mean(np.diag(h)))
    lower = np.linalg.cholesky(h)
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
    delta = (after - before).astype(np.float64)
    reference = float(np.einsum("ij,jk,ik->", before, gram, before))
    return float(np.einsum("ij,jk,ik->", delta, gram, delta)) / max(reference, 1e-30)
