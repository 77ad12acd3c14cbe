"""Shared fixtures: small real models and a slice of the embedded MNIST sample."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
from tiny_models import digits, mlp

import tfprune


def pytest_addoption(parser):
    parser.addoption(
        "--full",
        action="store_true",
        default=False,
        help="run the slow tests in their full form, and the tests marked `full` "
        "(make test-full); without it they run in their cheapest form (make test)",
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--full"):
        return
    left = [item for item in items if item.get_closest_marker("full") is None]
    if len(left) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in left])
        items[:] = left


@pytest.fixture(scope="session")
def full(request) -> bool:
    """Whether the suite runs in its full form (`make test-full`)."""
    return bool(request.config.getoption("--full"))


@pytest.fixture(scope="session")
def mnist():
    """512 training and 256 test digits from the embedded sample, as float32 in [0, 1]."""
    return digits(512, 256)


def small_mlp(hidden: int = 32) -> keras.Model:
    return mlp(hidden)


def compile_model(model: keras.Model, **kwargs) -> keras.Model:
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        **kwargs,
    )
    return model


def masks_of(model: keras.Model) -> list[np.ndarray]:
    return [
        keras.ops.convert_to_numpy(m)
        for w in tfprune.core.find.pruning_wrappers(model)
        for _, m in w.pruned_weights
    ]


@pytest.fixture(autouse=True)
def _seeded():
    keras.utils.set_random_seed(1234)
    yield


@pytest.fixture
def tmp_cwd(tmp_path):
    old = os.getcwd()
    os.chdir(tmp_path)
    yield tmp_path
    os.chdir(old)
