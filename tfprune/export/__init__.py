"""The deploy stage: pruned Keras model -> small, verified TFLite (LiteRT) flatbuffer.

TensorFlow and LiteRT are imported only inside these functions, so importing this package is
cheap.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence

import numpy as np

from tfprune.export.compare import compare_variants, format_compare_table
from tfprune.export.describe import describe_tflite
from tfprune.export.result import (
    ConversionError,
    ExportResult,
    TensorRow,
    Verification,
    VerificationError,
)

__all__ = [
    "ConversionError",
    "ExportResult",
    "TensorRow",
    "Verification",
    "VerificationError",
    "compare_variants",
    "describe_tflite",
    "format_compare_table",
    "to_tflite",
]


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"Argument `{name}` must be a bool. Received: {name}={value!r}")


def _target_directory(path: object) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"Argument `path` must be a str or os.PathLike. Received: path={path!r} of type "
            f"{type(path).__name__}"
        )
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ValueError(
            f"Argument `path` is a directory, not a file name. Received: path={path!r}"
        )
    if not os.path.isdir(directory):
        raise ValueError(
            f"Argument `path` must be in an existing directory; {directory!r} does not exist. "
            f"Received: path={path!r}"
        )
    if not os.access(directory, os.W_OK):
        raise PermissionError(f"Cannot write to directory {directory!r}. Received: path={path!r}")
    return directory


def _plain_model(model):
    import keras

    from tfprune.prune import is_pruned, strip_pruning

    if not isinstance(model, keras.Model):
        raise TypeError(
            "Argument `model` must be a keras.Model. "
            f"Received: model of type {type(model).__name__}"
        )
    return strip_pruning(model) if is_pruned(model) else model


def _encode(
    model, *, quantize: str | None, representative_data, sparse: bool
) -> tuple[bytes, bytes]:
    """Converts and (optionally) compacts; returns (file bytes, dense bytes of that mode)."""
    from tfprune.export import convert, encode, flatbuffer, names, tidy

    dense = convert.to_flatbuffer(model, quantize=quantize, representative_data=representative_data)
    if not sparse:
        return dense, dense
    parsed = flatbuffer.read_model(dense)
    # Weights are matched to Keras variables by value, so naming comes before the layouts.
    names.name_tensors(parsed, model)
    encode.sparsify(parsed)
    tidy.tidy(parsed)
    packed = flatbuffer.write_model(parsed)
    return (packed if len(packed) < len(dense) else dense), dense


def _write_atomically(directory: str, data: bytes) -> str:
    handle, temp_path = tempfile.mkstemp(prefix=".tfprune-", suffix=".tflite", dir=directory)
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(data)
    except BaseException:
        os.unlink(temp_path)
        raise
    return temp_path


def to_tflite(
    model,
    path: str | os.PathLike,
    *,
    quantize: str | None = None,
    representative_data: np.ndarray | Sequence[np.ndarray] | None = None,
    sparse: bool = True,
    verify: bool = True,
) -> ExportResult:
    """Writes a pruned (or plain) Keras model as a small TFLite file that LiteRT runs as is.

    The model is stripped of pruning wrappers, exported to a SavedModel and converted with
    TFLite builtin operators only (no Flex ops). With `sparse=True`, every weight whose zeros
    make a compressed layout smaller is stored as CSR with the narrowest index types and
    expanded by a DENSIFY operator when the interpreter prepares, and the file is cleared of
    what the interpreter never reads (the converter's metadata record, Flatten's shape
    arithmetic, fused op names; weights are named after their Keras variables, such as
    `fc1/kernel`); it loads in the stock interpreter with its default XNNPACK delegate. With
    `verify=True` the file is loaded and run (first in a child process, so a crash cannot take
    the caller down) and its outputs are compared with Keras before it is moved into place;
    nothing is left at `path` on failure.

    Args:
        model: A Keras 3 model, pruned (with `tfprune.PruneLowMagnitude` wrappers) or plain.
            Sequential, Functional and multi-input models are supported.
        path: Where to write the `.tflite` file. Its directory must exist.
        quantize: None (float32), "float16" (float16 weights), "dynamic" (int8 weights,
            float activations) or "int8" (int8 weights and activations, float32 inputs and
            outputs; calibrated on `representative_data`). Defaults to None.
        representative_data: Model inputs: one array, or a list of arrays (one per model
            input), rows first. Calibrates "int8" (required there) and is what verification
            runs on; without it verification uses 32 seeded uniform [0, 1) rows.
            Defaults to None.
        sparse: Whether to store pruned weights in sparse layouts and tidy the file;
            False writes the converter's file as it is. Defaults to True.
        verify: Whether to run the file in LiteRT and compare it with Keras. Defaults to True.

    Returns:
        An `ExportResult` with the path, sizes, per-tensor rows and verification figures.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If `quantize` is unknown, "int8" lacks `representative_data`, the data
            does not fit the model, or the directory of `path` does not exist.
        PermissionError: If the directory of `path` is not writable.
        ConversionError: If the model needs operators outside the TFLite builtins.
        VerificationError: If the file does not load and run in LiteRT, or its outputs differ
            from Keras beyond the bound for its mode (see `tfprune.export.verify.TOLERANCES`).

    Example:

    >>> import os, tempfile, keras, numpy as np, tfprune
    >>> model = tfprune.prune_low_magnitude(
    ...     keras.Sequential([keras.Input((16,)), keras.layers.Dense(8, name="fc")]),
    ...     tfprune.ConstantSparsity(0.75, begin_step=0))
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> history = model.fit(np.ones((8, 16)), np.ones((8, 8)), verbose=0,
    ...                     callbacks=[tfprune.UpdatePruningStep()])
    >>> path = os.path.join(tempfile.mkdtemp(), "model.tflite")
    >>> result = tfprune.export.to_tflite(model, path)
    >>> result.path == path, os.path.getsize(path) == result.bytes
    (True, True)
    >>> result.verification.passed
    True
    >>> [(row.name, row.shape, row.sparsity) for row in result.tensors if row.name == "fc/kernel"]
    [('fc/kernel', (8, 16), 0.75)]
    """
    from tfprune.export import convert, describe, flatbuffer
    from tfprune.export import verify as verification

    convert.check_quantize(quantize)
    _check_bool("sparse", sparse)
    _check_bool("verify", verify)
    directory = _target_directory(path)
    if quantize == "int8" and representative_data is None:
        raise ValueError(
            'Argument `representative_data` is required when quantize="int8" (it calibrates '
            "the activation ranges). Received: representative_data=None"
        )
    model = _plain_model(model)
    data = None
    if representative_data is not None:
        data = convert.as_input_list(model, representative_data)

    payload, dense = _encode(model, quantize=quantize, representative_data=data, sparse=sparse)
    if quantize is None:
        dense_float32 = len(dense)
    else:
        dense_float32 = len(convert.to_flatbuffer(model))

    temp_path = _write_atomically(directory, payload)
    try:
        checked = None
        if verify:
            inputs = verification.verification_inputs(model, data)
            checked = verification.verify(temp_path, model, quantize, inputs)
        os.replace(temp_path, os.fspath(path))
    except BaseException:
        if os.path.exists(temp_path):
            os.unlink(temp_path)
        raise
    return ExportResult(
        path=os.fspath(path),
        bytes=len(payload),
        dense_float32_bytes=dense_float32,
        quantize=quantize,
        sparse=sparse,
        tensors=tuple(describe.tensor_rows(flatbuffer.read_model(payload))),
        verification=checked,
    )
