"""`pruning_policy`: PruneForLatencyOnXNNPack's model checks and its choice of layers."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers

import tfprune
from tfprune.core.find import pruning_wrappers

POLICY = tfprune.PruneForLatencyOnXNNPack()


def sparse_inference_net(middle=None, stem_padding=1, end=True):
    """A stem, a MobileNet-style block (3x3 depthwise, 1x1 convs, residual `+`), pooling."""
    inputs = keras.Input((32, 32, 3))
    x = layers.ZeroPadding2D(stem_padding)(inputs) if stem_padding else inputs
    x = layers.Conv2D(8, 3, strides=2, padding="valid" if stem_padding else "same", name="stem")(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU(6.0)(x)
    y = layers.DepthwiseConv2D(3, padding="same", name="depthwise")(x)
    y = layers.Activation("relu")(y)
    y = layers.Conv2D(16, 1, name="expand")(y)
    y = layers.Conv2D(8, 1, name="project")(y)
    x = x + y
    x = middle(x) if middle else x
    if end:
        x = layers.GlobalAveragePooling2D(keepdims=True)(x)
    x = layers.Conv2D(10, 1, name="classifier")(x)
    if end:
        x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, x)


def test_only_the_1x1_convolutions_are_pruned_trained_and_exported_for_xnnpack(tmp_path):
    pruned = tfprune.prune_low_magnitude(
        sparse_inference_net(),
        tfprune.ConstantSparsity(0.75, begin_step=0, frequency=1),
        pruning_policy=POLICY,
    )
    assert sorted(w.layer.name for w in pruning_wrappers(pruned)) == [
        "classifier",
        "expand",
        "project",
    ]
    x = np.random.default_rng(0).random((16, 32, 32, 3), dtype="float32")
    y = np.arange(16) % 10
    pruned.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    pruned.fit(x, y, epochs=1, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    for wrapper in pruning_wrappers(pruned):
        assert wrapper.mask_sparsity() == pytest.approx(0.75, abs=0.01)
    # XNNPACK's sparse inference needs each 1x1 kernel read by its CONV_2D straight from
    # DENSIFY (no reshaped view between them); the file loads with the default delegate.
    result = tfprune.export.to_tflite(
        pruned, tmp_path / "net.tflite", prefer="speed", representative_data=x
    )
    assert result.verification.passed
    pointwise = [row for row in result.tensors if row.shape[1:3] == (1, 1)]
    assert len(pointwise) == 3
    assert all(row.layout.startswith("CSR") and " as " not in row.layout for row in pointwise)


def test_sequential_models_are_checked_too():
    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            layers.ZeroPadding2D(1),
            layers.Conv2D(4, 3, strides=2),
            layers.Conv2D(8, 1, name="pointwise"),
            layers.GlobalAveragePooling2D(),
        ]
    )
    pruned = tfprune.prune_low_magnitude(model, pruning_policy=POLICY)
    assert [w.layer.name for w in pruning_wrappers(pruned)] == ["pointwise"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"stem_padding": 0}, "must start with ZeroPadding2D"),
        ({"middle": layers.MaxPooling2D()}, "Layer 'max_pooling2d.*' of type MaxPooling2D"),
        ({"middle": layers.Conv2D(8, 3, padding="same")}, "of type Conv2D is not supported"),
        ({"end": False}, "must pass through a GlobalAveragePooling2D"),
    ],
)
def test_models_that_do_not_qualify_are_refused_with_the_reason(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tfprune.prune_low_magnitude(sparse_inference_net(**kwargs), pruning_policy=POLICY)


def test_keras_applications_mobilenet_v2_needs_a_padded_stem():
    model = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10
    )
    with pytest.raises(ValueError, match='padding="valid"'):
        tfprune.prune_low_magnitude(model, pruning_policy=POLICY)


def test_policy_type_and_single_layers():
    with pytest.raises(TypeError, match="Received: pruning_policy='xnnpack'"):
        tfprune.prune_low_magnitude(layers.Dense(2), pruning_policy="xnnpack")
    dense, pointwise = layers.Dense(2), layers.Conv2D(4, 1)
    kept, wrapped = tfprune.prune_low_magnitude([dense, pointwise], pruning_policy=POLICY)
    assert kept is dense and isinstance(wrapped, tfprune.PruneLowMagnitude)

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = layers.Conv2D(4, 1)

        def call(self, x):
            return self.conv(x)

    with pytest.raises(ValueError, match="Subclassed model"):
        tfprune.prune_low_magnitude(Subclassed(), pruning_policy=POLICY)
