"""Finding a model's pruning wrappers, nested models and layers made of layers included."""

from __future__ import annotations

from typing import Any

from tfprune.core.wrapper import PruneLowMagnitude
from tfprune.models.walk import walk

__all__ = ["pruning_wrappers", "is_pruned"]


def _outside_wrappers(layer: Any) -> bool:
    return not isinstance(layer, PruneLowMagnitude)


def pruning_wrappers(model: Any) -> list[PruneLowMagnitude]:
    """Returns every `PruneLowMagnitude` layer of `model`, nested models included, in order.

    Example:

    >>> import keras, tfprune
    >>> model = tfprune.prune_low_magnitude(
    ...     keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="d")]))
    >>> [w.name for w in pruning_wrappers(model)]
    ['prune_low_magnitude_d']
    """
    return [
        layer
        for layer in walk(model, into=_outside_wrappers)
        if isinstance(layer, PruneLowMagnitude)
    ]


def is_pruned(model: Any) -> bool:
    """Returns whether `model` (or layer) holds at least one `PruneLowMagnitude` wrapper."""
    return bool(pruning_wrappers(model))
