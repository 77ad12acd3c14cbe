"""A benchmark worker process: `python -m bench.worker tfprune|tfmot`.

Reads one JSON job per line on stdin and answers one line `@@bench@@ {json}` on stdout (other
output, such as TensorFlow's, is ignored by the driver). One worker per library lives for the
whole benchmark, so the driver can interleave the libraries job by job without paying process
start-up each time. The tfmot worker must be started with `TF_USE_LEGACY_KERAS=1`; it imports
`tf_keras` and tensorflow-model-optimization, and never tfprune or Keras 3.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from types import SimpleNamespace

import numpy as np

from bench import applications, channels, models, oneshot, patterns, protocol
from bench.corpus import load_corpus
from bench.messages import answer, error_summary


def tfprune_library() -> SimpleNamespace:
    """The adapter for tfprune on Keras 3."""
    import keras

    import tfprune

    return SimpleNamespace(
        name="tfprune",
        keras=keras,
        PolynomialDecay=tfprune.PolynomialDecay,
        ConstantSparsity=tfprune.ConstantSparsity,
        prune_low_magnitude=tfprune.prune_low_magnitude,
        UpdatePruningStep=tfprune.UpdatePruningStep,
        strip_pruning=tfprune.strip_pruning,
    )


def tfmot_library() -> SimpleNamespace:
    """The adapter for tensorflow-model-optimization on tf_keras (Keras 2)."""
    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        raise RuntimeError("The tfmot worker needs TF_USE_LEGACY_KERAS=1 in its environment.")
    import tensorflow_model_optimization as tfmot
    import tf_keras

    sparsity = tfmot.sparsity.keras
    return SimpleNamespace(
        name="tfmot",
        keras=tf_keras,
        PolynomialDecay=sparsity.PolynomialDecay,
        ConstantSparsity=sparsity.ConstantSparsity,
        prune_low_magnitude=sparsity.prune_low_magnitude,
        UpdatePruningStep=sparsity.UpdatePruningStep,
        strip_pruning=sparsity.strip_pruning,
    )


class Worker:
    """Holds the data, the trained models and the epoch timers between jobs."""

    def __init__(self, library: str) -> None:
        self.lib = tfprune_library() if library == "tfprune" else tfmot_library()
        self.data: dict[str, tuple] = {}
        self.vocab = 0
        self.stripped: dict[tuple[str, float], object] = {}
        self.timers: dict[str, protocol.EpochTimer] = {}
        self.mask_updates: dict[int, object] = {}
        self.lstm_units = 64
        self.mobilenet = None

    def build(self, model: str, width: float = 1.0):
        k = self.lib.keras
        if model == "lstm":
            length = self.data["lstm"][0][0].shape[1]
            units = self.lstm_units
            return lambda: models.lstm_lm(k, self.vocab, length, units, units)
        return lambda: getattr(models, model)(k, width)

    def job_prepare(
        self,
        path: str,
        mnist_train: int,
        mnist_test: int,
        lstm_vocab: int,
        lstm_length: int,
        lstm_train: int | None,
    ) -> dict:
        """Writes the benchmark data to `path` (tfprune worker only: it reads the MNIST sample).

        MNIST pixels are scaled to [0, 1] here, since tfmot cannot wrap a `Rescaling` layer.
        """
        import tfprune

        (x, y), (xt, yt) = tfprune.datasets.load_mnist_sample()
        (a, b), (c, d), vocab = load_corpus(lstm_vocab, lstm_length)
        np.savez(
            path,
            x_train=(x[:mnist_train] / np.float32(255)).astype("float32"),
            y_train=y[:mnist_train],
            x_test=(xt[:mnist_test] / np.float32(255)).astype("float32"),
            y_test=yt[:mnist_test],
            lm_x_train=a[:lstm_train],
            lm_y_train=b[:lstm_train],
            lm_x_test=c,
            lm_y_test=d,
            vocab=vocab,
        )
        return {
            "mnist": [len(x[:mnist_train]), len(xt[:mnist_test])],
            "lm": [len(a[:lstm_train]), len(c)],
            "vocab": vocab,
        }

    def job_setup(self, data_path: str, lstm_units: int) -> dict:
        with np.load(data_path) as d:
            mnist = ((d["x_train"], d["y_train"]), (d["x_test"], d["y_test"]))
            lm = ((d["lm_x_train"], d["lm_y_train"]), (d["lm_x_test"], d["lm_y_test"]))
            self.vocab = int(d["vocab"])
        self.data = {"lenet": mnist, "cnn": mnist, "lstm": lm}
        self.lstm_units = lstm_units
        k = self.lib.keras
        return {"library": self.lib.name, "keras": k.__version__, "pid": os.getpid()}

    def job_init(self, model: str, seed: int, path: str) -> dict:
        """Writes the initial weights of `model` for `seed` to `path`, for both libraries."""
        protocol.initial_model(self.lib, self.build(model), seed, path)
        return {"path": path}

    def job_prune(self, model: str, keep: list[float] = (), width: float = 1.0, **options) -> dict:
        task = "lm" if model == "lstm" else "mnist"
        summary, stripped = protocol.prune_run(
            self.lib, self.build(model, width), self.data[model], task=task, **options
        )
        for target in keep:
            self.stripped[(model, target)] = stripped[target]
        return summary

    def job_dense(self, model: str, width: float, seed: int, epochs: int) -> dict:
        """Trains a dense model at `width` for `epochs` epochs; returns score and non-zeros."""
        (x, y), (xt, yt) = self.data[model]
        plain = protocol.initial_model(self.lib, self.build(model, width), seed, None)
        protocol.compile_model(self.lib, plain)
        seconds = protocol.fit(plain, x, y, epochs)
        return {
            "score": protocol.score(plain, xt, yt, "mnist"),
            "nonzeros": protocol.nonzero_parameters(plain),
            "seconds": seconds,
        }

    def job_time(self, model: str, index: int, repeats: int) -> dict:
        if model not in self.timers:
            self.timers[model] = protocol.EpochTimer(
                self.lib, self.build(model), self.data[model], repeats
            )
        dense, pruned = self.timers[model].repeat(index)
        return {"dense": dense, "pruned": pruned}

    def job_export(self, model: str, target: float, out_dir: str, calibration: int) -> dict:
        """Writes the float32 and int8 files of the kept model; a failed conversion is reported."""
        x = self.data[model][0][0][:calibration]
        prefix = os.path.join(out_dir, f"{self.lib.name}_{model}")
        return self.write_files(
            self.stripped[(model, target)], prefix, EXPORT_KINDS[self.lib.name], x
        )

    def write_files(self, plain, prefix: str, kinds, x, sparse: bool = True) -> dict:
        """Writes `plain` as each of `kinds` ("float32", "int8", with " speed" for tfprune's
        `prefer="speed"`) to `{prefix}_{kind}.tflite`: tfprune's `to_tflite` (with `sparse`),
        or tfmot's documented converter route. A failed conversion is reported, not raised."""
        paths, seconds, errors = {}, {}, {}
        for kind in kinds:
            path = f"{prefix}_{kind.replace(' ', '_')}.tflite"
            int8 = kind.startswith("int8")
            start = time.perf_counter()
            try:
                if self.lib.name == "tfprune":
                    from tfprune.export import to_tflite

                    to_tflite(
                        plain,
                        path,
                        quantize="int8" if int8 else None,
                        representative_data=x if int8 else None,
                        prefer="speed" if kind.endswith("speed") else "size",
                        sparse=sparse,
                    )
                else:
                    data = _tfmot_convert(plain, x if int8 else None)
                    with open(path, "wb") as f:
                        f.write(data)
            except Exception as error:  # the converters raise many unrelated classes
                errors[kind] = error_summary(error)
                continue
            paths[kind] = path
            seconds[kind] = time.perf_counter() - start
        return {"paths": paths, "seconds": seconds, "errors": errors}

    def job_pattern(
        self,
        spec: str,
        seed: int,
        init_path: str,
        out_dir: str | None,
        calibration: int,
        **epochs,
    ) -> dict:
        """One run of `bench.patterns`; its float32 and int8 files when `out_dir` is given."""

        summary, plain = patterns.train(self.lib, self.data["lenet"], spec, seed, init_path, epochs)
        files = {"paths": {}, "errors": {}}
        if out_dir:
            name = spec.replace(" ", "_").replace(":", "by").replace("@", "_")
            prefix = os.path.join(out_dir, f"{self.lib.name}_pattern_{name}")
            x = self.data["lenet"][0][0][:calibration]
            files = self.write_files(plain, prefix, EXPORT_KINDS[self.lib.name], x)
        return {"summary": summary, **files}

    def job_pattern_dense(
        self, seed: int, init_path: str, out_dir: str | None, calibration: int, **epochs
    ) -> dict:
        """The dense reference of `bench.patterns`, and its converter files (no sparsity)."""

        summary, model = patterns.train_dense(self.lib, self.data["lenet"], seed, init_path, epochs)
        files = {"paths": {}, "errors": {}}
        if out_dir:
            x = self.data["lenet"][0][0][:calibration]
            prefix = os.path.join(out_dir, f"dense_pattern_{seed}")
            files = self.write_files(model, prefix, ("float32", "int8"), x, sparse=False)
        return {"summary": summary, **files}

    def job_oneshot(self, model: str, seed: int, **options) -> dict:
        """One model of `bench.oneshot`: trained, then pruned one-shot by each method."""

        data = self.data["lstm" if model.startswith("gpt2") else model]
        task = oneshot.Task(self.lib, model, data, self.vocab, self.lstm_units)
        return oneshot.run(self.lib, task, seed, **options)

    def job_channels(self, model: str, size: int, rows: int, **options) -> dict:
        """One model and seed of `bench.channels` (MobileNetV2 on resized RGB digits)."""

        data = self.data["lenet" if model == "mobilenet" else model]
        if model == "mobilenet":
            data = [(applications.rgb_digits(x[:rows], size), y[:rows]) for x, y in data]
        return channels.run(self.lib, model, data, **options)

    def job_mask(self, size: int) -> dict:
        """Times one mask update of a `size` x `size` weight at 90% (prepared on first call)."""
        if size not in self.mask_updates:
            weight = np.random.default_rng(0).standard_normal((size, size)).astype("float32")
            prepare = _tfprune_mask_update if self.lib.name == "tfprune" else _tfmot_mask_update
            self.mask_updates[size] = prepare(weight)
        update = self.mask_updates[size]
        start = time.perf_counter()
        update()
        return {"seconds": time.perf_counter() - start}

    def job_mobilenet_start(self, size: int, train: int, test: int, **options) -> dict:
        """Builds the MobileNetV2 runs of `bench.applications` and trains the dense warm-up."""

        (x, y), (xt, yt) = self.data["lenet"]
        data = (
            (applications.rgb_digits(x[:train], size), y[:train]),
            (applications.rgb_digits(xt[:test], size), yt[:test]),
        )
        self.mobilenet = applications.InterleavedPruning(
            self.lib, lambda: models.mobilenet_v2(self.lib.keras, size), data, seed=0, **options
        )
        dense = self.mobilenet.models["dense"][0]
        return {
            "train": len(data[0][1]),
            "test": len(data[1][1]),
            "parameters": dense.count_params(),
        }

    def job_mobilenet_round(self, index: int) -> dict:
        return self.mobilenet.round(index)

    def job_mobilenet_score(self) -> dict:
        return self.mobilenet.score()

    def job_mobilenet_export(self, model: str, kind: str, path: str, calibration: int) -> dict:
        return self.mobilenet.export(model, None if kind == "float32" else kind, path, calibration)

    def job_resnet50_masks(self, updates: int) -> dict:
        self.mobilenet = None  # its models and images are done with: ResNet50 needs the memory
        return applications.resnet50_masks(updates)


