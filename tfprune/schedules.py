"""Pruning schedules: pure functions of the training step.

A schedule answers, for the step about to be trained, whether the masks are recomputed now and at
which sparsity. Step 0 is the first training batch. Schedules hold no state, so one instance can
serve many layers and many `fit` calls.
"""

from __future__ import annotations

import abc
import numbers
from typing import Any

import keras

from tfprune.utils.checks import check_int, check_number

__all__ = [
    "PruningSchedule",
    "PolynomialDecay",
    "ConstantSparsity",
    "default_schedule",
    "as_schedule",
]


def _check_sparsity(name: str, value: Any) -> float:
    return check_number(name, value, 0.0, 1.0)


def _check_step(step: Any) -> int:
    # Step 0 is the first training batch; there is no step before it.
    return check_int("step", step, 0)


class PruningSchedule(abc.ABC):
    """Base class of pruning schedules: `schedule(step) -> (should_update, sparsity)`.

    Subclasses implement `__call__` as a pure function of the integer step and `get_config`
    returning their constructor arguments. Register a subclass with
    `keras.saving.register_keras_serializable()` so that models that use it load without
    `custom_objects`. A schedule that ends sets `end_step` (the last step that may update the
    masks); the base class's None means it never ends, and then no "target not reached"
    warning is given for it.

    Attributes:
        end_step: The last step that updates the masks, or None (or -1) for no end.

    Raises:
        TypeError: If the class itself, or a subclass missing `__call__` or `get_config`, is
            instantiated.

    Example:

    >>> class Every10(PruningSchedule):
    ...     def __call__(self, step):
    ...         return step % 10 == 0, 0.5
    ...     def get_config(self):
    ...         return {}
    >>> Every10()(20), Every10()(21)
    ((True, 0.5), (False, 0.5))
    >>> PruningSchedule()
    Traceback (most recent call last):
    ...
    TypeError: Can't instantiate abstract class PruningSchedule...
    """

    end_step: int | None = None

    @abc.abstractmethod
    def __call__(self, step: int) -> tuple[bool, float]:
        """Returns `(should_update, sparsity)` for the training step `step`."""

    @abc.abstractmethod
    def get_config(self) -> dict[str, Any]:
        """Returns the constructor arguments as a flat dict."""

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> PruningSchedule:
        """Creates a schedule from the output of `get_config()`."""
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash((type(self), tuple(sorted(self.get_config().items()))))


def _is_update_step(step: int, begin_step: int, end_step: int, frequency: int) -> bool:
    if step < begin_step or (end_step >= 0 and step > end_step):
        return False
    return (step - begin_step) % frequency == 0 or step == end_step


