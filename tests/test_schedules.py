"""Schedules against the closed form of Zhu & Gupta (2017), at hand-picked steps."""

from __future__ import annotations

import keras
import pytest

import tfprune


def closed_form(t, s_i, s_f, t0, t1, power=3):
    p = min(1.0, max(0.0, (t - t0) / (t1 - t0)))
    return s_f + (s_i - s_f) * (1 - p) ** power


@pytest.mark.parametrize("step", [0, 100, 150, 250, 500, 999, 1000, 1100, 5000])
def test_polynomial_decay_matches_closed_form(step):
    schedule = tfprune.PolynomialDecay(0.1, 0.9, begin_step=100, end_step=1000, frequency=50)
    _, sparsity = schedule(step)
    expected = 0.1 if step < 100 else closed_form(step, 0.1, 0.9, 100, 1000)
    assert sparsity == pytest.approx(expected, abs=1e-12)


def test_polynomial_decay_updates_on_the_grid_and_at_end_step():
    schedule = tfprune.PolynomialDecay(0.0, 0.8, begin_step=10, end_step=95, frequency=20)
    updates = [t for t in range(200) if schedule(t)[0]]
    assert updates == [10, 30, 50, 70, 90, 95]
    assert schedule(95) == (True, 0.8)


def test_polynomial_decay_is_frozen_after_end_step():
    schedule = tfprune.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=10, frequency=5)
    assert schedule(11) == (False, 0.5)
    assert schedule(10**9) == (False, 0.5)


def test_polynomial_decay_one_shot_when_begin_equals_end():
    schedule = tfprune.PolynomialDecay(0.0, 0.75, begin_step=7, end_step=7)
    assert schedule(6) == (False, 0.0)
    assert schedule(7) == (True, 0.75)
    assert schedule(8) == (False, 0.75)


def test_polynomial_decay_power_one_is_linear():
    schedule = tfprune.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=100, power=1)
    assert schedule(50)[1] == pytest.approx(0.25)


def test_polynomial_decay_cubic_prunes_fast_early():
    schedule = tfprune.PolynomialDecay(0.0, 0.9, begin_step=0, end_step=100)
    first_half = schedule(50)[1]
    assert first_half > 0.9 * 0.85  # 7/8 of the ramp is done at mid-way


def test_constant_sparsity_updates_every_frequency_steps():
    schedule = tfprune.ConstantSparsity(0.6, begin_step=5, frequency=10)
    assert [t for t in range(40) if schedule(t)[0]] == [5, 15, 25, 35]
    assert all(schedule(t)[1] == 0.6 for t in range(40))


def test_constant_sparsity_stops_at_end_step_and_updates_there():
    schedule = tfprune.ConstantSparsity(0.6, begin_step=0, end_step=25, frequency=10)
    assert [t for t in range(60) if schedule(t)[0]] == [0, 10, 20, 25]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(initial_sparsity=-0.1), ValueError, "initial_sparsity"),
        (dict(final_sparsity=1.0), ValueError, "final_sparsity"),
        (dict(final_sparsity="0.9"), TypeError, "final_sparsity"),
        (dict(begin_step=-1), ValueError, "begin_step"),
        (dict(begin_step=1.5), TypeError, "begin_step"),
        (dict(begin_step=200, end_step=100), ValueError, "end_step"),
        (dict(frequency=0), ValueError, "frequency"),
        (dict(frequency=True), TypeError, "frequency"),
        (dict(power=0), ValueError, "power"),
        (dict(initial_sparsity=0.5, final_sparsity=0.2), ValueError, "final_sparsity"),
    ],
)
def test_polynomial_decay_rejects_bad_arguments(kwargs, error, match):
    args = dict(initial_sparsity=0.0, final_sparsity=0.9, begin_step=0, end_step=100)
    args.update(kwargs)
    with pytest.raises(error, match=match) as info:
        tfprune.PolynomialDecay(**args)
    assert "Received" in str(info.value)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(target_sparsity=1.2), ValueError),
        (dict(begin_step=10, end_step=5), ValueError),
        (dict(end_step=-2), ValueError),
        (dict(frequency=2.0), TypeError),
    ],
)
def test_constant_sparsity_rejects_bad_arguments(kwargs, error):
    args = dict(target_sparsity=0.5, begin_step=0)
    args.update(kwargs)
    with pytest.raises(error, match="Received"):
        tfprune.ConstantSparsity(**args)


def test_schedule_rejects_non_integer_step():
    with pytest.raises(TypeError, match="step"):
        tfprune.ConstantSparsity(0.5, 0)(1.0)


@pytest.mark.parametrize(
    "schedule",
    [
        tfprune.PolynomialDecay(0.1, 0.8, begin_step=3, end_step=30, power=2, frequency=4),
        tfprune.ConstantSparsity(0.3, begin_step=2, end_step=9, frequency=3),
    ],
)
def test_schedules_round_trip_through_keras_serialization(schedule):
    config = keras.saving.serialize_keras_object(schedule)
    again = keras.saving.deserialize_keras_object(config)
    assert again == schedule
    assert [again(t) for t in range(40)] == [schedule(t) for t in range(40)]
