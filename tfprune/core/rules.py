"""Mask rules: what a `PruneLowMagnitude` wrapper masks and how its masks are updated.

Every wrapper holds one rule, made from its constructor arguments by `mask_rule`:

- `MagnitudeRule`: single entries, the smallest magnitudes first (`round(s * n)` exactly).
- `PatternRule`: whole blocks (tfmot's `block_size`) or N:M groups (`sparsity_m_by_n`).
- `ChannelRule`: whole channel groups, scored together with the other layers of the model
  (`tfprune.prune_channels`).

A rule answers three questions, and nothing else in tfprune asks the wrapper about its kind of
mask: which entries (`layout`, per weight, when the wrapper is built), how to choose them
(`masks`, from values ranked by magnitude: the weights themselves during training, or a
one-shot method's scores) and how to update (`keeps_values`, `standalone`, `exact`, `reached`).
A new kind of mask is one new class here.
"""

from __future__ import annotations

import abc
import warnings
from typing import Any

import numpy as np
from keras import ops

from tfprune.masks.allocation import ALLOCATIONS
from tfprune.masks.channels import CRITERIA, ROLES, ChannelAxis, channel_masks, kept_groups
from tfprune.masks.magnitude import finite_hosts, magnitude_mask, magnitude_masks, sparsity
from tfprune.masks.patterns import Pattern
from tfprune.models.experts import expert_axis
from tfprune.models.registry import weight_label
from tfprune.models.views import input_view
from tfprune.schedules import PruningSchedule, default_schedule
from tfprune.utils.checks import is_int

__all__ = ["MaskRule", "MagnitudeRule", "PatternRule", "ChannelRule", "mask_rule"]


class MaskRule(abc.ABC):
    """What a wrapper masks and how its masks are updated.

    Attributes:
        kind: What it prunes, in words ("channels").
        standalone: Whether one wrapper's masks can be computed on their own (channel groups
            span several layers, so their masks cannot).
        keeps_values: Whether masked entries keep their stored values (the forward pass masks
            them). Otherwise the stored weights are zeroed where masked at every update and
            whenever the model is saved, so checkpoints are sparse.
        exact: Whether a schedule that ran to its end reaches its sparsity exactly (block and
            N:M patterns and channel groups reach their own share).
    """

    kind = "mask"
    standalone = True
    keeps_values = False
    exact = False

    def layouts(self, layer: Any, weights: list[Any]) -> list[Any]:
        """What the rule needs to know of each weight's entries (each `Target`'s `layout`),
        checked once when the wrapper is built. Raises `ValueError` if the rule cannot prune
        a weight."""
        del layer
        return [None] * len(weights)

    @abc.abstractmethod
    def masks(self, targets: list[Any], values: list[np.ndarray], sparsity: float) -> list:
        """Keep masks for `targets` pruned together at `sparsity`.

        Args:
            targets: The `Target`s (of this rule's wrapper, or of wrappers whose rules `join`).
            values: One array per target, in its weight's layout: the entries of the smallest
                magnitude go first (`weight * mask` during training; a one-shot method's scores).
            sparsity: The target sparsity.

        Returns:
            One 0/1 or boolean array per target, of its weight's shape (1 = kept).
        """

    def reached(self, targets: list[Any]) -> float:
        """The sparsity the masks of `targets` hold now, as a schedule's target counts it."""
        return sparsity([t.mask for t in targets])

    def joins(self, other: MaskRule) -> bool:
        """Whether wrappers with this rule and `other` may be pruned together."""
        return type(self) is type(other) and self.config() == other.config()

    def default_schedule(self) -> PruningSchedule:
        """The schedule of a wrapper given none."""
        return default_schedule()

    def config(self) -> dict[str, Any]:
        """The wrapper's constructor arguments that make this rule."""
        return Pattern().config()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config()})"


class MagnitudeRule(MaskRule):
    """Single entries: the `round(sparsity * n)` smallest magnitudes, ties by position.

    A mixture of experts' stacked kernel (`[experts, inputs, outputs]`, see
    `tfprune.models.experts`) is pruned expert by expert, each with its own exact count, when
    the weight is pruned on its own; weights ranked together (`allocation="global"`) share one
    threshold, experts included.
    """

    kind = "magnitude"
    exact = True

    def layouts(self, layer: Any, weights: list[Any]) -> list[Any]:
        return [expert_axis(layer, w) for w in weights]

    def masks(self, targets: list[Any], values: list[np.ndarray], sparsity: float) -> list:
        names = [t.description for t in targets]
        if len(values) == 1:
            (value,), (name,) = values, names
            axis = getattr(targets[0], "layout", None)
            if axis is None or np.ndim(value) < 2:
                return [magnitude_mask(value, sparsity, name=name)]
            slices = np.moveaxis(np.asarray(value), axis, 0)
            keep = [
                magnitude_mask(part, sparsity, name=f"{name}, expert {e}")
                for e, part in enumerate(slices)
            ]
            return [np.moveaxis(np.stack(keep), 0, axis)]
        return magnitude_masks(values, sparsity, names=names)


