"""Callbacks that drive pruning inside `model.fit`: `UpdatePruningStep`, `PruningSummaries`."""

from __future__ import annotations

import os
import warnings
from typing import Any

import keras
from keras import ops

from tfprune.allocation import update_masks_together
from tfprune.channel_masks import channel_fraction
from tfprune.masks import sparsity
from tfprune.prune import pruning_wrappers, warn_replaced_masks
from tfprune.wrapper import PruneLowMagnitude

__all__ = ["UpdatePruningStep", "PruningSummaries"]


def _wrappers_of(model: Any) -> list[PruneLowMagnitude]:
    wrappers = pruning_wrappers(model)
    if not wrappers:
        raise ValueError(
            f"Model '{model.name}' holds no PruneLowMagnitude layer: wrap it with "
            "tfprune.prune_low_magnitude before training it with UpdatePruningStep."
        )
    return wrappers


class UpdatePruningStep(keras.callbacks.Callback):
    """Advances the pruning step and updates the masks at the steps the schedules name.

    Add it to `model.fit` for every model that holds `PruneLowMagnitude` layers; training such a
    model without it raises an error. All mask work happens here, between training steps and
    only at update steps; the compiled training step only multiplies weights by masks. The step
    is counted on the host and written into each wrapper's `pruning_step` variable at updates,
    at the end of each epoch and of training, and whenever the model is saved, so checkpoints
    resume exactly. At those points the stored weights are also zeroed where masked (an
    optimizer with momentum may move masked entries, which the forward pass never sees).

    With `steps_per_execution=k` the callback runs once per k steps, so an update scheduled
    inside an execution is applied at the start of the next one (with the schedule's sparsity
    for that update); when k divides `begin_step`, `frequency`, `end_step` and the steps per
    epoch, the masks are the same as with k=1. At the end of training any due update is
    applied, and if training stopped before a schedule's `end_step` a warning says how far each
    layer is from its target.

    After each epoch the logs get `sparsity`: the share of all pruned weights that are masked.
    Keras's progress bar shows it next to the loss, and `History` (and `CSVLogger`) keep it.

    Raises:
        ValueError: When training starts, if the model holds no `PruneLowMagnitude` layer.

    Example:

    >>> import numpy as np, keras, tfprune
    >>> model = tfprune.prune_low_magnitude(
    ...     keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)]),
    ...     tfprune.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=3, frequency=1))
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> history = model.fit(np.ones((16, 8)), np.ones((16, 4)), batch_size=4, verbose=0,
    ...                     callbacks=[tfprune.UpdatePruningStep()])
    >>> int(model.layers[0].pruning_step)
    4
    >>> history.history["sparsity"]
    [0.5]

    In a custom training loop, drive the same methods yourself:

    >>> step = tfprune.UpdatePruningStep()
    >>> step.set_model(model)
    >>> step.on_train_begin()
    >>> for batch in range(2):
    ...     step.on_train_batch_begin(batch)
    ...     # ... compute gradients and apply them here ...
    ...     step.on_train_batch_end(batch)
    >>> step.on_train_end()
    >>> int(model.layers[0].pruning_step)
    6
    >>> plain = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> plain.compile(optimizer="sgd", loss="mse")
    >>> plain.fit(np.ones((4, 8)), np.ones((4, 4)), verbose=0,
    ...           callbacks=[tfprune.UpdatePruningStep()])
    Traceback (most recent call last):
    ...
    ValueError: Model '...' holds no PruneLowMagnitude layer: ...
    """

    def __init__(self) -> None:
        super().__init__()
        self._wrappers: list[PruneLowMagnitude] = []
        self._step = 0
        self._checked = 0
        self._prev_batch: int | None = None
        self._groups: dict[Any, tuple[Any, list[PruneLowMagnitude]]] = {}
        self._started = False
        self._waiting = False
        # end_steps already reported short: training in several `fit` calls (an epoch at a
        # time) stops short of them by design at every call but the last.
        self._told_short: set[int] = set()

    @property
    def step(self) -> int:
        """The number of training steps done so far (the index of the next step)."""
        return self._step

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._wrappers = _wrappers_of(self.model)
        for w in self._wrappers:
            w.attach_driver()
        # Read at the first batch, after callbacks such as BackupAndRestore restored the state.
        self._started = False
        self._groups = {}

    def _start(self) -> None:
        # One read of the device state per fit; the step lives on the host from here on, and
        # the wrappers read it from here when they are saved.
        self._step = max(int(ops.convert_to_numpy(w.pruning_step)) for w in self._wrappers)
        self._begin_groups()
        self._checked = self._step
        self._prev_batch = None
        self._started = True

    def _begin_groups(self) -> None:
        for w in self._wrappers:
            w.attach_driver(self._current_step)
        # Wrappers built by one prune_low_magnitude call share one schedule: ask it once a step.
        # Wrappers in one allocation group are also pruned together, with one threshold.
        self._groups = {}
        for w in self._wrappers:
            key = ("group", w.allocation_group) if w.allocation_group else id(w.pruning_schedule)
            self._groups.setdefault(key, (w.pruning_schedule, []))[1].append(w)
        self._waiting = False

    def _current_step(self) -> int:
        return self._step

    def _apply_due(self, upto: int) -> None:
        """Applies, per schedule, the latest update scheduled in [self._checked, upto]."""
        due = []
        for key, (schedule, wrappers) in self._groups.items():
            for t in range(upto, self._checked - 1, -1):
                update, sparsity = schedule(t)
                if update:
                    due.append((wrappers, sparsity, isinstance(key, tuple)))
                    break
        self._checked = upto + 1
        if not due:
            return
        # The JAX trainer keeps the training state outside the variables between epochs;
        # its public sync puts it back so that the masks are computed from current weights
        # (and the next step picks the new masks up). Other backends need nothing.
        sync = getattr(self.model, "jax_state_sync", None)
        if callable(sync):
            sync()
        for wrappers, sparsity, together in due:
            if together:
                update_masks_together(wrappers, sparsity, step=self._step)
            else:
                for w in wrappers:
                    w.update_masks(sparsity, step=self._step)

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        # Counting happens here, never in on_train_batch_end: overriding that hook would make
        # Keras convert the logs to Python numbers, a device sync, after every batch.
        if not self._started:
            if any(w.pruning_step is None for w in self._wrappers):
                self._wait_for_build(batch)
                return
            self._start()
        elif self._prev_batch is not None:
            self._step += batch - self._prev_batch if batch > self._prev_batch else 1
        self._prev_batch = batch
        if self._waiting:
            if any(w.pruning_step is None for w in self._wrappers):
                return
            self._begin_groups()
        if self._step >= self._checked:
            self._apply_due(self._step)

    def _wait_for_build(self, batch: int) -> None:
        # A model that fit builds in its first step (a subclassed model never called before,
        # on the TensorFlow backend) has no masks before that step: count from 0 and apply
        # the updates due so far at the first step after it is built.
        self._step, self._checked, self._prev_batch = 0, 0, batch
        self._started, self._waiting = True, True

    def _close_execution(self) -> None:
        """Counts the steps of the last execution, whose end no batch-begin hook saw."""
        if self._prev_batch is None:
            return
        per_execution = int(getattr(self.model, "steps_per_execution", 1) or 1)
        steps_per_epoch = (self.params or {}).get("steps")
        last = per_execution
        if steps_per_epoch:
            last = max(1, min(per_execution, steps_per_epoch - self._prev_batch))
        self._step += last
        self._prev_batch = None

    def _write_step(self) -> None:
        # Once an epoch: the step reaches the variables and optimizer momentum that moved
        # masked (invisible) entries is undone, so the stored weights show the zeros.
        for w in self._wrappers:
            w.bake()

    def on_epoch_end(
        self, epoch: int | None = None, logs: dict | None = None, batch: int | None = None
    ) -> None:
        # tfmot's custom loops call on_epoch_end(batch=-1); the epoch number is not used.
        if self._started:
            self._close_execution()
            self._write_step()
            if logs is not None and self._wrappers:
                # Shown on Keras's progress bar after each epoch and kept in the History.
                logs["sparsity"] = sparsity(
                    [m for w in self._wrappers for _, m in w.pruned_weights]
                )

    def on_train_end(self, logs: dict | None = None) -> None:
        if not self._started:
            return
        self._close_execution()
        if self._step - 1 >= self._checked:
            self._apply_due(self._step - 1)
        for w in self._wrappers:
            w.detach_driver()  # the variables hold the step now; nothing refers back here
        # A callback listed before this one may already have restored other weights and masks.
        warn_replaced_masks(self.model, stacklevel=3)
        short, ends = [], []
        for key, (schedule, wrappers) in self._groups.items():
            end = schedule.end_step
            if end is None or end < 0 or self._step > end:
                continue
            target = schedule(end)[1]
            if isinstance(key, tuple):  # pruned together: the total is what reaches the target
                reached = sparsity([m for w in wrappers for _, m in w.pruned_weights])
                by_channels = wrappers[0].channels is not None
                if by_channels:  # the share of channel groups (rounding may keep more)
                    reached = channel_fraction(wrappers)
                if by_channels or reached < target - 1e-6:
                    short.append(f"group '{key[1]}' at {reached:.1%} of {target:.1%}")
                    ends.append(end)
                continue
            for w in wrappers:
                reached = w.mask_sparsity()
                # A block or N:M pattern reaches its own share (partial blocks, short groups):
                # stopping before the last update is what counts.
                if reached < target - 1e-6 or not w.pattern.unstructured:
                    short.append(f"'{w.name}' at {reached:.1%} of {target:.1%}")
                    ends.append(end)
        if short and max(ends) not in self._told_short:
            end = max(ends)
            self._told_short.add(end)
            warnings.warn(
                f"Pruning target not reached: training stopped after {self._step} steps, "
                f"{end + 1 - self._step} step(s) before the schedule's end_step={end}; "
                + ", ".join(short)
                + ". Train longer (more epochs) or lower end_step. (Told once per callback "
                "and end_step: later `fit` calls that stop short of it are not reported.)",
                UserWarning,
                stacklevel=2,
            )


