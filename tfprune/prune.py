"""`prune_low_magnitude` and `strip_pruning`: wrap a model's prunable layers, and unwrap them."""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import keras
from keras import ops

from tfprune.registry import supports
from tfprune.schedules import PruningSchedule
from tfprune.walk import model_kind, walk
from tfprune.wrapper import PruneLowMagnitude

__all__ = [
    "prune_low_magnitude",
    "strip_pruning",
    "is_pruned",
    "pruning_wrappers",
    "replaced_masks",
    "warn_replaced_masks",
]

# tfmot's option names; only their defaults are accepted, so migrating code that passes them
# explicitly keeps working while a structured request fails loudly instead of being ignored.
_TFMOT_DEFAULTS = {
    "block_size": (1, 1),
    "block_pooling_type": "AVG",
    "pruning_policy": None,
    "sparsity_m_by_n": None,
}


def _outside_wrappers(layer: Any) -> bool:
    return not isinstance(layer, PruneLowMagnitude)


def pruning_wrappers(model: Any) -> list[PruneLowMagnitude]:
    """Returns every `PruneLowMagnitude` layer of `model`, nested models included, in order."""
    return [
        layer
        for layer in walk(model, into=_outside_wrappers)
        if isinstance(layer, PruneLowMagnitude)
    ]


def is_pruned(model: Any) -> bool:
    """Returns whether `model` (or layer) holds at least one `PruneLowMagnitude` wrapper."""
    return bool(pruning_wrappers(model))


def _check_options(options: dict[str, Any]) -> None:
    for key, value in options.items():
        if key not in _TFMOT_DEFAULTS:
            raise TypeError(
                f"prune_low_magnitude() got an unexpected keyword argument `{key}`. "
                f"Received: {key}={value!r}"
            )
        default = _TFMOT_DEFAULTS[key]
        same = tuple(value) == default if isinstance(value, (list, tuple)) else value == default
        if not same:
            raise ValueError(
                f"Argument `{key}` is not supported: tfprune prunes unstructured, per weight. "
                f"Received: {key}={value!r}"
            )


def replaced_masks(model: Any) -> list[tuple[PruneLowMagnitude, float, float]]:
    """The wrappers whose masks were replaced behind their back, with both sparsities.

    Restoring weights restores masks too (`set_weights`, `EarlyStopping(restore_best_weights=
    True)`): the model stays consistent, but it may be less sparse than its last update left it.

    Returns:
        `(wrapper, sparsity now, sparsity it last wrote)` for each wrapper where they differ.
    """
    found = []
    for w in pruning_wrappers(model):
        written = w.written_sparsity
        if written is None:
            continue
        now = w.mask_sparsity()
        if abs(now - written) > 1e-9:
            found.append((w, now, written))
    return found


def warn_replaced_masks(model: Any, stacklevel: int = 2) -> None:
    """Warns once, naming every wrapper whose masks were replaced (see `replaced_masks`).

    The current masks are then taken as the wrappers' own, so each restore is told once.
    """
    found = replaced_masks(model)
    if not found:
        return
    layers = ", ".join(f"'{w.name}' is {now:.1%} sparse (was {was:.1%})" for w, now, was in found)
    warnings.warn(
        f"Masks of model '{model.name}' were restored together with its weights, after the "
        f"last pruning update: {layers}. This is what set_weights, or "
        "EarlyStopping(restore_best_weights=True), does: the model is consistent (its weights "
        "are zero where masked) but less sparse than pruned. To keep the target sparsity, let "
        "EarlyStopping start after the ramp (start_from_epoch=<first epoch after end_step>) "
        "or keep training with UpdatePruningStep.",
        UserWarning,
        stacklevel=stacklevel,
    )
    for w, _, _ in found:
        w.adopt_masks()


