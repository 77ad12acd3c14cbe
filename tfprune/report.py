"""Per-layer sparsity of pruned and stripped models."""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
from keras import ops

from tfprune.prune import _walk
from tfprune.registry import prunable_weights
from tfprune.wrapper import PruneLowMagnitude

__all__ = ["SparsityRow", "SparsityReport", "sparsity_report"]


@dataclasses.dataclass(frozen=True)
class SparsityRow:
    """One prunable weight: where it lives, its shape, non-zero count and sparsity."""

    layer: str
    weight: str
    shape: tuple[int, ...]
    nonzeros: int
    sparsity: float

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


class SparsityReport(list):
    """A list of `SparsityRow`s that prints as a table with a total line."""

    @property
    def nonzeros(self) -> int:
        """Non-zero entries over all rows."""
        return sum(row.nonzeros for row in self)

    @property
    def total(self) -> int:
        """Entries over all rows."""
        return sum(_prod(row.shape) for row in self)

    @property
    def sparsity(self) -> float:
        """Fraction of zeros over all rows."""
        return 1.0 - self.nonzeros / self.total if self.total else 0.0

    def __str__(self) -> str:
        header = ("layer", "weight", "shape", "nonzeros", "sparsity")
        lines = [
            (r.layer, r.weight, "x".join(map(str, r.shape)) or "()", f"{r.nonzeros:,}",
             f"{r.sparsity:.2%}")
            for r in self
        ]
        lines.append(("total", "", f"{self.total:,}", f"{self.nonzeros:,}", f"{self.sparsity:.2%}"))
        widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
        def fmt(cells: tuple) -> str:
            return "  ".join(
                str(c).ljust(w) if i < 2 else str(c).rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths))
            )
        rule = "  ".join("-" * w for w in widths)
        return "\n".join([fmt(header), rule, *map(fmt, lines[:-1]), rule, fmt(lines[-1])])


def _prod(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _row(layer_name: str, weight: Any, value: Any) -> SparsityRow:
    shape = tuple(int(d) for d in weight.shape)
    size = _prod(shape)
    nonzeros = int(ops.count_nonzero(value)) if size else 0
    return SparsityRow(
        layer=layer_name,
        weight=weight.name,
        shape=shape,
        nonzeros=nonzeros,
        sparsity=1.0 - nonzeros / size if size else 0.0,
    )


def sparsity_report(model: Any) -> SparsityReport:
    """Returns one row per prunable weight of a pruned or stripped model.

    For a pruned model the rows describe the effective weights (`weight * mask`); for a plain
    model, the weights themselves. Layers without prunable weights are left out.

    Args:
        model: A Keras model or layer, pruned or not.

    Returns:
        A `SparsityReport`: a list of `SparsityRow` with fields `layer`, `weight`, `shape`,
        `nonzeros`, `sparsity`; `str(report)` is a table with a total line.

    Raises:
        TypeError: If `model` is not a Keras model or layer.

    Example:

    >>> import keras, tfprune
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="d")])
    >>> rows = tfprune.sparsity_report(model)
    >>> rows[0].layer, rows[0].weight, rows[0].shape, rows[0].sparsity
    ('d', 'kernel', (4, 2), 0.0)
    """
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(
            "Argument `model` must be a keras Model or Layer. "
            f"Received: model={model!r} of type {type(model).__name__}"
        )
    report = SparsityReport()
    for layer in _walk(model):
        if isinstance(layer, PruneLowMagnitude):
            for w, m in layer.pruned_weights:
                report.append(_row(layer.layer.name, w, w.value * ops.cast(m.value, w.dtype)))
        elif layer is not model or not isinstance(model, keras.Model):
            if layer.built:
                for w in prunable_weights(layer):
                    report.append(_row(layer.name, w, w.value))
    return report
