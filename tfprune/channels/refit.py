"""The update step of channel pruning: refit what reads the removed channels.

Layer by layer in graph order, each Dense or Conv layer (inside a layer made of layers too)
whose inputs lost channels gets the kernel and bias that best reproduce, by ridge-damped least
squares on calibration inputs, the pre-activation output it has in the reference model (the
channel-pruned model with its masks lifted): the reconstruction PUTRI and the channel-pruning
literature call the update.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from tfprune.calibration.data import batches, check_finite
from tfprune.calibration.recorder import Recorder
from tfprune.calibration.statistics import LeastSquares, input_rows
from tfprune.models.kinds import CONVS
from tfprune.models.views import matrix_view
from tfprune.models.walk import layers_by_name, walk

__all__ = ["refit"]


def _refittable(layer: Any, host: Any, plan: Any) -> bool:
    """A Dense or ungrouped convolution whose kernel lost input rows."""
    if not isinstance(layer, (keras.layers.Dense, *CONVS)):
        return False
    if getattr(layer, "groups", 1) != 1:
        return False
    rows = plan.kept(host, layer.kernel, -2)
    return rows is not None and not rows.all()


def _refits(reference: keras.Model, trimmed: keras.Model, plan: Any) -> list[tuple]:
    """(trimmed layer, its reference, the layer the plan knows them by) for each Dense or Conv
    to refit, in graph order: a model's layers, and those inside a layer made of layers (the
    feed-forward output of a transformer layer, the Dense in a TimeDistributed)."""
    sources = layers_by_name(reference)
    found = []
    for host in layers_by_name(trimmed).values():
        if isinstance(host, keras.Model):
            continue  # its layers are met on their own
        source_host = sources[host.name]
        for layer, source in zip(walk(host), walk(source_host), strict=True):
            if _refittable(layer, host, plan):
                found.append((layer, source, source_host))
    return found


def refit(
    reference: keras.Model,
    trimmed: keras.Model,
    plan: Any,
    data: Any,
    batch_size: int,
    dampening: float,
) -> None:
    """Refits, in place, each layer of `trimmed` that lost input channels (see the module).

    Args:
        reference: The model whose outputs the refitted layers reproduce.
        trimmed: The trimmed model, changed in place.
        plan: The `tfprune.channels.plan.Plan` that trimmed it.
        data: The calibration inputs (read once per refitted layer).
        batch_size: Rows per batch for array data.
        dampening: The ridge, relative to the mean diagonal of each layer's Gram matrix.

    Raises:
        ValueError: If a calibration batch holds NaN or Inf values.
    """
    for layer, source, host in _refits(reference, trimmed, plan):
        out_kept = plan.kept(host, source.kernel, -1)
        view_new = matrix_view(layer, layer.kernel)
        view_ref = matrix_view(source, source.kernel)
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
            _seen["new" if owner is _layer else "ref"] = x

        # The products over the calibration rows on the backend where both layers' rows are
        # reorderings of their inputs (Dense, EinsumDense); a convolution's windows on the host.
        on_backend = view_new.order is not None and view_ref.order is not None
        if on_backend:
            w_ref_t = keras.ops.convert_to_tensor(w_ref.T, "float32")
            b_ref_t = keras.ops.convert_to_tensor(b_ref, "float32")
        extra = 1 if layer.use_bias else 0
        fit = LeastSquares(view_new.inputs + extra, w_ref.shape[0], on_backend)
        with Recorder([layer, source], record):
            for batch in batches(data, batch_size):
                check_finite("calibration_data", batch)
                reference(batch, training=False)
                trimmed(batch, training=False)
                x = input_rows(view_new, seen["new"], on_backend)
                rows_ref = input_rows(view_ref, seen["ref"], on_backend)
                if on_backend:
                    y = keras.ops.matmul(keras.ops.cast(rows_ref, "float32"), w_ref_t) + b_ref_t
                    if extra:
                        ones = keras.ops.ones((keras.ops.shape(x)[0], 1), x.dtype)
                        x = keras.ops.concatenate([x, ones], axis=1)
                else:
                    y = rows_ref @ w_ref.T + b_ref
                    if extra:
                        x = np.concatenate([x, np.ones((len(x), 1))], axis=1)
                fit.add(x, y)
        solution = fit.solve(dampening)
        kernel = view_new.from_matrix(solution[: view_new.inputs].T)
        values = [kernel.astype(layer.kernel.dtype)]
        if extra:
            values.append(solution[-1].astype(layer.bias.dtype))
        layer.set_weights(values)
