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

import numpy as np

from tfprune.export import ops
from tfprune.export.graph import Graph, Subgraph, ints, shape_of

# Metadata that no runtime reads: the converter's record of its own options, and the oldest
# runtime it expects (LiteRT never looks; a runtime without DENSIFY fails to load the file).
_UNREAD_METADATA = (b"CONVERSION_METADATA", b"min_runtime_version")


def _signature(tensor) -> list[int]:
    return ints(tensor.shapeSignature if tensor.shapeSignature is not None else tensor.shape)


def _quantization_key(tensor):
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return None
    return (tuple(np.asarray(q.scale).tolist()), tuple(ints(q.zeroPoint)))


def fold_flatten(graph: Graph) -> int:
    """Feeds an operator that flattens its input the tensor a flattening RESHAPE reads.

    FULLY_CONNECTED (without `keep_num_dims`) reads any input as `[size / depth, depth]`, so a
    RESHAPE to `[batch, depth]` in front of it, from a tensor whose dimensions after the batch
    multiply to `depth`, computes nothing it would not. The RESHAPE and the shape arithmetic
    that fed it are then unused and `drop_unused` removes them.

    Returns:
        How many operators now read the unflattened tensor.
    """
    folded = 0
    for subgraph in graph.subgraphs:
        readers = subgraph.consumers()
        outputs = set(subgraph.outputs)
        for name, op in subgraph.walk_ops():
            if name != "RESHAPE":
                continue
            source, result = ints(op.inputs)[0], ints(op.outputs)[0]
            uses = readers.get(result, [])
            if result in outputs or not uses:
                continue
            if not all(_flattens(subgraph, use.op, use.slot) for use in uses):
                continue
            before = _signature(subgraph.tensors[source])
            after = _signature(subgraph.tensors[result])
            if len(after) != 2 or len(before) < 2 or min(before[1:]) < 0 or after[1] < 0:
                continue
            if int(np.prod(before[1:])) != after[1]:
                continue
            if _quantization_key(subgraph.tensors[source]) != _quantization_key(
                subgraph.tensors[result]
            ):
                continue
            for use in uses:
                use.op.inputs[use.slot] = source
                folded += 1
    return folded


def _flattens(subgraph: Subgraph, op, slot: int) -> bool:
    """Whether `op` reads input `slot` as a matrix of rows, whatever that input's rank."""
    if slot != 0 or not ops.op(subgraph.graph.op_name(op)).flattens_input:
        return False
    options = op.builtinOptions
    if options is None or getattr(options, "keepNumDims", True):
        return False
    weights = subgraph.tensors[int(op.inputs[1])]
    return len(shape_of(weights)) == 2


def drop_unused(graph: Graph) -> None:
    """Removes unused shape operators, then tensors, buffers and operator codes nothing reads.

    Every index that points at a removed entry's successors is renumbered: operator inputs and
    outputs, subgraph inputs and outputs, signature defs, tensor buffers and metadata buffers.
    """
    for subgraph in graph.subgraphs:
        outputs = set(subgraph.outputs)
        while True:
            read = set(outputs)
            for op in subgraph.operators:
                read.update(ints(op.inputs))
            kept = [
                op
                for name, op in subgraph.walk_ops()
                if not ops.op(name).shape_only or any(t in read for t in ints(op.outputs))
            ]
            if len(kept) == len(subgraph.operators):
                break
            subgraph.operators = kept
        _drop_tensors(subgraph)
    _drop_buffers(graph)
    _drop_operator_codes(graph)


def _drop_tensors(subgraph: Subgraph) -> None:
    live = subgraph.boundary
    for op in subgraph.operators:
        live.update(ints(op.inputs) + ints(op.outputs) + ints(op.intermediates))
    entries = subgraph.signature_entries()
    live.update(entry.tensorIndex for entry in entries)
    live.update(i for i, t in enumerate(subgraph.tensors) if t.isVariable)
    live.discard(-1)  # an omitted optional input
    if len(live) == len(subgraph.tensors):
        return
    order = sorted(live)
    new = {old: position for position, old in enumerate(order)}
    new[-1] = -1

    def renumber(values):
        return np.asarray([new[t] for t in ints(values)], dtype=np.int32)

    for op in subgraph.operators:
        op.inputs, op.outputs = renumber(op.inputs), renumber(op.outputs)
        if op.intermediates is not None:
            op.intermediates = renumber(op.intermediates)
    subgraph.raw.inputs = renumber(subgraph.raw.inputs)
    subgraph.raw.outputs = renumber(subgraph.raw.outputs)
    for entry in entries:
        entry.tensorIndex = new[entry.tensorIndex]
    subgraph.raw.tensors = [subgraph.tensors[i] for i in order]


def _drop_buffers(graph: Graph) -> None:
    """Keeps buffer 0 (the shared empty buffer) and the buffers with data that are read."""
    model = graph.model
    read = {
        t.buffer
        for s in model.subgraphs
        for t in s.tensors
        if graph.buffer_data(t.buffer) is not None
    }
    read |= {entry.buffer for entry in model.metadata or []}
    read |= set(ints(model.metadataBuffer))
    order = [0] + sorted(read - {0})
    new = {old: position for position, old in enumerate(order)}
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            tensor.buffer = new.get(tensor.buffer, 0)
    for entry in model.metadata or []:
        entry.buffer = new[entry.buffer]
    if model.metadataBuffer is not None:
        model.metadataBuffer = [new[b] for b in ints(model.metadataBuffer)]
    model.buffers = [model.buffers[i] for i in order]


def _drop_operator_codes(graph: Graph) -> None:
    model = graph.model
    used = sorted({op.opcodeIndex for s in model.subgraphs for op in s.operators})
    new = {old: position for position, old in enumerate(used)}
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            op.opcodeIndex = new[op.opcodeIndex]
    model.operatorCodes = [model.operatorCodes[i] for i in used]


def drop_unread_metadata(graph: Graph) -> None:
    """Removes the metadata no runtime reads and the description (`drop_unused` then frees
    their buffers)."""
    model = graph.model
    model.metadata = [e for e in model.metadata or [] if e.name not in _UNREAD_METADATA] or None
    model.description = None


def share_buffers(graph: Graph) -> int:
    """Points tensors whose constant bytes are identical (zero biases, say) at one buffer.

    Returns:
        How many tensors now share a buffer they did not hold before.
    """
    first: dict[bytes, int] = {}
    shared = 0
    for subgraph in graph.subgraphs:
        for tensor in subgraph.tensors:
            data = graph.buffer_data(tensor.buffer)
            if data is None:
                continue
            key = data.tobytes()
            owner = first.setdefault(key, tensor.buffer)
            if owner != tensor.buffer:
                tensor.buffer = owner
                shared += 1
    return shared


def trim_tables(graph: Graph) -> None:
    """Drops fields that say nothing.

    Empty quantization tables go; `has_rank` goes from tensors with a shape (it only tells a
    scalar from a tensor of unknown rank, both of which have none); and a shape signature that
    equals the shape goes (the runtime then takes the shape, which is what it would say).
    """
    for subgraph in graph.subgraphs:
        for tensor in subgraph.tensors:
            q = tensor.quantization
            if q is not None and (q.scale is None or len(q.scale) == 0) and q.details is None:
                tensor.quantization = None
            if tensor.shape is not None and len(tensor.shape):
                tensor.hasRank = False
            if tensor.shapeSignature is not None and ints(tensor.shapeSignature) == ints(
                tensor.shape
            ):
                tensor.shapeSignature = None
