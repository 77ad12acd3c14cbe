"""Pattern masks: whole blocks (tfmot's `block_size`) and N:M groups (`sparsity_m_by_n`).

Pure functions on the host, like `tfprune.masks.magnitude`; a `Pattern` says which of the
three kinds (single entries, blocks, N:M groups) a wrapper prunes. Both reproduce tfmot's
masks on the same weights (tests/test_masks_patterns.py runs tfmot as the oracle); tfprune
also takes shapes tfmot cannot (partial blocks, any rank). Whole channels are another matter:
`tfprune.masks.channels`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from keras import ops

from tfprune.masks.magnitude import finite_hosts, magnitude_mask, magnitude_masks
from tfprune.masks.views import MatrixView
from tfprune.utils.checks import is_int

__all__ = ["Pattern", "block_masks", "m_by_n_mask", "holds_m_by_n"]

POOLING_TYPES = ("AVG", "MAX")


def _matrix(host: np.ndarray) -> np.ndarray:
    """A kernel as a matrix: `[prod(shape[:-1]), shape[-1]]` (a conv kernel [H·W·C_in, C_out])."""
    return host.reshape(-1, host.shape[-1]) if host.ndim >= 2 else host.reshape(1, -1)


def _pooled(matrix: np.ndarray, block: tuple[int, int], pooling: str) -> np.ndarray:
    """Block magnitudes: mean (over the entries inside the matrix) or max of `|w|` per block.

    Blocks start at the top left; blocks on the right and bottom edges may be partial.
    """
    (rows, cols), (r, c) = matrix.shape, block
    padded = np.zeros((rows + -rows % r, cols + -cols % c), dtype=np.float32)
    padded[:rows, :cols] = np.abs(matrix.astype(np.float32))
    tiles = padded.reshape(padded.shape[0] // r, r, padded.shape[1] // c, c)
    if pooling == "MAX":
        return tiles.max(axis=(1, 3))
    count = np.zeros(padded.shape, dtype=np.float32)
    count[:rows, :cols] = 1.0
    return tiles.sum(axis=(1, 3)) / count.reshape(tiles.shape).sum(axis=(1, 3))


def block_masks(
    weights: list[Any],
    sparsity: float,
    block: tuple[int, int],
    *,
    pooling: str = "AVG",
    names: list[str] | None = None,
) -> list[np.ndarray]:
    """Masks that prune whole blocks: `round(sparsity * blocks)` blocks of the smallest pooled
    magnitude, one threshold over all the weights given.

    Each weight is taken as a matrix `[prod(shape[:-1]), shape[-1]]` (a Dense kernel [in, out]
    as it is, a conv kernel as [H·W·C_in, C_out]) cut into `block = (rows, cols)` tiles from
    the top left; tiles on the right and bottom edges may be partial and count as blocks. A
    block's magnitude is the mean ("AVG", over its entries inside the matrix) or the maximum
    ("MAX") of `|w|`. Ties are broken by block position, as in `magnitude_mask`.

    Args:
        weights: Tensors or arrays of any shapes.
        sparsity: Fraction of all their blocks to prune, in [0, 1].
        block: Block height and width, positive.
        pooling: "AVG" or "MAX". Defaults to "AVG".
        names: Names used in error messages, one per weight.

    Returns:
        One 0/1 numpy array per weight, of its shape and dtype.

    Raises:
        ValueError: If `sparsity` is out of range or a weight holds NaN or Inf values.

    Example:

    >>> w = np.array([[4.0, 4.0, 0.1, 0.2], [3.0, 1.0, 0.3, 5.0]])
    >>> block_masks([w], 0.5, (1, 2))[0].tolist()
    [[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]
    """
    hosts = finite_hosts(weights, names)
    matrices = [_matrix(h) for h in hosts]
    pooled = [_pooled(m, block, pooling) for m in matrices]
    if len(pooled) == 1:
        chosen = [magnitude_mask(pooled[0], sparsity, name="the blocks")]
    else:
        chosen = magnitude_masks(pooled, sparsity, names=["the blocks"] * len(pooled))
    masks = []
    for host, matrix, tiles in zip(hosts, matrices, chosen, strict=True):
        full = np.repeat(np.repeat(tiles, block[0], axis=0), block[1], axis=1)
        masks.append(full[: matrix.shape[0], : matrix.shape[1]].reshape(host.shape))
    return [m.astype(h.dtype) for m, h in zip(masks, hosts, strict=True)]


def _by_input_channel(host: np.ndarray) -> np.ndarray:
    """A kernel `[..., C_in, C_out]` as rows `[C_out·..., C_in]`: LiteRT's own layout, where an
    N:M group is n consecutive input channels of one output."""
    if host.ndim < 2:
        raise ValueError(
            f"An N:M pattern runs along input channels, which a weight of shape {host.shape} "
            "does not have."
        )
    return np.moveaxis(host, -1, 0).reshape(-1, host.shape[-2])


def m_by_n_mask(weight: Any, m_by_n: tuple[int, int], *, name: str = "weight") -> np.ndarray:
    """The mask that zeroes the `m` smallest magnitudes of every `n` consecutive input channels.

    A kernel `[..., C_in, C_out]` (Dense [in, out], Conv2D [H, W, in, out]) is grouped along
    C_in for each output and kernel position, as LiteRT stores it (`[C_out, H, W, C_in]`). When
    C_in is not a multiple of `n`, the last group is shorter and keeps up to `n - m` entries.
    Ties keep the earlier channel.

    Args:
        weight: A tensor or array of rank 2 or more.
        m_by_n: `(m, n)` with `0 < m < n`: m zeros in each group of n.
        name: Name used in error messages. Defaults to "weight".

    Returns:
        A 0/1 numpy array of the weight's shape and dtype.

    Raises:
        ValueError: If the weight has rank below 2 or holds NaN or Inf values.

    Example:

    >>> w = np.array([[0.1, 2.0], [-3.0, 0.2], [0.5, 0.3], [0.4, -1.0]])  # Dense [4 in, 2 out]
    >>> m_by_n_mask(w, (2, 4)).T.tolist()  # per output, 2 of its 4 inputs
    [[0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 1.0]]
    """
    (host,) = finite_hosts([weight], [name])
    m, n = m_by_n
    rows = _by_input_channel(host)
    width = rows.shape[1] + -rows.shape[1] % n
    padded = np.zeros((rows.shape[0], width), dtype=np.float32)
    padded[:, : rows.shape[1]] = np.abs(rows.astype(np.float32))
    groups = padded.reshape(-1, n)
    keep = np.argsort(-groups, axis=1, kind="stable")[:, : n - m]
    chosen = np.zeros(groups.shape, dtype=bool)
    np.put_along_axis(chosen, keep, True, axis=1)
    chosen = chosen.reshape(padded.shape)[:, : rows.shape[1]]
    out = np.moveaxis(chosen.reshape((host.shape[-1], *host.shape[:-1])), 0, -1)
    return out.astype(host.dtype)


def holds_m_by_n(values: Any, m_by_n: tuple[int, int], *, input_last: bool = False) -> bool:
    """Whether every `n` consecutive input channels hold at least `m` zeros.

    Args:
        values: A kernel `[..., C_in, C_out]` as Keras stores it, or with `input_last=True` as
            LiteRT stores it (`[C_out, ..., C_in]`).
        m_by_n: `(m, n)`.
        input_last: Whether the input channels are the last axis. Defaults to False.

    Example:

    >>> w = np.array([[0.0, 2.0], [-3.0, 0.0], [0.5, 0.0], [0.0, -1.0]])
    >>> holds_m_by_n(w, (2, 4)), holds_m_by_n(w.T, (2, 4), input_last=True)
    (True, True)
    >>> holds_m_by_n(np.ones((4, 2)), (2, 4))
    False
    """
    host = np.asarray(ops.convert_to_numpy(values))
    m, n = m_by_n
    rows = host.reshape(-1, host.shape[-1]) if input_last else _by_input_channel(host)
    padded = np.zeros((rows.shape[0], rows.shape[1] + -rows.shape[1] % n), dtype=bool)
    padded[:, : rows.shape[1]] = rows != 0
    return bool(np.all(padded.reshape(-1, n).sum(axis=1) <= n - m))


def _pair(name: str, value: Any) -> tuple[int, int]:
    if is_int(value):
        value = (value, value)
    if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(map(is_int, value))):
        raise TypeError(
            f"Argument `{name}` must be an int or a pair of ints. Received: {name}={value!r}"
        )
    return int(value[0]), int(value[1])


@dataclasses.dataclass(frozen=True)
class Pattern:
    """What a mask update prunes: single entries, whole blocks, or N:M groups.

    Built from tfmot's arguments by `Pattern.of`; `masks` computes the masks of weights pruned
    together at a sparsity (ignored for N:M, whose sparsity is m/n by construction).
    """

    block: tuple[int, int] = (1, 1)
    pooling: str = "AVG"
    m_by_n: tuple[int, int] | None = None

    @classmethod
    def of(
        cls, block_size: Any = (1, 1), block_pooling_type: Any = "AVG", sparsity_m_by_n: Any = None
    ) -> Pattern:
        """Checks tfmot's `block_size`, `block_pooling_type` and `sparsity_m_by_n`.

        Raises:
            TypeError: If an argument has the wrong type.
            ValueError: If a value is out of range, or blocks and N:M are asked together.
        """
        block = _pair("block_size", block_size)
        if min(block) < 1:
            raise ValueError(
                f"Argument `block_size` must be positive. Received: block_size={block_size!r}"
            )
        if block_pooling_type not in POOLING_TYPES:
            raise ValueError(
                'Argument `block_pooling_type` must be "AVG" or "MAX". '
                f"Received: block_pooling_type={block_pooling_type!r}"
            )
        m_by_n = None
        if sparsity_m_by_n is not None:
            m_by_n = _pair("sparsity_m_by_n", sparsity_m_by_n)
            if not 0 < m_by_n[0] < m_by_n[1]:
                raise ValueError(
                    "Argument `sparsity_m_by_n` must be (m, n) with 0 < m < n: m zeros in every "
                    f"n consecutive input channels. Received: sparsity_m_by_n={sparsity_m_by_n!r}"
                )
            if block != (1, 1):
                raise ValueError(
                    "Arguments `block_size` and `sparsity_m_by_n` cannot be used together. "
                    f"Received: block_size={block_size!r}, sparsity_m_by_n={sparsity_m_by_n!r}"
                )
        return cls(block, block_pooling_type, m_by_n)

    @property
    def unstructured(self) -> bool:
        return self.block == (1, 1) and self.m_by_n is None

    def check(self, weight: Any, description: str) -> str | None:
        """Raises if the pattern cannot prune `weight`; returns a warning if it prunes nothing."""
        if self.m_by_n is None:
            return None
        m, n = self.m_by_n
        if len(weight.shape) < 2:
            raise ValueError(
                f"Cannot prune {description} with sparsity_m_by_n={self.m_by_n}: an N:M "
                f"pattern runs along input channels, which shape {tuple(weight.shape)} lacks. "
                "Prune this layer without sparsity_m_by_n."
            )
        if weight.shape[-2] > n - m:
            return None
        return (
            f"sparsity_m_by_n={self.m_by_n} prunes nothing of {description}: it has "
            f"{weight.shape[-2]} input channel(s), at most the {n - m} each group keeps. Prune "
            "it unstructured instead (tfmot's 2:4 guide does so for a first conv)."
        )

    def masks(
        self,
        weights: list[Any],
        sparsity: float,
        names: list[str],
        views: list[MatrixView | None] | None = None,
    ) -> list[np.ndarray]:
        """Masks for `weights` pruned together (one threshold), each of its weight's shape.

        `views`: for each weight, None, or the matrix view along whose inputs its N:M groups
        run where its axis -2 is not its input channels (an `EinsumDense` kernel; see
        `tfprune.models.views.input_view`). Blocks ignore them.
        """
        if self.m_by_n is not None and views is not None and any(v is not None for v in views):
            pairs = list(zip(weights, views, strict=True))
            oriented = [w if v is None else v.to_matrix(np.asarray(w)).T for w, v in pairs]
            masks = self.masks(oriented, sparsity, names)
            return [
                m if v is None else v.from_matrix(m.T)
                for m, (_, v) in zip(masks, pairs, strict=True)
            ]
        if self.m_by_n is not None:
            return [
                m_by_n_mask(w, self.m_by_n, name=n) for w, n in zip(weights, names, strict=True)
            ]
        if self.block != (1, 1):
            return block_masks(weights, sparsity, self.block, pooling=self.pooling, names=names)
        if len(weights) == 1:
            return [magnitude_mask(weights[0], sparsity, name=names[0])]
        return magnitude_masks(weights, sparsity, names=names)

    def config(self) -> dict[str, Any]:
        """The tfmot arguments that make this pattern."""
        return {
            "block_size": self.block,
            "block_pooling_type": self.pooling,
            "sparsity_m_by_n": self.m_by_n,
        }