def _check_model(model: keras.Model, verb: str) -> None:
    if model_kind(model) == "subclassed":
        raise ValueError(
            f"Cannot {verb} model '{model.name}' of type {type(model).__name__}: only Sequential "
            "and Functional models can be cloned. For a subclassed model, wrap its prunable "
            "layers in its __init__ (self.dense = tfprune.prune_low_magnitude(Dense(...))), "
            "or implement tfprune.PrunableLayer on custom layers."
        )
    if isinstance(model, keras.Sequential) and not model.built:
        raise ValueError(
            f"Cannot {verb} Sequential model '{model.name}': it is not built. Give it an "
            "`keras.Input(shape)` first layer or call `model.build(input_shape)`."
        )


def _fresh(layer: Any) -> Any:
    return layer.__class__.from_config(layer.get_config())


class _Copy:
    """Builds the cloned layers and records how to fill their weights from the originals."""

    def __init__(self, schedule: PruningSchedule | None, prune: bool) -> None:
        self.schedule = schedule
        self.prune = prune
        self.todo: list[tuple[Any, Any, str]] = []

    def __call__(self, layer: Any) -> Any:
        if isinstance(layer, PruneLowMagnitude):
            if self.prune:
                raise ValueError(
                    f"Layer '{layer.name}' is already pruned: the model holds PruneLowMagnitude "
                    "wrappers. Strip it first with tfprune.strip_pruning, or keep training it."
                )
            new = _fresh(layer.layer)
            self.todo.append((layer, new, "strip"))
            return new
        if isinstance(layer, keras.layers.InputLayer):
            return _fresh(layer)
        new = _fresh(layer)
        if self.prune and supports(layer):
            wrapped = PruneLowMagnitude(new, pruning_schedule=self.schedule)
            self.todo.append((layer, wrapped, "wrap"))
            return wrapped
        self.todo.append((layer, new, "copy"))
        return new

    def fill(self) -> None:
        for old, new, how in self.todo:
            if how == "copy":
                new.set_weights(old.get_weights())
            elif how == "wrap":
                new.layer.set_weights(old.get_weights())
            else:
                masks = {id(w): m for w, m in old.pruned_weights}
                values = []
                for v in old.layer.weights:
                    m = masks.get(id(v))
                    value = v.value if m is None else v.value * ops.cast(m.value, v.dtype)
                    values.append(ops.convert_to_numpy(value))
                new.set_weights(values)


def _call(layer: Any, *args: Any, **kwargs: Any) -> Any:
    # A wrapper's graph node records `mask=` for it; the layer that replaces it may not take one.
    if "mask" in kwargs and "mask" not in inspect.signature(layer.call).parameters:
        kwargs.pop("mask")
    return layer(*args, **kwargs)


def _clone_model(model: keras.Model, copier: _Copy) -> keras.Model:
    call_function = None if isinstance(model, keras.Sequential) else _call
    clone = keras.models.clone_model(
        model, clone_function=copier, call_function=call_function, recursive=True
    )
    copier.fill()
    return clone


