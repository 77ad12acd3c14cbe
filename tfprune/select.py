"""Which layers `prune_low_magnitude` prunes, and with which schedule: the `layers=` argument."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any

import keras

from tfprune.patterns import Pattern
from tfprune.registry import supports
from tfprune.schedules import PruningSchedule
from tfprune.wrapper import PruneLowMagnitude, default_schedule

__all__ = ["Choice", "ALLOCATIONS", "check_selector", "matches"]

ALLOCATIONS = ("layer", "global")


def _describe(selector: Any) -> str:
    if isinstance(selector, type):
        return selector.__name__
    return repr(selector) if isinstance(selector, str) else getattr(selector, "__name__", "?")


def check_selector(selector: Any) -> None:
    """Raises a `TypeError` unless `selector` is a name pattern, a layer class or a function."""
    if isinstance(selector, (str, type)) or callable(selector):
        return
    raise TypeError(
        "Each key or item of argument `layers` must be a layer name pattern (str, with * and ? "
        "wildcards), a layer class, or a function of the layer. "
        f"Received: {selector!r} of type {type(selector).__name__}"
    )


def matches(selector: Any, layer: Any) -> bool:
    """Whether `selector` (a name pattern, class or function) picks `layer`."""
    if isinstance(selector, str):
        return fnmatch.fnmatchcase(layer.name, selector)
    if isinstance(selector, type):
        return isinstance(layer, selector)
    return bool(selector(layer))


class Choice:
    """The layers to prune and their schedules, from `prune_low_magnitude`'s arguments.

    Args:
        layers: None (every layer with prunable weights, with `schedule`); a list of selectors
            (the layers any of them matches, with `schedule`); or a dict from selectors to a
            schedule or None (None keeps a layer dense): the first selector that matches a
            layer decides, and a layer no selector matches stays dense. A selector is a name
            pattern (`"block_*_expand"`, matched against the whole layer name with `*` and `?`
            wildcards), a layer class (`keras.layers.Dense`), or a function of the layer
            returning a bool.
        schedule: The default schedule; None is `ConstantSparsity(0.5, begin_step=0)`.
        allocation: "layer" (each weight reaches its schedule's sparsity) or "global" (one
            magnitude threshold across all the weights that share a schedule, so that their
            total reaches it).
        group: The name of the allocation group (used with "global").

    Raises:
        TypeError: If `layers` or a selector or schedule in it has the wrong type.
        ValueError: If `allocation` is unknown.
    """

    def __init__(
        self,
        layers: Any,
        schedule: PruningSchedule | None,
        allocation: str = "layer",
        group: str = "",
        pattern: Pattern | None = None,
        policy: Any = None,
    ) -> None:
        if not isinstance(allocation, str) or allocation not in ALLOCATIONS:
            raise ValueError(
                f'Argument `allocation` must be "layer" or "global". Received: allocation='
                f"{allocation!r}"
            )
        self.pattern = pattern or Pattern()
        self.policy = policy
        if schedule is None:
            schedule = default_schedule(self.pattern)  # tfmot's default
        self.schedule = schedule
        self.allocation = allocation
        self.group = group
        self.rules: list[tuple[Any, Any]]
        if layers is None:
            self.rules = [(lambda layer: True, schedule)]
        elif isinstance(layers, dict):
            self.rules = list(layers.items())
        elif isinstance(layers, (list, tuple)):
            self.rules = [(selector, schedule) for selector in layers]
        else:
            raise TypeError(
                "Argument `layers` must be None, a list of layer selectors, or a dict from "
                f"selectors to schedules. Received: layers={layers!r} of type "
                f"{type(layers).__name__}"
            )
        for selector, value in self.rules:
            check_selector(selector)
            if value is not None and not isinstance(value, PruningSchedule):
                raise TypeError(
                    f"The schedule for layers {_describe(selector)} must be a "
                    "tfprune.PruningSchedule or None (keep dense). "
                    f"Received: {value!r} of type {type(value).__name__}"
                )
        self._used: set[int] = set()
        self._shared: dict[int, PruningSchedule] = {}

    def schedule_for(self, layer: Any) -> PruningSchedule | None:
        """The schedule `layer` is pruned with, or None to leave it as it is."""
        if not isinstance(layer, keras.layers.Layer) or isinstance(layer, keras.Model):
            return None
        if not supports(layer):
            return None
        if self.policy is not None and not self.policy.allow_pruning(layer):
            return None
        for index, (selector, value) in enumerate(self.rules):
            if matches(selector, layer):
                self._used.add(index)
                return value
        return None

    def wrap(self, layer: Any, schedule: PruningSchedule | None) -> PruneLowMagnitude:
        """`layer` in a `PruneLowMagnitude` with `schedule`, in this choice's group."""
        group = None
        if self.allocation == "global":
            # One group per schedule: the weights ramped together share one threshold.
            key = id(schedule)
            self._shared.setdefault(key, schedule)
            group = f"{self.group}/{list(self._shared).index(key)}"
        return PruneLowMagnitude(
            layer, pruning_schedule=schedule, allocation_group=group, **self.pattern.config()
        )

    def check_used(self, names: Callable[[], list[str]]) -> None:
        """Raises if a name pattern or class matched no prunable layer (a typo, usually)."""
        unused = [
            _describe(selector)
            for index, (selector, _) in enumerate(self.rules)
            if index not in self._used and isinstance(selector, (str, type))
        ]
        if unused:
            raise ValueError(
                f"Argument `layers` names {', '.join(unused)}, which match no layer with "
                f"prunable weights. Such layers: {', '.join(names())}"
            )
