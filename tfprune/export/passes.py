"""The passes over a converted model, in their declared order.

Each pass edits the shared `Graph` in place. Its `after` names the passes whose results it
relies on; `check_order` proves the order keeps every such promise, and runs when the export
starts, so a reordering that breaks one fails at once rather than writing a wrong file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from tfprune.export import blocks, encode, names, tidy
from tfprune.export.graph import Graph


@dataclasses.dataclass
class Context:
    """What the passes read and record.

    Attributes:
        keras_model: The plain Keras model that was converted.
        prefer: "size" or "speed" (see `encode`).
        keep_names: Whether tensor names stay in the file.
        kept: The weights that hold zeros but stay dense, and why (filled by `encode`).
        names: (subgraph, tensor) -> the name a tensor had before `drop_names` (for reports).
    """

    keras_model: Any
    prefer: str = "size"
    keep_names: bool = False
    kept: list[encode.KeptDense] = dataclasses.field(default_factory=list)
    names: dict[tuple[int, int], bytes] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Pass:
    """One step: `run(graph, context)`, after the passes named in `after`."""

    name: str
    run: Callable[[Graph, Context], Any]
    after: tuple[str, ...] = ()
    why: str = ""


def _name(graph: Graph, context: Context) -> None:
    names.name_tensors(graph, context.keras_model)


def _encode(graph: Graph, context: Context) -> None:
    context.kept.extend(encode.sparsify(graph, context.prefer))


def _drop_names(graph: Graph, context: Context) -> None:
    for subgraph in graph.subgraphs:
        for t, tensor in enumerate(subgraph.tensors):
            if tensor.name:
                context.names[subgraph.index, t] = tensor.name
    if not context.keep_names:
        names.drop_names(graph)


PASSES = (
    Pass("name", _name, why="weights are matched to Keras variables by their dense values"),
    Pass("fold_flatten", lambda g, c: tidy.fold_flatten(g)),
    Pass(
        "block_filters",
        lambda g, c: blocks.block_filters(g, c.prefer),
        after=("name",),
        why="a block-sparse filter keeps the name of the weight it stores",
    ),
    Pass(
        "encode",
        _encode,
        after=("name", "block_filters"),
        why="the sparse tensor takes over the name of the weight it stores; filters already "
        "block-sparse are left as they are",
    ),
    Pass("drop_metadata", lambda g, c: tidy.drop_unread_metadata(g)),
    Pass(
        "share_buffers",
        lambda g, c: tidy.share_buffers(g),
        after=("encode",),
        why="encode rewrites a weight's own buffer in place",
    ),
    Pass(
        "drop_unused",
        lambda g, c: tidy.drop_unused(g),
        after=("fold_flatten", "encode", "drop_metadata", "share_buffers"),
        why="those passes leave operators, tensors and buffers unused",
    ),
    Pass(
        "drop_names",
        _drop_names,
        after=("drop_unused",),
        why="the names it records are keyed by final tensor indices",
    ),
    Pass("trim_tables", lambda g, c: tidy.trim_tables(g)),
)


def check_order(passes: tuple[Pass, ...] = PASSES) -> None:
    """Raises `RuntimeError` if a pass runs before one it relies on (or that one is absent)."""
    seen: set[str] = set()
    for step in passes:
        missing = [name for name in step.after if name not in seen]
        if missing:
            raise RuntimeError(
                f"Export pass '{step.name}' must run after {missing} ({step.why}); "
                f"the declared order is {[p.name for p in passes]}"
            )
        seen.add(step.name)


def run(graph: Graph, context: Context, passes: tuple[Pass, ...] = PASSES) -> None:
    """Runs `passes` over `graph` in order, after checking the order."""
    check_order(passes)
    for step in passes:
        step.run(graph, context)
