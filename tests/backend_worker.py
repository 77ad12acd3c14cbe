"""Prune, train, save, reload, continue and strip under the backend named by KERAS_BACKEND.

Run by tests/test_backends.py in a child process (the backend is fixed at Keras import time).
Prints one JSON line with what the parent checks.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

import keras
import numpy as np
from tiny_models import digits, mlp

import tfprune

# Keras itself may load TensorFlow later (clone_model does); tfprune must not on its own.
TENSORFLOW_AFTER_IMPORT = "tensorflow" in sys.modules


def _small_mlp() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(32, activation="relu", name="fc1"),
            keras.layers.Dense(10, name="fc2"),
        ]
    )


def one_shot_fingerprints() -> list[list[float]]:
    """SparseGPT and Wanda with fixed weights and data: per kernel, its zero count and two sums
    that any difference in mask or values changes. The float32 solvers on the backend (SparseGPT
    and Wanda) run on a small MLP calibrated on many more rows than inputs of unit-variance
    data: its Hessian is well conditioned and its few scores far apart, so that float32
    rounding, which differs between the backends' compilers, moves no mask entry. SparseGPT's
    float64 host solver runs on the MNIST-sized MLP on a few rows."""
    out = []
    runs = (
        (1024, "float32", "sparsegpt"),
        (64, "float64", "sparsegpt"),
        (1024, "float32", "wanda"),
    )
    for rows, precision, method in runs:
        model = _small_mlp() if precision == "float32" else mlp(32)
        rng = np.random.default_rng(7)
        weights = [rng.standard_normal(w.shape).astype("float32") * 0.1 for w in model.weights]
        model.set_weights(weights)
        if precision == "float32":
            x = rng.standard_normal((rows, 64)).astype("float32")
        else:
            x = rng.random((rows, 28, 28)).astype("float32")
        pruned = tfprune.strip_pruning(
            tfprune.prune_one_shot(model, x, 0.6, method=method, batch_size=64, precision=precision)
        )
        for layer in pruned.layers:
            if hasattr(layer, "kernel"):
                k = keras.ops.convert_to_numpy(layer.kernel).astype("float64")
                ramp = np.arange(k.size).reshape(k.shape) % 97
                out.append([int(np.sum(k == 0)), float(np.abs(k).sum()), float((k * ramp).sum())])
    return out


def composite_labels() -> list[str]:
    """The prunable weights of a layer made of layers (found in its attributes, which the
    PyTorch backend keeps as torch submodules)."""
    from tfprune.models.registry import prunable_weights, weight_label

    class Block(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.inner = keras.layers.Dense(4, name="inner")
            self.outer = keras.layers.Dense(3, name="outer")

        def call(self, x):
            return self.outer(self.inner(x))

    block = Block(name="block")
    block(np.zeros((1, 5), "float32"))
    return sorted(weight_label(block, w) for w in prunable_weights(block))


def main() -> None:
    (x, y), (xt, _) = digits(512, 16)
    keras.utils.set_random_seed(3)
    model = mlp(32)
    schedule = tfprune.PolynomialDecay(0.0, 0.75, begin_step=0, end_step=13, frequency=4)
    pruned = tfprune.prune_low_magnitude(model, schedule)
    pruned.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    fit = dict(batch_size=64, shuffle=False, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    pruned.fit(x, y, epochs=1, **fit)
    path = os.path.join(tempfile.mkdtemp(), "mid.keras")
    pruned.save(path)
    again = keras.models.load_model(path)
    again.fit(x, y, epochs=2, initial_epoch=1, **fit)
    stripped = tfprune.strip_pruning(again)
    sample = xt
    same = np.array_equal(
        keras.ops.convert_to_numpy(again(sample)), keras.ops.convert_to_numpy(stripped(sample))
    )
    report = tfprune.sparsity_report(stripped)
    print(
        json.dumps(
            {
                "backend": keras.backend.backend(),
                "sparsity": [row.sparsity for row in report],
                "zeros": [int(np.prod(row.shape)) - row.nonzeros for row in report],
                "sizes": [int(np.prod(row.shape)) for row in report],
                "step": int(keras.ops.convert_to_numpy(again.layers[1].pruning_step)),
                "strip_identical": bool(same),
                "tensorflow_imported": TENSORFLOW_AFTER_IMPORT,
                "one_shot": one_shot_fingerprints(),
                "composite": composite_labels(),
            }
        )
    )


if __name__ == "__main__":
    main()
