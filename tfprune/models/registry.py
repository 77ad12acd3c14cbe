"""Which weights of which Keras layers are prunable.

Kernels, embeddings and recurrent kernels are; biases, normalisation parameters and anything else
never are. Custom layers opt in by implementing `PrunableLayer.get_prunable_weights()`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import keras

from tfprune.models.experts import expert_kernels, is_expert_bank
from tfprune.models.walk import walk

__all__ = ["PrunableLayer", "prunable_weights", "prunes_itself", "supports", "weight_label"]


@runtime_checkable
class PrunableLayer(Protocol):
    """Protocol for custom layers that say which of their weights may be pruned.

    A layer that defines `get_prunable_weights()` can be wrapped by `prune_low_magnitude`; it may
    subclass this protocol explicitly (as with tfmot's `PrunableLayer`) or just define the method.

    Raises:
        TypeError: When the layer is wrapped, if `get_prunable_weights()` returns anything but
            a list of `keras.Variable`.

    Example:

    >>> import keras
    >>> class Scale(keras.layers.Layer, PrunableLayer):
    ...     def build(self, input_shape):
    ...         self.w = self.add_weight(shape=(input_shape[-1],), name="w")
    ...     def call(self, x):
    ...         return x * self.w
    ...     def get_prunable_weights(self):
    ...         return [self.w]
    >>> isinstance(Scale(), PrunableLayer)
    True
    >>> import tfprune
    >>> wrapped = tfprune.prune_low_magnitude(Scale())
    >>> y = wrapped(keras.ops.ones((2, 3)))
    >>> [v.name for v in wrapped.non_trainable_weights]
    ['w_mask', 'pruning_step']
    """

    def get_prunable_weights(self) -> list[Any]:
        """Returns the built layer's variables that pruning may mask.

        Returns:
            A list of the layer's `keras.Variable`s (never biases).
        """
        ...


def _kernel(layer: Any) -> list[Any]:
    return [layer.kernel]


def _embedding(layer: Any) -> list[Any]:
    # An output projection of its own (KerasHub's ReversibleEmbedding with untied weights) is
    # as prunable as the table; a tied one is the table itself, pruned once.
    reverse = getattr(layer, "reverse_embeddings", None)
    return [layer.embeddings] + ([reverse] if isinstance(reverse, keras.Variable) else [])


def _recurrent(layer: Any) -> list[Any]:
    cell = layer.cell
    return [cell.kernel, cell.recurrent_kernel]


def _attention(layer: Any) -> list[Any]:
    return [
        layer.query_dense.kernel,
        layer.key_dense.kernel,
        layer.value_dense.kernel,
        layer.output_dense.kernel,
    ]


_L = keras.layers
# Order matters only for subclasses: the first matching class decides.
_RULES: tuple[tuple[tuple[type, ...], Callable[[Any], list[Any]]], ...] = (
    ((_L.Dense, _L.EinsumDense), _kernel),
    ((_L.Conv1D, _L.Conv2D, _L.Conv3D), _kernel),
    ((_L.Conv1DTranspose, _L.Conv2DTranspose, _L.Conv3DTranspose), _kernel),
    ((_L.DepthwiseConv1D, _L.DepthwiseConv2D), _kernel),
    ((_L.SeparableConv1D, _L.SeparableConv2D), lambda layer: [layer.pointwise_kernel]),
    ((_L.Embedding,), _embedding),
    ((_L.SimpleRNN, _L.LSTM, _L.GRU), _recurrent),
    ((_L.MultiHeadAttention,), _attention),
)


def _own_rule(layer: Any) -> Callable[[Any], list[Any]] | None:
    if isinstance(layer, PrunableLayer):
        return lambda lay: list(lay.get_prunable_weights())
    if is_expert_bank(layer):  # KerasHub's Mixtral and Qwen 3 MoE: stacked expert kernels
        return expert_kernels
    for classes, rule in _RULES:
        if isinstance(layer, classes):
            return rule
    return None


def _parts(layer: Any) -> list[Any]:
    """The layers inside `layer` that have a rule of their own, nested layers included."""
    return [
        part
        for part in walk(layer, into=lambda x: x is layer or _own_rule(x) is None)
        if part is not layer and _own_rule(part) is not None
    ]


def _composite(layer: Any) -> list[Any]:
    found: dict[int, Any] = {}
    for part in _parts(layer):
        for weight in prunable_weights(part):
            found.setdefault(id(weight), weight)  # a weight shared by two parts is pruned once
    return list(found.values())


def _rule(layer: Any) -> Callable[[Any], list[Any]] | None:
    rule = _own_rule(layer)
    if rule is not None:
        return rule
    # Models are pruned layer by layer; any other layer is pruned through the layers it holds
    # (TimeDistributed, Bidirectional, a KerasHub TransformerEncoder, a user's block).
    if not isinstance(layer, keras.Model) and _parts(layer):
        return _composite
    return None


def prunes_itself(layer: Any) -> bool:
    """Whether a rule of the layer's own covers it (it is not pruned through its parts)."""
    return _own_rule(layer) is not None


def supports(layer: Any) -> bool:
    """Returns whether `layer` has weights that pruning knows how to mask.

    A layer with a rule of its own (see `prune_low_magnitude`) or implementing `PrunableLayer`
    is supported built or not; a composite layer (one made of other layers) is supported when
    a layer it holds is. A composite that creates its layers in `build` is known only once
    built.
    """
    return _rule(layer) is not None


def prunable_weights(layer: Any) -> list[Any]:
    """Returns the prunable variables of a built layer, in a fixed order.

    Args:
        layer: A built Keras layer.

    Returns:
        The list of `keras.Variable`s to mask; empty if the layer has none.

    Raises:
        TypeError: If a `PrunableLayer` returns something that is not a list of variables.
    """
    rule = _rule(layer)
    if rule is None:
        return []
    weights = rule(layer)
    for w in weights:
        if not isinstance(w, keras.Variable):
            raise TypeError(
                f"`get_prunable_weights()` of layer '{layer.name}' must return a list of "
                f"keras.Variable. Received an item of type {type(w).__name__}: {w!r}"
            )
    return weights


def weight_label(layer: Any, weight: Any) -> str:
    """The weight's path inside `layer` ("kernel", or "self_attention/query/kernel")."""
    prefix = f"{layer.path}/" if getattr(layer, "path", None) else ""
    path = weight.path
    if prefix and path.startswith(prefix):
        return path[len(prefix) :]
    # A layer inside a copy built from its build config has a path of its own ("dense/kernel"
    # inside a TimeDistributed): the same label as in the original.
    parts = (part for part in walk(layer) if part is not layer)
    if "/" in path and any(weight is v for part in parts for v in part.weights):
        return path
    return weight.name
