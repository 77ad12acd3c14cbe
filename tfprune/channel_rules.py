"""How each kind of layer moves channels: the rules `tfprune.channels` follows a graph by.

`LayerRules` is the half of `ChannelGraph` that knows layers: for each layer or operation of a
model it joins, creates or keeps the positions of the channels it reads and writes, and
records which axes of which weights hold them. Layers it does not know raise
`UnsupportedLayer`.
"""

from __future__ import annotations

import functools
from typing import Any

import keras
import numpy as np

from tfprune.walk import model_kind

__all__ = [
    "COUPLING",
    "CONVS",
    "DEPTHWISE",
    "LayerRules",
    "RECURRENT",
    "SEPARABLE",
    "TRANSPOSED",
    "UnsupportedLayer",
    "activation_name",
]

_L = keras.layers
CONVS = (_L.Conv1D, _L.Conv2D, _L.Conv3D)
TRANSPOSED = (_L.Conv1DTranspose, _L.Conv2DTranspose, _L.Conv3DTranspose)
DEPTHWISE = (_L.DepthwiseConv1D, _L.DepthwiseConv2D)
SEPARABLE = (_L.SeparableConv1D, _L.SeparableConv2D)
RECURRENT = {_L.LSTM: 4, _L.GRU: 3, _L.SimpleRNN: 1}
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
COUPLING = ("softmax", "log_softmax")


def _given(node: dict, inputs: list) -> dict:
    """The positions a nested model's call gives each of its inputs: by key for a dict of
    inputs, else by place."""
    args = node.get("args", ())
    named = len(args) == 1 and isinstance(args[0], dict)
    if named and args[0].get("class_name") != "__keras_tensor__":  # not one tensor
        return dict(zip(args[0], (pos for pos, _ in inputs), strict=False))
    return {i: pos for i, (pos, _) in enumerate(inputs)}


@functools.cache
def _get_item_class() -> type:
    # Keras does not export the operation of `x[key]`; a model that slices a tensor holds one.
    inputs = keras.Input((2,))
    return type(keras.Model(inputs, inputs[:, 0]).operations[-1])


def _is_get_item(op: Any) -> bool:
    """Whether `op` is the operation of `x[key]` in a model's graph."""
    return isinstance(op, _get_item_class())


class UnsupportedLayer(ValueError):
    """A layer whose channels the grouping cannot follow."""


def activation_name(layer: Any) -> str:
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", str(activation))


def _channels_last(layer: Any) -> bool:
    return getattr(layer, "data_format", "channels_last") == "channels_last"


class LayerRules:
    """The per-layer rules; `ChannelGraph` supplies the positions and their bookkeeping."""

    def _created(self, layer: Any, count: int) -> np.ndarray:
        pos = self._new(count)
        self._creators.append((self._owner(layer).name, pos))
        if activation_name(layer) in COUPLING:
            self._fix(pos, f"'{layer.name}' applies a softmax over them")
        return pos

    def _follow(self, op: Any, inputs: list, out_shapes: list) -> list[np.ndarray]:
        if isinstance(op, keras.Model):
            if model_kind(op) == "subclassed":
                raise UnsupportedLayer("a subclassed model has no graph to follow")
            return self._read(op, _given(self._node, inputs))
        if not isinstance(op, _L.Layer):
            if type(op).__name__ in _ELEMENTWISE_OPS:
                return [self._merge(inputs)]
            if _is_get_item(op):
                return [self._get_item(inputs)]
            raise UnsupportedLayer(
                f"the operation {type(op).__name__} is not known to act on each channel alone"
            )
        if not _channels_last(op):
            raise UnsupportedLayer("only channels_last layers are supported")
        composite = self._composite(op, inputs, out_shapes)
        if composite is not None:
            return composite
        x, shape = inputs[0] if inputs else (None, None)
        if isinstance(op, _L.Dense):
            out = self._created(op, int(op.kernel.shape[-1]))
            self._kernel(op, op.kernel, x, out, -2, -1)
            return [out]
        if isinstance(op, CONVS):
            if op.groups != 1:
                raise UnsupportedLayer(f"grouped convolutions (groups={op.groups})")
            out = self._created(op, int(op.kernel.shape[-1]))
            self._kernel(op, op.kernel, x, out, -2, -1)
            return [out]
        if isinstance(op, TRANSPOSED):
            out = self._created(op, int(op.kernel.shape[-2]))
            self._kernel(op, op.kernel, x, out, -1, -2)
            return [out]
        if isinstance(op, DEPTHWISE):
            out = np.repeat(x, int(op.kernel.shape[-1]))
            self._weight(op, op.kernel, -2, "tie", x)
            if op.bias is not None:
                self._weight(op, op.bias, 0, "tie", out)
            return [out]
        if isinstance(op, SEPARABLE):
            inner = np.repeat(x, int(op.depthwise_kernel.shape[-1]))
            out = self._created(op, int(op.pointwise_kernel.shape[-1]))
            self._weight(op, op.depthwise_kernel, -2, "tie", x)
            self._kernel(op, op.pointwise_kernel, inner, out, -2, -1)
            return [out]
        if isinstance(op, _L.Embedding):
            return self._embedding(op, x, out_shapes)
        if isinstance(op, _L.MultiHeadAttention):
            return [self._attention(op, inputs)]
        if type(op) in RECURRENT:
            return self._recurrent(op, x, RECURRENT[type(op)], out_shapes)
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
            if activation_name(op) in COUPLING:
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
