"""Channel groups: which channels of a model must be removed together, read from its graph.

Every channel of every tensor in a Sequential or Functional model is a position
(`tfprune.channels.positions`); the rule of each layer (`tfprune.channels.rules`) joins,
creates or keeps the positions it reads and writes: a residual `Add` joins its inputs'
channels, a `Concatenate` places its inputs' channels side by side, `Flatten` repeats each
channel once per spatial position, a depthwise convolution or a BatchNormalization keeps its
input's channels. A group is a set of joined positions that starts at the output channels of
a layer with a kernel (Dense units, Conv filters, Embedding features, recurrent units) and ends
only at the inputs of layers with kernels, which read it through kernel rows. Such a group can
be removed: masking its rows in every kernel that reads it gives exactly the model without it,
whatever lies in between (a bias, an activation, an `Add`). A group that reaches a model
output, a normalization over the features, a softmax over them, or a layer no rule knows is
kept whole.

Each weight that holds channels records, per axis, the positions it holds: "out" for the
channels a layer creates (one per channel), "in" for the rows it reads, "tie" for values that
follow a channel (biases, BatchNormalization statistics, depthwise kernels, the gate columns
of a recurrent kernel).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import keras
import numpy as np

from tfprune.channels.positions import QUIET, Positions
from tfprune.channels.rules import COUPLING, UnsupportedLayer, activation_name, rule_for
from tfprune.channels.serialized import as_functional, keyed_inputs, tensor_entries
from tfprune.models.registry import weight_label

__all__ = ["Axis", "ChannelGraph", "QUIET", "UnsupportedLayer"]


@dataclasses.dataclass
class Axis:
    """The positions one axis of a weight holds, and their role ("out", "in" or "tie")."""

    axis: int
    role: str
    positions: np.ndarray


class ChannelGraph:
    """The channel groups of a built Sequential or Functional model.

    The rules build it through `new`, `created`, `join`, `merge`, `keep`, `weight` and
    `kernel`; `tfprune.prune_channels` and `tfprune.trim` read `weights`, `ids` and `root`.

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
        self.positions = Positions()
        self.weights: dict[str, dict[str, list[Axis]]] = {}
        self.layers: dict[str, Any] = {}
        self.kept: list[tuple[str, str]] = []
        # Layers with no weights whose config names a channel count (a Reshape's target, a
        # nested model's input).
        self.counted: dict[str, np.ndarray] = {}
        # The serialized call being followed: its arguments, for the rules that read them.
        self.node: dict[str, Any] = {}
        self._host: Any = None
        self._creators: list[tuple[str, np.ndarray]] = []
        self.read(model)
        self._number(selected or (lambda layer: True))

    # What the rules call.
    def new(self, count: int) -> np.ndarray:
        """`count` new positions (the channels of a tensor no one creates, such as logits)."""
        return self.positions.new(count)

    def join(self, a: np.ndarray, b: np.ndarray) -> None:
        """Joins `a[i]` with `b[i]`: they are removed together."""
        self.positions.join(a, b)

    def keep(self, positions: np.ndarray, reason: str) -> None:
        """Keeps `positions` (and all joined to them) whole, for `reason`."""
        self.positions.keep(positions, reason)

    def created(self, layer: Any, count: int) -> np.ndarray:
        """`count` new channels that `layer` creates (removable unless something keeps them)."""
        pos = self.new(count)
        self._creators.append((self.owner(layer).name, pos))
        if activation_name(layer) in COUPLING:
            self.keep(pos, f"'{layer.name}' applies a softmax over them")
        return pos

    def weight(self, layer: Any, variable: Any, axis: int, role: str, pos: np.ndarray) -> None:
        """Records that `axis` of `variable` (a weight of `layer`) holds `pos`, as `role`."""
        owner = self.owner(layer)  # a layer inside a composite: recorded as the composite's
        labels = self.weights.setdefault(owner.name, {})
        axes = labels.setdefault(weight_label(owner, variable), [])
        axis = axis % len(variable.shape)
        for known in axes:
            if known.axis == axis:  # a layer called twice reads the same rows both times
                self.join(known.positions, pos)
                return
        axes.append(Axis(axis, role, pos))

    def kernel(self, layer, kernel, x, out, in_axis: int, out_axis: int) -> None:
        """A kernel reading `x` on `in_axis` and creating `out` on `out_axis`; its bias, if
        any, follows `out`."""
        self.weight(layer, kernel, in_axis, "in", x)
        self.weight(layer, kernel, out_axis, "out", out)
        bias = getattr(layer, "bias", None)
        if bias is not None:
            self.weight(layer, bias, 0, "tie", out)

    def merge(self, inputs: list) -> np.ndarray:
        """The channels of inputs combined channel by channel: joined, except that an input of
        one channel is broadcast (and kept)."""
        sizes = [len(pos) for pos, _ in inputs]
        full = max(sizes)
        if any(s not in (1, full) for s in sizes):
            raise UnsupportedLayer(f"its inputs have {sizes} channels")
        first = next(pos for pos in (p for p, _ in inputs) if len(pos) == full)
        for pos, _ in inputs:
            if len(pos) == full and pos is not first:
                self.join(first, pos)
            elif len(pos) == 1 and full != 1:
                self.keep(pos, "broadcast over every channel")
        return first

    @contextlib.contextmanager
    def inside(self, host: Any) -> Iterator[None]:
        """Weights and channels met inside `host` are recorded as the host's."""
        outer, self._host = self._host, host if self._host is None else self._host
        try:
            yield
        finally:
            self._host = outer

    def owner(self, layer: Any) -> Any:
        """The layer a weight of `layer` is recorded under: the outermost composite."""
        return layer if self._host is None else self._host

    def follow(self, op: Any, inputs: list, out_shapes: list) -> list[np.ndarray]:
        """The positions of `op`'s outputs, by its rule.

        Raises:
            UnsupportedLayer: If no rule knows `op`, or its rule cannot follow this call.
        """
        is_layer = isinstance(op, keras.layers.Layer)
        if is_layer and getattr(op, "data_format", "channels_last") != "channels_last":
            raise UnsupportedLayer("only channels_last layers are supported")
        rule = rule_for(op)
        if rule is not None:
            return rule.follow(self, op, inputs, out_shapes)
        if not is_layer:
            raise UnsupportedLayer(
                f"the operation {type(op).__name__} is not known to act on each channel alone"
            )
        raise UnsupportedLayer("its channels are not known to the grouping")

    # Reading the graph.
    def read(self, model: Any, given: dict | None = None) -> list[np.ndarray]:
        """Follows `model`'s graph; returns its outputs' positions. A nested model reads the
        positions `given` to its inputs; the outermost one keeps its inputs and outputs whole."""
        model = as_functional(model)
        config = model.get_config()
        ops = {op.name: op for op in model.operations}
        shapes: dict[tuple, tuple] = {}
        nodes = []
        for entry in config["layers"]:
            for index, node in enumerate(entry["inbound_nodes"]):
                entries = tensor_entries(node)
                shapes.update(entries)
                nodes.append((entry["name"], index, [key for key, _ in entries], node))
        outputs = config["output_layers"]
        if isinstance(outputs, dict):  # in the order of `model.outputs`
            outputs = [outputs[key] for key in keras.tree.flatten({k: k for k in outputs})]
        outputs = [outputs] if outputs and isinstance(outputs[0], str) else outputs
        for key, tensor in zip(outputs, model.outputs, strict=True):
            shapes[tuple(key)] = tuple(tensor.shape)
        tensors: dict[tuple, np.ndarray] = {}
        for key, name in keyed_inputs(config["input_layers"]):
            if given is not None:
                tensors[(name, 0, 0)] = given[key]
                if len(given[key]):  # token ids and masks have no channels to count
                    self.counted[name] = given[key]
                continue
            shape = shapes.get((name, 0, 0)) or tuple(ops[name].output.shape)
            # Token ids and masks have no channel axis (an unknown last dimension).
            tensors[(name, 0, 0)] = self.new(int(shape[-1] or 0) if len(shape) > 1 else 0)
            self.keep(tensors[(name, 0, 0)], "model input")
        pending = list(nodes)
        while pending:
            ready = [n for n in pending if all(k in tensors for k in n[2])]
            if not ready:
                raise ValueError("The model's graph has a node whose inputs are never computed.")
            for item in ready:
                pending.remove(item)
                self._call(ops, item, tensors, shapes)
        if given is None:
            for key in outputs:
                self.keep(tensors[tuple(key)], "model output")
        return [tensors[tuple(key)] for key in outputs]

    def _call(self, ops: dict, item: tuple, tensors: dict, shapes: dict) -> None:
        name, index, keys, node = item
        op = ops[name]
        inputs = [(tensors[k], shapes[k]) for k in keys]
        rule = rule_for(op)
        if rule is not None:
            inputs = rule.inputs(self, node, tensors, shapes, inputs)
        count = 1 + max([k[2] for k in shapes if k[:2] == (name, index)], default=0)
        out_shapes = [shapes.get((name, index, t)) for t in range(count)]
        self.layers[name] = op
        self.node = node
        for t, pos in enumerate(self._visit(op, inputs, out_shapes)):
            tensors[(name, index, t)] = pos

    def _visit(self, op: Any, inputs: list, out_shapes: list) -> list[np.ndarray]:
        if isinstance(op, keras.layers.InputLayer):
            return []
        try:
            return self.follow(op, inputs, out_shapes)
        except UnsupportedLayer as error:
            # A layer that reads only channels kept anyway (a Reshape of the model's input)
            # loses nothing: its outputs are kept whole too, with no error.
            find = self.positions.find
            fixed = {find(p) for p in self.positions.reasons}
            quiet = all(find(p) in fixed for pos, _ in inputs for p in pos.tolist())
            if self.unsupported == "raise" and not quiet:
                raise UnsupportedLayer(
                    f"Cannot prune channels through layer '{op.name}' of type "
                    f'{type(op).__name__}: {error}. Pass unsupported="keep" to keep the '
                    "channels it reads and writes, or leave the model as it is."
                ) from None
            if not quiet:
                self.kept.append((op.name, str(error)))
            for pos, _ in inputs:
                self.keep(pos, f"read by '{op.name}': {error}")
            outs = [self.new(int(s[-1])) if s else self.new(0) for s in out_shapes]
            for pos in outs:
                self.keep(pos, f"written by '{op.name}': {error}")
            return outs

    # Numbering the groups.
    def _number(self, selected: Callable[[Any], bool]) -> None:
        find = self.positions.find
        roots = np.array([find(p) for p in range(len(self.positions))], dtype=np.int64)
        fixed = {int(roots[p]) for p in self.positions.reasons}
        creators: dict[int, list[str]] = {}
        for name, pos in self._creators:
            for root in roots[pos].tolist():
                creators.setdefault(root, []).append(name)
        numbered: dict[int, int] = {}
        for _, pos in self._creators:
            for root in roots[pos].tolist():
                if root in numbered or root in fixed:
                    continue
                if all(selected(self.layers[n]) for n in creators[root]):
                    numbered[root] = len(numbered)
        self.group_of = np.array(
            [numbered.get(int(root), -1) for root in roots.tolist()], dtype=np.int64
        )
        self.groups = len(numbered)
        self.kept_reasons: dict[str, str] = {}
        for p, reason in self.positions.reasons.items():
            for name in creators.get(int(roots[p]), []):
                self.kept_reasons.setdefault(name, reason)

    def root(self, position: int) -> int:
        """The representative of the position's set: equal for positions that go together."""
        return self.positions.find(position)

    def ids(self, positions: np.ndarray) -> np.ndarray:
        """The group of each position: a number, or -1 where the channel is kept whole."""
        return self.group_of[positions]
