"""`prune_low_magnitude` and `strip_pruning`: wrap a model's prunable layers, and unwrap them.

The front door of gradual pruning. The work on whole models is `tfprune.core.wrap`'s; the
wrapper is `tfprune.core.wrapper.PruneLowMagnitude`.
"""

from __future__ import annotations

from typing import Any

import keras

from tfprune.core.selection import LayerSelection
from tfprune.core.wrap import strip_model, wrap_model
from tfprune.core.wrapper import PruneLowMagnitude
from tfprune.masks.patterns import Pattern
from tfprune.policy import PruningPolicy
from tfprune.schedules import ConstantSparsity, PolynomialDecay, PruningSchedule

__all__ = ["prune_scope", "prune_low_magnitude", "strip_pruning"]

# tfmot's option names; only their defaults are accepted, so migrating code that passes them
# explicitly keeps working while a structured request fails loudly instead of being ignored.
_TFMOT_DEFAULTS = {
    "block_size": (1, 1),
    "block_pooling_type": "AVG",
    "pruning_policy": None,
    "sparsity_m_by_n": None,
}


def _structure_of(options: dict[str, Any]) -> tuple[Pattern, PruningPolicy | None]:
    """tfmot's structure options as a `Pattern` and a policy; unknown keywords are errors."""
    for key, value in options.items():
        if key not in _TFMOT_DEFAULTS:
            raise TypeError(
                f"prune_low_magnitude() got an unexpected keyword argument `{key}`. "
                f"Received: {key}={value!r}"
            )
    policy = options.get("pruning_policy")
    if policy is not None and not isinstance(policy, PruningPolicy):
        raise TypeError(
            "Argument `pruning_policy` must be a tfprune.PruningPolicy (such as "
            f"tfprune.PruneForLatencyOnXNNPack()). Received: pruning_policy={policy!r}"
        )
    options = {k: v for k, v in options.items() if k != "pruning_policy"}
    return Pattern.of(**options), policy


