"""`to_tflite`: a pruned Keras model -> a small, verified TFLite (LiteRT) file.

The export is a small compiler: convert (Keras -> SavedModel -> TFLite, optionally quantized)
-> the passes of `passes.py` over one `Graph` -> write -> verify in LiteRT (a child process
first) -> atomic move. TensorFlow and LiteRT are imported only inside these functions.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import numpy as np

from tfprune.calibration.data import check_finite
from tfprune.core.find import is_pruned
from tfprune.core.wrap import strip_model
from tfprune.export import bytesplit, describe, modes, names, passes, recurrent
from tfprune.export import verify as verification
from tfprune.export.encode import PREFERENCES
from tfprune.export.graph import Graph
from tfprune.export.modes import Mode
from tfprune.export.result import ConversionError, ExportResult
from tfprune.utils.checks import check_bool, check_choice, check_int
from tfprune.utils.files import atomic_path
from tfprune.utils.progress import Stages


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


def _file_batch_size(model, mode: Mode, batch_size: int | None) -> int | None:
    """The batch size to fix in the file: the caller's, or 1 where a loop over time needs one."""
    looping = recurrent.loops(model)
    if not looping:
        return batch_size
    if mode.integer_activations:
        raise ConversionError(
            f"Recurrent layers {looping} run as a loop over time (their sequence length is "
            f"unknown or longer than {recurrent.MAX_UNROLLED_STEPS} steps), and full-integer "
            "quantization of such a loop is not supported (the converter crashes). Give the "
            'model a fixed sequence length, or use quantize="dynamic". Received: quantize="int8"'
        )
    return 1 if batch_size is None else batch_size


def plain_model(model):
    """`model` without pruning wrappers (stripped if pruned), checked to be a Keras model."""
    import keras

    if not isinstance(model, keras.Model):
        raise TypeError(
            "Argument `model` must be a keras.Model. "
            f"Received: model of type {type(model).__name__}"
        )
    return strip_model(model) if is_pruned(model) else model


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
    keep_names: bool = False,
    verbose: bool = False,
) -> ExportResult:
    """Writes a pruned (or plain) Keras model as a small TFLite file that LiteRT runs as is.

    The model is stripped of pruning wrappers, exported to a SavedModel and converted with
    TFLite builtin operators only (no Flex ops). With `sparse=True`, every weight whose zeros
    make a compressed layout smaller is stored as CSR with the narrowest index types and
    expanded by a DENSIFY operator when the interpreter prepares, and the file is cleared of
    what the interpreter never reads (the converter's metadata record, Flatten's shape
    arithmetic, duplicate constants, tensor names unless `keep_names`); it loads in the stock
    interpreter with its default XNNPACK delegate. With
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
        keep_names: Whether the file keeps tensor names (weights named after their Keras
            variables, such as `fc1/kernel`). The runtime reads none of them: inputs and
            outputs are found through the signature, which keeps its names either way. The
            returned rows carry the names in both cases. Defaults to False.
        verbose: Whether to print a line on stderr as each stage ends (SavedModel and
            conversion, sparse encoding, verification), with its time: large models take
            minutes. The `tfprune export` command shows them. Defaults to False.

    Returns:
        An `ExportResult` with the path, sizes, where the bytes go, per-tensor rows and the
        verification figures.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If `quantize` is unknown, "int8" lacks `representative_data`, the data
            does not fit the model or holds NaN or Inf values, `batch_size` is not positive,
            `prefer` is unknown, or the directory of `path` does not exist.
        PermissionError: If the directory of `path` is not writable.
        ConversionError: If the model needs operators outside the TFLite builtins, or asks
            for "int8" with a recurrent layer that stays a loop.
        VerificationError: If the file does not load and run in LiteRT, or its outputs differ
            from Keras beyond the bound for its mode (see `tfprune.export.modes.MODES`).

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
    # The converter's module loads on use: `import tfprune.export` stays cheap.
    from tfprune.export import convert

    mode = modes.check_quantize(quantize)
    check_bool("sparse", sparse)
    check_bool("verify", verify)
    check_bool("keep_names", keep_names)
    check_bool("verbose", verbose)
    batch_size = check_int("batch_size", batch_size, 1, allow_none=True)
    check_choice("prefer", prefer, PREFERENCES)
    _target_directory(path)
    if mode.needs_data and representative_data is None:
        raise ValueError(
            f'Argument `representative_data` is required when quantize="{quantize}" (it '
            "calibrates the activation ranges). Received: representative_data=None"
        )
    stages = Stages(f"export {os.path.basename(os.fspath(path))}", enabled=verbose)
    model = plain_model(model)
    data = None
    if representative_data is not None:
        data = convert.as_input_list(model, representative_data)
        check_finite("representative_data", data)
    model = recurrent.export_copy(model)
    batch = _file_batch_size(model, mode, batch_size)

    # One SavedModel serves the file and, when quantizing, the dense float32 reference size.
    with convert.saved_model(model, batch, data) as saved:
        dense = convert.convert(saved, model, mode=mode, representative_data=data, batch_size=batch)
        dense_float32 = len(dense)
        stages(f"converted ({mode.label}): {len(dense):,} bytes")
        if mode.quantized:
            dense_float32 = len(convert.convert(saved, model, batch_size=batch))
            stages(f"float32 reference converted: {dense_float32:,} bytes")
    context = passes.Context(model, prefer=prefer, keep_names=keep_names)
    graph = Graph.from_bytes(dense)
    if sparse:
        passes.run(graph, context)
        packed = graph.to_bytes()
        if len(packed) < len(dense):
            payload = packed
        else:
            payload, graph, context = dense, Graph.from_bytes(dense), passes.Context(model)
        stages(f"sparse layouts and tidying: {len(payload):,} bytes")
    else:
        payload = dense

    with atomic_path(path, suffix=".tflite") as temp_path:
        with open(temp_path, "wb") as f:
            f.write(payload)
        checked = None
        if verify:
            inputs = verification.verification_inputs(model, data)
            checked = verification.verify(temp_path, model, mode, inputs)
            stages("verified in LiteRT against Keras")
    # Only a pruned weight left dense is worth a warning; other constants just say why in
    # their rows.
    pruned = names.prunable_labels(model)
    refused = [k for k in context.kept if not k.chosen and k.label in pruned]
    if refused:
        warnings.warn(
            "Some pruned weights are stored dense: "
            + "; ".join(f"{k.label} ({k.reason})" for k in refused)
            + ". The file is correct, only larger than a sparse layout would make it.",
            UserWarning,
            stacklevel=2,
        )
    for (index, t), name in context.names.items():
        graph.model.subgraphs[index].tensors[t].name = name
    return ExportResult(
        path=os.fspath(path),
        bytes=len(payload),
        dense_float32_bytes=dense_float32,
        quantize=quantize,
        sparse=sparse,
        tensors=tuple(describe.tensor_rows(graph, {id(k.tensor): k.reason for k in context.kept})),
        verification=checked,
        batch_size=batch,
        prefer=prefer,
        byte_split=bytesplit.split(payload),
    )
