"""Which weights of which Keras layers are prunable.

Kernels, embeddings and recurrent kernels are; biases, normalisation parameters and anything else
never are. Custom layers opt in by implementing `PrunableLayer.get_prunable_weights()`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import keras

__all__ = ["PrunableLayer", "prunable_weights", "supports"]


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


def _bidirectional(layer: Any) -> list[Any]:
    return prunable_weights(layer.forward_layer) + prunable_weights(layer.backward_layer)


def _time_distributed(layer: Any) -> list[Any]:
    return prunable_weights(layer.layer)


_L = keras.layers
# Order matters only for subclasses: the first matching class decides.
_RULES: tuple[tuple[tuple[type, ...], Callable[[Any], list[Any]]], ...] = (
    ((_L.Dense, _L.EinsumDense), _kernel),
    ((_L.Conv1D, _L.Conv2D, _L.Conv3D), _kernel),
    ((_L.Conv1DTranspose, _L.Conv2DTranspose, _L.Conv3DTranspose), _kernel),
    ((_L.DepthwiseConv1D, _L.DepthwiseConv2D), _kernel),
    ((_L.SeparableConv1D, _L.SeparableConv2D), lambda layer: [layer.pointwise_kernel]),
    ((_L.Embedding,), lambda layer: [layer.embeddings]),
    ((_L.SimpleRNN, _L.LSTM, _L.GRU), _recurrent),
    ((_L.MultiHeadAttention,), _attention),
)


def _rule(layer: Any) -> Callable[[Any], list[Any]] | None:
    if isinstance(layer, PrunableLayer):
        return lambda lay: list(lay.get_prunable_weights())
    if isinstance(layer, _L.TimeDistributed):
        return _time_distributed if supports(layer.layer) else None
    if isinstance(layer, _L.Bidirectional):
        return _bidirectional if supports(layer.forward_layer) else None
    for classes, rule in _RULES:
        if isinstance(layer, classes):
            return rule
    return None


def supports(layer: Any) -> bool:
    """Returns whether `layer` (built or not) has weights that pruning knows how to mask."""
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
