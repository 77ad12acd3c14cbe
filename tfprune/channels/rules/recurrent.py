"""Recurrent layers: a unit's gates go together (its columns in the kernel, recurrent kernel
and bias, and its row of the recurrent kernel), and `Bidirectional` holds two of them."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from tfprune.channels.rules.base import LayerRule, UnsupportedLayer, register, resize_part
from tfprune.models.kinds import RECURRENT

_L = keras.layers


def follow_recurrent(graph: Any, op: Any, x: np.ndarray, out_shapes: list) -> list[np.ndarray]:
    """The units of a recurrent layer `op` reading `x`: one position per unit, on every
    output (the sequence and the states)."""
    cell, gates = op.cell, RECURRENT[type(op)]
    units = graph.created(op, int(cell.recurrent_kernel.shape[0]))
    graph.weight(op, cell.kernel, 0, "in", x)
    graph.weight(op, cell.kernel, 1, "tie", np.tile(units, gates))
    graph.weight(op, cell.recurrent_kernel, 0, "out", units)
    graph.weight(op, cell.recurrent_kernel, 1, "tie", np.tile(units, gates))
    if cell.bias is not None:
        graph.weight(op, cell.bias, -1, "tie", np.tile(units, gates))
    return [units for _ in out_shapes]


# Exact classes: a subclass of LSTM may compute its gates otherwise.
@register(*RECURRENT, exact=True)
class RecurrentRule(LayerRule):
    """LSTM, GRU and SimpleRNN units."""

    def follow(self, graph, op, inputs, out_shapes):
        return follow_recurrent(graph, op, inputs[0][0], out_shapes)

    def resize(self, layer, config, counts):
        (config["units"],) = counts.values()


@register(_L.Bidirectional, exact=True)
class BidirectionalRule(LayerRule):
    """Each direction's units are groups of their own; with `merge_mode` "sum", "mul" or
    "ave" a unit goes in both directions at once."""

    def follow(self, graph, op, inputs, out_shapes):
        x = inputs[0][0]
        parts = [op.forward_layer, op.backward_layer]
        if any(type(p) not in RECURRENT for p in parts):
            raise UnsupportedLayer("only SimpleRNN, LSTM and GRU directions are supported")
        with graph.inside(op):
            forward, backward = (follow_recurrent(graph, p, x, [None])[0] for p in parts)
        states = (len(out_shapes) - (1 if op.merge_mode else 2)) // 2
        if op.merge_mode == "concat":
            outputs = [np.concatenate([forward, backward])]
        elif op.merge_mode is None:
            outputs = [forward, backward]
        else:
            outputs = [graph.merge([(forward, None), (backward, None)])]
        return outputs + [forward] * states + [backward] * states

    def resize(self, layer, config, counts):
        resize_part(config, "layer", layer, layer.forward_layer, counts)
        resize_part(config, "backward_layer", layer, layer.backward_layer, counts)
