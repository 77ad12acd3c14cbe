"""`prune_channels`: mask whole channels, ramped by the usual schedules.

The groups come from the model's graph (`tfprune.channels.graph`); every layer whose kernel
holds a removable group (the layers that create it, the depthwise kernels that follow it, the
layers that read it) is wrapped in a `PruneLowMagnitude` whose mask rule holds the groups of
its kernel's axes (`tfprune.core.rules.ChannelRule`), and all of them are pruned together by
`UpdatePruningStep`. `tfprune.trim` then removes the masked channels for real.
"""

from __future__ import annotations

import warnings
from typing import Any

import keras

from tfprune.channels.graph import QUIET, ChannelGraph
from tfprune.core.cloning import clone_pruned
from tfprune.core.find import is_pruned, pruning_wrappers
from tfprune.core.groups import update_together
from tfprune.core.selection import check_selector, matches
from tfprune.core.wrapper import PruneLowMagnitude
from tfprune.masks.allocation import check_allocation
from tfprune.masks.channels import CRITERIA
from tfprune.models.registry import prunable_weights, weight_label
from tfprune.models.walk import model_kind
from tfprune.schedules import PruningSchedule, as_schedule
from tfprune.utils.checks import check_choice, check_int

__all__ = ["prune_channels"]

UNSUPPORTED = ("raise", "keep")


class _ChannelSelection:
    """Which layers the model copy wraps, each with the channel groups of its kernels."""

    def __init__(self, specs: dict[str, dict[str, Any]], schedule: PruningSchedule, group: str):
        self.specs, self.schedule, self.group = specs, schedule, group

    def schedule_for(self, layer: Any) -> PruningSchedule | None:
        return self.schedule if getattr(layer, "name", None) in self.specs else None

    def wrap(self, layer: Any, schedule: PruningSchedule) -> PruneLowMagnitude:
        return PruneLowMagnitude(
            layer,
            pruning_schedule=schedule,
            allocation_group=self.group,
            channels=self.specs[layer.name],
        )


def _check_arguments(model, criterion, round_to, layers, allocation, unsupported):
    if not isinstance(model, keras.Model):
        raise TypeError(
            "Argument `model` must be a keras Model. "
            f"Received: model={model!r} of type {type(model).__name__}"
        )
    if model_kind(model) == "subclassed":
        raise ValueError(
            f"Model '{model.name}' is subclassed: its channels cannot be read from a graph. "
            "prune_channels takes Sequential and Functional models (KerasHub backbones and "
            "tasks included); build the model functionally, or prune it unstructured."
        )
    if not model.built or not model.outputs:
        raise ValueError(f"Model '{model.name}' is not built: call it once or give it an Input.")
    if is_pruned(model):
        raise ValueError(
            f"Model '{model.name}' is already pruned: it holds PruneLowMagnitude wrappers. "
            "Strip it first with tfprune.strip_pruning."
        )
    check_choice("criterion", criterion, CRITERIA)
    check_int("round_to", round_to, 1)
    check_allocation(allocation)
    check_choice("unsupported", unsupported, UNSUPPORTED)
    if layers is not None:
        if not isinstance(layers, (list, tuple)):
            raise TypeError(
                "Argument `layers` must be None or a list of layer selectors (name patterns, "
                f"classes or functions). Received: layers={layers!r}"
            )
        for selector in layers:
            check_selector(selector)


