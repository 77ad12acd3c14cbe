"""The core is keras.ops only: the same pruning job runs under the JAX and PyTorch backends."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

WORKER = os.path.join(os.path.dirname(__file__), "backend_worker.py")
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("backend", ["jax", "torch", "tensorflow"])
def test_prune_fit_save_load_strip_on_every_backend(backend):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    out = subprocess.run(
        [sys.executable, WORKER], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["backend"] == backend
    assert result["step"] == 16
    assert result["zeros"] == [round(0.75 * n) for n in result["sizes"]]
    assert result["strip_identical"]
    if backend != "tensorflow":
        assert not result["tensorflow_imported"]
    assert result["composite"] == ["inner/kernel", "outer/kernel"]
    # One-shot SparseGPT on every backend gives this process's result (float32 on the
    # backend, float64 on the host).
    sys.path.insert(0, os.path.dirname(WORKER))
    from backend_worker import one_shot_fingerprints

    expected = one_shot_fingerprints()
    for (zeros, *sums), (want_zeros, *want_sums) in zip(result["one_shot"], expected, strict=True):
        assert zeros == want_zeros
        assert sums == pytest.approx(want_sums, rel=1e-4)