class PatternRule(MaskRule):
    """Whole blocks, or N:M groups along each weight's input channels (see `Pattern`)."""

    kind = "block or N:M pattern"

    def __init__(self, pattern: Pattern) -> None:
        if pattern.unstructured:
            raise ValueError("An unstructured pattern is a MagnitudeRule.")
        self.pattern = pattern

    def layouts(self, layer: Any, weights: list[Any]) -> list[Any]:
        views = []
        for weight in weights:
            # N:M groups of an EinsumDense kernel run along its inputs, wherever they are.
            view = input_view(layer, weight) if self.pattern.m_by_n is not None else None
            shaped = weight if view is None else np.empty((view.inputs, view.outputs))
            description = f"weight '{weight.path}' of layer '{layer.name}'"
            warning = self.pattern.check(shaped, description)
            if warning:
                warnings.warn(warning, UserWarning, stacklevel=4)
            views.append(view)
        return views

    def masks(self, targets: list[Any], values: list[np.ndarray], sparsity: float) -> list:
        names = [t.description for t in targets]
        return self.pattern.masks(values, sparsity, names, [t.layout for t in targets])

    def default_schedule(self) -> PruningSchedule:
        return default_schedule(fixed_pattern=self.pattern.m_by_n is not None)

    def config(self) -> dict[str, Any]:
        return self.pattern.config()


class ChannelRule(MaskRule):
    """Whole channel groups, shared with the other layers of the model.

    Args:
        spec: The wrapper's `channels` argument: `criterion` ("l2" or "l1"), `round_to` (a
            positive int), `allocation` ("layer" or "global") and `weights`, which maps each
            pruned weight's label to its axes that hold channels, as `[axis, role, groups]`
            (see `tfprune.masks.channels`). `tfprune.prune_channels` writes it.

    Raises:
        ValueError: If `spec` is malformed.
    """

    kind = "channels"
    standalone = False
    keeps_values = True  # `tfprune.trim` reads the unmasked model for its update step

    def __init__(self, spec: Any) -> None:
        self.spec = _check_spec(spec)

    def layouts(self, layer: Any, weights: list[Any]) -> list[list[ChannelAxis]]:
        shapes = {weight_label(layer, w): tuple(w.shape) for w in weights}
        for label, axes in self.spec["weights"].items():
            shape = shapes.get(label)
            for axis, _, groups in axes:
                if shape is None or axis >= len(shape) or shape[axis] != len(groups):
                    raise ValueError(
                        f"The channel groups of layer '{layer.name}' do not fit its weight "
                        f"'{label}' of shape {shape}: {len(groups)} groups on axis {axis}."
                    )
        return [
            [
                ChannelAxis(axis, role, np.asarray(groups, dtype=np.int64))
                for axis, role, groups in self.spec["weights"].get(weight_label(layer, w), [])
            ]
            for w in weights
        ]

    def masks(self, targets: list[Any], values: list[np.ndarray], sparsity: float) -> list:
        values = finite_hosts(values, [t.description for t in targets])
        return channel_masks(
            values,
            [t.layout for t in targets],
            sparsity,
            criterion=self.spec["criterion"],
            allocation=self.spec["allocation"],
            round_to=int(self.spec["round_to"]),
        )

    def kept(self, targets: list[Any]) -> np.ndarray:
        """Which channel groups the masks of `targets` keep (True), by group number."""
        return kept_groups(
            [ops.convert_to_numpy(t.mask) for t in targets], [t.layout for t in targets]
        )

    def reached(self, targets: list[Any]) -> float:
        """The fraction of channel groups removed (rounding may keep more than asked)."""
        keep = self.kept(targets)
        return float(1.0 - keep.mean()) if keep.size else 0.0

    def joins(self, other: MaskRule) -> bool:
        # Each layer has its own groups; the settings that rank them must agree.
        shared = ("criterion", "round_to", "allocation")
        return isinstance(other, ChannelRule) and all(self.spec[k] == other.spec[k] for k in shared)

    def config(self) -> dict[str, Any]:
        return {**Pattern().config(), "channels": self.spec}


def _check_spec(spec: Any) -> dict[str, Any]:
    keys = {"criterion", "round_to", "allocation", "weights"}
    if not isinstance(spec, dict) or set(spec) != keys:
        raise ValueError(
            f"Argument `channels` must be a dict with the keys {sorted(keys)}. Received: {spec!r}"
        )
    if spec["criterion"] not in CRITERIA or spec["allocation"] not in ALLOCATIONS:
        raise ValueError(
            f"Channel criterion must be one of {CRITERIA} and allocation one of {ALLOCATIONS}. "
            f"Received: criterion={spec['criterion']!r}, allocation={spec['allocation']!r}"
        )
    if not is_int(spec["round_to"]) or spec["round_to"] < 1:
        raise ValueError(f"Channel `round_to` must be a positive int. Received: {spec!r}")
    for label, axes in spec["weights"].items():
        for axis, role, ids in axes:
            if role not in ROLES or not isinstance(axis, int):
                raise ValueError(f"Bad channel axis for weight '{label}': {(axis, role)!r}")
            if not all(isinstance(i, int) for i in ids):
                raise ValueError(f"Channel groups of weight '{label}' must be integers.")
    return spec


def mask_rule(
    block_size: Any = (1, 1),
    block_pooling_type: Any = "AVG",
    sparsity_m_by_n: Any = None,
    channels: Any = None,
) -> MaskRule:
    """The rule a wrapper's arguments ask for (tfmot's structure options, or channel groups).

    Raises:
        TypeError: If an option has the wrong type.
        ValueError: If an option is out of range, or channels are asked with a block or N:M
            pattern.

    Example:

    >>> mask_rule()
    MagnitudeRule({'block_size': (1, 1), 'block_pooling_type': 'AVG', 'sparsity_m_by_n': None})
    >>> type(mask_rule(sparsity_m_by_n=(2, 4))).__name__
    'PatternRule'
    """
    pattern = Pattern.of(block_size, block_pooling_type, sparsity_m_by_n)
    if channels is not None:
        if not pattern.unstructured:
            raise ValueError(
                "Channel groups are pruned whole: `channels` cannot be used with `block_size` "
                f"or `sparsity_m_by_n`. Received: {pattern.config()}"
            )
        return ChannelRule(channels)
    return MagnitudeRule() if pattern.unstructured else PatternRule(pattern)
