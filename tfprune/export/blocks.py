"""Block-sparse FULLY_CONNECTED filters: the kernel itself reads the sparse weights.

LiteRT has sparse FULLY_CONNECTED kernels for a filter `[out, in]` stored in blocks of one
row and `w` columns: float32 with w = 4 and int8 (symmetric) with w = 16. The filter tensor
keeps its dense shape and carries the layout: traversal order [0, 1, 2], block map [1], rows
DENSE, block columns SPARSE_CSR (one segment per row, one index per non-zero block), and the
block DENSE of size w; the buffer holds the non-zero blocks, row by row. No DENSIFY runs: the
values stay packed and the kernel skips the zero blocks at every invoke. The operator must say
version 8: XNNPACK leaves exactly such FULLY_CONNECTED nodes to the builtin kernel (an older
version would be delegated and read the packed buffer as dense).

A Keras `Dense` kernel is [in, out], so LiteRT's 1x4 and 1x16 blocks are Keras blocks (4, 1)
and (16, 1): `prune_low_magnitude(..., block_size=(4, 1))`.

Int8 filters whose input width is not a multiple of 16 (a 300-wide hidden layer) are stored with
a last block padded with zeros. The kernel multiplies every stored block with 16 input values,
so it reads up to 15 values past the end of each input row: values of the next row, or the
interpreter's arena padding, all multiplied by the zero padding, which in integer arithmetic
adds exactly nothing. Such filters are written only when the FC reads a tensor that an
operator of the graph produces (in the interpreter's arena), never a graph input that a caller
may place in a buffer of its own. Float32 filters never get a padded block: a NaN or Inf past
the row times zero is NaN.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from tfprune.export.encode import DENSIFY_OVERHEAD, choose_layout, index_vector, index_width
from tfprune.export.graph import Graph, schema, tensor_type

__all__ = ["BLOCK_WIDTHS", "block_filters", "decode_blocks"]

# The filter types LiteRT's sparse FULLY_CONNECTED kernels take, and their block widths.
BLOCK_WIDTHS = {"FLOAT32": 4, "INT8": 16}
_ACTIVATIONS = ("NONE", "RELU", "RELU_N1_TO_1", "RELU6")
_SPARSE_VERSION = 8


def _opcode_v8(graph: Graph) -> int:
    """The index of FULLY_CONNECTED at version 8, added if missing."""
    value = schema().BuiltinOperator.FULLY_CONNECTED
    for i, code in enumerate(graph.model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == value and code.version == 8:
            return i
    code = schema().OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = value
    code.version = _SPARSE_VERSION
    graph.model.operatorCodes.append(code)
    return len(graph.model.operatorCodes) - 1


def _eligible(graph: Graph, op, tensor, produced: bool) -> int | None:
    """The block width for this FC's filter, or None when the sparse kernels cannot take it.

    `produced`: whether the FC's input is the output of an operator (see the module docstring
    for why padded int8 blocks need it).
    """
    s = schema()
    kinds = {tensor_type(name): width for name, width in BLOCK_WIDTHS.items()}
    width = kinds.get(tensor.type)
    shape = [int(d) for d in tensor.shape]
    if width is None or len(shape) != 2 or tensor.sparsity is not None:
        return None
    if shape[1] % width and (tensor.type != tensor_type("INT8") or not produced):
        return None
    options = op.builtinOptions
    if options is not None:
        if options.weightsFormat != s.FullyConnectedOptionsWeightsFormat.DEFAULT:
            return None
        allowed = {getattr(s.ActivationFunctionType, a) for a in _ACTIVATIONS}
        if options.fusedActivationFunction not in allowed:
            return None
    if tensor.type == tensor_type("INT8"):
        q = tensor.quantization
        zero = np.asarray(q.zeroPoint if q is not None and q.zeroPoint is not None else [0])
        if np.any(zero != 0):
            return None  # the int8 kernel takes symmetric weights only
    return width


def encode_blocks(values: np.ndarray, width: int):
    """`(SparsityParametersT, packed values, bytes in all)` for a filter `[out, in]`; a last
    block narrower than `width` is padded with zeros."""
    s = schema()
    rows, cols = values.shape
    blocks = -(-cols // width)
    if cols % width:
        padded = np.zeros((rows, blocks * width), values.dtype)
        padded[:, :cols] = values
        values = padded
    tiles = values.reshape(rows, blocks, width)
    kept = np.any(tiles != 0, axis=2)
    if not kept.any():
        kept[0, 0] = True  # an empty buffer is not a constant: keep one block
    segments = np.concatenate([[0], np.cumsum(kept.sum(axis=1))])
    indices = np.nonzero(kept)[1]
    params = s.SparsityParametersT()
    params.traversalOrder = np.asarray([0, 1, 2], dtype=np.int32)
    params.blockMap = np.asarray([1], dtype=np.int32)
    outer, middle, inner = (s.DimensionMetadataT() for _ in range(3))
    outer.format, outer.denseSize = s.DimensionType.DENSE, rows
    middle.format = s.DimensionType.SPARSE_CSR
    segment_bytes, index_bytes = index_width(int(segments[-1])), index_width(blocks - 1)
    middle.arraySegmentsType, middle.arraySegments = index_vector(segments, segment_bytes)
    middle.arrayIndicesType, middle.arrayIndices = index_vector(indices, index_bytes)
    inner.format, inner.denseSize = s.DimensionType.DENSE, width
    params.dimMetadata = [outer, middle, inner]
    packed = tiles[kept]
    total = packed.nbytes + segments.size * segment_bytes + indices.size * index_bytes
    return params, packed, total


def decode_blocks(tensor, packed: np.ndarray) -> np.ndarray:
    """The dense `[out, in]` filter that a block-sparse tensor (as `encode_blocks` writes it,
    and as the stock converter does) holds, from its packed values."""
    meta = tensor.sparsity.dimMetadata
    rows, cols = (int(d) for d in tensor.shape)
    width = int(meta[2].denseSize)
    segments = np.asarray(meta[1].arraySegments.values, dtype=np.int64)
    indices = np.asarray(meta[1].arrayIndices.values, dtype=np.int64)
    blocks = -(-cols // width)
    tiles = np.zeros((rows, blocks, width), packed.dtype)
    row_of = np.repeat(np.arange(rows), np.diff(segments))
    tiles[row_of, indices] = packed.reshape(-1, width)[: len(indices)]
    return tiles.reshape(rows, blocks * width)[:, :cols]


def block_filters(graph: Graph, prefer: str = "size") -> list[int]:
    """Stores the filter of every FULLY_CONNECTED that LiteRT's block-sparse kernels take,
    when that is worth it: with "size", when the blocks are smaller than the other layouts
    would make the weight; with "speed", float32 filters whose blocks are at least 80% zero
    (XNNPACK's dense int8 kernels are faster than the sparse int8 one at any sparsity).

    Returns:
        The ids of the tensors rewritten.
    """
    done = []
    for subgraph in graph.subgraphs:
        owners = Counter(t.buffer for g in graph.subgraphs for t in g.tensors)
        readers = Counter(int(i) for op in subgraph.operators for i in op.inputs if i >= 0)
        produced = {int(o) for op in subgraph.operators for o in op.outputs}
        for name, op in list(subgraph.walk_ops()):
            if name != "FULLY_CONNECTED" or len(op.inputs) < 2:
                continue
            t = int(op.inputs[1])
            tensor = subgraph.tensors[t]
            if t in subgraph.boundary or owners[tensor.buffer] != 1 or readers[t] != 1:
                continue
            width = _eligible(graph, op, tensor, int(op.inputs[0]) in produced)
            values = subgraph.constant(t)
            if width is None or values is None:
                continue
            params, packed, total = encode_blocks(values, width)
            zero_blocks = 1.0 - packed.size / values.size
            if prefer == "speed":
                if tensor.type != tensor_type("FLOAT32") or zero_blocks < 0.8:
                    continue
            else:
                # What `encode` would write instead (int8 kernel weights go through a view).
                other = choose_layout(values, force_view=tensor.type == tensor_type("INT8"))
                other_bytes = values.nbytes if other is None else other.payload + DENSIFY_OVERHEAD
                if total >= min(other_bytes, values.nbytes):
                    continue
            graph.model.buffers[tensor.buffer].data = np.frombuffer(packed.tobytes(), np.uint8)
            tensor.sparsity = params
            op.opcodeIndex = _opcode_v8(graph)
            done.append(id(tensor))
    return done
