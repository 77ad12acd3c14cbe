"""Tidying a converted model: what the interpreter never reads comes out.

The converter's file carries more than the interpreter needs: metadata records for tooling
(CONVERSION_METADATA, min_runtime_version), a description string, and for `Flatten` a
SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE chain that only rebuilds `[batch, features]` for the
FULLY_CONNECTED behind it, which flattens its input itself. In a pruned model whose weights are
stored sparsely these are a visible share of the file. Nothing here changes a computed value:
the graph computes the same outputs through the same signature, and the signature defs (which
`get_signature_runner` reads) stay. Names are `names.py`'s business.
"""

from __future__ import annotations

import collections

import numpy as np

from tfprune.export import flatbuffer

# Metadata that no runtime reads: the converter's record of its own options, and the oldest
# runtime it expects (LiteRT never looks; a runtime without DENSIFY fails to load the file).
_UNREAD_METADATA = (b"CONVERSION_METADATA", b"min_runtime_version")
# Only operators that compute shapes or move data are ever removed as unused; an operator
# outside this list (a variable update, a call, a custom op) may act beyond its outputs.
_PURE_OPS = (
    "RESHAPE",
    "SHAPE",
    "STRIDED_SLICE",
    "PACK",
    "SLICE",
    "CONCATENATION",
    "CAST",
    "GATHER",
    "SQUEEZE",
    "EXPAND_DIMS",
)


def _indices(values) -> list[int]:
    return [] if values is None else [int(v) for v in np.asarray(values).reshape(-1)]


def _signature(tensor) -> list[int]:
    dims = tensor.shapeSignature if tensor.shapeSignature is not None else tensor.shape
    return _indices(dims)


def _same_quantization(a, b) -> bool:
    def key(tensor):
        q = tensor.quantization
        if q is None or q.scale is None or len(q.scale) == 0:
            return None
        return (tuple(np.asarray(q.scale).tolist()), tuple(_indices(q.zeroPoint)))

    return key(a) == key(b)


def fold_flatten(model) -> int:
    """Feeds FULLY_CONNECTED the tensor a flattening RESHAPE reads, instead of its output.

    FULLY_CONNECTED (without `keep_num_dims`) reads any input as `[size / depth, depth]`, so a
    RESHAPE to `[batch, depth]` in front of it, from a tensor whose dimensions after the batch
    multiply to `depth`, computes nothing it would not. The RESHAPE and the shape arithmetic
    that fed it are then unused and `drop_unused` removes them.

    Returns:
        How many operators now read the unflattened tensor.
    """
    folded = 0
    for subgraph in model.subgraphs:
        readers = collections.defaultdict(list)
        for op in subgraph.operators:
            for slot, t in enumerate(_indices(op.inputs)):
                readers[t].append((op, slot))
        boundary = set(_indices(subgraph.outputs))
        for op in subgraph.operators:
            if flatbuffer.opcode_name(model, op.opcodeIndex) != "RESHAPE":
                continue
            source, result = _indices(op.inputs)[0], _indices(op.outputs)[0]
            uses = readers.get(result, [])
            if (
                result in boundary
                or not uses
                or not all(_flattens(model, subgraph, *u) for u in uses)
            ):
                continue
            before, after = (
                _signature(subgraph.tensors[source]),
                _signature(subgraph.tensors[result]),
            )
            if len(after) != 2 or len(before) < 2 or min(before[1:]) < 0 or after[1] < 0:
                continue
            if int(np.prod(before[1:])) != after[1]:
                continue
            if not _same_quantization(subgraph.tensors[source], subgraph.tensors[result]):
                continue
            for reader, slot in uses:
                reader.inputs[slot] = source
                folded += 1
    return folded


def _flattens(model, subgraph, op, slot: int) -> bool:
    """Whether `op` reads input `slot` as a matrix of rows, whatever that input's rank."""
    if slot != 0 or flatbuffer.opcode_name(model, op.opcodeIndex) != "FULLY_CONNECTED":
        return False
    options = op.builtinOptions
    if options is None or options.keepNumDims:
        return False
    weights = subgraph.tensors[int(op.inputs[1])]
    return weights.shape is not None and len(weights.shape) == 2


