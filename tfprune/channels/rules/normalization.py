"""Normalization: per channel (BatchNormalization, Normalization: their statistics follow each
channel), or over the channels (LayerNormalization, GroupNormalization, UnitNormalization,
Softmax: they couple the channels, which are then kept whole)."""

from __future__ import annotations

import keras

from tfprune.channels.rules.base import LayerRule, UnsupportedLayer, register

_L = keras.layers


@register(_L.BatchNormalization)
class BatchNormalizationRule(LayerRule):
    def follow(self, graph, op, inputs, out_shapes):
        x, shape = inputs[0]
        if op.axis not in (-1, len(shape) - 1):
            raise UnsupportedLayer(f"it normalizes axis {op.axis}, not the channels")
        for variable in op.weights:
            graph.weight(op, variable, 0, "tie", x)
        return [x]


@register(_L.Normalization)
class NormalizationRule(LayerRule):
    def follow(self, graph, op, inputs, out_shapes):
        x, shape = inputs[0]
        if tuple(op.axis) not in ((-1,), (len(shape) - 1,)):
            raise UnsupportedLayer(f"it normalizes axis {op.axis}, not the channels")
        for variable in op.weights:
            if len(variable.shape) and int(variable.shape[-1]) == len(x):
                graph.weight(op, variable, -1, "tie", x)
        return [x]


@register(_L.LayerNormalization, _L.GroupNormalization, _L.UnitNormalization, _L.Softmax)
class CouplingRule(LayerRule):
    def follow(self, graph, op, inputs, out_shapes):
        x = inputs[0][0]
        graph.keep(x, f"'{op.name}' ({type(op).__name__}) couples them")
        return [x]
