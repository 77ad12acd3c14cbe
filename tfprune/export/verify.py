"""Running a `.tflite` file in the stock LiteRT interpreter and comparing it with Keras."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np

from tfprune.export.modes import Mode
from tfprune.export.result import Verification, VerificationError

# Top-1 agreement counts the rows where Keras's top-1 output leads the runner-up by at least
# this fraction of the output scale: closer calls (a language model's near-tied next words, say)
# are within what 8-bit rounding may swap, and say nothing about the file.
DECISIVE_MARGIN = 0.01
_RANDOM_ROWS = 32
_MAX_ROWS = 256

# Loads and runs a file once. It runs in a child process because an unreadable sparse layout
# can kill the process (a division by zero inside DENSIFY) instead of raising.
_SMOKE_TEST = """
import sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter
runner = Interpreter(model_path=sys.argv[1], num_threads=1).get_signature_runner()
inputs = {}
for name, detail in runner.get_input_details().items():
    shape = [max(int(d), 1) for d in detail["shape"]]
    inputs[name] = np.zeros(shape, dtype=detail["dtype"])
runner(**inputs)
"""


def verification_inputs(model, representative_data: list[np.ndarray] | None) -> list[np.ndarray]:
    """The rows to compare on: up to 256 rows of the representative data, else 32 seeded rows.

    Seeded rows are uniform in [0, 1) for float inputs and 0 or 1 for integer inputs.
    """
    if representative_data is not None:
        return [a[:_MAX_ROWS] for a in representative_data]
    rng = np.random.default_rng(0)
    inputs = []
    from tfprune.export.convert import inputs_of

    for tensor in inputs_of(model):
        shape = [_RANDOM_ROWS] + [d if d is not None else 1 for d in tensor.shape[1:]]
        dtype = np.dtype(tensor.dtype)
        if np.issubdtype(dtype, np.integer):
            # Index inputs (an Embedding's, say) are only safe at small values.
            inputs.append(rng.integers(0, 2, shape).astype(dtype))
        else:
            inputs.append(rng.random(shape).astype(dtype))
    return inputs


def smoke_test(path: str) -> None:
    """Loads and invokes the file once in a child process with the default delegate.

    Raises:
        VerificationError: If the child fails or dies.
    """
    try:
        child = subprocess.run(
            [sys.executable, "-c", _SMOKE_TEST, path], capture_output=True, text=True, timeout=600
        )
    except subprocess.TimeoutExpired:
        raise VerificationError(
            "The TFLite file did not finish one invoke in LiteRT within 600 seconds."
        ) from None
    if child.returncode != 0:
        lines = [line for line in child.stderr.strip().splitlines() if line.strip()]
        if child.returncode < 0:
            reason = f"the interpreter process died with signal {-child.returncode}"
        else:
            reason = lines[-1] if lines else f"exit status {child.returncode}"
        raise VerificationError(
            f"The TFLite file does not load and run in LiteRT with its default delegate: {reason}"
        )


def runner(path: str, num_threads: int = 1):
    """The signature runner of a `.tflite` file in the stock interpreter (default delegate)."""
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=path, num_threads=num_threads).get_signature_runner()


def _ordered_outputs(outputs: dict) -> list[np.ndarray]:
    # Keras signatures name outputs output_0, output_1, ... in model order.
    def key(name: str):
        tail = name.rsplit("_", 1)[-1]
        return (0, int(tail)) if tail.isdigit() else (1, name)

    return [np.asarray(outputs[name]) for name in sorted(outputs, key=key)]


def _signature_inputs(signature, model, inputs: list[np.ndarray]) -> dict[str, np.ndarray]:
    from tfprune.export.convert import input_names

    expected = input_names(model)
    names = list(signature.get_input_details())
    if sorted(names) != sorted(expected):
        raise VerificationError(
            f"The TFLite signature inputs {names} are not the model inputs {expected}."
        )
    return dict(zip(expected, inputs, strict=True))


def fixed_batch(signature) -> int | None:
    """The batch size a signature runner's inputs are fixed to, or None for any batch."""
    for detail in signature.get_input_details().values():
        dims = detail.get("shape_signature", detail["shape"])
        if len(dims) and int(dims[0]) > 0:
            return int(detail["shape"][0])
    return None


