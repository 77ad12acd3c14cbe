"""Prune, then quantize with Keras: every pruned weight of a KerasHub LLM stays exactly zero
through `model.quantize(mode)` in every mode (int8, int4, float8, and GPTQ and AWQ calibrated on
token ids), and the quantized model's outputs stay close to the unquantized pruned model's."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from llm_families import SEQUENCE, VOCABULARY, causal_lm

import tfprune

# The largest relative output change quantization may cause on the tiny random model.
TOLERANCE = {"int8": 0.05, "int4": 0.3, "float8": 0.1, "gptq": 0.3, "awq": 0.3}


def tokens(rows: int = 8) -> dict:
    ids = np.random.default_rng(0).integers(1, VOCABULARY, (rows, SEQUENCE)).astype("int32")
    return {"token_ids": ids, "padding_mask": np.ones((rows, SEQUENCE), bool)}


def projections(lm) -> dict:
    return {
        layer.path: layer
        for layer in lm.backbone._flatten_layers()
        if isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense))
        and "transformer_layer" in layer.path
    }


def zero_after(layer, shape) -> np.ndarray:
    """Where `layer`'s quantized kernel dequantizes to exactly zero (in the float kernel's
    `shape`)."""
    q = np.asarray(layer.kernel)  # int4 comes back unpacked
    if layer.quantization_mode in ("gptq", "awq"):
        # [outputs, inputs], grouped along the inputs with a zero point per output and group.
        groups = np.asarray(layer.g_idx).astype(int)
        q = q.reshape(-1, len(groups))
        zero = np.asarray(layer.kernel_zero)[:, groups]
        return (q == zero).T.reshape(shape)
    if layer.quantization_mode == "int4":
        # Grouped with a zero point: (q - zero[group of the input row]) * scale.
        groups = np.asarray(layer.g_idx).astype(int)
        zero = np.asarray(layer.kernel_zero)[groups]
        return (q.reshape(len(groups), -1) == zero).reshape(q.shape)
    return q == 0  # int8: symmetric, no zero point; float8: the kernel stays float


def config(mode: str, data: dict):
    """GPTQ's and AWQ's configuration, calibrated on the token ids of `data` (a tokenizer is
    required but unused for token ids); None for the other modes."""
    if mode not in ("gptq", "awq"):
        return None
    cls = keras.quantizers.GPTQConfig if mode == "gptq" else keras.quantizers.AWQConfig
    rows = list(data["token_ids"])
    return cls(rows, object(), num_samples=len(rows), sequence_length=SEQUENCE, group_size=8)


@pytest.mark.parametrize("mode", ["int8", "int4", "float8", "gptq", "awq"])
@pytest.mark.parametrize("family", ["Llama", "Qwen3"])
def test_pruned_weights_stay_zero_through_keras_quantization(family, mode):
    keras.utils.set_random_seed(0)
    data = tokens()
    pruned = tfprune.strip_pruning(
        tfprune.prune_one_shot(causal_lm(family), data, 0.5, method="wanda", in_place=True)
    )
    before = np.asarray(pruned.predict(data, verbose=0))
    zeros = {path: np.asarray(layer.kernel) == 0 for path, layer in projections(pruned).items()}
    share = sum(z.sum() for z in zeros.values()) / sum(z.size for z in zeros.values())
    assert share == pytest.approx(0.5, abs=0.01)
    pruned.quantize(mode, config=config(mode, data))
    layers = projections(pruned)
    assert {layer.quantization_mode for layer in layers.values()} == {mode}
    for path, was_zero in zeros.items():
        now_zero = zero_after(layers[path], was_zero.shape)
        assert now_zero[was_zero].all(), f"{path}: a pruned weight is no longer zero ({mode})"
        # Quantization adds few zeros of its own: the sparsity is the pruned one.
        assert now_zero.mean() - was_zero.mean() < 0.1, path
    after = np.asarray(pruned.predict(data, verbose=0))
    change = np.abs(after - before).max() / np.abs(before).max()
    assert change < TOLERANCE[mode], change
