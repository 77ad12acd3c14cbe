"""What a wrapper prunes: one `Target` per pruned weight, with its mask variable.

A `Target` is the public face of a wrapper's state: the mask rules, the update groups, one-shot
pruning and the reports read and write masks through it, never through the wrapper's own
attributes. Mask variables are made here too, laid out like their weights.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
import numpy as np
from keras import ops

from tfprune.models.registry import weight_label

__all__ = ["Target", "Untracked", "new_mask"]


@dataclasses.dataclass(frozen=True, eq=False)
class Target:
    """One weight a wrapper prunes.

    Attributes:
        layer: The wrapped layer (the weight may belong to a layer inside it).
        weight: The `keras.Variable` pruned.
        mask: Its boolean mask variable, of the same shape (True = kept).
        label: The weight's path inside `layer` ("kernel", "attention/query/kernel").
        layout: What the wrapper's mask rule knows of the weight's entries (see
            `tfprune.core.rules.MaskRule.layouts`): None, the matrix view of its inputs, or
            the channel groups of its axes.
    """

    layer: Any
    weight: Any
    mask: Any
    label: str
    layout: Any = None

    @property
    def description(self) -> str:
        """How messages name the weight: "weight 'dense/kernel' of layer 'dense'"."""
        return f"weight '{self.weight.path}' of layer '{self.layer.name}'"

    def effective(self) -> np.ndarray:
        """`weight * mask` on the host: what the forward pass uses."""
        weight = ops.convert_to_numpy(self.weight)
        return weight * ops.convert_to_numpy(self.mask)

    def assign(self, keep: Any, value: Any = None) -> None:
        """Sets the mask to `keep` and, when given, the stored weight to `value`."""
        self.mask.assign(np.asarray(keep).astype(bool))
        if value is not None:
            dtype = keras.backend.standardize_dtype(self.weight.dtype)
            self.weight.assign(np.asarray(value).astype(dtype))


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
