"""Keras 3 model -> TFLite flatbuffer bytes, through a SavedModel, with optional quantization."""

from __future__ import annotations

import contextlib
import re
import tempfile
import warnings
from collections.abc import Iterator, Sequence

import numpy as np

from tfprune.export.modes import FLOAT32, Mode
from tfprune.export.result import ConversionError
from tfprune.models.walk import model_kind

# Calibration needs only a few hundred samples; more costs time without moving the ranges.
_MAX_CALIBRATION_SAMPLES = 256


def inputs_of(model, data: Sequence[np.ndarray] | None = None) -> list:
    """The model's input tensors (shape, dtype, name), in order.

    A Sequential or Functional model has them; a subclassed model has them once built, from
    the shape it was built with: one input named "inputs", of the dtype of `data` (float32
    without it).

    Raises:
        ValueError: If a subclassed model is not built, or was built with several inputs.
    """
    import keras

    if model_kind(model) != "subclassed":
        return list(model.inputs)
    config = model.get_build_config() if model.built else None
    if not config or "input_shape" not in config:
        raise ValueError(
            f"Cannot export the subclassed model '{model.name}': "
            + (
                "it is not built. Call it once on a batch (or `model.build(input_shape)`)."
                if not config
                else "it takes several inputs; export supports one for subclassed models. "
                "Wrap it in a Functional model: keras.Model(inputs, model(inputs))."
            )
        )
    dtype = np.asarray(data[0]).dtype.name if data else keras.config.floatx()
    return [keras.KerasTensor(tuple(config["input_shape"]), dtype=dtype, name="inputs")]


def as_input_list(model, data, argument: str = "representative_data") -> list[np.ndarray]:
    """Normalizes one array (single-input model), a sequence of arrays (one per input, in
    `model.inputs` order) or a dict of arrays keyed by input name, to a list in input order."""
    if isinstance(data, np.ndarray) or hasattr(data, "dtype"):
        tensors = inputs_of(model, [np.asarray(data)])
    else:
        tensors = inputs_of(model)
    n_inputs = len(tensors)
    if isinstance(data, dict):
        names = [t.name for t in tensors]
        if sorted(data) != sorted(names):
            raise ValueError(
                f"Argument `{argument}` must have one array per model input {names}. "
                f"Received: keys {sorted(data)}"
            )
        data = [data[name] for name in names]
    if isinstance(data, np.ndarray):
        arrays = [data]
    elif isinstance(data, (list, tuple)) and all(hasattr(a, "shape") for a in data):
        arrays = [np.asarray(a) for a in data]
    elif hasattr(data, "shape") and hasattr(data, "dtype"):
        arrays = [np.asarray(data)]
    else:
        raise TypeError(
            f"Argument `{argument}` must be a NumPy array, a list of arrays (one per model "
            f"input) or a dict of them by input name. Received: {argument} of type "
            f"{type(data).__name__}"
        )
    if len(arrays) != n_inputs:
        raise ValueError(
            f"Argument `{argument}` must hold one array per model input ({n_inputs}). "
            f"Received: {len(arrays)} arrays"
        )
    lengths = {len(a) for a in arrays}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError(
            f"Argument `{argument}` must hold arrays with the same, non-zero number of rows. "
            f"Received: row counts {sorted(lengths)}"
        )
    for array, tensor in zip(arrays, tensors, strict=True):
        expected = tuple(tensor.shape[1:])
        got = tuple(array.shape[1:])
        if len(got) != len(expected) or any(
            e is not None and e != g for e, g in zip(expected, got, strict=True)
        ):
            raise ValueError(
                f"Argument `{argument}` has rows of shape {got} where the model input "
                f"`{tensor.name}` expects {expected}. Received: shape {array.shape}"
            )
    return [
        a if a.dtype == np.dtype(t.dtype) else a.astype(t.dtype)
        for a, t in zip(arrays, tensors, strict=True)
    ]


def input_names(model) -> list[str]:
    """The TFLite signature input names: the Keras input names, in model order."""
    return [tensor.name for tensor in inputs_of(model)]


def as_model_input(model, arrays: Sequence):
    """Arrays in `model.inputs` order, arranged as the model takes them (one, a list, a dict)."""
    import keras

    if model_kind(model) != "functional":  # one input
        (array,) = arrays
        return array
    return keras.tree.pack_sequence_as(model.input, list(arrays))


