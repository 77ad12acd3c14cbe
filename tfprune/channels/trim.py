"""`trim`: the model without its masked channels.

The channel-pruned model is stripped, its graph grouped again (`tfprune.channels.plan`), and
each group the masks removed is cut out of every weight that holds it: kernels, biases,
BatchNormalization statistics, depthwise kernels, recurrent gates. Layers are re-created from
their configs with fewer units or filters (each layer's rule lowers its counts) and the same
names, so the trimmed model is a plain Keras model of the same classes. With calibration data,
the update step follows (`tfprune.channels.refit`).
"""

from __future__ import annotations

from typing import Any

import keras

from tfprune.calibration.data import replayable
from tfprune.channels.plan import Plan
from tfprune.channels.refit import refit
from tfprune.channels.rules import resized_config
from tfprune.channels.serialized import input_names
from tfprune.core.cloning import clone_stripped, copy_layer, copy_once
from tfprune.core.find import pruning_wrappers
from tfprune.core.rules import ChannelRule
from tfprune.models.rebuild import recreate
from tfprune.models.walk import layers_by_name
from tfprune.utils.checks import check_int, check_number

__all__ = ["trim"]


def _rebuilt(stripped: keras.Model, plan: Plan) -> keras.Model:
    def copy(layer: Any) -> Any:
        if isinstance(layer, keras.Model):
            # A nested model is cloned on inputs of its trimmed widths.
            inputs = [
                keras.Input(
                    batch_shape=(*x.shape[:-1], plan.counts.get(name, {}).get("", x.shape[-1])),
                    dtype=x.dtype,
                    name=name,
                )
                for name, x in zip(input_names(layer), layer.inputs, strict=True)
            ]
            inputs = keras.tree.pack_sequence_as(layer.input, inputs)
            return keras.models.clone_model(layer, input_tensors=inputs, clone_function=clone)
        if not isinstance(layer, keras.layers.Layer):
            return layer  # an operation of the model's own code (`x + y`) holds no state
        if layer.name not in plan.counts and layer.name not in plan.axes:
            return copy_layer(layer)
        config = resized_config(layer, plan.counts.get(layer.name, {}))
        return recreate(layer.__class__, config)

    clone = copy_once(copy)
    trimmed = keras.models.clone_model(stripped, clone_function=clone)
    copies = layers_by_name(trimmed)
    for layer in layers_by_name(stripped).values():
        if layer.weights and not isinstance(layer, keras.Model):
            copies[layer.name].set_weights(plan.weights(layer))
    return trimmed


def trim(
    model: keras.Model,
    *,
    calibration_data: Any = None,
    batch_size: int = 32,
    dampening: float = 0.01,
) -> keras.Model:
    """Removes the masked channels of a `prune_channels` model: a smaller, plain Keras model.

    Every weight that holds a removed channel loses it (kernels, biases, BatchNormalization
    statistics, depthwise kernels, the four gates of an LSTM unit); Dense `units`, Conv
    `filters`, Embedding `output_dim`, recurrent `units` (of each direction of a
    `Bidirectional`, or inside a `TimeDistributed`) and a KerasHub transformer layer's
    `intermediate_dim` are lowered, and every layer keeps its class and name. Without
    `calibration_data` the trimmed model computes what the masked model computes (to float
    rounding). The model's inputs and outputs keep their shapes.

    With `calibration_data`, the update step follows: layer by layer in graph order, each Dense or
    Conv layer (inside a layer made of layers too) whose inputs lost channels gets the kernel
    and bias that best reproduce, by least squares on the calibration inputs, the pre-activation
    output it has in the unmasked model (the model with its masks lifted). After
    `prune_channels` with a schedule whose pruning happens at step 0 (one-shot, no training),
    the unmasked model is the dense model, and the update recovers much of what removing the
    channels lost. After fine-tuning, the masked channels hold their last trained values; trim
    such a model without calibration.

    Args:
        model: A model returned by `tfprune.prune_channels` (trained, saved and loaded, or not).
        calibration_data: None, or the inputs to refit on: an array, a list or dict of arrays,
            or an iterable of batches (`(x, y)` tuples give their x). Defaults to None.
        batch_size: Rows per batch when `calibration_data` is arrays. Defaults to 32.
        dampening: Ridge term, as a fraction of the mean diagonal of each layer's input Gram
            matrix. Defaults to 0.01.

    Returns:
        A new Sequential or Functional model with the removed channels cut out.

    Raises:
        TypeError: If `model` is not a Keras model.
        ValueError: If the model was not pruned by `prune_channels`, its graph changed since,
            or `batch_size`/`dampening` are out of range.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"Argument `model` must be a keras Model. Received: model={model!r} of type "
            f"{type(model).__name__}"
        )
    wrappers = [w for w in pruning_wrappers(model) if isinstance(w.rule, ChannelRule)]
    if not wrappers:
        raise ValueError(
            f"Model '{model.name}' was not pruned by channels: it holds no layer that "
            "tfprune.prune_channels wrapped, so there is nothing to trim."
        )
    check_int("batch_size", batch_size, 1)
    dampening = check_number("dampening", dampening, 0.0, None)
    stripped = clone_stripped(model)
    plan = Plan(stripped, wrappers)
    trimmed = _rebuilt(stripped, plan)
    if calibration_data is not None:
        reference = clone_stripped(model)
        layers = layers_by_name(reference)
        for wrapper in wrappers:  # the weights as stored: the masks lifted
            layers[wrapper.layer.name].set_weights(wrapper.layer.get_weights())
        data = replayable(calibration_data, batch_size)
        refit(reference, trimmed, plan, data, batch_size, dampening)
    return trimmed
