"""One weight pruned in one shot, from the statistics of its inputs: the method's mask, the
updated weights and the report row.

`prune_matrix` runs Wanda or SparseGPT on a weight seen as a matrix (see
`tfprune.masks.views`); `magnitude` is the wrapper's own mask rule, for weights with no input
statistics. Both are shared by the loop over a model's layers (`tfprune.oneshot.prune`) and by
the expert banks of a mixture of experts (`tfprune.oneshot.experts`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from tfprune.calibration.statistics import Statistics
from tfprune.masks.views import MatrixView
from tfprune.oneshot import device
from tfprune.oneshot.sparsegpt import output_errors, sparsegpt
from tfprune.oneshot.wanda import wanda_mask, wanda_scores

__all__ = [
    "MAX_HESSIAN_INPUTS",
    "OneShotLayer",
    "Settings",
    "Pruned",
    "check_hessian",
    "describe",
    "magnitude",
    "prune_matrix",
]

# SparseGPT holds a float64 `inputs x inputs` Hessian per weight: 8192 inputs take 512 MiB.
MAX_HESSIAN_INPUTS = 8192


@dataclasses.dataclass
class OneShotLayer:
    """What `prune_one_shot` did to one weight (or to one expert of a stacked expert kernel).

    `method` is the one that ran ("magnitude" for weights with no input matrix: embeddings,
    depthwise and recurrent kernels, and experts no calibration token reached). `rows` is the
    number of input rows it was calibrated on (for an expert, the tokens routed to it).
    `error` is the layer output's relative squared error on the calibration rows (SparseGPT
    only, else None); `error_without_update` the same mask's error with the weights left as
    they were. `seconds` is the time from the start of its group (block) to this weight's
    end; `solve_seconds` the time of its own mask and update, the calibration passes left
    out. `note` says why a weight fell back to magnitude, when it did.
    """

    name: str
    method: str
    inputs: int | None
    rows: int
    sparsity: float
    error: float | None
    error_without_update: float | None
    seconds: float
    note: str | None = None
    solve_seconds: float = 0.0


def describe(row: OneShotLayer) -> str:
    """`row` as `prune_one_shot(verbose=True)` prints it."""
    line = f"{row.name}: {row.method}, {row.sparsity:.1%} pruned"
    if row.error is not None:
        line += f", output error {row.error:.4g} (mask alone {row.error_without_update:.4g})"
    return line + (f" ({row.note})" if row.note else "")


def check_hessian(name: str, inputs: int) -> None:
    """Raises `ValueError` if weight `name`'s `inputs` are too many for SparseGPT's Hessian."""
    if inputs > MAX_HESSIAN_INPUTS:
        raise ValueError(
            f"Weight '{name}' has {inputs} inputs; SparseGPT's Hessian is limited "
            f"to {MAX_HESSIAN_INPUTS} (float64, {MAX_HESSIAN_INPUTS**2 * 8 >> 20} MiB). "
            'Use method="wanda" for it, or leave it out with `layers`.'
        )


@dataclasses.dataclass(frozen=True)
class Settings:
    """`prune_one_shot`'s method arguments."""

    method: str
    m_by_n: tuple[int, int] | None
    dampening: float
    block: int
    precision: str = "float32"


@dataclasses.dataclass
class Pruned:
    """One weight's outcome: its keep mask and new values (its shape), and the output errors
    (SparseGPT only)."""

    keep: np.ndarray
    values: np.ndarray
    error: float | None = None
    error_without_update: float | None = None

    @property
    def sparsity(self) -> float:
        size = self.keep.size
        return 1.0 - float(np.count_nonzero(self.keep)) / size if size else 0.0


def magnitude(rule: Any, target: Any, values: np.ndarray, sparsity: float) -> Pruned:
    """`values` pruned by the wrapper's mask rule (`target` names the weight and its layout)."""
    (keep,) = rule.masks([target], [values], sparsity)
    keep = np.asarray(keep).astype(bool)
    return Pruned(keep, values * keep)


def prune_matrix(
    rule: Any,
    target: Any,
    view: MatrixView,
    values: np.ndarray,
    stats: Statistics,
    sparsity: float,
    settings: Settings,
) -> Pruned:
    """`values` (of `view`'s shape) pruned by Wanda or SparseGPT from its inputs' `stats`."""
    matrix = view.to_matrix(values)

    def pattern_mask(score: np.ndarray) -> np.ndarray:
        # The wrapper's mask rule applied to `score` (matrix layout); True = pruned.
        (keep,) = rule.masks([target], [view.from_matrix(score)], sparsity)
        return ~view.to_matrix(np.asarray(keep).astype(bool))

    method, m_by_n = settings.method, settings.m_by_n
    error = error_plain = None
    if method == "wanda":
        if m_by_n is None:
            rule_of = device.wanda_mask if settings.precision == "float32" else wanda_mask
            pruned = rule_of(matrix, stats.squares, sparsity)
        else:
            pruned = pattern_mask(wanda_scores(matrix, stats.squares))
        new_matrix = np.where(pruned, 0.0, matrix)
    else:
        options = dict(block=settings.block, dampening=settings.dampening)
        solver = device.sparsegpt if settings.precision == "float32" else sparsegpt
        if m_by_n is not None and not view.groups_fit(m_by_n[1]):
            # The N:M groups are not runs of matrix columns: choose the mask from SparseGPT's
            # scores in the weight's own layout, then update the weights around it.
            new_matrix, pruned = solver(
                matrix, stats.gram, sparsity, choose=pattern_mask, **options
            )
        else:
            new_matrix, pruned = solver(matrix, stats.gram, sparsity, m_by_n=m_by_n, **options)
        error, error_plain = output_errors(
            matrix, [new_matrix, np.where(pruned, 0.0, matrix)], stats.gram
        )
    keep = ~view.from_matrix(pruned)
    return Pruned(keep, view.from_matrix(new_matrix) * keep, error, error_plain)
