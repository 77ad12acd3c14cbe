"""Small real models and data shared by the tests and the child-process workers they start."""

from __future__ import annotations

import keras
import numpy as np

import tfprune


def digits(n_train: int = 1024, n_test: int = 128):
    """Float32 MNIST rows in [0, 1] from the embedded sample: `((x, y), (x_test, y_test))`."""
    (x, y), (xt, yt) = tfprune.datasets.load_mnist_sample()
    return (
        (x[:n_train].astype("float32") / 255.0, y[:n_train]),
        (xt[:n_test].astype("float32") / 255.0, yt[:n_test]),
    )


def mlp(hidden: int = 32) -> keras.Model:
    """784 -> `hidden` (relu) -> 10 logits on 28x28 images; layers `fc1` and `fc2`."""
    return keras.Sequential(
        [
            keras.Input((28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(hidden, activation="relu", name="fc1"),
            keras.layers.Dense(10, name="fc2"),
        ]
    )


def as_arrays(model: keras.Model) -> dict[str, np.ndarray]:
    """Every weight of `model` as numpy, keyed by position, for a worker to save."""
    return {f"w{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(model.weights)}


def random_weights(model: keras.Model, seed: int = 0) -> keras.Model:
    """Random weights everywhere (BN statistics and biases too), so that no channel is special."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        value = rng.standard_normal(tuple(w.shape)) * 0.5
        if "variance" in w.path:
            value = np.abs(value) + 0.5
        w.assign(value.astype(w.dtype))
    return model
