"""The kinds of Keras layers that pruning tells apart, named once for every module.

Keras 3's transposed, depthwise and separable convolutions are not subclasses of the plain
ones, so each kind is its own tuple. KerasHub's layers are known only once KerasHub is
imported: `is_keras_hub` never imports it.
"""

from __future__ import annotations

import sys
from typing import Any

import keras

__all__ = [
    "CONVS",
    "TRANSPOSED",
    "DEPTHWISE",
    "SEPARABLE",
    "RECURRENT",
    "keras_hub_layer",
    "is_keras_hub",
]

_L = keras.layers
CONVS = (_L.Conv1D, _L.Conv2D, _L.Conv3D)
TRANSPOSED = (_L.Conv1DTranspose, _L.Conv2DTranspose, _L.Conv3DTranspose)
DEPTHWISE = (_L.DepthwiseConv1D, _L.DepthwiseConv2D)
SEPARABLE = (_L.SeparableConv1D, _L.SeparableConv2D)
# Recurrent layers and the number of gates that share each unit.
RECURRENT = {_L.LSTM: 4, _L.GRU: 3, _L.SimpleRNN: 1}


def keras_hub_layer(name: str) -> type | None:
    """The class `keras_hub.layers.<name>`, or None when KerasHub is not imported (or has no
    such layer)."""
    hub = sys.modules.get("keras_hub")
    return None if hub is None else getattr(hub.layers, name, None)


def is_keras_hub(op: Any, *names: str) -> bool:
    """Whether `op` is exactly one of the classes `names` of `keras_hub.layers` (not a
    subclass: a subclass may compute something else).

    Example:

    >>> is_keras_hub(keras.layers.Dense(2), "TransformerEncoder")
    False
    """
    return any(type(op) is cls for cls in map(keras_hub_layer, names) if cls is not None)
