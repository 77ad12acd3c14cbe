"""Reading a Functional model's serialized graph: the tensors each call reads, its inputs.

`ChannelGraph` follows a model through `model.get_config()`, where every layer call is a node
whose arguments hold `__keras_tensor__` entries naming the `(layer, node, index)` they come
from. A Sequential model, or a Functional subclass whose config is its own (a KerasHub
backbone), is read through the Functional model of the same layers.
"""

from __future__ import annotations

from typing import Any

import keras

__all__ = ["as_functional", "input_names", "keyed_inputs", "tensor_entries", "tensor_keys"]


def tensor_entries(value: Any) -> list[tuple[tuple, tuple]]:
    """`(key, shape)` of every tensor a serialized call argument holds, in order; a key is
    `(layer name, node index, tensor index)`."""
    found: list[tuple[tuple, tuple]] = []
    if isinstance(value, dict):
        config = value.get("config")
        if value.get("class_name") == "__keras_tensor__" and isinstance(config, dict):
            return [(tuple(config["keras_history"]), tuple(config["shape"]))]
        for item in value.values():
            found += tensor_entries(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            found += tensor_entries(item)
    return found


def tensor_keys(value: Any) -> list[tuple]:
    """The keys of the tensors a serialized call argument holds (see `tensor_entries`)."""
    return [key for key, _ in tensor_entries(value)]


def as_functional(model: Any) -> Any:
    """The Functional model of the same layers as a Sequential model, or as a subclass of
    Functional with a config of its own (a KerasHub backbone or task): its graph in config."""
    if isinstance(model, keras.Sequential):
        return keras.Model(model.inputs, model.outputs)
    if "layers" not in model.get_config():
        return keras.Model(model.input, model.output, name=model.name)
    return model


def keyed_inputs(entries: Any) -> list[tuple[Any, str]]:
    """(key, name) of a model config's input layers: keys of a dict of inputs, else places."""
    if isinstance(entries, dict):
        return [(key, entry[0]) for key, entry in entries.items()]
    if entries and isinstance(entries[0], str):
        return [(0, entries[0])]
    return [(i, entry[0]) for i, entry in enumerate(entries)]


def input_names(model: Any) -> list[str]:
    """The names of a Sequential or Functional model's input layers, in `model.inputs` order."""
    entries = as_functional(model).get_config()["input_layers"]
    if isinstance(entries, dict):
        return [entries[key][0] for key in keras.tree.flatten({k: k for k in entries})]
    return [name for _, name in keyed_inputs(entries)]
