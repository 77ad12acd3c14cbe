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

from tfprune.registry import weight_label
from tfprune.walk import model_kind

__all__ = ["Axis", "ChannelGraph", "QUIET", "UnsupportedLayer", "as_functional", "input_names"]

_L = keras.layers
_CONVS = (_L.Conv1D, _L.Conv2D, _L.Conv3D)
_TRANSPOSED = (_L.Conv1DTranspose, _L.Conv2DTranspose, _L.Conv3DTranspose)
_DEPTHWISE = (_L.DepthwiseConv1D, _L.DepthwiseConv2D)
_SEPARABLE = (_L.SeparableConv1D, _L.SeparableConv2D)
_RECURRENT = {_L.LSTM: 4, _L.GRU: 3, _L.SimpleRNN: 1}
_MERGES = (_L.Add, _L.Subtract, _L.Multiply, _L.Average, _L.Maximum, _L.Minimum)
# Layers that act on each channel alone and hold no weights.
_PER_CHANNEL = tuple(
    getattr(_L, name)
    for name in (
        "ReLU LeakyReLU ELU Dropout SpatialDropout1D SpatialDropout2D SpatialDropout3D "
        "GaussianNoise GaussianDropout AlphaDropout ActivityRegularization MaxPooling1D "
        "MaxPooling2D MaxPooling3D AveragePooling1D AveragePooling2D AveragePooling3D "
        "GlobalAveragePooling1D GlobalAveragePooling2D GlobalAveragePooling3D "
        "GlobalMaxPooling1D GlobalMaxPooling2D GlobalMaxPooling3D ZeroPadding1D "
        "ZeroPadding2D ZeroPadding3D Cropping1D Cropping2D Cropping3D UpSampling1D "
        "UpSampling2D UpSampling3D Identity"
    ).split()
)
_NORMALIZING = (_L.LayerNormalization, _L.GroupNormalization, _L.UnitNormalization, _L.Softmax)
# Operations of a model's own code (`x + y`, `keras.ops.relu(x)`) that act channel by channel.
_ELEMENTWISE_OPS = frozenset(
    "Add Subtract Multiply Divide TrueDivide Maximum Minimum Negative Abs Square Sqrt Exp "
    "Relu Relu6 Sigmoid HardSigmoid Silu Swish HardSwish HardSilu Tanh Gelu Elu Selu "
    "LeakyRelu Softplus Softsign Mish".split()
)
_COUPLING = ("softmax", "log_softmax")
# Reasons that need no telling: a model's inputs and outputs are never trimmed.
QUIET = ("model input", "model output")


class UnsupportedLayer(ValueError):
    """A layer whose channels the grouping cannot follow."""


@dataclasses.dataclass
class Axis:
    """The positions one axis of a weight holds, and their role ("out", "in" or "tie")."""

    axis: int
    role: str
    positions: np.ndarray


def _activation_name(layer: Any) -> str:
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", str(activation))


def _channels_last(layer: Any) -> bool:
    return getattr(layer, "data_format", "channels_last") == "channels_last"


