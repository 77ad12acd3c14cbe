"""Per-layer sparsity of pruned and stripped models."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import keras
from keras import ops

from tfprune.files import atomic_path
from tfprune.masks import count_nonzero
from tfprune.registry import prunable_weights, prunes_itself, weight_label
from tfprune.table import format_table
from tfprune.walk import walk
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
        body = [
            (
                r.layer,
                r.weight,
                "x".join(map(str, r.shape)) or "()",
                f"{r.nonzeros:,}",
                f"{r.sparsity:.2%}",
            )
            for r in self
        ]
        footer = ("total", "", f"{self.total:,}", f"{self.nonzeros:,}", f"{self.sparsity:.2%}")
        header = ("layer", "weight", "shape", "nonzeros", "sparsity")
        return format_table(header, body, right=(2, 3, 4), footer=footer, rules=True)


def _prod(shape: tuple[int, ...]) -> int:
    return math.prod(int(d) for d in shape)


def _row(layer: Any, weight: Any, value: Any) -> SparsityRow:
    nonzeros, size = count_nonzero(value)
    return SparsityRow(
        layer=layer.name,
        weight=weight_label(layer, weight),
        shape=tuple(int(d) for d in weight.shape),
        nonzeros=nonzeros,
        sparsity=1.0 - nonzeros / size if size else 0.0,
    )


def _reported_inside(layer: Any) -> bool:
    # A wrapper or a layer with its own rule reports its weights itself; a layer made of
    # layers is reported through its parts.
    return not isinstance(layer, PruneLowMagnitude) and not prunes_itself(layer)


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
    for layer in walk(model, into=_reported_inside):
        if isinstance(layer, PruneLowMagnitude):
            for w, m in layer.pruned_weights:
                report.append(_row(layer.layer, w, w.value * ops.cast(m.value, w.dtype)))
        elif prunes_itself(layer) and (layer is not model or not isinstance(model, keras.Model)):
            if layer.built:
                for w in prunable_weights(layer):
                    report.append(_row(layer, w, w.value))
    return report


def plot_pruning(model: Any, schedule: Any, steps: int, path: str) -> str:
    """Writes a PNG: the schedule's sparsity over `steps` and the model's per-layer sparsity.

    Args:
        model: A pruned or stripped model (its final per-layer sparsity is plotted).
        schedule: A `PruningSchedule` with sparsity values to plot over steps.
        steps: Number of training steps to plot.
        path: Where to write the PNG; written atomically.

    Returns:
        `path`.

    Raises:
        ImportError: If matplotlib is not installed (`pip install tfprune[plot]`).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    xs = list(range(steps + 1))
    ramp = [schedule(t)[1] for t in xs]
    updates = [t for t in xs if schedule(t)[0]]
    rows = sparsity_report(model)
    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    left.plot(xs, ramp, label="schedule")
    left.plot(updates, [schedule(t)[1] for t in updates], "o", ms=3, label="mask updates")
    left.set(xlabel="training step", ylabel="sparsity", title="Sparsity schedule", ylim=(0, 1))
    left.legend(loc="lower right")
    names = [f"{r.layer}/{r.weight}" for r in rows]
    right.barh(names, [r.sparsity for r in rows])
    right.set(xlabel="sparsity", title="Final sparsity per weight", xlim=(0, 1))
    right.invert_yaxis()
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as temp:
        fig.savefig(temp, format="png")
    return path
