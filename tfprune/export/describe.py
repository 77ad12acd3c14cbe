"""What a `.tflite` file holds: per-tensor rows (shape, type, sparsity, layout, bytes) and a
split of every byte of the file into weights, sparse indices, quantization parameters, names
and graph tables."""

from __future__ import annotations

import os

import numpy as np

from tfprune.export import bytesplit, ops, verify
from tfprune.export.blocks import decode_blocks
from tfprune.export.graph import Graph, Subgraph, numpy_dtype, schema, shape_of, type_name
from tfprune.export.result import TensorRow, format_tensor_table
from tfprune.masks.magnitude import count_nonzero

_INDEX_NAMES = {"Int32Vector": "i32", "Uint16Vector": "u16", "Uint8Vector": "u8"}


def _vector_name(code: int) -> str:
    for name, value in vars(schema().SparseIndexVector).items():
        if value == code and not name.startswith("_"):
            return _INDEX_NAMES.get(name, name)
    return "?"


def _sparse_row(graph: Graph, tensor, name: str, shape: tuple[int, ...]) -> TensorRow:
    stored = len(graph.buffer_data(tensor.buffer))
    dtype = numpy_dtype(tensor.type)
    nnz = stored // (dtype.itemsize if dtype is not None else 1)
    arrays = 0
    parts = []
    for dim in tensor.sparsity.dimMetadata:
        if dim.arrayIndices is not None:
            arrays += np.asarray(dim.arrayIndices.values).nbytes
            parts.append(f"idx {_vector_name(dim.arrayIndicesType)}")
        if dim.arraySegments is not None:
            arrays += np.asarray(dim.arraySegments.values).nbytes
            parts.append(f"seg {_vector_name(dim.arraySegmentsType)}")
    size = int(np.prod(shape))
    layout = "CSR " + " ".join(parts)
    if tensor.sparsity.blockMap is not None and len(tensor.sparsity.blockMap):
        # Block-sparse filter (see blocks.py): the stored blocks may hold zeros of their own.
        width = int(tensor.sparsity.dimMetadata[-1].denseSize)
        layout = f"1x{width} blocks, {layout}"
        data = graph.buffer_data(tensor.buffer)
        nnz = int(np.count_nonzero(np.frombuffer(data.tobytes(), dtype=dtype)))
    if shape != shape_of(tensor):
        layout += f" as {list(shape_of(tensor))}"
    return TensorRow(
        name=name,
        shape=shape,
        dtype=type_name(tensor.type),
        sparsity=1.0 - nnz / size if size else 0.0,
        layout=layout,
        bytes=stored + arrays,
    )


def _expanded_shape(subgraph: Subgraph, t: int, consumers) -> tuple[int, ...]:
    """The shape kernels see for sparse tensor `t`: DENSIFY's result, followed through the
    operators that pass it on (DEQUANTIZE, a RESHAPE of a view) while they are its only reader."""
    shape = shape_of(subgraph.tensors[t])
    while True:
        uses = consumers.get(t, [])
        if len(uses) != 1:
            return shape
        entry = ops.op(subgraph.graph.op_name(uses[0].op))
        outputs = [int(v) for v in np.asarray(uses[0].op.outputs).reshape(-1)]
        if not entry.passes_value or len(outputs) != 1:
            return shape
        t = outputs[0]
        shape = shape_of(subgraph.tensors[t])


def tensor_rows(graph: Graph, notes: dict[int, str] | None = None) -> list[TensorRow]:
    """One row per constant tensor of every subgraph.

    A sparse tensor is reported under the dense shape its kernels see, with the stored view in
    its layout. A weight that stays dense for a reason (see `encode.sparsify`) says why.

    Args:
        graph: The model.
        notes: `id(tensor)` -> why that tensor stays dense. Defaults to None.
    """
    notes = notes or {}
    rows = []
    for subgraph in graph.subgraphs:
        consumers = subgraph.consumers()
        for index, tensor in enumerate(subgraph.tensors):
            data = graph.buffer_data(tensor.buffer)
            if data is None:
                continue
            name = tensor.name.decode(errors="replace") if tensor.name else f"tensor_{index}"
            if tensor.sparsity is not None:
                shape = _expanded_shape(subgraph, index, consumers)
                rows.append(_sparse_row(graph, tensor, name, shape))
                continue
            values = graph.values(tensor)
            nonzero, size = count_nonzero(values) if values is not None else (0, 0)
            layout = "dense" if id(tensor) not in notes else f"dense ({notes[id(tensor)]})"
            rows.append(
                TensorRow(
                    name=name,
                    shape=shape_of(tensor),
                    dtype=type_name(tensor.type),
                    sparsity=1.0 - nonzero / size if size else 0.0,
                    layout=layout,
                    bytes=len(data),
                )
            )
    return rows


