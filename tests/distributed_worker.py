"""Trains the same pruned MLP on one device, under MirroredStrategy or one MultiWorker worker.

Run by tests/test_distributed.py in child processes: `python distributed_worker.py MODE OUT.npz`
with MODE one of `single`, `mirrored`, `multiworker` (TF_CONFIG set by the parent). Writes the
masks and kernels of every replica so the parent can compare them.
"""

from __future__ import annotations

import sys

import tensorflow as tf


def strategy_for(mode: str):
    if mode == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )
        return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    if mode == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def custom_loop(strategy, model, x, y) -> None:
    import keras

    import tfprune

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(64).with_options(options)
    batches = strategy.experimental_distribute_dataset(dataset)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")

    def replica_step(xb, yb):
        with tf.GradientTape() as tape:
            per_example = loss_fn(yb, model(xb, training=True))
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=64)
        grads = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply(grads, model.trainable_variables)

    @tf.function
    def train_step(xb, yb):
        strategy.run(replica_step, args=(xb, yb))

    pruning = tfprune.UpdatePruningStep()
    pruning.set_model(model)
    pruning.on_train_begin()
    for epoch in range(2):
        for batch, (xb, yb) in enumerate(batches):
            pruning.on_train_batch_begin(batch)
            train_step(xb, yb)
            pruning.on_train_batch_end(batch)
        pruning.on_epoch_end(epoch)
    pruning.on_train_end()


def main(mode: str, out: str) -> None:
    strategy = strategy_for(mode)
    import keras
    import numpy as np
    from tiny_models import digits, mlp

    import tfprune

    (x, y), _ = digits(1024)
    keras.utils.set_random_seed(11)
    with strategy.scope():
        model = mlp(48)
        schedule = tfprune.PolynomialDecay(0.0, 0.85, begin_step=0, end_step=24, frequency=4)
        pruned = tfprune.prune_low_magnitude(model, schedule)
        pruned.compile(
            optimizer=keras.optimizers.SGD(0.05),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    if mode == "multiworker":
        # Keras 3.15's fit() cannot start under MultiWorkerMirroredStrategy with two workers
        # (its symbolic build reduces a distributed data batch eagerly and fails), so the
        # workers train with the public custom-loop API: strategy.run plus the callback's hooks.
        custom_loop(strategy, pruned, x, y)
    else:
        pruned.fit(
            x,
            y,
            batch_size=64,
            epochs=2,
            shuffle=False,
            verbose=0,
            callbacks=[tfprune.UpdatePruningStep()],
        )
    arrays = {}
    for i, wrapper in enumerate(tfprune.core.find.pruning_wrappers(pruned)):
        for j, (weight, mask) in enumerate(wrapper.pruned_weights):
            for r, value in enumerate(strategy.experimental_local_results(mask.value)):
                arrays[f"mask_{i}_{j}_replica{r}"] = np.asarray(value)
            for r, value in enumerate(strategy.experimental_local_results(weight.value)):
                arrays[f"kernel_{i}_{j}_replica{r}"] = np.asarray(value)
        arrays[f"step_{i}"] = np.asarray(keras.ops.convert_to_numpy(wrapper.pruning_step))
    np.savez(out, **arrays)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
