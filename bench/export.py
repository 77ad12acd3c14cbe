"""LeNet-300-100 at 90% sparsity: our LiteRT export against the stock converter's sparse route.

Run as `python -m bench.export` (`--model demo` for `tfprune.demo.lenet_300_100()`, which has
`Rescaling(1/255)` inside and takes raw pixels). Trains briefly on the embedded MNIST sample,
prunes with `tfprune` to 90%, strips, then writes the same stripped model four ways (float32
and int8, each by `tfprune.export.to_tflite` and by the stock converter with
EXPERIMENTAL_SPARSITY) and prints side by side: file bytes, whether the file loads and runs in
LiteRT with its default delegate (tested in a child process, since a file can crash the
interpreter), median single-row latency (1 thread, repeats interleaved across files) and test
accuracy, next to the information floor of the pruned weights.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

import tfprune
import tfprune.demo
from tfprune.datasets import load_mnist_sample
from tfprune.export import VerificationError, convert, modes, to_tflite, verify


def lenet_300_100() -> keras.Model:
    inputs = keras.Input((28, 28), name="image")
    x = keras.layers.Flatten(name="flatten")(inputs)
    x = keras.layers.Dense(300, activation="relu", name="fc1")(x)
    x = keras.layers.Dense(100, activation="relu", name="fc2")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(x), name="lenet")


MODELS = {"bench": lenet_300_100, "demo": tfprune.demo.lenet_300_100}


def train_pruned(epochs: int, sparsity: float, seed: int = 0, model: str = "bench"):
    """Dense warm-up, gradual pruning to `sparsity`, fine-tuning; returns the stripped model.

    `model` is "bench" (inputs scaled to [0, 1] here) or "demo" (raw pixels; it rescales).
    """
    keras.utils.set_random_seed(seed)
    (x_train, y_train), (x_test, y_test) = load_mnist_sample()
    scale = 1.0 if model == "demo" else 255.0
    x_train = x_train.astype("float32") / scale
    x_test = x_test.astype("float32") / scale
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model = MODELS[model]()
    model.compile(keras.optimizers.Adam(1e-3), loss, metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=64, epochs=epochs, verbose=0)
    steps = math.ceil(len(x_train) / 64)
    schedule = tfprune.PolynomialDecay(0.0, sparsity, begin_step=0, end_step=steps * epochs)
    pruned = tfprune.prune_low_magnitude(model, schedule)
    pruned.compile(keras.optimizers.Adam(1e-3), loss, metrics=["accuracy"])
    pruned.fit(
        x_train,
        y_train,
        batch_size=64,
        epochs=2 * epochs,
        verbose=0,
        callbacks=[tfprune.UpdatePruningStep()],
    )
    stripped = tfprune.strip_pruning(pruned)
    return stripped, (x_train, y_train), (x_test, y_test)


def information_floor(model: keras.Model, value_bytes: int) -> float:
    """Sum over kernels of nnz * value_bytes + size * H(density) / 8 bytes."""
    total = 0.0
    for layer in model.layers:
        if not isinstance(layer, keras.layers.Dense):
            continue
        kernel = keras.ops.convert_to_numpy(layer.kernel)
        p = np.count_nonzero(kernel) / kernel.size
        entropy = 0.0 if p in (0.0, 1.0) else -(p * math.log2(p) + (1 - p) * math.log2(1 - p))
        total += np.count_nonzero(kernel) * value_bytes + kernel.size * entropy / 8
    return total


def loads(path: str) -> tuple[bool, str]:
    try:
        verify.smoke_test(path)
    except VerificationError as error:
        return False, str(error).rsplit(": ", 1)[-1]
    return True, ""


def _interleaved_us(calls: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median µs of each call, the calls interleaved `repeats` times."""
    times: dict[str, list[float]] = {key: [] for key in calls}
    for _ in range(repeats):
        for key, call in calls.items():
            start = time.perf_counter()
            call()
            times[key].append(time.perf_counter() - start)
    return {key: float(np.median(t) * 1e6) for key, t in times.items()}