def _padded(array: np.ndarray, rows: int) -> np.ndarray:
    """`array` cut or padded (by repeating its last row) to exactly `rows` rows."""
    if len(array) >= rows:
        return array[:rows]
    return np.concatenate([array, np.repeat(array[-1:], rows - len(array), axis=0)])


def run_tflite(path: str, model, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Runs the file on `inputs` (one array per model input) and returns its outputs in order.

    A file with a fixed batch size runs the rows in batches of that size.
    """
    signature = runner(path)
    feed = _signature_inputs(signature, model, inputs)
    batch = fixed_batch(signature)
    if batch is None:
        return _ordered_outputs(signature(**feed))
    rows = len(inputs[0])
    parts = []
    for start in range(0, rows, batch):
        chunk = {name: _padded(a[start : start + batch], batch) for name, a in feed.items()}
        kept = min(batch, rows - start)
        parts.append([o[:kept] for o in _ordered_outputs(signature(**chunk))])
    return [np.concatenate(outputs) for outputs in zip(*parts, strict=True)]


def keras_outputs(model, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """The Keras model's outputs on `inputs`, flattened as the file's signature orders them.

    A list of outputs keeps its order (the signature names them output_0, output_1, ...); a
    dict of outputs is ordered by key, as the signature's output names are.
    """
    import keras

    from tfprune.export.convert import as_model_input

    outputs = model.predict(as_model_input(model, inputs), verbose=0)
    return [np.asarray(o) for o in keras.tree.flatten(outputs)]


def compare(reference: list[np.ndarray], actual: list[np.ndarray], mode: Mode) -> Verification:
    """Measures LiteRT outputs against Keras outputs under the bounds of `mode`."""
    max_abs = 0.0
    scale = 1.0
    agreements = []
    for ref, got in zip(reference, actual, strict=True):
        got = got.reshape(ref.shape)
        max_abs = max(max_abs, float(np.max(np.abs(ref.astype(np.float64) - got))))
        scale = max(scale, float(np.max(np.abs(ref))))
        if ref.ndim >= 2 and ref.shape[-1] > 1:
            ref_rows = ref.reshape(-1, ref.shape[-1])
            got_rows = got.reshape(-1, ref.shape[-1])
            top2 = np.sort(ref_rows, axis=-1)[:, -2:]
            decisive = top2[:, 1] - top2[:, 0] >= DECISIVE_MARGIN * max(1.0, np.abs(ref).max())
            if decisive.any():
                same = ref_rows.argmax(-1) == got_rows.argmax(-1)
                agreements.append(float(np.mean(same[decisive])))
    agreement = min(agreements) if agreements else None
    return Verification(
        samples=int(reference[0].shape[0]),
        max_abs_error=max_abs,
        normalized_error=max_abs / scale,
        tolerance=mode.tolerance,
        top1_agreement=agreement,
        min_top1_agreement=mode.min_top1_agreement if agreement is not None else None,
    )


def verify(path: str, model, mode: Mode, inputs: list[np.ndarray]) -> Verification:
    """Loads `path` in LiteRT (child process first), runs it and checks it against Keras.

    Raises:
        VerificationError: If the file does not load and run, or breaks a bound.
    """
    smoke_test(path)
    result = compare(keras_outputs(model, inputs), run_tflite(path, model, inputs), mode)
    if not result.passed:
        agreement = ""
        if result.top1_agreement is not None:
            agreement = (
                f", top-1 agreement {result.top1_agreement:.3f} (bound {result.min_top1_agreement})"
            )
        raise VerificationError(
            f"The TFLite outputs differ from Keras beyond the bound for "
            f"quantize={mode.quantize!r}: "
            f"normalized error {result.normalized_error:.3g} (bound {result.tolerance:g})"
            f"{agreement}."
        )
    return result


def median_latency_us(path: str, model, inputs: list[np.ndarray], repeats: int = 200) -> float:
    """Median wall time of one invoke, in microseconds (1 thread, default delegate).

    The invoke is on one row, or on one batch for a file with a fixed batch size.
    """
    signature = runner(path)
    rows = fixed_batch(signature) or 1
    row = _signature_inputs(signature, model, [_padded(a, rows) for a in inputs])
    signature(**row)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        signature(**row)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e6)
