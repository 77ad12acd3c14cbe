"""How a `PruneLowMagnitude` wrapper presents itself to Keras: the wrapped layer's call
signature, and references Keras must not track."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["Untracked", "call_like"]


def call_like(wrapper: Any, layer: Any) -> Callable:
    """`wrapper.call` with `layer.call`'s signature, plus `training` and `mask` if it lacks them."""
    parameters = list(inspect.signature(layer.call).parameters.values())
    names = {p.name for p in parameters}
    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None)
        for name in ("training", "mask")
        if name not in names
    ]
    keywords = [p for p in parameters if p.kind is inspect.Parameter.VAR_KEYWORD]
    others = [p for p in parameters if p.kind is not inspect.Parameter.VAR_KEYWORD]

    def call(*args: Any, **kwargs: Any) -> Any:
        return type(wrapper).call(wrapper, *args, **kwargs)

    call.__signature__ = inspect.Signature(others + extra + keywords)
    return call


class Untracked:
    """References Keras must not track: the wrapped layer owns (and saves) these variables; a
    list on the wrapper would make them the wrapper's too and save them twice."""

    __slots__ = ("items",)

    def __init__(self, items: Any) -> None:
        self.items = tuple(items)