def interleaved_latency_us(
    paths: list[str], row: np.ndarray | dict[str, np.ndarray], repeats: int
) -> dict[str, float]:
    """Median µs of one invoke per file on `row` (one for all, or one per path), interleaved."""
    from ai_edge_litert.interpreter import Interpreter

    calls = {}
    for path in paths:
        runner = Interpreter(model_path=path, num_threads=1).get_signature_runner()
        name = list(runner.get_input_details())[0]
        feed = {name: row[path] if isinstance(row, dict) else row}
        runner(**feed)
        calls[path] = functools.partial(runner, **feed)
    return _interleaved_us(calls, repeats)


def interleaved_invoke_us(
    paths: list[str], repeats: int, builtin: bool = False
) -> dict[str, float]:
    """Median µs of `Interpreter.invoke()` per file, interleaved across the files, with the
    input set once (as LiteRT's benchmark tool times a model: no Python marshalling of inputs
    and outputs), 1 thread; LiteRT's default delegate, or only its builtin kernels."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    options: dict = {"num_threads": 1}
    if builtin:
        options["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    calls = {}
    for path in paths:
        interpreter = Interpreter(model_path=path, **options)
        interpreter.allocate_tensors()
        for detail in interpreter.get_input_details():
            row = np.random.default_rng(0).random(detail["shape"]).astype(detail["dtype"])
            interpreter.set_tensor(detail["index"], row)
        for _ in range(5):  # warm up: a delegate prepares its weights on the first runs
            interpreter.invoke()
        calls[path] = interpreter.invoke
    return _interleaved_us(calls, repeats)


def accuracy(path: str, model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(verify.run_tflite(path, model, [x])[0].argmax(-1) == y))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2, help="dense warm-up epochs")
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--repeats", type=int, default=500, help="latency repeats per file")
    parser.add_argument("--model", choices=sorted(MODELS), default="bench")
    args = parser.parse_args()

    stripped, (x_train, _), (x_test, y_test) = train_pruned(
        args.epochs, args.sparsity, model=args.model
    )
    calibration = x_train[:256]
    out = tempfile.mkdtemp(prefix="tfprune-bench-")
    files = {}
    for label, quantize in (("float32", None), ("int8", "int8")):
        data = calibration if quantize else None
        path = os.path.join(out, f"ours_{label}.tflite")
        to_tflite(stripped, path, quantize=quantize, representative_data=data)
        files[f"ours {label} sparse"] = path
        for name, sparsity in (("stock", True), ("dense", False)):
            path = os.path.join(out, f"{name}_{label}.tflite")
            with open(path, "wb") as f:
                f.write(
                    convert.to_flatbuffer(
                        stripped,
                        mode=modes.check_quantize(quantize),
                        representative_data=[calibration] if quantize else None,
                        stock_sparsity=sparsity,
                    )
                )
            files[f"{name} {label}" + (" EXPERIMENTAL_SPARSITY" if sparsity else "")] = path

    status = {label: loads(path) for label, path in files.items()}
    runnable = [files[label] for label, (ok, _) in status.items() if ok]
    latency = interleaved_latency_us(runnable, x_test[:1], args.repeats)
    floors = {"float32": information_floor(stripped, 4), "int8": information_floor(stripped, 1)}

    report = tfprune.sparsity_report(stripped)
    print(
        f"LeNet-300-100 ({args.model} model), kernels {report.sparsity:.1%} sparse, "
        f"test rows {len(x_test)}"
    )
    columns = ("file", "bytes", "floor", "loads+runs", "latency us", "accuracy")
    header = "{:<38}{:>11}{:>10}  {:<11}{:>11}{:>10}".format(*columns)
    print(header)
    print("-" * len(header))
    for label, path in files.items():
        ok, reason = status[label]
        kind = "int8" if "int8" in label else "float32"
        size = os.path.getsize(path)
        lat = f"{latency[path]:.1f}" if ok else "-"
        acc = f"{accuracy(path, stripped, x_test, y_test):.4f}" if ok else "-"
        loaded = "yes" if ok else "NO"
        print(f"{label:<38}{size:>11,}{floors[kind]:>10,.0f}  {loaded:<11}{lat:>11}{acc:>10}")
        if not ok:
            print(f"    {reason}")
    print("\nFloor = nnz * value bytes + H(mask)/8 over the three kernels (no biases, no graph).")
    print(f"Files in {out}")


if __name__ == "__main__":
    main()
