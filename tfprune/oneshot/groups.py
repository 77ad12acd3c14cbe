"""One group of weights pruned in one shot: the statistics of their inputs read in one pass
of a feed (`tfprune.oneshot.blocks`), then each weight's mask and new values by its method,
with its report row. `tfprune.oneshot.prune` runs it per block (or per layer)."""

from __future__ import annotations

import time
from typing import Any

import keras
import numpy as np

from tfprune.calibration.recorder import Recorder
from tfprune.calibration.statistics import Statistics, input_rows
from tfprune.oneshot.experts import prune_experts
from tfprune.oneshot.solve import OneShotLayer, check_hessian, describe, magnitude, prune_matrix

__all__ = ["needs_data", "prune_group", "record"]


def needs_data(t: Any, method: str) -> bool:
    return method != "magnitude" and (t.view is not None or t.bank is not None)


def prune_group(feed, group, settings, stages, *, dense=False) -> list[OneShotLayer]:
    """Prunes the weights of `group` (any number of source layers) from the inputs their
    layers receive in one `feed`; expert banks each from their own routed feeds, after the
    other weights are pruned (before, with `dense`: their inputs from the dense layers)."""
    banks: dict[int, list[Any]] = {}
    plain = []
    for t in group:
        if t.bank is not None and settings.method != "magnitude":
            banks.setdefault(id(t.bank.layer), []).append(t)
        else:
            plain.append(t)
    start = time.perf_counter()
    stats = record(feed, plain, settings)
    out: list[OneShotLayer] = []
    if not dense:  # the banks then read their inputs from the pruned layers before them
        out += _apply(plain, stats, settings, stages, start)
    for bank_group in banks.values():
        out += prune_experts(feed, bank_group, settings, stages)
    if dense:
        out += _apply(plain, stats, settings, stages, start)
    return out


def record(feed, group, settings) -> dict[int, Statistics]:
    """The statistics of the inputs of every weight of `group` that the method reads, from one
    run of `feed`."""
    full = settings.method == "sparsegpt"
    on_backend = settings.precision == "float32"
    viewed = [t for t in group if needs_data(t, settings.method)]
    stats: dict[int, Statistics] = {}
    readers: dict[int, list[Any]] = {}
    sources: dict[int, Any] = {}
    for t in viewed:
        if full:
            check_hessian(t.name, t.view.inputs)
        stats[id(t)] = Statistics(t.view.inputs, full, f"weight '{t.name}'", on_backend)
        readers.setdefault(id(t.source), []).append(t)
        sources[id(t.source)] = t.source
    if viewed:
        # Layers called on the same tensor (a block's query, key and value projections; its
        # gate and up projections) read the same rows: one product serves them all.
        last: dict[str, Any] = {"x": None, "parts": {}}

        def add(layer, x):
            if x is not last["x"]:
                last["x"], last["parts"] = x, {}
            for t in readers[id(layer)]:
                order = t.view.order
                key = (t.view.inputs, tuple(order(len(x.shape))) if order else id(t.view))
                if key not in last["parts"]:
                    rows = input_rows(t.view, x, on_backend)
                    last["parts"][key] = (stats[id(t)].product(rows), int(rows.shape[0]))
                stats[id(t)].add_product(*last["parts"][key])

        with Recorder(list(sources.values()), add):
            feed()
    return stats


def _apply(group, stats, settings, stages, start) -> list[OneShotLayer]:
    """Prunes each weight of `group` from its statistics (by magnitude where it has none)."""
    out = []
    for t in group:
        values = np.asarray(keras.ops.convert_to_numpy(t.target.weight), np.float64)
        s = stats.get(id(t))
        rule = t.wrapper.rule
        solve_start = time.perf_counter()
        if s is None:
            done = magnitude(rule, t.target, values, t.sparsity)
        else:
            done = prune_matrix(rule, t.target, t.view, values, s, t.sparsity, settings)
        solved = time.perf_counter() - solve_start
        t.target.assign(done.keep, done.values)
        row = OneShotLayer(
            t.name,
            settings.method if s is not None else "magnitude",
            t.view.inputs if t.view else None,
            s.rows if s is not None else 0,
            done.sparsity,
            done.error,
            done.error_without_update,
            time.perf_counter() - start,
            solve_seconds=solved,
        )
        out.append(row)
        stages(describe(row))
    return out
