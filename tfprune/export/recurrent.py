"""Recurrent layers on the way to TFLite builtins: unrolled where the sequence length allows.

Keras runs an RNN layer (`LSTM`, `GRU`, `SimpleRNN`, `keras.layers.RNN`, and each inside a
`Bidirectional`) as a loop over time. Through a SavedModel that loop becomes a TensorFlow while
loop over tensor lists, which the converter turns into builtin operators only when every shape
in it except the trip count is static, so only at a fixed batch size; full-integer ("int8")
calibration of such a loop crashes the converter's process. An RNN with `unroll=True` computes
the same function as straight-line operators, which convert at any batch size, quantize to
int8 and run in the XNNPACK delegate; its weights are stored once, however many steps read them.

`export_copy` therefore returns a copy of the model whose recurrent layers are unrolled when
their sequence length is known and at most `MAX_UNROLLED_STEPS`; longer or variable-length
sequences keep the loop (see `loops`).
"""

from __future__ import annotations

from tfprune.models.walk import model_kind, walk

# Beyond this many time steps an unrolled graph costs more flatbuffer bytes (about 40 operators
# per LSTM step) and conversion time than the loop it replaces.
MAX_UNROLLED_STEPS = 64


def _rnn_types():
    import keras

    return keras.layers.RNN, keras.layers.Bidirectional


def _time_steps(layer) -> int | None:
    """The static sequence length a top-level recurrent layer reads, or None if unknown."""
    try:
        shape = layer.input.shape
    except (AttributeError, ValueError):  # a layer called more than once has no single input
        return None
    if isinstance(shape, list) or len(shape) < 3:
        return None
    rnn = layer.forward_layer if hasattr(layer, "forward_layer") else layer
    steps = shape[0] if getattr(rnn, "time_major", False) else shape[1]
    return None if steps is None else int(steps)


def _unrollable(layer) -> bool:
    rnn, bidirectional = _rnn_types()
    if isinstance(layer, bidirectional):
        inner = (layer.forward_layer, layer.backward_layer)
    elif isinstance(layer, rnn):
        inner = (layer,)
    else:
        return False
    if all(r.unroll for r in inner):
        return False
    steps = _time_steps(layer)
    return steps is not None and steps <= MAX_UNROLLED_STEPS


def loops(model) -> list[str]:
    """Names of the recurrent layers in `model` that still run as a loop over time."""
    rnn, _ = _rnn_types()
    return [layer.name for layer in walk(model) if isinstance(layer, rnn) and not layer.unroll]


def _clone(layer):
    """`clone_model`'s clone function: recurrent layers unrolled, everything else as is."""
    _, bidirectional = _rnn_types()
    config = layer.get_config()
    if not _unrollable(layer):
        return layer.__class__.from_config(config)
    if isinstance(layer, bidirectional):
        config = dict(config)
        for key in ("layer", "backward_layer"):
            if config.get(key) is not None:
                inner = dict(config[key])
                inner["config"] = dict(inner["config"], unroll=True)
                config[key] = inner
        return layer.__class__.from_config(config)
    return layer.__class__.from_config(dict(config, unroll=True))


def export_copy(model):
    """A copy of `model` with every unrollable recurrent layer unrolled, or `model` itself.

    Args:
        model: A plain (stripped) Keras model.

    Returns:
        `model` when nothing needs unrolling (or it is a subclassed model, which cannot be
        cloned layer by layer); otherwise a functional or sequential copy holding the same
        weights, whose top-level recurrent layers with a known sequence length of at most
        `MAX_UNROLLED_STEPS` have `unroll=True`.
    """
    import keras

    # Only Sequential and Functional models rebuild from their layers' configs.
    if model_kind(model) == "subclassed":
        return model
    if not any(_unrollable(layer) for layer in model.layers):
        return model
    # New inputs with the original names keep the file's signature names those of `model`.
    from tfprune.export.convert import as_model_input

    inputs = [keras.Input(batch_shape=t.shape, dtype=t.dtype, name=t.name) for t in model.inputs]
    try:
        copy = keras.models.clone_model(
            model,
            input_tensors=as_model_input(model, inputs),
            clone_function=_clone,
        )
    except (ValueError, TypeError, NotImplementedError):
        return model  # not rebuildable from its layers' configs: export it as it is
    copy.set_weights(model.get_weights())
    return copy
