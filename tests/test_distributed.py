"""Pruning under tf.distribute: masks equal on every replica and to a single-device run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

WORKER = os.path.join(os.path.dirname(__file__), "distributed_worker.py")
pytestmark = pytest.mark.slow


def child_env(**extra):
    env = dict(os.environ)
    env.pop("TF_CONFIG", None)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env.update(extra)
    return env


def run_worker(mode, out, timeout=240, **env):
    subprocess.run(
        [sys.executable, WORKER, mode, str(out)],
        env=child_env(**env),
        check=True,
        timeout=timeout,
        capture_output=True,
    )
    with np.load(out) as data:
        return dict(data)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    return run_worker("single", tmp_path_factory.mktemp("single") / "single.npz")


def replicas(arrays, prefix):
    return [arrays[k] for k in sorted(arrays) if k.startswith(prefix)]


def assert_same_as_single(arrays, single):
    masks = [k for k in single if k.startswith("mask_")]
    assert masks
    for key in masks:
        prefix = key.rsplit("_replica", 1)[0]
        copies = replicas(arrays, prefix + "_replica")
        assert len(copies) >= 1
        for copy in copies:
            np.testing.assert_array_equal(copy, single[key])
        for copy in replicas(arrays, prefix.replace("mask_", "kernel_") + "_replica"):
            np.testing.assert_allclose(copy, single[key.replace("mask_", "kernel_")], atol=1e-5)
    for key in (k for k in single if k.startswith("step_")):
        assert int(arrays[key]) == int(single[key]) == 32


def test_mirrored_strategy_on_two_logical_cpus(tmp_path, single):
    arrays = run_worker("mirrored", tmp_path / "mirrored.npz")
    assert len(replicas(arrays, "mask_0_0_replica")) == 2
    assert_same_as_single(arrays, single)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_multi_worker_mirrored_strategy_with_two_processes(tmp_path, single):
    cluster = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
    procs = []
    try:
        for index in range(2):
            config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
            procs.append(
                subprocess.Popen(
                    [sys.executable, WORKER, "multiworker", str(tmp_path / f"w{index}.npz")],
                    env=child_env(TF_CONFIG=json.dumps(config)),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
            )
        for proc in procs:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err.decode(errors="replace")[-3000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for index in range(2):
        with np.load(tmp_path / f"w{index}.npz") as data:
            assert_same_as_single(dict(data), single)
