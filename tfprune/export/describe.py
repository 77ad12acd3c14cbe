"""Per-tensor description of a `.tflite` file: shapes, types, sparsity, stored layout, bytes."""

from __future__ import annotations

import os

import numpy as np

from tfprune.export import flatbuffer
from tfprune.export.result import TensorRow, format_tensor_table

_INDEX_NAMES = {1: "i32", 2: "u16", 3: "u8"}


def _sparse_row(model, tensor, name: str) -> TensorRow:
    stored = len(model.buffers[tensor.buffer].data)
    itemsize = flatbuffer.DTYPES[tensor.type].itemsize if tensor.type in flatbuffer.DTYPES else 1
    nnz = stored // itemsize
    arrays = 0
    parts = []
    for dim in tensor.sparsity.dimMetadata:
        if dim.arrayIndices is not None:
            arrays += np.asarray(dim.arrayIndices.values).nbytes
            parts.append(f"idx {_INDEX_NAMES.get(dim.arrayIndicesType, '?')}")
        if dim.arraySegments is not None:
            arrays += np.asarray(dim.arraySegments.values).nbytes
            parts.append(f"seg {_INDEX_NAMES.get(dim.arraySegmentsType, '?')}")
    shape = tuple(int(d) for d in tensor.shape)
    size = int(np.prod(shape))
    return TensorRow(
        name=name,
        shape=shape,
        dtype=flatbuffer.TYPE_NAMES.get(tensor.type, str(tensor.type)),
        sparsity=1.0 - nnz / size if size else 0.0,
        layout="CSR " + " ".join(parts),
        bytes=stored + arrays,
    )


def tensor_rows(model) -> list[TensorRow]:
    """One row per constant tensor of every subgraph of a parsed model.

    A sparse tensor stored as a flat view and reshaped back is reported under the dense shape
    that its consumers see, with the view in its layout.
    """
    rows = []
    for subgraph in model.subgraphs:
        reshaped_to = _reshape_targets(model, subgraph)
        for index, tensor in enumerate(subgraph.tensors):
            data = model.buffers[tensor.buffer].data
            if data is None or len(data) == 0:
                continue
            name = tensor.name.decode(errors="replace") if tensor.name else f"tensor_{index}"
            if tensor.sparsity is not None:
                row = _sparse_row(model, tensor, name)
                target = reshaped_to.get(index)
                if target is not None:
                    row = TensorRow(
                        row.name,
                        target,
                        row.dtype,
                        row.sparsity,
                        f"{row.layout} as {list(row.shape)}",
                        row.bytes,
                    )
                rows.append(row)
                continue
            values = flatbuffer.tensor_values(model, tensor)
            shape = tuple(int(d) for d in (tensor.shape if tensor.shape is not None else []))
            zeros = (
                0.0
                if values is None or values.size == 0
                else 1.0 - np.count_nonzero(values) / values.size
            )
            rows.append(
                TensorRow(
                    name=name,
                    shape=shape,
                    dtype=flatbuffer.TYPE_NAMES.get(tensor.type, str(tensor.type)),
                    sparsity=float(zeros),
                    layout="dense",
                    bytes=len(data),
                )
            )
    return rows


def _reshape_targets(model, subgraph) -> dict[int, tuple[int, ...]]:
    """Maps a sparse tensor that DENSIFY [-> DEQUANTIZE] -> RESHAPE restores to its shape."""
    produced_by = {}
    for op in subgraph.operators:
        for out in np.asarray(op.outputs).tolist():
            produced_by[out] = op
    targets = {}
    for op in subgraph.operators:
        if flatbuffer.opcode_name(model, op.opcodeIndex) != "RESHAPE":
            continue
        source = produced_by.get(int(op.inputs[0]))
        if source is not None and flatbuffer.opcode_name(model, source.opcodeIndex) == "DEQUANTIZE":
            source = produced_by.get(int(source.inputs[0]))
        if source is None or flatbuffer.opcode_name(model, source.opcodeIndex) != "DENSIFY":
            continue
        out = subgraph.tensors[int(op.outputs[0])]
        targets[int(source.inputs[0])] = tuple(int(d) for d in out.shape)
    return targets


def describe_tflite(path: str | os.PathLike) -> str:
    """Describes every constant tensor of a `.tflite` file as a text table.

    Args:
        path: The `.tflite` file to read.

    Returns:
        A table with one line per constant tensor (name, shape, dtype, sparsity, stored layout,
        bytes), a total line, and a first line with the file size and operator count.

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
    model = flatbuffer.read_model(data)
    counts: dict[str, int] = {}
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            name = flatbuffer.opcode_name(model, op.opcodeIndex)
            counts[name] = counts.get(name, 0) + 1
    ops = ", ".join(f"{name} x{n}" for name, n in sorted(counts.items()))
    header = f"{os.fspath(path)}: {len(data):,} bytes, {sum(counts.values())} operators ({ops})"
    return header + "\n" + format_tensor_table(tensor_rows(model))
