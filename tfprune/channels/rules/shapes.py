"""Layers and operations that move channels without mixing them: `Concatenate` places its
inputs' channels side by side, `Flatten` repeats each channel at every spatial position,
`Reshape` and `Permute` pass them through when the channel axis stays last, and `x[...]`
passes them through when it keeps the last axis whole."""

from __future__ import annotations

import functools
from typing import Any

import keras
import numpy as np

from tfprune.channels.rules.base import (
    LayerRule,
    UnsupportedLayer,
    register,
    register_operation,
)

_L = keras.layers


@register(_L.Concatenate)
class ConcatenateRule(LayerRule):
    def follow(self, graph, op, inputs, out_shapes):
        if op.axis in (-1, len(inputs[0][1]) - 1):
            return [np.concatenate([pos for pos, _ in inputs])]
        return [graph.merge(inputs)]


@register(_L.Flatten)
class FlattenRule(LayerRule):
    def follow(self, graph, op, inputs, out_shapes):
        x, shape = inputs[0]
        return [np.tile(x, int(np.prod(shape[1:-1], dtype=np.int64)))]


@register(_L.Reshape, _L.Permute)
class ReshapeRule(LayerRule):
    """The channels pass through when the channel axis stays last; a Reshape's target names
    their count, which `trim` lowers."""

    def follow(self, graph, op, inputs, out_shapes):
        x, shape = inputs[0]
        out = out_shapes[0]
        keeps_last = out is not None and out[-1] == shape[-1]
        if isinstance(op, _L.Permute):
            keeps_last = op.dims[-1] == len(shape) - 1
        if not keeps_last:
            raise UnsupportedLayer("it moves the channel axis")
        if isinstance(op, _L.Reshape):
            graph.counted[op.name] = x
        return [x]

    def resize(self, layer, config, counts):
        if isinstance(layer, _L.Reshape):
            (count,) = counts.values()
            config["target_shape"] = (*tuple(config["target_shape"])[:-1], count)


@functools.cache
def _get_item_class() -> type:
    # Keras does not export the operation of `x[key]`; a model that slices a tensor holds one.
    inputs = keras.Input((2,))
    return type(keras.Model(inputs, inputs[:, 0]).operations[-1])


def _is_get_item(op: Any) -> bool:
    return isinstance(op, _get_item_class())


def _index_kind(item: Any) -> str:
    if isinstance(item, bool) or not isinstance(item, (int, dict)):
        return "other"
    if isinstance(item, int):
        return "index"
    name = item.get("class_name")
    if name == "__slice__":
        return "all" if all(v is None for v in item["config"].values()) else "slice"
    return "ellipsis" if name == "__ellipsis__" else "other"


@register_operation(test=_is_get_item)
class GetItemRule(LayerRule):
    """`x[key]`: the channels pass through when the key leaves the last axis whole."""

    def follow(self, graph, op, inputs, out_shapes):
        x, shape = inputs[0]
        args = graph.node.get("args", ())
        key = args[1] if len(args) > 1 else None
        key = list(key) if isinstance(key, (list, tuple)) else [key]
        kinds = [_index_kind(item) for item in key]
        if "other" in kinds:
            raise UnsupportedLayer("it indexes with tensors, arrays or new axes")
        if "ellipsis" in kinds or len(kinds) == len(shape):
            keeps = kinds[-1] in ("all", "ellipsis")
        else:
            keeps = len(kinds) < len(shape)
        if not keeps:
            raise UnsupportedLayer("it indexes the channel axis")
        return [x]
