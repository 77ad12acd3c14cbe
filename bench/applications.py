"""keras.applications models with tfprune: MobileNetV2 pruned and exported, ResNet50's masks.

Measured in the tfprune worker (`bench.worker`). MobileNetV2 (alpha 0.35) learns the MNIST sample
resized to `size`x`size` and repeated to 3 channels, with the protocol of `bench.protocol`
(dense warm-up, cubic ramp, fine-tuning; the dense model trains the same total epochs); the
dense model and one pruned copy per target train side by side, one epoch each per round, so
that their epoch times are measured interleaved. Each model is then exported with
`tfprune.export.to_tflite` (float32 and int8). ResNet50 (weights=None, 25.6M parameters) is
pruned along a cubic ramp with a mask update at every step, driven through
`UpdatePruningStep`'s custom-loop methods, to time the updates and count the masks' bytes.
`report_section` writes this part's section of `RESULTS.md`.
"""

from __future__ import annotations

import os
import statistics
import time
import warnings

import numpy as np

from bench import protocol
from bench.machine import utc_now
from bench.messages import error_summary


def rgb_digits(x: np.ndarray, size: int) -> np.ndarray:
    """MNIST digits scaled to [0, 1], resized (bilinear) to `size`x`size` and repeated to RGB."""
    import keras

    resized = keras.ops.convert_to_numpy(keras.ops.image.resize(x[..., None], (size, size)))
    return np.repeat(resized.astype("float32"), 3, axis=-1)


class InterleavedPruning:
    """A dense model and its pruned copies, trained one epoch each per round, in turn.

    The dense model trains `warmup` epochs; each pruned copy starts from those weights, ramps to
    its target over `ramp` epochs (cubic, a mask update every `frequency` steps) and fine-tunes
    `finetune` epochs, while the dense model trains on for the same `ramp + finetune` epochs. A
    round is one epoch (one `fit` call) of every model, in an order reversed every round, so
    the epoch times of one round share the machine's state. The first round traces the pruned
    copies' training steps; `report_section` leaves it out of the time ratios.
    """

    def __init__(
        self,
        lib,
        build,
        data,
        *,
        seed: int,
        sparsities: list[float],
        warmup: int,
        ramp: int,
        finetune: int,
        frequency: int,
        eager: bool = False,
    ) -> None:
        (self.x, self.y), (self.x_test, self.y_test) = data
        self.lib = lib
        dense = protocol.initial_model(lib, build, seed, None)
        # Built before any training: seeding again later would make TensorFlow trace the dense
        # model's training step anew.
        bases = [build() for _ in sparsities]
        protocol.compile_model(lib, dense, eager)
        self.warmup_seconds = protocol.fit(dense, self.x, self.y, warmup)
        warm = dense.get_weights()
        end = protocol.ramp_end_step(len(self.x), ramp, frequency)
        self.models = {"dense": (dense, [])}
        for target, base in zip(sparsities, bases, strict=True):
            base.set_weights(warm)
            schedule = lib.PolynomialDecay(0.0, target, 0, end, frequency=frequency)
            pruned = lib.prune_low_magnitude(base, schedule)
            protocol.compile_model(lib, pruned, eager)
            self.models[f"{target:g}"] = (pruned, [lib.UpdatePruningStep()])
        self.plain: dict[str, object] = {}

    def round(self, index: int) -> dict:
        """Trains every model one epoch; returns the order, and the wall and CPU seconds of each.

        CPU seconds (of this process, all its threads) hardly change when other processes
        take cores away, which wall seconds do.
        """
        names = list(self.models) if index % 2 == 0 else list(self.models)[::-1]
        seconds, cpu_seconds = {}, {}
        with warnings.catch_warnings():
            # Every fit during the ramp stops before its end_step, as it should here.
            warnings.filterwarnings("ignore", message="Pruning target not reached")
            for name in names:
                model, callbacks = self.models[name]
                cpu = time.process_time()
                seconds[name] = protocol.fit(model, self.x, self.y, 1, callbacks)
                cpu_seconds[name] = time.process_time() - cpu
        return {"order": names, "seconds": seconds, "cpu_seconds": cpu_seconds}

    def score(self) -> dict:
        """Test accuracy, kernel sparsity and non-zeros of the dense and stripped models."""
        rows = []
        for name, (model, _) in self.models.items():
            plain = model if name == "dense" else self.lib.strip_pruning(model)
            self.plain[name] = plain
            rows.append(
                {
                    "model": name,
                    "score": protocol.score(plain, self.x_test, self.y_test, "mnist"),
                    "sparsity": protocol.kernel_sparsity(plain),
                    "nonzeros": protocol.nonzero_parameters(plain),
                }
            )
        return {"warmup_seconds": self.warmup_seconds, "models": rows}

    def export(self, name: str, quantize: str | None, path: str, calibration: int) -> dict:
        """Writes one model with `to_tflite`, verified on training rows, and scores the file.

        A file that fails verification (its outputs too far from Keras's) is written again
        without it, so that its size and accuracy are still measured; the row says why.
        """
        # Inside: these load Keras and TensorFlow, which a tfmot worker never imports.
        from bench.litert import file_score
        from tfprune.export import VerificationError, to_tflite

        start = time.perf_counter()
        row = {"model": name, "kind": quantize or "float32", "verified": True, "reason": ""}
        options = dict(quantize=quantize, representative_data=self.x[:calibration])
        try:
            try:
                result = to_tflite(self.plain[name], path, **options)
            except VerificationError as error:
                row.update(verified=False, reason=error_summary(error))
                result = to_tflite(self.plain[name], path, verify=False, **options)
        except Exception as error:  # a failed export is a result to report, not a crash
            return {**row, "bytes": None, "reason": error_summary(error)}
        check = result.verification
        return {
            **row,
            "bytes": result.bytes,
            "score": file_score(path, self.x_test, self.y_test, "mnist"),
            "normalized_error": check.normalized_error if check else None,
            "top1_agreement": check.top1_agreement if check else None,
            "seconds": time.perf_counter() - start,
        }


