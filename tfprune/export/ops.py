"""The one table of what the export knows about each TFLite operator.

For each operator: which inputs are parameters (kernel weights, biases, embedding tables), how
a Keras variable is laid out in that input, whether DENSIFY may feed it (a sparse layout), and
what the tidying passes may assume (the operator only computes shapes, it flattens its input,
or it passes a value through in another form). A new operator means one new entry here.

Sparse inputs were checked in the stock LiteRT interpreter with its default XNNPACK delegate:
a DENSIFY output is an ordinary dense tensor to the kernel that reads it. Where a layout loads
but runs wrong or not at all, the operator's `sparse` is False and the export says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

Layouts = Callable[[np.ndarray], list[np.ndarray]]


def _same(array: np.ndarray) -> list[np.ndarray]:
    return [array]


def _vector(array: np.ndarray) -> list[np.ndarray]:
    return [array] if array.ndim == 1 else []


def _fully_connected(array: np.ndarray) -> list[np.ndarray]:
    # [in, out] (Dense) or an EinsumDense kernel whose first or last axes are the inputs.
    if array.ndim < 2:
        return []
    return [array.reshape(array.shape[0], -1).T, array.reshape(-1, array.shape[-1]).T]


def _conv(array: np.ndarray) -> list[np.ndarray]:
    # Keras [h, w, in, out] (Conv1D: [w, in, out]) -> TFLite [out, h, w, in].
    if array.ndim == 3:
        array = array[None]
    return [array.transpose(3, 0, 1, 2)] if array.ndim == 4 else []


def _depthwise(array: np.ndarray) -> list[np.ndarray]:
    # Keras [h, w, channels, multiplier] (1-D: [w, channels, multiplier]) -> [1, h, w, c * m].
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4:
        return []
    h, w, channels, multiplier = array.shape
    return [array.reshape(1, h, w, channels * multiplier)]


def _transpose_conv(array: np.ndarray) -> list[np.ndarray]:
    # Keras [h, w, out, in] (Conv1DTranspose: [w, out, in]) -> TFLite [out, h, w, in].
    if array.ndim == 3:
        array = array[None]
    return [array.transpose(2, 0, 1, 3)] if array.ndim == 4 else []


def _batch_matmul(array: np.ndarray) -> list[np.ndarray]:
    # An EinsumDense kernel read as the right-hand matrix, possibly with its axes merged.
    if array.ndim < 2:
        return []
    return [array, array.reshape(array.shape[0], -1), array.reshape(-1, array.shape[-1])]


@dataclasses.dataclass(frozen=True)
class Parameter:
    """An operator input that holds a layer parameter.

    Attributes:
        slot: The input index.
        role: "weight" (a kernel or an embedding table: what pruning masks) or "bias".
        layouts: Keras variable -> the candidate arrays this input may hold for it.
        sparse: Whether a DENSIFY output may feed it (so the constant may be stored sparsely).
    """

    slot: int
    role: str
    layouts: Layouts
    sparse: bool


@dataclasses.dataclass(frozen=True)
class Op:
    """What the passes may assume about one builtin operator.

    Attributes:
        name: The schema name, e.g. "FULLY_CONNECTED".
        parameters: Its parameter inputs.
        shape_only: It only computes shapes or moves data, with no effect beyond its outputs,
            so it may be removed when nothing reads them.
        flattens_input: It reads input 0 as a matrix of rows whatever that input's rank
            (FULLY_CONNECTED without `keep_num_dims`).
        passes_value: Its output is input 0 in another form (expanded, dequantized or
            reshaped): the values a kernel reads through it are that input's.
        same_shape: It passes a value with its shape unchanged (DEQUANTIZE, DENSIFY): a
            parameter read through it is still that parameter, in the same layout.
    """

    name: str
    parameters: tuple[Parameter, ...] = ()
    shape_only: bool = False
    flattens_input: bool = False
    passes_value: bool = False
    same_shape: bool = False

    def parameter(self, slot: int) -> Parameter | None:
        """The parameter at input `slot`, or None."""
        return next((p for p in self.parameters if p.slot == slot), None)


def _kernel(slot: int, layouts: Layouts, bias_slot: int | None, sparse: bool = True):
    found = [Parameter(slot, "weight", layouts, sparse)]
    if bias_slot is not None:
        found.append(Parameter(bias_slot, "bias", _vector, False))
    return tuple(found)


_TABLE = (
    Op("FULLY_CONNECTED", _kernel(1, _fully_connected, 2), flattens_input=True),
    Op("CONV_2D", _kernel(1, _conv, 2)),
    Op("DEPTHWISE_CONV_2D", _kernel(1, _depthwise, 2)),
    Op("TRANSPOSE_CONV", _kernel(1, _transpose_conv, 3)),
    Op("CONV_3D", _kernel(1, _same, 2)),
    Op("CONV_3D_TRANSPOSE", _kernel(1, _same, 3)),
    Op("BATCH_MATMUL", _kernel(1, _batch_matmul, None)),
    Op("GATHER", (Parameter(0, "weight", _same, True),), shape_only=True),
    Op("DEQUANTIZE", passes_value=True, same_shape=True),
    Op("DENSIFY", passes_value=True, same_shape=True),
    Op("RESHAPE", shape_only=True, passes_value=True),
    Op("SHAPE", shape_only=True),
    Op("STRIDED_SLICE", shape_only=True),
    Op("PACK", shape_only=True),
    Op("SLICE", shape_only=True),
    Op("CONCATENATION", shape_only=True),
    Op("CAST", shape_only=True),
    Op("SQUEEZE", shape_only=True),
    Op("EXPAND_DIMS", shape_only=True),
)
OPS: dict[str, Op] = {op.name: op for op in _TABLE}


def op(name: str) -> Op:
    """The table entry of operator `name`; an operator not in the table has no assumptions."""
    return OPS.get(name) or Op(name)


@dataclasses.dataclass(frozen=True)
class Read:
    """Where a constant ends up: the operator that reads it (through same-shape operators).

    Attributes:
        op: The reading operator.
        name: Its schema name.
        slot: The input slot it reads at.
        parameter: The `Parameter` at that slot, or None when the slot is not a parameter.
        through: The same-shape operators (DEQUANTIZE, ...) between the constant and `op`.
    """

    op: object
    name: str
    slot: int
    parameter: Parameter | None
    through: tuple[object, ...] = ()


def constant_reads(subgraph) -> dict[int, list[Read]]:
    """Every constant of a subgraph (a tensor with data) -> where it is finally read.

    A constant read by a same-shape operator (a DEQUANTIZE of a float16 or dynamic-range
    weight) is followed to that operator's readers; a subgraph output ends a path with no read.
    """
    consumers = subgraph.consumers()
    outputs = set(subgraph.outputs)

    def follow(t: int, through: tuple) -> list[Read]:
        found = []
        for use in consumers.get(t, []):
            name = subgraph.graph.op_name(use.op)
            entry = op(name)
            results = [int(v) for v in np.asarray(use.op.outputs).reshape(-1)]
            if entry.same_shape and len(results) == 1 and results[0] not in outputs:
                found.extend(follow(results[0], (*through, use.op)))
            else:
                found.append(Read(use.op, name, use.slot, entry.parameter(use.slot), through))
        return found

    return {
        t: follow(t, ())
        for t in range(len(subgraph.tensors))
        if subgraph.has_data(t) and t in consumers
    }
