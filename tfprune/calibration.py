"""Calibration data for the passes that read a model's activations (`prune_one_shot`).

`batches` yields the inputs of a calibration set batch by batch, whatever form they come in;
`Recorder` hands each call's first input of chosen layers to a function while the model runs
eagerly, so the layers' inputs are read where the weights are used (inside composite layers
too), batch by batch, without keeping the activations.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["Kept", "Recorder", "batches", "is_iterator"]


class Kept:
    """Batches read from an iterator, to be read again."""

    def __init__(self, items: Iterator[Any]) -> None:
        self.items = list(items)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.items)


def is_iterator(data: Any) -> bool:
    """Whether `data` can be read only once (a generator, an iterator)."""
    try:
        return iter(data) is data
    except TypeError:
        return False


def batches(data: Any, batch_size: int) -> Iterator[Any]:
    """Yields the calibration inputs batch by batch (see `prune_one_shot`)."""

    def arrayish(x):
        return hasattr(x, "shape") and hasattr(x, "dtype")

    if (
        arrayish(data)
        or isinstance(data, dict)
        or (isinstance(data, (list, tuple)) and data and all(arrayish(x) for x in data))
    ):
        parts = data if isinstance(data, dict) else {None: data}
        if isinstance(data, (list, tuple)):
            parts = dict(enumerate(data))
        rows = {int(np.shape(x)[0]) for x in parts.values()}
        if len(rows) != 1 or 0 in rows:
            raise ValueError(
                "Argument `calibration_data` must hold at least one row, and every input the "
                f"same number of rows. Received rows: {sorted(rows)}"
            )
        total = rows.pop()
        for start in range(0, total, batch_size):
            chunk = {k: x[start : start + batch_size] for k, x in parts.items()}
            if None in chunk:
                yield chunk[None]
            else:
                yield chunk if isinstance(data, dict) else [chunk[i] for i in range(len(data))]
        return
    try:
        iterator = iter(data)
    except TypeError:
        raise TypeError(
            "Argument `calibration_data` must be an array, a list or dict of arrays, or an "
            f"iterable of batches. Received: {type(data).__name__}"
        ) from None
    seen = False
    for batch in iterator:
        seen = True
        yield batch[0] if isinstance(batch, tuple) else batch
    if not seen:
        raise ValueError("Argument `calibration_data` yielded no batch.")


class Recorder:
    """Replaces `layer.call` on the instance while active, passing each call's first input to
    `record` (as numpy) before running the layer's own call."""

    def __init__(self, layers: list[Any], record) -> None:
        self.layers, self.record = layers, record

    def __enter__(self) -> Recorder:
        self.own = [layer.__dict__.get("call") for layer in self.layers]
        for layer in self.layers:
            original = layer.call

            def call(*args, _layer=layer, _original=original, **kwargs):
                self.record(_layer, args[0] if args else next(iter(kwargs.values())))
                return _original(*args, **kwargs)

            object.__setattr__(layer, "call", call)
        return self

    def __exit__(self, *exc: Any) -> None:
        for layer, own in zip(self.layers, self.own, strict=True):
            if own is None:
                object.__delattr__(layer, "call")
            else:
                object.__setattr__(layer, "call", own)
