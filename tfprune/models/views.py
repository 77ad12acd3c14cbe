"""Which matrix view a layer's weight has (see `tfprune.masks.views`), decided by the layer.

Dense, EinsumDense, ungrouped Conv1D/2D/3D and the input kernels of recurrent layers multiply
their layer's input, so they have a view; embeddings, depthwise, grouped and transposed
convolutions, recurrent kernels and biases have none.
"""

from __future__ import annotations

from typing import Any

import keras

from tfprune.masks.views import MatrixView, conv_view, dense_view, einsum_view
from tfprune.models.kinds import CONVS
from tfprune.models.walk import owner_of

__all__ = ["matrix_view", "input_view"]


def matrix_view(owner: Any, weight: Any, recurrent_parent: Any = None) -> MatrixView | None:
    """The view of `weight` of layer `owner`, or None when it has none.

    Args:
        owner: The innermost layer that holds `weight`.
        weight: The variable.
        recurrent_parent: The recurrent layer whose cell `owner` is (its input rows feed the
            cell's `kernel`), or None. Defaults to None.

    Example:

    >>> dense = keras.layers.Dense(2)
    >>> dense.build((None, 3))
    >>> matrix_view(dense, dense.kernel).inputs, matrix_view(dense, dense.bias)
    (3, None)
    """
    shape = tuple(int(d) for d in weight.shape)
    name = weight.path.rsplit("/", 1)[-1]
    if recurrent_parent is not None:
        return dense_view(shape) if name == "kernel" and len(shape) == 2 else None
    if isinstance(owner, keras.layers.Dense) and name == "kernel" and len(shape) == 2:
        return dense_view(shape)
    if isinstance(owner, keras.layers.EinsumDense) and name == "kernel":
        return einsum_view(owner.equation, shape)
    if isinstance(owner, CONVS) and name == "kernel" and getattr(owner, "groups", 1) == 1:
        return conv_view(
            shape,
            owner.strides,
            owner.dilation_rate,
            owner.padding,
            channels_first=owner.data_format == "channels_first",
        )
    return None


def input_view(layer: Any, weight: Any) -> MatrixView | None:
    """The view N:M groups run along where a weight's axis -2 is not its input channels: an
    EinsumDense kernel (the `[dim, heads, head_dim]` query kernel of an attention layer takes
    `dim`), grouped along its contracted axes as LiteRT's FULLY_CONNECTED `[out, in]` is.
    None for every other weight."""
    owner = owner_of(layer, weight)
    if isinstance(owner, keras.layers.EinsumDense):
        return matrix_view(owner, weight)
    return None