def drive(worker, cfg, work: str, command: str, log) -> dict:
    """MobileNetV2 pruned, timed and exported, and ResNet50's mask updates (`bench.applications`,
    tfprune only) in the benchmark's tfprune `worker`, with when, how and how long this part
    ran; `log` reports progress."""
    start = time.perf_counter()
    out = {
        "command": command,
        "date_utc": utc_now(),
        "load_average_at_start": os.getloadavg()[0],
    }
    mobilenet = out["mobilenet"] = worker("mobilenet_start", **cfg.mobilenet_options())
    log("MobileNetV2 dense warm-up done")
    warmup, ramp, finetune = cfg.mobilenet_epochs
    mobilenet["rounds"] = []
    for index in range(ramp + finetune):
        answer = worker("mobilenet_round", index=index)
        mobilenet["rounds"].append(answer)
        times = ", ".join(f"{name} {answer['seconds'][name]:.1f}s" for name in answer["order"])
        log(f"MobileNetV2 round {index + 1} of {ramp + finetune}: {times}")
    mobilenet.update(worker("mobilenet_score"))
    mobilenet["export"] = []
    for row in mobilenet["models"]:
        for kind in cfg.mobilenet_kinds:
            path = os.path.join(work, f"mobilenet_{row['model']}_{kind}.tflite")
            mobilenet["export"].append(
                worker(
                    "mobilenet_export",
                    model=row["model"],
                    kind=kind,
                    path=path,
                    calibration=cfg.calibration,
                )
            )
    log("MobileNetV2 exported")
    out["resnet50"] = worker("resnet50_masks", updates=cfg.resnet_updates)
    log("ResNet50 mask updates timed")
    out["load_average_at_end"] = os.getloadavg()[0]
    out["wall_s"] = time.perf_counter() - start
    return out


def resnet50_masks(updates: int) -> dict:
    """Times the mask updates of ResNet50 along a cubic ramp to 90%, and counts mask bytes.

    `PolynomialDecay(0, 0.9, begin_step=0, end_step=updates, frequency=1)` updates every mask at
    every step: step 0 to 0% (masks and weights written, nothing selected), step 1 from the
    dense weights, the later steps among the entries not pruned yet. Each update is timed as
    the `on_train_batch_begin` call of `UpdatePruningStep` that makes it, as in training.
    """
    import keras

    import tfprune

    model = keras.applications.ResNet50(weights=None)
    schedule = tfprune.PolynomialDecay(0.0, 0.9, begin_step=0, end_step=updates, frequency=1)
    pruned = tfprune.prune_low_magnitude(model, schedule)
    callback = tfprune.UpdatePruningStep()
    callback.set_model(pruned)
    callback.on_train_begin()
    times = []
    for step in range(updates + 1):
        start = time.perf_counter()
        callback.on_train_batch_begin(step)
        times.append(
            {
                "step": step,
                "sparsity": float(schedule(step)[1]),
                "seconds": time.perf_counter() - start,
            }
        )
    callback.on_train_end()
    pairs = [
        pair
        for layer in pruned.layers
        if isinstance(layer, tfprune.PruneLowMagnitude)
        for pair in layer.pruned_weights
    ]
    host = [(keras.ops.convert_to_numpy(w), keras.ops.convert_to_numpy(m)) for w, m in pairs]
    return {
        "parameters": model.count_params(),
        "weight_bytes": int(sum(np.asarray(w).nbytes for w in model.get_weights())),
        "pruned_entries": int(sum(w.size for w, _ in host)),
        "pruned_weight_bytes": int(sum(w.nbytes for w, _ in host)),
        "mask_bytes": int(sum(m.nbytes for _, m in host)),
        "mask_dtype": str(host[0][1].dtype),
        "sparsity": float(tfprune.sparsity_report(pruned).sparsity),
        "updates": times,
    }


