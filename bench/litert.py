"""LiteRT side of the benchmark: `python -m bench.litert DATA.npz REPEATS FILE...`.

For every file: whether it loads and runs once with LiteRT's default delegate (checked in a
further child process, since a bad sparse layout can kill the interpreter with SIGFPE); then, for
the files that do, test accuracy (one row per invoke, 1 thread) and median single-row latency in
microseconds, with repeats interleaved across files so that machine noise hits all alike.
Prints one line `@@bench@@ {json}`.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from bench.export import interleaved_latency_us, loads
from bench.worker import MARK


def file_accuracy(path: str, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of the file on `x`, invoking the signature runner one row at a time."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=path, num_threads=1).get_signature_runner()
    name = list(runner.get_input_details())[0]
    hits = 0
    for row, label in zip(x, y, strict=True):
        out = next(iter(runner(**{name: row[None]}).values()))
        hits += int(np.argmax(out) == label)
    return hits / len(x)


def main() -> None:
    """Measures the files named on the command line; see the module docstring."""
    data_path, repeats, paths = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    with np.load(data_path) as d:
        x, y = d["x_test"].astype("float32"), d["y_test"]
    status = {path: loads(path) for path in paths}
    runnable = [path for path, (ok, _) in status.items() if ok]
    latency = interleaved_latency_us(runnable, x[:1], repeats) if runnable else {}
    result = {
        path: {
            "loads": ok,
            "reason": reason,
            "latency_us": latency.get(path),
            "accuracy": file_accuracy(path, x, y) if ok else None,
        }
        for path, (ok, reason) in status.items()
    }
    print(MARK + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
