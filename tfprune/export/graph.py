"""One view of a parsed TFLite model: tensors, buffers, operators, who produces and reads what.

Every pass of the export works through this module: it is the only place that builds producer
and consumer maps, reads index lists, decodes constant buffers, and adds tensors, buffers and
operators. Schema numbers are never written as literals: types and operators are looked up by
their schema names (`TensorType.INT8`, `BuiltinOperator.DENSIFY`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from tfprune.export import flatbuffer

# NumPy dtypes of the schema's TensorType names (the types a constant can be decoded as).
_NUMPY_TYPES = {
    "FLOAT32": np.float32,
    "FLOAT16": np.float16,
    "FLOAT64": np.float64,
    "INT8": np.int8,
    "UINT8": np.uint8,
    "INT16": np.int16,
    "UINT16": np.uint16,
    "INT32": np.int32,
    "UINT32": np.uint32,
    "INT64": np.int64,
    "BOOL": np.bool_,
}


def schema() -> Any:
    """The generated TFLite schema module shipped with LiteRT."""
    return flatbuffer.schema()


def tensor_type(name: str) -> int:
    """The schema code of a TensorType name, e.g. `tensor_type("INT8")`."""
    return getattr(schema().TensorType, name)


def type_name(code: int) -> str:
    """The lower-case name of a TensorType code ("float32", "int8", ...)."""
    for name, value in vars(schema().TensorType).items():
        if value == code and not name.startswith("_"):
            return name.lower()
    return f"type_{code}"


def numpy_dtype(code: int) -> np.dtype | None:
    """The NumPy dtype of one stored element of a TensorType code, or None."""
    kind = _NUMPY_TYPES.get(type_name(code).upper())
    return None if kind is None else np.dtype(kind)


def ints(values: Any) -> list[int]:
    """An index list of the schema (None, a NumPy array or a list) as Python ints."""
    return [] if values is None else [int(v) for v in np.asarray(values).reshape(-1)]


def shape_of(tensor: Any) -> tuple[int, ...]:
    """A tensor's static shape (a scalar has ())."""
    return tuple(ints(tensor.shape))


@dataclasses.dataclass(frozen=True)
class Use:
    """One read of a tensor: the operator and the input slot it reads it at."""

    op: Any
    slot: int


