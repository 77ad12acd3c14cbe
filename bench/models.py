"""The benchmark models, built with whichever Keras the caller passes in.

Each builder takes the Keras module as its first argument (`keras` for Keras 3 or `tf_keras` for
Keras 2) so that both libraries train exactly the same architecture; the layer order and weight
shapes agree, so `get_weights()` of one can be loaded into the other with `set_weights()`.
Inputs are pixels already scaled to [0, 1]: tfmot cannot wrap a `Rescaling` layer. Nothing here
imports Keras.
"""

from __future__ import annotations

import math
from types import ModuleType

MNIST_MODELS = ("lenet", "cnn")


def lenet(k: ModuleType, width: float = 1.0):
    """LeNet-300-100 on 28x28 pixels scaled to [0, 1]; `width` scales both hidden layers."""
    return k.Sequential(
        [
            k.Input((28, 28)),
            k.layers.Flatten(),
            k.layers.Dense(max(1, round(300 * width)), activation="relu", name="fc1"),
            k.layers.Dense(max(1, round(100 * width)), activation="relu", name="fc2"),
            k.layers.Dense(10, name="logits"),
        ]
    )


def cnn_channels(width: float) -> tuple[int, int, int]:
    """Returns the (conv1, conv2, dense) widths of the small CNN at width multiplier `width`."""
    return tuple(max(1, round(c * width)) for c in (16, 32, 64))


def cnn(k: ModuleType, width: float = 1.0):
    """The small CNN of `bench.overhead` (conv5x5x16, pool, conv5x5x32, pool, fc64, fc10)."""
    c1, c2, fc = cnn_channels(width)
    return k.Sequential(
        [
            k.Input((28, 28)),
            k.layers.Reshape((28, 28, 1)),
            k.layers.Conv2D(c1, 5, activation="relu"),
            k.layers.MaxPooling2D(),
            k.layers.Conv2D(c2, 5, activation="relu"),
            k.layers.MaxPooling2D(),
            k.layers.Flatten(),
            k.layers.Dense(fc, activation="relu"),
            k.layers.Dense(10),
        ]
    )


def cnn_parameters(width: float, sparsity: float = 0.0) -> int:
    """Non-zero parameters of the CNN at `width` with every kernel pruned to `sparsity`.

    Biases are never pruned, so they always count.
    """
    c1, c2, fc = cnn_channels(width)
    kernels = [25 * c1, 25 * c1 * c2, 16 * c2 * fc, fc * 10]
    biases = c1 + c2 + fc + 10
    return sum(n - round(sparsity * n) for n in kernels) + biases


def matching_width(target: int) -> float:
    """Returns the CNN width multiplier whose dense parameter count is closest to `target`.

    Channel counts are integers, so the search runs over the widths at which conv1 gains a
    channel (steps of 1/16) refined to the best of the neighbouring 1/64 steps.
    """
    candidates = [i / 64 for i in range(1, 129)]
    return min(candidates, key=lambda w: abs(math.log(cnn_parameters(w) / target)))


def lstm_lm(k: ModuleType, vocab: int, length: int, units: int = 128, embed: int = 128):
    """A 2-layer word-level LSTM language model: Embedding, LSTM, LSTM, Dense(vocab) logits."""
    return k.Sequential(
        [
            k.Input((length,), dtype="int32"),
            k.layers.Embedding(vocab, embed),
            k.layers.LSTM(units, return_sequences=True),
            k.layers.LSTM(units, return_sequences=True),
            k.layers.Dense(vocab),
        ]
    )


def mobilenet_v2(k: ModuleType, size: int = 96, alpha: float = 0.35):
    """`applications.MobileNetV2` for 10 classes on `size`x`size`x3 inputs, logits out.

    No pretrained weights. Its batch normalization layers keep moving statistics with momentum
    0.9 instead of the application's 0.999, which needs thousands of steps to forget its
    initial values; the benchmark trains for a few hundred.
    """
    model = k.applications.MobileNetV2(
        input_shape=(size, size, 3),
        alpha=alpha,
        weights=None,
        classes=10,
        classifier_activation=None,
    )
    for layer in model.layers:
        if isinstance(layer, k.layers.BatchNormalization):
            layer.momentum = 0.9
    return model