def report_section(results: dict) -> list[str]:
    """The section of `RESULTS.md` on this part, from `results["applications"]`."""
    part, cfg = results["applications"], results["config"]
    mobilenet, resnet = part["mobilenet"], part["resnet50"]
    size, (warmup, ramp, finetune) = cfg["mobilenet_size"], cfg["mobilenet_epochs"]
    lines = [
        "## MobileNetV2 and ResNet50 (tfprune only)",
        "",
        f"Measured by `{part['command']}` on {part['date_utc']}; this part took "
        f"{part['wall_s'] / 60:.1f} min (1-minute load average {part['load_average_at_start']:.1f}"
        f" at its start, {part['load_average_at_end']:.1f} at its end). tfprune only: tfmot "
        "0.8.1's layer registry gives `DepthwiseConv2D` no prunable weight, and a side-by-side "
        "run would need tf_keras's own MobileNetV2 in the tfmot worker and double this part's "
        "time.",
        "",
        f"`keras.applications.MobileNetV2(alpha=0.35, input_shape=({size}, {size}, 3), "
        f"weights=None, classes=10)` ({mobilenet['parameters']:,} parameters; batch "
        "normalization momentum 0.9 instead of 0.999, since training lasts a few hundred steps) "
        f"on the first {mobilenet['train']:,} training and {mobilenet['test']:,} test digits of "
        f"the MNIST sample, resized to {size}×{size} (bilinear) and repeated to 3 channels. "
        f"Protocol as above: {warmup} dense warm-up epoch(s), the cubic ramp to the target over "
        f"{ramp} epochs (mask update every {cfg['mobilenet_frequency']} steps), {finetune} "
        f"fine-tuning epoch(s); the dense model trains the same {warmup + ramp + finetune} "
        "epochs. tfprune prunes every Conv2D, DepthwiseConv2D and Dense kernel. Files: "
        "`tfprune.export.to_tflite(model, path, quantize=None | 'int8')` of the dense and the "
        f"stripped models (int8 calibrated on {cfg['calibration']} training digits, on which "
        "each file is also checked against Keras); 'file accuracy' is the file's in LiteRT on "
        "the test digits, one row per invoke.",
        "",
        *_mobilenet_table(mobilenet, cfg["mobilenet_kinds"]),
        "",
        *_time_table(mobilenet, ramp, cfg.get("mobilenet_eager", False)),
        "",
        *_resnet_table(resnet),
        "",
    ]
    return lines


def _mobilenet_table(mobilenet: dict, kinds: list[str]) -> list[str]:
    files = {(row["model"], row["kind"]): row for row in mobilenet["export"]}
    header = "| model | accuracy | change from dense | kernel sparsity |"
    rule = "| --- | ---: | ---: | ---: |"
    for kind in kinds:
        header += f" {kind} bytes | × dense |"
        rule += " ---: | ---: |"
    lines = [f"{header} file accuracy {' / '.join(kinds)} |", f"{rule} ---: |"]
    notes = []
    dense = mobilenet["models"][0]
    for row in mobilenet["models"]:
        name = "dense" if row["model"] == "dense" else f"pruned {float(row['model']):.0%}"
        change = "" if row["model"] == "dense" else f"{row['score'] - dense['score']:+.3f}"
        cells = [name, f"{row['score']:.3f}", change, f"{row['sparsity']:.4f}"]
        scores = []
        for kind in kinds:
            file, reference = files[(row["model"], kind)], files[("dense", kind)]
            if file["bytes"] is None:
                cells += [f"**failed**: {file['reason'][:120]}", ""]
                scores.append("-")
                continue
            mark = ""
            if not file["verified"]:
                notes.append(f"{name}, {kind}: {file['reason']}")
                mark = f" ({len(notes)})"
            ratio = file["bytes"] / reference["bytes"] if reference["bytes"] else float("nan")
            cells += [f"{file['bytes']:,}{mark}", f"{ratio:.2f}"]
            scores.append(f"{file['score']:.3f}")
        lines.append(f"| {' | '.join(cells)} | {' / '.join(scores)} |")
    if notes:
        lines += [
            "",
            "Files marked (n) failed `to_tflite`'s verification against Keras and were written "
            "again with `verify=False` to measure them: "
            + "; ".join(f"({i}) {note.rstrip('.')}" for i, note in enumerate(notes, 1))
            + ".",
        ]
    return lines