def prune_low_magnitude(
    to_prune: Any,
    pruning_schedule: PruningSchedule | None = None,
    *,
    layers: Any = None,
    allocation: str = "layer",
    in_place: bool | None = None,
    **options: Any,
) -> Any:
    """Wraps a layer, a list of layers, or the prunable layers of a model for pruning.

    For a Sequential or Functional model (a subclass of Functional included, such as a KerasHub
    backbone or task) the model is copied: every layer chosen for pruning is wrapped in
    `PruneLowMagnitude` (weights copied, masks all ones), every other layer is copied with its
    weights, nested models likewise, and the original model is left untouched. The copy of a
    Functional subclass is a Functional model of the same graph, as `keras.models.clone_model`
    makes it: it trains, predicts, saves and exports, but has none of the subclass's own
    methods (see `strip_pruning` for getting the weights back into the original).

    A subclassed model (one with its own `call`) is pruned through its attributes: each
    prunable layer it holds in an attribute (directly, or in a list or dict) is replaced there
    by its wrapper, so the model's `call` runs the wrappers. An unbuilt model is pruned in place
    and returned; a built one (Keras adds no layer to a built model) is re-created from its
    config, pruned, built and given its weights, and the copy is returned. Either saves to
    `.keras` and loads again if the model itself does.

    No copy (`in_place=True`): the model's own layer objects are wrapped, so their weights
    stay the same variables and the masks sit beside them; nothing is held twice, which a
    large language model needs. A Functional subclass (a KerasHub backbone or causal LM)
    stays the same object of its own class: its graph and its attributes (a backbone's
    `transformer_layers`, which `generate` calls) call the wrappers, it saves with its own
    config and loads again, and `strip_pruning` puts its layers back in place. A plain
    Functional or Sequential model comes back as a new model calling the wrappers of the same
    layers; a subclassed model, built or not, is the model itself. By default
    (`in_place=None`) the model is copied, and when a layer cannot be copied through its
    config (KerasHub 0.32's Llama and Qwen 3 decoder layers), the model is copied through its
    own config instead (a KerasHub model is re-created by its constructor and given the
    weights), and that copy is pruned in place; when neither works, the model itself is
    pruned in place, with a warning. `in_place=False` copies or raises.

    Prunable weights are the kernels of Dense, EinsumDense, Conv1D/2D/3D,
    Conv1D/2D/3DTranspose, DepthwiseConv1D/2D and the pointwise kernels of SeparableConv1D/2D;
    Embedding's embeddings; the kernel and recurrent kernel of SimpleRNN, LSTM and GRU; the
    query, key, value and output kernels of MultiHeadAttention; whatever a custom layer returns
    from `PrunableLayer.get_prunable_weights()`; and every such weight inside a layer made of
    layers (Bidirectional, TimeDistributed, a KerasHub TransformerEncoder, a user's block),
    which is wrapped as one. A weight shared by two layers (a tied embedding) is pruned once.
    Biases are never pruned. If more than 5% of a model's parameters are in weights no rule
    covers, a warning names the largest such layers.

    Train the result with `callbacks=[tfprune.UpdatePruningStep()]`.

    Args:
        to_prune: A Keras layer, a list of layers, or a built Sequential, Functional or
            subclassed model.
        pruning_schedule: A `tfprune.PruningSchedule` for every wrapped layer (unless `layers`
            names others). Defaults to `ConstantSparsity(0.5, begin_step=0)`, as in tfmot.
        layers: Which layers of a model to prune: None (all with prunable weights); a list of
            selectors (the layers any of them matches, with `pruning_schedule`); or a dict from
            selectors to a schedule or None (keep dense), where the first selector that matches
            a layer decides and a layer none matches stays dense. A selector is a layer name
            pattern (`"block_*_expand"`, `*` and `?` wildcards, the whole name), a layer class,
            or a function of the layer returning a bool. Defaults to None.
        allocation: "layer" (each pruned weight reaches its schedule's sparsity) or "global"
            (one magnitude threshold across all the weights that share a schedule, so that their
            total reaches the schedule's sparsity and each weight gets its own). Defaults to
            "layer".
        in_place: None (copy the model, or prune its own layers when it cannot be copied,
            with a warning), True (prune the model's own layers, no copy) or False (copy, or
            raise). Defaults to None. Models only.
        **options: tfmot's structure options, with tfmot's meaning:
            `block_size=(rows, cols)` prunes whole blocks of each kernel viewed as a matrix
            `[prod(shape[:-1]), shape[-1]]` (Dense [in, out], a conv kernel [H·W·C_in, C_out]),
            `round(sparsity * blocks)` of them, ranked by `block_pooling_type` "AVG" (default)
            or "MAX" of their magnitudes; edge blocks may be partial.
            `sparsity_m_by_n=(m, n)` zeroes the m smallest of every n consecutive input
            channels (2:4 is (2, 4)); the schedule then only says when masks are recomputed,
            and without one the pattern is set at the first step and kept, as in tfmot.
            `pruning_policy` (a `tfprune.PruningPolicy`, such as
            `tfprune.PruneForLatencyOnXNNPack()`) checks the model and chooses which layers
            are wrapped; for a single layer or a list it only chooses.

    Returns:
        A `PruneLowMagnitude` layer, a list of them, a new model (Sequential or Functional), or
        the model itself, pruned (a subclassed model, or any model pruned in place).

    Raises:
        TypeError: If `to_prune` is not a layer, list or model, or an option is unknown.
        ValueError: If a layer has no prunable weights or is already wrapped, the model is
            unbuilt or already pruned or holds no layer to prune, `layers` names no layer, a
            subclassed model holds a prunable layer where no wrapper can replace it.

    Example:

    >>> import keras, tfprune
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="hidden"),
    ...                           keras.layers.Dropout(0.1), keras.layers.Dense(2, name="out")])
    >>> pruned = tfprune.prune_low_magnitude(
    ...     model, tfprune.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=100))
    >>> [type(layer).__name__ for layer in pruned.layers]
    ['PruneLowMagnitude', 'Dropout', 'PruneLowMagnitude']
    >>> first_only = tfprune.prune_low_magnitude(
    ...     model, layers={"hidden": tfprune.ConstantSparsity(0.5, begin_step=0)})
    >>> [type(layer).__name__ for layer in first_only.layers]
    ['PruneLowMagnitude', 'Dropout', 'Dense']
    """
    pattern, policy = _structure_of(options)
    if isinstance(to_prune, keras.Model):
        selection = LayerSelection(
            layers,
            pruning_schedule,
            allocation,
            group=to_prune.name,
            pattern=pattern,
            policy=policy,
        )
        return wrap_model(to_prune, selection, in_place)
    if layers is not None or allocation != "layer" or in_place is not None:
        raise ValueError(
            "Arguments `layers`, `allocation` and `in_place` apply to models; wrap single "
            f"layers with their own schedules. Received: layers={layers!r}, "
            f"allocation={allocation!r}, in_place={in_place!r}"
        )
    if isinstance(to_prune, (list, tuple)):
        return [prune_low_magnitude(layer, pruning_schedule, **options) for layer in to_prune]
    if isinstance(to_prune, keras.layers.Layer):
        if policy is not None and not policy.allow_pruning(to_prune):
            return to_prune
        return PruneLowMagnitude(to_prune, pruning_schedule=pruning_schedule, **pattern.config())
    raise TypeError(
        "Argument `to_prune` must be a keras layer, a list of layers, or a Keras model. "
        f"Received: to_prune={to_prune!r} of type {type(to_prune).__name__}"
    )