class ChannelGraph:
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
        labels = self.weights.setdefault(layer.name, {})
        axes = labels.setdefault(weight_label(layer, variable), [])
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
        outputs = [outputs] if outputs and isinstance(outputs[0], str) else outputs
        for key, tensor in zip(outputs, model.outputs, strict=True):
            shapes[tuple(key)] = tuple(tensor.shape)
        tensors: dict[tuple, np.ndarray] = {}
        for i, name in enumerate(_names(config["input_layers"])):
            if given is not None:
                tensors[(name, 0, 0)] = self.counted[name] = given[i][0]
                continue
            shape = shapes.get((name, 0, 0)) or tuple(ops[name].output.shape)
            tensors[(name, 0, 0)] = self._new(int(shape[-1]))
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

    def _created(self, layer: Any, count: int) -> np.ndarray:
        pos = self._new(count)
        self._creators.append((layer.name, pos))
        if _activation_name(layer) in _COUPLING:
            self._fix(pos, f"'{layer.name}' applies a softmax over them")
        return pos

    def _follow(self, op: Any, inputs: list, out_shapes: list) -> list[np.ndarray]:
        if isinstance(op, keras.Model):
            if model_kind(op) == "subclassed":
                raise UnsupportedLayer("a subclassed model has no graph to follow")
            return self._read(op, inputs)
        if not isinstance(op, _L.Layer):
            if type(op).__name__ in _ELEMENTWISE_OPS:
                return [self._merge(inputs)]
            raise UnsupportedLayer(
                f"the operation {type(op).__name__} is not known to act on each channel alone"
            )
        if not _channels_last(op):
            raise UnsupportedLayer("only channels_last layers are supported")
        x, shape = inputs[0] if inputs else (None, None)
        if isinstance(op, _L.Dense):
            out = self._created(op, int(op.kernel.shape[-1]))
            self._kernel(op, op.kernel, x, out, -2, -1)
            return [out]
        if isinstance(op, _CONVS):
            if op.groups != 1:
                raise UnsupportedLayer(f"grouped convolutions (groups={op.groups})")
            out = self._created(op, int(op.kernel.shape[-1]))
            self._kernel(op, op.kernel, x, out, -2, -1)
            return [out]
        if isinstance(op, _TRANSPOSED):
            out = self._created(op, int(op.kernel.shape[-2]))
            self._kernel(op, op.kernel, x, out, -1, -2)
            return [out]
        if isinstance(op, _DEPTHWISE):
            out = np.repeat(x, int(op.kernel.shape[-1]))
            self._weight(op, op.kernel, -2, "tie", x)
            if op.bias is not None:
                self._weight(op, op.bias, 0, "tie", out)
            return [out]
        if isinstance(op, _SEPARABLE):
            inner = np.repeat(x, int(op.depthwise_kernel.shape[-1]))
            out = self._created(op, int(op.pointwise_kernel.shape[-1]))
            self._weight(op, op.depthwise_kernel, -2, "tie", x)
            self._kernel(op, op.pointwise_kernel, inner, out, -2, -1)
            return [out]
        if isinstance(op, _L.Embedding):
            out = self._created(op, int(op.embeddings.shape[-1]))
            self._weight(op, op.embeddings, -1, "out", out)
            return [out]
        if isinstance(op, _L.MultiHeadAttention):
            return [self._attention(op, inputs)]
        if type(op) in _RECURRENT:
            return self._recurrent(op, x, _RECURRENT[type(op)], out_shapes)
        if isinstance(op, _L.BatchNormalization):
            if op.axis not in (-1, len(shape) - 1):
                raise UnsupportedLayer(f"it normalizes axis {op.axis}, not the channels")
            for variable in op.weights:
                self._weight(op, variable, 0, "tie", x)
            return [x]
        if isinstance(op, _L.Normalization):
            if tuple(op.axis) not in ((-1,), (len(shape) - 1,)):
                raise UnsupportedLayer(f"it normalizes axis {op.axis}, not the channels")
            for variable in op.weights:
                if len(variable.shape) and int(variable.shape[-1]) == len(x):
                    self._weight(op, variable, -1, "tie", x)
            return [x]
        if isinstance(op, _L.PReLU):
            if int(op.alpha.shape[-1]) == len(x):
                self._weight(op, op.alpha, -1, "tie", x)
            return [x]
        if isinstance(op, _NORMALIZING):
            self._fix(x, f"'{op.name}' ({type(op).__name__}) couples them")
            return [x]
        if isinstance(op, _L.Activation):
            if _activation_name(op) in _COUPLING:
                self._fix(x, f"'{op.name}' applies a softmax over them")
            return [x]
        if isinstance(op, _PER_CHANNEL):
            return [x]
        if isinstance(op, _L.Rescaling):
            if np.size(op.scale) != 1 or np.size(op.offset) != 1:
                raise UnsupportedLayer("it scales each channel by its own factor")
            return [x]
        if isinstance(op, _MERGES):
            return [self._merge(inputs)]
        if isinstance(op, _L.Concatenate):
            if op.axis in (-1, len(shape) - 1):
                return [np.concatenate([pos for pos, _ in inputs])]
            return [self._merge(inputs)]
        if isinstance(op, _L.Flatten):
            return [np.tile(x, int(np.prod(shape[1:-1], dtype=np.int64)))]
        if isinstance(op, (_L.Reshape, _L.Permute)):
            out = out_shapes[0]
            keeps_last = out is not None and out[-1] == shape[-1]
            if isinstance(op, _L.Permute):
                keeps_last = op.dims[-1] == len(shape) - 1
            if not keeps_last:
                raise UnsupportedLayer("it moves the channel axis")
            if isinstance(op, _L.Reshape):
                self.counted[op.name] = x
            return [x]
        raise UnsupportedLayer("its channels are not known to the grouping")

    def _kernel(self, layer, kernel, x, out, in_axis: int, out_axis: int) -> None:
        self._weight(layer, kernel, in_axis, "in", x)
        self._weight(layer, kernel, out_axis, "out", out)
        bias = getattr(layer, "bias", None)
        if bias is not None:
            self._weight(layer, bias, 0, "tie", out)

    def _merge(self, inputs: list) -> np.ndarray:
        sizes = [len(pos) for pos, _ in inputs]
        full = max(sizes)
        if any(s not in (1, full) for s in sizes):
            raise UnsupportedLayer(f"its inputs have {sizes} channels")
        first = next(pos for pos in (p for p, _ in inputs) if len(pos) == full)
        for pos, _ in inputs:
            if len(pos) == full and pos is not first:
                self._join(first, pos)
            elif len(pos) == 1 and full != 1:
                self._fix(pos, "broadcast over every channel")
        return first

    def _recurrent(self, op: Any, x: np.ndarray, gates: int, out_shapes: list) -> list:
        cell = op.cell
        units = self._created(op, int(cell.recurrent_kernel.shape[0]))
        self._weight(op, cell.kernel, 0, "in", x)
        self._weight(op, cell.kernel, 1, "tie", np.tile(units, gates))
        self._weight(op, cell.recurrent_kernel, 0, "out", units)
        self._weight(op, cell.recurrent_kernel, 1, "tie", np.tile(units, gates))
        if cell.bias is not None:
            self._weight(op, cell.bias, -1, "tie", np.tile(units, gates))
        return [units for _ in out_shapes]

    def _attention(self, op: Any, inputs: list) -> np.ndarray:
        """Heads are channels of their own: a head's query, key and value columns and its
        output rows go together. The query, key and value features are rows it reads."""
        if op.get_config().get("use_gate") or len(op.query_dense.kernel.shape) != 3:
            raise UnsupportedLayer("only ungated attention over one axis is supported")
        parts = [op.query_dense, op.key_dense, op.value_dense]
        heads = self._created(op, int(op.query_dense.kernel.shape[1]))
        for dense, (pos, _) in zip(parts, inputs[:3], strict=True):
            role = "out" if dense is op.query_dense else "tie"
            self._weight(op, dense.kernel, 0, "in", pos)
            self._weight(op, dense.kernel, 1, role, heads)
            if dense.bias is not None:
                self._weight(op, dense.bias, 0, "tie", heads)
        for pos, _ in inputs[3:]:
            self._fix(pos, f"'{op.name}' reads them as an attention mask")
        dense = op.output_dense
        out = self._created(op, int(dense.kernel.shape[-1]))
        self._weight(op, dense.kernel, 0, "tie", heads)
        self._weight(op, dense.kernel, -1, "out", out)
        if dense.bias is not None:
            self._weight(op, dense.bias, -1, "tie", out)
        return out

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
    """A Sequential model as the Functional model of the same layers (its graph in config)."""
    if isinstance(model, keras.Sequential):
        return keras.Model(model.inputs, model.outputs)
    return model


def input_names(model: Any) -> list[str]:
    """The names of a Sequential or Functional model's input layers, in input order."""
    return _names(as_functional(model).get_config()["input_layers"])


def _names(entries: Any) -> list[str]:
    if entries and isinstance(entries[0], str):
        return [entries[0]]
    return [entry[0] for entry in entries]
