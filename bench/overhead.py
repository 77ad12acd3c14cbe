"""Training overhead of pruning, and the cost of one mask update.

Prints, for LeNet-300-100 and a small CNN on the embedded MNIST sample, the median over
interleaved repeats of (pruned fit time / dense fit time) per epoch (each sample `--epochs`
epochs long), with the schedule updating masks every 100 steps; then the time of one mask
update of a 4096x4096 kernel against one `keras.ops.sort` of it.
Run: `python -m bench.overhead [--repeats N] [--epochs E]`.
"""

from __future__ import annotations

import argparse
import statistics
import time

import keras
import numpy as np

import tfprune
from tfprune.demo import lenet_300_100


def small_cnn() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((28, 28)),
            keras.layers.Rescaling(1.0 / 255),
            keras.layers.Reshape((28, 28, 1)),
            keras.layers.Conv2D(16, 5, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 5, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10),
        ]
    )


def _compile(model: keras.Model) -> keras.Model:
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def _time_epoch(model, x, y, callbacks, epochs: int = 1) -> float:
    start = time.perf_counter()
    model.fit(x, y, batch_size=64, epochs=epochs, verbose=0, callbacks=callbacks)
    return (time.perf_counter() - start) / epochs


def fit_ratio(make, x, y, repeats: int, epochs: int = 1) -> tuple[float, list[float], float, float]:
    keras.utils.set_random_seed(0)
    dense = _compile(make())
    steps = (repeats + 1) * epochs * int(np.ceil(len(x) / 64))
    schedule = tfprune.PolynomialDecay(0.0, 0.9, begin_step=0, end_step=steps, frequency=100)
    pruned = _compile(tfprune.prune_low_magnitude(make(), schedule))
    callback = tfprune.UpdatePruningStep()
    _time_epoch(dense, x, y, [])  # trace and warm up both
    _time_epoch(pruned, x, y, [callback])
    ratios, dense_times, pruned_times = [], [], []
    for r in range(repeats):
        if r % 2 == 0:
            d = _time_epoch(dense, x, y, [], epochs)
            p = _time_epoch(pruned, x, y, [callback], epochs)
        else:
            p = _time_epoch(pruned, x, y, [callback], epochs)
            d = _time_epoch(dense, x, y, [], epochs)
        ratios.append(p / d)
        dense_times.append(d)
        pruned_times.append(p)
    return (
        statistics.median(ratios),
        ratios,
        statistics.median(dense_times),
        statistics.median(pruned_times),
    )


def mask_update_vs_sort(repeats: int) -> tuple[float, float]:
    from keras import ops

    from tfprune.masks.magnitude import magnitude_mask

    w = np.random.default_rng(0).standard_normal((4096, 4096)).astype("float32")
    kernel = ops.convert_to_tensor(w)
    flat = ops.reshape(kernel, (-1,))
    mask_times, sort_times = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        ops.convert_to_numpy(magnitude_mask(kernel, 0.9))
        mask_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        ops.convert_to_numpy(ops.sort(flat))
        sort_times.append(time.perf_counter() - start)
    return statistics.median(mask_times), statistics.median(sort_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=15, help="interleaved repeats per model")
    parser.add_argument(
        "--epochs",
        type=int,
        default=3,
        help="epochs per timed sample (longer samples, less jitter)",
    )
    args = parser.parse_args()
    (x, y), _ = tfprune.datasets.load_mnist_sample()
    print(
        f"keras {keras.__version__}, backend {keras.backend.backend()}, {args.repeats} repeats "
        f"of {args.epochs} epoch(s) each"
    )
    print(f"{'model':<16}{'dense s/epoch':>15}{'pruned s/epoch':>16}{'median ratio':>14}  ratios")
    for name, make in (("LeNet-300-100", lenet_300_100), ("small CNN", small_cnn)):
        median, ratios, d, p = fit_ratio(make, x, y, args.repeats, args.epochs)
        spread = " ".join(f"{r:.3f}" for r in ratios)
        print(f"{name:<16}{d:>15.3f}{p:>16.3f}{median:>14.3f}  {spread}")
    mask, sort = mask_update_vs_sort(max(3, args.repeats // 2))
    print(
        f"mask update 4096x4096 at 90%: {mask * 1e3:.0f} ms; keras.ops.sort of it: "
        f"{sort * 1e3:.0f} ms; ratio {mask / sort:.2f} (goal <= 2)"
    )


if __name__ == "__main__":
    main()
