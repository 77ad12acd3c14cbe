"""A pruning run that can be killed and resumed; used by tests/test_crash.py in child processes.

`python crash_worker.py MODE DIR [--hang-at EPOCH]`: MODE is `straight`, `backup`
(BackupAndRestore in DIR/backup) or `checkpoint` (ModelCheckpoint to DIR/last.keras, resumed
from it). With --hang-at the process writes DIR/marker in the middle of that epoch and then
waits to be killed. At the end it writes DIR/result.npz with every mask and weight.
"""

from __future__ import annotations

import os
import sys
import time

import keras
import numpy as np
from tiny_models import as_arrays, digits, mlp

import tfprune

EPOCHS = 5


class Hang(keras.callbacks.Callback):
    def __init__(self, epoch: int, marker: str) -> None:
        super().__init__()
        self.epoch, self.marker, self.current = epoch, marker, -1

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch and batch == 3:
            with open(self.marker, "w") as f:
                f.write("ready")
            time.sleep(600)


def build() -> keras.Model:
    keras.utils.set_random_seed(21)
    model = mlp(40)
    schedule = tfprune.PolynomialDecay(0.0, 0.9, begin_step=2, end_step=36, frequency=3)
    pruned = tfprune.prune_low_magnitude(model, schedule)
    pruned.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return pruned


def main(mode: str, directory: str, hang_at: int | None) -> None:
    (x, y), _ = digits(512)
    callbacks: list = [tfprune.UpdatePruningStep()]
    model, initial_epoch = build(), 0
    last = os.path.join(directory, "last.keras")
    if mode == "backup":
        callbacks.append(keras.callbacks.BackupAndRestore(os.path.join(directory, "backup")))
    elif mode == "checkpoint":
        callbacks.append(keras.callbacks.ModelCheckpoint(last))
        if os.path.exists(last):
            model = keras.models.load_model(last)
            initial_epoch = int(open(os.path.join(directory, "epoch")).read()) + 1
        callbacks.append(
            keras.callbacks.LambdaCallback(
                on_epoch_end=lambda epoch, logs: open(os.path.join(directory, "epoch"), "w").write(
                    str(epoch)
                )
            )
        )
    if hang_at is not None:
        callbacks.append(Hang(hang_at, os.path.join(directory, "marker")))
    model.fit(
        x,
        y,
        batch_size=64,
        epochs=EPOCHS,
        initial_epoch=initial_epoch,
        shuffle=False,
        verbose=0,
        callbacks=callbacks,
    )
    np.savez(os.path.join(directory, "result.npz"), **as_arrays(model))


if __name__ == "__main__":
    hang = int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[3] == "--hang-at" else None
    main(sys.argv[1], sys.argv[2], hang)
