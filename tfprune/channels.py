"""Channel groups: which channels of a model must be removed together, read from its graph.

Every channel of every tensor in a Sequential or Functional model is a position; positions that
must go together are joined (union-find): a residual `Add` joins its inputs' channels, a
`Concatenate` places its inputs' channels side by side, `Flatten` repeats each channel once per
spatial position, a depthwise convolution or a BatchNormalization keeps its input's channels.
A group is a set of joined positions that starts at the output channels of a layer with a
kernel (Dense units, Conv filters, Embedding features, recurrent units) and ends only at the
inputs of layers with kernels, which read it through kernel rows. Such a group can be removed:
masking its rows in every kernel that reads it gives exactly the model without it, whatever
lies in between (a bias, an activation, an `Add`). A group that reaches a model output, a
normalization over the features, a softmax over them, or a layer not known here is kept whole.
Known layers made of layers (`TimeDistributed`, `Bidirectional`, KerasHub's transformer layers
and embeddings) are followed inside, by `tfprune.channel_composites`.

Each weight that holds channels records, per axis, the positions it holds: `"out"` for the
channels a layer creates (one per channel), `"in"` for the rows it reads, `"tie"` for values
that follow a channel (biases, BatchNormalization statistics, depthwise kernels, the gate
columns of a recurrent kernel).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from tfprune.channel_composites import CompositeRules
from tfprune.channel_rules import LayerRules, UnsupportedLayer
from tfprune.registry import weight_label

_L = keras.layers
# Reasons that need no telling: a model's inputs and outputs are never trimmed.
QUIET = ("model input", "model output")

__all__ = [
    "Axis",
    "ChannelGraph",
    "QUIET",
    "UnsupportedLayer",
    "as_functional",
    "input_names",
]


@dataclasses.dataclass
class Axis:
    """The positions one axis of a weight holds, and their role ("out", "in" or "tie")."""

    axis: int
    role: str
    positions: np.ndarray


class ChannelGraph(LayerRules, CompositeRules):
    """The channel groups of a built Sequential or Functional model.

    Args:
        model: The model.
        unsupported: "raise" (a layer whose channels cannot be followed is an error) or "keep"
            (the channels it reads and writes are kept whole, with a reason).
        selected: A function of a layer saying whether the channels it creates may be
            removed. Defaults to every layer.

    Raises:
        UnsupportedLayer: If `unsupported="raise"` and a layer cannot be followed.
    """

    def __init__(
        self,
        model: Any,
        unsupported: str = "raise",
        selected: Callable[[Any], bool] | None = None,
    ) -> None:
        self.unsupported = unsupported
        self.parent: list[int] = []
        self.reasons: dict[int, str] = {}
        self.weights: dict[str, dict[str, list[Axis]]] = {}
        self.layers: dict[str, Any] = {}
        self.kept: list[tuple[str, str]] = []
        # Layers with no weights whose config names a channel count (a Reshape's target, a
        # nested model's input).
        self.counted: dict[str, np.ndarray] = {}
        self._creators: list[tuple[str, np.ndarray]] = []
        self._read(model)
        self._number(selected or (lambda layer: True))

    # Union-find over positions.
    def _new(self, count: int) -> np.ndarray:
        start = len(self.parent)
        self.parent.extend(range(start, start + count))
        return np.arange(start, start + count)

    def _find(self, p: int) -> int:
        root = p
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[p] != root:
            self.parent[p], p = root, self.parent[p]
        return root

    def _join(self, a: np.ndarray, b: np.ndarray) -> None:
        for x, y in zip(a.tolist(), b.tolist(), strict=True):
            rx, ry = self._find(x), self._find(y)
            if rx != ry:
                self.parent[max(rx, ry)] = min(rx, ry)

    def _fix(self, positions: np.ndarray, reason: str) -> None:
        for p in positions.tolist():
            if reason in QUIET:  # the model's own edges need no other reason told
                self.reasons[p] = reason
            else:
                self.reasons.setdefault(p, reason)

    def _weight(self, layer: Any, variable: Any, axis: int, role: str, pos: np.ndarray) -> None:
        owner = self._owner(layer)  # a layer inside a composite: recorded as the composite's
        labels = self.weights.setdefault(owner.name, {})
        axes = labels.setdefault(weight_label(owner, variable), [])
        axis = axis % len(variable.shape)
        for known in axes:
            if known.axis == axis:  # a layer called twice reads the same rows both times
                self._join(known.positions, pos)
                return
        axes.append(Axis(axis, role, pos))

    # Reading the graph.
    def _read(self, model: Any, given: list | None = None) -> list[np.ndarray]:
        """Follows `model`'s graph; returns its outputs' positions. A nested model reads the
        positions `given` to it; the outermost one keeps its inputs and outputs whole."""
        model = as_functional(model)
        config = model.get_config()
        ops = {op.name: op for op in model.operations}
        shapes: dict[tuple, tuple] = {}
        nodes = []
        for entry in config["layers"]:
            for index, node in enumerate(entry["inbound_nodes"]):
                keys = []
                _tensors(node, keys, shapes)
                nodes.append((entry["name"], index, keys, node))
        outputs = config["output_layers"]
        if isinstance(outputs, dict):  # in the order of `model.outputs`
            outputs = [outputs[key] for key in keras.tree.flatten({k: k for k in outputs})]
        outputs = [outputs] if outputs and isinstance(outputs[0], str) else outputs
        for key, tensor in zip(outputs, model.outputs, strict=True):
            shapes[tuple(key)] = tuple(tensor.shape)
        tensors: dict[tuple, np.ndarray] = {}
        for key, name in _keyed(config["input_layers"]):
            if given is not None:
                tensors[(name, 0, 0)] = given[key]
                if len(given[key]):  # token ids and masks have no channels to count
                    self.counted[name] = given[key]
                continue
            shape = shapes.get((name, 0, 0)) or tuple(ops[name].output.shape)
            # Token ids and masks have no channel axis (an unknown last dimension).
            tensors[(name, 0, 0)] = self._new(int(shape[-1] or 0) if len(shape) > 1 else 0)
            self._fix(tensors[(name, 0, 0)], "model input")
        pending = list(nodes)
        while pending:
            ready = [n for n in pending if all(k in tensors for k in n[2])]
            if not ready:
                raise ValueError("The model's graph has a node whose inputs are never computed.")
            for item in ready:
                pending.remove(item)
                name, index, keys, node = item
                inputs = [(tensors[k], shapes[k]) for k in keys]
                if isinstance(ops[name], _L.MultiHeadAttention):
                    inputs = _attention_inputs(node, tensors, shapes, inputs)
                count = 1 + max([k[2] for k in shapes if k[:2] == (name, index)], default=0)
                out_shapes = [shapes.get((name, index, t)) for t in range(count)]
                self.layers[name] = ops[name]
                self._node = node
                for t, pos in enumerate(self._visit(ops[name], inputs, out_shapes)):
                    tensors[(name, index, t)] = pos
        if given is None:
            for key in outputs:
                self._fix(tensors[tuple(key)], "model output")
        return [tensors[tuple(key)] for key in outputs]

    def _visit(self, op: Any, inputs: list, out_shapes: list) -> list[np.ndarray]:
        if isinstance(op, _L.InputLayer):
            return []
        try:
            return self._follow(op, inputs, out_shapes)
        except UnsupportedLayer as error:
            # A layer that reads only channels kept anyway (a Reshape of the model's input)
            # loses nothing: its outputs are kept whole too, with no error.
            fixed = {self._find(p) for p in self.reasons}
            quiet = all(self._find(p) in fixed for pos, _ in inputs for p in pos.tolist())
            if self.unsupported == "raise" and not quiet:
                raise UnsupportedLayer(
                    f"Cannot prune channels through layer '{op.name}' of type "
                    f'{type(op).__name__}: {error}. Pass unsupported="keep" to keep the '
                    "channels it reads and writes, or leave the model as it is."
                ) from None
            if not quiet:
                self.kept.append((op.name, str(error)))
            for pos, _ in inputs:
                self._fix(pos, f"read by '{op.name}': {error}")
            outs = [self._new(int(s[-1])) if s else self._new(0) for s in out_shapes]
            for pos in outs:
                self._fix(pos, f"written by '{op.name}': {error}")
            return outs

    # Numbering the groups.
    def _number(self, selected: Callable[[Any], bool]) -> None:
        roots = np.array([self._find(p) for p in range(len(self.parent))], dtype=np.int64)
        fixed = {int(roots[p]) for p in self.reasons}
        creators: dict[int, list[str]] = {}
        for name, pos in self._creators:
            for root in roots[pos].tolist():
                creators.setdefault(root, []).append(name)
        self.group_of = np.full(len(self.parent), -1, dtype=np.int64)
        numbered: dict[int, int] = {}
        for _, pos in self._creators:
            for root in roots[pos].tolist():
                if root in numbered or root in fixed:
                    continue
                if all(selected(self.layers[n]) for n in creators[root]):
                    numbered[root] = len(numbered)
        for p in range(len(self.parent)):
            self.group_of[p] = numbered.get(int(roots[p]), -1)
        self.groups = len(numbered)
        self.kept_reasons = {}
        for p, reason in self.reasons.items():
            for name in creators.get(int(roots[p]), []):
                self.kept_reasons.setdefault(name, reason)

    def root(self, position: int) -> int:
        """The representative of the position's set: equal for positions that go together."""
        return self._find(position)

    def ids(self, positions: np.ndarray) -> np.ndarray:
        """The group of each position: a number, or -1 where the channel is kept whole."""
        return self.group_of[positions]


