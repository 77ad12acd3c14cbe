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
from collections import Counter

import numpy as np

from tfprune.export import ops
from tfprune.export.graph import Graph, Subgraph, schema, tensor_type

# The element types DENSIFY expands.
_SPARSE_TYPES = ("FLOAT32", "FLOAT16", "INT8")
# Flatbuffer bytes a sparse tensor adds besides its arrays: the DENSIFY operator, a second
# tensor table and the sparsity tables. The view layout adds a RESHAPE with its options and
# one more tensor. Measured on converter output, rounded up.
DENSIFY_OVERHEAD = 160
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


def index_width(limit: int) -> int:
    """Bytes of the narrowest SparseIndexVector type that holds values 0..limit."""
    if limit <= 255:
        return 1
    if limit <= 65535:
        return 2
    return 4


def _csr_layout(shape: tuple[int, ...], nnz: int, itemsize: int, reshaped: bool) -> Layout:
    last = shape[-1]
    rows = int(np.prod(shape[:-1]))
    index_bytes = index_width(last - 1)
    segment_bytes = index_width(nnz)
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
        return native if native.payload + DENSIFY_OVERHEAD < values.nbytes else None
    candidates = [] if force_view else [_csr_layout(shape, nnz, itemsize, reshaped=False)]
    # The stored tensor carries no quantization (the dense result does), so any row-major view
    # of the data is valid; the widest rows that keep uint8 indices need the fewest segments.
    k = max(d for d in range(1, min(values.size, _MAX_UINT8_DIM) + 1) if values.size % d == 0)
    for view in {(values.size // k, k), shape}:
        if view != shape or force_view:
            candidates.append(_csr_layout(view, nnz, itemsize, reshaped=True))

    def cost(layout: Layout) -> int:
        return layout.payload + DENSIFY_OVERHEAD + (_VIEW_OVERHEAD if layout.reshaped else 0)

    best = min(candidates, key=cost)
    return best if cost(best) < values.nbytes else None


def index_vector(values: np.ndarray, width: int):
    s = schema()
    kinds = {
        1: (s.SparseIndexVector.Uint8Vector, s.Uint8VectorT, np.uint8),
        2: (s.SparseIndexVector.Uint16Vector, s.Uint16VectorT, np.uint16),
        4: (s.SparseIndexVector.Int32Vector, s.Int32VectorT, np.int32),
    }
    kind, cls, dtype = kinds[width]
    vector = cls()
    vector.values = np.asarray(values, dtype=dtype)
    return kind, vector


def csr(viewed: np.ndarray, layout: Layout):
    """The CSR arrays of `viewed` (already in the layout's shape).

    Returns:
        `(SparsityParametersT, stored values)`: every dimension but the last DENSE, the last
        SPARSE_CSR with the layout's index and segment widths.
    """
    s = schema()
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
    last = s.DimensionMetadataT()
    last.format = s.DimensionType.SPARSE_CSR
    last.arraySegmentsType, last.arraySegments = index_vector(segments, layout.segment_bytes)
    last.arrayIndicesType, last.arrayIndices = index_vector(indices, layout.index_bytes)
    params.dimMetadata.append(last)
    return params, rows[mask]


@dataclasses.dataclass(frozen=True)
class KeptDense:
    """A weight that holds enough zeros for a sparse layout but stays dense.

    Attributes:
        tensor: The schema's tensor object (it keeps its identity when tensors are renumbered).
        label: Its name, or its shape when it has none.
        reason: Why, in a few words.
        chosen: True when it is the caller's choice (`prefer="speed"`), False when an operator
            that reads the weight cannot take a sparse one.
    """

    tensor: object
    label: str
    reason: str
    chosen: bool


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A constant weight that a sparse layout may hold.

    Attributes:
        tensor: Its index.
        kernel_reads: Whether a kernel reads it directly (not through a DEQUANTIZE).
        dequantize: The DEQUANTIZE through which every kernel reads it, if there is one.
    """

    tensor: int
    kernel_reads: bool
    dequantize: object | None


def candidates(subgraph: Subgraph) -> tuple[list[Candidate], dict[int, str]]:
    """The weights that may be stored sparsely, and why other weights may not.

    A constant qualifies when it is a float32, float16 or int8 tensor of rank 2 or more, not a
    subgraph input or output, and every operator that finally reads it reads it as a weight
    that DENSIFY may feed (see `ops.py`).

    Returns:
        The qualifying constants, and for the other constants of rank 2 or more that the
        operators reading them keep dense, tensor index -> a one-line reason.
    """
    sparse_types = {tensor_type(name) for name in _SPARSE_TYPES}
    boundary = subgraph.boundary
    # The sparse tensor takes over the weight's buffer, so the buffer must be the weight's own.
    owners = Counter(t.buffer for g in subgraph.graph.subgraphs for t in g.tensors)
    found, refused = [], {}
    for t, reads in ops.constant_reads(subgraph).items():
        tensor = subgraph.tensors[t]
        if t in boundary or tensor.type not in sparse_types or len(tensor.shape) < 2:
            continue
        if owners[tensor.buffer] != 1:
            continue
        if subgraph.constant(t) is None:
            continue
        weights = [r for r in reads if r.parameter is not None and r.parameter.role == "weight"]
        others = sorted({f"{r.name} input {r.slot}" for r in reads if r not in weights})
        if others:
            refused[t] = f"read as {', '.join(others)}, which takes dense constants only"
            continue
        blocked = sorted({r.name for r in weights if not r.parameter.sparse})
        if blocked:
            refused[t] = f"{'/'.join(blocked)} cannot read a DENSIFY output"
            continue
        through = {id(op): op for r in reads for op in r.through}
        direct = any(not r.through for r in reads)
        dequantize = next(iter(through.values())) if len(through) == 1 and not direct else None
        found.append(Candidate(t, direct, dequantize))
    return found, refused


def sparsify(graph: Graph, prefer: str = "size") -> list[KeptDense]:
    """Rewrites every prunable weight of the model to its smallest layout, in place.

    The sparse tensor takes over the weight's name and buffer; the original tensor keeps its
    index and quantization and becomes the dense result that DENSIFY writes, so the operators
    that read it are untouched.

    Args:
        graph: The converter's model (after naming).
        prefer: "size" or "speed" (see the module docstring). Defaults to "size".

    Returns:
        The weights that stay dense although their zeros would make a sparse layout smaller,
        with the reason: an operator that reads them cannot take one, or (with "speed") an
        int8 kernel keeps static weights.
    """
    kept = []
    for subgraph in graph.subgraphs:
        new_ops, after = [], {}
        found, refused = candidates(subgraph)
        for t, reason in refused.items():
            if choose_layout(subgraph.constant(t), force_view=False) is not None:
                kept.append(
                    KeptDense(subgraph.tensors[t], _label(subgraph, t), reason, chosen=False)
                )
        for candidate in found:
            t = candidate.tensor
            tensor = subgraph.tensors[t]
            values = subgraph.constant(t)
            # XNNPACK rejects an int8 kernel whose weights come straight out of DENSIFY ("failed
            # to delegate"), and that fails the whole model; behind a RESHAPE the weights are
            # simply not static and the kernel runs in the builtin implementation.
            force_view = tensor.type == tensor_type("INT8") and candidate.kernel_reads
            layout = choose_layout(values, force_view, prefer)
            if layout is None:
                if force_view and prefer == "speed" and choose_layout(values, False) is not None:
                    reason = "int8 kernel weights stay dense for speed"
                    kept.append(KeptDense(tensor, _label(subgraph, t), reason, chosen=True))
                continue
            params, stored = csr(values.reshape(layout.view), layout)
            graph.model.buffers[tensor.buffer].data = np.frombuffer(stored.tobytes(), np.uint8)
            sparse = subgraph.new_tensor(like=tensor, shape=layout.view, buffer=tensor.buffer)
            subgraph.tensors[sparse].name = tensor.name
            subgraph.tensors[sparse].sparsity = params
            tensor.buffer = 0
            tensor.name = b""
            if not layout.reshaped:
                new_ops.append(graph.new_operator("DENSIFY", [sparse], [t]))
            elif candidate.dequantize is None:
                view = subgraph.new_tensor(like=tensor, shape=layout.view)
                new_ops.append(graph.new_operator("DENSIFY", [sparse], [view]))
                new_ops.append(_reshape(graph, view, t, tensor.shape))
            else:
                # Dequantizing the view before restoring the shape keeps DENSIFY ->
                # DEQUANTIZE a chain that XNNPACK expands once, at preparation; the other
                # order would dequantize every weight at every invoke.
                dequantize = candidate.dequantize
                result = int(dequantize.outputs[0])
                view = subgraph.new_tensor(like=tensor, shape=layout.view)
                new_ops.append(graph.new_operator("DENSIFY", [sparse], [view]))
                float_view = subgraph.new_tensor(like=subgraph.tensors[result], shape=layout.view)
                dequantize.inputs = np.asarray([view], dtype=np.int32)
                dequantize.outputs = np.asarray([float_view], dtype=np.int32)
                after[id(dequantize)] = _reshape(
                    graph, float_view, result, subgraph.tensors[result].shape
                )
        # The new operators read only constants, so they may all run first; a RESHAPE of a
        # dequantized view runs right after its DEQUANTIZE.
        ordered = list(new_ops)
        for op in subgraph.operators:
            ordered.append(op)
            if id(op) in after:
                ordered.append(after[id(op)])
        subgraph.operators = ordered
    return kept


def _label(subgraph: Subgraph, t: int) -> str:
    tensor = subgraph.tensors[t]
    if tensor.name:
        return tensor.name.decode(errors="replace")
    return "a " + "x".join(str(int(d)) for d in tensor.shape) + " constant"


def _reshape(graph: Graph, source: int, target: int, shape):
    options = schema().ReshapeOptionsT()
    # The target shape travels in the options rather than as a shape tensor, which would cost
    # a tensor, a buffer and their tables.
    options.newShape = [int(d) for d in shape]
    return graph.new_operator("RESHAPE", [source], [target], options)