def _calibration_samples(
    model, inputs: list[np.ndarray], batch_size: int | None
) -> Iterator[dict[str, np.ndarray]]:
    names = input_names(model)
    rows = batch_size or 1
    count = min(len(inputs[0]), _MAX_CALIBRATION_SAMPLES)
    # Whole batches only; a file fixed to more rows than the data holds gets one batch of
    # repeated rows.
    for i in range(0, max(count - rows, 0) + 1, rows):
        take = [np.resize(a[i : i + rows], (rows, *a.shape[1:])) for a in inputs]
        yield dict(zip(names, take, strict=True))


@contextlib.contextmanager
def saved_model(model, batch_size: int | None = None, data=None) -> Iterator[str]:
    """Exports a plain Keras model once as a SavedModel; yields its directory.

    Every input is named after its Keras input, which fixes the signature's input names and
    lets calibration and verification feed inputs by name, whatever order the converter uses.

    Args:
        model: A Keras 3 model without pruning wrappers.
        batch_size: The batch dimension of the inputs: None for any batch, or a fixed number
            of rows. Defaults to None.
        data: Inputs (a list of arrays) whose dtypes a subclassed model's inputs take.
            Defaults to None.
    """
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="tfprune-savedmodel-") as directory:
        specs = [
            tf.TensorSpec([batch_size, *tensor.shape[1:]], tensor.dtype, name=name)
            for tensor, name in zip(inputs_of(model, data), input_names(model), strict=True)
        ]
        # One argument, structured as the model takes its inputs (a tensor, a list, a dict).
        signature = [as_model_input(model, specs)]
        model.export(directory, format="tf_saved_model", verbose=False, input_signature=signature)
        yield directory


def convert(
    directory: str,
    model,
    *,
    mode: Mode = FLOAT32,
    representative_data: Sequence[np.ndarray] | None = None,
    stock_sparsity: bool = False,
    batch_size: int | None = None,
) -> bytes:
    """Converts an exported SavedModel to TFLite bytes with builtin ops only.

    Args:
        directory: The SavedModel of `model` (see `saved_model`).
        model: The Keras model it was exported from (for its input names).
        mode: The quantization mode (see `modes`). Defaults to float32.
        representative_data: Model inputs as a list of arrays, one per model input, used to
            calibrate integer activations. Defaults to None.
        stock_sparsity: Whether to ask the converter for its own sparse encoding
            (`tf.lite.Optimize.EXPERIMENTAL_SPARSITY`); used only to compare against it.
            Defaults to False.
        batch_size: The batch size the SavedModel was exported with (calibration batches are
            cut to it). Defaults to None.

    Returns:
        The flatbuffer bytes.

    Raises:
        ConversionError: If the model needs ops outside the TFLite builtin set, or the
            converter fails for another reason.
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(directory)
    optimizations = []
    if mode.quantized:
        optimizations.append(tf.lite.Optimize.DEFAULT)
    if stock_sparsity:
        optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    converter.optimizations = optimizations
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if mode.float16_weights:
        converter.target_spec.supported_types = [tf.float16]
    elif mode.integer_activations:
        inputs = list(representative_data)
        converter.representative_dataset = lambda: _calibration_samples(model, inputs, batch_size)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    try:
        with warnings.catch_warnings():
            # Calibration runs TensorFlow's own (deprecated) interpreter internally; the
            # warning concerns TensorFlow, not this conversion.
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
            return bytes(converter.convert())
    except Exception as error:  # the converter raises several unrelated classes
        message = str(error)
        named = _unconverted_ops(message)
        if named or "Flex" in message or "SELECT_TF_OPS" in message or "not supported" in message:
            raise ConversionError(
                "The model uses operations that TFLite builtins do not provide (they would "
                "need Flex / SELECT_TF_OPS, which tfprune does not emit): "
                + (", ".join(named) if named else message.strip().splitlines()[-1])
                + ". Replace them in the model, or keep the model out of the export."
            ) from error
        raise ConversionError(f"TFLite conversion failed: {message.strip()}") from error


def _unconverted_ops(message: str) -> list[str]:
    """The TensorFlow operations the converter names as having no builtin, e.g. ["FFT2D"]."""
    found = re.findall(
        r"'tf\.(\w+)' op is neither a custom op nor a flex op"
        r"|failed to legalize operation 'tf\.(\w+)'",
        message,
    )
    return sorted({name for pair in found for name in pair if name})


def to_flatbuffer(model, *, batch_size: int | None = None, **options) -> bytes:
    """Exports and converts in one call: `convert(saved_model(model), model, **options)`."""
    with saved_model(model, batch_size, options.get("representative_data")) as directory:
        return convert(directory, model, batch_size=batch_size, **options)
