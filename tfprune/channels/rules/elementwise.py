"""Layers and operations that act on each channel alone: the channels pass through, and the
inputs of a merge (`Add`, `x + y`, ...) are joined channel by channel."""

from __future__ import annotations

import keras
import numpy as np

from tfprune.channels.rules.base import (
    COUPLING,
    LayerRule,
    UnsupportedLayer,
    activation_name,
    register,
    register_operation,
)

_L = keras.layers
# Layers that act on each channel alone and hold no weights.
_PER_CHANNEL = tuple(
    getattr(_L, name)
    for name in (
        "ReLU LeakyReLU ELU Dropout SpatialDropout1D SpatialDropout2D SpatialDropout3D "
        "GaussianNoise GaussianDropout AlphaDropout ActivityRegularization MaxPooling1D "
        "MaxPooling2D MaxPooling3D AveragePooling1D AveragePooling2D AveragePooling3D "
        "GlobalAveragePooling1D GlobalAveragePooling2D GlobalAveragePooling3D "
        "GlobalMaxPooling1D GlobalMaxPooling2D GlobalMaxPooling3D ZeroPadding1D "
        "ZeroPadding2D ZeroPadding3D Cropping1D Cropping2D Cropping3D UpSampling1D "
        "UpSampling2D UpSampling3D Identity"
    ).split()
)
_MERGES = (_L.Add, _L.Subtract, _L.Multiply, _L.Average, _L.Maximum, _L.Minimum)
# Operations of a model's own code (`x + y`, `keras.ops.relu(x)`) that act channel by channel.
_ELEMENTWISE_OPS = (
    "Add Subtract Multiply Divide TrueDivide Maximum Minimum Negative Abs Square Sqrt Exp "
    "Relu Relu6 Sigmoid HardSigmoid Silu Swish HardSwish HardSilu Tanh Gelu Elu Selu "
    "LeakyRelu Softplus Softsign Mish"
).split()


@register(*_PER_CHANNEL)
class PerChannelRule(LayerRule):
    def follow(self, graph, op, inputs, out_shapes):
        return [inputs[0][0]]


@register(_L.Activation)
class ActivationRule(LayerRule):
    """Per channel, except a softmax over the channels, which couples them."""

    def follow(self, graph, op, inputs, out_shapes):
        x = inputs[0][0]
        if activation_name(op) in COUPLING:
            graph.keep(x, f"'{op.name}' applies a softmax over them")
        return [x]


@register(_L.Rescaling)
class RescalingRule(LayerRule):
    def follow(self, graph, op, inputs, out_shapes):
        if np.size(op.scale) != 1 or np.size(op.offset) != 1:
            raise UnsupportedLayer("it scales each channel by its own factor")
        return [inputs[0][0]]


@register(_L.PReLU)
class PReLURule(LayerRule):
    """Per channel; a slope per channel follows its channel."""

    def follow(self, graph, op, inputs, out_shapes):
        x = inputs[0][0]
        if int(op.alpha.shape[-1]) == len(x):
            graph.weight(op, op.alpha, -1, "tie", x)
        return [x]


@register(*_MERGES)
class MergeRule(LayerRule):
    def follow(self, graph, op, inputs, out_shapes):
        return [graph.merge(inputs)]


@register_operation(*_ELEMENTWISE_OPS)
class ElementwiseOperationRule(LayerRule):
    def follow(self, graph, op, inputs, out_shapes):
        return [graph.merge(inputs)]
