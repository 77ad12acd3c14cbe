"""Structured pruning: channels removed and trimmed, against the alternatives (tfprune only).

For each model (LeNet-300-100 and the small CNN on the MNIST sample, MobileNetV2 alpha 0.35 on
the digits resized and repeated to RGB) and each target share of channels: the dense model
trains `warmup` epochs; from those weights, `tfprune.prune_channels` ramps to the target over
`ramp` epochs (cubic) and fine-tunes `finetune` epochs, then `tfprune.trim` removes the masked
channels. Side by side, from the same warm weights and for the same epochs: unstructured
pruning (`prune_low_magnitude`) to the same count of non-zero kernel entries as the trimmed
model; and a dense model of the trimmed model's shape trained from scratch for all the epochs
(Zhu & Gupta's large-sparse vs small-dense, in the structured form). One-shot, from the fully
trained dense model: `prune_channels` with the target at step 0, trimmed without and with the
least-squares update (`calibration` training rows), no retraining.

Files: the dense, trimmed and unstructured models are written by `tfprune.export.to_tflite`
(float32 and int8); `measure` (run in a child process: `python -m bench.channels FILE...`)
checks that each loads with LiteRT's default delegate and times one-row invokes, interleaved
across the files of one model. `report_section` writes this part of `RESULTS.md`.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import numpy as np

from bench import models, protocol
from bench.messages import answer, error_summary

CURVE = "channels_accuracy_latency.png"
NAMES = {"lenet": "LeNet-300-100", "cnn": "small CNN", "mobilenet": "MobileNetV2 (alpha 0.35)"}
KINDS = ("float32", "int8")


def _kernel_entries(model) -> tuple[int, int]:
    """(non-zero, all) entries of the model's prunable kernels."""
    from tfprune.models.registry import prunable_weights
    from tfprune.models.walk import walk

    nonzero = total = 0
    for layer in walk(model):
        if layer is model:
            continue
        for w in prunable_weights(layer):
            value = np.asarray(w.numpy())
            nonzero += int(np.count_nonzero(value))
            total += value.size
    return nonzero, total


def _score(model, data) -> float:
    _, (x, y) = data
    return protocol.score(model, x, y, "mnist")


def _export(model, prefix: str, x) -> dict:
    from tfprune.export import to_tflite

    files = {}
    for kind in KINDS:
        path = f"{prefix}_{kind}.tflite"
        quantize = "int8" if kind == "int8" else None
        try:
            to_tflite(model, path, quantize=quantize, representative_data=x)
            files[kind] = {"path": path, "verified": True}
        except Exception as error:  # a failed export is a result to report
            try:
                to_tflite(model, path, quantize=quantize, representative_data=x, verify=False)
                files[kind] = {"path": path, "verified": False, "reason": error_summary(error)}
            except Exception as again:  # noqa: BLE001
                files[kind] = {"path": None, "verified": False, "reason": error_summary(again)}
    return files


def run(lib, name: str, data, seed: int, targets, epochs: dict, calibration: int, out_dir: str):
    """One model and seed: dense, then per target the structured, unstructured, small-dense
    and one-shot runs, and the files of the dense, trimmed and unstructured models."""
    import keras

    import tfprune

    (x, y), _ = data
    warmup, ramp, finetune = epochs["warmup"], epochs["ramp"], epochs["finetune"]
    total = warmup + ramp + finetune
    build = _builder(lib, name, x)
    dense = protocol.initial_model(lib, build, seed, None)
    protocol.compile_model(lib, dense)
    protocol.fit(dense, x, y, warmup)
    warm = dense.get_weights()
    protocol.fit(dense, x, y, ramp + finetune)
    prefix = f"{out_dir}/channels_{name}_{seed}"
    out = {
        "model": name,
        "seed": seed,
        "dense": _score(dense, data),
        "kernels": _kernel_entries(dense)[1],
        "files": {"dense": _export(dense, f"{prefix}_dense", x[:calibration])},
        "runs": [],
    }
    end = protocol.ramp_end_step(len(x), ramp, epochs["frequency"])
    for target in targets:
        schedule = tfprune.PolynomialDecay(0.0, target, 0, end, frequency=epochs["frequency"])
        base = build()
        base.set_weights(warm)
        start = time.perf_counter()
        pruned = tfprune.prune_channels(base, schedule, round_to=epochs["round_to"])
        protocol.compile_model(lib, pruned)
        protocol.fit(pruned, x, y, ramp + finetune, [tfprune.UpdatePruningStep()])
        seconds = time.perf_counter() - start
        trimmed = tfprune.trim(pruned)
        nonzero = _kernel_entries(trimmed)[0]
        sparsity = 1.0 - nonzero / out["kernels"]

        base = build()
        base.set_weights(warm)
        same = tfprune.PolynomialDecay(0.0, sparsity, 0, end, frequency=epochs["frequency"])
        unstructured = tfprune.prune_low_magnitude(base, same, allocation="global")
        protocol.compile_model(lib, unstructured)
        protocol.fit(unstructured, x, y, ramp + finetune, [tfprune.UpdatePruningStep()])
        unstructured = tfprune.strip_pruning(unstructured)

        keras.utils.set_random_seed(seed)
        small = keras.models.clone_model(trimmed)  # the trimmed shape, fresh weights
        protocol.compile_model(lib, small)
        protocol.fit(small, x, y, total)

        one_shot = tfprune.prune_channels(
            dense, tfprune.ConstantSparsity(target, 0), round_to=epochs["round_to"]
        )
        start = time.perf_counter()
        updated = tfprune.trim(one_shot, calibration_data=x[:calibration])
        update_seconds = time.perf_counter() - start
        tag = f"{prefix}_{target:g}"
        out["runs"].append(
            {
                "target": target,
                "channels": _score(pruned, data),
                "trimmed": _score(trimmed, data),
                "unstructured": _score(unstructured, data),
                "small_dense": _score(small, data),
                "one_shot": _score(tfprune.trim(one_shot), data),
                "one_shot_updated": _score(updated, data),
                "update_seconds": update_seconds,
                "train_seconds": seconds,
                "nonzero": nonzero,
                "parameters": trimmed.count_params(),
                "dense_parameters": dense.count_params(),
                "files": {
                    "trimmed": _export(trimmed, f"{tag}_trimmed", x[:calibration]),
                    "unstructured": _export(unstructured, f"{tag}_unstructured", x[:calibration]),
                },
            }
        )
    return out


