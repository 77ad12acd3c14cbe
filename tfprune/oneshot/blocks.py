"""Feeding the calibration data to the layers being pruned: the whole model, or one block.

A one-shot method reads the inputs of the layers it prunes while the calibration data run
through the model. Run through the whole model for every pruned layer, the time grows with the
square of the depth. `BlockChain` runs it once instead: when the model is a chain of blocks
(a KerasHub backbone's transformer layers, a Sequential model's layers) where each block's
first input is the previous block's output and its other inputs (masks, positions) are the
same as the previous block's, the first block's inputs are kept for every calibration batch,
and each block is then run on its own: once to record the inputs of all its weights, and,
once pruned, once more to give the next block its inputs (the order SparseGPT and Wanda use).

A "feed" is a function of no argument that runs every calibration batch through the part of
the model that holds the layers being recorded (`Recorder` reads their inputs meanwhile).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

from tfprune.calibration.data import batches
from tfprune.calibration.recorder import CallTap
from tfprune.models.walk import children, walk

__all__ = ["BlockChain", "model_feed"]

Feed = Callable[[], None]


def model_feed(model: Any, data: Any, batch_size: int) -> Feed:
    """A feed that runs every calibration batch through the whole model."""

    def feed() -> None:
        for batch in batches(data, batch_size):
            model(batch, training=False)

    return feed


class _Stop(Exception):
    """Ends a forward pass once the first block's inputs are read."""


class _Tap(CallTap):
    """Hands `(layer, args, kwargs, output)` of each call of `layers` to `seen` while active;
    `stop_at` ends the pass at that layer's first call."""

    def __init__(self, layers: list[Any], seen, stop_at: Any = None) -> None:
        super().__init__(layers)
        self.seen, self.stop_at = seen, stop_at

    def wrap(self, layer: Any, original: Any) -> Any:
        def call(*args, **kwargs):
            if layer is self.stop_at:
                self.seen(layer, args, kwargs, None)
                raise _Stop
            out = original(*args, **kwargs)
            self.seen(layer, args, kwargs, out)
            return out

        return call


def _same(a: Any, b: Any) -> bool:
    """Whether two call arguments are the same: the same object, or equal plain values."""
    if a is b:
        return True
    plain = (bool, int, float, str, type(None))
    return isinstance(a, plain) and isinstance(b, plain) and type(a) is type(b) and a == b


class BlockChain:
    """The model as a chain of blocks, each holding some of the layers to record.

    `BlockChain.of(model, data, batch_size, sources)` returns None when the model is not such
    a chain (then the whole model is fed for every layer). Otherwise `blocks` lists, in call
    order, `(block, sources in it)`; `feed()` runs the calibration data through the current
    block only, and `advance()` moves on to the next block, its inputs computed by the
    current block as it now is (pruned).
    """

    def __init__(self, blocks: list[tuple[Any, list[Any]]], first_inputs: Callable) -> None:
        self.blocks, self.first_inputs = blocks, first_inputs
        self.inputs: list[Any] = []
        self.index = 0

    def start(self) -> None:
        """Reads the first block's inputs for every calibration batch (the model as it is
        now: call it once the layers before the first block are pruned)."""
        self.inputs, self.index = self.first_inputs(), 0

    @property
    def block(self) -> Any:
        return self.blocks[self.index][0]

    def feed(self) -> None:
        for args, kwargs in self.inputs:
            self.block(*args, **kwargs)

    def advance(self) -> None:
        """Runs the current block on its inputs to give the next block its inputs."""
        block = self.block
        self.inputs = [
            _replace(args, kwargs, block(*args, **kwargs)) for args, kwargs in self.inputs
        ]
        self.index += 1

    @classmethod
    def of(cls, model: Any, data: Any, batch_size: int, sources: list[Any]) -> BlockChain | None:
        """The chain of the blocks holding `sources` (layers, in call order), or None."""
        if not sources:
            return None
        grouped = _blocks(model, sources)
        if grouped is None:
            return None
        blocks = [block for block, _ in grouped]
        calls: list[tuple[Any, tuple, dict, Any]] = []
        first = next(batches(data, 1))  # one row (or batch) shows the structure
        with _Tap(blocks, lambda *call: calls.append(call)):
            model(first, training=False)
        # Each block once, in the sources' order, each taking the previous one's output.
        if [id(c[0]) for c in calls] != [id(b) for b in blocks]:
            return None
        for (_, args, kwargs, out), (_, next_args, next_kwargs, _) in zip(
            calls, calls[1:], strict=False
        ):
            if not _chained(args, kwargs, out, next_args, next_kwargs):
                return None
        return cls(grouped, lambda: _first_inputs(model, data, batch_size, blocks[0]))


def _first_inputs(model: Any, data: Any, batch_size: int, block: Any) -> list[Any]:
    """The `(args, kwargs)` of `block`'s call for every calibration batch, each forward pass
    stopped there."""
    inputs: list[Any] = []
    with _Tap([block], lambda _, args, kwargs, __: inputs.append((args, kwargs)), block):
        for batch in batches(data, batch_size):
            try:
                model(batch, training=False)
            except _Stop:
                pass
    return inputs


def _main(args: tuple, kwargs: dict) -> Any:
    """Where a call takes its main input: its first positional argument, else its first
    keyword argument (as `Recorder` reads it)."""
    return 0 if args else next(iter(kwargs), None)


def _replace(args: tuple, kwargs: dict, value: Any) -> tuple[tuple, dict]:
    """The call's arguments with its main input replaced by `value`."""
    slot = _main(args, kwargs)
    if slot == 0:
        return (value, *args[1:]), kwargs
    return args, {**kwargs, slot: value}


def _chained(args, kwargs, out, next_args, next_kwargs) -> bool:
    """Whether the next call takes `out` as its main input and the rest as this call does."""
    slot = _main(args, kwargs)
    if slot is None or slot != _main(next_args, next_kwargs) or not keras.ops.is_tensor(out):
        return False
    if len(args) != len(next_args) or set(kwargs) != set(next_kwargs):
        return False
    expected_args, expected_kwargs = _replace(args, kwargs, out)
    return all(_same(a, b) for a, b in zip(expected_args, next_args, strict=True)) and all(
        _same(expected_kwargs[k], next_kwargs[k]) for k in kwargs
    )


def _blocks(model: Any, sources: list[Any]) -> list[tuple[Any, list[Any]]] | None:
    """The children of the model (or of the one nested model that holds every source) that
    hold the sources, in the sources' order, or None when a source is not inside one."""
    container = model
    while True:
        holding = [c for c in children(container) if _holds(c, sources)]
        if len(holding) == 1 and isinstance(holding[0], keras.Model):
            container = holding[0]
            continue
        break
    inside = {id(c): [id(layer) for layer in walk(c)] for c in holding}
    grouped: list[tuple[Any, list[Any]]] = []
    for source in sources:
        owner = next((c for c in holding if id(source) in inside[id(c)]), None)
        if owner is None or owner is container:
            return None
        if grouped and grouped[-1][0] is owner:
            grouped[-1][1].append(source)
        elif any(block is owner for block, _ in grouped):
            return None  # a block whose sources are called apart
        else:
            grouped.append((owner, [source]))
    return grouped


def _holds(layer: Any, sources: list[Any]) -> bool:
    ids = {id(layer) for layer in walk(layer)}
    return any(id(s) in ids for s in sources)
