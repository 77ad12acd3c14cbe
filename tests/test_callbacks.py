"""UpdatePruningStep and PruningSummaries inside real model.fit runs."""

from __future__ import annotations

import glob
import warnings

import keras
import numpy as np
import pytest
from conftest import compile_model, masks_of, small_mlp
from keras import ops

import tfprune


def pruned_mlp(schedule, **compile_kwargs):
    keras.utils.set_random_seed(7)
    return compile_model(tfprune.prune_low_magnitude(small_mlp(), schedule), **compile_kwargs)


def weights_of(model):
    return [ops.convert_to_numpy(v) for v in model.weights]


def fit(model, data, epochs, batch_size=64, callbacks=(), **kwargs):
    (x, y), _ = data
    return model.fit(
        x,
        y,
        batch_size=batch_size,
        epochs=epochs,
        shuffle=False,
        verbose=0,
        callbacks=[tfprune.UpdatePruningStep(), *callbacks],
        **kwargs,
    )


def test_fit_reaches_the_target_exactly_and_freezes_masked_weights(mnist):
    schedule = tfprune.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=13, frequency=4)
    model = pruned_mlp(schedule)
    fit(model, mnist, epochs=2)  # 8 steps an epoch: updates at 0, 4, 8, 12 and 13
    for w in tfprune.core.find.pruning_wrappers(model):
        assert int(w.pruning_step) == 16
        for weight, mask in w.pruned_weights:
            m = ops.convert_to_numpy(mask)
            assert int((m == 0).sum()) == round(0.8 * m.size)
            assert np.all(ops.convert_to_numpy(weight)[m == 0] == 0)


def test_fit_without_the_callback_names_it(mnist):
    model = pruned_mlp(tfprune.ConstantSparsity(0.5, 0))
    (x, y), _ = mnist
    with pytest.raises(ValueError, match="UpdatePruningStep"):
        model.fit(x, y, epochs=1, verbose=0)


def test_callback_on_a_model_without_wrappers_is_an_error(mnist):
    model = compile_model(small_mlp())
    with pytest.raises(ValueError, match="holds no PruneLowMagnitude"):
        fit(model, mnist, epochs=1)


@pytest.mark.parametrize("k", [4, 8])
def test_steps_per_execution_gives_the_same_masks_when_aligned(mnist, k):
    schedule = tfprune.PolynomialDecay(0.0, 0.9, begin_step=0, end_step=24, frequency=8)
    one = pruned_mlp(schedule)
    fit(one, mnist, epochs=4)
    many = pruned_mlp(schedule, steps_per_execution=k)
    fit(many, mnist, epochs=4)
    for a, b in zip(masks_of(one), masks_of(many), strict=True):
        np.testing.assert_array_equal(a, b)
    assert int(tfprune.core.find.pruning_wrappers(many)[0].pruning_step) == 32


def test_steps_per_execution_not_aligned_still_reaches_the_target(mnist):
    schedule = tfprune.PolynomialDecay(0.0, 0.75, begin_step=1, end_step=10, frequency=3)
    model = pruned_mlp(schedule, steps_per_execution=7)
    fit(model, mnist, epochs=2)
    for m in masks_of(model):
        assert int((m == 0).sum()) == round(0.75 * m.size)


def test_several_fit_calls_equal_one_long_fit(mnist):
    schedule = tfprune.PolynomialDecay(0.0, 0.9, begin_step=2, end_step=20, frequency=3)
    once = pruned_mlp(schedule)
    fit(once, mnist, epochs=3)
    twice = pruned_mlp(schedule)
    fit(twice, mnist, epochs=1)
    fit(twice, mnist, epochs=3, initial_epoch=1)
    for a, b in zip(masks_of(once), masks_of(twice), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(weights_of(once), weights_of(twice), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_one_callback_instance_serves_several_fits(mnist):
    model = pruned_mlp(tfprune.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=8, frequency=2))
    callback = tfprune.UpdatePruningStep()
    (x, y), _ = mnist
    for _ in range(2):
        model.fit(x, y, batch_size=64, epochs=1, verbose=0, callbacks=[callback])
    assert callback.step == 16


def test_short_training_warns_how_far_from_the_target(mnist):
    schedule = tfprune.PolynomialDecay(0.0, 0.9, begin_step=0, end_step=100, frequency=4)
    model = pruned_mlp(schedule)
    with pytest.warns(UserWarning, match=r"after 8 steps, 93 step\(s\) before .*end_step=100"):
        fit(model, mnist, epochs=1)


def test_no_warning_when_the_target_is_reached(mnist):
    model = pruned_mlp(tfprune.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=7, frequency=2))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        fit(model, mnist, epochs=1)