def drop_unused(model) -> None:
    """Removes unused shape operators, then tensors, buffers and operator codes nothing reads.

    Every index that points at a removed entry's successors is renumbered: operator inputs and
    outputs, subgraph inputs and outputs, signature defs, tensor buffers and metadata buffers.
    """
    for index, subgraph in enumerate(model.subgraphs):
        boundary = set(_indices(subgraph.outputs))
        while True:
            read = set(boundary)
            for op in subgraph.operators:
                read.update(_indices(op.inputs))
            kept = [
                op
                for op in subgraph.operators
                if flatbuffer.opcode_name(model, op.opcodeIndex) not in _PURE_OPS
                or any(t in read for t in _indices(op.outputs))
            ]
            if len(kept) == len(subgraph.operators):
                break
            subgraph.operators = kept
        _drop_tensors(model, index, subgraph)
    _drop_buffers(model)
    _drop_operator_codes(model)


def _drop_tensors(model, index: int, subgraph) -> None:
    live = set(_indices(subgraph.inputs)) | set(_indices(subgraph.outputs))
    for op in subgraph.operators:
        live.update(_indices(op.inputs) + _indices(op.outputs) + _indices(op.intermediates))
    signatures = [s for s in model.signatureDefs or [] if s.subgraphIndex == index]
    for signature in signatures:
        live.update(m.tensorIndex for m in list(signature.inputs or []) + (signature.outputs or []))
    live.update(i for i, t in enumerate(subgraph.tensors) if t.isVariable)
    live.discard(-1)  # an omitted optional input
    if len(live) == len(subgraph.tensors):
        return
    order = sorted(live)
    new = {old: position for position, old in enumerate(order)}
    new[-1] = -1

    def renumber(values):
        return np.asarray([new[t] for t in _indices(values)], dtype=np.int32)

    for op in subgraph.operators:
        op.inputs, op.outputs = renumber(op.inputs), renumber(op.outputs)
        if op.intermediates is not None:
            op.intermediates = renumber(op.intermediates)
    subgraph.inputs, subgraph.outputs = renumber(subgraph.inputs), renumber(subgraph.outputs)
    for signature in signatures:
        for entry in list(signature.inputs or []) + (signature.outputs or []):
            entry.tensorIndex = new[entry.tensorIndex]
    subgraph.tensors = [subgraph.tensors[i] for i in order]


def _drop_buffers(model) -> None:
    """Keeps buffer 0 (the shared empty buffer) and the buffers with data that are read."""

    def has_data(i: int) -> bool:
        data = model.buffers[i].data
        return data is not None and len(data) > 0

    read = {t.buffer for s in model.subgraphs for t in s.tensors if has_data(t.buffer)}
    read |= {entry.buffer for entry in model.metadata or []}
    read |= set(_indices(model.metadataBuffer))
    order = [0] + sorted(read - {0})
    new = {old: position for position, old in enumerate(order)}
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            tensor.buffer = new.get(tensor.buffer, 0)
    for entry in model.metadata or []:
        entry.buffer = new[entry.buffer]
    if model.metadataBuffer is not None:
        model.metadataBuffer = [new[b] for b in _indices(model.metadataBuffer)]
    model.buffers = [model.buffers[i] for i in order]


def _drop_operator_codes(model) -> None:
    used = sorted({op.opcodeIndex for s in model.subgraphs for op in s.operators})
    new = {old: position for position, old in enumerate(used)}
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            op.opcodeIndex = new[op.opcodeIndex]
    model.operatorCodes = [model.operatorCodes[i] for i in used]


def drop_unread_metadata(model) -> None:
    """Removes the metadata no runtime reads and the description (`drop_unused` then frees
    their buffers)."""
    model.metadata = [e for e in model.metadata or [] if e.name not in _UNREAD_METADATA] or None
    model.description = None


def trim_tables(model) -> None:
    """Drops fields that say nothing: empty quantization tables, and `has_rank` on tensors with a
    shape (it only tells a scalar from a tensor of unknown rank, both of which have none)."""
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            q = tensor.quantization
            if q is not None and (q.scale is None or len(q.scale) == 0) and q.details is None:
                tensor.quantization = None
            if tensor.shape is not None and len(tensor.shape):
                tensor.hasRank = False


def tidy(model) -> None:
    """Applies every step above to a parsed model, in place."""
    fold_flatten(model)
    drop_unread_metadata(model)
    drop_unused(model)
    trim_tables(model)