def strip_pruning(model: Any = None, **kwargs: Any) -> Any:
    """Returns the model with the pruning wrappers removed and the zeros baked in.

    For a Sequential or Functional model, every `PruneLowMagnitude` layer is replaced by a copy
    of the layer it wraps, with weights `weight * mask`, and every other layer is copied with
    its weights: a new model with the same layer classes and configs as before pruning, no
    tfprune state, and the same predictions; the pruned model is left untouched. A subclassed
    model, and a Functional subclass pruned in place (`in_place=True`), get their layers back
    in place (weights masked) and are returned. When a layer cannot be copied through its
    config, the new model calls the same layer objects, weights masked, as the pruned model's
    wrappers did.

    The weights come in the order of the model before pruning, so they fit the original model
    too: `original.set_weights(stripped.get_weights())` gives a KerasHub task (whose pruned
    copy is a plain Functional model) its pruned weights back, with `generate` and its
    preprocessor.

    Args:
        model: A pruned model, or a single `PruneLowMagnitude` layer. tfmot's keyword
            `to_strip` is accepted too.

    Returns:
        A new model of the same kind, the subclassed model itself, or the unwrapped layer for
        a single wrapper.

    Raises:
        TypeError: If `model` is not a Keras model or layer.
        ValueError: If the model holds no `PruneLowMagnitude` layer (it was never pruned).

    Example:

    >>> import keras, tfprune
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> stripped = tfprune.strip_pruning(tfprune.prune_low_magnitude(model))
    >>> [type(layer).__name__ for layer in stripped.layers]
    ['Dense']
    """
    if "to_strip" in kwargs:
        if model is not None:
            raise TypeError("Pass the model once: as `model` or as tfmot's `to_strip`.")
        model = kwargs.pop("to_strip")
    if kwargs:
        raise TypeError(
            f"strip_pruning() got an unexpected keyword argument `{next(iter(kwargs))}`."
        )
    if isinstance(model, PruneLowMagnitude):
        model.bake()
        return model.layer
    if not isinstance(model, keras.Model):
        raise TypeError(
            "Argument `model` must be a pruned keras Model. "
            f"Received: model={model!r} of type {type(model).__name__}"
        )
    return strip_model(model)


def prune_scope() -> Any:
    """tfmot's scope for loading pruned models, kept so that such code runs unchanged.

    `.keras` files need no scope: `PruneLowMagnitude` and the schedules are registered with
    Keras. Inside the scope they are also found by their bare names, as tfmot's are.

    Example:

    >>> import keras, tfprune
    >>> with tfprune.prune_scope():
    ...     wrapper = keras.saving.get_registered_object("PruneLowMagnitude")
    >>> wrapper is tfprune.PruneLowMagnitude
    True
    """
    return keras.saving.custom_object_scope(
        {
            "PruneLowMagnitude": PruneLowMagnitude,
            "PolynomialDecay": PolynomialDecay,
            "ConstantSparsity": ConstantSparsity,
        }
    )
