"""Allocation: how one target sparsity is shared among the weights pruned together.

- "layer": every weight (or, for channels, every layer) reaches the target on its own.
- "global": one ranking across all of them, so that their total reaches the target and each
  gets its own share (magnitudes compared directly; channel scores scaled per layer).
"""

from __future__ import annotations

from typing import Any

from tfprune.utils.checks import check_choice

__all__ = ["ALLOCATIONS", "check_allocation"]

ALLOCATIONS = ("layer", "global")


def check_allocation(allocation: Any) -> str:
    """Returns `allocation` if it is one of `ALLOCATIONS`, or raises.

    Raises:
        TypeError: If `allocation` is not a string.
        ValueError: If it names no allocation.

    Example:

    >>> check_allocation("global")
    'global'
    >>> check_allocation("model")
    Traceback (most recent call last):
    ...
    ValueError: Argument `allocation` must be "layer" or "global". Received: allocation='model'
    """
    return check_choice("allocation", allocation, ALLOCATIONS)
