"""Trains the same pruned models on one device, under `DataParallel` and under `ModelParallel`,
and prunes a KerasHub CausalLM in one shot on one device and under its own layout map.

Run by tests/test_distributed.py in a child process with the JAX backend and two host devices
(`XLA_FLAGS=--xla_force_host_platform_device_count=2`): `python jax_distribution_worker.py OUT`.
Writes each run's masks and kernels, and the sharding of every mask and kernel, to OUT.npz,
under keys `{run}_{model}_{tag}{wrapper}_{weight}_{what}`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

import keras
import numpy as np
from tiny_models import digits, mlp

import tfprune

MESH_AXES = ["batch", "model"]


def mesh() -> keras.distribution.DeviceMesh:
    return keras.distribution.DeviceMesh((1, 2), MESH_AXES, keras.distribution.list_devices())


def mlp_model_parallel() -> keras.distribution.ModelParallel:
    """Kernels split over a 2-device `model` axis: the first layer by columns, the second by
    rows, the usual tensor-parallel pairing. No rule mentions masks."""
    layout_map = keras.distribution.LayoutMap(mesh())
    layout_map["fc1/kernel"] = (None, "model")
    layout_map["fc2/kernel"] = ("model", None)
    return keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch")


def gemma_model_parallel() -> keras.distribution.ModelParallel:
    """The layout KerasHub itself gives for training Gemma on several devices."""
    import keras_hub

    layout_map = keras_hub.models.GemmaBackbone.get_layout_map(mesh())
    return keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch")


def mlp_job():
    (x, y), _ = digits(1024)
    schedule = tfprune.PolynomialDecay(0.0, 0.85, begin_step=0, end_step=24, frequency=4)
    return lambda: mlp(48), schedule, x, y, dict(batch_size=64, epochs=2), True


def gemma_job():
    import keras_hub

    def build():
        backbone = keras_hub.models.GemmaBackbone(
            vocabulary_size=64,
            num_layers=1,
            num_query_heads=2,
            num_key_value_heads=2,
            hidden_dim=16,
            intermediate_dim=32,
            head_dim=8,
        )
        return keras_hub.models.GemmaCausalLM(backbone=backbone, preprocessor=None)

    rng = np.random.default_rng(5)
    tokens = rng.integers(1, 64, size=(32, 13))
    x = {"token_ids": tokens[:, :-1], "padding_mask": np.ones((32, 12), bool)}
    schedule = tfprune.PolynomialDecay(0.0, 0.7, begin_step=0, end_step=6, frequency=2)
    # Its embedding is tied to the output layer, which Keras's .keras format cannot restore
    # when the shared layer sits in a nested model: round-trip through a weights file instead.
    return build, schedule, x, tokens[:, 1:], dict(batch_size=8, epochs=2), False


def spec(variable) -> str:
    """The variable's partition spec, e.g. "(None, 'model')"; "single" on one device."""
    sharding = variable.value.sharding
    return str(tuple(sharding.spec)) if hasattr(sharding, "spec") else "single"


def train(job, distribution, arrays: dict, prefix: str) -> None:
    build, schedule, x, y, fit, whole_model = job()
    keras.utils.set_random_seed(11)
    with distribution.scope() if distribution else contextlib.nullcontext():
        pruned = tfprune.prune_low_magnitude(build(), schedule)
        pruned.compile(
            optimizer=keras.optimizers.SGD(0.05),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        callbacks = [tfprune.UpdatePruningStep()]
        pruned.fit(x, y, shuffle=False, verbose=0, callbacks=callbacks, **fit)
        models = {"": pruned}
        if distribution is not None:
            folder = tempfile.mkdtemp()
            if whole_model:
                pruned.save(os.path.join(folder, "pruned.keras"))
                models["loaded_"] = keras.models.load_model(os.path.join(folder, "pruned.keras"))
            else:
                pruned.save_weights(os.path.join(folder, "pruned.weights.h5"))
                models["loaded_"] = tfprune.prune_low_magnitude(build(), schedule)
                models["loaded_"].load_weights(os.path.join(folder, "pruned.weights.h5"))
    for tag, model in models.items():
        record(model, arrays, f"{prefix}_{tag}")


def record(model, arrays: dict, prefix: str) -> None:
    """Each wrapper's masks, weights and step, and the sharding of the masks and weights."""
    for i, wrapper in enumerate(tfprune.core.find.pruning_wrappers(model)):
        for j, (weight, mask) in enumerate(wrapper.pruned_weights):
            key = f"{prefix}{i}_{j}"
            arrays[f"{key}_mask"] = keras.ops.convert_to_numpy(mask)
            arrays[f"{key}_kernel"] = keras.ops.convert_to_numpy(weight)
            arrays[f"{key}_mask_spec"] = np.array(spec(mask))
            arrays[f"{key}_kernel_spec"] = np.array(spec(weight))
        arrays[f"{prefix}{i}_step"] = keras.ops.convert_to_numpy(wrapper.pruning_step)


def one_shot(method: str, distribution, arrays: dict, prefix: str) -> None:
    """`prune_one_shot` of the Gemma CausalLM in place: on one device, or under its layout
    map with the solvers on the backend (float32)."""
    build, _, x, _, _, _ = gemma_job()
    keras.utils.set_random_seed(11)
    with distribution.scope() if distribution else contextlib.nullcontext():
        pruned = tfprune.prune_one_shot(build(), x, 0.5, method=method, batch_size=8)
        record(pruned, arrays, f"{prefix}_")


def main(out: str) -> None:
    assert keras.backend.backend() == "jax", keras.backend.backend()
    assert len(keras.distribution.list_devices()) == 2, keras.distribution.list_devices()
    arrays: dict = {}
    train(mlp_job, None, arrays, "single_mlp")
    train(mlp_job, keras.distribution.DataParallel(), arrays, "data_mlp")
    train(mlp_job, mlp_model_parallel(), arrays, "model_mlp")
    train(gemma_job, None, arrays, "single_gemma")
    train(gemma_job, gemma_model_parallel(), arrays, "model_gemma")
    for method in ("wanda", "sparsegpt"):
        one_shot(method, None, arrays, f"single_{method}")
        one_shot(method, gemma_model_parallel(), arrays, f"model_{method}")
    np.savez(out, **arrays)


if __name__ == "__main__":
    main(sys.argv[1])
