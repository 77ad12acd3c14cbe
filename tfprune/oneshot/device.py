"""SparseGPT and Wanda on the Keras backend, in float32: the same algorithms as
`tfprune.oneshot.sparsegpt` and `tfprune.oneshot.wanda` (the host float64 solvers), run with
`keras.ops` on the backend's device.

Wanda's mask: each output's smallest `|w| * ||x||`, found exactly by bisection on the scores'
bit patterns, row by row, then the remainder over the outputs' next-in-line scores, ties to the
earlier entry as on the host.

SparseGPT, per column block (128 columns), in three steps:

* the mask: the block's share of the smallest `w^2 / [U]_jj^2`, found exactly by bisection on
  the scores' bit patterns (non-negative floats order as their bits), ties to the earlier
  entry in row-major order, as a stable sort would; N:M: each group's m smallest, chosen when
  the group is reached;
* the column loop: each column's pruned entries, divided by `U_jj`, are the errors spread over
  the block's later columns along row j of `U` (one rank-1 update per column);
* the rest: the block's errors `E` solve `E U_block = W_before - W_after` (one triangular
  solve), and the later columns take `W -= E U[block, later]` (one matrix product).

The masks and the loop are compiled through Keras (a small model's `predict_on_batch` with
`jit_compile`: XLA on TensorFlow, `jit` on JAX; the backend is never imported here); PyTorch
runs them eagerly. A Cholesky factor that fails (or is not finite) in float32 falls
back to the host float64 solver with the dampening raised, with a warning that says so.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import warnings
from collections.abc import Callable

import keras
import numpy as np
from keras import ops

from tfprune.calibration.ridge import damped
from tfprune.masks.magnitude import num_pruned
from tfprune.oneshot import sparsegpt as host

__all__ = ["sparsegpt", "wanda_mask"]

# The dampening is raised this many times (x10 each) before the solver gives up.
_RETRIES = 4
# Above every score's bits (non-negative finite float32 scores are below 0x7F800000).
_LARGEST = 2**31 - 1
# Factors up to this size are computed directly (a Cholesky factor and a triangular solve);
# larger ones by halves.
_DIRECT = 512


class _Compiled(keras.Model):
    """`fn` as a model whose `predict_on_batch` Keras compiles with XLA (TensorFlow) or `jit`
    (JAX); the backend is never imported here."""

    def __init__(self, fn: Callable):
        super().__init__(name=f"tfprune_{fn.__name__}")
        self._fn = fn
        self.jit_compile = True
        self.built = True

    def call(self, inputs):
        return self._fn(*inputs)


def _compiled(fn: Callable) -> Callable:
    """`fn` compiled for the active backend (eager where it does not compile: PyTorch)."""
    if keras.backend.backend() not in ("tensorflow", "jax"):
        return fn
    model = _Compiled(fn)

    def run(*args):
        with _quiet_retracing():
            return model.predict_on_batch(args)

    return run


class _Retracing(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


@contextlib.contextmanager
def _quiet_retracing():
    """TensorFlow's log quiet about retracing while a step runs: the steps are traced once per
    weight shape (a few per model), which its heuristic takes for a mistake."""
    log, quiet = logging.getLogger("tensorflow"), _Retracing()
    log.addFilter(quiet)
    try:
        yield
    finally:
        log.removeFilter(quiet)


def _factor(gram: np.ndarray, dampening: float):
    """The upper factor `U` (`U^T U = H^-1`, H damped) as a float32 tensor, and the dead
    inputs; None where the factor fails (see `_inverse_factor`)."""
    h = gram.copy()
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    h = damped(h, dampening)
    try:
        u = _inverse_factor(ops.convert_to_tensor(h, "float32"))
        ok = bool(ops.convert_to_numpy(ops.all(ops.isfinite(u))))
    except Exception:  # the backends' own errors for a matrix that is not positive definite
        return None, dead
    return (u if ok else None), dead


def _inverse_factor(h):
    """`U = V^-1` for the upper-triangular `V` with `V V^T = h` (then `U^T U = h^-1`), by
    halves, so that most of the work is matrix products. With `h = [[A, B], [B^T, C]]` and
    `V = [[V1, W], [0, V2]]`: `V2 V2^T = C`; `W = B V2^-T`; `V1 V1^T = A - W W^T` (the Schur
    complement); and `U = [[U1, -U1 W U2], [0, U2]]` with `U1 = V1^-1`, `U2 = V2^-1`. Up to
    `_DIRECT` inputs, `V` is the Cholesky factor of `h` with its rows and columns reversed,
    inverted by one triangular solve."""
    n = h.shape[0]
    if n <= _DIRECT:
        lower = ops.cholesky(ops.flip(ops.flip(h, 0), 1))
        v = ops.flip(ops.flip(lower, 0), 1)
        return ops.solve_triangular(v, ops.eye(n, dtype=h.dtype), lower=False)
    half = n // 2
    u2 = _inverse_factor(h[half:, half:])
    w = ops.matmul(h[:half, half:], ops.transpose(u2))
    u1 = _inverse_factor(h[:half, :half] - ops.matmul(w, ops.transpose(w)))
    top = ops.concatenate([u1, -ops.matmul(ops.matmul(u1, w), u2)], axis=1)
    bottom = ops.concatenate([ops.zeros((n - half, half), h.dtype), u2], axis=1)
    return ops.concatenate([top, bottom], axis=0)


def _smallest(bits, count):
    """True at the `count` smallest entries of each row of the int32 matrix `bits`, ties to
    the earlier entry (a stable sort's first `count`), by bisection on each row's values."""

    def narrow(lo, hi):
        mid = lo + (hi - lo) // 2
        enough = ops.sum(ops.cast(bits <= mid[:, None], "int32"), axis=1) >= count
        return ops.where(enough, lo, mid), ops.where(enough, mid, hi)

    # count(<= lo) < count and count(<= hi) >= count in every row; a row already narrowed
    # to hi - lo = 1 stays as it is.
    start = (ops.min(bits, axis=1) - 1, ops.max(bits, axis=1))
    _, kth = ops.while_loop(lambda lo, hi: ops.any(hi - lo > 1), narrow, start)
    kth = kth[:, None]
    below = bits < kth
    tied = bits == kth
    need = count - ops.sum(ops.cast(below, "int32"), axis=1, keepdims=True)
    return ops.logical_or(
        below, ops.logical_and(tied, ops.cumsum(ops.cast(tied, "int32"), axis=1) <= need)
    )


def _score_bits(scores):
    """Non-negative float32 `scores` as int32 bit patterns, which order as the scores do."""
    # Viewed as a column: `ops.view` needs a static last dimension when traced.
    return ops.reshape(ops.view(ops.reshape(scores, (-1, 1)), "int32"), ops.shape(scores))


def _bits(w, diag, dead):
    """The scores `w^2 / d^2` as int32 bit patterns, dead inputs -1."""
    return ops.where(dead[None, :], -1, _score_bits(ops.square(w / diag[None, :])))


def _select(w, diag, dead, share):
    """The block's mask: its `share` smallest scores."""
    flat = ops.reshape(_bits(w, diag, dead), (1, -1))
    return ops.reshape(_smallest(flat, share), ops.shape(w))


def _sweep(w, pruned, diag, u):
    """The column loop with a fixed mask; returns the block's columns after it (pruned
    entries ~0, not yet zeroed)."""
    scale = ops.cast(pruned, w.dtype) / diag[None, :]

    def column(i, w1):
        error = ops.take(w1, i, axis=1) * ops.take(scale, i, axis=1)
        return w1 - ops.outer(error, ops.take(u, i, axis=0))

    return ops.fori_loop(0, ops.shape(w)[1], column, w)


def _n_m_sweep(m: int, n: int):
    """The column loop of an N:M block: each group of `n` columns chooses its `m` smallest
    scores per row when it is reached, then runs its columns."""

    def sweep(w, diag, dead, u):
        rows, width = ops.shape(w)
        earlier = ops.triu(ops.ones((n, n), "bool"), 1)  # [k, j]: k before j

        def group(g, state):
            w1, pruned = state
            at = g * n + ops.arange(n)
            bits = _bits(ops.take(w1, at, axis=1), ops.take(diag, at), ops.take(dead, at))
            # Rank of each entry in its row: smaller scores, and equal ones before it.
            below = bits[:, None, :] < bits[:, :, None]
            tie = ops.logical_and(bits[:, None, :] == bits[:, :, None], ops.transpose(earlier))
            rank = ops.sum(ops.cast(ops.logical_or(below, tie), "int32"), axis=-1)
            chosen = ops.cast(rank < m, w.dtype)
            place = ops.one_hot(at, width, dtype=w.dtype)  # [n, width]
            pruned = pruned + ops.matmul(chosen, place)
            scale = chosen / ops.take(diag, at)[None, :]
            for i in range(n):
                error = ops.take(w1, at[i], axis=1) * scale[:, i]
                w1 = w1 - ops.outer(error, ops.take(u, at[i], axis=0))
            return w1, pruned

        start = (w, ops.zeros((rows, width), w.dtype))
        w1, pruned = ops.fori_loop(0, width // n, group, start)
        return w1, pruned > 0.5

    return sweep


def _wanda(w, norms, base, extra):
    """Wanda's mask: each row's `base` smallest `|w| * norm`, then the `extra` smallest
    next-in-line scores over the rows (one more each), ties to the earlier entry."""
    bits = _score_bits(ops.abs(w) * norms[None, :])
    pruned = _smallest(bits, base)
    rest = ops.where(pruned, _LARGEST, bits)
    least = ops.min(rest, axis=1)
    columns = ops.arange(ops.shape(w)[1], dtype="int32")
    # Each row's first smallest entry not yet pruned (argmin's tie rule is not the same on
    # every backend).
    at = ops.min(ops.where(rest == least[:, None], columns[None, :], _LARGEST), axis=1)
    rows = ops.reshape(_smallest(ops.reshape(least, (1, -1)), extra), (-1,))
    more = ops.logical_and(rows[:, None], columns[None, :] == at[:, None])
    return ops.logical_or(pruned, more)


def wanda_mask(matrix: np.ndarray, squares: np.ndarray, sparsity: float) -> np.ndarray:
    """`tfprune.oneshot.wanda.wanda_mask` on the backend in float32 (numpy in, numpy out)."""
    outputs = matrix.shape[0]
    base, extra = divmod(num_pruned(matrix.size, sparsity), outputs)
    (step,) = _steps(keras.backend.backend(), "wanda")
    pruned = step(
        ops.convert_to_tensor(matrix, "float32"),
        ops.sqrt(ops.convert_to_tensor(squares, "float32")),
        ops.convert_to_tensor(base, "int32"),
        ops.convert_to_tensor(extra, "int32"),
    )
    return np.asarray(ops.convert_to_numpy(pruned), bool)


@functools.cache
def _steps(backend: str, m_by_n: tuple[int, int] | str | None) -> tuple[Callable, ...]:
    """The compiled steps for `backend` (the cache key: Keras may switch backends only in a
    new process, but tests compare them): SparseGPT's unstructured or N:M ones, or Wanda's
    (`m_by_n="wanda"`)."""
    del backend
    if m_by_n == "wanda":
        return (_compiled(_wanda),)
    if m_by_n is None:
        return _compiled(_select), _compiled(_sweep)
    return (_compiled(_n_m_sweep(*m_by_n)),)


def sparsegpt(
    matrix: np.ndarray,
    gram: np.ndarray,
    sparsity: float,
    *,
    m_by_n: tuple[int, int] | None = None,
    choose: Callable[[np.ndarray], np.ndarray] | None = None,
    block: int = 128,
    dampening: float = 0.01,
) -> tuple[np.ndarray, np.ndarray]:
    """SparseGPT on the backend in float32; the arguments and results of
    `tfprune.oneshot.sparsegpt.sparsegpt` (numpy in, numpy out; the result float64)."""
    u, dead = _factor(gram, dampening)
    if u is None:
        return _fallback(matrix, gram, sparsity, m_by_n, choose, block, dampening)
    outputs, inputs = matrix.shape
    if m_by_n is not None:
        block = max(m_by_n[1], block - block % m_by_n[1])
    diag = ops.diagonal(u)
    dead_t = ops.convert_to_tensor(dead)
    k = num_pruned(matrix.size, sparsity)
    fixed = None
    if choose is not None:
        d = ops.convert_to_numpy(diag).astype(np.float64)
        score = matrix.astype(np.float64) ** 2 / d[None, :] ** 2
        score[:, dead] = 0.0
        fixed = np.asarray(choose(score), bool)
    steps = _steps(keras.backend.backend(), None if choose is not None else m_by_n)
    rest = ops.convert_to_tensor(matrix, "float32")
    done, masks = [], []
    for start in range(0, inputs, block):
        end = min(start + block, inputs)
        w = rest[:, : end - start]
        u_block, d_block, dead_block = u[start:end, start:end], diag[start:end], dead_t[start:end]
        if fixed is not None:
            pruned = ops.convert_to_tensor(fixed[:, start:end])
            after = steps[1](w, pruned, d_block, u_block)
        elif m_by_n is None:
            share = round(k * end / inputs) - round(k * start / inputs)
            pruned = steps[0](w, d_block, dead_block, ops.convert_to_tensor(share, "int32"))
            after = steps[1](w, pruned, d_block, u_block)
        else:
            after, pruned = steps[0](w, d_block, dead_block, u_block)
        done.append(ops.where(pruned, 0.0, after))
        masks.append(pruned)
        if end < inputs:
            # The block's errors E: E U_block = w - after.
            errors = ops.transpose(
                ops.solve_triangular(ops.transpose(u_block), ops.transpose(w - after), lower=True)
            )
            rest = rest[:, end - start :] - ops.matmul(errors, u[start:end, end:])
    new = ops.convert_to_numpy(ops.concatenate(done, axis=1)).astype(np.float64)
    mask = ops.convert_to_numpy(ops.concatenate(masks, axis=1)).astype(bool)
    if not np.all(np.isfinite(new)):
        return _fallback(matrix, gram, sparsity, m_by_n, choose, block, dampening)
    return new, mask


def _fallback(matrix, gram, sparsity, m_by_n, choose, block, dampening):
    """The host float64 solver, the dampening raised x10 until its factor holds."""
    for _ in range(_RETRIES):
        dampening = max(dampening, 1e-4) * 10
        try:
            out = host.sparsegpt(
                matrix,
                gram,
                sparsity,
                m_by_n=m_by_n,
                choose=choose,
                block=block,
                dampening=dampening,
            )
        except np.linalg.LinAlgError:
            continue
        warnings.warn(
            "SparseGPT's float32 Cholesky factor failed on this weight's Hessian; it was "
            f"solved in float64 on the host with the dampening raised to {dampening:g}.",
            stacklevel=3,
        )
        return out
    raise ValueError(
        f"SparseGPT's Hessian is not positive definite even with dampening {dampening:g}; "
        "give more calibration data, or prune this weight with method='wanda'."
    )