class Graph:
    """A parsed model (`ModelT`) and the operations every pass needs on it.

    Args:
        model: The schema's `ModelT`, as `flatbuffer.read_model` returns it. The graph edits it
            in place.
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self._op_names = {
            value: name for name, value in vars(schema().BuiltinOperator).items() if name.isupper()
        }

    @classmethod
    def from_bytes(cls, data: bytes) -> Graph:
        """Parses flatbuffer bytes (see `flatbuffer.read_model` for the errors)."""
        return cls(flatbuffer.read_model(data))

    def to_bytes(self) -> bytes:
        """Serializes the model (see `flatbuffer.write_model`)."""
        return flatbuffer.write_model(self.model)

    @property
    def subgraphs(self) -> list[Subgraph]:
        return [Subgraph(self, i) for i in range(len(self.model.subgraphs))]

    def op_name(self, op: Any) -> str:
        """The builtin operator name of `op`, e.g. "FULLY_CONNECTED"."""
        code = self.model.operatorCodes[op.opcodeIndex]
        value = max(code.builtinCode, code.deprecatedBuiltinCode)
        return self._op_names.get(value, f"BUILTIN_{value}")

    def opcode(self, name: str) -> int:
        """The index of a builtin operator code, added to the model if missing."""
        value = getattr(schema().BuiltinOperator, name)
        for i, code in enumerate(self.model.operatorCodes):
            if max(code.builtinCode, code.deprecatedBuiltinCode) == value:
                return i
        code = schema().OperatorCodeT()
        code.builtinCode = value
        # Codes above 127 live only in `builtinCode`; the deprecated byte holds a placeholder.
        code.deprecatedBuiltinCode = min(value, 127)
        code.version = 1
        self.model.operatorCodes.append(code)
        return len(self.model.operatorCodes) - 1

    def buffer_data(self, index: int) -> np.ndarray | None:
        """The bytes of buffer `index` as uint8, or None when it holds none."""
        data = self.model.buffers[index].data
        if data is None or len(data) == 0:
            return None
        return np.asarray(data, dtype=np.uint8)

    def add_buffer(self, data: bytes) -> int:
        """Appends a buffer holding `data`; empty data is the shared empty buffer 0."""
        if not data:
            return 0
        buffer = schema().BufferT()
        buffer.data = np.frombuffer(data, dtype=np.uint8)
        self.model.buffers.append(buffer)
        return len(self.model.buffers) - 1

    def values(self, tensor: Any) -> np.ndarray | None:
        """A constant tensor's stored values in its dense shape, or None.

        None for tensors without data, of undecodable types, or stored sparsely.
        """
        data = self.buffer_data(tensor.buffer)
        dtype = numpy_dtype(tensor.type)
        if data is None or dtype is None or tensor.sparsity is not None:
            return None
        shape = shape_of(tensor)
        values = np.frombuffer(data.tobytes(), dtype=dtype)
        if values.size != int(np.prod(shape)):
            return None
        return values.reshape(shape)

    def new_operator(
        self, name: str, inputs: Iterable[int], outputs: Iterable[int], options: Any = None
    ) -> Any:
        """A new operator (not yet placed in a subgraph); `options` is its builtin options."""
        op = schema().OperatorT()
        op.opcodeIndex = self.opcode(name)
        op.inputs = np.asarray(list(inputs), dtype=np.int32)
        op.outputs = np.asarray(list(outputs), dtype=np.int32)
        if options is not None:
            op.builtinOptionsType = getattr(schema().BuiltinOptions, type(options).__name__[:-1])
            op.builtinOptions = options
        return op


class Subgraph:
    """One subgraph of a `Graph`: its tensors and operators, and the maps between them."""

    def __init__(self, graph: Graph, index: int) -> None:
        self.graph = graph
        self.index = index
        self.raw = graph.model.subgraphs[index]

    @property
    def tensors(self) -> list[Any]:
        return self.raw.tensors

    @property
    def operators(self) -> list[Any]:
        return list(self.raw.operators or [])

    @operators.setter
    def operators(self, ops: list[Any]) -> None:
        self.raw.operators = list(ops)

    @property
    def inputs(self) -> list[int]:
        return ints(self.raw.inputs)

    @property
    def outputs(self) -> list[int]:
        return ints(self.raw.outputs)

    @property
    def boundary(self) -> set[int]:
        """The subgraph's input and output tensors."""
        return set(self.inputs) | set(self.outputs)

    def signature_entries(self) -> list[Any]:
        """The signature defs' TensorMap entries that point into this subgraph."""
        entries = []
        for signature in self.graph.model.signatureDefs or []:
            if signature.subgraphIndex == self.index:
                entries.extend(list(signature.inputs or []) + list(signature.outputs or []))
        return entries

    def producers(self) -> dict[int, Any]:
        """Tensor index -> the operator that writes it."""
        return {t: op for op in self.operators for t in ints(op.outputs)}

    def consumers(self) -> dict[int, list[Use]]:
        """Tensor index -> every (operator, slot) that reads it, in operator order."""
        found: dict[int, list[Use]] = {}
        for op in self.operators:
            for slot, t in enumerate(ints(op.inputs)):
                if t >= 0:
                    found.setdefault(t, []).append(Use(op, slot))
        return found

    def constant(self, t: int) -> np.ndarray | None:
        """The dense values of constant tensor `t`, or None (see `Graph.values`)."""
        return self.graph.values(self.tensors[t])

    def has_data(self, t: int) -> bool:
        """Whether tensor `t` is backed by a buffer with data (a constant, dense or sparse)."""
        return self.graph.buffer_data(self.tensors[t].buffer) is not None

    def add_tensor(self, tensor: Any) -> int:
        """Appends `tensor`; returns its index."""
        self.raw.tensors.append(tensor)
        return len(self.raw.tensors) - 1

    def new_tensor(
        self, *, like: Any, shape: Iterable[int], name: str = "", buffer: int = 0
    ) -> int:
        """Appends a tensor of `like`'s type and no quantization; returns its index."""
        tensor = schema().TensorT()
        tensor.name = name.encode()
        tensor.shape = np.asarray(list(shape), dtype=np.int32)
        tensor.type = like.type
        tensor.buffer = buffer
        return self.add_tensor(tensor)

    def walk_ops(self) -> Iterator[tuple[str, Any]]:
        """(name, operator) for every operator, in execution order."""
        for op in self.operators:
            yield self.graph.op_name(op), op
