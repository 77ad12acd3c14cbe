"""Pruning policies: which layers of a model to prune, and which models qualify (tfmot's API).

`PruneForLatencyOnXNNPack` prunes only the 1x1 convolutions of a model that XNNPACK's sparse
inference can run: a 3x3 stride-2 stem convolution on 3 channels after symmetric zero padding,
then only operators that sparse inference supports, up to a global average pooling on every
output branch. XNNPACK uses sparse inference on ARM and WASM only; on x86 with AVX the same
file runs dense.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable
from typing import Any

import keras
from keras import layers

from tfprune.models.walk import model_kind

__all__ = ["PruningPolicy", "PruneForLatencyOnXNNPack"]


class PruningPolicy(abc.ABC):
    """Says which layers `prune_low_magnitude` wraps and checks that a model qualifies.

    Pass an instance as `prune_low_magnitude(model, pruning_policy=...)`; subclass it for your
    own policy. A policy acts on models; a single layer or a list of layers is wrapped only if
    `allow_pruning` accepts it.
    """

    @abc.abstractmethod
    def allow_pruning(self, layer: Any) -> bool:
        """Whether `layer` is wrapped for pruning."""

    @abc.abstractmethod
    def ensure_model_supports_pruning(self, model: Any) -> None:
        """Raises `ValueError` if `model` does not qualify for this policy."""


class _Graph:
    """Producers and consumers of each layer or operation of a built model, by name, read from
    the model's config (its serialized graph)."""

    def __init__(self, model: Any) -> None:
        self.nodes: dict[str, Any] = {}
        self.producers: dict[str, set[str]] = {}
        if isinstance(model, keras.Sequential):
            chain = list(model.layers)
            self.nodes = {layer.name: layer for layer in chain}
            for before, after in zip(chain, chain[1:], strict=False):
                self.producers[after.name] = {before.name}
            self.producers.setdefault(chain[0].name, set())
            self.inputs = {chain[0].name}
            self.outputs = {chain[-1].name}
            self.first = {chain[0].name}
        else:
            config = model.get_config()
            self.nodes = {op.name: op for op in model.operations}
            for entry in config["layers"]:
                self.producers[entry["name"]] = set(_history(entry["inbound_nodes"]))
            self.inputs = set(_names(config["input_layers"]))
            self.outputs = set(_names(config["output_layers"]))
            self.first = {n for n, p in self.producers.items() if p & self.inputs}
        self.consumers: dict[str, set[str]] = {name: set() for name in self.producers}
        for name, producers in self.producers.items():
            for producer in producers:
                self.consumers.setdefault(producer, set()).add(name)

    def search(self, sources: Iterable[str], stop: Callable[[str], bool], step: dict) -> set[str]:
        """The nodes where `stop` holds, reached from `sources` along `step`; empty if a path
        ends (a model input or output) before any."""
        to_visit, seen, found = set(sources), set(sources), set()
        while to_visit:
            name = to_visit.pop()
            if stop(name):
                found.add(name)
                continue
            following = step.get(name, set())
            if not following:
                return set()
            for other in following - seen:
                seen.add(other)
                to_visit.add(other)
        return found


