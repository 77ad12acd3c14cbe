"""Callbacks that drive pruning inside `model.fit`: `UpdatePruningStep`, `PruningSummaries`."""

from __future__ import annotations

import os
import warnings
from typing import Any

import keras
from keras import ops

from tfprune.core.find import pruning_wrappers
from tfprune.core.groups import UpdateGroup, update_groups
from tfprune.core.restored import warn_replaced_masks
from tfprune.core.wrapper import PruneLowMagnitude
from tfprune.masks.magnitude import sparsity

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
        # The end_steps already reported short, kept across `fit` calls: training in several
        # calls (an epoch at a time) stops short of them by design at every call but the last.
        self._told_short: set[int] = set()
        self._reset()

    def _reset(self) -> None:
        self._wrappers: list[PruneLowMagnitude] = []
        # None until the masks exist (a model that fit builds has none before its first step).
        self._groups: list[UpdateGroup] | None = None
        self._step = 0  # the index of the next step
        self._checked = 0  # the first step whose updates have not been looked for
        self._batch: int | None = None  # the last batch begun, None at an execution's end
        self._counting = False

    @property
    def step(self) -> int:
        """The number of training steps done so far (the index of the next step)."""
        return self._step

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._reset()
        self._wrappers = _wrappers_of(self.model)
        for w in self._wrappers:
            w.attach_driver()

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        # Counting happens here, never in on_train_batch_end: overriding that hook would make
        # Keras convert the logs to Python numbers, a device sync, after every batch.
        if not self._counting:
            self._count_from_state()
        elif self._batch is not None:
            self._step += batch - self._batch if batch > self._batch else 1
        self._batch = batch
        if self._groups is None:
            if any(w.pruning_step is None for w in self._wrappers):
                return
            self._groups = self._drive()
        if self._step >= self._checked:
            self._apply_due(self._step)

    def _count_from_state(self) -> None:
        # Read at the first batch, after callbacks such as BackupAndRestore restored the state:
        # one read of the device state per fit; the step lives on the host from here on. A
        # model that fit builds in its first step (a subclassed model never called before, on
        # the TensorFlow backend) has no masks yet: it counts from 0, and the updates due so
        # far are applied at the first step after it is built.
        built = all(w.pruning_step is not None for w in self._wrappers)
        if built:
            self._step = max(int(ops.convert_to_numpy(w.pruning_step)) for w in self._wrappers)
        self._checked = self._step
        self._counting = True

    def _drive(self) -> list[UpdateGroup]:
        # The wrappers read the step from here when they are saved.
        for w in self._wrappers:
            w.attach_driver(lambda: self._step)
        return update_groups(self._wrappers)

    def _apply_due(self, upto: int) -> None:
        """Applies, per group, the latest update its schedule names in [checked, upto]."""
        due = []
        for group in self._groups or ():
            sparsity_due = group.due(self._checked, upto)
            if sparsity_due is not None:
                due.append((group, sparsity_due))
        self._checked = upto + 1
        if not due:
            return
        # The JAX trainer keeps the training state outside the variables between epochs;
        # its public sync puts it back so that the masks are computed from current weights
        # (and the next step picks the new masks up). Other backends need nothing.
        sync = getattr(self.model, "jax_state_sync", None)
        if callable(sync):
            sync()
        for group, sparsity_due in due:
            group.update(sparsity_due, step=self._step)

    def _close_execution(self) -> None:
        """Counts the steps of the last execution, whose end no batch-begin hook saw."""
        if self._batch is None:
            return
        per_execution = int(getattr(self.model, "steps_per_execution", 1) or 1)
        steps_per_epoch = (self.params or {}).get("steps")
        last = per_execution
        if steps_per_epoch:
            last = max(1, min(per_execution, steps_per_epoch - self._batch))
        self._step += last
        self._batch = None

    def on_epoch_end(
        self, epoch: int | None = None, logs: dict | None = None, batch: int | None = None
    ) -> None:
        # tfmot's custom loops call on_epoch_end(batch=-1); the epoch number is not used.
        if not self._counting:
            return
        self._close_execution()
        # Once an epoch: the step reaches the variables and optimizer momentum that moved
        # masked (invisible) entries is undone, so the stored weights show the zeros.
        for w in self._wrappers:
            w.bake()
        if logs is not None and self._wrappers:
            # Shown on Keras's progress bar after each epoch and kept in the History.
            logs["sparsity"] = sparsity([m for w in self._wrappers for _, m in w.pruned_weights])

    def on_train_end(self, logs: dict | None = None) -> None:
        if not self._counting:
            return
        self._close_execution()
        if self._step - 1 >= self._checked:
            self._apply_due(self._step - 1)
        for w in self._wrappers:
            w.detach_driver()  # the variables hold the step now; nothing refers back here
        # A callback listed before this one may already have restored other weights and masks.
        warn_replaced_masks(self.model, stacklevel=3)
        _warn_shortfall(self._groups or [], self._step, self._told_short)


def _warn_shortfall(groups: list[UpdateGroup], step: int, told: set[int]) -> None:
    """Warns once per `end_step` (remembered in `told`) when training stopped after `step`
    steps, before the end of a schedule, saying how far each layer or group is from it."""
    short, ends = [], []
    for group in groups:
        found = group.shortfall(step)
        short += found
        ends += [group.schedule.end_step] * len(found)
    if not short or max(ends) in told:
        return
    end = max(ends)
    told.add(end)
    warnings.warn(
        f"Pruning target not reached: training stopped after {step} steps, "
        f"{end + 1 - step} step(s) before the schedule's end_step={end}; "
        + ", ".join(short)
        + ". Train longer (more epochs) or lower end_step. (Told once per callback "
        "and end_step: later `fit` calls that stop short of it are not reported.)",
        UserWarning,
        stacklevel=3,
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