def _time_table(mobilenet: dict, ramp: int, eager: bool) -> list[str]:
    # The first round traces the pruned models' training steps: it is left out when it can be.
    first = 1 if len(mobilenet["rounds"]) > 1 else 0
    rounds = mobilenet["rounds"][first:]
    left_out = ", the first round (which traces the pruned models' training steps) left out"
    lines = [
        "Training time: every round trains the dense model and each pruned copy one epoch (one "
        f"`fit` call each) in turn, the order reversed every round. The first {ramp} rounds are "
        "the ramp's epochs, with its mask updates; the rest fine-tune with frozen masks. "
        "'median ratio' is the median over the timed rounds of the per-round ratio of wall "
        "times pruned / dense"
        + (left_out if first else "")
        + "; s/epoch are medians over the same rounds. The CPU-time ratio divides the worker "
        "process's CPU seconds instead, which other processes on the machine hardly change. "
        "Goal: at most 1.05.",
        "",
        "| target | dense s/epoch | pruned s/epoch | median ratio | median, frozen masks | "
        "median CPU-time ratio | ratios, ramp | ratios, frozen masks |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    dense = statistics.median(r["seconds"]["dense"] for r in rounds)
    verdicts = []
    for name in mobilenet["rounds"][0]["seconds"]:
        if name == "dense":
            continue
        ratios = [r["seconds"][name] / r["seconds"]["dense"] for r in rounds]
        cpu = [r["cpu_seconds"][name] / r["cpu_seconds"]["dense"] for r in rounds]
        ramping, frozen = ratios[: max(0, ramp - first)], ratios[max(0, ramp - first) :]
        median = statistics.median(ratios)
        verdicts.append(
            f"{float(name):.0%} {'meets' if median <= 1.05 else 'misses'} it by wall time "
            f"and {'meets' if statistics.median(cpu) <= 1.05 else 'misses'} it by CPU time"
        )
        lines.append(
            f"| {float(name):.0%} | {dense:.2f} | "
            f"{statistics.median(r['seconds'][name] for r in rounds):.2f} | **{median:.2f}** | "
            + (f"{statistics.median(frozen):.2f}" if frozen else "-")
            + f" | {statistics.median(cpu):.2f} | {' '.join(f'{x:.2f}' for x in ramping)} | "
            f"{' '.join(f'{x:.2f}' for x in frozen)} |"
        )
    if eager:
        return [
            *lines,
            "",
            "These models trained eagerly (`mobilenet_eager`, the test preset): the times say "
            "nothing about traced training and are not held against the goal.",
        ]
    return [*lines, "", f"Against the goal of 1.05 (medians): {'; '.join(verdicts)}."]


def _resnet_table(resnet: dict) -> list[str]:
    updates = resnet["updates"]
    later = [u["seconds"] for u in updates[2:]]
    spread = f" ({min(later):.2f}–{max(later):.2f})" if len(later) > 1 else ""
    return [
        f"ResNet50: `keras.applications.ResNet50(weights=None)`, {resnet['parameters']:,} "
        f"parameters, {resnet['pruned_entries']:,} of them in the kernels tfprune prunes by "
        "default, along `PolynomialDecay(0, 0.9, begin_step=0, "
        f"end_step={len(updates) - 1}, frequency=1)`: a mask update at every step, each timed "
        "as the `UpdatePruningStep.on_train_batch_begin` call that makes it (the callback "
        "driven as in a custom training loop, with no training in between). Step 0 updates to "
        "0% (masks and weights written, nothing selected), step 1 selects among all the dense "
        "weights, later steps only among the entries not pruned yet. Masks are "
        f"`{resnet['mask_dtype']}` variables; sparsity reached {resnet['sparsity']:.4f}.",
        "",
        "| pruned weights | mask bytes | pruned weights' bytes | masks / weights | "
        f"step 0 (0%) s | step 1 ({updates[1]['sparsity']:.0%}) s | "
        f"later steps (to {updates[-1]['sparsity']:.0%}), median s |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {resnet['pruned_entries']:,} | {resnet['mask_bytes']:,} | "
        f"{resnet['pruned_weight_bytes']:,} | "
        f"{resnet['mask_bytes'] / resnet['pruned_weight_bytes']:.2f} | "
        f"{updates[0]['seconds']:.2f} | {updates[1]['seconds']:.2f} | "
        + (f"{statistics.median(later):.2f}{spread} |" if later else "- |"),
    ]