@keras.saving.register_keras_serializable(package="tfprune")
class PolynomialDecay(PruningSchedule):
    """Gradual pruning with a polynomial ramp (Zhu & Gupta 2017): cubic by default.

    Sparsity at step `t` follows the paper's formula

        s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (t1 - t0)) ** power,   t0 <= t <= t1

    with `s_i = initial_sparsity`, `s_f = final_sparsity`, `t0 = begin_step`, `t1 = end_step`;
    before `t0` nothing is pruned and after `t1` the masks stay frozen at `s_f`. Masks are updated
    at `t0, t0 + frequency, t0 + 2 * frequency, ...` up to `t1`, and at `t1` itself, so that the
    target is reached exactly even when `t1 - t0` is not a multiple of `frequency`. The values
    match tfmot's `PolynomialDecay` at every step where both update. If `begin_step == end_step`
    the sparsity jumps to `final_sparsity` at that step (one-shot pruning).

    Args:
        initial_sparsity: Sparsity `s_i` at `begin_step`, in [0, 1).
        final_sparsity: Sparsity `s_f` reached at `end_step`, in [`initial_sparsity`, 1).
        begin_step: First step that updates the masks, >= 0.
        end_step: Step at which `final_sparsity` is reached, >= `begin_step`.
        power: Exponent of the ramp, > 0. Defaults to 3 (the paper's cubic ramp).
        frequency: Steps between two mask updates (the paper's Δt), >= 1. Defaults to 100.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If an argument is out of range, or `end_step < begin_step`, or
            `final_sparsity < initial_sparsity`.

    Example:

    >>> schedule = PolynomialDecay(0.0, 0.9, begin_step=0, end_step=1000)
    >>> schedule(0)
    (True, 0.0)
    >>> should_update, sparsity = schedule(500)
    >>> should_update, round(sparsity, 4)
    (True, 0.7875)
    >>> schedule(550)[0], schedule(1000)
    (False, (True, 0.9))
    """

    def __init__(
        self,
        initial_sparsity: float,
        final_sparsity: float,
        begin_step: int,
        end_step: int,
        power: float = 3,
        frequency: int = 100,
    ) -> None:
        self.initial_sparsity = _check_sparsity("initial_sparsity", initial_sparsity)
        self.final_sparsity = _check_sparsity("final_sparsity", final_sparsity)
        self.begin_step = check_int("begin_step", begin_step, 0)
        self.end_step = check_int("end_step", end_step, 0)
        self.frequency = check_int("frequency", frequency, 1)
        if isinstance(power, bool) or not isinstance(power, numbers.Real):
            raise TypeError(
                f"Argument `power` must be a number. Received: power={power!r} "
                f"of type {type(power).__name__}"
            )
        if not float(power) > 0:
            raise ValueError(f"Argument `power` must be > 0. Received: power={power}")
        self.power = power
        if self.end_step < self.begin_step:
            raise ValueError(
                "Argument `end_step` must be >= `begin_step`. "
                f"Received: begin_step={begin_step}, end_step={end_step}"
            )
        if self.final_sparsity < self.initial_sparsity:
            raise ValueError(
                "Argument `final_sparsity` must be >= `initial_sparsity`: masks only grow. "
                f"Received: initial_sparsity={initial_sparsity}, final_sparsity={final_sparsity}"
            )

    def sparsity(self, step: int) -> float:
        """Returns the ramp's sparsity at `step` (whether or not the masks update there)."""
        step = _check_step(step)
        span = self.end_step - self.begin_step
        if span == 0:
            progress = 1.0 if step >= self.begin_step else 0.0
        else:
            progress = min(1.0, max(0.0, (step - self.begin_step) / span))
        s_i, s_f = self.initial_sparsity, self.final_sparsity
        # Exact zero at progress 1 keeps the target value free of rounding.
        return s_f + (s_i - s_f) * (1.0 - progress) ** self.power if progress < 1.0 else s_f

    def __call__(self, step: int) -> tuple[bool, float]:
        """Returns `(should_update, sparsity)` for the step about to be trained.

        Args:
            step: The training step, 0 for the first batch.

        Returns:
            A pair of a Python `bool` and a Python `float`.
        """
        step = _check_step(step)
        update = _is_update_step(step, self.begin_step, self.end_step, self.frequency)
        return update, self.sparsity(step)

    def get_config(self) -> dict[str, Any]:
        return {
            "initial_sparsity": self.initial_sparsity,
            "final_sparsity": self.final_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "power": self.power,
            "frequency": self.frequency,
        }