def _tensors(value: Any, keys: list, shapes: dict) -> None:
    """Collects the keys `(layer, node, index)` of the tensors a serialized call reads."""
    if isinstance(value, dict):
        config = value.get("config")
        if value.get("class_name") == "__keras_tensor__" and isinstance(config, dict):
            key = tuple(config["keras_history"])
            keys.append(key)
            shapes[key] = tuple(config["shape"])
            return
        for item in value.values():
            _tensors(item, keys, shapes)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _tensors(item, keys, shapes)


def _attention_inputs(node: dict, tensors: dict, shapes: dict, inputs: list) -> list:
    """A MultiHeadAttention call's (query, value, key, others...) tensors."""
    args, kwargs = list(node.get("args", ())), dict(node.get("kwargs", {}))
    named = dict(zip(("query", "value", "key"), args, strict=False))
    for name in ("query", "value", "key"):
        if name in kwargs:
            named[name] = kwargs.pop(name)
    named.setdefault("key", named["value"])

    def entry(value: Any) -> tuple:
        keys: list = []
        _tensors(value, keys, {})
        return (tensors[keys[0]], shapes[keys[0]])

    main = [entry(named[n]) for n in ("query", "key", "value")]
    others = []
    _tensors([args[3:], kwargs], others, {})
    return main + [(tensors[k], shapes[k]) for k in others]


def as_functional(model: Any) -> Any:
    """The Functional model of the same layers as a Sequential model, or as a subclass of
    Functional with a config of its own (a KerasHub backbone or task): its graph in config."""
    if isinstance(model, keras.Sequential):
        return keras.Model(model.inputs, model.outputs)
    if "layers" not in model.get_config():
        return keras.Model(model.input, model.output, name=model.name)
    return model


def input_names(model: Any) -> list[str]:
    """The names of a Sequential or Functional model's input layers, in `model.inputs` order."""
    entries = as_functional(model).get_config()["input_layers"]
    if isinstance(entries, dict):
        return [entries[key][0] for key in keras.tree.flatten({k: k for k in entries})]
    return [name for _, name in _keyed(entries)]


def _keyed(entries: Any) -> list[tuple[Any, str]]:
    """(key, name) of a model config's input layers: keys of a dict of inputs, else places."""
    if isinstance(entries, dict):
        return [(key, entry[0]) for key, entry in entries.items()]
    if entries and isinstance(entries[0], str):
        return [(0, entries[0])]
    return [(i, entry[0]) for i, entry in enumerate(entries)]
