"""Layers made of layers and models inside models: followed through what they hold.

- `TimeDistributed(layer)`: the inner layer's rule, on one time step; its weights are recorded
  under the `TimeDistributed` (the layer a wrapper wraps), labelled by their path inside it.
- A nested Sequential or Functional model: its graph is read on the positions it is given.
"""

from __future__ import annotations

from typing import Any

import keras

from tfprune.channels.rules.base import LayerRule, UnsupportedLayer, register, resize_part
from tfprune.models.walk import model_kind


def _inner_shape(shape: Any) -> Any:
    """The shape one time step of a `TimeDistributed` sees."""
    return None if shape is None else (shape[0], *shape[2:])


@register(keras.layers.TimeDistributed, exact=True)
class TimeDistributedRule(LayerRule):
    def follow(self, graph, op, inputs, out_shapes):
        if isinstance(op.layer, keras.Model):
            raise UnsupportedLayer("a model inside a TimeDistributed is not followed")
        with graph.inside(op):
            inner = [(pos, _inner_shape(s)) for pos, s in inputs]
            return graph.follow(op.layer, inner, [_inner_shape(s) for s in out_shapes])

    def resize(self, layer, config, counts):
        resize_part(config, "layer", layer, layer.layer, counts)


def _given(node: dict, inputs: list) -> dict:
    """The positions a nested model's call gives each of its inputs: by key for a dict of
    inputs, else by place."""
    args = node.get("args", ())
    named = len(args) == 1 and isinstance(args[0], dict)
    if named and args[0].get("class_name") != "__keras_tensor__":  # not one tensor
        return dict(zip(args[0], (pos for pos, _ in inputs), strict=False))
    return {i: pos for i, (pos, _) in enumerate(inputs)}


@register(keras.Model)
class NestedModelRule(LayerRule):
    def follow(self, graph, op, inputs, out_shapes):
        if model_kind(op) == "subclassed":
            raise UnsupportedLayer("a subclassed model has no graph to follow")
        return graph.read(op, _given(graph.node, inputs))
