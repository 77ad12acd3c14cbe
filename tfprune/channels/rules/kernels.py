"""Layers with kernels: they create channels (their output columns) and read channels (their
input rows). Dense, convolutions of every kind, and embeddings."""

from __future__ import annotations

import keras
import numpy as np

from tfprune.channels.rules.base import LayerRule, UnsupportedLayer, register
from tfprune.models.kinds import CONVS, DEPTHWISE, SEPARABLE, TRANSPOSED

_L = keras.layers


def _only(counts: dict[str, int]) -> int:
    (count,) = counts.values()
    return count


class _KernelRule(LayerRule):
    """A kernel that creates channels along `out_axis` (its columns, and its bias) and reads
    channels along `in_axis` (its rows); `trim` lowers `config_key`."""

    config_key = "units"
    in_axis, out_axis = -2, -1

    def follow(self, graph, op, inputs, out_shapes):
        out = graph.created(op, int(op.kernel.shape[self.out_axis]))
        graph.kernel(op, op.kernel, inputs[0][0], out, self.in_axis, self.out_axis)
        return [out]

    def resize(self, layer, config, counts):
        config[self.config_key] = _only(counts)


@register(_L.Dense)
class DenseRule(_KernelRule):
    """Units."""


@register(*CONVS)
class ConvRule(_KernelRule):
    """Filters, of ungrouped convolutions."""

    config_key = "filters"

    def follow(self, graph, op, inputs, out_shapes):
        if op.groups != 1:
            raise UnsupportedLayer(f"grouped convolutions (groups={op.groups})")
        return super().follow(graph, op, inputs, out_shapes)


@register(*TRANSPOSED)
class TransposedConvRule(_KernelRule):
    """Filters of a transposed convolution, whose kernel is `[..., out, in]`."""

    config_key = "filters"
    in_axis, out_axis = -1, -2


@register(*DEPTHWISE)
class DepthwiseConvRule(LayerRule):
    """Each input channel's filters follow it (any depth multiplier)."""

    def follow(self, graph, op, inputs, out_shapes):
        x = inputs[0][0]
        out = np.repeat(x, int(op.kernel.shape[-1]))
        graph.weight(op, op.kernel, -2, "tie", x)
        if op.bias is not None:
            graph.weight(op, op.bias, 0, "tie", out)
        return [out]


@register(*SEPARABLE)
class SeparableConvRule(LayerRule):
    """A depthwise kernel that follows its inputs, then a pointwise kernel that creates
    filters."""

    def follow(self, graph, op, inputs, out_shapes):
        x = inputs[0][0]
        inner = np.repeat(x, int(op.depthwise_kernel.shape[-1]))
        out = graph.created(op, int(op.pointwise_kernel.shape[-1]))
        graph.weight(op, op.depthwise_kernel, -2, "tie", x)
        graph.kernel(op, op.pointwise_kernel, inner, out, -2, -1)
        return [out]

    def resize(self, layer, config, counts):
        config["filters"] = _only(counts)


@register(_L.Embedding)
class EmbeddingRule(LayerRule):
    """Features: columns of the table. KerasHub's `ReversibleEmbedding` called with
    `reverse=True` is the output projection instead: it reads the features (as rows of its
    own reverse table, or of the tied table)."""

    def follow(self, graph, op, inputs, out_shapes):
        x = inputs[0][0]
        reverse = getattr(op, "reverse_embeddings", None)
        untied = isinstance(reverse, keras.Variable)
        if graph.node.get("kwargs", {}).get("reverse"):
            if untied:
                graph.weight(op, reverse, 0, "in", x)
            else:
                graph.weight(op, op.embeddings, -1, "in", x)
            return [graph.new(int(out_shapes[0][-1]))]
        out = graph.created(op, int(op.embeddings.shape[-1]))
        graph.weight(op, op.embeddings, -1, "out", out)
        if untied:
            graph.weight(op, reverse, 0, "tie", out)
        return [out]

    def resize(self, layer, config, counts):
        config["output_dim"] = _only(counts)
