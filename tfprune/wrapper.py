"""The `PruneLowMagnitude` layer wrapper: binary masks on a layer's prunable weights."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import keras
from keras import ops

from tfprune import masks as _masks
from tfprune.registry import prunable_weights, supports
from tfprune.schedules import ConstantSparsity, PruningSchedule

__all__ = ["PruneLowMagnitude"]


def _schedule_from(value: Any) -> PruningSchedule:
    if value is None:
        return ConstantSparsity(0.5, begin_step=0)
    if isinstance(value, dict):
        value = keras.saving.deserialize_keras_object(value)
    if not isinstance(value, PruningSchedule):
        raise TypeError(
            "Argument `pruning_schedule` must be a tfprune.PruningSchedule. "
            f"Received: pruning_schedule={value!r} of type {type(value).__name__}"
        )
    return value


@keras.saving.register_keras_serializable(package="tfprune")
class PruneLowMagnitude(keras.layers.Wrapper):
    """Wraps a layer so that its prunable weights are multiplied by binary masks.

    The forward pass uses `weight * mask` for every prunable weight (kernels, embeddings,
    recurrent kernels; never biases), so masked entries contribute nothing and receive no
    gradient. The masks and the step counter are non-trainable state of this layer: they are
    saved in `.keras` files and restored by `keras.models.load_model` with no `custom_objects`.
    The masks change only when `UpdatePruningStep` (or the custom-loop equivalent) tells the
    layer to, at the steps its schedule names; the training step itself does no mask work
    beyond the multiply.

    Most users call `tfprune.prune_low_magnitude(model)` rather than this class.

    Args:
        layer: The Keras layer to wrap. It must have prunable weights: see
            `tfprune.prune_low_magnitude` for the supported layers, or implement
            `tfprune.PrunableLayer`.
        pruning_schedule: A `tfprune.PruningSchedule`. Defaults to
            `ConstantSparsity(0.5, begin_step=0)`, as in tfmot.
        **kwargs: Base layer arguments such as `name`. The name defaults to
            `"prune_low_magnitude_" + layer.name`.

    Raises:
        TypeError: If `layer` is not a Keras layer or `pruning_schedule` is not a schedule.
        ValueError: If `layer` is already wrapped or has no prunable weights.

    Example:

    >>> import keras, tfprune
    >>> layer = tfprune.PruneLowMagnitude(keras.layers.Dense(4))
    >>> y = layer(keras.ops.ones((2, 3)))
    >>> [v.name for v in layer.non_trainable_weights]
    ['kernel_mask', 'pruning_step']
    """

    def __init__(
        self, layer: keras.layers.Layer, pruning_schedule: PruningSchedule | None = None, **kwargs
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
        if not supports(layer):
            raise ValueError(
                f"Layer '{layer.name}' of type {type(layer).__name__} has no prunable weights. "
                "Leave it unwrapped, or implement tfprune.PrunableLayer "
                "(get_prunable_weights) for a custom layer."
            )
        schedule = _schedule_from(pruning_schedule)
        kwargs.setdefault("name", f"prune_low_magnitude_{layer.name}")
        super().__init__(layer, **kwargs)
        self.pruning_schedule = schedule
        self.supports_masking = layer.supports_masking
        self._call_params = frozenset(inspect.signature(layer.call).parameters)
        self._pruned: list[Any] = []
        self._masks: list[Any] = []
        self.pruning_step = None
        # Set by UpdatePruningStep: training without it is an error, and the step it counts on
        # the host is read from it (and written into `pruning_step`) only when the model is
        # saved or an epoch ends, never per batch.
        self._driven = False
        self._step_source: Callable[[], int] | None = None
        if layer.built:
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
        self._pruned = weights
        self._masks = [
            self.add_weight(
                name=f"{w.name}_mask",
                shape=w.shape,
                dtype=w.dtype,
                initializer="ones",
                trainable=False,
                autocast=False,
            )
            for w in weights
        ]
        self.pruning_step = self.add_weight(
            name="pruning_step", shape=(), dtype="int32", initializer="zeros", trainable=False
        )

    @property
    def pruned_weights(self) -> list[tuple[Any, Any]]:
        """`(weight, mask)` pairs of the wrapped layer's pruned variables."""
        return list(zip(self._pruned, self._masks, strict=True))

    def call(self, inputs: Any, *args: Any, training: Any = None, mask: Any = None, **kwargs: Any):
        if training is True and not self._driven:
            raise ValueError(
                f"Layer '{self.name}' is being trained without the pruning callback. Pass "
                "`callbacks=[tfprune.UpdatePruningStep()]` to `model.fit`, or drive a custom "
                "training loop with UpdatePruningStep's methods (see its docstring)."
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
            outputs = self.layer(inputs, *args, **kwargs)
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
            ValueError: If a weight holds NaN or Inf values.
        """
        for w, m in self.pruned_weights:
            effective = ops.convert_to_numpy(w) * ops.convert_to_numpy(m)
            new = _masks.magnitude_mask(
                effective, sparsity, name=f"weight '{w.path}' of layer '{self.layer.name}'"
            )
            m.assign(new.astype(effective.dtype))
            w.assign(effective * new)
        if step is not None:
            self.pruning_step.assign(step)

    def _bake(self) -> None:
        for w, m in self.pruned_weights:
            w.assign(w.value * ops.cast(m.value, w.dtype))
        if self._step_source is not None and self.pruning_step is not None:
            self.pruning_step.assign(self._step_source())

    def save_own_variables(self, store: Any) -> None:
        # Runs before the wrapped layer saves its own variables: checkpoints hold exact zeros
        # at masked positions and the step counted on the host.
        self._bake()
        super().save_own_variables(store)

    def load_own_variables(self, store: Any) -> None:
        super().load_own_variables(store)
        self._step_source = None

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["pruning_schedule"] = keras.saving.serialize_keras_object(self.pruning_schedule)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> PruneLowMagnitude:
        config = dict(config)
        layer = keras.saving.deserialize_keras_object(
            config.pop("layer"), custom_objects=custom_objects
        )
        schedule = keras.saving.deserialize_keras_object(
            config.pop("pruning_schedule"), custom_objects=custom_objects
        )
        return cls(layer, pruning_schedule=schedule, **config)
