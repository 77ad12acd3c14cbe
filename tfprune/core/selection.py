"""Which layers `prune_low_magnitude` prunes, and with which schedule: the `layers=` argument."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any

import keras

from tfprune.core.wrapper import PruneLowMagnitude
from tfprune.masks.allocation import check_allocation
from tfprune.masks.patterns import Pattern
from tfprune.models.registry import supports
from tfprune.schedules import PruningSchedule, as_schedule, default_schedule

__all__ = ["LayerSelection", "check_selector", "matches"]


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


class LayerSelection:
    """The layers to prune and their schedules, from `prune_low_magnitude`'s arguments.

    Args:
        layers: None (every layer with prunable weights, with `schedule`); a list of selectors
            (the layers any of them matches, with `schedule`); or a dict from selectors to a
            schedule or None (None keeps a layer dense): the first selector that matches a
            layer decides, and a layer no selector matches stays dense. A selector is a name
            pattern (`"block_*_expand"`, matched against the whole layer name with `*` and `?`
            wildcards), a layer class (`keras.layers.Dense`), or a function of the layer
            returning a bool.
        schedule: The default schedule; None is tfmot's (`tfprune.schedules.default_schedule`).
        allocation: "layer" (each weight reaches its schedule's sparsity) or "global" (one
            magnitude threshold across all the weights that share a schedule, so that their
            total reaches it).
        group: The name of the allocation group (used with "global").
        pattern: The block or N:M pattern of every wrapper. Defaults to None (unstructured).
        policy: A `tfprune.PruningPolicy` that may refuse layers, or None. Defaults to None.

    Raises:
        TypeError: If `layers`, `schedule`, `allocation` or a selector or schedule in `layers`
            has the wrong type.
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
        self.allocation = check_allocation(allocation)
        self.pattern = pattern or Pattern()
        self.policy = policy
        default = default_schedule(fixed_pattern=self.pattern.m_by_n is not None)
        self.schedule = schedule = as_schedule(schedule, default=default)
        self.group = group
        # (selector, schedule or None) in the order they are tried.
        self.picks: list[tuple[Any, Any]]
        if layers is None:
            self.picks = [(lambda layer: True, schedule)]
        elif isinstance(layers, dict):
            self.picks = list(layers.items())
        elif isinstance(layers, (list, tuple)):
            self.picks = [(selector, schedule) for selector in layers]
        else:
            raise TypeError(
                "Argument `layers` must be None, a list of layer selectors, or a dict from "
                f"selectors to schedules. Received: layers={layers!r} of type "
                f"{type(layers).__name__}"
            )
        for selector, value in self.picks:
            check_selector(selector)
            if value is not None and not isinstance(value, PruningSchedule):
                raise TypeError(
                    f"Argument `layers` maps {_describe(selector)} to {value!r} of type "
                    f"{type(value).__name__}; each value must be a tfprune.PruningSchedule or "
                    "None (keep dense)."
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
        for index, (selector, value) in enumerate(self.picks):
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
            for index, (selector, _) in enumerate(self.picks)
            if index not in self._used and isinstance(selector, (str, type))
        ]
        if unused:
            raise ValueError(
                f"Argument `layers` names {', '.join(unused)}, which match no layer with "
                f"prunable weights. Such layers: {', '.join(names())}"
            )
