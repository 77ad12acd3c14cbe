"""Sparse layouts for the constant weight tensors of a TFLite model.

A pruned weight is stored as a compressed-sparse-row (CSR) tensor that a DENSIFY operator expands
once, when the interpreter prepares the graph; the kernel that consumes it sees an ordinary dense
tensor. The layouts written here are all of one family, which the stock runtime (the reference
DENSIFY kernel and the XNNPACK delegate) reads:

* every dimension is DENSE except the last, which is SPARSE_CSR; the traversal order is the
  identity and there is no block map (the runtime reads a block size only from a DENSE
  dimension, so a CSR block dimension makes DENSIFY divide by zero);
* the index type is the narrowest one that holds the last dimension (uint8 up to 256,
  uint16 up to 65,536, else int32) and the segment type the narrowest one that holds the
  number of stored values;
* when the last dimension is longer than 256, the tensor may instead be stored as the view
  `[size // k, k]` of the same row-major data, with k <= 256 so that indices fit in uint8,
  and a RESHAPE after the DENSIFY restores the original shape. The stored tensor carries no
  quantization parameters (the dense result keeps them), so the view is free to cut across rows.

Each tensor gets the smallest of dense, native CSR and viewed CSR by an exact byte count of the
payload plus a fixed allowance for the extra tables, so a layout is only chosen when it pays.

That is the "size" preference. Its RESHAPE costs speed: XNNPACK expands a DENSIFY output once,
when it prepares, but treats a reshaped copy as a new weight at every invoke, and an int8 kernel
behind it runs in the slower builtin kernels. The "speed" preference writes no view: a weight
whose last dimension exceeds 256 takes wider (uint16) indices, and an int8 weight read by a
kernel stays dense, so every kernel keeps static weights and runs in XNNPACK at dense speed.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tfprune.export import flatbuffer

# Operators whose input at the given slot is a weight that may be stored sparsely. A float16
# or dynamic-range weight reaches its consumer through a DEQUANTIZE.
_WEIGHT_SLOTS = {
    "FULLY_CONNECTED": 1,
    "CONV_2D": 1,
    "DEPTHWISE_CONV_2D": 1,
    "GATHER": 0,
    "DEQUANTIZE": 0,
}
_SPARSE_TYPES = (0, 1, 9)  # float32, float16, int8
# Flatbuffer bytes a sparse tensor adds besides its arrays: the DENSIFY operator, a second
# tensor table and the sparsity tables. The view layout adds a RESHAPE with its options and
# one more tensor. Measured on converter output, rounded up.
_DENSIFY_OVERHEAD = 160
_VIEW_OVERHEAD = 200
_MAX_UINT8_DIM = 256
PREFERENCES = ("size", "speed")


@dataclasses.dataclass(frozen=True)
class Layout:
    """A CSR layout: the stored shape, index and segment widths, and its exact payload size."""

    view: tuple[int, ...]
    index_bytes: int
    segment_bytes: int
    payload: int
    reshaped: bool


def _width(limit: int) -> int:
    """Bytes of the narrowest SparseIndexVector type that holds values 0..limit."""
    if limit <= 255:
        return 1
    if limit <= 65535:
        return 2
    return 4


def _csr_layout(shape: tuple[int, ...], nnz: int, itemsize: int, reshaped: bool) -> Layout:
    last = shape[-1]
    rows = int(np.prod(shape[:-1]))
    index_bytes = _width(last - 1)
    segment_bytes = _width(nnz)
    payload = nnz * itemsize + nnz * index_bytes + (rows + 1) * segment_bytes
    return Layout(shape, index_bytes, segment_bytes, payload, reshaped)


def choose_layout(values: np.ndarray, force_view: bool, prefer: str = "size") -> Layout | None:
    """Picks the smallest layout for one stored weight, or None when dense is smallest.

    Args:
        values: The stored (possibly quantized) weight values, in their TFLite shape.
        force_view: Whether the weight must go through a RESHAPE (see `sparsify`).
        prefer: "size" (any layout) or "speed" (no RESHAPE view; a weight that would need one
            stays dense). Defaults to "size".

    Returns:
        The chosen `Layout`, or None to keep the tensor dense.
    """
    shape = tuple(values.shape)
    nnz = max(int(np.count_nonzero(values)), 1)
    itemsize = values.dtype.itemsize
    if prefer == "speed":
        if force_view:
            return None
        native = _csr_layout(shape, nnz, itemsize, reshaped=False)
        return native if native.payload + _DENSIFY_OVERHEAD < values.nbytes else None
    candidates = [] if force_view else [_csr_layout(shape, nnz, itemsize, reshaped=False)]
    # The stored tensor carries no quantization (the dense result does), so any row-major view
    # of the data is valid; the widest rows that keep uint8 indices need the fewest segments.
    k = max(d for d in range(1, min(values.size, _MAX_UINT8_DIM) + 1) if values.size % d == 0)
    for view in {(values.size // k, k), shape}:
        if view != shape or force_view:
            candidates.append(_csr_layout(view, nnz, itemsize, reshaped=True))

    def cost(layout: Layout) -> int:
        return layout.payload + _DENSIFY_OVERHEAD + (_VIEW_OVERHEAD if layout.reshaped else 0)

    best = min(candidates, key=cost)
    return best if cost(best) < values.nbytes else None


def _index_vector(values: np.ndarray, width: int):
    s = flatbuffer.schema()
    kinds = {
        1: (s.SparseIndexVector.Uint8Vector, s.Uint8VectorT, np.uint8),
        2: (s.SparseIndexVector.Uint16Vector, s.Uint16VectorT, np.uint16),
        4: (s.SparseIndexVector.Int32Vector, s.Int32VectorT, np.int32),
    }
    kind, cls, dtype = kinds[width]
    vector = cls()
    vector.values = np.asarray(values, dtype=dtype)
    return kind, vector


def _sparsity_parameters(viewed: np.ndarray, layout: Layout):
    """CSR arrays of `viewed` (already in the layout's shape) as SparsityParametersT."""
    s = flatbuffer.schema()
    rows = viewed.reshape(-1, viewed.shape[-1])
    mask = rows != 0
    if not mask.any():
        # An all-zero weight still needs one stored value: an empty buffer is not constant.
        mask[0, 0] = True
    segments = np.concatenate([[0], np.cumsum(mask.sum(axis=1))])
    indices = np.nonzero(mask)[1]
    params = s.SparsityParametersT()
    params.traversalOrder = np.arange(viewed.ndim, dtype=np.int32)
    params.dimMetadata = []
    for size in viewed.shape[:-1]:
        dense = s.DimensionMetadataT()
        dense.format = s.DimensionType.DENSE
        dense.denseSize = int(size)
        params.dimMetadata.append(dense)
    csr = s.DimensionMetadataT()
    csr.format = s.DimensionType.SPARSE_CSR
    csr.arraySegmentsType, csr.arraySegments = _index_vector(segments, layout.segment_bytes)
    csr.arrayIndicesType, csr.arrayIndices = _index_vector(indices, layout.index_bytes)
    params.dimMetadata.append(csr)
    return params, rows[mask]


def _new_tensor(template, name: str, shape, buffer: int):
    """A tensor of `template`'s type, without quantization parameters."""
    tensor = flatbuffer.schema().TensorT()
    tensor.name = name.encode()
    tensor.shape = np.asarray(shape, dtype=np.int32)
    tensor.type = template.type
    tensor.buffer = buffer
    return tensor


def _new_buffer(model, data: bytes) -> int:
    if not data:
        return 0  # buffer 0 is the schema's shared empty buffer for non-constant tensors
    buffer = flatbuffer.schema().BufferT()
    buffer.data = np.frombuffer(data, dtype=np.uint8)
    model.buffers.append(buffer)
    return len(model.buffers) - 1


def _new_operator(model, name: str, inputs, outputs):
    op = flatbuffer.schema().OperatorT()
    op.opcodeIndex = flatbuffer.opcode_index(model, name)
    op.inputs = np.asarray(inputs, dtype=np.int32)
    op.outputs = np.asarray(outputs, dtype=np.int32)
    return op


def weight_tensors(model, subgraph) -> list[int]:
    """Indices of the constant weights that only kernels with static weights consume."""
    consumers: dict[int, list[tuple[str, int]]] = {}
    for op in subgraph.operators:
        name = flatbuffer.opcode_name(model, op.opcodeIndex)
        for slot, t in enumerate(op.inputs if op.inputs is not None else []):
            consumers.setdefault(int(t), []).append((name, slot))
    boundary = set(np.asarray(subgraph.inputs).tolist()) | set(
        np.asarray(subgraph.outputs).tolist()
    )
    found = []
    for t, uses in consumers.items():
        tensor = subgraph.tensors[t]
        rank = 0 if tensor.shape is None else len(tensor.shape)
        if t in boundary or tensor.type not in _SPARSE_TYPES or rank < 2:
            continue
        if flatbuffer.tensor_values(model, tensor) is None:
            continue
        if all(_WEIGHT_SLOTS.get(op) == slot for op, slot in uses):
            found.append(t)
    return sorted(found)


def sparsify(model, prefer: str = "size") -> int:
    """Rewrites every prunable weight of `model` to its smallest layout, in place.

    Args:
        model: A `ModelT` from `flatbuffer.read_model`.
        prefer: "size" or "speed" (see the module docstring). Defaults to "size".

    Returns:
        How many tensors are now stored sparsely.
    """
    rewritten = 0
    for subgraph in model.subgraphs:
        new_ops = []
        after = {}
        for t in weight_tensors(model, subgraph):
            tensor = subgraph.tensors[t]
            values = flatbuffer.tensor_values(model, tensor)
            # XNNPACK rejects an int8 kernel whose weights come straight out of DENSIFY ("failed
            # to delegate"), and that fails the whole model; behind a RESHAPE the weights are
            # simply not static and the kernel runs in the builtin implementation.
            force_view = tensor.type == 9 and _consumed_by_kernel(model, subgraph, t)
            layout = choose_layout(values, force_view, prefer)
            if layout is None:
                continue
            params, stored = _sparsity_parameters(values.reshape(layout.view), layout)
            # The sparse tensor takes over the name and buffer; the original tensor keeps its
            # index and quantization and becomes the dense result its consumers read.
            model.buffers[tensor.buffer].data = np.frombuffer(stored.tobytes(), dtype=np.uint8)
            sparse = _new_tensor(tensor, tensor.name.decode(), layout.view, tensor.buffer)
            sparse.sparsity = params
            tensor.buffer = 0
            tensor.name = b""
            subgraph.tensors.append(sparse)
            sparse_index = len(subgraph.tensors) - 1
            if not layout.reshaped:
                new_ops.append(_new_operator(model, "DENSIFY", [sparse_index], [t]))
            else:
                subgraph.tensors.append(_new_tensor(tensor, "", layout.view, 0))
                view_index = len(subgraph.tensors) - 1
                new_ops.append(_new_operator(model, "DENSIFY", [sparse_index], [view_index]))
                dequantize = _sole_dequantize(model, subgraph, t)
                if dequantize is None:
                    new_ops.append(_reshape(model, view_index, t, tensor.shape))
                else:
                    # Dequantizing the view before restoring the shape keeps DENSIFY ->
                    # DEQUANTIZE a chain that XNNPACK expands once, at preparation; the other
                    # order would dequantize every weight at every invoke.
                    result = int(dequantize.outputs[0])
                    float_view = _new_tensor(subgraph.tensors[result], "", layout.view, 0)
                    subgraph.tensors.append(float_view)
                    dequantize.inputs = np.asarray([view_index], dtype=np.int32)
                    dequantize.outputs = np.asarray([len(subgraph.tensors) - 1], dtype=np.int32)
                    after[id(dequantize)] = _reshape(
                        model, len(subgraph.tensors) - 1, result, subgraph.tensors[result].shape
                    )
            rewritten += 1
        # The new operators read only constants, so they may all run first; a RESHAPE of a
        # dequantized view runs right after its DEQUANTIZE.
        ordered = list(new_ops)
        for op in subgraph.operators:
            ordered.append(op)
            if id(op) in after:
                ordered.append(after[id(op)])
        subgraph.operators = ordered
    return rewritten


def _reshape(model, source: int, target: int, shape):
    s = flatbuffer.schema()
    op = _new_operator(model, "RESHAPE", [source], [target])
    # The target shape travels in the options rather than as a shape tensor, which would cost
    # a tensor, a buffer and their tables.
    op.builtinOptionsType = s.BuiltinOptions.ReshapeOptions
    op.builtinOptions = s.ReshapeOptionsT()
    op.builtinOptions.newShape = [int(d) for d in shape]
    return op


def _sole_dequantize(model, subgraph, t: int):
    """The DEQUANTIZE operator that is the only reader of tensor `t`, if there is one."""
    readers = [op for op in subgraph.operators if t in np.asarray(op.inputs).tolist()]
    if len(readers) == 1 and flatbuffer.opcode_name(model, readers[0].opcodeIndex) == "DEQUANTIZE":
        return readers[0]
    return None


def _consumed_by_kernel(model, subgraph, t: int) -> bool:
    for op in subgraph.operators:
        if t in np.asarray(op.inputs).tolist():
            if flatbuffer.opcode_name(model, op.opcodeIndex) != "DEQUANTIZE":
                return True
    return False
