"""Pruning a subclassed model (one with its own `call`).

A subclassed model cannot be rebuilt from its layers: its `call` is code. Its layers are
reached the way its `call` reaches them, through attributes, so each prunable layer is
replaced, in the attribute (or the list or dict) that holds it, by a `PruneLowMagnitude`
wrapping it; the model's own `call` then runs the wrappers. A layer made of layers that is not
built yet (a block whose parts are built on its first call) is entered the same way and its
parts are wrapped where it holds them. `strip_in_place` puts the layers back.

An unbuilt model is pruned in place. A built one is pruned through a copy where it can be: the
model is re-created from its config, pruned before it is built, built like the original, and
given the original's weights layer by layer, so that the original is left untouched, as with
Sequential and Functional models. With `in_place=True`, or when the model cannot be
re-created from its config (its class has no `get_config` of its own), the built model itself
is pruned: Keras locks a built model's layers, and it is unlocked for the swap, as Keras
unlocks a built layer to add a variable to it.

Saving: the pruned model's class becomes a subclass of its own class whose `get_config` wraps
the model's config with the addresses of the wrapped layers and their schedules, registered
as `tfprune>PrunedModel`. Loading re-creates the model from its own config, wraps the same
layers, and then loads the weights, masks included, so a `.keras` file of a pruned subclassed
model loads with `keras.models.load_model` whenever the model itself does (its class
registered and `get_config` written, as Keras asks of subclassed models).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import keras

from tfprune.core.selection import LayerSelection
from tfprune.core.wrapper import PruneLowMagnitude
from tfprune.models.rebuild import CopyError
from tfprune.models.registry import prunes_itself
from tfprune.models.walk import attribute_layers, walk

__all__ = ["copy_subclassed", "prune_in_place", "strip_in_place", "PrunedModel"]


def replace_attribute(holder: Any, name: str, key: Any, new: Any) -> None:
    value = getattr(holder, name)
    if key is None:
        setattr(holder, name, new)
        return
    if isinstance(value, dict):
        items: Any = dict(value)
        items[key] = new
    else:
        items = list(value)
        items[key] = new
        items = tuple(items) if isinstance(value, tuple) else items
    # A new container is tracked afresh, so the holder sees the wrapper and its variables.
    setattr(holder, name, items)


def _at(holder: Any, address: list[Any]) -> tuple[Any, str, Any]:
    """The holder, attribute and key an address (attribute names and keys) points to."""
    *path, name, key = address
    for step in path:
        holder = (
            holder[step]
            if not isinstance(step, str) or isinstance(holder, dict)
            else (getattr(holder, step))
        )
    return holder, name, key


def _prune_holder(
    holder: Any, selection: LayerSelection, path: list[Any], found: list, done: dict[int, Any]
) -> None:
    for name, key, layer in attribute_layers(holder):
        address = [*path, name, key]
        if id(layer) in done:  # held in two places: both get the one wrapper
            if done[id(layer)] is not None:
                replace_attribute(holder, name, key, done[id(layer)])
                found.append((address, done[id(layer)], done[id(layer)].pruning_schedule))
            continue
        done[id(layer)] = None
        if isinstance(layer, PruneLowMagnitude):
            continue
        if isinstance(layer, keras.Model):
            raise ValueError(
                f"'{holder.name}' holds the model '{layer.name}' in its attribute `{name}`: "
                "prune that model first (tfprune.prune_low_magnitude) and assign the result "
                "to the attribute, then prune the outer model's own layers."
            )
        if prunes_itself(layer) or layer.built:
            schedule = selection.schedule_for(layer)
            if schedule is not None:
                wrapper = selection.wrap(layer, schedule)
                done[id(layer)] = wrapper
                replace_attribute(holder, name, key, wrapper)
                found.append((address, wrapper, schedule))
        else:
            # A block whose parts are built on its first call: prune the parts it holds.
            _prune_holder(layer, selection, address, found, done)


def prune_in_place(
    model: keras.Model, selection: LayerSelection, built_like: keras.Model | None = None
) -> list[PruneLowMagnitude]:
    """Wraps the chosen layers a subclassed model holds in its attributes, in place.

    A built model is unlocked for it (Keras locks a built model's layers; it unlocks them
    itself to add a variable to a built layer). With `built_like` (the built original of an
    unbuilt copy), the model is then built like it and given its weights.

    Returns:
        The new wrappers.

    Raises:
        ValueError: If a prunable layer of the model is held nowhere a wrapper can replace it
            (the message names it), or the model holds another model.
    """
    found: list = []
    with _unlocked(model):
        _prune_holder(model, selection, [], found, {})
    wrappers = list({id(w): w for _, w, _ in found}.values())
    # Keras tracks every layer the model holds, however deeply its containers nest them; the
    # ones found neither wrapped nor inside a wrapper stay where `call` still reaches them.
    inside = {id(x) for w in wrappers for x in walk(w)}
    reached = {id(x) for x in walk(model, into=lambda x: not isinstance(x, PruneLowMagnitude))}
    missed = [
        layer.name
        for layer in model.layers
        if id(layer) not in inside
        and id(layer) not in reached
        and prunes_itself(layer)
        and selection.schedule_for(layer) is not None
    ]
    if missed:
        raise ValueError(
            f"Cannot reach layers {missed} of model '{model.name}': they are not held in an "
            "attribute (directly, or in a list or dict) where a wrapper could take their "
            "place, so the model's `call` would keep using them unpruned. Assign each to an "
            "attribute in `__init__`, or wrap it there with tfprune.prune_low_magnitude."
        )
    spec = [
        {
            "address": address,
            "pruning_schedule": keras.saving.serialize_keras_object(schedule),
            "allocation_group": wrapper.allocation_group,
        }
        for address, wrapper, schedule in found
    ]
    if built_like is not None:
        config = built_like.get_build_config()
        if config:
            model.build_from_config(config)
        _copy_weights(built_like, model)
    _make_saveable(model, spec)
    return wrappers


@contextlib.contextmanager
def _unlocked(model: Any) -> Iterator[None]:
    tracker = getattr(model, "_tracker", None)
    locked = tracker is not None and tracker.locked
    if locked:
        tracker.unlock()
    try:
        yield
    finally:
        if locked:
            tracker.lock()


def copy_subclassed(model: keras.Model) -> keras.Model:
    """An unbuilt copy of a built subclassed model, re-created from its config.

    Raises:
        CopyError: If the model cannot be re-created from its config.
    """
    try:
        return type(model).from_config(model.get_config())
    except (NotImplementedError, TypeError, ValueError) as error:
        raise CopyError(
            f"Cannot copy the built subclassed model '{model.name}': it cannot be re-created "
            f"from its config ({type(error).__name__}: {error}). Give the class get_config() "
            "(and from_config()) so that it can be copied."
        ) from error


def _copy_weights(source: Any, target: Any) -> None:
    """Gives each layer `target` holds the weights of the layer `source` holds there."""
    originals = {(name, key): layer for name, key, layer in attribute_layers(source)}
    for name, key, layer in attribute_layers(target):
        original = originals.get((name, key))
        inner = layer.layer if isinstance(layer, PruneLowMagnitude) else layer
        if original is not None and not isinstance(inner, PruneLowMagnitude):
            holds_wrappers = any(isinstance(x, PruneLowMagnitude) for x in list(walk(inner))[1:])
            if holds_wrappers:
                _copy_weights(original, inner)
                continue
            if len(original.weights) == len(inner.weights):
                inner.set_weights(original.get_weights())
                continue
        raise ValueError(
            f"Cannot copy the weights of the built model into its pruned copy: its attribute "
            f"`{name}` does not hold the same layer once the model is re-created from its "
            "config. Prune the model before its first call instead."
        )


def strip_in_place(model: Any) -> Any:
    """Puts back every layer a wrapper holds in the model's attributes, weights masked."""
    with _unlocked(model):
        _strip_holder(model)
    if isinstance(model, PrunedModel):
        model.__class__ = type(model).__mro__[2]
    return model


