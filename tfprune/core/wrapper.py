"""The `PruneLowMagnitude` layer wrapper: binary masks on a layer's prunable weights."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import keras
from keras import ops

from tfprune.core.call_signature import call_like
from tfprune.core.groups import update_layer
from tfprune.core.rules import MaskRule, mask_rule
from tfprune.core.targets import Target, Untracked, new_mask
from tfprune.masks import magnitude
from tfprune.models.rebuild import deserialize_layer
from tfprune.models.registry import prunable_weights, supports, weight_label
from tfprune.models.walk import walk
from tfprune.schedules import PruningSchedule, as_schedule

__all__ = ["PruneLowMagnitude"]


@keras.saving.register_keras_serializable(package="tfprune")
class PruneLowMagnitude(keras.layers.Wrapper):
    """Wraps a layer so that its prunable weights are multiplied by binary masks.

    The forward pass uses `weight * mask` for every prunable weight (kernels, embeddings,
    recurrent kernels; never biases), so masked entries contribute nothing and receive no
    gradient. The masks (one byte per entry) and the step counter are non-trainable state of
    this layer: they are saved in `.keras` files and restored by `keras.models.load_model` with
    no `custom_objects`.
    The masks change only when `UpdatePruningStep` (or the custom-loop equivalent) tells the
    layer to, at the steps its schedule names; the training step itself does no mask work
    beyond the multiply. What the masks hold and how they are chosen is the wrapper's mask
    rule (`rule`: single entries, blocks, N:M groups or channel groups), made from its
    arguments; `targets` lists the pruned weights with their masks.

    Most users call `tfprune.prune_low_magnitude(model)` rather than this class.

    Args:
        layer: The Keras layer to wrap. It must have prunable weights: see
            `tfprune.prune_low_magnitude` for the supported layers, or implement
            `tfprune.PrunableLayer`.
        pruning_schedule: A `tfprune.PruningSchedule`. Defaults to
            `ConstantSparsity(0.5, begin_step=0)`, as in tfmot.
        allocation_group: None (this layer's weights each reach the schedule's sparsity), or
            a name shared by the wrappers pruned together with one magnitude threshold across
            all their weights, so that their total reaches it (`allocation="global"` of
            `prune_low_magnitude`). Defaults to None.
        block_size: tfmot's block size: whole blocks of each kernel are pruned (see
            `tfprune.prune_low_magnitude`). Defaults to (1, 1).
        block_pooling_type: "AVG" or "MAX": how a block's magnitude is pooled. Defaults to
            "AVG".
        sparsity_m_by_n: None, or `(m, n)`: m zeros in every n input channels. Defaults to
            None.
        channels: None, or the channel groups of the layer's kernels when it is pruned by
            whole channels together with the rest of its model (`tfprune.prune_channels`
            writes it; see `tfprune.core.rules.ChannelRule`). Defaults to None.
        **kwargs: Base layer arguments such as `name`. The name defaults to
            `"prune_low_magnitude_" + layer.name`.

    Raises:
        TypeError: If `layer` is not a Keras layer or `pruning_schedule` is not a schedule.
        ValueError: If `layer` is already wrapped or has no prunable weights.

    Example:

    >>> import keras, tfprune
    >>> layer = tfprune.PruneLowMagnitude(keras.layers.Dense(4))
    >>> y = layer(keras.ops.ones((2, 3)))
    >>> [(v.name, v.dtype) for v in layer.non_trainable_weights]
    [('kernel_mask', 'bool'), ('pruning_step', 'int32')]
    """

    def __init__(
        self,
        layer: keras.layers.Layer,
        pruning_schedule: PruningSchedule | None = None,
        allocation_group: str | None = None,
        block_size: Any = (1, 1),
        block_pooling_type: str = "AVG",
        sparsity_m_by_n: Any = None,
        channels: dict[str, Any] | None = None,
        **kwargs,
    ) -> None:
        if isinstance(layer, PruneLowMagnitude):
            raise ValueError(
                f"Layer '{layer.name}' is already wrapped by PruneLowMagnitude; "
                "wrap each layer once."
            )
        if not isinstance(layer, keras.layers.Layer):
            raise TypeError(
                "Argument `layer` must be a keras.layers.Layer. "
                f"Received: layer={layer!r} of type {type(layer).__name__}"
            )
        # A composite layer that creates its layers in `build` shows what it holds only once
        # built; it is checked then.
        if layer.built and not supports(layer):
            raise ValueError(
                f"Layer '{layer.name}' of type {type(layer).__name__} has no prunable weights. "
                "Leave it unwrapped, or implement tfprune.PrunableLayer "
                "(get_prunable_weights) for a custom layer."
            )
        self.rule: MaskRule = mask_rule(block_size, block_pooling_type, sparsity_m_by_n, channels)
        schedule = as_schedule(pruning_schedule, default=self.rule.default_schedule())
        if allocation_group is not None and not isinstance(allocation_group, str):
            raise TypeError(
                "Argument `allocation_group` must be None or a string. "
                f"Received: allocation_group={allocation_group!r}"
            )
        kwargs.setdefault("name", f"prune_low_magnitude_{layer.name}")
        # Keras binds the arguments of a call to `call`'s signature: the wrapper takes the
        # wrapped layer's own (`block(seq=x)`, `block(x, bias=t, flag=False)`), read by Keras
        # when the layer is created.
        object.__setattr__(self, "call", call_like(self, layer))
        super().__init__(layer, **kwargs)
        self.pruning_schedule = schedule
        self.allocation_group = allocation_group
        if not self.rule.standalone and allocation_group is None:
            raise ValueError(
                f"Wrappers pruned by {self.rule.kind} are pruned together with other layers "
                "and need an `allocation_group`."
            )
        self.supports_masking = layer.supports_masking
        self._call_params = frozenset(inspect.signature(layer.call).parameters)
        self._targets = Untracked(())
        self._masks: list[Any] = []
        self.pruning_step = None
        # Set through attach_driver (UpdatePruningStep does it): training without a driver is
        # an error, and the step it counts on the host is read from it (and written into
        # `pruning_step`) only when the layer is baked, never per batch.
        self._driven = False
        self._step_source: Callable[[], int] | None = None
        # The sparsity the masks had when this layer last wrote or loaded them: a restore
        # behind its back (set_weights, EarlyStopping) shows as a difference.
        self._written_sparsity: float | None = None
        if all(part.built for part in walk(layer)):
            self._create_state()

    def build(self, input_shape: Any = None) -> None:
        if not self.layer.built:
            try:
                self.layer.build(input_shape)
            except TypeError as e:
                raise ValueError(
                    f"Layer '{self.layer.name}' of type {type(self.layer).__name__} cannot be "
                    f"built from the single input shape {input_shape}. Build it before wrapping "
                    "it (call it once, or `layer.build(...)` with all its shapes), or prune the "
                    "whole built model with tfprune.prune_low_magnitude(model)."
                ) from e
        if not self._masks:
            self._create_state()

    def get_build_config(self) -> dict[str, Any] | None:
        # The wrapped layer's own build config: a layer built from several shapes (a
        # MultiHeadAttention's query, value and key) is rebuilt from all of them on loading.
        config = self.layer.get_build_config() if self.layer.built else None
        if config is None:
            return None
        # Parts a layer builds only when first called (KerasHub's T5 blocks) are built from
        # their own configs on loading, so the masks find their kernels.
        parts = [part.get_build_config() if part.built else None for part in walk(self.layer)]
        return {"layer": config, "parts": parts[1:]}

    def build_from_config(self, config: dict[str, Any]) -> None:
        if "layer" in config:
            if not self.layer.built:
                self.layer.build_from_config(config["layer"])
            parts = list(walk(self.layer))[1:]
            for part, part_config in zip(parts, config.get("parts", ()), strict=False):
                if part_config and not part.built:
                    part.build_from_config(part_config)
            self.build()
        else:
            super().build_from_config(config)

    def _create_state(self) -> None:
        weights = prunable_weights(self.layer)
        if not weights:
            raise ValueError(
                f"Layer '{self.layer.name}' of type {type(self.layer).__name__} has no prunable "
                "weights once built."
            )
        for w in weights:
            if "float" not in str(w.dtype):
                raise TypeError(
                    f"Cannot prune weight '{w.path}' of layer '{self.layer.name}': its dtype is "
                    f"{w.dtype}, and masks need a floating-point weight."
                )
        layouts = self.rule.layouts(self.layer, weights)
        self._masks = [new_mask(self, w) for w in weights]
        self._targets = Untracked(
            Target(self.layer, w, m, weight_label(self.layer, w), layout)
            for w, m, layout in zip(weights, self._masks, layouts, strict=True)
        )
        self.pruning_step = self.add_weight(
            name="pruning_step", shape=(), dtype="int32", initializer="zeros", trainable=False
        )
        self._written_sparsity = 0.0

    @property
    def targets(self) -> list[Target]:
        """The pruned weights with their masks, in a fixed order (empty before the layer is
        built)."""
        return list(self._targets.items)

    @property
    def pruned_weights(self) -> list[tuple[Any, Any]]:
        """`(weight, mask)` pairs of the wrapped layer's pruned variables."""
        return [(t.weight, t.mask) for t in self._targets.items]

    def call(self, *args: Any, training: Any = None, mask: Any = None, **kwargs: Any):
        if training is True and not self._driven:
            raise ValueError(
                f"Layer '{self.name}' is being trained without the pruning callback. Pass "
                "`callbacks=[tfprune.UpdatePruningStep()]` to `model.fit`; a custom training "
                "loop calls UpdatePruningStep's methods (see its docstring), or attaches "
                "itself with `attach_driver()` and calls `update_masks` at its update steps."
            )
        if "training" in self._call_params:
            kwargs["training"] = training
        if mask is not None and "mask" in self._call_params:
            kwargs["mask"] = mask
        by_id = {id(w): m for w, m in self.pruned_weights}
        variables = self.layer.variables
        mapping = []
        for v in variables:
            value = v.value
            m = by_id.get(id(v))
            if m is not None:
                value = value * ops.cast(m.value, value.dtype)
            mapping.append((v, value))
        with keras.StatelessScope(mapping, collect_losses=True) as scope:
            given = [scope.get_current_value(v) for v in variables]
            outputs = self.layer(*args, **kwargs)
        # State the layer changed in its call (seed generators, statistics) is written back.
        for v, before in zip(variables, given, strict=True):
            after = scope.get_current_value(v)
            if after is not before:
                v.assign(after)
        for loss in scope.losses:
            self.add_loss(loss)
        return outputs

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        return self.layer.compute_mask(inputs, mask)

    def compute_output_shape(self, *args: Any, **kwargs: Any) -> Any:
        return self.layer.compute_output_shape(*args, **kwargs)

    def compute_output_spec(self, *args: Any, **kwargs: Any) -> Any:
        kwargs = {k: v for k, v in kwargs.items() if k in self._call_params}
        return self.layer.compute_output_spec(*args, **kwargs)

    def update_masks(self, sparsity: float, step: int | None = None) -> None:
        """Recomputes every mask at `sparsity` from the current masked weights.

        The `round(sparsity * n)` smallest-magnitude entries of `weight * mask` are masked, so
        entries pruned earlier stay pruned while the sparsity grows. The stored weights are
        zeroed where masked.

        Args:
            sparsity: Target sparsity in [0, 1).
            step: The training step to record in `pruning_step`. Defaults to None (unchanged).

        Raises:
            ValueError: If a weight holds NaN or Inf values, or the layer is pruned by channels
                (its masks are computed with the other layers of its model).
        """
        update_layer(self, sparsity, step)

    def record_update(self, step: int | None = None) -> None:
        """Records that the masks were just computed: the step, if given, goes into
        `pruning_step`, and the masks become the layer's own (see `written_sparsity`)."""
        if step is not None:
            self.pruning_step.assign(step)
        self._written_sparsity = self.mask_sparsity()

    def mask_sparsity(self) -> float:
        """Returns the fraction of entries the masks prune now, over all pruned weights.

        Example:

        >>> layer = PruneLowMagnitude(keras.layers.Dense(4))
        >>> _ = layer(keras.ops.ones((1, 5)))
        >>> layer.update_masks(0.25)
        >>> layer.mask_sparsity()
        0.25
        """
        return magnitude.sparsity(self._masks)

    @property
    def written_sparsity(self) -> float | None:
        """The mask sparsity this layer left when it last computed or loaded its masks.

        It differs from `mask_sparsity()` when the masks were replaced behind the layer's back:
        `set_weights` or `EarlyStopping(restore_best_weights=True)` restore masks with the
        weights. None before the layer is built.
        """
        return self._written_sparsity

    def adopt_masks(self) -> None:
        """Accepts the current masks as this layer's own (after a deliberate `set_weights`)."""
        self._written_sparsity = self.mask_sparsity() if self._masks else None

    @property
    def driven(self) -> bool:
        """Whether a driver (`UpdatePruningStep`, or a custom loop) is attached."""
        return self._driven

    def attach_driver(self, step_source: Callable[[], int] | None = None) -> None:
        """Marks this layer as driven by a training loop that updates its masks.

        Training a wrapper with no driver attached raises an error, because its masks would
        never change. `UpdatePruningStep` attaches itself when training begins; a custom loop
        that calls `update_masks` itself attaches with this method.

        Args:
            step_source: A function that returns the current training step, counted on the
                host; `bake` writes it into `pruning_step`. Defaults to None (the loop writes
                the step through `update_masks`).
        """
        self._driven = True
        self._step_source = step_source

    def detach_driver(self) -> None:
        """Bakes the state (see `bake`) and forgets the driver; training again needs one."""
        self.bake()
        self._driven = False
        self._step_source = None

    def bake(self) -> None:
        """Writes the pruning state into the variables.

        The stored weights are zeroed where masked (an optimizer with momentum may move masked
        entries, which the forward pass never sees), and the driver's step, if it has a step
        source, is written into `pruning_step`. Runs whenever the layer is saved, so
        checkpoints hold exact zeros and the step.
        """
        for w, m in () if self.rule.keeps_values else self.pruned_weights:
            w.assign(w.value * ops.cast(m.value, w.dtype))
        if self._step_source is not None and self.pruning_step is not None:
            self.pruning_step.assign(self._step_source())

    def save_own_variables(self, store: Any) -> None:
        # Runs before the wrapped layer saves its own variables.
        self.bake()
        super().save_own_variables(store)

    def load_own_variables(self, store: Any) -> None:
        super().load_own_variables(store)
        self._step_source = None
        self.adopt_masks()

    def settings(self) -> dict[str, Any]:
        """The wrapper's own constructor arguments, the wrapped layer left out: with the same
        layer, `PruneLowMagnitude(layer, **settings)` (the schedule deserialized) wraps it
        the same way. A model pruned in place saves these beside its own config."""
        return {
            "name": self.name,
            "pruning_schedule": keras.saving.serialize_keras_object(self.pruning_schedule),
            "allocation_group": self.allocation_group,
            **self.rule.config(),
        }

    @classmethod
    def from_settings(cls, layer: Any, settings: dict[str, Any]) -> PruneLowMagnitude:
        """Wraps `layer` as `settings` (from `settings()`) say."""
        settings = dict(settings)
        schedule = keras.saving.deserialize_keras_object(settings.pop("pruning_schedule"))
        return cls(layer, pruning_schedule=schedule, **settings)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({k: v for k, v in self.settings().items() if k != "name"})
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> PruneLowMagnitude:
        config = dict(config)
        layer = deserialize_layer(config.pop("layer"), custom_objects)
        schedule = keras.saving.deserialize_keras_object(
            config.pop("pruning_schedule"), custom_objects=custom_objects
        )
        return cls(layer, pruning_schedule=schedule, **config)