def test_save_load_resume_equals_training_without_stopping(mnist, tmp_path):
    schedule = tfprune.PolynomialDecay(0.1, 0.85, begin_step=3, end_step=27, frequency=5)
    straight = pruned_mlp(schedule)
    fit(straight, mnist, epochs=4)

    stopped = pruned_mlp(schedule)
    fit(stopped, mnist, epochs=2)
    stopped.save(tmp_path / "mid.keras")
    resumed = keras.models.load_model(tmp_path / "mid.keras")
    assert int(tfprune.core.find.pruning_wrappers(resumed)[0].pruning_step) == 16
    fit(resumed, mnist, epochs=4, initial_epoch=2)

    for a, b in zip(masks_of(straight), masks_of(resumed), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(weights_of(straight), weights_of(resumed), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


class _Crash(keras.callbacks.Callback):
    def __init__(self, at_epoch):
        super().__init__()
        self.at_epoch = at_epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at_epoch:
            raise RuntimeError("simulated crash")


def test_backup_and_restore_resumes_the_same_masks(mnist, tmp_path):
    schedule = tfprune.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=30, frequency=4)
    straight = pruned_mlp(schedule)
    fit(straight, mnist, epochs=4)

    backup = str(tmp_path / "backup")
    crashed = pruned_mlp(schedule)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(
            crashed,
            mnist,
            epochs=4,
            callbacks=[keras.callbacks.BackupAndRestore(backup), _Crash(1)],
        )
    fresh = pruned_mlp(schedule)
    fit(fresh, mnist, epochs=4, callbacks=[keras.callbacks.BackupAndRestore(backup)])

    for a, b in zip(masks_of(straight), masks_of(fresh), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(weights_of(straight), weights_of(fresh), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_custom_training_loop_with_the_callback_methods(mnist):
    schedule = tfprune.PolynomialDecay(0.0, 0.6, begin_step=0, end_step=6, frequency=2)
    model = pruned_mlp(schedule)
    (x, y), _ = mnist
    optimizer = keras.optimizers.SGD(0.1)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    import tensorflow as tf

    step = tfprune.UpdatePruningStep()
    step.set_model(model)
    step.on_train_begin()
    for i in range(8):
        step.on_train_batch_begin(i)
        xb, yb = x[i * 32 : (i + 1) * 32], y[i * 32 : (i + 1) * 32]
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, model(xb, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        step.on_train_batch_end(i)
    step.on_train_end()
    for m in masks_of(model):
        assert int((m == 0).sum()) == round(0.6 * m.size)
    assert int(tfprune.core.find.pruning_wrappers(model)[0].pruning_step) == 8


def test_pruning_summaries_write_per_layer_sparsity(mnist, tmp_path):
    model = pruned_mlp(tfprune.ConstantSparsity(0.5, begin_step=0, frequency=4))
    fit(model, mnist, epochs=1, callbacks=[tfprune.PruningSummaries(str(tmp_path))])
    import tensorflow as tf

    tags = {}
    for path in glob.glob(str(tmp_path / "train" / "*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                tags[value.tag] = tf.make_ndarray(value.tensor).item()
    key = "epoch_pruning/prune_low_magnitude_fc1/sparsity"
    assert tags[key] == pytest.approx(0.5, abs=1e-3)


def test_pruning_summaries_reject_a_bad_log_dir():
    with pytest.raises(TypeError, match="log_dir"):
        tfprune.PruningSummaries(log_dir=3)


@keras.saving.register_keras_serializable(package="tests")
class _EveryTwo(tfprune.PruningSchedule):
    """A custom schedule without `end_step`, as in PruningSchedule's docstring."""

    def __call__(self, step):
        return step % 2 == 0, 0.5

    def get_config(self):
        return {}


def test_a_schedule_without_end_step_beside_one_that_ends_later(mnist):
    keras.utils.set_random_seed(7)
    first = tfprune.prune_low_magnitude(
        keras.layers.Dense(32, activation="relu", name="fc1"), _EveryTwo()
    )
    second = tfprune.prune_low_magnitude(
        keras.layers.Dense(10, name="fc2"),
        tfprune.PolynomialDecay(0.0, 0.9, begin_step=0, end_step=100, frequency=4),
    )
    model = compile_model(
        keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(), first, second])
    )
    with pytest.warns(UserWarning, match=r"end_step=100; 'prune_low_magnitude_fc2' at") as seen:
        fit(model, mnist, epochs=1)
    assert "prune_low_magnitude_fc1" not in str(seen[0].message)
    assert first.mask_sparsity() == pytest.approx(0.5, abs=1e-3)


class _WorseEachEpoch(keras.callbacks.Callback):
    """Feeds EarlyStopping a monitored value that is best at the first epoch."""

    def on_epoch_end(self, epoch, logs=None):
        logs["watched"] = float(epoch)


def test_early_stopping_restore_is_consistent_and_told(mnist):
    schedule = tfprune.PolynomialDecay(0.0, 0.95, begin_step=0, end_step=40, frequency=2)
    model = pruned_mlp(schedule)
    stop = keras.callbacks.EarlyStopping(
        "watched", mode="min", patience=2, restore_best_weights=True
    )
    with pytest.warns(UserWarning, match="Pruning target not reached"):
        fit(model, mnist, epochs=6, callbacks=[_WorseEachEpoch(), stop])
    reported = tfprune.sparsity_report(model)
    actual = [
        ops.convert_to_numpy(w)
        for w, _ in tfprune.core.find.pruning_wrappers(model)[0].pruned_weights
    ]
    first = tfprune.core.find.pruning_wrappers(model)[0]
    # Restored at the end of epoch 1 (8 steps): weights, masks and step all from there.
    assert int(first.pruning_step) == 8
    assert first.mask_sparsity() < 0.9
    assert reported[0].sparsity == pytest.approx(first.mask_sparsity(), abs=1e-6)
    assert np.all(actual[0][ops.convert_to_numpy(first.pruned_weights[0][1]) == 0] == 0)
    with pytest.warns(UserWarning, match=r"restored together with its weights.*start_from_epoch"):
        stripped = tfprune.strip_pruning(model)
    zeros = float(np.mean(ops.convert_to_numpy(stripped.get_layer("fc1").kernel) == 0))
    assert zeros == pytest.approx(first.mask_sparsity(), abs=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        tfprune.strip_pruning(model)  # told once


def test_restore_seen_at_train_end_when_listed_after_early_stopping(mnist):
    schedule = tfprune.PolynomialDecay(0.0, 0.95, begin_step=0, end_step=40, frequency=2)
    model = pruned_mlp(schedule)
    stop = keras.callbacks.EarlyStopping(
        "watched", mode="min", patience=2, restore_best_weights=True
    )
    (x, y), _ = mnist
    with pytest.warns(UserWarning, match="restored together with its weights") as seen:
        model.fit(
            x,
            y,
            batch_size=64,
            epochs=6,
            shuffle=False,
            verbose=0,
            callbacks=[_WorseEachEpoch(), stop, tfprune.UpdatePruningStep()],
        )
    # The end-of-training figure is the sparsity the user gets, not the one before the restore.
    short = [str(w.message) for w in seen if "target not reached" in str(w.message)]
    sparsity = tfprune.core.find.pruning_wrappers(model)[0].mask_sparsity()
    assert f"at {sparsity:.1%} of 95.0%" in short[0]


def test_a_custom_loop_attaches_itself_without_the_callback(mnist):
    model = pruned_mlp(tfprune.ConstantSparsity(0.5, 0))
    (x, y), _ = mnist
    wrappers = tfprune.core.find.pruning_wrappers(model)
    with pytest.raises(ValueError, match="attach_driver"):
        model(x[:4], training=True)
    for w in wrappers:
        w.attach_driver()
        w.update_masks(0.5, step=0)
    model(x[:4], training=True)
    assert all(w.driven for w in wrappers)
    for w in wrappers:
        w.detach_driver()
    assert not any(w.driven for w in wrappers)
    assert [w.mask_sparsity() for w in wrappers] == [0.5, 0.5]


def test_each_epoch_logs_the_sparsity_on_the_progress_bar_and_in_the_history(mnist, capsys):
    (x, y), _ = mnist
    model = pruned_mlp(tfprune.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=6, frequency=2))
    history = model.fit(
        x[:256],
        y[:256],
        batch_size=64,
        epochs=3,
        shuffle=False,
        verbose=2,
        callbacks=[tfprune.UpdatePruningStep()],
    )
    lines = [line for line in capsys.readouterr().out.splitlines() if "loss" in line]
    assert len(lines) == 3 and all("sparsity:" in line for line in lines)
    logged = history.history["sparsity"]
    assert logged == sorted(logged) and logged[0] > 0.0
    assert logged[-1] == pytest.approx(tfprune.sparsity_report(model).sparsity)
    assert logged[-1] == pytest.approx(0.8, abs=1e-3)


def test_a_schedule_trained_one_fit_call_at_a_time_is_told_short_once(mnist):
    schedule = tfprune.PolynomialDecay(0.0, 0.9, begin_step=0, end_step=30, frequency=2)
    model = pruned_mlp(schedule)
    callback = tfprune.UpdatePruningStep()
    with pytest.warns(UserWarning, match="Pruning target not reached") as told:
        for epoch in range(3):  # 8 steps an epoch: every call stops short of step 30
            model.fit(
                *mnist[0],
                batch_size=64,
                epochs=epoch + 1,
                initial_epoch=epoch,
                shuffle=False,
                verbose=0,
                callbacks=[callback],
            )
    assert sum("Pruning target not reached" in str(w.message) for w in told) == 1