def collect(worker, cfg, work: str, log, measure) -> dict:
    """Runs every model and seed of the preset in `worker`, then measures each model's files
    with `measure` (a child process), each target's files interleaved with the dense files."""
    start = time.perf_counter()
    out: dict = {"models": {}, "files": {}}
    for model in cfg.channels_models:
        runs = out["models"][model] = []
        for seed in cfg.channels_seeds:
            runs.append(worker("channels", **cfg.channels_options(model, seed, work)))
            log(f"channel pruning of {model} (seed {seed}) measured")
        first = runs[0]
        dense = first["files"]["dense"]
        rows, dense_latency = [], {kind: [] for kind in dense}
        for run in first["runs"]:
            group = {f"{label} {run['target']:.0%}": files for label, files in run["files"].items()}
            paths = [f["path"] for files in [dense, *group.values()] for f in files.values()]
            measured = measure([p for p in paths if p])
            for kind, f in dense.items():
                dense_latency[kind].append(measured.get(f["path"], {}).get("latency_us"))
            for label, files in group.items():
                rows += [_file_row(label, kind, f, measured) for kind, f in files.items()]
        for kind, f in dense.items():
            latencies = [v for v in dense_latency[kind] if v is not None]
            row = _file_row("dense", kind, f, {})
            row["latency_us"] = statistics.median(latencies) if latencies else None
            rows.insert(len([r for r in rows if r["label"] == "dense"]), row)
        for row in rows:
            reference = next(r for r in rows if r["label"] == "dense" and r["kind"] == row["kind"])
            row["bytes_ratio"] = row["bytes"] / reference["bytes"]
            row["latency_ratio"] = (
                row["latency_us"] / reference["latency_us"]
                if row["latency_us"] and reference["latency_us"]
                else float("nan")
            )
        out["files"][model] = rows
        log(f"channel-pruned files of {model} measured in LiteRT")
    out["wall_s"] = time.perf_counter() - start
    return out


def _file_row(label: str, kind: str, info: dict, measured: dict) -> dict:
    path = info["path"]
    found = measured.get(path, {})
    return {
        "label": label,
        "kind": kind,
        "bytes": os.path.getsize(path) if path else 0,
        "loads": found.get("loads", bool(path)),
        "reason": found.get("reason", info.get("reason", "")),
        "latency_us": found.get("latency_us"),
        "verified": info["verified"],
        "why": info.get("reason", ""),
    }


def _builder(lib, name: str, x):
    k = lib.keras
    if name == "mobilenet":
        return lambda: models.mobilenet_v2(k, size=int(x.shape[1]))
    return lambda: getattr(models, name)(k)


def measure(paths: list[str], repeats: int) -> dict:
    """Loads each file with the default delegate (in a child process each) and times one-row
    invokes, interleaved across the files."""
    from bench.export import interleaved_invoke_us, loads  # loads Keras and TensorFlow

    status = {path: loads(path) for path in paths}
    runnable = [path for path, (ok, _) in status.items() if ok]
    latency = interleaved_invoke_us(runnable, repeats) if runnable else {}
    return {
        path: {"loads": ok, "reason": reason, "latency_us": latency.get(path)}
        for path, (ok, reason) in status.items()
    }


def main() -> None:
    """`python -m bench.channels REPEATS FILE...`: prints `@@bench@@ {json}` of `measure`."""
    answer(measure(sys.argv[2:], int(sys.argv[1])))


