"""Pruning and stripping whole models: the work behind `prune_low_magnitude(model)` and
`strip_pruning(model)`, which `prune_one_shot` shares.

A Sequential or Functional model is copied with the chosen layers wrapped
(`tfprune.core.cloning`); a subclassed model gets its wrappers where its attributes hold its
layers (`tfprune.core.in_place`). With `in_place=True`, or when a layer cannot be copied
through its config, the model's own layers are wrapped instead (`tfprune.core.in_graph`): of
a copy of the model made through its own top-level config where there is one, else of the
model itself. Either way the caller learns when much of the model stays dense because no rule
prunes its weights.
"""

from __future__ import annotations

import warnings
from typing import Any

import keras
import numpy as np

from tfprune.core.cloning import clone_pruned, clone_stripped, copy_once
from tfprune.core.find import is_pruned, pruning_wrappers
from tfprune.core.in_graph import (
    PrunedGraphModel,
    keeps_its_class,
    rebuild_with,
    strip_in_graph,
    wrap_in_graph,
)
from tfprune.core.in_place import (
    PrunedModel,
    copy_subclassed,
    prune_in_place,
    strip_in_place,
)
from tfprune.core.restored import warn_replaced_masks
from tfprune.core.selection import LayerSelection
from tfprune.core.wrapper import PruneLowMagnitude
from tfprune.models.rebuild import CopyError
from tfprune.models.registry import supports
from tfprune.models.walk import model_kind, walk

__all__ = ["wrap_model", "strip_model", "check_built", "check_in_place"]


def check_built(model: keras.Model, verb: str) -> None:
    """Raises unless `model` can be walked: a Sequential model must be built."""
    if isinstance(model, keras.Sequential) and not model.built:
        raise ValueError(
            f"Cannot {verb} Sequential model '{model.name}': it is not built. Give it an "
            "`keras.Input(shape)` first layer or call `model.build(input_shape)`."
        )


# Above this share of a model's parameters in weights no rule can prune, pruning says so.
_UNPRUNABLE_WARNING_SHARE = 0.05
# Layers of these packages are known: what they leave dense, they leave dense by design.
_LIBRARY_MODULES = ("keras.", "keras_hub.", "tf_keras.")


def _warn_unprunable(model: keras.Model, pruned: list[PruneLowMagnitude]) -> None:
    """Warns when much of the model stays dense because no rule covers its weights."""
    covered = {id(v) for w in pruned for v in w.layer.weights}
    # Layers the caller chose to keep dense are not "cannot be pruned".
    for layer in walk(model):
        if supports(layer) and not isinstance(layer, keras.Model):
            covered |= {id(v) for v in layer.weights}
    total, left, custom = 0, {}, set()
    for layer in walk(model, into=lambda x: isinstance(x, keras.Model) or x is model):
        if isinstance(layer, keras.Model):
            continue
        for v in layer.trainable_weights:
            size = int(np.prod(v.shape))
            total += size
            if id(v) not in covered:
                left[layer.name] = left.get(layer.name, 0) + size
                if not type(layer).__module__.startswith(_LIBRARY_MODULES):
                    custom.add(layer.name)
    share = sum(left.values()) / total if total else 0.0
    if share <= _UNPRUNABLE_WARNING_SHARE:
        return
    largest = sorted(left.items(), key=lambda item: -item[1])[:5]
    named = ", ".join(f"'{name}' ({count:,})" for name, count in largest)
    if custom:
        advice = (
            f"Implement tfprune.PrunableLayer (get_prunable_weights) on the custom layer(s) "
            f"{', '.join(repr(n) for n in sorted(custom)[:5])} to prune their weights."
        )
    else:
        advice = (
            "These are weights tfprune keeps dense by design (biases, normalization, position "
            "embeddings); the model's total sparsity stays below the target by that share."
        )
    warnings.warn(
        f"{share:.1%} of the parameters of model '{model.name}' are in weights that no rule "
        f"prunes; the largest such layers: {named}. {advice}",
        UserWarning,
        stacklevel=4,
    )


def check_in_place(in_place: Any) -> bool | None:
    """Returns `in_place` (None, True or False), or raises a `TypeError`."""
    if in_place is not None and not isinstance(in_place, bool):
        raise TypeError(
            "Argument `in_place` must be None (copy when the model can be copied), True or "
            f"False. Received: in_place={in_place!r} of type {type(in_place).__name__}"
        )
    return in_place


