"""Walking Keras models: what kind a model is, and every layer it holds.

The one place that knows how layers nest: a model's `layers`, a wrapper's `layer`, a
`Bidirectional`'s two directions. Everything that visits layers (pruning, stripping, reports,
export) goes through `walk`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any, Literal

import keras

__all__ = [
    "functional_class",
    "ModelKind",
    "model_kind",
    "children",
    "attribute_layers",
    "walk",
    "owner_of",
    "layers_by_name",
]

ModelKind = Literal["sequential", "functional", "subclassed"]


@functools.cache
def functional_class() -> type:
    # Keras does not export its Functional class; a model built from inputs and outputs is an
    # instance of it (as are KerasHub backbones and tasks, and user subclasses of such models).
    inputs = keras.Input((1,))
    return type(keras.Model(inputs, inputs))


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
    return "functional" if isinstance(model, functional_class()) else "subclassed"


@functools.cache
def _base_attributes(is_model: bool) -> frozenset[str]:
    """The attributes every Keras model (or layer) has; its own layers are in the others."""
    return frozenset(vars(keras.Model() if is_model else keras.layers.Layer()))


def attribute_layers(holder: Any) -> list[tuple[str, Any, Any]]:
    """`(attribute, key or None, layer)` for every layer `holder` keeps in its own attributes.

    Layers held directly, or in a list, tuple or dict; Keras's and TensorFlow's bookkeeping
    attributes (the ones every layer has, and TensorFlow's `_self_...` dependency lists) are
    left out, so a layer is found where the holder's code put it. A layer held in two places
    is listed twice.
    """
    skip = _base_attributes(isinstance(holder, keras.Model))
    found = []
    attributes = list(vars(holder).items())
    # On the PyTorch backend a layer is a torch Module: layers set as attributes are kept in
    # its `_modules`, not in its `__dict__`.
    modules = vars(holder).get("_modules")
    if isinstance(modules, dict):
        attributes += [(n, v) for n, v in modules.items() if isinstance(v, keras.layers.Layer)]
    for name, value in attributes:
        if name in skip:
            continue
        if isinstance(value, keras.layers.Layer):
            items = [(None, value)]
        elif name.startswith("_self_"):
            continue
        elif isinstance(value, (list, tuple)):
            items = list(enumerate(value))
        elif isinstance(value, dict):
            items = list(value.items())
        else:
            continue
        found.extend(
            (name, key, item)
            for key, item in items
            if isinstance(item, keras.layers.Layer) and item is not holder
        )
    return found


def children(layer: Any) -> list[Any]:
    """The layers directly inside `layer`, in the order it holds them.

    A Sequential or Functional model's `layers`; a wrapper's `layer`; a `Bidirectional`'s two
    directions; for any other layer or model (a subclassed model, a block made of layers, a
    KerasHub `TransformerEncoder`) the layers it holds in its attributes (`attribute_layers`).
    """
    if isinstance(layer, keras.Model) and model_kind(layer) != "subclassed":
        return list(layer.layers)
    if isinstance(layer, keras.layers.Bidirectional):
        return [layer.forward_layer, layer.backward_layer]
    if isinstance(layer, keras.layers.Wrapper):
        inner = getattr(layer, "layer", None)
        return [inner] if isinstance(inner, keras.layers.Layer) else []
    found: dict[int, Any] = {}
    for _, _, item in attribute_layers(layer):
        found.setdefault(id(item), item)
    return list(found.values())


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


def owner_of(layer: Any, weight: Any) -> Any:
    """The innermost layer of `layer` (itself included) that holds `weight`."""
    holders = [sub for sub in walk(layer) if any(w is weight for w in sub.weights)]
    return min(reversed(holders), key=lambda sub: len(sub.weights)) if holders else layer


def layers_by_name(model: keras.Model) -> dict[str, Any]:
    """Every layer of the model, nested models' layers included (not the parts of a layer made
    of layers, such as an attention layer's projections), by name, in call order."""
    nested = walk(model, into=lambda layer: isinstance(layer, keras.Model))
    return {layer.name: layer for layer in nested if layer is not model}
