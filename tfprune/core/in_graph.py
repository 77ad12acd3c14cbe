"""Pruning a built model's own layers, re-creating none of them (`in_place=True`).

Copying a model layer by layer needs every layer's `get_config` to give the same layer back,
which some do not (KerasHub 0.32's `LlamaTransformerDecoder.get_config()` raises; its
`Qwen3TransformerDecoder` does not survive `from_config(get_config())`), and it holds the model
twice in memory, which a large language model cannot afford. Here the chosen layers are
wrapped as they are: each `PruneLowMagnitude` wraps the model's own layer object, so the
weights stay the same variables, and the masks sit beside them.

Where the wrappers go depends on how the model is built:

- A subclass of Functional with its own config (a KerasHub backbone or task): the model stays
  the same object of its own class. Every node of its graph (and of the models nested in it)
  that called a chosen layer calls its wrapper, and every attribute that held the layer (a
  backbone's `transformer_layers`, which a causal LM's cached generation calls directly)
  holds the wrapper. Saving: the class becomes a subclass of its own (registered as
  `tfprune>PrunedGraphModel`) whose config is the model's own config and, beside it, which
  layers are wrapped and how; loading re-creates the model from its own config and wraps the
  same layers again before the weights and masks are read.
- A plain Functional or Sequential model: a new model of the same graph calls the wrappers of
  the same layer objects (the original model keeps calling the unwrapped layers, on the same
  variables).
- A subclassed model: its attributes hold the wrappers (`tfprune.core.in_place`); a built
  model is unlocked for that, as Keras itself does when it adds a variable to a built layer.

`strip_in_graph` undoes the first kind in place, with the zeros baked into the variables.
"""

from __future__ import annotations

from typing import Any

import keras

from tfprune.core.cloning import call_layer
from tfprune.core.in_place import own_config, replace_attribute
from tfprune.core.selection import LayerSelection
from tfprune.core.wrapper import PruneLowMagnitude
from tfprune.models.walk import attribute_layers, functional_class

__all__ = [
    "keeps_its_class",
    "graph_models",
    "wrap_in_graph",
    "rebuild_with",
    "strip_in_graph",
    "PrunedGraphModel",
]


def keeps_its_class(model: Any) -> bool:
    """Whether `model` is a Functional subclass that saves through its own `get_config` (a
    KerasHub backbone or task) rather than through its graph of layer configs."""
    functional = functional_class()
    return (
        isinstance(model, functional)
        and not isinstance(model, keras.Sequential)
        and type(model).get_config is not functional.get_config
        and type(model).get_config is not keras.Model.get_config
    )


def graph_models(model: Any) -> list[Any]:
    """`model` and every Functional model its graph calls, however deep, each once."""
    functional = functional_class()
    found, stack, seen = [], [model], set()
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        found.append(current)
        for layer in getattr(current, "_operations", ()):
            if isinstance(layer, functional):
                stack.append(layer)
    return found


def _graph_layers(model: Any) -> list[Any]:
    """The layers the graphs of `model` and its nested models call (models left out), in
    the order of the graphs, each once."""
    layers, seen = [], set()
    for graph in graph_models(model):
        for layer in graph.layers:
            if isinstance(layer, keras.Model) or isinstance(layer, keras.layers.InputLayer):
                continue
            if id(layer) not in seen:
                seen.add(id(layer))
                layers.append(layer)
    return layers


def _swap(model: Any, swaps: dict[int, Any]) -> None:
    """Makes every graph node, operation list, tracked layer and attribute of `model` and
    its nested models that refers to a layer in `swaps` (by id) refer to its replacement."""
    for graph in graph_models(model):
        for nodes in graph._nodes_by_depth.values():
            for node in nodes:
                if id(node.operation) in swaps:
                    node.operation = swaps[id(node.operation)]
        graph._operations = [swaps.get(id(x), x) for x in graph._operations]
        graph._operations_by_depth = {
            depth: [swaps.get(id(x), x) for x in operations]
            for depth, operations in graph._operations_by_depth.items()
        }
        tracker = graph._tracker
        locked = tracker.locked
        tracker.unlock()
        try:
            for name, key, layer in attribute_layers(graph):
                if id(layer) in swaps:
                    replace_attribute(graph, name, key, swaps[id(layer)])
            # Each tracked layer gives way to its replacement in its own place (the order of
            # the model's weights), once: setting an attribute above may have tracked the
            # replacement already, and the old layer must go or its variables (a wrapper's
            # masks) would stay among the model's weights.
            _retrack(tracker, graph._layers, swaps)
        finally:
            if locked:
                tracker.lock()
    # Functions traced before the swap would keep calling the old layers.
    for holder in graph_models(model):
        for name in ("train_function", "test_function", "predict_function", "generate_function"):
            if getattr(holder, name, None) is not None:
                setattr(holder, name, None)


def _retrack(tracker: Any, layers: list[Any], swaps: dict[int, Any]) -> None:
    order, seen = [], set()
    for layer in layers:
        layer = swaps.get(id(layer), layer)
        if id(layer) not in seen:
            seen.add(id(layer))
            order.append(layer)
    layers[:] = order
    tracker.stored_ids["layers"] = seen


