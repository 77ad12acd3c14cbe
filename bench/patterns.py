"""Sparsity patterns side by side: unstructured, blocks (4, 1) and (16, 1), and 2:4, both libraries.

LeNet-300-100 learns the MNIST sample with each pattern at each sparsity of the preset, in both
workers from the same initial weights and dense warm-up: `prune_low_magnitude(..., block_size=,
sparsity_m_by_n=)` with the same arguments in tfprune and in tfmot. A Dense kernel is [in, out],
so Keras blocks (4, 1) and (16, 1) are LiteRT's 1x4 (float32) and 1x16 (int8) blocks. The
100x10 classifier stays dense unless a run names its layers (blocks of 16 inputs would leave
some of its ten outputs with no inputs at all): "... fc1" prunes only the first layer (the
per-layer choice of which layers take blocks and which run dense), "... fc1 fc2 logits" all
three. The 2:4 runs follow tfmot's 2:4 guide: `ConstantSparsity(0.5)` from the first pruning
step. Every pruned model is exported in float32 and int8 by each library's route (tfprune:
`to_tflite`; tfmot: the converter's EXPERIMENTAL_SPARSITY), next to the dense model's own
files (the converter, no sparsity), and the files are measured in LiteRT child processes:
bytes, whether they load with the default delegate, test accuracy, and median single-row
latency, each run's files with their repeats interleaved with the dense files'.
`report_section` writes this part of `RESULTS.md`.
"""

from __future__ import annotations

import os
import statistics
import time

from bench import models, protocol

PRUNED_LAYERS = ("fc1", "fc2")
PATTERNS = {
    "unstructured": {},
    "blocks 4x1": {"block_size": (4, 1)},
    "blocks 16x1": {"block_size": (16, 1)},
    "2:4": {"sparsity_m_by_n": (2, 4)},
}


def parse(spec: str) -> tuple[str, float, tuple[str, ...]]:
    """`"blocks 16x1@0.9 fc1"` -> `("blocks 16x1", 0.9, ("fc1",))`; 2:4 is always 50%."""
    name, _, rest = spec.partition("@")
    target, _, layers = rest.partition(" ")
    if name not in PATTERNS:
        raise ValueError(f"Unknown pattern {name!r} in run {spec!r}; known: {sorted(PATTERNS)}")
    return name, (0.5 if name == "2:4" else float(target)), tuple(layers.split() or PRUNED_LAYERS)


def train(lib, data, spec: str, seed: int, init_path: str, epochs: dict) -> tuple[dict, object]:
    """One pattern run (dense warm-up, pruning, fine-tuning); returns its summary and the
    stripped model."""
    name, target, layers = parse(spec)
    (x, y), (xt, yt) = data
    k = lib.keras
    model = protocol.initial_model(lib, lambda: models.lenet(k), seed, init_path)
    protocol.compile_model(lib, model)
    protocol.fit(model, x, y, epochs["warmup"])
    frequency, total = epochs["frequency"], epochs["ramp"] + epochs["finetune"]
    if name == "2:4":
        schedule = lib.ConstantSparsity(0.5, begin_step=0, frequency=frequency)
    else:
        end = protocol.ramp_end_step(len(x), epochs["ramp"], frequency)
        schedule = lib.PolynomialDecay(0.0, target, 0, end, frequency=frequency)
    options = dict(PATTERNS[name])
    if lib.name == "tfprune":
        pruned = lib.prune_low_magnitude(model, schedule, layers=list(layers), **options)
    else:

        def wrap(layer):
            if layer.name in layers:
                return lib.prune_low_magnitude(layer, schedule, **options)
            return layer

        pruned = k.models.clone_model(model, clone_function=wrap)
    protocol.compile_model(lib, pruned)
    start = time.perf_counter()
    protocol.fit(pruned, x, y, total, [lib.UpdatePruningStep()])
    plain = lib.strip_pruning(pruned)
    summary = {
        "spec": spec,
        "seed": seed,
        "score": protocol.score(plain, xt, yt, "mnist"),
        "sparsity": protocol.kernel_sparsity(plain),
        "nonzeros": protocol.nonzero_parameters(plain),
        "seconds": time.perf_counter() - start,
    }
    return summary, plain


