"""Walking Keras models: what kind a model is, and every layer it holds.

The one place that knows how layers nest: a model's `layers`, a wrapper's `layer`, a
`Bidirectional`'s two directions. Everything that visits layers (pruning, stripping, reports,
export) goes through `walk`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Literal

import keras

__all__ = ["ModelKind", "model_kind", "children", "walk"]

ModelKind = Literal["sequential", "functional", "subclassed"]


def _is_functional(model: Any) -> bool:
    # Keras does not export its Functional class; a model built from inputs and outputs has it
    # in its class hierarchy (KerasHub backbones and tasks, user subclasses of such models).
    return any(
        cls.__name__ == "Functional" and cls.__module__.split(".")[0] == "keras"
        for cls in type(model).__mro__
    )


def model_kind(model: Any) -> ModelKind:
    """Returns how `model` is built, decided by its class hierarchy.

    Args:
        model: A `keras.Model`.

    Returns:
        "sequential" for `keras.Sequential` and its subclasses, "functional" for models built
        from inputs and outputs (their subclasses included), "subclassed" for models with
        their own `call`.

    Raises:
        TypeError: If `model` is not a `keras.Model`.

    Example:

    >>> inputs = keras.Input((3,))
    >>> model_kind(keras.Model(inputs, keras.layers.Dense(2)(inputs)))
    'functional'
    >>> model_kind(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))
    'sequential'
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            "Argument `model` must be a keras.Model. "
            f"Received: model={model!r} of type {type(model).__name__}"
        )
    if isinstance(model, keras.Sequential):
        return "sequential"
    return "functional" if _is_functional(model) else "subclassed"


def children(layer: Any) -> list[Any]:
    """The layers directly inside `layer`: a model's layers, a wrapper's, both directions."""
    if isinstance(layer, keras.Model):
        return list(layer.layers)
    if isinstance(layer, keras.layers.Bidirectional):
        return [layer.forward_layer, layer.backward_layer]
    inner = getattr(layer, "layer", None) if isinstance(layer, keras.layers.Wrapper) else None
    return [inner] if isinstance(inner, keras.layers.Layer) else []


def walk(layer: Any, *, into: Callable[[Any], bool] | None = None) -> Iterator[Any]:
    """Yields `layer` and every layer nested in it, depth first, each once.

    Args:
        layer: A Keras layer or model.
        into: Called on each yielded layer; its children are visited only when it returns
            True. Defaults to None (visit everything).

    Example:

    >>> model = keras.Sequential([keras.Input((2, 3)),
    ...     keras.layers.TimeDistributed(keras.layers.Dense(4, name="d"), name="td")])
    >>> [type(x).__name__ for x in walk(model)]
    ['Sequential', 'TimeDistributed', 'Dense']
    """
    seen: set[int] = set()
    stack = [layer]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if into is None or into(current):
            stack.extend(reversed(children(current)))
