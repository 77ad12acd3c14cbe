"""`MultiHeadAttention`: heads are channels of their own. A head's query, key and value
columns and its output-projection rows go together; the query, key and value features are
rows it reads; the output projection creates the output features."""

from __future__ import annotations

from typing import Any

import keras

from tfprune.channels.rules.base import LayerRule, UnsupportedLayer, register
from tfprune.channels.serialized import tensor_keys
from tfprune.models.registry import weight_label


@register(keras.layers.MultiHeadAttention)
class AttentionRule(LayerRule):
    def inputs(self, graph, node, tensors, shapes, inputs):
        """(query, key, value, others...): the call may pass them by place or by name, and
        the key defaults to the value."""
        args, kwargs = list(node.get("args", ())), dict(node.get("kwargs", {}))
        named = dict(zip(("query", "value", "key"), args, strict=False))
        for name in ("query", "value", "key"):
            if name in kwargs:
                named[name] = kwargs.pop(name)
        named.setdefault("key", named["value"])

        def entry(value: Any) -> tuple:
            (key, *_) = tensor_keys(value)
            return (tensors[key], shapes[key])

        main = [entry(named[n]) for n in ("query", "key", "value")]
        others = tensor_keys([args[3:], kwargs])
        return main + [(tensors[k], shapes[k]) for k in others]

    def follow(self, graph, op, inputs, out_shapes):
        if op.get_config().get("use_gate") or len(op.query_dense.kernel.shape) != 3:
            raise UnsupportedLayer("only ungated attention over one axis is supported")
        parts = [op.query_dense, op.key_dense, op.value_dense]
        heads = graph.created(op, int(op.query_dense.kernel.shape[1]))
        for dense, (pos, _) in zip(parts, inputs[:3], strict=True):
            role = "out" if dense is op.query_dense else "tie"
            graph.weight(op, dense.kernel, 0, "in", pos)
            graph.weight(op, dense.kernel, 1, role, heads)
            if dense.bias is not None:
                graph.weight(op, dense.bias, 0, "tie", heads)
        for pos, _ in inputs[3:]:
            graph.keep(pos, f"'{op.name}' reads them as an attention mask")
        dense = op.output_dense
        out = graph.created(op, int(dense.kernel.shape[-1]))
        graph.weight(op, dense.kernel, 0, "tie", heads)
        graph.weight(op, dense.kernel, -1, "out", out)
        if dense.bias is not None:
            graph.weight(op, dense.bias, -1, "tie", out)
        return [out]

    def resize(self, layer, config, counts):
        label = weight_label(layer, layer.query_dense.kernel)
        config["num_heads"] = counts[label]
        config["output_shape"] = (counts[weight_label(layer, layer.output_dense.kernel)],)
