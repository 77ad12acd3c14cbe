"""How one-shot pruning grows: time and peak memory against depth, width and calibration tokens.

A KerasHub `LlamaBackbone` with random weights (the architecture of SmolLM2: gated FFN of
8/3 the width, grouped-query attention with 3 query heads per key-value head, head size 64)
is pruned to 50% by Wanda and by SparseGPT (`prune_one_shot`, its defaults: block by block,
the float32 solvers on the backend), varying one of three sizes from a base of 4 blocks,
width 384 and 2,048 calibration tokens (windows of 128): the blocks (2, 4, 8), the width
(256, 384, 576) and the tokens (1,024, 2,048, 4,096). Each run is a child process
(`python -m bench.growth run METHOD LAYERS WIDTH TOKENS`) so that its peak memory
(`ru_maxrss`, minus the child's memory before pruning) is its own; each also times one
forward pass over the same tokens. Printed: each run's seconds, seconds per block, its ratio
to a forward pass, its peak memory, and per size the growth exponent `d log(time) / d log(size)`
between its smallest and largest value (1 is linear). The solvers' work grows with the width
cubed (SparseGPT's factor) or squared (the products), independent of the tokens; the passes
over the calibration data grow linearly with the blocks and the tokens.

Run: `python -m bench.growth [--repeats N]` (`make bench-growth`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

ANSWER = "GROWTH-RESULT "
BASE = {"layers": 4, "width": 384, "tokens": 2048}
SIZES = {"layers": (2, 4, 8), "width": (256, 384, 576), "tokens": (1024, 2048, 4096)}
METHODS = ("wanda", "sparsegpt")
LENGTH = 128


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one(method: str, layers: int, width: int, tokens: int) -> dict:
    """One run in this process: build, time a forward pass, prune, measure."""
    import keras
    import keras_hub

    import tfprune

    keras.utils.set_random_seed(0)
    heads = width // 64
    backbone = keras_hub.models.LlamaBackbone(
        vocabulary_size=4096,
        num_layers=layers,
        num_query_heads=heads,
        num_key_value_heads=max(1, heads // 3),
        hidden_dim=width,
        intermediate_dim=width * 8 // 3,
    )
    ids = np.random.default_rng(1).integers(1, 4096, size=(tokens // LENGTH, LENGTH))
    data = {"token_ids": ids, "padding_mask": np.ones_like(ids, dtype=bool)}
    batch = 8
    backbone({k: v[:batch] for k, v in data.items()}, training=False)  # built and warm
    start = time.perf_counter()
    for i in range(0, len(ids), batch):
        backbone({k: v[i : i + batch] for k, v in data.items()}, training=False)
    forward = time.perf_counter() - start
    before = _rss_mib()
    start = time.perf_counter()
    tfprune.prune_one_shot(
        backbone,
        data,
        0.5,
        method=method,
        layers=["transformer_layer_*"],
        batch_size=batch,
        in_place=True,
    )
    seconds = time.perf_counter() - start
    return {
        "method": method,
        "layers": layers,
        "width": width,
        "tokens": tokens,
        "seconds": seconds,
        "forward_seconds": forward,
        "peak_mib": _rss_mib(),
        "added_mib": _rss_mib() - before,
    }


def configs() -> list[dict]:
    """The base, then each size varied alone (the base met once)."""
    out = [dict(BASE)]
    for size, values in SIZES.items():
        out += [{**BASE, size: v} for v in values if v != BASE[size]]
    return out


def _child(method: str, config: dict) -> dict:
    args = [str(config[k]) for k in ("layers", "width", "tokens")]
    child = subprocess.run(
        [sys.executable, "-m", "bench.growth", "run", method, *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    answer = [line for line in child.stdout.splitlines() if line.startswith(ANSWER)]
    if child.returncode != 0 or not answer:
        raise RuntimeError(f"bench.growth {method} {config} failed:\n{child.stderr[-3000:]}")
    return json.loads(answer[-1][len(ANSWER) :])


def run(repeats: int) -> list[dict]:
    """Every method at every config, `repeats` times interleaved; medians."""
    seen: dict[tuple, list[dict]] = {}
    for _ in range(repeats):
        for config in configs():
            for method in METHODS:
                result = _child(method, config)
                key = (method, config["layers"], config["width"], config["tokens"])
                seen.setdefault(key, []).append(result)
    rows = []
    for results in seen.values():
        row = dict(results[0])
        for field in ("seconds", "forward_seconds", "peak_mib", "added_mib"):
            row[field] = statistics.median(r[field] for r in results)
        rows.append(row)
    return rows


def exponents(rows: list[dict]) -> dict[tuple[str, str], float]:
    """Per method and size: `log(t_max / t_min) / log(size_max / size_min)`, the others at
    the base."""
    out = {}
    for method in METHODS:
        for size, values in SIZES.items():
            at = {}
            for r in rows:
                others = all(r[k] == BASE[k] for k in BASE if k != size)
                if r["method"] == method and others:
                    at[r[size]] = r["seconds"]
            lo, hi = min(values), max(values)
            out[method, size] = math.log(at[hi] / at[lo]) / math.log(hi / lo)
    return out


def report(rows: list[dict]) -> str:
    lines = [
        "| method | blocks | width | tokens | prune s | s per block | vs a forward pass | "
        "peak MiB | added MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['layers']} | {r['width']} | {r['tokens']:,} | "
            f"{r['seconds']:.2f} | {r['seconds'] / r['layers']:.2f} | "
            f"{r['seconds'] / r['forward_seconds']:.1f}x | {r['peak_mib']:.0f} | "
            f"{r['added_mib']:.0f} |"
        )
    lines += ["", "Growth exponent of the time, d log(time) / d log(size) (1 = linear):", ""]
    lines += ["| method | blocks | width | tokens |", "|---|---:|---:|---:|"]
    found = exponents(rows)
    for method in METHODS:
        lines.append(
            f"| {method} | " + " | ".join(f"{found[method, size]:.2f}" for size in SIZES) + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "run":
        method, layers, width, tokens = argv[1], *map(int, argv[2:5])
        print(ANSWER + json.dumps(one(method, layers, width, tokens)), flush=True)
        return
    parser = argparse.ArgumentParser(prog="python -m bench.growth")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(report(run(args.repeats)))


if __name__ == "__main__":
    main()
