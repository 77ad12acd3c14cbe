"""tfmot's four pruning guides, ported: only the import changes, and what Keras 3 requires.

Each test follows one guide in `tensorflow_model_optimization/g3doc/guide/pruning/` with small
data and few steps. `tfmot.sparsity.keras.X` is `tfprune.X` and `tf_keras` is `keras`; every
other change is marked `# Keras 3:` with the reason, or `# offline:` where a guide downloads data.
"""

from __future__ import annotations

import os
import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfprune


@pytest.fixture()
def cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_comprehensive_guide(cwd):
    input_shape = [20]
    x_train = np.random.randn(1, 20).astype(np.float32)
    y_train = keras.utils.to_categorical(np.random.randn(1), num_classes=20)

    def setup_model():
        model = keras.Sequential(
            [
                keras.Input(shape=input_shape),  # Keras 3: no input_shape= on layers
                keras.layers.Dense(20),
                keras.layers.Flatten(),
            ]
        )
        return model

    def setup_pretrained_weights():
        model = setup_model()
        model.compile(
            loss=keras.losses.categorical_crossentropy, optimizer="adam", metrics=["accuracy"]
        )
        model.fit(x_train, y_train, verbose=0)
        _, pretrained_weights = tempfile.mkstemp(".weights.h5")  # Keras 3: weights suffix
        model.save_weights(pretrained_weights)
        return pretrained_weights

    pretrained_weights = setup_pretrained_weights()

    # Prune the whole model.
    base_model = setup_model()
    base_model.load_weights(pretrained_weights)
    model_for_pruning = tfprune.prune_low_magnitude(base_model)
    assert isinstance(model_for_pruning.layers[0], tfprune.PruneLowMagnitude)

    # Prune some layers, through clone_model.
    base_model = setup_model()
    base_model.load_weights(pretrained_weights)

    def apply_pruning_to_dense(layer):
        if isinstance(layer, keras.layers.Dense):
            return tfprune.prune_low_magnitude(layer)
        return layer

    model_for_pruning = keras.models.clone_model(base_model, clone_function=apply_pruning_to_dense)
    assert [type(layer).__name__ for layer in model_for_pruning.layers] == [
        "PruneLowMagnitude",
        "Flatten",
    ]

    # Functional and Sequential models built with wrapped layers.
    i = keras.Input(shape=(20,))
    x = tfprune.prune_low_magnitude(keras.layers.Dense(10))(i)
    o = keras.layers.Flatten()(x)
    model_for_pruning = keras.Model(inputs=i, outputs=o)
    model_for_pruning = keras.Sequential(
        [
            keras.Input(shape=input_shape),  # Keras 3: no input_shape= on layers
            tfprune.prune_low_magnitude(keras.layers.Dense(20)),
            keras.layers.Flatten(),
        ]
    )

    # A custom layer that says what to prune (its bias too).
    class MyDenseLayer(keras.layers.Dense, tfprune.PrunableLayer):
        def get_prunable_weights(self):
            return [self.kernel, self.bias]

    model_for_pruning = keras.Sequential(
        [
            keras.Input(shape=input_shape),  # Keras 3: no input_shape= on layers
            tfprune.prune_low_magnitude(MyDenseLayer(20)),
            keras.layers.Flatten(),
        ]
    )
    assert len(model_for_pruning.layers[0].pruned_weights) == 2

    # Train with model.fit, with the sparsity logged for TensorBoard.
    base_model = setup_model()
    base_model.load_weights(pretrained_weights)
    model_for_pruning = tfprune.prune_low_magnitude(base_model)
    log_dir = tempfile.mkdtemp()
    callbacks = [
        tfprune.UpdatePruningStep(),
        tfprune.PruningSummaries(log_dir=log_dir),
    ]
    model_for_pruning.compile(
        loss=keras.losses.categorical_crossentropy, optimizer="adam", metrics=["accuracy"]
    )
    model_for_pruning.fit(x_train, y_train, callbacks=callbacks, epochs=2, verbose=0)
    assert tfprune.sparsity_report(model_for_pruning).sparsity == pytest.approx(0.5)
    assert os.listdir(log_dir)

    # Save and load: a whole model file, with tfmot's scope.
    base_model = setup_model()
    base_model.load_weights(pretrained_weights)
    model_for_pruning = tfprune.prune_low_magnitude(base_model)
    _, keras_model_file = tempfile.mkstemp(".keras")  # Keras 3: .keras, not .h5
    model_for_pruning.save(keras_model_file, include_optimizer=True)
    with tfprune.prune_scope():
        loaded_model = keras.models.load_model(keras_model_file)
    assert isinstance(loaded_model.layers[0], tfprune.PruneLowMagnitude)

    # Strip for export.
    base_model = setup_model()
    base_model.load_weights(pretrained_weights)
    model_for_pruning = tfprune.prune_low_magnitude(base_model)
    model_for_export = tfprune.strip_pruning(model_for_pruning)
    assert [type(layer).__name__ for layer in model_for_export.layers] == ["Dense", "Flatten"]

    # Block sparsity.
    base_model = setup_model()
    pruning_params = {"block_size": [1, 16]}
    model_for_pruning = tfprune.prune_low_magnitude(base_model, **pruning_params)
    assert model_for_pruning.layers[0].rule.pattern.block == (1, 16)


