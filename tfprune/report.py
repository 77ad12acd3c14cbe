"""Per-layer sparsity of pruned and stripped models."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np
from keras import ops

from tfprune.core.wrapper import PruneLowMagnitude
from tfprune.masks.magnitude import count_nonzero
from tfprune.masks.patterns import holds_m_by_n
from tfprune.models.registry import prunable_weights, prunes_itself, weight_label
from tfprune.models.views import input_view
from tfprune.models.walk import walk
from tfprune.utils.checks import check_int
from tfprune.utils.files import atomic_path
from tfprune.utils.table import format_table

__all__ = [
    "SparsityRow",
    "SparsityReport",
    "sparsity_report",
    "PatternRow",
    "PatternReport",
    "check_sparsity_m_by_n",
]


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
    return SparsityReport(_row(layer, w, value) for layer, w, value in _prunable_values(model))


def _prunable_values(model: Any) -> Iterator[tuple[Any, Any, Any]]:
    """`(layer, weight, effective value)` for every prunable weight, masked where pruned."""
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(
            "Argument `model` must be a keras Model or Layer. "
            f"Received: model={model!r} of type {type(model).__name__}"
        )
    for layer in walk(model, into=_reported_inside):
        if isinstance(layer, PruneLowMagnitude):
            for w, m in layer.pruned_weights:
                yield layer.layer, w, w.value * ops.cast(m.value, w.dtype)
        elif prunes_itself(layer) and (layer is not model or not isinstance(model, keras.Model)):
            if layer.built:
                for w in prunable_weights(layer):
                    yield layer, w, w.value


@dataclasses.dataclass(frozen=True)
class PatternRow:
    """One weight checked for an N:M pattern."""

    name: str
    shape: tuple[int, ...]
    sparsity: float
    holds: bool


class PatternReport(list):
    """`PatternRow`s; `holds` is whether every weight holds the pattern; `str()` is a table."""

    m_by_n: tuple[int, int] = (2, 4)

    @property
    def holds(self) -> bool:
        return bool(self) and all(row.holds for row in self)

    def __str__(self) -> str:
        m, n = self.m_by_n
        table = [
            [r.name, "x".join(map(str, r.shape)), f"{r.sparsity:.2%}", "yes" if r.holds else "no"]
            for r in self
        ]
        return format_table(["weight", "shape", "sparsity", f"{m}:{n}"], table)


def check_sparsity_m_by_n(model: Any, m: int = 2, n: int = 4) -> PatternReport:
    """Which weights hold m zeros in every n consecutive input channels.

    tfmot ships this check as a script for `.tflite` files; here it takes a Keras model too.
    Keras kernels `[..., C_in, C_out]` are grouped along C_in; the weights of a `.tflite` file
    are read as its kernels see them (sparse layouts expanded), with the input channels last,
    LiteRT's layout (FULLY_CONNECTED [out, in], CONV_2D [out, h, w, in]).

    Args:
        model: A Keras model or layer (pruned or not), or the path of a `.keras` or `.tflite`
            file.
        m: Zeros required in each group. Defaults to 2.
        n: Group size. Defaults to 4.

    Returns:
        A `PatternReport`: rows with `name`, `shape`, `sparsity` and `holds`, and `holds` for
        all of them.

    Raises:
        TypeError: If `model` is not a model, layer or path, or `m`, `n` are not ints.
        ValueError: If not `0 < m < n`, or the path is neither `.keras` nor `.tflite`.

    Example:

    >>> import numpy as np, keras, tfprune
    >>> layer = tfprune.prune_low_magnitude(keras.layers.Dense(2), sparsity_m_by_n=(2, 4))
    >>> _ = layer(np.ones((1, 8), "float32"))
    >>> layer.update_masks(0.5)
    >>> report = tfprune.check_sparsity_m_by_n(layer, 2, 4)
    >>> report.holds, report[0].sparsity
    (True, 0.5)
    """
    check_int("m", m, 1)
    check_int("n", n, 2)
    if not m < n:
        raise ValueError(f"Arguments `m` and `n` must satisfy 0 < m < n. Received: m={m}, n={n}")
    report = PatternReport()
    report.m_by_n = (m, n)
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if path.endswith(".tflite"):
            # The export stage loads on first use: `import tfprune` does not load it.
            from tfprune.export.describe import kernel_weights

            for name, values in kernel_weights(path):
                report.append(_pattern_row(name, values, (m, n), input_last=True))
            return report
        if not path.endswith(".keras"):
            raise ValueError(
                f"Argument `model` must be a model or a .keras or .tflite path. Received: {path!r}"
            )
        model = keras.models.load_model(path)
    for layer, w, value in _prunable_values(model):
        name = f"{layer.name}/{weight_label(layer, w)}"
        host, view = ops.convert_to_numpy(value), input_view(layer, w)
        if view is not None:  # an EinsumDense kernel, as LiteRT's [out, in]
            report.append(_pattern_row(name, view.to_matrix(host), (m, n), input_last=True))
        else:
            report.append(_pattern_row(name, host, (m, n), input_last=False))
    return report


def _pattern_row(name: str, values: Any, m_by_n: tuple[int, int], input_last: bool) -> PatternRow:
    host = np.asarray(values)
    nonzero, size = count_nonzero(host)
    holds = host.ndim >= 2 and holds_m_by_n(host, m_by_n, input_last=input_last)
    return PatternRow(name, tuple(host.shape), 1.0 - nonzero / size if size else 0.0, holds)


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
