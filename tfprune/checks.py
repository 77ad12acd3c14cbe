"""Argument checks shared by every module: one notion of an int, a bool, a number, a choice.

Each check raises the error the house style asks for: `TypeError` for a wrong type,
`ValueError` for a value out of range, and the message names the argument and what was
received.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

__all__ = ["is_int", "check_int", "check_bool", "check_number", "check_choice"]


def is_int(value: Any) -> bool:
    """Whether `value` is an integer (Python or NumPy), bools excluded."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(
    name: str, value: Any, minimum: int | None = None, *, allow_none: bool = False
) -> int | None:
    """Returns `value` as a Python int, or raises.

    Args:
        name: The argument's name, for the message.
        value: What was received.
        minimum: The smallest accepted value, or None for no bound. Defaults to None.
        allow_none: Whether None is accepted (and returned). Defaults to False.

    Raises:
        TypeError: If `value` is not an integer (a bool is not).
        ValueError: If `value` is below `minimum`.

    Example:

    >>> check_int("frequency", 10, 1)
    10
    >>> check_int("frequency", 0, 1)
    Traceback (most recent call last):
    ...
    ValueError: Argument `frequency` must be >= 1. Received: frequency=0
    """
    if value is None and allow_none:
        return None
    if not is_int(value):
        expected = "None or an integer" if allow_none else "an integer"
        raise TypeError(
            f"Argument `{name}` must be {expected}. Received: {name}={value!r} "
            f"of type {type(value).__name__}"
        )
    if minimum is not None and value < minimum:
        raise ValueError(f"Argument `{name}` must be >= {minimum}. Received: {name}={value}")
    return int(value)


def check_bool(name: str, value: Any) -> bool:
    """Returns `value` if it is a bool, else raises `TypeError`."""
    if not isinstance(value, bool):
        raise TypeError(
            f"Argument `{name}` must be a bool. Received: {name}={value!r} "
            f"of type {type(value).__name__}"
        )
    return value


def check_number(name: str, value: Any, low: float, high: float, *, closed: bool = False) -> float:
    """Returns `value` as a float in [low, high) (or [low, high] when `closed`), or raises."""
    interval = f"[{low:g}, {high:g}{']' if closed else ')'}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"Argument `{name}` must be a number in {interval}. Received: {name}={value!r} "
            f"of type {type(value).__name__}"
        )
    value = float(value)
    if not (low <= value <= high if closed else low <= value < high):
        raise ValueError(f"Argument `{name}` must be in {interval}. Received: {name}={value}")
    return value


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """Returns `value` if it is one of `choices` (compared by equality and type), or raises.

    Raises:
        TypeError: If `value` is of a type no choice has.
        ValueError: If it is none of the choices.
    """
    shown = ", ".join(repr(c) for c in choices)
    if not any(type(value) is type(c) for c in choices):
        raise TypeError(
            f"Argument `{name}` must be one of {shown}. Received: {name}={value!r} "
            f"of type {type(value).__name__}"
        )
    if value not in choices:
        raise ValueError(f"Argument `{name}` must be one of {shown}. Received: {name}={value!r}")
    return value
