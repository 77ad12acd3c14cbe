"""Real architectures, small and random: keras.applications, KerasHub, a subclassed model.

Each goes the whole way: prune -> fit a few steps with the callback -> save `.keras` -> load ->
strip -> `to_tflite` in float32 and int8, verified in LiteRT. The share of parameters that are
zero at the end is checked against what the rules can prune. In their cheapest form (`make
test`) the three keras.applications convnets train their two steps eagerly (tracing their
training step takes longer than the steps) and export float32 only; `make test-full` compiles
their training step and exports int8 too (the int8 export of a convnet this size is tested in
tests/test_channels.py either way).
"""

from __future__ import annotations

import keras
import keras_hub
import numpy as np
import pytest
from keras import ops

import tfprune
from tfprune.core.find import pruning_wrappers

SPARSITY = 0.8


def _mobilenet_v2():
    return keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10
    )


def _mobilenet_v3_small():  # hard-swish and squeeze-excite: Keras operations in the graph
    return keras.applications.MobileNetV3Small(
        input_shape=(32, 32, 3), alpha=0.75, weights=None, classes=10, include_preprocessing=False
    )


def _efficientnet_v2_b0():
    return keras.applications.EfficientNetV2B0(
        input_shape=(32, 32, 3), weights=None, classes=10, include_preprocessing=False
    )


# A tiny text backbone: two layers of width 16 over a 64-word vocabulary.
TINY_TEXT = {
    "vocabulary_size": 64,
    "num_layers": 2,
    "num_heads": 2,
    "hidden_dim": 16,
    "intermediate_dim": 32,
    "max_sequence_length": 16,
}


def _bert():
    return keras_hub.models.BertBackbone(**TINY_TEXT)


def _gpt2():
    return keras_hub.models.GPT2Backbone(**TINY_TEXT)


def _gpt2_causal_lm():
    return keras_hub.models.GPT2CausalLM(backbone=_gpt2(), preprocessor=None)


def _vit():
    return keras_hub.models.ViTBackbone(
        image_shape=(32, 32, 3),
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        mlp_dim=32,
    )


def _vgg():
    return keras_hub.models.VGGBackbone(
        stackwise_num_repeats=[1, 1], stackwise_num_filters=[8, 16], image_shape=(32, 32, 3)
    )


ZOO = {
    "MobileNetV2": _mobilenet_v2,
    "MobileNetV3Small": _mobilenet_v3_small,
    "EfficientNetV2B0": _efficientnet_v2_b0,
    "BertBackbone": _bert,
    "GPT2Backbone": _gpt2,
    "GPT2CausalLM": _gpt2_causal_lm,
    "ViTBackbone": _vit,
    "VGGBackbone": _vgg,
}
# Their cheapest form trains eagerly and exports float32 only (see the module docstring).
CONVNETS = {"MobileNetV2", "MobileNetV3Small", "EfficientNetV2B0"}


def inputs_for(model, rows: int = 8):
    """Valid random inputs, as the model takes them: images, or token ids with masks."""
    rng = np.random.default_rng(0)
    arrays = {}
    for tensor in model.inputs:
        shape = (rows, *[d or 8 for d in tensor.shape[1:]])
        if "int" not in str(tensor.dtype):
            arrays[tensor.name] = rng.uniform(0, 1, shape).astype("float32")
        elif tensor.name in ("padding_mask", "segment_ids"):
            arrays[tensor.name] = np.ones(shape, tensor.dtype) * (tensor.name == "padding_mask")
        else:
            arrays[tensor.name] = rng.integers(1, 60, shape).astype(tensor.dtype)
    return arrays if isinstance(model.input, dict) else list(arrays.values())[0]


def zero_share(model) -> float:
    weights = [ops.convert_to_numpy(v) for v in model.trainable_weights]
    return sum(int(np.sum(w == 0)) for w in weights) / sum(w.size for w in weights)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ZOO))
def test_prune_train_save_load_strip_export(name, tmp_path, full):
    cheap = name in CONVNETS and not full
    keras.utils.set_random_seed(0)
    model = ZOO[name]()
    x = inputs_for(model)
    schedule = tfprune.PolynomialDecay(0.0, SPARSITY, begin_step=0, end_step=1, frequency=1)
    pruned = tfprune.prune_low_magnitude(model, schedule)
    if name == "GPT2CausalLM":  # next-token logits, masked by padding_mask
        y, loss = x["token_ids"], keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    else:
        outputs = pruned.predict(x, verbose=0)
        y = keras.tree.map_structure(lambda o: np.zeros_like(o, dtype="float32"), outputs)
        loss = "mse"
    pruned.compile(optimizer="adam", loss=loss, run_eagerly=cheap)
    pruned.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[tfprune.UpdatePruningStep()])

    report = tfprune.sparsity_report(pruned)
    assert report and all(
        row.sparsity == pytest.approx(SPARSITY, abs=0.5 / row.nonzeros) for row in report
    )
    # A KerasHub model keeps its class when pruned and saves through its own config, so a
    # layer its parts share (GPT2CausalLM's tied token embedding) loads as one layer.
    pruned.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert isinstance(loaded, type(model))
    for a, b in zip(
        keras.tree.flatten(pruned.predict(x, verbose=0)),
        keras.tree.flatten(loaded.predict(x, verbose=0)),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, atol=1e-5)

    stripped = tfprune.strip_pruning(loaded)
    assert not pruning_wrappers(stripped)
    prunable = sum(int(np.prod(row.shape)) for row in report)
    total = sum(int(np.prod(v.shape)) for v in stripped.trainable_weights)
    # Every weight a rule covers is at the target: the share of zeros is what the rules allow.
    assert zero_share(stripped) == pytest.approx(SPARSITY * prunable / total, abs=0.01)
    assert prunable / total > 0.85  # the rest: biases, normalization, position embeddings
    for quantize in (None,) if cheap else (None, "int8"):
        result = tfprune.export.to_tflite(
            stripped, tmp_path / f"{quantize}.tflite", quantize=quantize, representative_data=x
        )
        assert result.verification.passed
        assert result.bytes < result.dense_float32_bytes


@pytest.mark.slow
def test_a_pruned_causal_lm_generates_with_its_own_class():
    keras.utils.set_random_seed(0)
    task = _gpt2_causal_lm()
    pruned = tfprune.prune_low_magnitude(task, tfprune.ConstantSparsity(SPARSITY, 0))
    for wrapper in pruning_wrappers(pruned):
        wrapper.update_masks(SPARSITY)
    stripped = tfprune.strip_pruning(pruned)
    # The copy is a Functional model of the task's graph; its weights fit the task itself.
    task.set_weights(stripped.get_weights())
    assert zero_share(task) == pytest.approx(zero_share(stripped))
    prompt = {
        "token_ids": np.array([[5, 9, 0, 0, 0, 0, 0, 0]]),
        "padding_mask": np.array([[1, 1, 0, 0, 0, 0, 0, 0]], dtype=bool),
    }
    generated = task.generate(prompt, max_length=8, stop_token_ids=None)
    ids = ops.convert_to_numpy(generated["token_ids"])
    assert ids.shape == (1, 8) and list(ids[0, :2]) == [5, 9]
    np.testing.assert_allclose(
        task.predict(prompt, verbose=0), stripped.predict(prompt, verbose=0), atol=1e-5
    )
