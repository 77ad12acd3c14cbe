"""The main job on the embedded data: a dense LeNet-300-100 against a pruned copy."""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
import numpy as np

from tfprune.callbacks import UpdatePruningStep
from tfprune.datasets import load_mnist_sample
from tfprune.prune import prune_low_magnitude, strip_pruning
from tfprune.report import sparsity_report
from tfprune.schedules import PolynomialDecay

__all__ = ["DemoResult", "lenet_300_100", "run_demo"]


def lenet_300_100() -> keras.Model:
    """Returns LeNet-300-100 (784-300-100-10, ReLU, logits) as a Sequential model."""
    return keras.Sequential(
        [
            keras.Input((28, 28), name="image"),
            keras.layers.Rescaling(1.0 / 255, name="scale"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(300, activation="relu", name="fc1"),
            keras.layers.Dense(100, activation="relu", name="fc2"),
            keras.layers.Dense(10, name="logits"),
        ],
        name="lenet_300_100",
    )


@dataclasses.dataclass
class DemoResult:
    """What the demo trained and measured."""

    dense: keras.Model
    pruned: keras.Model
    stripped: keras.Model
    dense_accuracy: float
    pruned_accuracy: float
    schedule: PolynomialDecay
    steps: int
    data: Any

    def table(self) -> str:
        """Side-by-side per-layer non-zeros and sparsity of the dense and pruned models."""
        dense_rows = {r.layer: r for r in sparsity_report(self.dense)}
        pruned_rows = sparsity_report(self.stripped)
        head = f"{'layer':<8}{'shape':>10}{'dense nnz':>12}{'pruned nnz':>12}{'sparsity':>10}"
        lines = [head, "-" * len(head)]
        for r in pruned_rows:
            d = dense_rows[r.layer]
            shape = "x".join(map(str, r.shape))
            lines.append(
                f"{r.layer:<8}{shape:>10}{d.nonzeros:>12,}{r.nonzeros:>12,}{r.sparsity:>10.1%}"
            )
        total_dense = sum(r.nonzeros for r in dense_rows.values())
        lines.append("-" * len(head))
        lines.append(
            f"{'total':<8}{'':>10}{total_dense:>12,}{pruned_rows.nonzeros:>12,}"
            f"{pruned_rows.sparsity:>10.1%}"
        )
        lines.append(
            f"test accuracy: dense {self.dense_accuracy:.4f}, "
            f"pruned {self.pruned_accuracy:.4f} (1,000 held-out MNIST digits)"
        )
        return "\n".join(lines)


def _compile(model: keras.Model) -> None:
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def run_demo(
    *, epochs: int = 12, target_sparsity: float = 0.9, batch_size: int = 64, seed: int = 0
) -> DemoResult:
    """Trains a dense LeNet-300-100 and a pruned copy on the embedded MNIST sample.

    The dense model trains for `epochs // 3` epochs; the pruned copy starts from it and is
    pruned with the cubic ramp from 0 to `target_sparsity` over the first half of the remaining
    epochs (masks updated every 10 steps), then fine-tuned with frozen masks. The dense
    baseline gets the same extra epochs, so both see the same training budget.

    Args:
        epochs: Total epochs of each model. Defaults to 12.
        target_sparsity: Final sparsity of the pruned copy. Defaults to 0.9.
        batch_size: Batch size. Defaults to 64.
        seed: Seed of Keras's random generators. Defaults to 0.

    Returns:
        A `DemoResult`.
    """
    keras.utils.set_random_seed(seed)
    (x_train, y_train), (x_test, y_test) = load_mnist_sample()
    x_train = x_train.astype("float32")
    x_test = x_test.astype("float32")
    warmup = max(1, epochs // 3)
    rest = max(1, epochs - warmup)
    dense = lenet_300_100()
    _compile(dense)
    dense.fit(x_train, y_train, batch_size=batch_size, epochs=warmup, verbose=0)

    steps_per_epoch = int(np.ceil(len(x_train) / batch_size))
    end_step = max(1, int(0.5 * rest * steps_per_epoch))
    schedule = PolynomialDecay(0.0, target_sparsity, begin_step=0, end_step=end_step, frequency=10)
    pruned = prune_low_magnitude(dense, schedule)
    _compile(pruned)
    pruned.fit(
        x_train,
        y_train,
        batch_size=batch_size,
        epochs=rest,
        verbose=0,
        callbacks=[UpdatePruningStep()],
    )
    dense.fit(x_train, y_train, batch_size=batch_size, epochs=rest, verbose=0)
    stripped = strip_pruning(pruned)
    _compile(stripped)
    return DemoResult(
        dense=dense,
        pruned=pruned,
        stripped=stripped,
        dense_accuracy=float(dense.evaluate(x_test, y_test, verbose=0)[1]),
        pruned_accuracy=float(stripped.evaluate(x_test, y_test, verbose=0)[1]),
        schedule=schedule,
        steps=rest * steps_per_epoch,
        data=((x_train, y_train), (x_test, y_test)),
    )
