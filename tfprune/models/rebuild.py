"""Re-creating a layer from its config, also when its config lists more than it takes."""

from __future__ import annotations

import copy
import importlib
import inspect
from typing import Any

import keras

__all__ = ["CopyError", "config_of", "recreate", "deserialize_layer"]


class CopyError(ValueError):
    """A layer cannot be copied through its config (`get_config` raises, or `from_config`
    does not give the same layer back)."""


def _init_parameters(cls: type) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            names |= set(inspect.signature(klass.__init__).parameters) - {"self"}
        if klass is keras.layers.Layer:
            break
    return names


def _forgotten(cls: type, config: dict[str, Any], original: Any) -> list[str]:
    """Constructor arguments of `cls` (below `keras.layers.Layer`) that `config` leaves out
    while `original` holds a value other than their default under the same name: a copy
    would take the default and be another layer."""
    forgotten = []
    for klass in cls.__mro__:
        if klass is keras.layers.Layer:
            break
        if "__init__" not in vars(klass):
            continue
        for p in inspect.signature(klass.__init__).parameters.values():
            if p.name in config or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            if p.name == "self" or p.default is p.empty or p.default is None:
                continue
            value = getattr(original, p.name, p.default)
            try:
                differs = bool(value != p.default)
            except Exception:  # noqa: BLE001 - arrays and the like: not comparable
                differs = False
            if differs:
                forgotten.append(p.name)
    return sorted(set(forgotten))


def config_of(layer: Any) -> dict[str, Any]:
    """`layer.get_config()`, or a `ValueError` naming the layer when its own method fails.

    Copying and saving a model both need every layer's config (`keras.models.clone_model`
    and `model.save` fail on the same layer); the error says which one it is.
    """
    try:
        return layer.get_config()
    except Exception as error:  # noqa: BLE001 - any failure of the layer's own method
        raise CopyError(
            f"Cannot copy layer '{layer.name}' of type {type(layer).__name__}: its get_config() "
            f"raises {type(error).__name__}: {error}. Keras needs it to copy or save the model "
            "(keras.models.clone_model fails on it too). Fix or override that layer's "
            "get_config()."
        ) from error


def recreate(
    cls: type,
    config: dict[str, Any],
    *,
    name: str = "",
    custom_objects: Any = None,
    original: Any = None,
):
    """`cls.from_config(config)`, retried with only the arguments the constructor names.

    Some layers list values derived from their arguments in `get_config` (KerasHub's
    `ViTPatchingAndEmbedding`: `num_patches`) that their constructor then refuses; the
    arguments it does take rebuild the same layer, unless `original` (the layer being copied)
    holds a non-default value for an argument the config leaves out.

    Raises:
        ValueError: If the layer cannot be re-created either way.
    """
    try:
        return cls.from_config(copy.deepcopy(config))  # from_config may consume its dict
    except (TypeError, ValueError) as error:
        accepted = _init_parameters(cls)
        kept = {k: v for k, v in config.items() if k in accepted}
        if len(kept) == len(config):
            raise CopyError(
                f"Cannot re-create layer '{name or config.get('name')}' of type {cls.__name__}: "
                f"from_config(get_config()) fails ({error}). Fix the layer's get_config()."
            ) from error
        missing = _forgotten(cls, config, original) if original is not None else []
        if missing:
            # The constructor would take defaults for what get_config() forgot: another layer.
            raise CopyError(
                f"Cannot re-create layer '{name or config.get('name')}' of type {cls.__name__}: "
                f"from_config(get_config()) fails ({error}), and get_config() leaves out the "
                f"constructor arguments {missing}. Fix the layer's get_config()."
            ) from error
        return cls.from_config(kept)


def deserialize_layer(serialized: dict[str, Any], custom_objects: Any = None):
    """`keras.saving.deserialize_keras_object`, falling back on `recreate` for a layer whose
    config lists more than its constructor takes."""
    try:
        # Deserializing consumes the dict it reads: keep the original for the retry.
        return keras.saving.deserialize_keras_object(
            copy.deepcopy(serialized), custom_objects=custom_objects
        )
    except (TypeError, ValueError):
        cls = keras.saving.get_registered_object(
            serialized.get("registered_name") or serialized["class_name"], custom_objects
        ) or getattr(importlib.import_module(serialized["module"]), serialized["class_name"])
        return recreate(cls, serialized["config"])
