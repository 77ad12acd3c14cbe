"""Re-creating a layer from its config, also when its config lists more than it takes."""

from __future__ import annotations

import copy
import importlib
import inspect
from typing import Any

import keras

__all__ = ["config_of", "recreate", "deserialize_layer"]


def _init_parameters(cls: type) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            names |= set(inspect.signature(klass.__init__).parameters) - {"self"}
        if klass is keras.layers.Layer:
            break
    return names


def _own_parameters(cls: type) -> set[str]:
    """The named constructor arguments of `cls` and its bases below `keras.layers.Layer`."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass is keras.layers.Layer:
            break
        if "__init__" in vars(klass):
            names |= {
                p.name
                for p in inspect.signature(klass.__init__).parameters.values()
                if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name != "self"
            }
    return names


def config_of(layer: Any) -> dict[str, Any]:
    """`layer.get_config()`, or a `ValueError` naming the layer when its own method fails.

    Copying and saving a model both need every layer's config (`keras.models.clone_model`
    and `model.save` fail on the same layer); the error says which one it is.
    """
    try:
        return layer.get_config()
    except Exception as error:  # noqa: BLE001 - any failure of the layer's own method
        raise ValueError(
            f"Cannot copy layer '{layer.name}' of type {type(layer).__name__}: its get_config() "
            f"raises {type(error).__name__}: {error}. Keras needs it to copy or save the model "
            "(keras.models.clone_model fails on it too). Fix or override that layer's "
            "get_config()."
        ) from error


def recreate(cls: type, config: dict[str, Any], *, name: str = "", custom_objects: Any = None):
    """`cls.from_config(config)`, retried with only the arguments the constructor names.

    Some layers list values derived from their arguments in `get_config` (KerasHub's
    `ViTPatchingAndEmbedding`: `num_patches`) that their constructor then refuses; the
    arguments it does take rebuild the same layer.

    Raises:
        ValueError: If the layer cannot be re-created either way.
    """
    try:
        return cls.from_config(copy.deepcopy(config))  # from_config may consume its dict
    except (TypeError, ValueError) as error:
        accepted = _init_parameters(cls)
        kept = {k: v for k, v in config.items() if k in accepted}
        if len(kept) == len(config):
            raise ValueError(
                f"Cannot re-create layer '{name or config.get('name')}' of type {cls.__name__}: "
                f"from_config(get_config()) fails ({error}). Fix the layer's get_config()."
            ) from error
        missing = sorted(_own_parameters(cls) - set(config))
        if missing:
            # The constructor would take defaults for what get_config() forgot: another layer.
            raise ValueError(
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
