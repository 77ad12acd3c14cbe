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


def _check_batch_size(batch_size: object) -> None:
    if batch_size is None:
        return
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(
            "Argument `batch_size` must be None or a positive int. "
            f"Received: batch_size={batch_size!r} of type {type(batch_size).__name__}"
        )
    if batch_size < 1:
        raise ValueError(
            "Argument `batch_size` must be None or a positive int. "
            f"Received: batch_size={batch_size}"
        )


def _file_batch_size(model, quantize: str | None, batch_size: int | None) -> int | None:
    """The batch size to fix in the file: the caller's, or 1 where a loop over time needs one."""
    from tfprune.export import recurrent

    looping = recurrent.loops(model)
    if not looping:
        return batch_size
    if quantize == "int8":
        raise ConversionError(
            f"Recurrent layers {looping} run as a loop over time (their sequence length is "
            f"unknown or longer than {recurrent.MAX_UNROLLED_STEPS} steps), and full-integer "
            "quantization of such a loop is not supported (the converter crashes). Give the "
            'model a fixed sequence length, or use quantize="dynamic". Received: quantize="int8"'
        )
    return 1 if batch_size is None else batch_size


def _plain_model(model):
    import keras

    from tfprune.prune import is_pruned, strip_pruning

    if not isinstance(model, keras.Model):
        raise TypeError(
            "Argument `model` must be a keras.Model. "
            f"Received: model of type {type(model).__name__}"
        )
    return strip_pruning(model) if is_pruned(model) else model


def _check_prefer(prefer: object) -> None:
    from tfprune.export.encode import PREFERENCES

    if not isinstance(prefer, str):
        raise TypeError(
            'Argument `prefer` must be the string "size" or "speed". '
            f"Received: prefer={prefer!r} of type {type(prefer).__name__}"
        )
    if prefer not in PREFERENCES:
        raise ValueError(
            f'Argument `prefer` must be "size" or "speed". Received: prefer={prefer!r}'
        )


def _encode(
    model,
    *,
    quantize: str | None,
    representative_data,
    sparse: bool,
    batch_size: int | None,
    prefer: str = "size",
) -> tuple[bytes, bytes]:
    """Converts and (optionally) compacts; returns (file bytes, dense bytes of that mode)."""
    from tfprune.export import convert, encode, flatbuffer, names, tidy

    dense = convert.to_flatbuffer(
        model, quantize=quantize, representative_data=representative_data, batch_size=batch_size
    )
    if not sparse:
        return dense, dense
    parsed = flatbuffer.read_model(dense)
    # Weights are matched to Keras variables by value, so naming comes before the layouts.
    names.name_tensors(parsed, model)
    encode.sparsify(parsed, prefer)
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
    batch_size: int | None = None,
    prefer: str = "size",
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

    Recurrent layers (`LSTM`, `GRU`, `SimpleRNN`, `RNN`, also inside `Bidirectional`) with a
    known sequence length of at most 64 steps are exported unrolled, from a copy of the model
    with `unroll=True` and the same weights: the file then takes any batch, quantizes to int8
    and stores each weight once. Longer or variable-length sequences stay a loop over time,
    which LiteRT's builtin operators run only at a fixed batch size: such a file gets
    `batch_size` (1 unless given) and cannot be quantized to "int8".

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
        batch_size: A fixed batch size for the file's inputs, or None for any batch (1 when
            the model keeps a loop over time, see above). Defaults to None.
        prefer: "size" for the smallest file, or "speed" for a file whose kernels all run in
            XNNPACK at dense speed: no weight is stored as a reshaped view (a last dimension
            over 256 takes uint16 indices), and int8 weights read by a kernel stay dense.
            Defaults to "size".

    Returns:
        An `ExportResult` with the path, sizes, per-tensor rows and verification figures.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If `quantize` is unknown, "int8" lacks `representative_data`, the data
            does not fit the model, `batch_size` is not positive, `prefer` is unknown, or the
            directory of `path` does not exist.
        PermissionError: If the directory of `path` is not writable.
        ConversionError: If the model needs operators outside the TFLite builtins, or asks
            for "int8" with a recurrent layer that stays a loop.
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
    from tfprune.export import convert, describe, flatbuffer, recurrent
    from tfprune.export import verify as verification

    convert.check_quantize(quantize)
    _check_bool("sparse", sparse)
    _check_bool("verify", verify)
    _check_batch_size(batch_size)
    _check_prefer(prefer)
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
    model = recurrent.export_copy(model)
    batch = _file_batch_size(model, quantize, batch_size)

    payload, dense = _encode(
        model,
        quantize=quantize,
        representative_data=data,
        sparse=sparse,
        batch_size=batch,
        prefer=prefer,
    )
    if quantize is None:
        dense_float32 = len(dense)
    else:
        dense_float32 = len(convert.to_flatbuffer(model, batch_size=batch))

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
        batch_size=batch,
        prefer=prefer,
    )