def test_the_custom_training_loop_of_the_comprehensive_guide():
    input_shape = [20]
    x_train = np.random.randn(1, 20).astype(np.float32)
    y_train = keras.utils.to_categorical(np.random.randn(1), num_classes=20)
    base_model = keras.Sequential(
        [keras.Input(shape=input_shape), keras.layers.Dense(20), keras.layers.Flatten()]
    )
    model_for_pruning = tfprune.prune_low_magnitude(base_model)

    loss = keras.losses.categorical_crossentropy
    optimizer = keras.optimizers.Adam()
    log_dir = tempfile.mkdtemp()
    unused_arg = -1
    epochs = 2
    batches = 1

    model_for_pruning.optimizer = optimizer
    step_callback = tfprune.UpdatePruningStep()
    step_callback.set_model(model_for_pruning)
    log_callback = tfprune.PruningSummaries(log_dir=log_dir)
    log_callback.set_model(model_for_pruning)

    step_callback.on_train_begin()
    for _ in range(epochs):
        log_callback.on_epoch_begin(epoch=unused_arg)
        for _ in range(batches):
            step_callback.on_train_batch_begin(batch=unused_arg)
            with tf.GradientTape() as tape:
                logits = model_for_pruning(x_train, training=True)
                loss_value = loss(y_train, logits)
                grads = tape.gradient(loss_value, model_for_pruning.trainable_variables)
                optimizer.apply_gradients(zip(grads, model_for_pruning.trainable_variables))  # noqa: B905
        step_callback.on_epoch_end(batch=unused_arg)
    assert tfprune.sparsity_report(model_for_pruning).sparsity == pytest.approx(0.5)


def mnist(n=512):
    """The guides download MNIST; the embedded sample stands in for it (offline)."""
    (x, y), (xt, yt) = tfprune.datasets.load_mnist_sample()
    return (x[:n] / 255.0, y[:n]), (xt[:256] / 255.0, yt[:256])