def train_dense(lib, data, seed: int, init_path: str, epochs: dict):
    """The dense reference: the same warm-up and total epochs, no pruning."""
    (x, y), (xt, yt) = data
    model = protocol.initial_model(lib, lambda: models.lenet(lib.keras), seed, init_path)
    protocol.compile_model(lib, model)
    protocol.fit(model, x, y, epochs["warmup"] + epochs["ramp"] + epochs["finetune"])
    return {"seed": seed, "score": protocol.score(model, xt, yt, "mnist")}, model


def run(workers: dict, cfg, work: str, litert, log) -> dict:
    """Trains every run of `cfg.pattern_runs` in both workers (alternating which goes first),
    exports the first seed's models, and measures every file in LiteRT."""
    epochs = cfg.pattern_options()
    out: dict = {"runs": {}, "dense": [], "files": {}}
    files: dict[str, dict] = {}
    libs = list(workers)
    for seed in cfg.pattern_seeds:
        init_path = os.path.join(work, f"patterns_init_{seed}.npz")
        export = seed == cfg.pattern_seeds[0]
        answer = workers["tfprune"](
            "pattern_dense",
            seed=seed,
            init_path=init_path,
            out_dir=work if export else None,
            calibration=cfg.calibration,
            **epochs,
        )
        out["dense"].append(answer["summary"])
        for kind, path in answer["paths"].items():
            files[path] = {"spec": "dense", "library": "converter", "kind": kind}
        for i, spec in enumerate(cfg.pattern_runs):
            for lib in libs if (i + seed) % 2 == 0 else libs[::-1]:
                answer = workers[lib](
                    "pattern",
                    spec=spec,
                    seed=seed,
                    init_path=init_path,
                    out_dir=work if export else None,
                    calibration=cfg.calibration,
                    **epochs,
                )
                out["runs"].setdefault(spec, {}).setdefault(lib, []).append(answer["summary"])
                for kind, path in answer["paths"].items():
                    files[path] = {"spec": spec, "library": lib, "kind": kind}
                for kind, error in answer["errors"].items():
                    key = f"{spec}/{lib}/{kind}"
                    out["files"][key] = {
                        "spec": spec,
                        "library": lib,
                        "kind": kind,
                        "bytes": None,
                        "loads": False,
                        "reason": error,
                    }
            log(f"pattern {spec} (seed {seed}) trained in both libraries")
    # Each run's files are timed interleaved with the dense files alone: across dozens of
    # files, each invoke would find the caches filled by the others, which hurts the largest
    # (dense) files most.
    dense = {path: info for path, info in files.items() if info["spec"] == "dense"}
    for spec in cfg.pattern_runs:
        group = {path: info for path, info in files.items() if info["spec"] == spec}
        measured = litert({path: "lenet" for path in [*dense, *group]})
        references = {info["kind"]: measured[path] for path, info in dense.items()}
        for path, info in group.items():
            key = f"{info['spec']}/{info['library']}/{info['kind']}"
            reference = references.get(info["kind"].split()[0], {})
            out["files"][key] = {
                **info,
                "bytes": os.path.getsize(path),
                **measured[path],
                "dense_latency_us": reference.get("latency_us"),
            }
        for path, info in dense.items():
            row = out["files"].setdefault(
                f"dense/converter/{info['kind']}",
                {**info, "bytes": os.path.getsize(path), **measured[path], "latencies_us": []},
            )
            row["latencies_us"].append(measured[path]["latency_us"])
    for row in out["files"].values():
        if "latencies_us" in row:
            row["latency_us"] = statistics.median(row["latencies_us"])
            row["dense_latency_us"] = row["latency_us"]
    specs, owners = ["dense", *cfg.pattern_runs], ["converter", *libs]

    def order(item):
        row = item[1]
        return specs.index(row["spec"]), owners.index(row["library"]), row["kind"]

    out["files"] = dict(sorted(out["files"].items(), key=order))
    log("pattern files measured in LiteRT")
    return out


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report_section(results: dict) -> list[str]:
    """The "Sparsity patterns" section of RESULTS.md."""
    part, cfg = results["patterns"], results["config"]
    warmup, ramp, finetune = cfg["pattern_epochs"]
    dense = statistics.fmean(r["score"] for r in part["dense"])
    seeds = ", ".join(map(str, cfg["pattern_seeds"]))
    lines = [
        "## Sparsity patterns: unstructured, blocks and 2:4",
        "",
        f"LeNet-300-100 on the MNIST sample, seeds ({seeds}): {warmup} dense epochs, then the "
        f"cubic ramp to the target over {ramp} epochs (2:4: `ConstantSparsity(0.5)` from the "
        f"first step, as tfmot's 2:4 guide does) and {finetune} fine-tuning epoch(s); mask "
        f"update every {cfg['pattern_frequency']} steps. `fc1` and `fc2` are pruned, the 100x10 "
        "classifier stays dense; runs that name layers prune only those. Keras blocks "
        "(4, 1) and (16, 1) of a [in, out] kernel are LiteRT's 1x4 and 1x16 blocks. Accuracy "
        f"is the mean over seeds of the Keras model; the dense model scores {dense:.3f}.",
        "",
        "| run | tfprune accuracy | tfmot accuracy | tfprune − dense |",
        "| --- | ---: | ---: | ---: |",
    ]
    for spec, runs in part["runs"].items():
        scores = {lib: statistics.fmean(r["score"] for r in runs[lib]) for lib in runs}
        lines.append(
            f"| {spec} | {scores.get('tfprune', float('nan')):.3f} | "
            f"{scores.get('tfmot', float('nan')):.3f} | "
            f"{scores.get('tfprune', float('nan')) - dense:+.3f} |"
        )
    lines += [
        "",
        f"Files of seed {cfg['pattern_seeds'][0]}: bytes, and median single-row latency (1 "
        "thread, LiteRT's default delegate) as a ratio to the dense model's file of the same "
        "type, written by the converter without sparsity. Each run's files are timed with "
        "their repeats interleaved with the dense files' and no others (across dozens of "
        "files every invoke would find the caches filled by the rest, which hurts the "
        "largest files most); a dense row shows the median over those runs. "
        'tfprune: `to_tflite`, with `prefer="size"` (the default) '
        "and `prefer=\"speed\"` (rows '... speed'); tfmot: `strip_pruning` and the converter's "
        "EXPERIMENTAL_SPARSITY.",
        "",
        "| run | library | type | bytes | bytes / dense | µs | latency / dense | accuracy |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    files = part["files"]
    for row in files.values():
        base = files.get(f"dense/converter/{row['kind'].split()[0]}")
        head = f"| {row['spec']} | {row['library']} | {row['kind']} | "
        if row.get("bytes") is None or not row.get("loads"):
            reason = row.get("reason", "")[:120]
            if row.get("bytes"):
                lines.append(head + f"{row['bytes']:,} | - | - | does not run: {reason} | - |")
            else:
                lines.append(head + f"- | - | - | conversion failed: {reason} | - |")
            continue
        size = base["bytes"] if base else float("nan")
        latency = row.get("dense_latency_us") or float("nan")
        lines.append(
            head + f"{row['bytes']:,} | "
            f"{row['bytes'] / size:.3f} | {row['latency_us']:.1f} | "
            f"{row['latency_us'] / latency:.2f} | {row['accuracy']:.3f} |"
        )
    return [*lines, ""]


CURVE = "patterns_bytes_latency.png"


def plot(results: dict, out_dir: str) -> str:
    """Bytes against latency (both relative to the dense file of the same type) of every
    pattern file that runs: one panel for float32, one for int8. Returns the file name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = [
        row
        for row in results["patterns"]["files"].values()
        if row.get("loads") and row["spec"] != "dense" and not row["kind"].endswith("speed")
    ]
    dense = {k: results["patterns"]["files"].get(f"dense/converter/{k}") for k in KINDS}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, kind in zip(axes, KINDS, strict=True):
        for lib, marker in (("tfprune", "o"), ("tfmot", "s")):
            rows = [r for r in files if r["kind"] == kind and r["library"] == lib]
            if not rows or not dense[kind]:
                continue
            xs = [r["bytes"] / dense[kind]["bytes"] for r in rows]
            ys = [r["latency_us"] / r["dense_latency_us"] for r in rows]
            ax.scatter(xs, ys, marker=marker, label=lib, alpha=0.8)
            if lib == "tfprune":
                for x, y, r in zip(xs, ys, rows, strict=True):
                    ax.annotate(
                        r["spec"], (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points"
                    )
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel(f"bytes / dense {kind} file")
        ax.set_ylabel(f"latency / dense {kind} file")
        ax.set_title(f"LeNet-300-100, {kind}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, CURVE), dpi=110)
    plt.close(fig)
    return CURVE


KINDS = ("float32", "int8")
