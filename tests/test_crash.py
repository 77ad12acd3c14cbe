"""A training process killed with SIGKILL mid-ramp resumes to the same masks and weights."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

WORKER = os.path.join(os.path.dirname(__file__), "crash_worker.py")
pytestmark = pytest.mark.slow


def env():
    e = dict(os.environ)
    e["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return e


def run(mode, directory, *extra):
    subprocess.run(
        [sys.executable, WORKER, mode, str(directory), *extra],
        env=env(),
        check=True,
        timeout=300,
        capture_output=True,
    )


def result(directory):
    with np.load(directory / "result.npz") as data:
        return [data[f"w{i}"] for i in range(len(data.files))]


def kill_mid_run(mode, directory, epoch):
    proc = subprocess.Popen(
        [sys.executable, WORKER, mode, str(directory), "--hang-at", str(epoch)],
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 240
        while not (directory / "marker").exists():
            assert proc.poll() is None, "the training process ended before it could be killed"
            assert time.monotonic() < deadline, "the training process never reached the kill point"
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not (directory / "result.npz").exists()


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    directory = tmp_path_factory.mktemp("straight")
    run("straight", directory)
    return result(directory)


@pytest.mark.parametrize("mode", ["backup", "checkpoint"])
def test_sigkill_then_resume_matches_a_run_that_never_stopped(tmp_path, straight, mode):
    kill_mid_run(mode, tmp_path, epoch=2)  # the ramp runs from step 2 to 36; epoch 2 is 16-23
    run(mode, tmp_path)
    resumed = result(tmp_path)
    assert len(resumed) == len(straight)
    for a, b in zip(straight, resumed, strict=True):
        if set(np.unique(a)) <= {0.0, 1.0}:
            np.testing.assert_array_equal(a, b)  # masks (and the step) exactly
        else:
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
