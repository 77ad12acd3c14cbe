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


def check_number(
    name: str, value: Any, low: float, high: float | None, *, closed: bool = False
) -> float:
    """Returns `value` as a float in [low, high) (or [low, high] when `closed`), or raises.

    Args:
        name: The argument's name, for the message.
        value: What was received.
        low: The smallest accepted value.
        high: The bound above, or None for no bound (then the value must be >= `low`).
        closed: Whether `high` itself is accepted. Defaults to False.

    Raises:
        TypeError: If `value` is not a real number (a bool is not).
        ValueError: If `value` is out of range, NaN included.

    Example:

    >>> check_number("dampening", 0.01, 0.0, None)
    0.01
    >>> check_number("dampening", True, 0.0, None)
    Traceback (most recent call last):
    ...
    TypeError: Argument `dampening` must be a number >= 0. Received: dampening=True of type bool
    """
    if high is None:
        interval = f">= {low:g}"
    else:
        interval = f"in [{low:g}, {high:g}{']' if closed else ')'}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"Argument `{name}` must be a number {interval}. Received: {name}={value!r} "
            f"of type {type(value).__name__}"
        )
    value = float(value)
    if high is None:
        inside = low <= value < float("inf")
    else:
        inside = low <= value <= high if closed else low <= value < high
    if not inside:
        raise ValueError(f"Argument `{name}` must be {interval}. Received: {name}={value}")
    return value


def _shown(choices: Sequence[Any]) -> str:
    """`"a" or "b"`, or `one of "a", "b", None`: the choices as the messages name them."""
    names = [f'"{c}"' if isinstance(c, str) else repr(c) for c in choices]
    if len(names) == 2:
        return f"{names[0]} or {names[1]}"
    return "one of " + ", ".join(names)


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """Returns `value` if it is one of `choices` (compared by equality and type), or raises.

    Raises:
        TypeError: If `value` is of a type no choice has.
        ValueError: If it is none of the choices.

    Example:

    >>> check_choice("prefer", "speed", ("size", "speed"))
    'speed'
    >>> check_choice("method", "obs", ("magnitude", "wanda", "sparsegpt"))
    Traceback (most recent call last):
    ...
    ValueError: Argument `method` must be one of "magnitude", "wanda", "sparsegpt". Received: ...
    """
    shown = _shown(choices)
    if not any(type(value) is type(c) for c in choices):
        raise TypeError(
            f"Argument `{name}` must be {shown}. Received: {name}={value!r} "
            f"of type {type(value).__name__}"
        )
    if value not in choices:
        raise ValueError(f"Argument `{name}` must be {shown}. Received: {name}={value!r}")
    return value
