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


JAX_WORKER = os.path.join(os.path.dirname(__file__), "jax_distribution_worker.py")


@pytest.fixture(scope="module")
def keras_distribution(tmp_path_factory):
    """One JAX child on two host devices: a single-device run, `DataParallel`, `ModelParallel`."""
    out = tmp_path_factory.mktemp("jax") / "runs.npz"
    env = child_env(
        KERAS_BACKEND="jax",
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
        PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(__file__))]),
    )
    done = subprocess.run(
        [sys.executable, JAX_WORKER, str(out)],
        env=env,
        cwd=os.path.dirname(__file__),
        timeout=300,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with np.load(out) as data:
        return {k: data[k] for k in data}


def assert_run_matches_single(runs, run, *, sparsity, steps):
    """`run` ("model_mlp_loaded_") has the single-device run's masks, kernels and steps."""
    single = "single_" + run.split("_")[1] + "_"
    masks = [k for k in runs if k.startswith(single) and k.endswith("_mask")]
    assert masks
    for key in masks:
        other = run + key.removeprefix(single)
        np.testing.assert_array_equal(runs[other], runs[key])
        assert abs(1 - runs[key].mean() - sparsity) < 0.01
        kernel = key.replace("_mask", "_kernel")
        np.testing.assert_allclose(runs[other.replace("_mask", "_kernel")], runs[kernel], atol=1e-5)
    for key in (k for k in runs if k.startswith(single) and k.endswith("_step")):
        assert int(runs[run + key.removeprefix(single)]) == int(runs[key]) == steps


def specs(runs, prefix):
    """`{wrapper_weight: (mask spec, kernel spec)}` of one run."""
    keys = [
        k.removesuffix("_mask_spec")
        for k in runs
        if k.startswith(prefix) and k.endswith("_mask_spec")
    ]
    return {
        k.removeprefix(prefix): (str(runs[k + "_mask_spec"]), str(runs[k + "_kernel_spec"]))
        for k in keys
        if k.removeprefix(prefix)[0].isdigit()
    }


@pytest.mark.parametrize("saved", ["", "loaded_"])
def test_keras_distribution_data_parallel_gives_the_same_masks_as_one_device(
    keras_distribution, saved
):
    assert_run_matches_single(keras_distribution, f"data_mlp_{saved}", sparsity=0.85, steps=32)
    found = specs(keras_distribution, f"data_mlp_{saved}")
    assert found and set(found.values()) == {("(None, None)", "(None, None)")}  # replicated


@pytest.mark.parametrize("saved", ["", "loaded_"])
def test_keras_distribution_model_parallel_shards_each_mask_like_its_kernel(
    keras_distribution, saved
):
    # The MLP's LayoutMap names only the kernels; masks follow them.
    found = specs(keras_distribution, f"model_mlp_{saved}")
    assert found == {
        "0_0": ("(None, 'model')", "(None, 'model')"),
        "1_0": ("('model', None)", "('model', None)"),
    }
    assert_run_matches_single(keras_distribution, f"model_mlp_{saved}", sparsity=0.85, steps=32)


@pytest.mark.parametrize("saved", ["", "loaded_"])
def test_keras_distribution_kerashub_layout_map_shards_the_masks_of_a_causal_lm(
    keras_distribution, saved
):
    # GemmaBackbone.get_layout_map shards the embedding, the attention projections and the
    # feed-forward kernels over both mesh axes; each mask gets its kernel's layout.
    found = specs(keras_distribution, f"model_gemma_{saved}")
    assert len(found) == 8  # embedding + 4 attention + 3 feed-forward kernels
    for mask_spec, kernel_spec in found.values():
        assert mask_spec == kernel_spec
        assert "'model'" in kernel_spec
    assert_run_matches_single(keras_distribution, f"model_gemma_{saved}", sparsity=0.7, steps=8)


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_one_shot_under_a_kerashub_layout_map_gives_the_single_device_result(
    keras_distribution, method
):
    # prune_one_shot in place under GemmaBackbone.get_layout_map: the solvers run on the
    # backend (float32), the kernels keep their sharding and each mask gets its kernel's.
    found = specs(keras_distribution, f"model_{method}_")
    assert len(found) == 8  # the embedding (by magnitude), 4 attention, 3 feed-forward kernels
    for mask_spec, kernel_spec in found.values():
        assert mask_spec == kernel_spec
        assert "'model'" in kernel_spec
    single = f"single_{method}_"
    masks = [k for k in keras_distribution if k.startswith(single) and k.endswith("_mask")]
    assert len(masks) == 8
    for key in masks:
        other = f"model_{method}_" + key.removeprefix(single)
        np.testing.assert_array_equal(keras_distribution[other], keras_distribution[key])
        assert 1 - keras_distribution[key].mean() == pytest.approx(0.5, abs=0.01)
        kernel = key.replace("_mask", "_kernel")
        np.testing.assert_allclose(
            keras_distribution[other.replace("_mask", "_kernel")],
            keras_distribution[kernel],
            atol=1e-5,
        )
