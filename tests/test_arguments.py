"""Bad arguments get one kind of error everywhere: the argument named, and what was received.

Every public function checks through `tfprune.utils.checks` and `tfprune.schedules.as_schedule`,
so the same mistake reads the same in each of them.
"""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest

import tfprune
from tfprune.utils.checks import check_number

L = keras.layers


def _mlp() -> keras.Model:
    inputs = keras.Input((6,))
    hidden = L.Dense(8, activation="relu", name="hidden")(inputs)
    return keras.Model(inputs, L.Dense(3, name="out")(hidden))


def _rows(n: int = 16) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, 6)).astype("float32")


@pytest.mark.parametrize(
    "schedule", [tfprune.PolynomialDecay(0.0, 0.5, 0, 10), tfprune.ConstantSparsity(0.5, 0)]
)
def test_a_schedule_refuses_a_step_before_the_first(schedule):
    with pytest.raises(ValueError, match=r"`step` must be >= 0. Received: step=-3"):
        schedule(-3)


@pytest.mark.parametrize("to_prune", ["model", "layer"])
def test_a_number_for_the_schedule_names_pruning_schedule(to_prune):
    target = _mlp() if to_prune == "model" else L.Dense(2)
    with pytest.raises(TypeError, match=r"`pruning_schedule`.*Received: pruning_schedule=0.5"):
        tfprune.prune_low_magnitude(target, 0.5)
    with pytest.raises(TypeError, match=r"`pruning_schedule`.*Received: pruning_schedule=0.5"):
        tfprune.prune_channels(_mlp(), 0.5)


def test_a_schedule_of_the_layers_dict_names_layers_and_the_selector():
    with pytest.raises(TypeError, match=r"`layers` maps 'hidden' to 0.5"):
        tfprune.prune_low_magnitude(_mlp(), layers={"hidden": 0.5})


@pytest.mark.parametrize("call", ["trim", "prune_one_shot"])
@pytest.mark.parametrize(
    ("dampening", "error"), [(True, TypeError), ("0.1", TypeError), (-0.5, ValueError)]
)
def test_dampening_is_checked_alike_by_trim_and_one_shot(call, dampening, error):
    match = r"`dampening` must be (a number )?>= 0. Received: dampening="
    with pytest.raises(error, match=match):
        if call == "trim":
            pruned = tfprune.prune_channels(_mlp(), tfprune.ConstantSparsity(0.5, 0))
            tfprune.trim(pruned, calibration_data=_rows(), dampening=dampening)
        else:
            tfprune.prune_one_shot(_mlp(), _rows(), 0.5, dampening=dampening)


def test_a_large_dampening_is_a_strong_ridge_not_an_error():
    pruned = tfprune.prune_channels(_mlp(), tfprune.ConstantSparsity(0.5, 0))
    small = tfprune.trim(pruned, calibration_data=_rows(), dampening=5e3)
    assert small.get_layer("hidden").units == 4
    one_shot = tfprune.prune_one_shot(_mlp(), _rows(), 0.5, dampening=5e3)
    assert tfprune.sparsity_report(one_shot).sparsity == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(round_to=2.5), TypeError, r"`round_to` must be an integer. Received: round_to=2.5"),
        (dict(round_to=0), ValueError, r"`round_to` must be >= 1. Received: round_to=0"),
        (dict(criterion=2), TypeError, r'`criterion` must be "l2" or "l1". Received: criterion=2'),
        (dict(allocation="all"), ValueError, r'`allocation` must be "layer" or "global"'),
    ],
)
def test_prune_channels_refuses_a_wrong_type_with_a_type_error(kwargs, error, match):
    with pytest.raises(error, match=match):
        tfprune.prune_channels(_mlp(), **kwargs)


def test_allocation_is_one_choice_for_both_kinds_of_pruning():
    for call in (tfprune.prune_low_magnitude, tfprune.prune_channels):
        with pytest.raises(ValueError, match=r'`allocation` must be "layer" or "global"'):
            call(_mlp(), allocation="owls")
        with pytest.raises(TypeError, match=r'`allocation` must be "layer" or "global"'):
            call(_mlp(), allocation=1)


def test_nan_calibration_data_refit_nothing():
    pruned = tfprune.prune_channels(_mlp(), tfprune.ConstantSparsity(0.5, 0))
    rows = _rows()
    rows[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"`calibration_data` holds 1 NaN or Inf value"):
        tfprune.trim(pruned, calibration_data=rows)


def test_int8_export_from_nan_representative_data_writes_no_file(tmp_path):
    pytest.importorskip("ai_edge_litert")
    path = tmp_path / "model.tflite"
    rows = np.full((8, 6), np.nan, dtype="float32")
    with pytest.raises(ValueError, match=r"`representative_data` holds 48 NaN or Inf value"):
        tfprune.export.to_tflite(_mlp(), path, quantize="int8", representative_data=rows)
    assert not os.path.exists(path) and os.listdir(tmp_path) == []


def test_number_checks_refuse_bools_and_nan():
    with pytest.raises(TypeError, match="Received: sparsity=True of type bool"):
        check_number("sparsity", True, 0.0, 1.0)
    with pytest.raises(ValueError, match=r"must be in \[0, 1\). Received: sparsity=nan"):
        check_number("sparsity", float("nan"), 0.0, 1.0)
    with pytest.raises(ValueError, match="must be >= 0. Received: dampening=inf"):
        check_number("dampening", float("inf"), 0.0, None)
