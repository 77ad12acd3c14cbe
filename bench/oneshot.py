"""One-shot pruning of trained models, no retraining: magnitude vs Wanda vs SparseGPT (tfprune).

Measured in the tfprune worker (`bench.worker`; tfmot has no one-shot pruning). Each model of
the preset is trained dense, then pruned by `tfprune.prune_one_shot` with each method at each
target (and 2:4) from `calibration` training rows, and scored on the test data (accuracy for
the MNIST models, perplexity for the language models); then each pruned model is fine-tuned
`finetune` epoch(s) with `UpdatePruningStep` (the masks stay) and scored again. The models:
LeNet-300-100 and the small CNN on the MNIST sample, the 2-layer LSTM LM of the library
comparison and a 2-layer KerasHub `GPT2CausalLM` on the same word-level corpus. The language
models prune their LSTM/Transformer layers and output projection, not their embeddings (as
the SparseGPT and Wanda papers leave embeddings dense). Time per layer: the seconds each pruned
weight took, from `prune_one_shot(..., return_stats=True)`. `report_section` writes this part
of `RESULTS.md`.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from bench import models, protocol

METHODS = ("magnitude", "wanda", "sparsegpt")
NAMES = {
    "lenet": "LeNet-300-100",
    "cnn": "small CNN",
    "lstm": "2-layer LSTM LM",
    "gpt2": "GPT-2 (KerasHub, 2 layers)",
    "gpt2_4x256": "GPT-2 (KerasHub, 4 layers, width 256)",
}
LANGUAGE_MODELS = ("lstm", "gpt2", "gpt2_4x256")


def gpt2(vocab: int, length: int, layers: int = 2, width: int = 64):
    """A tiny KerasHub GPT-2 causal LM from a config: 2 layers of width 64 and 2 heads, or
    `layers` layers of width `width` with a head per 32 features."""
    import keras_hub

    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=vocab,
        num_layers=layers,
        num_heads=max(2, width // 32),
        hidden_dim=width,
        intermediate_dim=2 * width if width == 64 else 4 * width,
        max_sequence_length=length,
    )
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)


class Task:
    """One model and its data, for the one-shot runs."""

    def __init__(self, lib, name: str, data, vocab: int, lstm_units: int) -> None:
        k = lib.keras
        (x, y), (xt, yt) = data
        self.name, self.lib = name, lib
        self.lm = name in LANGUAGE_MODELS
        self.task = "lm" if self.lm else "mnist"
        length = x.shape[1] if self.lm else 0
        if name.startswith("gpt2"):
            # The task reads token ids and a padding mask (no padding in these windows).
            self.x = {"token_ids": x, "padding_mask": np.ones_like(x, dtype=bool)}
            self.xt = {"token_ids": xt, "padding_mask": np.ones_like(xt, dtype=bool)}
            size = {"gpt2": (2, 64), "gpt2_4x256": (4, 256)}[name]
            self.build = lambda: gpt2(vocab, length, *size)
            self.layers = ["transformer_layer_*"]
        else:
            self.x, self.xt = x, xt
            if name == "lstm":
                self.build = lambda: models.lstm_lm(k, vocab, length, lstm_units, lstm_units)
                self.layers = [k.layers.LSTM, k.layers.Dense]
            else:
                self.build = lambda: getattr(models, name)(k)
                self.layers = None
        self.y, self.yt = y, yt

    def rows(self, count: int):
        if isinstance(self.x, dict):
            return {key: value[:count] for key, value in self.x.items()}
        return self.x[:count]

    def score(self, model) -> float:
        logits = model.predict(self.xt, batch_size=256, verbose=0)
        return protocol.score_logits(logits, self.yt, self.task)

    def fit(self, model, epochs: int, callbacks=()) -> float:
        return protocol.fit(model, self.x, self.y, epochs, callbacks)


def run(lib, task: Task, seed: int, epochs: int, targets, calibration: int, finetune: int):
    """Trains `task`'s model `epochs` epochs, then one-shot prunes, scores and fine-tunes it."""
    import tfprune

    lib.keras.utils.set_random_seed(seed)
    dense = task.build()
    protocol.compile_model(lib, dense)
    train_seconds = task.fit(dense, epochs)
    out = {
        "model": task.name,
        "seed": seed,
        "dense": task.score(dense),
        "train_seconds": train_seconds,
        "calibration": calibration,
        "runs": [],
    }
    for target in targets:
        pattern = (2, 4) if target == "2:4" else None
        sparsity = None if pattern else float(target)
        for method in METHODS:
            start = time.perf_counter()
            pruned, stats = tfprune.prune_one_shot(
                dense,
                task.rows(calibration),
                sparsity,
                method=method,
                pattern=pattern,
                layers=task.layers,
                return_stats=True,
            )
            seconds = time.perf_counter() - start
            score = task.score(pruned)
            protocol.compile_model(lib, pruned)
            task.fit(pruned, finetune, [tfprune.UpdatePruningStep()])
            out["runs"].append(
                {
                    "target": target,
                    "method": method,
                    "score": score,
                    "finetuned": task.score(pruned) if finetune else None,
                    "sparsity": tfprune.sparsity_report(pruned).sparsity,
                    "seconds": seconds,
                    "layer_seconds": [s.seconds for s in stats],
                    "errors": [s.error for s in stats if s.error is not None],
                    "errors_without_update": [
                        s.error_without_update for s in stats if s.error is not None
                    ],
                }
            )
    return out


