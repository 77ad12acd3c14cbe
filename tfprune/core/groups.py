"""Updating masks: one wrapper on its own, or the wrappers of an allocation group together.

`update_layer` is what `PruneLowMagnitude.update_masks` does: each of the wrapper's weights
reaches the sparsity on its own. `update_together` ranks all the weights of several wrappers
with one threshold (`allocation="global"`, and channel groups, which span layers). Both ask the
wrappers' mask rule which entries go (see `tfprune.core.rules`); neither knows the kind of
mask. `UpdateGroup` is how `UpdatePruningStep` sees a model: its wrappers grouped by what
drives them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from tfprune.schedules import PruningSchedule

__all__ = [
    "UpdateGroup",
    "common_rule",
    "reached",
    "targets_of",
    "update_groups",
    "update_layer",
    "update_together",
]


def targets_of(wrappers: list[Any]) -> list[Any]:
    """The `Target`s of the wrappers, in order."""
    return [t for wrapper in wrappers for t in wrapper.targets]


def common_rule(wrappers: list[Any]) -> Any:
    """The mask rule the wrappers share.

    Raises:
        ValueError: If their rules cannot be pruned together (another block size, pooling,
            N:M pattern or channel setting).
    """
    rule = wrappers[0].rule
    for wrapper in wrappers[1:]:
        if not rule.joins(wrapper.rule):
            raise ValueError(
                "Wrappers pruned together must share one mask rule (block size, pooling, N:M, "
                f"channel settings). Received: {rule!r} for '{wrappers[0].name}' and "
                f"{wrapper.rule!r} for '{wrapper.name}'"
            )
    return rule


def _apply(rule: Any, targets: list[Any], sparsity: float) -> None:
    values = [t.effective() for t in targets]
    keeps = rule.masks(targets, values, sparsity)
    for target, value, keep in zip(targets, values, keeps, strict=True):
        target.assign(keep, None if rule.keeps_values else value * np.asarray(keep))


def update_layer(wrapper: Any, sparsity: float, step: int | None = None) -> None:
    """Recomputes each mask of `wrapper` at `sparsity` from its weight's current `w * mask`.

    Raises:
        ValueError: If a weight holds NaN or Inf values, or the wrapper's masks can only be
            computed together with other layers' (channel groups).
    """
    rule = wrapper.rule
    if not rule.standalone:
        raise ValueError(
            f"Layer '{wrapper.name}' is pruned by {rule.kind}: its masks are computed together "
            "with its model's other layers, by UpdatePruningStep."
        )
    for target in wrapper.targets:
        _apply(rule, [target], sparsity)
    wrapper.record_update(step)


def update_together(wrappers: list[Any], sparsity: float, step: int | None = None) -> None:
    """Recomputes the masks of several wrappers with one ranking across all their weights.

    Unstructured: exactly `round(sparsity * n)` entries are masked over the `n` entries of all
    their pruned weights, the smallest magnitudes of `weight * mask` first, ties broken by
    position in the order of `wrappers` and their weights; each weight ends up with its own
    sparsity. Blocks are ranked likewise, N:M groups each on their own, and channel groups
    as `tfprune.masks.channels` says.

    Args:
        wrappers: The wrappers pruned together (an allocation group).
        sparsity: Target sparsity of the total, in [0, 1).
        step: The training step to record in each `pruning_step`. Defaults to None.

    Raises:
        ValueError: If a weight holds NaN or Inf values, or the wrappers' rules differ.
    """
    _apply(common_rule(wrappers), targets_of(wrappers), sparsity)
    for wrapper in wrappers:
        wrapper.record_update(step)


def reached(wrappers: list[Any]) -> float:
    """The sparsity the wrappers' masks hold now, as their schedule's target counts it: the
    share of entries masked, or for channel groups the share of groups removed."""
    return common_rule(wrappers).reached(targets_of(wrappers))


@dataclasses.dataclass
class UpdateGroup:
    """Wrappers driven together by one schedule.

    Attributes:
        schedule: Their schedule.
        wrappers: The wrappers.
        together: Whether they are ranked together (an allocation group) rather than each on
            its own.
        name: The allocation group's name, or the first wrapper's.
    """

    schedule: PruningSchedule
    wrappers: list[Any]
    together: bool
    name: str

    def due(self, first: int, last: int) -> float | None:
        """The sparsity of the latest update the schedule names in `[first, last]`, or None."""
        for step in range(last, first - 1, -1):
            update, sparsity = self.schedule(step)
            if update:
                return sparsity
        return None

    def update(self, sparsity: float, step: int | None = None) -> None:
        """Recomputes the group's masks at `sparsity`, recording `step`."""
        if self.together:
            update_together(self.wrappers, sparsity, step)
        else:
            for wrapper in self.wrappers:
                update_layer(wrapper, sparsity, step)

    def shortfall(self, step: int) -> list[str]:
        """How far the masks are from the schedule's end, when `step` steps stopped short of
        its `end_step`: one "'<layer>' at 42.0% of 80.0%" per wrapper (or for the group), empty
        when the schedule has no end, was passed, or reached its target exactly."""
        end = self.schedule.end_step
        if end is None or end < 0 or step > end:
            return []
        target = self.schedule(end)[1]
        parts = [self.wrappers] if self.together else [[w] for w in self.wrappers]
        found = []
        for wrappers in parts:
            rule = common_rule(wrappers)
            now = rule.reached(targets_of(wrappers))
            # A pattern or channel groups reach their own share (partial blocks, short
            # groups, rounding): stopping before the last update is what counts.
            if now < target - 1e-6 or not rule.exact:
                name = f"group '{self.name}'" if self.together else f"'{wrappers[0].name}'"
                found.append(f"{name} at {now:.1%} of {target:.1%}")
        return found


def update_groups(wrappers: list[Any]) -> list[UpdateGroup]:
    """The wrappers grouped as they are updated: an allocation group together; the others by
    their schedule object (the wrappers one `prune_low_magnitude` call made share one, so it is
    asked once a step), each wrapper on its own."""
    groups: dict[tuple[str | None, int | None], UpdateGroup] = {}
    for wrapper in wrappers:
        group = wrapper.allocation_group
        key = (group, None) if group else (None, id(wrapper.pruning_schedule))
        if key not in groups:
            groups[key] = UpdateGroup(
                wrapper.pruning_schedule, [], group is not None, group or wrapper.name
            )
        groups[key].wrappers.append(wrapper)
    return list(groups.values())