def _path(model: Any, layer: Any) -> list[str]:
    """Names from `model` down to `layer`: the nested models' names, then the layer's."""
    for graph in graph_models(model):
        if any(x is layer for x in graph._operations):
            if graph is model:
                return [layer.name]
            inner = _path_to_model(model, graph)
            return [*inner, layer.name]
    raise ValueError(f"Layer '{layer.name}' is not in the graph of model '{model.name}'.")


def _path_to_model(model: Any, target: Any) -> list[str]:
    for layer in model._operations:
        if layer is target:
            return [layer.name]
        if isinstance(layer, functional_class()):
            try:
                return [layer.name, *_path_to_model(layer, target)]
            except LookupError:
                continue
    raise LookupError(target.name)


def _at_path(model: Any, path: list[str]) -> Any:
    current = model
    for name in path:
        matches = [x for x in current._operations if x.name == name]
        if not matches:
            raise ValueError(
                f"Cannot find layer '{name}' of the pruned layers' path {path} in model "
                f"'{model.name}' re-created from its config."
            )
        current = matches[0]
    return current


def wrap_in_graph(model: Any, selection: LayerSelection) -> list[PruneLowMagnitude]:
    """Wraps the chosen layers of a Functional subclass (see the module docstring) in place.

    Returns:
        The new wrappers, in the order of the model's graphs.
    """
    made: dict[int, PruneLowMagnitude] = {}
    for layer in _graph_layers(model):
        if isinstance(layer, PruneLowMagnitude):
            continue
        schedule = selection.schedule_for(layer)
        if schedule is not None:
            made[id(layer)] = _built(selection.wrap(layer, schedule))
    spec = [
        {"path": _path(model, wrapper.layer), "settings": wrapper.settings()}
        for wrapper in made.values()
    ]
    _swap(model, made)
    _make_saveable(model, spec)
    return list(made.values())


def _built(wrapper: PruneLowMagnitude) -> PruneLowMagnitude:
    """`wrapper` with its masks made now (its layer is built), not at its first call: the
    graph is not called again, and one-shot pruning reads the masks before any call."""
    if wrapper.layer.built and not wrapper.built:
        wrapper.build()
    return wrapper


def rebuild_with(model: Any, swap: Any) -> Any:
    """A new model of `model`'s graph calling `swap(layer)` for each of its layers: the layer
    itself (no copy), or another layer in its place (a wrapper, or the layer a wrapper holds).
    """
    call_function = None if isinstance(model, keras.Sequential) else call_layer
    return keras.models.clone_model(
        model,
        clone_function=lambda x: swap(x) if isinstance(x, keras.layers.Layer) else x,
        call_function=call_function,
        recursive=True,
    )


def strip_in_graph(model: Any) -> Any:
    """Puts back, in place, every layer a wrapper stands for in a model pruned by
    `wrap_in_graph`, the zeros baked into its variables; the model gets its own class back."""
    wrappers = {
        id(x): x
        for graph in graph_models(model)
        for x in graph._operations
        if isinstance(x, PruneLowMagnitude)
    }
    for wrapper in wrappers.values():
        wrapper.bake()
    _swap(model, {key: wrapper.layer for key, wrapper in wrappers.items()})
    if isinstance(model, PrunedGraphModel):
        model.__class__ = type(model).__mro__[2]
        model.__dict__.pop("_tfprune_graph_spec", None)
    return model


class PrunedGraphModel:
    """Mixin of a Functional subclass pruned in place: saves the wrappers with the model's
    own config, and wraps the same layers again when it is loaded."""

    _tfprune_graph_spec: list[dict[str, Any]]

    def get_config(self) -> dict[str, Any]:
        return {"model": own_config(self), "pruned_layers": self._tfprune_graph_spec}

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> keras.Model:
        model = keras.saving.deserialize_keras_object(
            config["model"], custom_objects=custom_objects
        )
        made = {}
        for entry in config["pruned_layers"]:
            layer = _at_path(model, entry["path"])
            made[id(layer)] = _built(PruneLowMagnitude.from_settings(layer, entry["settings"]))
        _swap(model, made)
        _make_saveable(model, config["pruned_layers"])
        return model


def _register(cls: type) -> type:
    return keras.saving.register_keras_serializable(package="tfprune", name="PrunedGraphModel")(cls)


# Loading finds the mixin under its registered name in any process (its `from_config` reads
# the model's own class from the config); each pruned class saves under that name.
_register(PrunedGraphModel)


def _make_saveable(model: Any, spec: list[dict[str, Any]]) -> None:
    original = type(model)
    pruned = type(original.__name__, (PrunedGraphModel, original), {"__module__": __name__})
    _register(pruned)
    _register(PrunedGraphModel)  # the name still loads through the mixin
    model.__class__ = pruned
    # Not tracked: a list attribute of a layer would become a tracked collection, which
    # TensorFlow's export still looks for after `strip_in_graph` removes it.
    object.__setattr__(model, "_tfprune_graph_spec", spec)
