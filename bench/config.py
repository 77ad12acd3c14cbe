"""The benchmark presets: tiny (`make test`: every part, one part at a time, in the least time
that still runs each code path), smoke (`make test-full`: one whole run), quick (`make bench`)
and full (`make bench-full`)."""

from __future__ import annotations

import dataclasses

TARGETS = (0.5, 0.75, 0.9, 0.95)


@dataclasses.dataclass(frozen=True)
class Config:
    """Every size, epoch count, seed and repeat count of one benchmark run.

    `parallel` runs the two workers' jobs at the same time (smoke runs only: it spoils
    timings). Epochs are per phase of the protocol in `bench.protocol`: dense warm-up, cubic ramp,
    fine-tuning with frozen masks; `frequency` is the mask-update interval in steps. The
    `mobilenet_*` and `resnet_*` settings are those of `bench.applications` (tfprune only):
    MobileNetV2 on `mobilenet_train` digits resized to `mobilenet_size` pixels, exported as
    `mobilenet_kinds` (trained eagerly when `mobilenet_eager`: no traced training step, so no
    meaningful epoch times), and ResNet50's ramp to 90% over `resnet_updates` steps, one timed mask
    update at each step. The `pattern_*` settings are those of `bench.patterns`: its runs
    ("PATTERN@SPARSITY", " fc1" to prune only the first layer), seeds, epochs and update interval.
    The `oneshot_*` settings are those of `bench.oneshot`: its models, seeds, dense training
    epochs (MNIST models, language models; the larger GPT-2 its own), targets, calibration
    rows and fine-tuning epochs.
    The `llm_*` settings are those of `bench.llm` (`--only llm`): targets (sparsities and N:M
    patterns), tokens per window, calibration and test windows, held-out articles, batch size
    and the layers pruned.
    The `channels_*` settings are those of `bench.channels`: its models, seeds, target shares
    of channels, epochs (MobileNetV2 its own), update interval, MobileNetV2 input size and rows,
    and `round_to`.
    """

    name: str
    mnist_train: int = 4000
    mnist_test: int = 1000
    mnist_epochs: tuple[int, int, int] = (2, 3, 1)
    mnist_frequency: int = 10
    mnist_targets: tuple[float, ...] = TARGETS
    lstm_vocab: int = 1000
    lstm_units: int = 64
    lstm_length: int = 20
    lstm_train: int | None = None
    lstm_epochs: tuple[int, int, int] = (1, 1, 1)
    lstm_frequency: int = 5
    lstm_targets: tuple[float, ...] = TARGETS
    accuracy_models: tuple[str, ...] = ("lenet", "cnn", "lstm")
    library_seeds: tuple[int, ...] = (0, 1, 2)
    lstm_seeds: tuple[int, ...] = (0,)
    paper_seeds: tuple[int, ...] = (0, 1, 2)
    paper_models: tuple[str, ...] = ("lenet", "cnn")
    paper_targets: tuple[float, ...] = (0.5, 0.75, 0.9)
    time_models: tuple[str, ...] = ("lenet", "cnn", "lstm")
    time_repeats: int = 3
    export_models: tuple[str, ...] = ("lenet", "cnn", "lstm")
    export_target: float = 0.9
    calibration: int = 256
    latency_repeats: int = 300
    mask_size: int = 4096
    mask_repeats: int = 3
    mobilenet_size: int = 96
    mobilenet_train: int = 1000
    mobilenet_test: int = 1000
    mobilenet_epochs: tuple[int, int, int] = (3, 3, 4)
    mobilenet_frequency: int = 4
    mobilenet_targets: tuple[float, ...] = (0.75, 0.9)
    mobilenet_kinds: tuple[str, ...] = ("float32", "int8")
    mobilenet_eager: bool = False
    resnet_updates: int = 8
    pattern_runs: tuple[str, ...] = (
        "unstructured@0.5",
        "blocks 4x1@0.5",
        "blocks 16x1@0.5",
        "2:4",
        "unstructured@0.75",
        "blocks 4x1@0.75",
        "blocks 16x1@0.75",
        "unstructured@0.9",
        "blocks 4x1@0.9",
        "blocks 16x1@0.9",
        "blocks 16x1@0.9 fc1",
        "blocks 4x1@0.9 fc1 fc2 logits",
    )
    pattern_seeds: tuple[int, ...] = (0,)
    pattern_epochs: tuple[int, int, int] = (2, 3, 1)
    pattern_frequency: int = 10
    oneshot_models: tuple[str, ...] = ("lenet", "cnn", "lstm", "gpt2", "gpt2_4x256")
    oneshot_seeds: tuple[int, ...] = (0,)
    oneshot_epochs: tuple[int, int] = (6, 3)
    oneshot_large_epochs: int = 8
    oneshot_targets: tuple = (0.5, 0.7, 0.9, "2:4")
    oneshot_calibration: int = 256
    oneshot_finetune: int = 1
    channels_models: tuple[str, ...] = ("lenet", "cnn", "mobilenet")
    channels_seeds: tuple[int, ...] = (0,)
    channels_targets: tuple[float, ...] = (0.25, 0.5, 0.75)
    channels_epochs: tuple[int, int, int] = (2, 3, 2)
    channels_frequency: int = 10
    channels_mobilenet_size: int = 64
    channels_mobilenet_rows: int = 2000
    channels_mobilenet_epochs: tuple[int, int, int] = (4, 6, 4)
    channels_round_to: int = 4
    llm_targets: tuple[str, ...] = ("0.5", "0.6", "0.7", "2:4", "4:8")
    llm_owl_targets: tuple[str, ...] = ("0.7",)
    llm_length: int = 128
    llm_calibration: int = 128
    llm_test_windows: int = 16
    llm_test_articles: int = 30
    llm_batch_size: int = 8
    llm_layers: tuple[str, ...] = ("transformer_layer_*",)
    parallel: bool = False

    def seeds(self, model: str) -> tuple[int, ...]:
        """Seeds of the library comparison runs of `model` (the LSTM is the costly one)."""
        return self.lstm_seeds if model == "lstm" else self.library_seeds

    def targets(self, model: str) -> list[float]:
        """Target sparsities of the accuracy runs of `model`."""
        return list(self.lstm_targets if model == "lstm" else self.mnist_targets)

    def epochs(self, model: str) -> dict:
        """Protocol options (`warmup`, `ramp`, `finetune`, `frequency`) for `model`."""
        lstm = model == "lstm"
        warmup, ramp, finetune = self.lstm_epochs if lstm else self.mnist_epochs
        frequency = self.lstm_frequency if lstm else self.mnist_frequency
        return {"warmup": warmup, "ramp": ramp, "finetune": finetune, "frequency": frequency}

    def data_options(self) -> dict:
        """Arguments of the worker's `prepare` job."""
        return {
            "mnist_train": self.mnist_train,
            "mnist_test": self.mnist_test,
            "lstm_vocab": self.lstm_vocab,
            "lstm_length": self.lstm_length,
            "lstm_train": self.lstm_train,
        }

    def oneshot_options(self, model: str) -> dict:
        """Arguments of the worker's `oneshot` job for `model`."""
        mnist, lm = self.oneshot_epochs
        return {
            "model": model,
            "epochs": {"gpt2_4x256": self.oneshot_large_epochs, "lstm": lm, "gpt2": lm}.get(
                model, mnist
            ),
            "targets": list(self.oneshot_targets),
            "calibration": self.oneshot_calibration,
            "finetune": self.oneshot_finetune,
        }

    def channels_options(self, model: str, seed: int, out_dir: str) -> dict:
        """Arguments of the worker's `channels` job for `model`."""
        warmup, ramp, finetune = (
            self.channels_mobilenet_epochs if model == "mobilenet" else self.channels_epochs
        )
        return {
            "model": model,
            "seed": seed,
            "size": self.channels_mobilenet_size,
            "rows": self.channels_mobilenet_rows,
            "targets": list(self.channels_targets),
            "epochs": {
                "warmup": warmup,
                "ramp": ramp,
                "finetune": finetune,
                "frequency": self.channels_frequency,
                "round_to": self.channels_round_to,
            },
            "calibration": self.calibration,
            "out_dir": out_dir,
        }

    def pattern_options(self) -> dict:
        """Protocol options of the `bench.patterns` runs."""
        warmup, ramp, finetune = self.pattern_epochs
        return {
            "warmup": warmup,
            "ramp": ramp,
            "finetune": finetune,
            "frequency": self.pattern_frequency,
        }

    def mobilenet_options(self) -> dict:
        """Arguments of the worker's `mobilenet_start` job."""
        warmup, ramp, finetune = self.mobilenet_epochs
        return {
            "size": self.mobilenet_size,
            "train": self.mobilenet_train,
            "test": self.mobilenet_test,
            "sparsities": list(self.mobilenet_targets),
            "warmup": warmup,
            "ramp": ramp,
            "finetune": finetune,
            "frequency": self.mobilenet_frequency,
            "eager": self.mobilenet_eager,
        }

    def llm_options(self) -> dict:
        """Options of each `bench.llm` run."""
        return {
            "length": self.llm_length,
            "calibration": self.llm_calibration,
            "test_windows": self.llm_test_windows,
            "test_articles": self.llm_test_articles,
            "batch_size": self.llm_batch_size,
            "layers": list(self.llm_layers),
        }

    def as_dict(self) -> dict:
        """The preset as plain JSON-ready values."""
        return dataclasses.asdict(self)