def _median(values: list[float]) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def report_section(results: dict) -> list[str]:
    """The "Structured pruning" section of RESULTS.md."""
    part = results.get("channels")
    if not part:
        return []
    lines = [
        "## Structured pruning: channels removed, trimmed",
        "",
        "`tfprune.prune_channels` ramps to the target share of channels, fine-tunes, and",
        "`tfprune.trim` removes them. Accuracy (median over seeds) after the same epochs:",
        "channel pruning, unstructured pruning to the trimmed model's non-zero kernel entries,",
        "and a dense model of the trimmed shape trained from scratch; then one-shot channel",
        "pruning of the trained dense model, trimmed without and with the least-squares update",
        "(no retraining). Latency: median of `Interpreter.invoke()` on one row set once (as",
        "LiteRT's benchmark tool times a model), interleaved with the dense file of the same",
        "quantization, 1 thread, LiteRT's default delegate (XNNPACK).",
        "",
    ]
    config = results.get("config", {})
    if "channels_epochs" in config:
        mobilenet = config.get("channels_mobilenet_epochs", config["channels_epochs"])
        lines += [
            "Epochs (warm-up, ramp, fine-tune): "
            + "/".join(str(e) for e in config["channels_epochs"])
            + " for LeNet and the CNN, "
            + "/".join(str(e) for e in mobilenet)
            + f" for MobileNetV2 on {config['channels_mobilenet_rows']:,} digits at "
            + f"{config['channels_mobilenet_size']}×{config['channels_mobilenet_size']}.",
            "",
        ]
    for name, rows in part["models"].items():
        dense = _median([r["dense"] for r in rows])
        lines += [
            f"### {NAMES[name]} (dense {dense:.3f})",
            "",
            "| channels removed | parameters | channels, fine-tuned | unstructured, same "
            "non-zeros | small dense | one-shot | one-shot + update |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for i, run in enumerate(rows[0]["runs"]):
            runs = [r["runs"][i] for r in rows]

            def cell(key, runs=runs):
                return f"{_median([r[key] for r in runs]):.3f}"

            ratio = runs[0]["parameters"] / runs[0]["dense_parameters"]
            lines.append(
                f"| {run['target']:.0%} | {ratio:.2f}× | {cell('trimmed')} | "
                f"{cell('unstructured')} | {cell('small_dense')} | {cell('one_shot')} | "
                f"{cell('one_shot_updated')} |"
            )
        lines += ["", "| file | bytes | vs dense | latency (µs) | vs dense | loads |"]
        lines.append("|---|---:|---:|---:|---:|---|")
        for row in part["files"][name]:
            lines.append(
                f"| {row['label']} {row['kind']} | {row['bytes']:,} | {row['bytes_ratio']:.2f}× | "
                f"{row['latency_us']:.1f} | {row['latency_ratio']:.2f}× | "
                f"{'yes' if row['loads'] else 'no: ' + row['reason']}"
                f"{'' if row['verified'] else ' (not verified: ' + row['why'] + ')'} |"
            )
        lines.append("")
    return lines


def plot(results: dict, out_dir: str) -> str:
    """Per model: accuracy against the share of channels removed (channel pruning, unstructured
    at the same non-zeros, small dense, one-shot with and without update), and the trimmed and
    unstructured files' latency relative to the dense file. Returns the file name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    part = results["channels"]
    names = list(part["models"])
    fig, axes = plt.subplots(2, len(names), figsize=(4.6 * len(names), 7.5), squeeze=False)
    lines = (
        ("trimmed", "o-", "channels, fine-tuned"),
        ("unstructured", "s--", "unstructured, same non-zeros"),
        ("small_dense", "^:", "small dense from scratch"),
        ("one_shot", "x-", "one-shot"),
        ("one_shot_updated", "d-", "one-shot + update"),
    )
    for column, name in enumerate(names):
        rows = part["models"][name]
        targets = [run["target"] for run in rows[0]["runs"]]
        ax = axes[0][column]
        for key, style, label in lines:
            values = [_median([r["runs"][i][key] for r in rows]) for i in range(len(targets))]
            ax.plot([100 * t for t in targets], values, style, label=label)
        ax.axhline(_median([r["dense"] for r in rows]), color="grey", lw=0.8, label="dense")
        ax.set_title(NAMES[name])
        ax.set_xlabel("channels removed (%)")
        ax.set_ylabel("test accuracy")
        ax = axes[1][column]
        for label, style in (("trimmed", "o-"), ("unstructured", "s--")):
            for kind, color in zip(KINDS, ("C0", "C1"), strict=True):
                points = [
                    (float(row["label"].split()[-1][:-1]), row["latency_ratio"])
                    for row in part["files"][name]
                    if row["label"].startswith(label) and row["kind"] == kind
                ]
                if points:
                    xs, ys = zip(*points, strict=True)
                    ax.plot(xs, ys, style, color=color, label=f"{label} {kind}")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_xlabel("channels removed (%)")
        ax.set_ylabel("latency / dense file of its type")
    axes[0][0].legend(fontsize=7)
    axes[1][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, CURVE), dpi=110)
    plt.close(fig)
    return CURVE


if __name__ == "__main__":
    main()
