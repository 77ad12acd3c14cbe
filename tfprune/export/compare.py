"""Export every variant of one model and compare size, accuracy and LiteRT latency."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np

from tfprune.export import verify
from tfprune.export.modes import MODES
from tfprune.export.tflite import plain_model, to_tflite
from tfprune.utils.table import format_table

# (name, quantize, sparse), in the order the table lists them.
VARIANTS = (
    ("float32 dense", None, False),
    ("float32 sparse", None, True),
    ("float16", "float16", True),
    ("dynamic", "dynamic", True),
    ("int8", "int8", False),
    ("int8 sparse", "int8", True),
)


@dataclasses.dataclass(frozen=True)
class CompareRow:
    """One exported variant.

    Attributes:
        variant: Its name, e.g. "int8 sparse".
        path: The written `.tflite` file.
        bytes: Its size.
        ratio: `bytes` over the size of the "float32 dense" variant.
        metric: "accuracy" (against labels) or "top-1 agreement" (against Keras).
        score: The value of `metric` on the evaluation rows.
        latency_us: Median LiteRT latency of one row, 1 thread, default delegate.
    """

    variant: str
    path: str
    bytes: int
    ratio: float
    metric: str
    score: float
    latency_us: float


def compare_variants(
    model,
    out_dir: str | os.PathLike,
    *,
    x_eval: np.ndarray | Sequence[np.ndarray],
    y_eval: np.ndarray | None = None,
    representative_data: np.ndarray | Sequence[np.ndarray] | None = None,
) -> list[CompareRow]:
    """Exports the model as every variant and measures each one in LiteRT.

    Variants: float32 dense, float32 sparse, float16, dynamic, int8 and int8 sparse (float16
    and dynamic use sparse layouts). Each file is verified against Keras as `to_tflite` does.

    Args:
        model: A Keras 3 model, pruned or plain.
        out_dir: Directory for the files (`<variant>.tflite`, spaces as underscores); created
            if missing.
        x_eval: Evaluation inputs: one array, or a list of arrays (one per model input).
        y_eval: Integer class labels for `x_eval`. With labels each variant is scored by
            accuracy, without by top-1 agreement with the Keras model. Defaults to None.
        representative_data: Calibration inputs for the int8 variants. Defaults to None
            (`x_eval` is used).

    Returns:
        One `CompareRow` per variant, in the order above.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If the data does not fit the model or `y_eval` does not match `x_eval`.
        ConversionError: If the model needs operators outside the TFLite builtins.
        VerificationError: If a variant fails its check.

    Example:

    >>> import tempfile, keras, numpy as np, tfprune
    >>> model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(4)])
    >>> x = np.random.default_rng(0).uniform(size=(32, 16)).astype("float32")
    >>> rows = tfprune.export.compare_variants(model, tempfile.mkdtemp(), x_eval=x)
    >>> [row.variant for row in rows]
    ['float32 dense', 'float32 sparse', 'float16', 'dynamic', 'int8', 'int8 sparse']
    >>> rows[0].ratio, rows[0].metric
    (1.0, 'top-1 agreement')
    """
    # The converter's module loads on use: `import tfprune.export` stays cheap.
    from tfprune.export import convert

    model = plain_model(model)
    inputs = convert.as_input_list(model, x_eval, argument="x_eval")
    calibration = representative_data if representative_data is not None else inputs
    if y_eval is not None:
        y_eval = np.asarray(y_eval).reshape(-1)
        if len(y_eval) != len(inputs[0]):
            raise ValueError(
                f"Argument `y_eval` must have one label per row of `x_eval` ({len(inputs[0])}). "
                f"Received: {len(y_eval)} labels"
            )
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    reference = verify.keras_outputs(model, inputs)[0]
    rows = []
    dense_bytes = None
    for name, quantize, sparse in VARIANTS:
        path = os.path.join(out_dir, name.replace(" ", "_") + ".tflite")
        result = to_tflite(
            model,
            path,
            quantize=quantize,
            representative_data=calibration if MODES[quantize].needs_data else inputs,
            sparse=sparse,
        )
        dense_bytes = dense_bytes or result.bytes
        predicted = verify.run_tflite(path, model, inputs)[0].argmax(-1)
        if y_eval is not None:
            metric, score = "accuracy", float(np.mean(predicted == y_eval))
        else:
            metric, score = "top-1 agreement", float(np.mean(predicted == reference.argmax(-1)))
        rows.append(
            CompareRow(
                variant=name,
                path=path,
                bytes=result.bytes,
                ratio=result.bytes / dense_bytes,
                metric=metric,
                score=score,
                latency_us=verify.median_latency_us(path, model, inputs),
            )
        )
    return rows


def format_compare_table(rows: Sequence[CompareRow]) -> str:
    """Formats `compare_variants` rows as an aligned text table.

    Args:
        rows: The rows `compare_variants` returned.

    Returns:
        The table, one line per variant under a header line.

    Example:

    >>> rows = [
    ...     CompareRow("float32 dense", "out/float32_dense.tflite", 1_069_288, 1.0,
    ...                "accuracy", 0.908, 32.0),
    ...     CompareRow("int8 sparse", "out/int8_sparse.tflite", 67_264, 0.0629,
    ...                "accuracy", 0.905, 53.0),
    ... ]
    >>> print(format_compare_table(rows))
    variant            bytes   ratio  accuracy  latency (us)  path
    float32 dense  1,069,288  100.0%     0.908          32.0  out/float32_dense.tflite
    int8 sparse       67,264    6.3%     0.905          53.0  out/int8_sparse.tflite
    """
    metric = rows[0].metric if rows else "score"
    header = ("variant", "bytes", "ratio", metric, "latency (us)", "path")
    body = [
        (
            r.variant,
            f"{r.bytes:,}",
            f"{r.ratio:.1%}",
            f"{r.score:.3f}",
            f"{r.latency_us:.1f}",
            r.path,
        )
        for r in rows
    ]
    return format_table(header, body, right=(1, 2, 3, 4))
