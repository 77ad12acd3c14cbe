"""The float32 solvers on the Keras backend against the float64 host solvers: Wanda's masks
the same, ties included; SparseGPT's masks and (to float32 rounding) weights the same on
well-conditioned layers, and its fallback to float64 with more dampening where the float32
Cholesky factor fails."""

from __future__ import annotations

import numpy as np
import pytest

import tfprune
from tfprune.oneshot import device, wanda
from tfprune.oneshot import sparsegpt as host


def layer(outputs: int = 24, inputs: int = 40, rows: int = 400):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((rows, inputs)) @ (np.eye(inputs) + 0.3 * rng.random((inputs, inputs)))
    return rng.standard_normal((outputs, inputs)).astype("float32"), x.T @ x


@pytest.mark.parametrize("m_by_n", [None, (2, 4), (1, 8)])
@pytest.mark.parametrize("block", [128, 16])
def test_the_backend_solver_gives_the_host_solvers_masks_and_weights(m_by_n, block):
    w, gram = layer()
    ours, mask = device.sparsegpt(w, gram, 0.5, m_by_n=m_by_n, block=block)
    want, want_mask = host.sparsegpt(w, gram, 0.5, m_by_n=m_by_n, block=block)
    np.testing.assert_array_equal(mask, want_mask)
    np.testing.assert_allclose(ours, want, rtol=1e-3, atol=1e-4)
    share = 0.5 if m_by_n is None else m_by_n[0] / m_by_n[1]
    assert np.count_nonzero(ours == 0) == round(share * w.size)
    error = host.output_error(w, ours, gram)
    assert error == pytest.approx(host.output_error(w, want, gram), rel=1e-3)
    assert error < host.output_error(w, np.where(mask, 0.0, w), gram)  # the update helps


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.77, 1.0])
@pytest.mark.parametrize("ties", [False, True])
def test_the_backend_wanda_mask_is_the_host_mask(sparsity, ties):
    rng = np.random.default_rng(4)
    w = rng.standard_normal((24, 40)).astype("float32")
    squares = rng.random(40) * 10
    if ties:  # few distinct scores: the counts are met by breaking ties, earliest first
        w = np.round(w).astype("float32")
        squares = np.ones(40)
    mask = device.wanda_mask(w, squares, sparsity)
    np.testing.assert_array_equal(mask, wanda.wanda_mask(w, squares, sparsity))
    assert mask.sum() == round(sparsity * w.size)


def test_a_fixed_mask_and_dead_inputs_are_handled_as_on_the_host():
    w, gram = layer()
    gram[5, :] = gram[:, 5] = 0.0  # an input never non-zero
    rule = np.random.default_rng(0).random(w.shape) < 0.3

    def choose(score):
        return rule | (score == 0)

    ours, mask = device.sparsegpt(w, gram, 0.3, choose=choose)
    want, want_mask = host.sparsegpt(w, gram, 0.3, choose=choose)
    np.testing.assert_array_equal(mask, want_mask)
    np.testing.assert_allclose(ours, want, rtol=1e-3, atol=1e-4)
    plain, plain_mask = device.sparsegpt(w, gram, 0.5)
    assert plain_mask[:, 5].all()  # a dead input goes first


def test_a_failing_float32_factor_falls_back_to_float64_with_more_dampening():
    rng = np.random.default_rng(0)
    v = rng.standard_normal((16, 1))
    gram = v @ v.T * 1e6 + 1e-9 * np.eye(16)  # rank one: float32 cannot factor it undamped
    w = rng.standard_normal((4, 16)).astype("float32")
    with pytest.warns(UserWarning, match="float64 on the host with the dampening raised"):
        new, mask = device.sparsegpt(w, gram, 0.5, dampening=0.0)
    assert np.all(np.isfinite(new)) and mask.sum() == 32


def test_precision_is_checked_and_float64_runs_on_the_host():
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((40,)), keras.layers.Dense(24, name="fc")])
    x = np.random.default_rng(1).standard_normal((200, 40)).astype("float32")
    with pytest.raises(ValueError, match="precision"):
        tfprune.prune_one_shot(model, x, 0.5, precision="float16")
    runs = {}
    for precision in ("float32", "float64"):
        pruned = tfprune.prune_one_shot(model, x, 0.5, precision=precision)
        runs[precision] = np.asarray(tfprune.strip_pruning(pruned).get_layer("fc").kernel)
    np.testing.assert_array_equal(runs["float32"] == 0, runs["float64"] == 0)
    np.testing.assert_allclose(runs["float32"], runs["float64"], rtol=1e-3, atol=1e-5)
