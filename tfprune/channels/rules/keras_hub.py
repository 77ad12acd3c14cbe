"""KerasHub's generic layers: transformer layers and embeddings (exact classes, known once
KerasHub is imported; nothing here imports it).

- `TransformerEncoder` and `TransformerDecoder`: the feed-forward units (a column of the
  intermediate Dense and the matching row of the output Dense) are groups. The hidden
  features pass through LayerNormalization inside and are kept whole; so are the attention
  heads, whose size these layers derive from `hidden_dim / num_heads`.
- `PositionEmbedding`: its table follows the features it is added to.
- `TokenAndPositionEmbedding`: creates features like an Embedding.
"""

from __future__ import annotations

from typing import Any

from tfprune.channels.rules.base import (
    COUPLING,
    LayerRule,
    UnsupportedLayer,
    activation_name,
    register_keras_hub,
)
from tfprune.models.registry import weight_label

_FEEDFORWARD = ("feedforward_intermediate_dense", "feedforward_output_dense")


def _by_label(layer: Any) -> dict[str, Any]:
    return {weight_label(layer, v): v for v in layer.weights}


@register_keras_hub("TransformerEncoder", "TransformerDecoder")
class TransformerRule(LayerRule):
    def follow(self, graph, op, inputs, out_shapes):
        if not graph.node.get("args"):
            raise UnsupportedLayer("its sequence must be given as the first positional argument")
        x, _ = inputs[0]
        kind = type(op).__name__
        graph.keep(x, f"'{op.name}' ({kind}) normalizes them (LayerNormalization inside)")
        for pos, _ in inputs[1:]:  # masks, an encoder's sequence
            graph.keep(pos, f"'{op.name}' ({kind}) reads them in attention")
        weights = _by_label(op)
        intermediate, output = (weights[f"{name}/kernel"] for name in _FEEDFORWARD)
        units = graph.created(op, int(intermediate.shape[-1]))
        if activation_name(op) in COUPLING:
            graph.keep(units, f"'{op.name}' applies a softmax over them")
        graph.weight(op, intermediate, 0, "in", x)
        graph.weight(op, intermediate, 1, "out", units)
        bias = weights.get(f"{_FEEDFORWARD[0]}/bias")
        if bias is not None:
            graph.weight(op, bias, 0, "tie", units)
        graph.weight(op, output, 0, "in", units)
        return [x]

    def resize(self, layer, config, counts):
        config["intermediate_dim"] = counts[f"{_FEEDFORWARD[0]}/kernel"]


@register_keras_hub("PositionEmbedding")
class PositionEmbeddingRule(LayerRule):
    def follow(self, graph, op, inputs, out_shapes):
        x = inputs[0][0]
        (table,) = op.weights
        graph.weight(op, table, -1, "tie", x)
        return [x]


@register_keras_hub("TokenAndPositionEmbedding")
class TokenAndPositionEmbeddingRule(LayerRule):
    def follow(self, graph, op, inputs, out_shapes):
        weights = _by_label(op)
        out = graph.created(op, int(op.embedding_dim))
        graph.weight(op, weights["token_embedding/embeddings"], -1, "out", out)
        graph.weight(op, weights["position_embedding/embeddings"], -1, "tie", out)
        return [out]

    def resize(self, layer, config, counts):
        config["embedding_dim"] = counts["token_embedding/embeddings"]
