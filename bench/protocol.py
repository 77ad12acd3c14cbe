"""The training protocol both libraries run, written once against a small adapter.

A `Library` adapter (see `bench.worker`) exposes the Keras module (`keras` or `tf_keras`) and the
pruning API of tfprune or tfmot under the same names. Everything here goes through it, so the
two libraries train the same models, on the same data, from the same initial weights, with the
same schedule, optimizer, batch size and number of steps. Nothing here imports Keras.

Protocol of one pruning run (Zhu & Gupta 2017, at small scale): `warmup` dense epochs, then the
cubic ramp from 0 to the target over `ramp` epochs (a mask update every `frequency` steps), then
`finetune` epochs with frozen masks. The dense baseline trains for the same total number of
epochs. A one-shot run prunes to the target at the first step after warm-up and trains the
same `ramp + finetune` epochs with frozen masks.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import numpy as np

BATCH = 64


def steps_per_epoch(rows: int) -> int:
    """Training steps in one epoch of `rows` rows at the benchmark's batch size."""
    return math.ceil(rows / BATCH)


def ramp_end_step(rows: int, ramp_epochs: int, frequency: int) -> int:
    """Last step of the ramp: a multiple of `frequency` inside the ramp's steps.

    Steps count from 0, so the ramp's last step is `ramp_epochs * steps_per_epoch - 1`. tfmot
    skips its last update when `end_step - begin_step` is not a multiple of `frequency`;
    choosing a multiple keeps the comparison about training, not about that difference.
    """
    last = ramp_epochs * steps_per_epoch(rows) - 1
    return max(frequency, (last // frequency) * frequency)


def compile_model(lib, model, eager: bool = False) -> None:
    """Adam(1e-3) on sparse categorical cross-entropy from logits; no metrics (we score).

    `eager` runs the training step eagerly (no tracing: for tests, never for timings)."""
    k = lib.keras
    model.compile(
        optimizer=k.optimizers.Adam(1e-3),
        loss=k.losses.SparseCategoricalCrossentropy(from_logits=True),
        run_eagerly=eager,
    )


def fit(model, x, y, epochs: int, callbacks=()) -> float:
    """Trains for `epochs` epochs and returns the wall time in seconds."""
    start = time.perf_counter()
    if epochs > 0:
        model.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0, callbacks=list(callbacks))
    return time.perf_counter() - start


def score(model, x, y, task: str) -> float:
    """Test accuracy for "mnist", test perplexity (exp of mean cross-entropy) for "lm"."""
    return score_logits(model.predict(x, batch_size=256, verbose=0), y, task)


def score_logits(logits, y, task: str) -> float:
    """`score` from the logits: accuracy for "mnist", perplexity for "lm"."""
    logits = np.asarray(logits, dtype="float64")
    if task == "mnist":
        return float(np.mean(logits.argmax(-1) == y))
    logits -= logits.max(-1, keepdims=True)
    log_z = np.log(np.exp(logits).sum(-1))
    picked = np.take_along_axis(logits, y[..., None], axis=-1)[..., 0]
    return float(np.exp(np.mean(log_z - picked)))


def kernel_sparsity(model) -> float:
    """Fraction of zeros over all weights of rank >= 2 (kernels, embeddings) of a plain model."""
    zeros = total = 0
    for weight in model.get_weights():
        if weight.ndim >= 2:
            zeros += int(np.count_nonzero(weight == 0))
            total += weight.size
    return zeros / total


def nonzero_parameters(model) -> int:
    """Non-zero entries over all weights of a plain model, biases included."""
    return int(sum(np.count_nonzero(w) for w in model.get_weights()))


def initial_model(lib, build, seed: int, init_path: str | None):
    """Builds a model seeded with `seed`; shares its initial weights through `init_path`.

    The first library to build a given model writes its initial weights there; the other loads
    them, so both start from the same point.
    """
    lib.keras.utils.set_random_seed(seed)
    model = build()
    if init_path:
        if os.path.exists(init_path):
            with np.load(init_path) as saved:
                model.set_weights([saved[f"w{i}"] for i in range(len(saved.files))])
        else:
            weights = model.get_weights()
            np.savez(init_path, **{f"w{i}": w for i, w in enumerate(weights)})
    return model


def prune_run(
    lib,
    build,
    data,
    *,
    task: str,
    seed: int,
    sparsities: list[float],
    warmup: int,
    ramp: int,
    finetune: int,
    frequency: int,
    one_shot: bool = False,
    init_path: str | None = None,
) -> tuple[dict[str, Any], dict[float, Any]]:
    """Runs the dense baseline and one pruning run per target sparsity.

    Returns:
        `(summary, stripped)`: a JSON-ready dict (dense score, per-target score, measured
        sparsity, non-zero parameters, seconds) and the stripped models by target.
    """
    (x, y), (xt, yt) = data
    model = initial_model(lib, build, seed, init_path)
    compile_model(lib, model)
    seconds = fit(model, x, y, warmup)
    warm = model.get_weights()
    seconds += fit(model, x, y, ramp + finetune)
    summary: dict[str, Any] = {
        "dense": score(model, xt, yt, task),
        "dense_nonzeros": nonzero_parameters(model),
        "runs": [],
    }
    end = ramp_end_step(len(x), ramp, frequency)
    stripped = {}
    for target in sparsities:
        lib.keras.utils.set_random_seed(seed)
        model = build()
        model.set_weights(warm)
        begin = 0
        if one_shot:
            end = 0
        schedule = lib.PolynomialDecay(0.0, target, begin, end, frequency=frequency)
        pruned = lib.prune_low_magnitude(model, schedule)
        compile_model(lib, pruned)
        took = fit(pruned, x, y, ramp + finetune, [lib.UpdatePruningStep()])
        plain = lib.strip_pruning(pruned)
        stripped[target] = plain
        summary["runs"].append(
            {
                "target": target,
                "score": score(plain, xt, yt, task),
                "sparsity": kernel_sparsity(plain),
                "nonzeros": nonzero_parameters(plain),
                "seconds": took,
            }
        )
    summary["seconds"] = seconds
    return summary, stripped


class EpochTimer:
    """A dense model and a pruned copy, timed one epoch each per repeat, in alternating order.

    Both are traced and warmed up by one untimed epoch. The pruned copy prunes towards 90%
    with the cubic ramp, updating masks every 100 steps (the libraries' default) across all
    repeats, so mask updates fall inside the timed epochs.
    """

    def __init__(self, lib, build, data, repeats: int, seed: int = 0) -> None:
        (self.x, self.y), _ = data
        lib.keras.utils.set_random_seed(seed)
        self.dense = build()
        pruned_base = build()
        pruned_base.set_weights(self.dense.get_weights())
        total = (repeats + 1) * steps_per_epoch(len(self.x))
        schedule = lib.PolynomialDecay(0.0, 0.9, 0, max(100, total // 100 * 100), frequency=100)
        self.pruned = lib.prune_low_magnitude(pruned_base, schedule)
        self.callbacks = [lib.UpdatePruningStep()]
        compile_model(lib, self.dense)
        compile_model(lib, self.pruned)
        fit(self.dense, self.x, self.y, 1)
        fit(self.pruned, self.x, self.y, 1, self.callbacks)

    def repeat(self, index: int) -> tuple[float, float]:
        """Times one dense and one pruned epoch; returns `(dense_s, pruned_s)`."""
        if index % 2 == 0:
            dense = fit(self.dense, self.x, self.y, 1)
            pruned = fit(self.pruned, self.x, self.y, 1, self.callbacks)
        else:
            pruned = fit(self.pruned, self.x, self.y, 1, self.callbacks)
            dense = fit(self.dense, self.x, self.y, 1)
        return dense, pruned