# The files each library writes per model: tfprune's two layout preferences, tfmot's one route.
EXPORT_KINDS = {
    "tfprune": ("float32", "float32 speed", "int8", "int8 speed"),
    "tfmot": ("float32", "int8"),
}


def _tfmot_convert(model, calibration) -> bytes:
    """tfmot's documented route: strip_pruning, then the converter's EXPERIMENTAL_SPARSITY.

    A model with recurrent layers follows TensorFlow's guide for Keras LSTMs instead: a concrete
    function at batch size 1, which the converter turns into its fused sequence-LSTM operator
    (`from_keras_model`, at any batch, fails with "Lowering tensor list ops is failed").
    """
    import tensorflow as tf

    recurrent = any(isinstance(layer, tf.keras.layers.RNN) for layer in model.layers)
    if recurrent:
        spec = tf.TensorSpec([1, *model.inputs[0].shape[1:]], model.inputs[0].dtype)
        function = tf.function(lambda x: model(x)).get_concrete_function(spec)
        converter = tf.lite.TFLiteConverter.from_concrete_functions([function], model)
    else:
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if calibration is None:
        converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    else:
        converter.optimizations = [tf.lite.Optimize.DEFAULT, tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
        converter.representative_dataset = lambda: ([row[None]] for row in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return bytes(converter.convert())


def _tfprune_mask_update(weight: np.ndarray):
    """Returns one tfprune mask update, warmed up: `magnitude_mask` of a Keras variable at 90%."""
    import keras

    from tfprune.masks.magnitude import magnitude_mask

    variable = keras.Variable(weight)

    def update():
        return magnitude_mask(variable, 0.9)

    update()
    return update


def _tfmot_mask_update(weight: np.ndarray):
    """Returns one tfmot mask update, warmed up: `Pruning.conditional_mask_update` of one weight.

    This is the op that tfmot's wrapper runs inside the training step at an update step (top-k
    over all magnitudes, then the mask and threshold assignments), compiled as a tf.function;
    reading the mask back makes the timing include the work.
    """
    import tensorflow as tf
    from tensorflow_model_optimization.python.core.sparsity.keras import (
        pruning_impl,
        pruning_schedule,
    )

    variable = tf.Variable(weight)
    mask = tf.Variable(tf.ones_like(weight))
    threshold = tf.Variable(0.0)
    step = tf.Variable(0, dtype=tf.int64)
    schedule = pruning_schedule.ConstantSparsity(0.9, begin_step=0, frequency=1)
    pruning = pruning_impl.Pruning(
        lambda: step, [(variable, mask, threshold)], schedule, (1, 1), "AVG"
    )
    compiled = tf.function(pruning.conditional_mask_update)

    def update():
        compiled()
        return mask.numpy()

    update()
    return update


def main() -> None:
    """Serves jobs until stdin closes."""
    worker = Worker(sys.argv[1])
    for line in sys.stdin:
        job = json.loads(line)
        kind = job.pop("job")
        try:
            reply = {"ok": True, "result": getattr(worker, f"job_{kind}")(**job)}
        except Exception:  # the driver reports the failure with its traceback
            reply = {"ok": False, "error": traceback.format_exc()}
        answer(reply)


if __name__ == "__main__":
    main()