def _strip_holder(model: Any) -> None:
    for name, key, layer in attribute_layers(model):
        if isinstance(layer, PruneLowMagnitude):
            layer.bake()
            replace_attribute(model, name, key, layer.layer)
        elif any(isinstance(x, PruneLowMagnitude) for x in list(walk(layer))[1:]):
            with _unlocked(layer):
                _strip_holder(layer)


def own_config(model: Any) -> dict[str, Any]:
    """The serialized config of a pruned model under its own class (the class its pruned
    mixin class was made from), as `keras.saving.deserialize_keras_object` reads it."""
    original = type(model).__mro__[2]
    return {
        "module": original.__module__,
        "class_name": original.__name__,
        "config": original.get_config(model),
        "registered_name": keras.saving.get_registered_name(original),
    }


class PrunedModel:
    """Mixin of a pruned subclassed model's class: saves the pruning with the model's config."""

    _tfprune_spec: list[dict[str, Any]]

    def get_config(self) -> dict[str, Any]:
        return {"model": own_config(self), "pruned": self._tfprune_spec}

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> keras.Model:
        model = keras.saving.deserialize_keras_object(
            config["model"], custom_objects=custom_objects
        )
        made: dict[int, PruneLowMagnitude] = {}
        for entry in config["pruned"]:
            holder, name, key = _at(model, entry["address"])
            value = getattr(holder, name)
            layer = value if key is None else value[key]
            if id(layer) not in made:  # a layer held in two places gets one wrapper
                schedule = keras.saving.deserialize_keras_object(entry["pruning_schedule"])
                made[id(layer)] = PruneLowMagnitude(
                    layer, pruning_schedule=schedule, allocation_group=entry["allocation_group"]
                )
            replace_attribute(holder, name, key, made[id(layer)])
        _make_saveable(model, config["pruned"])
        return model


def _make_saveable(model: keras.Model, spec: list[dict[str, Any]]) -> None:
    original = type(model)
    pruned = type(original.__name__, (PrunedModel, original), {"__module__": __name__})
    keras.saving.register_keras_serializable(package="tfprune", name="PrunedModel")(pruned)
    model.__class__ = pruned
    model._tfprune_spec = spec
