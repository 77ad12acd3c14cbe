"""`trim`: the model without its masked channels, and the update step that refits what reads them.

The channel-pruned model is stripped, its graph grouped again (`tfprune.channels`), and each
group the masks removed is cut out of every weight that holds it: kernels, biases,
BatchNormalization statistics, depthwise kernels, recurrent gates. Layers are re-created from
their configs with fewer units or filters and the same names, so the trimmed model is a plain
Keras model of the same classes. With calibration data, each layer whose inputs lost channels
is refitted by least squares (ridge-damped) so that its pre-activation output on the trimmed
model's inputs matches the unmasked model's (the reconstruction of channel pruning).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from tfprune.calibration import Kept, Recorder, batches, is_iterator
from tfprune.channel_composites import composite_config
from tfprune.channel_masks import group_keep
from tfprune.channel_rules import CONVS, DEPTHWISE, RECURRENT, SEPARABLE, TRANSPOSED
from tfprune.channels import ChannelGraph, input_names
from tfprune.checks import is_int
from tfprune.clone import clone_stripped, copy_once, fresh
from tfprune.prune import pruning_wrappers
from tfprune.rebuild import recreate
from tfprune.registry import weight_label
from tfprune.solvers import MatrixView
from tfprune.walk import walk

__all__ = ["trim"]


def _resized(layer: Any, counts: dict[str, int]) -> dict[str, Any]:
    """The layer's config with its channel counts (per label of its "out" axes) lowered."""
    config = layer.get_config()
    if not counts or composite_config(layer, config, counts, _resized):
        return config
    if isinstance(layer, keras.layers.MultiHeadAttention):
        label = weight_label(layer, layer.query_dense.kernel)
        config["num_heads"] = counts[label]
        out = counts[weight_label(layer, layer.output_dense.kernel)]
        config["output_shape"] = (out,)
        return config
    (count,) = counts.values()
    if isinstance(layer, keras.layers.Dense) or type(layer) in RECURRENT:
        config["units"] = count
    elif isinstance(layer, keras.layers.Embedding):
        config["output_dim"] = count
    elif isinstance(layer, (*CONVS, *TRANSPOSED, *SEPARABLE)):
        config["filters"] = count
    elif isinstance(layer, keras.layers.Reshape):
        config["target_shape"] = (*tuple(config["target_shape"])[:-1], count)
    return config


class _Plan:
    """What survives of each layer: a keep mask per weight axis, and its new channel count."""

    def __init__(self, stripped: keras.Model, wrappers: list[Any]) -> None:
        graph = ChannelGraph(stripped, unsupported="keep")
        keep = group_keep(wrappers)
        kept_root: dict[int, bool] = {}
        for wrapper in wrappers:
            axes_of = graph.weights.get(wrapper.layer.name, {})
            for label, axes in wrapper.channels["weights"].items():
                known = {a.axis: a for a in axes_of.get(label, [])}
                for axis, _, ids in axes:
                    if axis not in known or len(known[axis].positions) != len(ids):
                        raise ValueError(
                            f"The graph of the model no longer matches its channel masks at "
                            f"layer '{wrapper.layer.name}' (weight '{label}'): was the model "
                            "changed after prune_channels?"
                        )
                    for p, g in zip(known[axis].positions.tolist(), ids, strict=True):
                        if g >= 0:
                            kept_root[graph.root(p)] = bool(keep[g])
        self.axes: dict[str, dict[str, list[tuple[int, np.ndarray]]]] = {}
        self.counts: dict[str, dict[str, int]] = {}
        for name, labels in graph.weights.items():
            self.axes[name] = {}
            for label, axes in labels.items():
                for a in axes:
                    alive = np.array(
                        [kept_root.get(graph.root(p), True) for p in a.positions.tolist()]
                    )
                    self.axes[name].setdefault(label, []).append((a.axis, alive))
                    if a.role == "out":
                        self.counts.setdefault(name, {})[label] = int(alive.sum())
        for name, positions in graph.counted.items():
            alive = [kept_root.get(graph.root(p), True) for p in positions.tolist()]
            self.counts[name] = {"": int(sum(alive))}

    def weights(self, layer: Any) -> list[np.ndarray]:
        axes = self.axes.get(layer.name, {})
        values = []
        for variable in layer.weights:
            value = np.asarray(keras.ops.convert_to_numpy(variable))
            for axis, alive in axes.get(weight_label(layer, variable), []):
                value = np.compress(alive, value, axis=axis)
            values.append(value)
        return values

    def kept(self, layer: Any, variable: Any, axis: int) -> np.ndarray | None:
        """Which entries along `axis` of `variable` (a weight of `layer` or of a layer inside
        it) survive; None where that axis holds no channels."""
        label = weight_label(layer, variable)
        for a, alive in self.axes.get(layer.name, {}).get(label, []):
            if a == axis % len(variable.shape):
                return alive
        return None


