"""SparseGPT's solvers, tfprune's against the reference algorithm, on the same layer in one run.

The reference is SparseGPT as its authors run it (PyTorch, float32, on the active device:
here the CPU): the damped inverse Hessian's upper Cholesky factor, then column blocks of 128
whose masks are chosen from `w^2 / [U]_jj^2` and whose pruned weights' errors are spread over
the later columns, one column at a time inside a block and by one matrix product after it.
It is written here from the paper's Algorithm 1 (Frantar & Alistarh 2023), in torch, so that
both run in one process on the same weight and Hessian.

For each shape `[outputs, inputs]` (1024x1024, 2048x2048, 2048x5632 by default) and each
pattern (50% unstructured, 2:4), a random weight and the Gram matrix of `--rows` correlated
calibration rows; tfprune's float32 solver on the Keras backend (`tfprune.oneshot.device`, the
default), its float64 host solver (`precision="float64"`) and the reference alternate
`--repeats` times. Printed: the median seconds of each, the ratio of tfprune's float32 time to
the reference's, and each result's output error `||X dW^T||^2 / ||X W^T||^2`.
Run: `python -m bench.solvers [--repeats N] [--rows R] [--shapes 1024x1024,2048x2048]`
(`make bench-solvers`).
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import numpy as np

from tfprune.oneshot import device
from tfprune.oneshot.sparsegpt import output_error, sparsegpt

SHAPES = ((1024, 1024), (2048, 2048), (2048, 5632))
PATTERNS = {"50%": None, "2:4": (2, 4)}


def reference(weight, gram, sparsity: float, m_by_n=None, block: int = 128, damp: float = 0.01):
    """SparseGPT's column-block solver in torch float32; returns the pruned, updated weight."""
    import torch

    w = torch.as_tensor(weight, dtype=torch.float32).clone()
    h = torch.as_tensor(gram, dtype=torch.float32).clone()
    columns = w.shape[1]
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h += damp * torch.mean(torch.diag(h)) * torch.eye(columns)
    factor = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    for start in range(0, columns, block):
        end = min(start + block, columns)
        part, u = w[:, start:end].clone(), factor[start:end, start:end]
        kept, errors = torch.zeros_like(part), torch.zeros_like(part)
        diag = torch.diag(u)
        if m_by_n is None:
            score = part**2 / diag[None, :] ** 2
            cut = torch.sort(score.flatten())[0][int(score.numel() * sparsity)]
            pruned = score <= cut
        else:
            pruned = torch.zeros_like(part, dtype=torch.bool)
        for i in range(end - start):
            if m_by_n is not None and i % m_by_n[1] == 0:
                group = part[:, i : i + m_by_n[1]] ** 2 / diag[None, i : i + m_by_n[1]] ** 2
                lowest = torch.topk(group, m_by_n[0], dim=1, largest=False)[1]
                pruned.scatter_(1, i + lowest, True)
            column = part[:, i]
            q = torch.where(pruned[:, i], torch.zeros_like(column), column)
            kept[:, i] = q
            error = (column - q) / u[i, i]
            part[:, i:] -= error[:, None] * u[i, i:][None, :]
            errors[:, i] = error
        w[:, start:end] = kept
        w[:, end:] -= errors @ factor[start:end, end:]
    return w.numpy()


def layer(outputs: int, inputs: int, rows: int, seed: int = 0):
    """A random weight `[outputs, inputs]` and the Gram matrix of `rows` correlated inputs."""
    rng = np.random.default_rng(seed)
    mixing = np.eye(inputs) + rng.standard_normal((inputs, inputs)) / np.sqrt(inputs)
    x = (rng.standard_normal((rows, inputs)) @ mixing).astype(np.float32)
    weight = rng.standard_normal((outputs, inputs)).astype(np.float32)
    return weight, (x.T @ x).astype(np.float64)


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def run(shapes, repeats: int, rows: int) -> list[dict]:
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    results = []
    for outputs, inputs in shapes:
        weight, gram = layer(outputs, inputs, rows)
        for name, m_by_n in PATTERNS.items():
            ours, hosts, theirs = [], [], []
            device.sparsegpt(weight, gram, 0.5, m_by_n=m_by_n)  # compiles once per shape
            for _ in range(repeats):  # interleaved
                t, (mine, _) = _timed(partial(device.sparsegpt, weight, gram, 0.5, m_by_n=m_by_n))
                ours.append(t)
                t, (on_host, _) = _timed(partial(sparsegpt, weight, gram, 0.5, m_by_n=m_by_n))
                hosts.append(t)
                t, ref = _timed(partial(reference, weight, gram, 0.5, m_by_n))
                theirs.append(t)
            row = dict(
                shape=f"{outputs}x{inputs}",
                pattern=name,
                tfprune_s=statistics.median(ours),
                host_float64_s=statistics.median(hosts),
                reference_s=statistics.median(theirs),
                tfprune_error=output_error(weight, mine, gram),
                host_float64_error=output_error(weight, on_host, gram),
                reference_error=output_error(weight, ref, gram),
                tfprune_zeros=float(np.mean(mine == 0)),
            )
            row["ratio"] = row["tfprune_s"] / row["reference_s"]
            results.append(row)
            print(
                f"{row['shape']:>10} {name:>4}: tfprune {row['tfprune_s']:.2f} s "
                f"(error {row['tfprune_error']:.4f}), float64 host {row['host_float64_s']:.2f} s "
                f"(error {row['host_float64_error']:.4f}), reference {row['reference_s']:.2f} s "
                f"(error {row['reference_error']:.4f}), ratio {row['ratio']:.2f}x",
                flush=True,
            )
    return results


def _shapes(text: str):
    try:
        return tuple(tuple(int(v) for v in s.split("x")) for s in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shapes like 1024x1024,2048x5632; got {text!r}") from None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--shapes", type=_shapes, default=SHAPES)
    args = parser.parse_args(argv)
    run(args.shapes, args.repeats, args.rows)


if __name__ == "__main__":
    main()
