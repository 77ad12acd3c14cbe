"""The call signature a `PruneLowMagnitude` wrapper shows Keras: the wrapped layer's own.

Keras binds the arguments of a layer call to the layer's `call` signature (`block(seq=x)`,
`block(x, bias=t, flag=False)`), so the wrapper's `call` must take the wrapped layer's
arguments, plus `training` and `mask`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["call_like"]


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
