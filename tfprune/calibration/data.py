"""Calibration data: the rows that one-shot pruning, the channel update and int8 export read.

`batches` yields the inputs of a calibration set batch by batch, whatever form they come in
(arrays, a list or dict of arrays, an iterable of batches); `replayable` keeps the batches of
an iterator that can be read only once; `check_finite` refuses NaN and Inf values by name.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["Replayable", "batches", "check_finite", "is_iterator", "replayable"]


class Replayable:
    """The batches of an iterator, kept in memory so that they can be read again."""

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


def replayable(data: Any, batch_size: int) -> Any:
    """`data` itself, or for an iterator (read only once) its batches kept in memory."""
    return Replayable(batches(data, batch_size)) if is_iterator(data) else data


def _arrays(value: Any, where: str = "") -> Iterator[tuple[str, np.ndarray]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _arrays(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _arrays(item, f"{where}[{index}]")
    elif value is not None:
        yield where, np.asarray(value)


def check_finite(name: str, value: Any) -> None:
    """Raises if `value` (an array, or a list or dict of them) holds NaN or Inf values.

    Calibrating on them gives NaN statistics: a quantized file or a refitted layer computed
    from them would be meaningless, so nothing is computed from them.

    Raises:
        ValueError: Naming the argument, the input and how many values are not finite.

    Example:

    >>> check_finite("representative_data", [np.ones((2, 3)), np.full((2, 1), np.nan)])
    Traceback (most recent call last):
    ...
    ValueError: Argument `representative_data` holds 2 NaN or Inf value(s) of 2 in [1]...
    """
    for where, array in _arrays(value):
        if not np.issubdtype(array.dtype, np.inexact):
            continue
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        if bad:
            raise ValueError(
                f"Argument `{name}` holds {bad} NaN or Inf value(s) of {array.size} in "
                f"{where or 'its array'}; calibration needs finite inputs. Received: "
                f"{name} with shape {array.shape} and dtype {array.dtype}"
            )