def prune_low_magnitude(
    to_prune: Any, pruning_schedule: PruningSchedule | None = None, **options: Any
) -> Any:
    """Wraps a layer, a list of layers, or every prunable layer of a model for pruning.

    For a Sequential or Functional model the model is cloned: every layer with prunable weights
    is wrapped in `PruneLowMagnitude` (weights copied, masks all ones), every other layer is
    cloned with its weights, and the original model is left untouched. Prunable weights are the
    kernels of Dense, EinsumDense, Conv1D/2D/3D, Conv1D/2D/3DTranspose, DepthwiseConv1D/2D and
    the pointwise kernels of SeparableConv1D/2D; Embedding's embeddings; the kernel and recurrent
    kernel of SimpleRNN, LSTM and GRU; the query, key, value and output kernels of
    MultiHeadAttention; layers nested in Bidirectional and TimeDistributed; and whatever a custom
    layer returns from `PrunableLayer.get_prunable_weights()`. Biases are never pruned.

    Train the result with `callbacks=[tfprune.UpdatePruningStep()]`.

    Args:
        to_prune: A Keras layer, a list of layers, or a built Sequential or Functional model.
        pruning_schedule: A `tfprune.PruningSchedule` shared by every wrapped layer. Defaults to
            `ConstantSparsity(0.5, begin_step=0)`, as in tfmot.
        **options: tfmot's `block_size`, `block_pooling_type`, `pruning_policy` and
            `sparsity_m_by_n` are accepted at their default values only.

    Returns:
        A `PruneLowMagnitude` layer, a list of them, or a new model of the same kind.

    Raises:
        TypeError: If `to_prune` is not a layer, list or model, or an option is unknown.
        ValueError: If a layer has no prunable weights, is already wrapped, the model is
            subclassed, unbuilt or already pruned, or holds no prunable layer.

    Example:

    >>> import keras, tfprune
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3),
    ...                           keras.layers.Dropout(0.1), keras.layers.Dense(2)])
    >>> pruned = tfprune.prune_low_magnitude(
    ...     model, tfprune.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=100))
    >>> [type(layer).__name__ for layer in pruned.layers]
    ['PruneLowMagnitude', 'Dropout', 'PruneLowMagnitude']
    """
    _check_options(options)
    if isinstance(to_prune, keras.Model):
        _check_model(to_prune, "prune")
        if is_pruned(to_prune):
            raise ValueError(
                f"Model '{to_prune.name}' is already pruned: it holds PruneLowMagnitude "
                "wrappers. Keep training it, or strip it first with tfprune.strip_pruning."
            )
        if not any(supports(layer) for layer in walk(to_prune) if layer is not to_prune):
            raise ValueError(
                f"Model '{to_prune.name}' has no layer with prunable weights; nothing to prune."
            )
        return _clone_model(to_prune, _Copy(pruning_schedule, prune=True))
    if isinstance(to_prune, (list, tuple)):
        return [prune_low_magnitude(layer, pruning_schedule) for layer in to_prune]
    if isinstance(to_prune, keras.layers.Layer):
        return PruneLowMagnitude(to_prune, pruning_schedule=pruning_schedule)
    raise TypeError(
        "Argument `to_prune` must be a keras layer, a list of layers, or a Sequential or "
        f"Functional model. Received: to_prune={to_prune!r} of type {type(to_prune).__name__}"
    )


def strip_pruning(model: Any) -> Any:
    """Returns a plain Keras model with the pruning wrappers removed and the zeros baked in.

    Every `PruneLowMagnitude` layer is replaced by a clone of the layer it wraps, with weights
    `weight * mask`; every other layer is cloned with its weights. The result has the same layer
    classes and configs as the model before pruning, no tfprune state, and the same predictions
    as the pruned model. The pruned model is left untouched.

    Args:
        model: A pruned Sequential or Functional model, or a single `PruneLowMagnitude` layer.

    Returns:
        A new model of the same kind, or the unwrapped layer for a single wrapper.

    Raises:
        TypeError: If `model` is not a Keras model or layer.
        ValueError: If the model holds no `PruneLowMagnitude` layer (it was never pruned), or is
            subclassed.

    Example:

    >>> import keras, tfprune
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> stripped = tfprune.strip_pruning(tfprune.prune_low_magnitude(model))
    >>> [type(layer).__name__ for layer in stripped.layers]
    ['Dense']
    """
    if isinstance(model, PruneLowMagnitude):
        model.bake()
        return model.layer
    if not isinstance(model, keras.Model):
        raise TypeError(
            "Argument `model` must be a pruned keras Model. "
            f"Received: model={model!r} of type {type(model).__name__}"
        )
    if not is_pruned(model):
        raise ValueError(
            f"Model '{model.name}' was never pruned: it holds no PruneLowMagnitude layer, so "
            "there is nothing to strip. Export or save it as it is."
        )
    _check_model(model, "strip")
    warn_replaced_masks(model, stacklevel=3)
    return _clone_model(model, _Copy(None, prune=False))
