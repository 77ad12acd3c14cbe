"""Channel rules for layers made of layers, and for operations read from their call.

`CompositeRules` is the part of `tfprune.channels`' graph reading that looks inside a layer:
the weights of the layers it holds are recorded under the outer layer (the one a wrapper
wraps), with their paths inside it as labels ("forward_lstm/lstm_cell/kernel").

- `TimeDistributed(layer)`: the inner layer's rule, on one time step.
- `Bidirectional(rnn)`: each direction's units are a group of their own (all gates of a
  unit together); with `merge_mode` "sum", "mul" or "ave" a unit goes in both directions.
- KerasHub's `TransformerEncoder` and `TransformerDecoder`: the feed-forward units (a column
  of the intermediate Dense and the matching row of the output Dense) are groups. The hidden
  features pass through LayerNormalization inside and are kept whole; so are the attention
  heads, whose size the layer derives from `hidden_dim / num_heads`.
- KerasHub's `PositionEmbedding` (its table follows the features it is added to),
  `TokenAndPositionEmbedding` (creates features like an Embedding), and a
  `ReversibleEmbedding` called with `reverse=True` (reads the features as logit rows).
- `x[...]` (the `GetItem` operation) when it keeps the last axis whole.

Only these exact classes are followed: a subclass may compute something else.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np

from tfprune.channel_rules import COUPLING, RECURRENT, UnsupportedLayer, activation_name
from tfprune.registry import weight_label

__all__ = ["CompositeRules", "composite_config", "is_keras_hub"]

_L = keras.layers
_TRANSFORMERS = ("TransformerEncoder", "TransformerDecoder")
_FEEDFORWARD = ("feedforward_intermediate_dense", "feedforward_output_dense")


def is_keras_hub(op: Any, *names: str) -> bool:
    """Whether `op` is exactly one of the classes `names` of `keras_hub.layers` (not a
    subclass). A layer of KerasHub's exists only once KerasHub is imported."""
    hub = sys.modules.get("keras_hub")
    if hub is None:
        return False
    return any(type(op) is getattr(hub.layers, name, None) for name in names)


def _by_label(layer: Any) -> dict[str, Any]:
    return {weight_label(layer, v): v for v in layer.weights}


def _inner_shape(shape: Any) -> Any:
    """The shape one time step of a `TimeDistributed` sees."""
    return None if shape is None else (shape[0], *shape[2:])