def _specs(graph: ChannelGraph, options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    specs = {}
    for name, labels in graph.weights.items():
        layer = graph.layers[name]
        pruned = {weight_label(layer, w) for w in prunable_weights(layer)}
        weights = {
            label: [[a.axis, a.role, graph.ids(a.positions).tolist()] for a in axes]
            for label, axes in labels.items()
            if label in pruned
        }
        if any(i >= 0 for axes in weights.values() for _, _, ids in axes for i in ids):
            specs[name] = dict(options, weights=weights)
    return specs


def prune_channels(
    model: keras.Model,
    pruning_schedule: PruningSchedule | None = None,
    *,
    criterion: str = "l2",
    round_to: int = 1,
    layers: Any = None,
    allocation: str = "layer",
    unsupported: str = "raise",
) -> keras.Model:
    """Prunes whole channels: Dense units, Conv filters, Embedding features, recurrent units.

    Channels that must go together are found from the model's graph (see the guide,
    docs/structured.md): the inputs of a residual `Add` (or Subtract, Multiply, Average,
    Maximum, Minimum, and the `+ - *` operations), the slices of a `Concatenate`, a
    BatchNormalization or depthwise convolution and the layer before it, a squeeze-and-excite
    gate and the features it scales, `Flatten` into a Dense (each channel's rows at every
    spatial position), the four gates of an LSTM unit. Inside `TimeDistributed`, `Bidirectional` and
    KerasHub's `TransformerEncoder`/`TransformerDecoder` (their feed-forward units), the layers
    they hold are pruned too, so KerasHub backbones and tasks built from them (GPT-2, BERT, OPT,
    ...) are pruned as they are. Each such group is masked on every kernel axis that holds it:
    the output columns of the layers that create it and the input rows of the layers that read
    it, so the masked model computes exactly what the model without those channels computes
    (`tfprune.trim` builds that model). Groups that reach a model output or input, or a layer
    that mixes the features (LayerNormalization, a softmax over them), are kept whole; a warning
    names the layers whose channels are kept for a reason other than being the model's inputs or
    outputs.

    The masks are ramped by `pruning_schedule`, whose sparsity is the fraction of groups
    removed, and updated by `UpdatePruningStep` inside `model.fit`, with all the wrappers
    pruned together; they save, load and resume like unstructured masks. The schedule's
    update at step 0, if any, is applied at once: `ConstantSparsity(s, begin_step=0)` gives a
    model pruned one-shot, ready for `tfprune.trim` (with `calibration_data` for its update
    step) without training.

    Args:
        model: A built Sequential or Functional model (a KerasHub backbone or task included).
        pruning_schedule: A `tfprune.PruningSchedule` of the fraction of channel groups to
            remove. Defaults to `ConstantSparsity(0.5, begin_step=0)`.
        criterion: "l2" (the joint L2 norm of all the weight entries a group holds, in every
            layer) or "l1". Defaults to "l2".
        round_to: Each layer keeps a multiple of this many channels (4, 8 or 16 suit CPU
            kernels), rounding up: it may keep more than the schedule asks. Defaults to 1.
        layers: None (every layer's channels may go), or a list of selectors (name patterns
            with `*` and `?`, layer classes, or functions of the layer) naming the layers whose
            output channels may go; a group created by several layers goes only if all of
            them are named. Defaults to None.
        allocation: "layer" (each layer removes the schedule's share of its own groups) or
            "global" (groups of all layers ranked together, each layer's scores scaled by
            their root mean square; a layer keeps at least one channel). Defaults to "layer".
        unsupported: "raise" (a layer whose channels cannot be followed is an error naming
            it) or "keep" (its channels are kept whole, with a warning). Defaults to "raise".

    Returns:
        A copy of the model with `PruneLowMagnitude` wrappers pruned by channels.

    Raises:
        TypeError: If `model`, `pruning_schedule` or `layers` has the wrong type.
        ValueError: If the model is subclassed, unbuilt or already pruned, an argument is out
            of range, a layer cannot be followed (with `unsupported="raise"`), or no channel
            can be removed.

    Example:

    >>> import keras, tfprune
    >>> inputs = keras.Input((8,))
    >>> hidden = keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
    >>> model = keras.Model(inputs, keras.layers.Dense(2, name="out")(hidden))
    >>> pruned = tfprune.prune_channels(model, tfprune.ConstantSparsity(0.25, begin_step=0))
    >>> small = tfprune.trim(pruned)
    >>> small.get_layer("hidden").units
    12
    """
    _check_arguments(model, criterion, round_to, layers, allocation, unsupported)
    schedule = as_schedule(pruning_schedule)
    selected = None
    if layers is not None:
        selected = lambda layer: any(matches(s, layer) for s in layers)  # noqa: E731
    graph = ChannelGraph(model, unsupported, selected)
    options = {"criterion": criterion, "round_to": int(round_to), "allocation": allocation}
    specs = _specs(graph, options)
    told = {
        name: reason
        for name, reason in graph.kept_reasons.items()
        if reason not in QUIET and (selected is None or selected(graph.layers[name]))
    }
    if told:
        warnings.warn(
            "Channels kept whole: "
            + "; ".join(f"'{name}' ({reason})" for name, reason in sorted(told.items())),
            UserWarning,
            stacklevel=2,
        )
    if not specs:
        raise ValueError(
            f"Model '{model.name}' has no channel that can be removed: every group reaches a "
            "model output or input, or a layer that keeps it whole"
            + (f" ({', '.join(sorted(set(told.values())))})" if told else "")
            + (". Check `layers`." if layers is not None else ".")
        )
    result = clone_pruned(model, _ChannelSelection(specs, schedule, f"channels/{model.name}"))
    update, sparsity = schedule(0)
    if update:
        update_together(pruning_wrappers(result), sparsity, step=0)
    return result