PRESETS = {
    "smoke": Config(
        name="smoke",
        mnist_train=512,
        mnist_test=256,
        mnist_epochs=(1, 1, 0),
        mnist_frequency=2,
        mnist_targets=(0.9,),
        lstm_vocab=200,
        lstm_units=16,
        lstm_train=128,
        lstm_epochs=(0, 1, 0),
        lstm_frequency=1,
        lstm_targets=(0.9,),
        accuracy_models=("lenet", "cnn", "lstm"),
        paper_seeds=(0,),
        paper_models=("cnn",),
        paper_targets=(0.9,),
        time_models=("lenet",),
        time_repeats=1,
        export_models=("lenet", "lstm"),
        calibration=32,
        latency_repeats=10,
        library_seeds=(0,),
        mask_size=256,
        mask_repeats=1,
        mobilenet_size=32,
        mobilenet_train=128,
        mobilenet_test=64,
        mobilenet_epochs=(1, 1, 1),
        mobilenet_frequency=1,
        mobilenet_targets=(0.9,),
        mobilenet_kinds=("float32",),
        resnet_updates=2,
        pattern_runs=("blocks 16x1@0.9", "2:4"),
        pattern_epochs=(1, 1, 0),
        pattern_frequency=2,
        oneshot_models=("lenet",),
        oneshot_epochs=(1, 1),
        oneshot_targets=(0.5, "2:4"),
        oneshot_calibration=32,
        channels_models=("lenet",),
        channels_targets=(0.5,),
        channels_epochs=(1, 1, 0),
        channels_frequency=2,
        llm_targets=("2:4",),
        llm_calibration=2,
        llm_test_windows=2,
        llm_layers=("transformer_layer_0",),
        parallel=True,
    ),
    "quick": Config(name="quick"),
    "full": Config(
        name="full",
        mnist_epochs=(4, 6, 4),
        mnist_frequency=25,
        lstm_vocab=2000,
        lstm_units=128,
        lstm_epochs=(2, 3, 2),
        lstm_frequency=10,
        library_seeds=(0, 1, 2, 3, 4),
        lstm_seeds=(0, 1),
        paper_seeds=(0, 1, 2, 3, 4),
        time_repeats=7,
        latency_repeats=2000,
        mask_repeats=7,
        mobilenet_train=4000,
        mobilenet_epochs=(4, 6, 3),
        mobilenet_frequency=10,
        resnet_updates=16,
        pattern_seeds=(0, 1, 2),
        pattern_epochs=(4, 6, 4),
        pattern_frequency=25,
        oneshot_seeds=(0, 1, 2),
        oneshot_epochs=(10, 6),
        oneshot_large_epochs=12,
        channels_seeds=(0, 1, 2),
        channels_epochs=(4, 6, 4),
        channels_frequency=25,
        channels_mobilenet_size=96,
        channels_mobilenet_rows=4000,
    ),
}
# The cheapest check of each part, run one part at a time (`--only`) by `make test`: the smoke
# settings without the language model in the accuracy and export rows (its export is tested
# on its own in tests/test_export_recurrent.py); one pattern, the (16, 1) blocks, the layout
# LiteRT needs a child process for (2:4 runs in tests/test_patterns.py); one round of
# MobileNetV2 (two steps: its ramp ends at step 1), trained eagerly (tracing its training
# steps, dense and pruned, takes most of a minute; tests/test_zoo.py traces them under
# `--full`), with no file (its export is tested in tests/test_zoo.py and
# tests/test_channels.py).
PRESETS["tiny"] = dataclasses.replace(
    PRESETS["smoke"],
    name="tiny",
    accuracy_models=("lenet", "cnn"),
    export_models=("lenet",),
    pattern_runs=("blocks 16x1@0.9",),
    mobilenet_test=32,
    mobilenet_epochs=(1, 1, 0),
    mobilenet_kinds=(),
    mobilenet_eager=True,
    resnet_updates=1,
)
