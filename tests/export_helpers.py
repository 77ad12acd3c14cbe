"""Small real models for the export tests, pruned the way `strip_pruning` leaves them."""

from __future__ import annotations

import keras
import numpy as np


def zero_smallest(model: keras.Model, sparsity: float = 0.9) -> keras.Model:
    """Zeros the `sparsity` fraction of smallest-magnitude entries of every kernel, in place."""
    for layer in model.layers:
        if not hasattr(layer, "kernel"):
            continue
        weights = layer.get_weights()
        kernel = weights[0]
        k = int(round(sparsity * kernel.size))
        order = np.argsort(np.abs(kernel), axis=None, kind="stable")
        flat = kernel.reshape(-1).copy()
        flat[order[:k]] = 0.0
        weights[0] = flat.reshape(kernel.shape)
        layer.set_weights(weights)
    return model


def fit_briefly(model: keras.Model, x, y, epochs: int = 1) -> keras.Model:
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x, y, batch_size=64, epochs=epochs, verbose=0)
    return model


def mlp(sequential: bool = True) -> keras.Model:
    """784 -> 64 (relu) -> 10, Sequential or Functional."""
    if sequential:
        return keras.Sequential(
            [
                keras.Input((28, 28)),
                keras.layers.Flatten(),
                keras.layers.Dense(64, activation="relu"),
                keras.layers.Dense(10),
            ]
        )
    inputs = keras.Input((28, 28), name="image")
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(64, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x))


def convnet() -> keras.Model:
    """A small Conv2D + Dense classifier on 28x28x1 images."""
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )


def two_inputs() -> keras.Model:
    """A Functional model with an image input and a 4-feature side input."""
    image = keras.Input((28, 28), name="image")
    side = keras.Input((4,), name="side")
    x = keras.layers.Flatten()(image)
    x = keras.layers.Dense(48, activation="relu")(x)
    x = keras.layers.Concatenate()([x, keras.layers.Dense(8, activation="relu")(side)])
    return keras.Model([image, side], keras.layers.Dense(10)(x))


def stripped_mlp(data, *, sequential: bool, seed: int) -> keras.Model:
    """A briefly trained `mlp` with 90% of each kernel zeroed, as `strip_pruning` leaves it."""
    (x, y), _ = data
    keras.utils.set_random_seed(seed)
    return zero_smallest(fit_briefly(mlp(sequential=sequential), x, y))


def operator_names(path) -> set[str]:
    """The builtin operator names used anywhere in a `.tflite` file, every subgraph included."""
    from tfprune.export.graph import Graph

    with open(path, "rb") as f:
        graph = Graph.from_bytes(f.read())
    return {name for subgraph in graph.subgraphs for name, _ in subgraph.walk_ops()}