def wrap_model(
    model: keras.Model, selection: LayerSelection, in_place: bool | None = None
) -> keras.Model:
    """The model with the layers `selection` picks wrapped (see `prune_low_magnitude`).

    Raises:
        ValueError: If the model is unbuilt, already pruned, holds no prunable layer, or
            `selection` names no layer or leaves none to prune, or `in_place=False` and it
            cannot be copied.
    """
    check_in_place(in_place)
    check_built(model, "prune")
    if is_pruned(model):
        raise ValueError(
            f"Model '{model.name}' is already pruned: it holds PruneLowMagnitude "
            "wrappers. Keep training it, or strip it first with tfprune.strip_pruning."
        )
    prunable = [x.name for x in walk(model) if x is not model and supports(x)]
    if not prunable:
        raise ValueError(
            f"Model '{model.name}' has no layer with prunable weights; nothing to prune."
        )
    if selection.policy is not None:
        selection.policy.ensure_model_supports_pruning(model)
    if in_place:
        result, wrappers = _wrap_own_layers(model, selection)
    elif model_kind(model) == "subclassed":
        result, wrappers = _wrap_subclassed(model, selection, in_place)
    else:
        result, wrappers = _wrap_graph(model, selection, in_place)
    selection.check_used(lambda: prunable)
    if not wrappers:
        raise ValueError(
            f"Argument `layers` leaves no layer of model '{model.name}' to prune. "
            f"Layers with prunable weights: {', '.join(prunable)}"
        )
    _warn_unprunable(result, wrappers)
    return result


def _wrap_own_layers(model: keras.Model, selection: LayerSelection) -> tuple[keras.Model, list]:
    """Wraps `model`'s own layer objects: no layer is copied (see `tfprune.core.in_graph`)."""
    kind = model_kind(model)
    if kind == "subclassed":
        return model, prune_in_place(model, selection)
    if kind == "functional" and keeps_its_class(model):
        return model, wrap_in_graph(model, selection)
    made: list[PruneLowMagnitude] = []

    def swap(layer: Any) -> Any:
        schedule = selection.schedule_for(layer)
        if schedule is None or isinstance(layer, keras.layers.InputLayer):
            return layer
        made.append(selection.wrap(layer, schedule))
        return made[-1]

    return rebuild_with(model, copy_once(swap)), made


def _wrap_subclassed(model: keras.Model, selection: LayerSelection, in_place: bool | None):
    if not model.built:
        return model, prune_in_place(model, selection)
    try:
        copy = copy_subclassed(model)
    except CopyError as error:
        if in_place is False:
            raise ValueError(
                f"{error} Or pass `in_place=True` to prune the model's own layers (no copy: "
                "the returned model is the model itself)."
            ) from error
        _warn_in_place(model, error)
        return model, prune_in_place(model, selection)
    wrappers = prune_in_place(copy, selection, built_like=model)
    return copy, wrappers


def _wrap_graph(model: keras.Model, selection: LayerSelection, in_place: bool | None):
    # A model of a class of its own (a KerasHub task or backbone) is copied through its own
    # config, so the pruned model keeps its class (a causal LM still generates) and a layer
    # two of its parts share (tied embeddings) stays one layer.
    copy = _copy_through_config(model)
    if copy is not None:
        return _wrap_own_layers(copy, selection)
    try:
        result = clone_pruned(model, selection)
        return result, pruning_wrappers(result)
    except CopyError as error:
        if in_place is False:
            raise ValueError(
                f"{error} Neither can the model be re-created from its own config. Pass "
                "`in_place=True` to prune the model's own layers (no copy: the pruned model "
                "shares the original's layers and variables)."
            ) from error
        _warn_in_place(model, error)
        return _wrap_own_layers(model, selection)


def _copy_through_config(model: keras.Model) -> keras.Model | None:
    """A copy of a model whose class re-creates it from its own config (a KerasHub backbone or
    task builds its layers in its constructor), with the model's weights; None if it has no
    such config or the copy differs."""
    if not keeps_its_class(model):
        return None
    try:
        copy = type(model).from_config(model.get_config())
    except Exception:  # noqa: BLE001 - any failure means: no copy this way
        return None
    weights = model.get_weights()
    if not copy.built or [w.shape for w in copy.get_weights()] != [w.shape for w in weights]:
        return None
    copy.set_weights(weights)
    # A task's preprocessor holds its vocabulary in assets its config leaves out.
    if getattr(model, "preprocessor", None) is not None:
        copy.preprocessor = model.preprocessor
    return copy


def _warn_in_place(model: keras.Model, error: Exception) -> None:
    warnings.warn(
        f"Model '{model.name}' cannot be copied ({error}); its own layers are pruned in place "
        "instead: the returned model shares them and their variables with it, and training "
        "the pruned model changes both. Pass `in_place=True` to say so and silence this "
        "warning.",
        UserWarning,
        stacklevel=4,
    )


def strip_model(model: keras.Model) -> keras.Model:
    """The model without its wrappers, zeros baked in (see `strip_pruning`).

    Raises:
        ValueError: If the model holds no wrapper, or is an unbuilt Sequential model.
    """
    if not is_pruned(model):
        raise ValueError(
            f"Model '{model.name}' was never pruned: it holds no PruneLowMagnitude layer, so "
            "there is nothing to strip. Export or save it as it is."
        )
    check_built(model, "strip")
    warn_replaced_masks(model, stacklevel=4)
    if isinstance(model, PrunedGraphModel):
        return strip_in_graph(model)
    if model_kind(model) == "subclassed" or isinstance(model, PrunedModel):
        return strip_in_place(model)
    try:
        return clone_stripped(model)
    except CopyError:
        # The same layer objects, unwrapped, in a new model of the same graph.
        def unwrap(layer: Any) -> Any:
            if isinstance(layer, PruneLowMagnitude):
                layer.bake()
                return layer.layer
            return layer

        return rebuild_with(model, unwrap)