def test_pruning_with_keras(cwd):
    (train_images, train_labels), (test_images, test_labels) = mnist()
    model = keras.Sequential(
        [
            keras.layers.InputLayer(shape=(28, 28)),  # Keras 3: shape=, not input_shape=
            keras.layers.Reshape(target_shape=(28, 28, 1)),
            keras.layers.Conv2D(filters=12, kernel_size=(3, 3), activation="relu"),
            keras.layers.MaxPooling2D(pool_size=(2, 2)),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(train_images, train_labels, epochs=1, validation_split=0.1, verbose=0)

    prune_low_magnitude = tfprune.prune_low_magnitude
    batch_size = 128
    epochs = 2
    validation_split = 0.1
    num_images = train_images.shape[0] * (1 - validation_split)
    end_step = np.ceil(num_images / batch_size).astype(np.int32) * epochs
    pruning_params = {
        "pruning_schedule": tfprune.PolynomialDecay(
            initial_sparsity=0.50, final_sparsity=0.80, begin_step=0, end_step=end_step
        )
    }
    model_for_pruning = prune_low_magnitude(model, **pruning_params)
    model_for_pruning.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    logdir = tempfile.mkdtemp()
    callbacks = [
        tfprune.UpdatePruningStep(),
        tfprune.PruningSummaries(log_dir=logdir),
    ]
    # The guide's end_step lies one step past the end of training: tfprune says so.
    with pytest.warns(UserWarning, match="Pruning target not reached"):
        model_for_pruning.fit(
            train_images,
            train_labels,
            batch_size=batch_size,
            epochs=epochs,
            validation_split=validation_split,
            callbacks=callbacks,
            verbose=0,
        )
    _, accuracy = model_for_pruning.evaluate(test_images, test_labels, verbose=0)
    assert accuracy > 0.5

    model_for_export = tfprune.strip_pruning(model_for_pruning)
    # Keras 3: TFLiteConverter.from_keras_model does not take Keras 3 models; to_tflite
    # converts through a SavedModel. The guide's Optimize.DEFAULT is quantize="dynamic".
    pruned = tfprune.export.to_tflite(model_for_export, "pruned.tflite")
    quantized = tfprune.export.to_tflite(
        model_for_export, "pruned_quantized.tflite", quantize="dynamic"
    )
    assert quantized.bytes < pruned.bytes < pruned.dense_float32_bytes
    assert pruned.verification.passed and quantized.verification.passed


def test_pruning_for_on_device_inference_with_xnnpack(cwd):
    # offline: CIFAR-10 is a download; MNIST digits tiled to 32x32x3 stand in for it.
    (x, y), (xt, yt) = mnist(256)
    x = np.repeat(np.pad(x, ((0, 0), (2, 2), (2, 2)))[..., None], 3, axis=-1).astype("float32")

    def build(keepdims):
        return keras.Sequential(
            [
                keras.layers.InputLayer(shape=(32, 32, 3)),  # Keras 3: shape=
                keras.layers.ZeroPadding2D(padding=1),
                keras.layers.Conv2D(filters=8, kernel_size=(3, 3), strides=(2, 2), padding="valid"),
                keras.layers.BatchNormalization(),
                keras.layers.ReLU(),
                keras.layers.DepthwiseConv2D(kernel_size=(3, 3), padding="same"),
                keras.layers.BatchNormalization(),
                keras.layers.ReLU(),
                keras.layers.Conv2D(filters=16, kernel_size=(1, 1)),
                keras.layers.BatchNormalization(),
                keras.layers.ReLU(),
                keras.layers.ZeroPadding2D(padding=1),
                keras.layers.DepthwiseConv2D(kernel_size=(3, 3), strides=(2, 2), padding="valid"),
                keras.layers.BatchNormalization(),
                keras.layers.ReLU(),
                keras.layers.Conv2D(filters=32, kernel_size=(1, 1)),
                keras.layers.BatchNormalization(),
                keras.layers.ReLU(),
                keras.layers.GlobalAveragePooling2D(keepdims=keepdims),
                keras.layers.Flatten(),
                keras.layers.Dense(10),
            ]
        )

    dense_model = build(keepdims=False)
    dense_model.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer="adam",
        metrics=["accuracy"],
    )
    dense_model.fit(x, y, epochs=1, batch_size=128, verbose=0)

    end_step = 2 * 2  # 2 batches of 128, 2 epochs
    pruning_params = {
        "pruning_schedule": tfprune.PolynomialDecay(
            initial_sparsity=0.25, final_sparsity=0.75, begin_step=0, end_step=end_step - 1
        ),
        "pruning_policy": tfprune.PruneForLatencyOnXNNPack(),
    }
    # The guide expects this to fail; tfmot 0.8 accepts it (GlobalAveragePooling2D ends the
    # branch either way), and so does tfprune.
    tfprune.prune_low_magnitude(dense_model, **pruning_params)

    fixed_dense_model = build(keepdims=True)
    fixed_dense_model.set_weights(dense_model.get_weights())
    model_for_pruning = tfprune.prune_low_magnitude(fixed_dense_model, **pruning_params)
    assert [w.layer.name for w in tfprune.core.find.pruning_wrappers(model_for_pruning)] == [
        layer.name
        for layer in fixed_dense_model.layers
        if isinstance(layer, keras.layers.Conv2D)
        and layer.kernel_size == (1, 1)
        and type(layer) is keras.layers.Conv2D
    ]
    model_for_pruning.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer="adam",
        metrics=["accuracy"],
    )
    model_for_pruning.fit(
        x,
        y,
        epochs=2,
        batch_size=128,
        verbose=0,
        callbacks=[
            tfprune.UpdatePruningStep(),
            tfprune.PruningSummaries(log_dir=tempfile.mkdtemp()),
        ],
    )
    model_for_export = tfprune.strip_pruning(model_for_pruning)
    # Keras 3: to_tflite instead of the converter with EXPERIMENTAL_SPARSITY; "speed" keeps
    # every 1x1 kernel read straight from DENSIFY, as XNNPACK's sparse inference needs.
    result = tfprune.export.to_tflite(
        model_for_export, "pruned.tflite", prefer="speed", representative_data=x[:32]
    )
    assert result.verification.passed
    assert sum(row.sparsity == pytest.approx(0.75, abs=0.01) for row in result.tensors) == 2