def describe_tflite(path: str | os.PathLike) -> str:
    """Describes a `.tflite` file: its operators, every constant tensor, where its bytes go.

    Args:
        path: The `.tflite` file to read.

    Returns:
        A first line with the file size and operator count, a table with one line per constant
        tensor (name, shape, dtype, sparsity, stored layout, bytes) and a total line, and a
        last line splitting the bytes into weights, sparse indices, quantization parameters,
        names and graph tables.

    Raises:
        ValueError: If the file is missing, unreadable, not a TFLite flatbuffer, or truncated.
            The message is one line.

    Example:

    >>> import os, tempfile, keras, tfprune
    >>> model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8, name="fc")])
    >>> path = os.path.join(tempfile.mkdtemp(), "model.tflite")
    >>> _ = tfprune.export.to_tflite(model, path)
    >>> lines = describe_tflite(path).splitlines()
    >>> lines[0].startswith(path + ": ")
    True
    >>> lines[1].split()
    ['tensor', 'shape', 'dtype', 'sparsity', 'layout', 'bytes']
    >>> lines[-1].startswith("bytes: ")
    True
    >>> describe_tflite(os.path.join(tempfile.mkdtemp(), "missing.tflite"))
    Traceback (most recent call last):
    ...
    ValueError: Cannot read TFLite file: No such file or directory. Received: path=...
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as error:
        raise ValueError(
            f"Cannot read TFLite file: {error.strerror}. Received: path={os.fspath(path)!r}"
        ) from None
    graph = Graph.from_bytes(data)
    counts: dict[str, int] = {}
    for subgraph in graph.subgraphs:
        for name, _ in subgraph.walk_ops():
            counts[name] = counts.get(name, 0) + 1
    listed = ", ".join(f"{name} x{n}" for name, n in sorted(counts.items()))
    header = f"{os.fspath(path)}: {len(data):,} bytes, {sum(counts.values())} operators ({listed})"
    split = bytesplit.split(data)
    return "\n".join([header, format_tensor_table(tensor_rows(graph)), f"bytes: {split}"])


def kernel_weights(path: str | os.PathLike) -> list[tuple[str, np.ndarray]]:
    """`(name, values)` for every weight a kernel of the file's main graph reads, dense and in
    LiteRT's layout, as the interpreter expands it (sparse layouts included).

    The file is first run once in a child process, so a layout that crashes the interpreter
    raises `VerificationError` here instead of killing the caller.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    path = os.fspath(path)
    verify.smoke_test(path)
    with open(path, "rb") as f:
        graph = Graph.from_bytes(f.read())
    interpreter = Interpreter(
        model_path=path,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        experimental_preserve_all_tensors=True,
    )
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    interpreter.invoke()
    subgraph, weights = graph.subgraphs[0], []
    for position, (name, op) in enumerate(subgraph.walk_ops()):
        for parameter in ops.op(name).parameters:
            if parameter.role != "weight" or parameter.slot >= len(op.inputs):
                continue
            t = int(op.inputs[parameter.slot])
            tensor = subgraph.tensors[t]
            label = tensor.name.decode(errors="replace") if tensor.name else ""
            label = label or f"{name} #{position} input {parameter.slot}"
            values = np.array(interpreter.get_tensor(t))
            if tensor.sparsity is not None and tensor.sparsity.blockMap is not None:
                values = decode_blocks(tensor, values)  # read packed by the sparse kernel
            weights.append((label, values))
    return weights