class CompositeRules:
    """Rules for composite layers; `ChannelGraph` supplies positions and bookkeeping."""

    _host: Any = None
    _node: dict[str, Any] = {}

    @contextlib.contextmanager
    def _inside(self, host: Any) -> Iterator[None]:
        """Weights and channels met inside `host` are recorded as the host's."""
        outer, self._host = self._host, host if self._host is None else self._host
        try:
            yield
        finally:
            self._host = outer

    def _owner(self, layer: Any) -> Any:
        return layer if self._host is None else self._host

    def _composite(self, op: Any, inputs: list, out_shapes: list) -> list[np.ndarray] | None:
        """The outputs' positions of a composite layer known here, or None."""
        x, shape = inputs[0] if inputs else (None, None)
        if type(op) is _L.TimeDistributed:
            if isinstance(op.layer, keras.Model):
                raise UnsupportedLayer("a model inside a TimeDistributed is not followed")
            with self._inside(op):
                inner = [(pos, _inner_shape(s)) for pos, s in inputs]
                return self._follow(op.layer, inner, [_inner_shape(s) for s in out_shapes])
        if type(op) is _L.Bidirectional:
            return self._bidirectional(op, x, out_shapes)
        if is_keras_hub(op, *_TRANSFORMERS):
            return [self._transformer(op, inputs)]
        if is_keras_hub(op, "PositionEmbedding"):
            (table,) = op.weights
            self._weight(op, table, -1, "tie", x)
            return [x]
        if is_keras_hub(op, "TokenAndPositionEmbedding"):
            weights = _by_label(op)
            out = self._created(op, int(op.embedding_dim))
            self._weight(op, weights["token_embedding/embeddings"], -1, "out", out)
            self._weight(op, weights["position_embedding/embeddings"], -1, "tie", out)
            return [out]
        return None

    def _embedding(self, op: Any, x: np.ndarray, out_shapes: list) -> list[np.ndarray]:
        if self._node.get("kwargs", {}).get("reverse"):
            # KerasHub's ReversibleEmbedding as the output projection: it reads the features.
            reverse = getattr(op, "reverse_embeddings", None)
            if isinstance(reverse, keras.Variable):
                self._weight(op, reverse, 0, "in", x)
            else:
                self._weight(op, op.embeddings, -1, "in", x)
            return [self._new(int(out_shapes[0][-1]))]
        out = self._created(op, int(op.embeddings.shape[-1]))
        self._weight(op, op.embeddings, -1, "out", out)
        reverse = getattr(op, "reverse_embeddings", None)
        if isinstance(reverse, keras.Variable):
            self._weight(op, reverse, 0, "tie", out)
        return [out]

    def _get_item(self, inputs: list) -> np.ndarray:
        """`x[key]`: the channels pass through when the key leaves the last axis whole."""
        x, shape = inputs[0]
        args = self._node.get("args", ())
        key = args[1] if len(args) > 1 else None
        key = list(key) if isinstance(key, (list, tuple)) else [key]

        def kind(item: Any) -> str:
            if isinstance(item, bool) or not isinstance(item, (int, dict)):
                return "other"
            if isinstance(item, int):
                return "index"
            name = item.get("class_name")
            if name == "__slice__":
                return "all" if all(v is None for v in item["config"].values()) else "slice"
            return "ellipsis" if name == "__ellipsis__" else "other"

        kinds = [kind(item) for item in key]
        if "other" in kinds:
            raise UnsupportedLayer("it indexes with tensors, arrays or new axes")
        if "ellipsis" in kinds or len(kinds) == len(shape):
            keeps = kinds[-1] in ("all", "ellipsis")
        else:
            keeps = len(kinds) < len(shape)
        if not keeps:
            raise UnsupportedLayer("it indexes the channel axis")
        return x

    def _bidirectional(self, op: Any, x: np.ndarray, out_shapes: list) -> list[np.ndarray]:
        parts = [op.forward_layer, op.backward_layer]
        if any(type(p) not in RECURRENT for p in parts):
            raise UnsupportedLayer("only SimpleRNN, LSTM and GRU directions are supported")
        with self._inside(op):
            forward, backward = (
                self._recurrent(p, x, RECURRENT[type(p)], [None])[0] for p in parts
            )
        states = (len(out_shapes) - (1 if op.merge_mode else 2)) // 2
        if op.merge_mode == "concat":
            outputs = [np.concatenate([forward, backward])]
        elif op.merge_mode is None:
            outputs = [forward, backward]
        else:
            outputs = [self._merge([(forward, None), (backward, None)])]
        return outputs + [forward] * states + [backward] * states

    def _transformer(self, op: Any, inputs: list) -> np.ndarray:
        if not self._node.get("args"):
            raise UnsupportedLayer("its sequence must be given as the first positional argument")
        x, _ = inputs[0]
        kind = type(op).__name__
        self._fix(x, f"'{op.name}' ({kind}) normalizes them (LayerNormalization inside)")
        for pos, _ in inputs[1:]:  # masks, an encoder's sequence
            self._fix(pos, f"'{op.name}' ({kind}) reads them in attention")
        weights = _by_label(op)
        intermediate, output = (weights[f"{name}/kernel"] for name in _FEEDFORWARD)
        units = self._created(op, int(intermediate.shape[-1]))
        if activation_name(op) in COUPLING:
            self._fix(units, f"'{op.name}' applies a softmax over them")
        self._weight(op, intermediate, 0, "in", x)
        self._weight(op, intermediate, 1, "out", units)
        bias = weights.get(f"{_FEEDFORWARD[0]}/bias")
        if bias is not None:
            self._weight(op, bias, 0, "tie", units)
        self._weight(op, output, 0, "in", units)
        return x


def composite_config(layer: Any, config: dict[str, Any], counts: dict[str, int], resized) -> bool:
    """Lowers the channel counts of a composite layer's `config` in place; False if `layer` is
    no composite known here. `counts` are keyed by weight labels inside `layer`; `resized`
    gives an inner layer's config from counts keyed by labels inside it."""

    def inner(part: Any) -> dict[str, Any]:
        own = {
            weight_label(part, v): counts[weight_label(layer, v)]
            for v in part.weights
            if weight_label(layer, v) in counts
        }
        return resized(part, own)

    def place(key: str, part: Any) -> None:
        config[key]["config"] = inner(part)
        config[key].pop("build_config", None)  # built again on the trimmed inputs

    if type(layer) is _L.TimeDistributed:
        place("layer", layer.layer)
    elif type(layer) is _L.Bidirectional:
        place("layer", layer.forward_layer)
        place("backward_layer", layer.backward_layer)
    elif is_keras_hub(layer, *_TRANSFORMERS):
        config["intermediate_dim"] = counts[f"{_FEEDFORWARD[0]}/kernel"]
    elif is_keras_hub(layer, "TokenAndPositionEmbedding"):
        config["embedding_dim"] = counts["token_embedding/embeddings"]
    else:
        return False
    return True
