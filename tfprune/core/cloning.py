"""Copying Sequential and Functional models layer by layer, wrapping or unwrapping on the way.

`keras.models.clone_model` walks the model's graph and calls a function for every layer and
operation; the one here copies each layer (built like the original), wraps the layers a
`LayerSelection` picks in `PruneLowMagnitude`, and fills every copy with the original's weights once
the graph is rebuilt. The original model is never touched.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import keras
from keras import ops

from tfprune.core.selection import LayerSelection
from tfprune.core.wrapper import PruneLowMagnitude
from tfprune.models.rebuild import CopyError, config_of, recreate
from tfprune.models.walk import walk

__all__ = ["clone_pruned", "clone_stripped", "copy_once", "copy_layer"]


def copy_layer(layer: Any) -> Any:
    """A new layer of the same class and config, built like `layer` if it was built.

    Building from the layer's own build config gives the copy every shape the original saw
    (a MultiHeadAttention's query, value and key shapes), which no single input shape can.
    """
    new = recreate(layer.__class__, config_of(layer), name=layer.name, original=layer)
    # A layer made of layers may build its parts only when first called; each part of the
    # copy is built from its original's build config, outer layers first.
    for original, part in zip(walk(layer), walk(new), strict=False):
        if original.built and not part.built:
            config = original.get_build_config()
            if config:
                part.build_from_config(config)
    if [type(x) for x in walk(layer)] != [type(x) for x in walk(new)]:
        raise CopyError(
            f"Cannot copy layer '{layer.name}' of type {type(layer).__name__}: the copy made "
            "from its get_config() holds other layers than the original. Fix the layer's "
            "get_config()."
        )
    return new


def copy_once(copy: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`copy`, called once per layer: a layer shared by a model and a model nested in it (a
    KerasHub task's tied token embedding, reversed for the logits) is copied once and stays
    shared. `keras.models.clone_model` copies each nested model on its own."""
    made: dict[int, Any] = {}

    def once(layer: Any) -> Any:
        if id(layer) not in made:
            made[id(layer)] = copy(layer)
        return made[id(layer)]

    return once


class _Copy:
    """Builds the cloned layers and records how to fill their weights from the originals."""

    def __init__(self, selection: LayerSelection | None) -> None:
        self.selection = selection
        self.prune = selection is not None
        self.todo: list[tuple[Any, Any, str]] = []
        self.wrappers: list[PruneLowMagnitude] = []
        self._once = copy_once(self._copy)

    def __call__(self, layer: Any) -> Any:
        if not isinstance(layer, keras.layers.Layer):
            return layer  # an operation (`x + 3` in a model's code) holds no state to copy
        return self._once(layer)

    def _copy(self, layer: Any) -> Any:
        if isinstance(layer, PruneLowMagnitude):
            if self.prune:
                raise ValueError(
                    f"Layer '{layer.name}' is already pruned: the model holds PruneLowMagnitude "
                    "wrappers. Strip it first with tfprune.strip_pruning, or keep training it."
                )
            new = copy_layer(layer.layer)
            self.todo.append((layer, new, "strip"))
            return new
        if isinstance(layer, keras.layers.InputLayer):
            return copy_layer(layer)
        new = copy_layer(layer)
        schedule = self.selection.schedule_for(layer) if self.prune else None
        if schedule is not None:
            wrapped = self.selection.wrap(new, schedule)
            self.todo.append((layer, wrapped, "wrap"))
            self.wrappers.append(wrapped)
            return wrapped
        self.todo.append((layer, new, "copy"))
        return new

    def fill(self) -> None:
        for old, new, how in self.todo:
            if how in ("copy", "wrap"):
                target = new if how == "copy" else new.layer
                try:
                    target.set_weights(old.get_weights())
                except ValueError as error:
                    raise CopyError(
                        f"Cannot copy layer '{old.name}' of type {type(old).__name__}: the copy "
                        "made from its get_config() holds weights of other shapes than the "
                        f"original ({error}). Fix the layer's get_config()."
                    ) from error
            else:
                masks = {id(w): m for w, m in old.pruned_weights}
                values = []
                for v in old.layer.weights:
                    m = masks.get(id(v))
                    value = v.value if m is None else v.value * ops.cast(m.value, v.dtype)
                    values.append(ops.convert_to_numpy(value))
                new.set_weights(values)


def call_layer(layer: Any, *args: Any, **kwargs: Any) -> Any:
    # A wrapper's graph node records `mask=` for it; the layer that replaces it may not take one.
    if "mask" in kwargs and "mask" not in inspect.signature(layer.call).parameters:
        kwargs.pop("mask")
    return layer(*args, **kwargs)


def _clone_model(model: keras.Model, copier: _Copy) -> keras.Model:
    call_function = None if isinstance(model, keras.Sequential) else call_layer
    clone = keras.models.clone_model(
        model, clone_function=copier, call_function=call_function, recursive=True
    )
    copier.fill()
    return clone


def clone_pruned(model: keras.Model, selection: LayerSelection) -> keras.Model:
    """A copy of a Sequential or Functional model with the chosen layers wrapped.

    Nested Sequential and Functional models are copied the same way. A subclass of Functional
    (a KerasHub backbone or task, say) comes back as a Functional model of the same graph, as
    from `keras.models.clone_model`.
    """
    return _clone_model(model, _Copy(selection))


def clone_stripped(model: keras.Model) -> keras.Model:
    """A copy of a pruned Sequential or Functional model with every wrapper replaced by a copy
    of the layer it wraps, holding `weight * mask`."""
    return _clone_model(model, _Copy(None))