@keras.saving.register_keras_serializable(package="tfprune")
class ConstantSparsity(PruningSchedule):
    """Prunes to one fixed sparsity, recomputing the masks every `frequency` steps.

    Masks are updated at `begin_step, begin_step + frequency, ...` up to `end_step` (forever
    when `end_step == -1`), and at `end_step` itself; between updates they stay fixed.

    Args:
        target_sparsity: The sparsity applied at every update, in [0, 1).
        begin_step: First step that updates the masks, >= 0.
        end_step: Last step that may update the masks, >= `begin_step`, or -1 for no end.
            Defaults to -1.
        frequency: Steps between two mask updates, >= 1. Defaults to 100.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If an argument is out of range or `end_step` lies before `begin_step`.

    Example:

    >>> schedule = ConstantSparsity(0.5, begin_step=10, frequency=5)
    >>> schedule(9), schedule(10), schedule(12), schedule(15)
    ((False, 0.5), (True, 0.5), (False, 0.5), (True, 0.5))
    """

    def __init__(
        self,
        target_sparsity: float,
        begin_step: int,
        end_step: int = -1,
        frequency: int = 100,
    ) -> None:
        self.target_sparsity = _check_sparsity("target_sparsity", target_sparsity)
        self.begin_step = check_int("begin_step", begin_step, 0)
        self.end_step = check_int("end_step", end_step, -1)
        self.frequency = check_int("frequency", frequency, 1)
        if self.end_step != -1 and self.end_step < self.begin_step:
            raise ValueError(
                "Argument `end_step` must be -1 or >= `begin_step`. "
                f"Received: begin_step={begin_step}, end_step={end_step}"
            )

    def __call__(self, step: int) -> tuple[bool, float]:
        """Returns `(should_update, target_sparsity)` for the step about to be trained.

        Args:
            step: The training step, 0 for the first batch.

        Returns:
            A pair of a Python `bool` and a Python `float`.
        """
        step = _check_step(step)
        update = _is_update_step(step, self.begin_step, self.end_step, self.frequency)
        return update, self.target_sparsity

    def get_config(self) -> dict[str, Any]:
        return {
            "target_sparsity": self.target_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "frequency": self.frequency,
        }


def default_schedule(*, fixed_pattern: bool = False) -> PruningSchedule:
    """tfmot's default schedule: 50% from step 0, masks recomputed every 100 steps.

    Args:
        fixed_pattern: Whether the masks follow a fixed pattern whose sparsity is set by the
            pattern itself (N:M): the pattern is then set at the first step and kept, as tfmot
            does. Defaults to False.

    Example:

    >>> default_schedule()
    ConstantSparsity(target_sparsity=0.5, begin_step=0, end_step=-1, frequency=100)
    >>> default_schedule(fixed_pattern=True)
    ConstantSparsity(target_sparsity=0.5, begin_step=0, end_step=0, frequency=1)
    """
    if fixed_pattern:
        return ConstantSparsity(0.5, begin_step=0, end_step=0, frequency=1)
    return ConstantSparsity(0.5, begin_step=0)


def as_schedule(
    value: Any, *, name: str = "pruning_schedule", default: PruningSchedule | None = None
) -> PruningSchedule:
    """`value` as a schedule: a `PruningSchedule`, its serialized config, or None for `default`.

    The one check of a schedule argument: every public function that takes a schedule calls it.

    Args:
        value: What was received.
        name: The argument's name, for the message. Defaults to "pruning_schedule".
        default: The schedule None stands for; None means `default_schedule()`. Defaults to
            None.

    Raises:
        TypeError: If `value` is neither None, a schedule, nor a schedule's config.

    Example:

    >>> as_schedule(None)
    ConstantSparsity(target_sparsity=0.5, begin_step=0, end_step=-1, frequency=100)
    >>> as_schedule(0.5)
    Traceback (most recent call last):
    ...
    TypeError: Argument `pruning_schedule` must be a tfprune.PruningSchedule (such as \
tfprune.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=1000)) or None. \
Received: pruning_schedule=0.5 of type float
    """
    if value is None:
        return default if default is not None else default_schedule()
    if isinstance(value, dict):
        value = keras.saving.deserialize_keras_object(value)
    if not isinstance(value, PruningSchedule):
        raise TypeError(
            f"Argument `{name}` must be a tfprune.PruningSchedule (such as "
            "tfprune.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=1000)) or None. "
            f"Received: {name}={value!r} of type {type(value).__name__}"
        )
    return value
