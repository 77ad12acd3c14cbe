"""One-shot pruning of a mixture of experts' expert bank, expert by expert.

An expert bank (`tfprune.models.experts`) stacks one matrix per expert in each kernel
`[experts, inputs, outputs]`, and its sparse MoE block routes each token to `top_k` experts.
Each expert is pruned as a Dense layer of its own, from the inputs it really receives: the
tokens its router sends it, not every token of the batch. The bank is pruned in two stages, as
a sequence of layers is: first the kernels that multiply the tokens (gate and up), then the
output kernel, from the hidden units the pruned gate and up kernels give those tokens.

An expert no calibration token reaches has no input statistics: it is pruned by magnitude
(its report row says so) and a `UserWarning` names it; more (or more varied) calibration
data reach more experts.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from keras import ops

from tfprune.calibration.recorder import Recorder
from tfprune.calibration.statistics import Statistics
from tfprune.masks.views import dense_view
from tfprune.oneshot.solve import (
    OneShotLayer,
    Settings,
    check_hessian,
    describe,
    magnitude,
    prune_matrix,
)

__all__ = ["prune_experts"]


def prune_experts(
    feed: Callable[[], None], group: list[Any], settings: Settings, stages: Any
) -> list[OneShotLayer]:
    """Prunes the stacked kernels of one expert bank (`group`: its `OneShotTarget`s, each with
    the same `bank`) from the tokens routed to each expert while `feed` runs the calibration
    data through the part of the model that holds it; one report row per expert."""
    bank = group[0].bank
    start = time.perf_counter()
    out: list[OneShotLayer] = []
    unreached: set[int] = set()
    for hidden in (False, True):
        stage = [t for t in group if bank.hidden_input(t.target.weight) == hidden]
        if not stage:
            continue
        inputs = int(stage[0].target.weight.shape[1])
        if settings.method == "sparsegpt":
            for t in stage:
                check_hessian(t.name, inputs)
        stats = _routed_statistics(feed, bank, hidden, inputs, settings, stage)
        for t in stage:
            rows = _prune_kernel(t, stats, settings, start)
            out += rows
            for row in rows:
                stages(describe(row))
        unreached.update(e for e, s in enumerate(stats) if s.rows == 0)
    if unreached:
        warnings.warn(
            f"prune_one_shot: no calibration token was routed to expert(s) "
            f"{', '.join(map(str, sorted(unreached)))} of layer '{bank.layer.name}'; their "
            "weights were pruned by magnitude. More calibration data reach more experts.",
            UserWarning,
            stacklevel=3,
        )
    return out


def _routed_statistics(feed, bank, hidden, inputs, settings, stage):
    """One `Statistics` per expert of the rows it receives: the tokens routed to it, or
    (`hidden`) their hidden units from the bank's current (pruned) weights."""
    label = f"weight '{stage[0].name}'" if len(stage) == 1 else f"expert bank '{bank.layer.name}'"
    stats = [
        Statistics(
            inputs,
            settings.method == "sparsegpt",
            f"{label}, expert {e}",
            settings.precision == "float32",
        )
        for e in range(bank.experts)
    ]

    def record(_, x):
        tokens = ops.reshape(x, (-1, ops.shape(x)[-1]))
        routed = np.asarray(ops.convert_to_numpy(bank.routed(tokens)))
        rows = ops.convert_to_numpy(bank.hidden(tokens) if hidden else tokens)
        for e, s in enumerate(stats):
            chosen = routed[:, e]
            if chosen.any():
                s.add(np.asarray(rows[e] if hidden else rows)[chosen])

    with Recorder([bank.layer], record):
        feed()
    return stats


def _prune_kernel(t, stats, settings, start):
    """Prunes each expert slice of `t`'s stacked kernel; assigns the whole kernel once."""
    values = np.asarray(keras.ops.convert_to_numpy(t.target.weight), np.float64)
    # Each slice is a plain `[inputs, outputs]` matrix to the mask rule.
    target = dataclasses.replace(t.target, layout=None)
    rule = t.wrapper.rule
    keep, new, rows = [], [], []
    for e, (part, s) in enumerate(zip(values, stats, strict=True)):
        solve_start = time.perf_counter()
        if s.rows == 0:
            done = magnitude(rule, target, part, t.sparsity)
            method, note = "magnitude", f"no calibration token was routed to expert {e}"
        else:
            view = dense_view(part.shape)
            done = prune_matrix(rule, target, view, part, s, t.sparsity, settings)
            method, note = settings.method, None
        keep.append(done.keep)
        new.append(done.values)
        rows.append(
            OneShotLayer(
                f"{t.name}/expert_{e}",
                method,
                int(part.shape[0]),
                s.rows,
                done.sparsity,
                done.error,
                done.error_without_update,
                time.perf_counter() - start,
                note,
                time.perf_counter() - solve_start,
            )
        )
    t.target.assign(np.stack(keep), np.stack(new))
    return rows
