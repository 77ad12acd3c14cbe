"""Channel masks: which channel groups to remove at a sparsity, and the masks that remove them.

A wrapper pruned by channels carries a spec (`PruneLowMagnitude(channels=...)`): for each of
its pruned weights, the group number of every index along each axis that holds channels (-1
where the channel is kept whole), with the axis's role (see `tfprune.channels`). The groups of
all the wrappers of one model are scored together by the joint norm of every weight entry
they hold, and the lowest-scored are masked along every axis that holds them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from keras import ops

from tfprune.masks import finite_hosts
from tfprune.registry import weight_label

__all__ = ["check_channels", "check_spec", "channel_fraction", "group_keep", "update_channel_masks"]

CRITERIA = ("l1", "l2")
RANKINGS = ("layer", "global")


def check_spec(spec: Any) -> dict[str, Any]:
    """The channel spec of a wrapper, checked (see the module docstring)."""
    keys = {"criterion", "round_to", "allocation", "weights"}
    if not isinstance(spec, dict) or set(spec) != keys:
        raise ValueError(
            f"Argument `channels` must be a dict with the keys {sorted(keys)}. Received: {spec!r}"
        )
    if spec["criterion"] not in CRITERIA or spec["allocation"] not in RANKINGS:
        raise ValueError(
            f"Channel criterion must be one of {CRITERIA} and allocation one of {RANKINGS}. "
            f"Received: criterion={spec['criterion']!r}, allocation={spec['allocation']!r}"
        )
    for label, axes in spec["weights"].items():
        for axis, role, ids in axes:
            if role not in ("in", "out", "tie") or not isinstance(axis, int):
                raise ValueError(f"Bad channel axis for weight '{label}': {(axis, role)!r}")
            if not all(isinstance(i, int) for i in ids):
                raise ValueError(f"Channel groups of weight '{label}' must be integers.")
    return spec


def check_channels(spec: dict[str, Any], layer: Any, weights: list[Any]) -> None:
    """Raises if the spec does not fit the layer's pruned weights (another model's spec)."""
    shapes = {weight_label(layer, w): tuple(w.shape) for w in weights}
    for label, axes in spec["weights"].items():
        shape = shapes.get(label)
        for axis, _, ids in axes:
            if shape is None or axis >= len(shape) or shape[axis] != len(ids):
                raise ValueError(
                    f"The channel groups of layer '{layer.name}' do not fit its weight "
                    f"'{label}' of shape {shape}: {len(ids)} groups on axis {axis}."
                )


def _axes(wrapper: Any) -> list[tuple[Any, Any, list[tuple[int, str, np.ndarray]]]]:
    weights = wrapper.channels["weights"]
    found = []
    for w, m in wrapper.pruned_weights:
        axes = weights.get(weight_label(wrapper.layer, w), [])
        found.append((w, m, [(a, role, np.asarray(ids, dtype=np.int64)) for a, role, ids in axes]))
    return found


def _along(values: np.ndarray, axis: int) -> np.ndarray:
    """Sums `values` over every axis but `axis`."""
    other = tuple(i for i in range(values.ndim) if i != axis)
    return values.sum(axis=other) if other else values


def _keep_masks(keep: np.ndarray, shape: tuple[int, ...], axes: list) -> np.ndarray:
    mask = np.ones(shape, dtype=bool)
    for axis, _, ids in axes:
        kept = np.where(ids >= 0, keep[np.maximum(ids, 0)], True)
        view = [1] * len(shape)
        view[axis] = len(ids)
        mask &= kept.reshape(view)
    return mask


def _keep_count(total: int, fixed: int, prune: int, round_to: int) -> int:
    """How many of `total` removable groups stay: at least one, and with the `fixed` channels a
    multiple of `round_to` where the layer has that many."""
    keep = max(1, total - prune)
    rounded = -(-(keep + fixed) // round_to) * round_to - fixed
    return min(total, max(keep, rounded))


def update_channel_masks(wrappers: list[Any], sparsity: float, step: int | None = None) -> None:
    """Masks `round(sparsity * groups)` channel groups of the wrappers of one model.

    Groups are scored by the L2 (or L1) norm of all the entries of `weight * mask` they hold;
    masked groups score 0 and stay masked. With `allocation="layer"` each layer that creates
    channels removes its share of its own groups; with "global" the groups of all layers are
    ranked together, each layer's scores divided by their root mean square so that layers of
    different scales compare. Every layer keeps at least one group, and with `round_to` its
    channel count stays a multiple of it. The stored weights keep their values (the forward
    pass masks them): `tfprune.trim` reads the unmasked model for its update step.
    """
    spec = wrappers[0].channels
    entries = [(wrapper, w, m, axes) for wrapper in wrappers for w, m, axes in _axes(wrapper)]
    hosts = finite_hosts(
        [wrapper._effective(w, m) for wrapper, w, m, _ in entries],
        [wrapper._describe(w) for wrapper, w, _, _ in entries],
    )
    count = 1 + max((int(ids.max()) for *_, axes in entries for _, _, ids in axes), default=-1)
    score = np.zeros(count, dtype=np.float64)
    owner = np.full(count, -1, dtype=np.int64)
    fixed: dict[int, int] = {}
    for index, ((*_, axes), values) in enumerate(zip(entries, hosts, strict=True)):
        values = np.asarray(values, dtype=np.float64)
        values = values**2 if spec["criterion"] == "l2" else np.abs(values)
        for axis, role, ids in axes:
            inside = ids >= 0
            np.add.at(score, ids[inside], _along(values, axis)[inside])
            if role == "out":
                new = inside & (owner[np.maximum(ids, 0)] == -1)
                owner[ids[new]] = index
                fixed.setdefault(index, int((~inside).sum()))
    keep = _choose(score, owner, fixed, sparsity, spec)
    for (_, _, m, axes), values in zip(entries, hosts, strict=True):
        m.assign(_keep_masks(keep, tuple(values.shape), axes))
    for wrapper in wrappers:
        wrapper._finish_update(step)


def _choose(score, owner, fixed, sparsity: float, spec: dict) -> np.ndarray:
    keep = np.ones(len(score), dtype=bool)
    layers = sorted(set(owner.tolist()) - {-1})
    round_to = int(spec["round_to"])
    if spec["allocation"] == "layer":
        for layer in layers:
            members = np.flatnonzero(owner == layer)
            order = members[np.argsort(score[members], kind="stable")]
            prune = int(round(sparsity * len(members)))
            stay = _keep_count(len(members), fixed.get(layer, 0), prune, round_to)
            keep[order[: len(members) - stay]] = False
        return keep
    scaled = score.copy()
    for layer in layers:
        members = np.flatnonzero(owner == layer)
        live = score[members][score[members] > 0]
        if live.size:
            scaled[members] /= np.sqrt(np.mean(live**2))
    order = np.argsort(scaled, kind="stable")
    order = order[owner[order] >= 0]
    prune = int(round(sparsity * len(order)))
    for layer in layers:
        members = np.flatnonzero(owner == layer)
        chosen = np.isin(members, order[:prune])
        total, cut = len(members), int(chosen.sum())
        stay = _keep_count(total, fixed.get(layer, 0), cut, round_to)
        ranked = members[np.argsort(scaled[members], kind="stable")]
        keep[ranked[: total - stay]] = False
    return keep


def group_keep(wrappers: list[Any]) -> np.ndarray:
    """Which groups the masks keep, read from the "out" axes of the wrappers' masks."""
    found: dict[int, bool] = {}
    for wrapper in wrappers:
        for _, m, axes in _axes(wrapper):
            mask = np.asarray(ops.convert_to_numpy(m), dtype=bool)
            for axis, role, ids in axes:
                if role != "out":
                    continue
                alive = _along(mask.astype(np.int64), axis) > 0
                for g, a in zip(ids.tolist(), alive.tolist(), strict=True):
                    if g >= 0:
                        found[g] = found.get(g, False) or a
    keep = np.ones(1 + max(found, default=-1), dtype=bool)
    for g, a in found.items():
        keep[g] = a
    return keep


def channel_fraction(wrappers: list[Any]) -> float:
    """The fraction of removable channel groups the masks remove now."""
    keep = group_keep(wrappers)
    return float(1.0 - keep.mean()) if keep.size else 0.0
