"""Pruning and stripping whole models: the work behind `prune_low_magnitude(model)` and
`strip_pruning(model)`, which `prune_one_shot` shares.

A Sequential or Functional model is copied with the chosen layers wrapped
(`tfprune.core.cloning`); a subclassed model gets its wrappers where its attributes hold its
layers (`tfprune.core.in_place`). Either way the caller learns when much of the model stays
dense because no rule prunes its weights.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np

from tfprune.core.cloning import clone_pruned, clone_stripped
from tfprune.core.find import is_pruned, pruning_wrappers
from tfprune.core.in_place import prune_subclassed, strip_in_place
from tfprune.core.restored import warn_replaced_masks
from tfprune.core.selection import LayerSelection
from tfprune.core.wrapper import PruneLowMagnitude
from tfprune.models.registry import supports
from tfprune.models.walk import model_kind, walk

__all__ = ["wrap_model", "strip_model", "check_built"]


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


def wrap_model(model: keras.Model, selection: LayerSelection) -> keras.Model:
    """The model with the layers `selection` picks wrapped (see `prune_low_magnitude`).

    Raises:
        ValueError: If the model is unbuilt, already pruned, holds no prunable layer, or
            `selection` names no layer or leaves none to prune.
    """
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
    if model_kind(model) == "subclassed":
        result, wrappers = prune_subclassed(model, selection)
    else:
        result = clone_pruned(model, selection)
        wrappers = pruning_wrappers(result)
    selection.check_used(lambda: prunable)
    if not wrappers:
        raise ValueError(
            f"Argument `layers` leaves no layer of model '{model.name}' to prune. "
            f"Layers with prunable weights: {', '.join(prunable)}"
        )
    _warn_unprunable(result, wrappers)
    return result


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
    if model_kind(model) == "subclassed":
        return strip_in_place(model)
    return clone_stripped(model)