def _cell(values: list[float], lm: bool) -> str:
    value = statistics.fmean(values)
    return f"{value:.2f}" if lm else f"{value:.3f}"


def report_section(results: dict) -> list[str]:
    """The one-shot section of RESULTS.md."""
    part, cfg = results["oneshot"], results["config"]
    lines = [
        "## One-shot pruning of trained models (tfprune; no retraining)",
        "",
        "Each model is trained dense, then pruned by `tfprune.prune_one_shot` from "
        f"{cfg['oneshot_calibration']} training rows (sequences for the language models), "
        "layer by layer in call order; then fine-tuned "
        f"{cfg['oneshot_finetune']} epoch(s) with the masks kept. Accuracy (↑) for the MNIST "
        "models, test perplexity (↓) for the language models, mean over seeds "
        f"({', '.join(map(str, cfg['oneshot_seeds']))}). The language models prune their "
        "recurrent/transformer layers and output projection, not their embeddings. 'layer s': "
        "median seconds per pruned weight (calibration passes included).",
        "",
        "| model | dense | target | magnitude | Wanda | SparseGPT | after fine-tuning "
        "(m / W / S) | layer s (m / W / S) |",
        "| --- | ---: | --- | ---: | ---: | ---: | --- | --- |",
    ]
    verdicts = []
    for model, runs in part.items():
        lm = model in LANGUAGE_MODELS
        dense = _cell([r["dense"] for r in runs], lm)
        targets = [r["target"] for r in runs[0]["runs"] if r["method"] == "magnitude"]
        for target in targets:
            cells, tuned, times = {}, [], []
            for method in METHODS:
                rows = [
                    x
                    for r in runs
                    for x in r["runs"]
                    if x["target"] == target and x["method"] == method
                ]
                cells[method] = statistics.fmean(x["score"] for x in rows)
                finetuned = [x["finetuned"] for x in rows if x["finetuned"] is not None]
                tuned.append(_cell(finetuned, lm) if finetuned else "-")
                times.append(
                    f"{statistics.median(t for x in rows for t in x['layer_seconds']):.2f}"
                )
            shown = [f"{cells[m]:.2f}" if lm else f"{cells[m]:.3f}" for m in METHODS]
            label = target if target == "2:4" else f"{float(target):.0%}"
            lines.append(
                f"| {NAMES[model]} | {dense} | {label} | {' | '.join(shown)} | "
                f"{' / '.join(tuned)} | {' / '.join(times)} |"
            )
            if target in ("0.5", 0.5):
                better = (lambda a, b: a <= b) if lm else (lambda a, b: a >= b)
                order = better(cells["sparsegpt"], cells["wanda"]) and better(
                    cells["wanda"], cells["magnitude"]
                )
                verdicts.append(f"{NAMES[model]} {'holds' if order else 'does not hold'}")
    lines += [
        "",
        "The papers' ordering at 50% (SparseGPT at least as good as Wanda, Wanda at least as "
        f"good as magnitude): {'; '.join(verdicts)}.",
        "",
    ]
    return lines
