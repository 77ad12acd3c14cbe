"""LiteRT side of the benchmark: `python -m bench.litert DATA.npz REPEATS MODEL:FILE...`.

For every file: whether it loads and runs once with LiteRT's default delegate (checked in a
further child process, since a bad sparse layout can kill the interpreter with SIGFPE); then, for
the files that do, the test score (accuracy on the digits for the MNIST models, perplexity on the
held-out text for "lstm"; one row per invoke, 1 thread) and the median single-row latency in
microseconds, with repeats interleaved across files so that machine noise hits all alike.
Prints one line `@@bench@@ {json}`.
"""

from __future__ import annotations

import sys

import numpy as np

from bench.export import interleaved_latency_us, loads
from bench.messages import answer
from bench.protocol import score_logits


def file_score(path: str, x: np.ndarray, y: np.ndarray, task: str) -> float:
    """The file's test score on `x`, invoking the signature runner one row at a time.

    The variables of the file are reset before every row: the converter's fused LSTM keeps its
    hidden and cell state in variable tensors that carry over from one invoke to the next,
    whereas Keras starts every sequence from zeros.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=1)
    interpreter.allocate_tensors()
    runner = interpreter.get_signature_runner()
    name = list(runner.get_input_details())[0]
    logits = []
    for row in x:
        interpreter.reset_all_variables()
        logits.append(next(iter(runner(**{name: row[None]}).values()))[0])
    return score_logits(np.stack(logits), y, task)


def main() -> None:
    """Measures the files named on the command line; see the module docstring."""
    data_path, repeats, arguments = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    files = dict(reversed(argument.split(":", 1)) for argument in arguments)
    with np.load(data_path) as d:
        data = {
            "mnist": (d["x_test"].astype("float32"), d["y_test"]),
            "lm": (d["lm_x_test"].astype("int32"), d["lm_y_test"]),
        }
    task = {path: "lm" if model == "lstm" else "mnist" for path, model in files.items()}
    status = {path: loads(path) for path in files}
    runnable = [path for path, (ok, _) in status.items() if ok]
    rows = {path: data[task[path]][0][:1] for path in runnable}
    latency = interleaved_latency_us(runnable, rows, repeats) if runnable else {}
    result = {
        path: {
            "loads": ok,
            "reason": reason,
            "latency_us": latency.get(path),
            "accuracy": file_score(path, *data[task[path]], task[path]) if ok else None,
        }
        for path, (ok, reason) in status.items()
    }
    answer(result)


if __name__ == "__main__":
    main()
