"""What survives of a channel-pruned model: a keep mask along each weight axis that holds
channels, and each layer's new channel counts.

The plan reads the groups the masks keep from the wrappers' mask rules, then the stripped
model's graph again (its weights' axes by position), and carries each group's fate to every
position joined with it.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from tfprune.channels.graph import ChannelGraph
from tfprune.core.groups import common_rule, targets_of
from tfprune.models.registry import weight_label

__all__ = ["Plan", "kept_groups"]


def kept_groups(wrappers: list[Any]) -> np.ndarray:
    """Which channel groups the masks of a model's channel-pruned wrappers keep (True), by
    group number."""
    return common_rule(wrappers).kept(targets_of(wrappers))


class Plan:
    """What survives of each layer: a keep mask per weight axis, and its new channel count.

    Args:
        stripped: The channel-pruned model with its wrappers stripped.
        wrappers: Its channel-pruned wrappers (before stripping).

    Raises:
        ValueError: If the graph no longer matches the masks (the model changed after
            `prune_channels`).
    """

    def __init__(self, stripped: keras.Model, wrappers: list[Any]) -> None:
        graph = ChannelGraph(stripped, unsupported="keep")
        keep = kept_groups(wrappers)
        kept_root: dict[int, bool] = {}
        for target in targets_of(wrappers):
            layer_name = target.layer.name
            known = {a.axis: a for a in graph.weights.get(layer_name, {}).get(target.label, [])}
            for a in target.layout:
                if a.axis not in known or len(known[a.axis].positions) != len(a.groups):
                    raise ValueError(
                        f"The graph of the model no longer matches its channel masks at "
                        f"layer '{layer_name}' (weight '{target.label}'): was the model "
                        "changed after prune_channels?"
                    )
                positions = known[a.axis].positions.tolist()
                for p, g in zip(positions, a.groups.tolist(), strict=True):
                    if g >= 0:
                        kept_root[graph.root(p)] = bool(keep[g])
        self.axes: dict[str, dict[str, list[tuple[int, np.ndarray]]]] = {}
        self.counts: dict[str, dict[str, int]] = {}
        for name, labels in graph.weights.items():
            self.axes[name] = {}
            for label, axes in labels.items():
                for a in axes:
                    alive = np.array(
                        [kept_root.get(graph.root(p), True) for p in a.positions.tolist()]
                    )
                    self.axes[name].setdefault(label, []).append((a.axis, alive))
                    if a.role == "out":
                        self.counts.setdefault(name, {})[label] = int(alive.sum())
        for name, positions in graph.counted.items():
            alive = [kept_root.get(graph.root(p), True) for p in positions.tolist()]
            self.counts[name] = {"": int(sum(alive))}

    def weights(self, layer: Any) -> list[np.ndarray]:
        """The layer's weights with the removed channels cut out of every axis that holds
        them."""
        axes = self.axes.get(layer.name, {})
        values = []
        for variable in layer.weights:
            value = np.asarray(keras.ops.convert_to_numpy(variable))
            for axis, alive in axes.get(weight_label(layer, variable), []):
                value = np.compress(alive, value, axis=axis)
            values.append(value)
        return values

    def kept(self, layer: Any, variable: Any, axis: int) -> np.ndarray | None:
        """Which entries along `axis` of `variable` (a weight of `layer` or of a layer inside
        it) survive; None where that axis holds no channels."""
        label = weight_label(layer, variable)
        for a, alive in self.axes.get(layer.name, {}).get(label, []):
            if a == axis % len(variable.shape):
                return alive
        return None
