"""Turns `results.json` of `python -m bench` into `RESULTS.md` and PNG plots.

Every number and every verdict sentence is computed from the results, so the report cannot
drift from the run that produced it. `python -m bench.report DIR` rewrites the report from
`DIR/results.json` without rerunning anything.
"""

from __future__ import annotations

import json
import os
import statistics
import sys

from bench import applications, channels, llm, models, oneshot, patterns

NAMES = {"lenet": "LeNet-300-100", "cnn": "small CNN", "lstm": "2-layer LSTM LM"}
LIBS = ("tfprune", "tfmot")
PLOTS = ("accuracy_vs_sparsity.png", "sparse_vs_dense.png", "training_time.png")


def _mean_spread(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


def _fmt(values: list[float], task: str) -> str:
    mean, spread = _mean_spread(values)
    digits = ".1f" if task == "lm" else ".3f"
    text = f"{mean:{digits}}"
    return text + (f" ± {spread:{digits}}" if len(values) > 1 else "")


def _by_target(runs: list[dict]) -> dict[float, list[float]]:
    """Scores by target over the seeds of a list of `prune` job summaries."""
    out: dict[float, list[float]] = {}
    for summary in runs:
        for run in summary["runs"]:
            out.setdefault(run["target"], []).append(run["score"])
    return out


def _task(model: str) -> str:
    return "lm" if model == "lstm" else "mnist"


def _header(results: dict) -> list[str]:
    m, cfg = results["machine"], results["config"]
    v = m["versions"]
    return [
        "# Benchmark results",
        "",
        f"Produced by `{results.get('command', 'python -m bench')}` (preset `{cfg['name']}`) on "
        f"{m['date_utc']}, wall time {results.get('wall_s', 0) / 60:.1f} min.",
        f"Machine: {m['nproc']} CPU cores (`nproc`; {m['affinity']} usable), {m['cpu']}, "
        f"{m['platform']}; 1-minute load average {m['load_average_at_start']:.1f} at the start, "
        f"{m.get('load_average_at_end', float('nan')):.1f} at the end (the run itself keeps "
        "up to two processes busy); "
        f"Python {m['python']}, TensorFlow {v['tensorflow']}, Keras "
        f"{v['keras']} (tfprune), tf-keras {v['tf-keras']} + tensorflow-model-optimization "
        f"{v['tensorflow-model-optimization']} (tfmot), ai-edge-litert {v['ai-edge-litert']}.",
        "",
        "Both libraries train the same architectures from the same initial weights, on the same "
        "data, with the same optimizer (Adam 1e-3, batch 64), schedule and number of steps; "
        "tfmot runs in its own process with `TF_USE_LEGACY_KERAS=1`, and the two processes get "
        "their jobs in alternation. Protocol per pruning run: "
        f"MNIST {cfg['mnist_epochs'][0]} dense warm-up epochs, cubic ramp from 0 to the target "
        f"over {cfg['mnist_epochs'][1]} epochs (mask update every {cfg['mnist_frequency']} "
        f"steps), {cfg['mnist_epochs'][2]} fine-tuning epoch(s); LSTM "
        f"{'/'.join(map(str, cfg['lstm_epochs']))} epochs, update every "
        f"{cfg['lstm_frequency']} steps. The dense baseline trains for the same total epochs.",
        "",
        "Data: the MNIST sample embedded in tfprune "
        f"({cfg['mnist_train']:,} train / {cfg['mnist_test']:,} test digits; Y. LeCun, C. Cortes, "
        "C. J. C. Burges, CC BY-SA 3.0). Language model: the Lee news corpus shipped inside the "
        "`gensim` package (`gensim/test/test_data/lee_background.cor`, gensim 4.4.0, LGPL-2.1): "
        "300 English news articles of the Australian Broadcasting Corporation, about 60,000 "
        "words, collected by Lee, Pincombe & Welsh (2005); the text is redistributed under "
        "gensim's licence and is not copied into this repository. Last 30 articles held out; "
        f"vocabulary {cfg['lstm_vocab']:,} words, sequences of {cfg['lstm_length']} words, "
        f"LSTM width {cfg['lstm_units']}.",
        "",
    ]


def _time_section(results: dict) -> list[str]:
    lines = [
        "## Training time, pruned / dense",
        "",
        "One epoch of the dense model and of its pruned copy (cubic ramp to 90%, mask update "
        "every 100 steps, inside the timed epochs), in alternating order, after one untimed "
        "warm-up epoch each; the median over repeats of the per-repeat ratio. Each library's "
        "ratio is against its own Keras: absolute epoch times are shown too.",
        "",
        "| model | library | dense s/epoch | pruned s/epoch | median ratio | ratios |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for model, rows in results["time"].items():
        for lib in LIBS:
            reps = rows[lib]
            ratios = [r["pruned"] / r["dense"] for r in reps]
            lines.append(
                f"| {NAMES[model]} | {lib} | {statistics.median(r['dense'] for r in reps):.2f} | "
                f"{statistics.median(r['pruned'] for r in reps):.2f} | "
                f"**{statistics.median(ratios):.2f}** | {' '.join(f'{x:.2f}' for x in ratios)} |"
            )
    return [*lines, ""]


def _seeds(config: dict) -> str:
    """The library comparison's seeds, as the preset gives them (older results: one list)."""
    seeds = ", ".join(map(str, config["library_seeds"]))
    lstm = config.get("lstm_seeds", config["library_seeds"])
    if list(lstm) == list(config["library_seeds"]):
        return f"({seeds})"
    return f"({seeds}) for the MNIST models and ({', '.join(map(str, lstm))}) for the LSTM"


def _accuracy_section(results: dict) -> list[str]:
    lines = [
        "## Accuracy after pruning",
        "",
        "Test accuracy (MNIST models) and test perplexity (LSTM, lower is better) of the "
        "stripped model; mean ± standard deviation over seeds "
        f"{_seeds(results['config'])}. 'sparsity' is the measured fraction of zeros "
        "over all kernels and embeddings.",
        "",
        "| model | target | tfprune | tfmot | change from dense, tfprune / tfmot | "
        "sparsity tfprune / tfmot |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for model, per_lib in results["accuracy"].items():
        task = _task(model)
        dense = {lib: [s["dense"] for s in per_lib[lib]] for lib in LIBS}
        lines.append(
            f"| {NAMES[model]} | dense | {_fmt(dense['tfprune'], task)} | "
            f"{_fmt(dense['tfmot'], task)} | | |"
        )
        # Each pruned score against the dense score of the same seed and library: the
        # like-for-like figure, free of any difference between the two Keras versions.
        change = {
            lib: {
                target: statistics.mean(
                    r["score"] - s["dense"]
                    for s in per_lib[lib]
                    for r in s["runs"]
                    if r["target"] == target
                )
                for target in _by_target(per_lib[lib])
            }
            for lib in LIBS
        }
        digits = ".1f" if task == "lm" else ".3f"
        scores = {lib: _by_target(per_lib[lib]) for lib in LIBS}
        measured = {
            lib: {r["target"]: r["sparsity"] for s in per_lib[lib] for r in s["runs"]}
            for lib in LIBS
        }
        for target in scores["tfprune"]:
            lines.append(
                f"| {NAMES[model]} | {target:.0%} | {_fmt(scores['tfprune'][target], task)} | "
                f"{_fmt(scores['tfmot'][target], task)} | "
                f"{change['tfprune'][target]:+{digits}} / {change['tfmot'][target]:+{digits}} | "
                f"{measured['tfprune'][target]:.4f} / {measured['tfmot'][target]:.4f} |"
            )
    return [*lines, ""]


def _kind(kind: str) -> str:
    """'float32 speed' -> 'float32 sparse, prefer=speed'."""
    weights, _, prefer = kind.partition(" ")
    return f"{weights} sparse" + (f", prefer={prefer}" if prefer else "")


def _export_section(results: dict) -> list[str]:
    target = results["config"]["export_target"]
    lines = [
        "## Exported LiteRT files",
        "",
        f"The seed-0 models pruned to {target:.0%} above, each library's best route: tfprune "
        "`tfprune.export.to_tflite(model, path, quantize=None | 'int8')` (sparse by default), "
        "once with the default `prefer='size'` (smallest file) and once with `prefer='speed'` "
        "(no reshaped weight views, int8 kernel weights dense, so that every kernel runs in "
        "XNNPACK with static weights); "
        "tfmot `strip_pruning` + `TFLiteConverter.from_keras_model` with "
        "`tf.lite.Optimize.EXPERIMENTAL_SPARSITY` (plus `Optimize.DEFAULT`, a representative "
        "dataset and int8 builtins for int8). 'loads' = loads and runs once with LiteRT's "
        "default delegate (`ai_edge_litert.interpreter.Interpreter`), checked in a child "
        "process. Latency: median µs of one single-row invoke, 1 thread, repeats interleaved "
        f"across files ({results['config']['latency_repeats']} each); for the language model one "
        "invoke reads a whole sequence. Score: the file's test accuracy on the digits, or its "
        "test perplexity on the held-out text (lower is better), one row per invoke. "
        "tfprune exports the LSTM unrolled (its sequence length is fixed). For tfmot the LSTM "
        "follows TensorFlow's guide for Keras LSTMs (a concrete function at batch size 1; "
        "`from_keras_model` fails on tensor-list ops), which gives the converter's fused "
        "`UNIDIRECTIONAL_SEQUENCE_LSTM`; that operator keeps its state in variable tensors "
        "across invokes, so the score resets them before every sequence, as Keras starts "
        "from zeros.",
        "",
        "| model | library | weights | bytes | loads | latency µs | score |",
        "| --- | --- | --- | ---: | --- | ---: | ---: |",
    ]
    for row in results["export"].values():
        reason = " ".join(row["reason"].split())
        loads = "yes" if row["loads"] else f"**no**: {reason[:120]}"
        latency = f"{row['latency_us']:.1f}" if row["latency_us"] is not None else "-"
        digits = 1 if row["model"] == "lstm" else 3
        score = f"{row['accuracy']:.{digits}f}" if row["accuracy"] is not None else "-"
        size = f"{row['bytes']:,}" if row["bytes"] is not None else "-"
        lines.append(
            f"| {NAMES[row['model']]} | {row['library']} | {_kind(row['kind'])} | "
            f"{size} | {loads} | {latency} | {score} |"
        )
    return [*lines, ""]


def _mask_section(results: dict) -> list[str]:
    size = results["config"]["mask_size"]
    med = {lib: statistics.median(r["seconds"] for r in results["mask"][lib]) for lib in LIBS}
    return [
        "## One mask update",
        "",
        f"A {size}×{size} float32 weight pruned to 90%, median of "
        f"{results['config']['mask_repeats']} interleaved repeats after a warm-up: tfprune "
        "`tfprune.masks.magnitude_mask` (host selection) against tfmot "
        "`pruning_impl.Pruning.conditional_mask_update` as a `tf.function` (top-k of all "
        "magnitudes, then the mask and threshold assignments), measured in the tfmot process.",
        "",
        "| tfprune ms | tfmot ms | tfmot / tfprune |",
        "| ---: | ---: | ---: |",
        f"| {med['tfprune'] * 1e3:.0f} | {med['tfmot'] * 1e3:.0f} | "
        f"{med['tfmot'] / med['tfprune']:.1f}× |",
        "",
    ]


def _paper_section(results: dict) -> list[str]:
    paper = results["paper"]
    seeds = results["config"]["paper_seeds"]
    lines = [
        "## The paper's claims at small scale (tfprune)",
        "",
        "### (a) Gradual cubic ramp against one-shot pruning",
        "",
        "One-shot: `PolynomialDecay(0, target, begin_step=0, end_step=0)`, i.e. prune to the "
        "target at the first step after the dense warm-up, then train the same ramp + "
        "fine-tuning epochs with frozen masks. Test accuracy, mean ± sd over seeds "
        f"({', '.join(map(str, seeds))}).",
        "",
        "| model | target | gradual (cubic) | one-shot | gradual - one-shot |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    wins = total = 0
    losses = []
    for model in paper["gradual"]:
        gradual, one_shot = (
            _by_target(paper["gradual"][model]),
            _by_target(paper["one_shot"][model]),
        )
        for target in gradual:
            diff = statistics.fmean(gradual[target]) - statistics.fmean(one_shot[target])
            wins += diff > 0
            total += 1
            if diff <= 0:
                losses.append(f"{NAMES[model]} at {target:.0%} ({diff:+.3f})")
            lines.append(
                f"| {NAMES[model]} | {target:.0%} | {_fmt(gradual[target], 'mnist')} | "
                f"{_fmt(one_shot[target], 'mnist')} | {diff:+.3f} |"
            )
    lines += [
        "",
        f"Verdict: the gradual ramp has the higher mean accuracy in {wins} of {total} cases. "
        "The paper reports gradual pruning ahead of one-shot pruning at equal training budget; "
        + (
            "this run agrees."
            if wins == total
            else "this run agrees only in part; one-shot is as good or better for "
            + ", ".join(losses)
            + ". Compare each difference with the seed spread: with few seeds and short "
            "budgets, differences of the order of the spread are noise."
        ),
        "",
        "### (b) Large-sparse against small-dense at equal non-zero parameters",
        "",
        "The small CNN at width 1.0 pruned to each target (gradual protocol above) against dense "
        "CNNs whose width multiplier makes their parameter count closest to the pruned model's "
        "non-zeros, trained from scratch for the same total epochs. Non-zeros include biases.",
        "",
        "| target | sparse nnz | sparse accuracy | dense width (channels) | dense params | "
        "dense accuracy | sparse - dense |",
        "| ---: | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    sparse = _by_target(paper["gradual"].get("cnn", []))
    sparse_nnz = {
        r["target"]: r["nonzeros"] for s in paper["gradual"].get("cnn", []) for r in s["runs"]
    }
    better = 0
    behind = []
    for row in paper["small_dense"]:
        target = row["target"]
        dense_scores = [r["score"] for r in row["runs"]]
        diff = statistics.fmean(sparse[target]) - statistics.fmean(dense_scores)
        better += diff > 0
        if diff <= 0:
            behind.append(f"{target:.0%} ({diff:+.3f})")
        channels = "/".join(map(str, models.cnn_channels(row["width"])))
        lines.append(
            f"| {target:.0%} | {sparse_nnz[target]:,} | {_fmt(sparse[target], 'mnist')} | "
            f"{row['width']:.3f} ({channels}) | {row['runs'][0]['nonzeros']:,} | "
            f"{_fmt(dense_scores, 'mnist')} | {diff:+.3f} |"
        )
    n = len(paper["small_dense"])
    lines += [
        "",
        f"Verdict: the large-sparse model is ahead in {better} of {n} comparisons. The paper "
        "finds large-sparse models consistently better than small-dense ones of the same size; "
        + (
            "this run agrees."
            if better == n
            else "this run does not show it everywhere: the small dense CNN is as good or "
            "better at " + ", ".join(behind) + "."
        ),
        "",
    ]
    return lines


def plot(results: dict, out_dir: str) -> list[str]:
    """Writes the PNG plots; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acc = results["accuracy"]
    fig, axes = plt.subplots(1, len(acc), figsize=(5 * len(acc), 4))
    for ax, (model, per_lib) in zip(axes, acc.items(), strict=True):
        for lib, style in zip(LIBS, ("o-", "s--"), strict=True):
            scores = _by_target(per_lib[lib])
            ax.plot(
                [100 * t for t in scores],
                [statistics.fmean(v) for v in scores.values()],
                style,
                label=f"{lib} (cubic ramp)",
            )
        one_shot = results["paper"]["one_shot"].get(model)
        if one_shot:
            scores = _by_target(one_shot)
            ax.plot(
                [100 * t for t in scores],
                [statistics.fmean(v) for v in scores.values()],
                "^:",
                label="tfprune one-shot (seed mean)",
            )
        dense = statistics.fmean(s["dense"] for s in per_lib["tfprune"])
        ax.axhline(dense, color="grey", lw=0.8, label="dense")
        ax.set_title(NAMES[model])
        ax.set_xlabel("sparsity (%)")
        ax.set_ylabel("test perplexity" if model == "lstm" else "test accuracy")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, PLOTS[0]), dpi=110)
    plt.close(fig)

    paper = results["paper"]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    sparse_runs = paper["gradual"].get("cnn", [])
    if sparse_runs:
        by_target: dict[float, list] = {}
        for s in sparse_runs:
            for r in s["runs"]:
                by_target.setdefault(r["target"], []).append(r)
        xs = [statistics.fmean(r["nonzeros"] for r in v) for v in by_target.values()]
        ms = [_mean_spread([r["score"] for r in v]) for v in by_target.values()]
        ax.errorbar(
            xs,
            [m for m, _ in ms],
            [s for _, s in ms],
            fmt="o-",
            capsize=3,
            label="width 1.0, pruned",
        )
    ms = [_mean_spread([r["score"] for r in row["runs"]]) for row in paper["small_dense"]]
    xs = [row["runs"][0]["nonzeros"] for row in paper["small_dense"]]
    ax.errorbar(
        xs, [m for m, _ in ms], [s for _, s in ms], fmt="s--", capsize=3, label="narrower, dense"
    )
    ax.set_xscale("log")
    ax.set_xlabel("non-zero parameters")
    ax.set_ylabel("test accuracy")
    ax.set_title("Large-sparse vs small-dense CNN")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, PLOTS[1]), dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.5, 4))
    names = list(results["time"])
    for i, lib in enumerate(LIBS):
        ratios = [
            statistics.median(r["pruned"] / r["dense"] for r in results["time"][m][lib])
            for m in names
        ]
        ax.bar([j + 0.4 * i for j in range(len(names))], ratios, 0.4, label=lib)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xticks([j + 0.2 for j in range(len(names))], [NAMES[m] for m in names])
    ax.set_ylabel("pruned / dense epoch time (median)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, PLOTS[2]), dpi=110)
    plt.close(fig)
    return list(PLOTS)


def write(results: dict, out_dir: str) -> str:
    """Writes `RESULTS.md` and the plots into `out_dir`; returns the Markdown path."""
    plots = plot(results, out_dir)
    if "patterns" in results:
        plots.append(patterns.plot(results, out_dir))
    if results.get("channels"):
        plots.append(channels.plot(results, out_dir))
    if results.get("llm"):
        plots.append(llm.plot(results, out_dir))
    header = _header(results)
    # Everything between the title and the plots is a named section that the docs page
    # includes verbatim (pymdownx.snippets), so the page always shows the committed results.
    lines = [
        header[0],
        "",
        "<!-- --8<-- [start:results] -->",
        *header[2:],
        *_time_section(results),
        *_accuracy_section(results),
        *_export_section(results),
        *_mask_section(results),
        *_paper_section(results),
        *(patterns.report_section(results) if "patterns" in results else []),
        *(oneshot.report_section(results) if "oneshot" in results else []),
        *channels.report_section(results),
        *(applications.report_section(results) if "applications" in results else []),
        *llm.report_section(results),
        "<!-- --8<-- [end:results] -->",
        "",
        "## Plots",
        "",
        *[f"![{name[:-4]}]({name})" for name in plots],
        "",
    ]
    path = os.path.join(out_dir, "RESULTS.md")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


if __name__ == "__main__":
    directory = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(directory, "results.json")) as f:
        write(json.load(f), directory)
