"""Channel masks: which channel groups to remove at a sparsity, and the masks that remove them.

A weight pruned by channels comes with its axes (`ChannelAxis`): for each axis that holds
channels, the group number of every index along it (-1 where the channel is kept whole) and
the axis's role: "out" for the channels a layer creates, "in" for the rows it reads, "tie" for
values that follow a channel (biases, statistics, gate columns). The groups of every weight
pruned together are scored by the joint norm of all the entries they hold, the lowest-scored
are chosen, and each weight is masked along every axis that holds them. Pure numpy; which
weights hold which groups is `tfprune.channels.graph`'s business.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tfprune.masks.magnitude import num_pruned

__all__ = ["CRITERIA", "ChannelAxis", "choose_groups", "channel_masks", "kept_groups"]

CRITERIA = ("l2", "l1")
ROLES = ("in", "out", "tie")


@dataclasses.dataclass(frozen=True)
class ChannelAxis:
    """One axis of a weight that holds channels: its index, its role and each index's group."""

    axis: int
    role: str
    groups: np.ndarray


def _along(values: np.ndarray, axis: int) -> np.ndarray:
    """Sums `values` over every axis but `axis`."""
    other = tuple(i for i in range(values.ndim) if i != axis)
    return values.sum(axis=other) if other else values


def _keep_mask(keep: np.ndarray, shape: tuple[int, ...], axes: list[ChannelAxis]) -> np.ndarray:
    mask = np.ones(shape, dtype=bool)
    for a in axes:
        kept = np.where(a.groups >= 0, keep[np.maximum(a.groups, 0)], True)
        view = [1] * len(shape)
        view[a.axis] = len(a.groups)
        mask &= kept.reshape(view)
    return mask


def _keep_count(total: int, fixed: int, prune: int, round_to: int) -> int:
    """How many of `total` removable groups stay: at least one, and with the `fixed` channels a
    multiple of `round_to` where the layer has that many."""
    keep = max(1, total - prune)
    rounded = -(-(keep + fixed) // round_to) * round_to - fixed
    return min(total, max(keep, rounded))


def channel_masks(
    values: list[np.ndarray],
    axes: list[list[ChannelAxis]],
    sparsity: float,
    *,
    criterion: str = "l2",
    allocation: str = "layer",
    round_to: int = 1,
) -> list[np.ndarray]:
    """Masks that remove `round(sparsity * groups)` channel groups of the weights given.

    Groups are scored by the L2 (or L1) norm of all the entries of `values` they hold. With
    `allocation="layer"` each weight's "out" axis removes its share of the groups it creates
    first; with "global" the groups of all layers are ranked together, each layer's scores
    divided by their root mean square so that layers of different scales compare. Every layer
    keeps at least one group, and with `round_to` its channel count stays a multiple of it.
    Groups whose entries are all zero score 0 and go first, so groups removed earlier stay
    removed.

    Args:
        values: The weights, in any shapes (`weight * mask` for masks that grow).
        axes: For each weight, the axes that hold channels.
        sparsity: Fraction of the groups to remove, in [0, 1].
        criterion: "l2" or "l1". Defaults to "l2".
        allocation: "layer" or "global". Defaults to "layer".
        round_to: Kept channels per layer are rounded up to a multiple of it. Defaults to 1.

    Returns:
        One boolean keep mask per weight, of its shape.

    Example:

    >>> kernel = np.array([[1.0, 0.1, 2.0], [1.0, 0.1, 2.0]])  # 3 output channels
    >>> axes = [ChannelAxis(1, "out", np.array([0, 1, 2]))]
    >>> channel_masks([kernel], [axes], 1 / 3)[0].astype(int).tolist()
    [[1, 0, 1], [1, 0, 1]]
    """
    count = 1 + max((int(a.groups.max()) for weight in axes for a in weight), default=-1)
    score = np.zeros(count, dtype=np.float64)
    owner = np.full(count, -1, dtype=np.int64)
    fixed: dict[int, int] = {}
    for index, (value, weight_axes) in enumerate(zip(values, axes, strict=True)):
        value = np.asarray(value, dtype=np.float64)
        value = value**2 if criterion == "l2" else np.abs(value)
        for a in weight_axes:
            inside = a.groups >= 0
            np.add.at(score, a.groups[inside], _along(value, a.axis)[inside])
            if a.role == "out":
                new = inside & (owner[np.maximum(a.groups, 0)] == -1)
                owner[a.groups[new]] = index
                fixed.setdefault(index, int((~inside).sum()))
    keep = choose_groups(score, owner, fixed, sparsity, allocation, round_to)
    return [
        _keep_mask(keep, tuple(np.shape(value)), weight_axes)
        for value, weight_axes in zip(values, axes, strict=True)
    ]


def choose_groups(
    score: np.ndarray,
    owner: np.ndarray,
    fixed: dict[int, int],
    sparsity: float,
    allocation: str,
    round_to: int,
) -> np.ndarray:
    """Which groups stay (True), from each group's score and the layer that creates it
    (`owner`, -1 for none); `fixed` counts each layer's channels that are kept whole."""
    keep = np.ones(len(score), dtype=bool)
    layers = sorted(set(owner.tolist()) - {-1})
    if allocation == "layer":
        for layer in layers:
            members = np.flatnonzero(owner == layer)
            order = members[np.argsort(score[members], kind="stable")]
            prune = num_pruned(len(members), sparsity)
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
    prune = num_pruned(len(order), sparsity)
    for layer in layers:
        members = np.flatnonzero(owner == layer)
        chosen = np.isin(members, order[:prune])
        total, cut = len(members), int(chosen.sum())
        stay = _keep_count(total, fixed.get(layer, 0), cut, round_to)
        ranked = members[np.argsort(scaled[members], kind="stable")]
        keep[ranked[: total - stay]] = False
    return keep


def kept_groups(masks: list[np.ndarray], axes: list[list[ChannelAxis]]) -> np.ndarray:
    """Which groups the masks keep (True), read from their "out" axes.

    Example:

    >>> mask = np.array([[True, False, True]])
    >>> kept_groups([mask], [[ChannelAxis(1, "out", np.array([0, 1, 2]))]]).tolist()
    [True, False, True]
    """
    found: dict[int, bool] = {}
    for mask, weight_axes in zip(masks, axes, strict=True):
        mask = np.asarray(mask, dtype=bool)
        for a in weight_axes:
            if a.role != "out":
                continue
            alive = _along(mask.astype(np.int64), a.axis) > 0
            for g, live in zip(a.groups.tolist(), alive.tolist(), strict=True):
                if g >= 0:
                    found[g] = found.get(g, False) or live
    keep = np.ones(1 + max(found, default=-1), dtype=bool)
    for g, live in found.items():
        keep[g] = live
    return keep