def _rebuilt(stripped: keras.Model, plan: _Plan) -> keras.Model:
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
            return fresh(layer)
        return recreate(layer.__class__, _resized(layer, plan.counts.get(layer.name, {})))

    clone = copy_once(copy)
    trimmed = keras.models.clone_model(stripped, clone_function=clone)
    copies = _by_name(trimmed)
    for layer in _by_name(stripped).values():
        if layer.weights and not isinstance(layer, keras.Model):
            copies[layer.name].set_weights(plan.weights(layer))
    return trimmed


def _by_name(model: keras.Model) -> dict[str, Any]:
    """Every layer of the model, nested models' layers included (not the parts of a layer made
    of layers, such as an attention layer's projections), by name, in call order."""
    nested = walk(model, into=lambda layer: isinstance(layer, keras.Model))
    return {layer.name: layer for layer in nested if layer is not model}


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
    wrappers = [w for w in pruning_wrappers(model) if w.channels is not None]
    if not wrappers:
        raise ValueError(
            f"Model '{model.name}' was not pruned by channels: it holds no layer that "
            "tfprune.prune_channels wrapped, so there is nothing to trim."
        )
    if not is_int(batch_size) or batch_size < 1:
        raise ValueError(
            f"Argument `batch_size` must be a positive integer. Received: {batch_size!r}"
        )
    if not isinstance(dampening, (int, float)) or not 0 <= dampening < 1e3:
        raise ValueError(f"Argument `dampening` must be a number >= 0. Received: {dampening!r}")
    stripped = clone_stripped(model)
    plan = _Plan(stripped, wrappers)
    trimmed = _rebuilt(stripped, plan)
    if calibration_data is not None:
        reference = clone_stripped(model)
        layers = _by_name(reference)
        for wrapper in wrappers:  # the weights as stored: the masks lifted
            layers[wrapper.layer.name].set_weights(wrapper.layer.get_weights())
        data = Kept(calibration_data) if is_iterator(calibration_data) else calibration_data
        _update(reference, trimmed, plan, data, batch_size, float(dampening))
    return trimmed


def _refittable(layer: Any, host: Any, plan: _Plan) -> bool:
    if not isinstance(layer, (keras.layers.Dense, *CONVS)) or isinstance(layer, TRANSPOSED):
        return False
    if isinstance(layer, DEPTHWISE) or getattr(layer, "groups", 1) != 1:
        return False
    rows = plan.kept(host, layer.kernel, -2)
    return rows is not None and not rows.all()


def _refits(reference: keras.Model, trimmed: keras.Model, plan: _Plan) -> list[tuple]:
    """(trimmed layer, its reference, the layer the plan knows them by) for each Dense or Conv
    to refit, in graph order: a model's layers, and those inside a layer made of layers (the
    feed-forward output of a transformer layer, the Dense in a TimeDistributed)."""
    sources = _by_name(reference)
    found = []
    for host in _by_name(trimmed).values():
        if isinstance(host, keras.Model):
            continue  # its layers are met on their own
        source_host = sources[host.name]
        for layer, source in zip(walk(host), walk(source_host), strict=True):
            if _refittable(layer, host, plan):
                found.append((layer, source, source_host))
    return found


def _update(reference, trimmed, plan: _Plan, data, batch_size: int, dampening: float) -> None:
    for layer, source, host in _refits(reference, trimmed, plan):
        out_kept = plan.kept(host, source.kernel, -1)
        view_new = MatrixView.of(layer, layer.kernel)
        view_ref = MatrixView.of(source, source.kernel)
        w_ref = view_ref.to_matrix(
            np.asarray(keras.ops.convert_to_numpy(source.kernel), np.float64)
        )
        b_ref = np.zeros(w_ref.shape[0])
        if source.use_bias:
            b_ref = np.asarray(keras.ops.convert_to_numpy(source.bias), np.float64)
        if out_kept is not None:
            w_ref, b_ref = w_ref[out_kept], b_ref[out_kept]
        seen: dict[str, Any] = {}

        def record(owner, x, _seen=seen, _layer=layer):
            _seen["new" if owner is _layer else "ref"] = np.asarray(
                keras.ops.convert_to_numpy(x), np.float64
            )

        extra = 1 if layer.use_bias else 0
        gram = np.zeros((view_new.inputs + extra,) * 2)
        cross = np.zeros((view_new.inputs + extra, w_ref.shape[0]))
        with Recorder([layer, source], record):
            for batch in batches(data, batch_size):
                reference(batch, training=False)
                trimmed(batch, training=False)
                x = view_new.rows(seen["new"])
                y = view_ref.rows(seen["ref"]) @ w_ref.T + b_ref
                if extra:
                    x = np.concatenate([x, np.ones((len(x), 1))], axis=1)
                gram += x.T @ x
                cross += x.T @ y
        ridge = dampening * max(float(np.mean(np.diag(gram))), 1e-12)
        solution = np.linalg.solve(gram + ridge * np.eye(len(gram)), cross)
        kernel = view_new.from_matrix(solution[: view_new.inputs].T)
        values = [kernel.astype(layer.kernel.dtype)]
        if extra:
            values.append(solution[-1].astype(layer.bias.dtype))
        layer.set_weights(values)