class PruningSummaries(keras.callbacks.TensorBoard):
    """TensorBoard callback that also logs the sparsity of every pruned layer.

    Writes, next to Keras's usual TensorBoard scalars, one scalar per wrapper named
    `pruning/<layer>/sparsity` (the fraction of masked entries over its pruned weights) at the
    end of every epoch. Use it together with `UpdatePruningStep`.

    Args:
        log_dir: Directory of the TensorBoard event files.
        **kwargs: Any other `keras.callbacks.TensorBoard` argument.

    Raises:
        TypeError: If `log_dir` is not a string or path.

    Example:

    >>> import tempfile, numpy as np, keras, tfprune
    >>> model = tfprune.prune_low_magnitude(
    ...     keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)]))
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> logs = tempfile.mkdtemp()
    >>> history = model.fit(np.ones((8, 8)), np.ones((8, 4)), verbose=0, callbacks=[
    ...     tfprune.UpdatePruningStep(), tfprune.PruningSummaries(logs)])
    >>> import os
    >>> sorted(os.listdir(logs))
    ['train']
    >>> tfprune.PruningSummaries(None)
    Traceback (most recent call last):
    ...
    TypeError: Argument `log_dir` must be a directory path. Received: log_dir=None of type NoneType
    """

    def __init__(self, log_dir: Any, **kwargs: Any) -> None:
        if not isinstance(log_dir, (str, os.PathLike)):
            raise TypeError(
                "Argument `log_dir` must be a directory path. "
                f"Received: log_dir={log_dir!r} of type {type(log_dir).__name__}"
            )
        super().__init__(log_dir=os.fspath(log_dir), **kwargs)

    def on_epoch_end(
        self, epoch: int | None = None, logs: dict | None = None, batch: int | None = None
    ) -> None:
        # tfmot's custom loops call on_epoch_end(batch=-1); the epoch number is not used.
        logs = dict(logs or {})
        for w in pruning_wrappers(self.model):
            logs[f"pruning/{w.name}/sparsity"] = w.mask_sparsity()
        super().on_epoch_end(epoch, logs)