def _history(value: Any) -> Iterable[str]:
    """Names of the layers whose outputs a serialized call reads."""
    if isinstance(value, dict):
        history = value.get("config", {}).get("keras_history") if "config" in value else None
        if value.get("class_name") == "__keras_tensor__" and history:
            yield history[0]
            return
        for item in value.values():
            yield from _history(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _history(item)


def _names(entries: Any) -> list[str]:
    if entries and isinstance(entries[0], str):
        return [entries[0]]
    return [entry[0] for entry in entries]


def _pairs(value: Any) -> tuple:
    return tuple(tuple(v) if isinstance(v, (list, tuple)) else v for v in value)


class PruneForLatencyOnXNNPack(PruningPolicy):
    """Prunes only 1x1 `Conv2D` layers, of models that XNNPACK's sparse inference can run.

    The model must start every input branch with `ZeroPadding2D(1)` then a 3x3 `Conv2D` with
    stride 2, 3 input channels and "valid" padding, end every output branch with a
    `GlobalAveragePooling2D`, and between them hold only what sparse inference supports:
    1x1 `Conv2D` (stride 1, no dilation or groups), 3x3 or 5x5 `DepthwiseConv2D` (multiplier 1,
    "same" at stride 1, or "valid" after matching `ZeroPadding2D` at stride 1 or 2),
    `BatchNormalization` on channels, `Add`, `Multiply`, `ReLU`, `LeakyReLU`, `ELU`,
    `Dropout`, `ZeroPadding2D`, bilinear `UpSampling2D`, `Activation` (relu, relu6,
    leaky_relu, elu, sigmoid), `GlobalAveragePooling2D(keepdims=True)` and the `+`, `-`, `*`
    operations. These are tfmot's rules. Export the pruned model with
    `to_tflite(prefer="speed")` (see docs/export.md): XNNPACK takes sparse 1x1 convolutions on
    ARM and WASM only.

    Example:

    >>> import keras, tfprune
    >>> inputs = keras.Input((32, 32, 3))
    >>> x = keras.layers.ZeroPadding2D(1)(inputs)
    >>> x = keras.layers.Conv2D(8, 3, strides=2, padding="valid")(x)
    >>> x = keras.layers.Conv2D(16, 1, activation="relu", name="expand")(x)
    >>> outputs = keras.layers.GlobalAveragePooling2D()(x)
    >>> pruned = tfprune.prune_low_magnitude(
    ...     keras.Model(inputs, outputs), pruning_policy=tfprune.PruneForLatencyOnXNNPack())
    >>> [layer.name for layer in tfprune.core.find.pruning_wrappers(pruned)]
    ['prune_low_magnitude_expand']
    """

    def allow_pruning(self, layer: Any) -> bool:
        return type(layer) is layers.Conv2D and tuple(layer.kernel_size) == (1, 1)

    def ensure_model_supports_pruning(self, model: Any) -> None:
        name = f"the {type(self).__name__} pruning policy"
        if model_kind(model) == "subclassed":
            raise ValueError(f"Subclassed model '{model.name}' is not supported by {name}.")
        if not model.built:
            raise ValueError(f"Unbuilt model '{model.name}' is not supported by {name}.")
        graph = _Graph(model)
        starts = graph.search(graph.first, lambda n: self._starts(graph, n), graph.consumers)
        if not starts:
            raise ValueError(
                f"Model '{model.name}' does not qualify for {name}: every input branch must "
                "start with ZeroPadding2D(1) followed by a 3x3 Conv2D with stride 2, 3 input "
                'channels and padding="valid" (write `ZeroPadding2D(1)` + `padding="valid"` '
                'where the model has `padding="same"`).'
            )
        ends = graph.search(
            graph.outputs,
            lambda n: isinstance(graph.nodes.get(n), layers.GlobalAveragePooling2D),
            graph.producers,
        )
        if not ends:
            raise ValueError(
                f"Model '{model.name}' does not qualify for {name}: every output branch must "
                "pass through a GlobalAveragePooling2D layer."
            )

        def check(n: str) -> bool:
            if n not in ends and not self._supported(graph, n):
                node = graph.nodes.get(n)
                raise ValueError(
                    f"Layer '{n}' of type {type(node).__name__} is not supported by {name}: "
                    "XNNPACK's sparse inference cannot run it between the stem convolution "
                    "and the global average pooling."
                )
            return n in ends

        graph.search(
            {c for s in starts for c in graph.consumers.get(s, ())}, check, graph.consumers
        )

    def _single_padding(self, graph: _Graph, n: str, amount: int) -> bool:
        producers = graph.producers.get(n, set())
        if len(producers) != 1:
            return False
        producer = graph.nodes.get(next(iter(producers)))
        return isinstance(producer, layers.ZeroPadding2D) and _pairs(producer.padding) == (
            (amount, amount),
            (amount, amount),
        )

    def _starts(self, graph: _Graph, n: str) -> bool:
        layer = graph.nodes.get(n)
        return (
            type(layer) is layers.Conv2D
            and tuple(layer.kernel.shape[:3]) == (3, 3, 3)
            and tuple(layer.strides) == (2, 2)
            and layer.padding == "valid"
            and self._single_padding(graph, n, 1)
        )

    def _supported(self, graph: _Graph, n: str) -> bool:
        layer = graph.nodes.get(n)
        simple = (
            layers.Add,
            layers.Multiply,
            layers.ZeroPadding2D,
            layers.ReLU,
            layers.LeakyReLU,
            layers.ELU,
            layers.Dropout,
        )
        if isinstance(layer, simple):
            return True
        if type(layer) is layers.DepthwiseConv2D:
            size, strides = tuple(layer.kernel_size), tuple(layer.strides)
            if layer.depth_multiplier != 1 or tuple(layer.dilation_rate) != (1, 1):
                return False
            if size not in ((3, 3), (5, 5)):
                return False
            if layer.padding == "same":
                return strides == (1, 1)
            return strides in ((1, 1), (2, 2)) and self._single_padding(graph, n, size[0] // 2)
        if type(layer) is layers.Conv2D:
            return (
                layer.groups == 1
                and tuple(layer.dilation_rate) == (1, 1)
                and tuple(layer.kernel_size) == (1, 1)
                and tuple(layer.strides) == (1, 1)
            )
        if isinstance(layer, layers.GlobalAveragePooling2D):
            return bool(layer.keepdims)
        if isinstance(layer, layers.BatchNormalization):
            return layer.axis in (3, -1, [3], [-1])
        if isinstance(layer, layers.UpSampling2D):
            return layer.interpolation == "bilinear"
        if isinstance(layer, layers.Activation):
            activation = keras.activations.serialize(layer.activation)
            activation = activation if isinstance(activation, str) else activation.get("config")
            return activation in ("relu", "relu6", "leaky_relu", "elu", "sigmoid")
        # `x + y`, `x - y`, `x * y` in a model's code are Keras operations in its graph.
        return (
            isinstance(layer, keras.Operation)
            and not isinstance(layer, keras.layers.Layer)
            and type(layer).__name__ in ("Add", "Subtract", "Multiply")
        )