def test_pruning_with_sparsity_2_by_4(cwd):
    (train_images, train_labels), (test_images, test_labels) = mnist()
    prune_low_magnitude = tfprune.prune_low_magnitude
    pruning_params_2_by_4 = {"sparsity_m_by_n": (2, 4)}
    pruning_params_sparsity_0_5 = {
        "pruning_schedule": tfprune.ConstantSparsity(
            target_sparsity=0.5, begin_step=0, frequency=100
        )
    }
    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),  # Keras 3: no input_shape= on layers
            prune_low_magnitude(
                keras.layers.Conv2D(
                    32, 5, padding="same", activation="relu", name="pruning_sparsity_0_5"
                ),
                **pruning_params_sparsity_0_5,
            ),
            keras.layers.MaxPooling2D((2, 2), (2, 2), padding="same"),
            prune_low_magnitude(
                keras.layers.Conv2D(64, 5, padding="same", name="structural_pruning"),
                **pruning_params_2_by_4,
            ),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.MaxPooling2D((2, 2), (2, 2), padding="same"),
            keras.layers.Flatten(),
            prune_low_magnitude(
                keras.layers.Dense(1024, activation="relu", name="structural_pruning_dense"),
                **pruning_params_2_by_4,
            ),
            keras.layers.Dropout(0.4),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(
        train_images[..., None],
        train_labels,
        batch_size=128,
        epochs=1,
        verbose=0,
        callbacks=tfprune.UpdatePruningStep(),  # as the guide passes it: not in a list
        validation_split=0.1,
    )
    model = tfprune.strip_pruning(model)
    # Keras 3: to_tflite instead of TFLiteConverter.from_keras_model.
    tfprune.export.to_tflite(
        model, "pruned_2_by_4.tflite", representative_data=test_images[:32, ..., None]
    )
    # The guide reads the weights back from the file: both structured layers hold 2:4 (the
    # first conv too, trivially: one input channel); the classifier does not.
    report = tfprune.check_sparsity_m_by_n("pruned_2_by_4.tflite", 2, 4)
    assert [row.holds for row in report] == [True, True, True, False]
    assert [round(row.sparsity, 2) for row in report[:3]] == [0.5, 0.5, 0.5]
