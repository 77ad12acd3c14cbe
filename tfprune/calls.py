"""How a `PruneLowMagnitude` wrapper presents itself to Keras: the wrapped layer's call
signature, references Keras must not track, and its mask variables."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import keras

from tfprune.registry import weight_label

__all__ = ["Untracked", "call_like", "new_mask"]


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


def new_mask(wrapper: Any, weight: Any) -> Any:
    """A bool mask of `wrapper` for `weight`, laid out like it under `keras.distribution`: a
    kernel that a `ModelParallel` LayoutMap shards gets a mask sharded the same way, with no
    layout rule for masks (Keras's optimizer does the same for its slot variables)."""
    # "kernel_mask"; in a layer made of layers "attention_query_kernel_mask", one name each.
    name = weight_label(wrapper.layer, weight).replace("/", "_") + "_mask"
    layout = getattr(weight, "_layout", None)
    if layout is None:
        return wrapper.add_weight(
            name=name,
            shape=weight.shape,
            dtype="bool",
            initializer="ones",
            trainable=False,
            autocast=False,
        )
    with keras.name_scope(wrapper.name, caller=wrapper):
        mask = keras.Variable(
            initializer="ones",
            shape=weight.shape,
            dtype="bool",
            trainable=False,
            autocast=False,
            name=name,
            layout=layout,
        )
    return mask  # tracked when the wrapper stores it in its mask list
