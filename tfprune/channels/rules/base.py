"""The registry of channel rules: how each kind of layer or operation moves channels.

A `LayerRule` says, for one kind of layer, which output channels it creates from which inputs
(`follow`, on the `ChannelGraph` being read) and how `tfprune.trim` lowers its channel counts
in its config (`resize`). Each kind is one class, registered for its layer classes:

- `register(*classes)`: the classes and their subclasses (the most specific registered class
  of a layer's hierarchy decides);
- `register(*classes, exact=True)`: those classes only, not their subclasses (a subclass of a
  layer made of layers may compute something else);
- `register_keras_hub(*names)`: exactly `keras_hub.layers.<name>`, known once KerasHub is
  imported (KerasHub stays optional: nothing here imports it);
- `register_operation(*names)`: operations of a model's own code (`x + y`), by class name.

`rule_for(op)` finds the rule of a layer or operation, or None.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from tfprune.models.kinds import keras_hub_layer
from tfprune.models.registry import weight_label

__all__ = [
    "COUPLING",
    "LayerRule",
    "UnsupportedLayer",
    "register",
    "register_keras_hub",
    "register_operation",
    "resize_part",
    "resized_config",
    "rule_for",
    "activation_name",
]

# Activations that mix the channels they are applied to: what they read is kept whole.
COUPLING = ("softmax", "log_softmax")


def activation_name(layer: Any) -> str:
    """The name of a layer's activation ("relu", "softmax"), or "None"."""
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", str(activation))


class UnsupportedLayer(ValueError):
    """A layer whose channels the grouping cannot follow."""


class LayerRule:
    """How one kind of layer moves channels. Subclasses implement `follow`; those whose config
    names a channel count implement `resize`."""

    def inputs(self, graph: Any, node: dict, tensors: dict, shapes: dict, inputs: list) -> list:
        """The `(positions, shape)` of the call's inputs in the order `follow` reads them.
        Defaults to the order of the call's tensors."""
        del graph, node, tensors, shapes
        return inputs

    def follow(self, graph: Any, op: Any, inputs: list, out_shapes: list) -> list[np.ndarray]:
        """The positions of `op`'s outputs, from its inputs' `(positions, shape)`: created
        with `graph.created`, joined with `graph.join`, recorded on weights with
        `graph.weight`.

        Raises:
            UnsupportedLayer: If this call of the layer cannot be followed.
        """
        raise NotImplementedError

    def resize(self, layer: Any, config: dict[str, Any], counts: dict[str, int]) -> None:
        """Lowers the channel counts of `layer`'s `config` in place. `counts` gives the number
        of channels kept per label of the weights whose "out" axes the layer owns."""
        del layer, config, counts


_BY_CLASS: dict[type, LayerRule] = {}
_EXACT: dict[type, LayerRule] = {}
_KERAS_HUB: dict[str, LayerRule] = {}
_OPERATIONS: dict[str, LayerRule] = {}
_CLASSES: list[tuple[Callable[[Any], bool], LayerRule]] = []


def register(*classes: type, exact: bool = False) -> Callable[[type], type]:
    """Registers a `LayerRule` subclass (an instance of it) for `classes`."""

    def decorate(rule: type) -> type:
        for cls in classes:
            (_EXACT if exact else _BY_CLASS)[cls] = rule()
        return rule

    return decorate


def register_keras_hub(*names: str) -> Callable[[type], type]:
    """Registers a `LayerRule` subclass for exactly the KerasHub layers `names`."""

    def decorate(rule: type) -> type:
        for name in names:
            _KERAS_HUB[name] = rule()
        return rule

    return decorate


def register_operation(*names: str, test: Callable[[Any], bool] | None = None):
    """Registers a `LayerRule` subclass for the operations (not layers) of the class `names`,
    or for which `test` holds (an operation Keras does not export, known by its class)."""

    def decorate(rule: type) -> type:
        instance = rule()
        for name in names:
            _OPERATIONS[name] = instance
        if test is not None:
            _CLASSES.append((test, instance))
        return rule

    return decorate


def rule_for(op: Any) -> LayerRule | None:
    """The rule of a layer or operation, or None when no rule knows it."""
    if not isinstance(op, keras.layers.Layer):
        for test, rule in _CLASSES:
            if test(op):
                return rule
        return _OPERATIONS.get(type(op).__name__)
    cls = type(op)
    if cls in _EXACT:
        return _EXACT[cls]
    for name, rule in _KERAS_HUB.items():
        if cls is keras_hub_layer(name):
            return rule
    for klass in cls.__mro__:
        if klass in _BY_CLASS:
            return _BY_CLASS[klass]
    return None


def resized_config(layer: Any, counts: dict[str, int]) -> dict[str, Any]:
    """The layer's config with its channel counts lowered (see `LayerRule.resize`)."""
    config = layer.get_config()
    rule = rule_for(layer)
    if counts and rule is not None:
        rule.resize(layer, config, counts)
    return config


def resize_part(
    config: dict[str, Any], key: str, outer: Any, part: Any, counts: dict[str, int]
) -> None:
    """Writes the resized config of `part`, a layer inside `outer`, at `config[key]` (the
    serialized part in the outer layer's config); `counts` are keyed by labels inside `outer`."""
    own = {
        weight_label(part, v): counts[weight_label(outer, v)]
        for v in part.weights
        if weight_label(outer, v) in counts
    }
    config[key]["config"] = resized_config(part, own)
    config[key].pop("build_config", None)  # built again on the trimmed inputs
