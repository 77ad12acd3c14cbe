"""The benchmark's code paths: a smoke run of `python -m bench` with both libraries, and its parts.

The smoke run needs the bench extra (tensorflow-model-optimization, tf-keras, gensim): it
compares against tfmot in a child process and fails, rather than skips, when tfmot is missing.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from bench import corpus, models, protocol
from bench.worker import EXPORT_KINDS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# The report's heading of each part that `--only` runs.
HEADINGS = {
    "core": ("Training time", "Accuracy after pruning", "Exported LiteRT", "(a)", "(b)"),
    "patterns": ("Sparsity patterns",),
    "oneshot": ("One-shot pruning",),
    "channels": ("Structured pruning",),
    "mobilenet": ("MobileNetV2 and ResNet50",),
}


def _bench(*arguments: str) -> None:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    run = subprocess.run(
        [sys.executable, "-m", "bench", *arguments],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-4000:]


@pytest.mark.full
def test_smoke_run_trains_and_exports_with_both_libraries_and_writes_the_report(tmp_path):
    _bench("--smoke", "--out", str(tmp_path))
    results = json.loads((tmp_path / "results.json").read_text())
    _check_core(results)
    _check_applications(results["applications"], results["config"])
    _check_patterns(results["patterns"], results["config"])
    _check_oneshot(results["oneshot"])
    _check_channels(results["channels"])
    report = (tmp_path / "RESULTS.md").read_text()
    for heading in (h for headings in HEADINGS.values() for h in headings):
        assert heading in report
    plots = ("accuracy_vs_sparsity.png", "sparse_vs_dense.png", "training_time.png")
    for name in (*plots, "channels_accuracy_latency.png"):
        assert (tmp_path / name).stat().st_size > 0


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The core part of the cheapest preset, which the other parts merge into."""
    out = tmp_path_factory.mktemp("tiny")
    _bench("--tiny", "--only", "core", "--out", str(out))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("part", list(HEADINGS))
def test_each_part_runs_alone_and_merges_into_the_report(tiny_run, part):
    if part != "core":
        _bench("--tiny", "--only", part, "--out", str(tiny_run))
    results = json.loads((tiny_run / "results.json").read_text())
    assert results["config"]["name"] == "tiny"
    if part == "core":
        _check_core(results)
        plots = ("accuracy_vs_sparsity.png", "sparse_vs_dense.png", "training_time.png")
        assert all((tiny_run / name).stat().st_size > 0 for name in plots)
    elif part == "mobilenet":
        _check_applications(results["applications"], results["config"])
    elif part == "patterns":
        _check_patterns(results["patterns"], results["config"])
    else:
        {"oneshot": _check_oneshot, "channels": _check_channels}[part](results[part])
    report = (tiny_run / "RESULTS.md").read_text()
    assert all(heading in report for heading in HEADINGS[part])


def _check_core(results):
    """Both libraries trained, pruned to 90% and exported every model the preset names."""
    cfg = results["config"]
    assert {s["library"] for s in results["setup"].values()} == {"tfprune", "tfmot"}
    for model in cfg["accuracy_models"]:
        for lib in ("tfprune", "tfmot"):
            (summary,) = results["accuracy"][model][lib]
            score = summary["runs"][0]["score"]
            assert 0.0 <= score <= 1.0 if model != "lstm" else 1.0 < score < 1e4
            assert summary["runs"][0]["sparsity"] == pytest.approx(0.9, abs=1e-3)
    exported = {(row["model"], row["library"], row["kind"]) for row in results["export"].values()}
    assert exported == {
        (model, lib, kind)
        for model in cfg["export_models"]
        for lib in ("tfprune", "tfmot")
        for kind in EXPORT_KINDS[lib]
    }
    # Both libraries' float32 files load and score; tfprune's int8 files too (tfmot's int8
    # LeNet file is the one the XNNPACK delegate refuses).
    for key, row in results["export"].items():
        if key.startswith("lenet/tfmot/int8"):
            assert not row["loads"] and "delegate" in row["reason"]
        elif key.endswith("float32") or key.startswith(("lenet/tfprune", "lstm/tfprune")):
            assert row["loads"] and row["bytes"] > 0 and row["latency_us"] > 0, (key, row)
            assert row["accuracy"] is not None
    # A float32 file scores what its Keras model scored: for tfmot's fused LSTM only because
    # its state variables are reset before every sequence.
    for lib in ("tfprune", "tfmot") if "lstm" in cfg["export_models"] else ():
        keras_score = results["accuracy"]["lstm"][lib][0]["runs"][0]["score"]
        file_score = results["export"][f"lstm/{lib}/float32"]["accuracy"]
        assert file_score == pytest.approx(keras_score, rel=1e-3), lib
    assert all(len(results["mask"][lib]) == 1 for lib in ("tfprune", "tfmot"))
    assert set(results["paper"]["one_shot"]) == set(cfg["paper_models"])


def _check_channels(part):
    """The smoke run's channel part: LeNet at 50% of channels, trimmed to half its units."""
    (run,) = part["models"]["lenet"][0]["runs"]
    assert run["target"] == 0.5 and run["parameters"] < 0.55 * run["dense_parameters"]
    assert run["trimmed"] == pytest.approx(run["channels"], abs=0.005)  # a tie at most
    for key in ("unstructured", "small_dense", "one_shot", "one_shot_updated"):
        assert 0.0 <= run[key] <= 1.0
    files = {(row["label"], row["kind"]): row for row in part["files"]["lenet"]}
    assert set(files) == {
        (label, kind)
        for label in ("dense", "trimmed 50%", "unstructured 50%")
        for kind in ("float32", "int8")
    }
    for row in files.values():
        assert row["loads"] and row["verified"] and row["latency_us"] > 0, row
    assert files[("trimmed 50%", "float32")]["bytes_ratio"] < 0.55


def _check_patterns(part, cfg):
    """The pattern part: (16, 1) blocks at 90% (and 2:4 in the smoke run), both libraries, all
    files."""
    # fc1 and fc2 pruned, the 100x10 classifier dense: 90% of 265,200 of 266,200 kernel entries.
    sparsities = {"blocks 16x1@0.9": 0.9 * 265_200 / 266_200, "2:4": 0.5 * 265_200 / 266_200}
    assert "blocks 16x1@0.9" in cfg["pattern_runs"]
    expected = {spec: sparsities[spec] for spec in cfg["pattern_runs"]}
    assert set(part["runs"]) == set(expected)
    for spec, sparsity in expected.items():
        for lib in ("tfprune", "tfmot"):
            (run,) = part["runs"][spec][lib]
            assert run["sparsity"] == pytest.approx(sparsity, abs=1e-4), (spec, lib)
            assert 0.0 <= run["score"] <= 1.0
    files = part["files"]
    assert {key for key in files if key.startswith("dense/")} == {
        "dense/converter/float32",
        "dense/converter/int8",
    }
    for spec in expected:
        for lib in ("tfprune", "tfmot"):
            kinds = {
                row["kind"]
                for row in files.values()
                if row["spec"] == spec and row["library"] == lib
            }
            assert kinds == set(EXPORT_KINDS[lib]), (spec, lib)
    # tfprune's int8 block file is read by the 1x16 kernel: it runs, scores what Keras scores,
    # and is smaller than the converter's own block-sparse file.
    ours, theirs = files["blocks 16x1@0.9/tfprune/int8"], files["blocks 16x1@0.9/tfmot/int8"]
    assert ours["loads"] and ours["latency_us"] > 0
    assert ours["accuracy"] == pytest.approx(
        part["runs"]["blocks 16x1@0.9"]["tfprune"][0]["score"], abs=0.03
    )
    assert ours["bytes"] < theirs["bytes"]
    assert part["wall_s"] > 0


def _check_oneshot(part):
    """The smoke run's one-shot part: LeNet at 50% and 2:4, three methods, fine-tuned."""
    (lenet,) = part["lenet"]
    assert 0.0 <= lenet["dense"] <= 1.0
    runs = {(r["target"], r["method"]): r for r in lenet["runs"]}
    assert set(runs) == {(t, m) for t in (0.5, "2:4") for m in ("magnitude", "wanda", "sparsegpt")}
    for (target, method), run in runs.items():
        # fc1, fc2 and the classifier: every kernel at 50%, so the whole model too.
        assert run["sparsity"] == pytest.approx(0.5, abs=1e-6), (target, method)
        assert 0.0 <= run["score"] <= 1.0 and 0.0 <= run["finetuned"] <= 1.0
        assert len(run["layer_seconds"]) == 3
    sparsegpt = runs[(0.5, "sparsegpt")]
    pairs = zip(sparsegpt["errors"], sparsegpt["errors_without_update"], strict=True)
    assert len(sparsegpt["errors"]) == 3 and all(e < plain for e, plain in pairs)


def _check_applications(part, cfg):
    """The MobileNetV2 and ResNet50 part: one target, the preset's files and rounds and mask
    updates."""
    mobilenet = part["mobilenet"]
    dense, pruned = mobilenet["models"]
    assert (dense["model"], pruned["model"]) == ("dense", "0.9")
    assert 0.0 <= dense["score"] <= 1.0 and 0.0 <= pruned["score"] <= 1.0
    assert dense["sparsity"] == 0.0 and pruned["sparsity"] == pytest.approx(0.9, abs=1e-3)
    rounds = sum(cfg["mobilenet_epochs"][1:])
    orders = [["dense", "0.9"], ["0.9", "dense"]] * rounds
    assert [r["order"] for r in mobilenet["rounds"]] == orders[:rounds]
    files = {row["model"]: row for row in mobilenet["export"]}
    assert {row["kind"] for row in mobilenet["export"]} == set(cfg["mobilenet_kinds"])
    if files:
        assert 0 < files["0.9"]["bytes"] < files["dense"]["bytes"] / 4, files
    for name, row in files.items():  # a float32 file scores what its Keras model scores
        keras_score = dense["score"] if name == "dense" else pruned["score"]
        assert row["score"] == pytest.approx(keras_score, abs=0.05)
    resnet = part["resnet50"]
    assert resnet["mask_dtype"] == "bool"
    assert resnet["mask_bytes"] == resnet["pruned_entries"] > 25_000_000
    assert resnet["pruned_weight_bytes"] == 4 * resnet["pruned_entries"]
    assert resnet["sparsity"] == pytest.approx(0.9, abs=1e-6)
    assert [u["step"] for u in resnet["updates"]] == list(range(cfg["resnet_updates"] + 1))
    assert part["wall_s"] > 0


@pytest.mark.parametrize(
    "earlier, message",
    [(None, "unreadable"), ({"config": {"name": "quick"}}, "holds preset 'quick'")],
)
def test_only_merges_into_results_of_the_same_preset(tmp_path, capsys, earlier, message):
    from bench.__main__ import main

    if earlier is not None:
        (tmp_path / "results.json").write_text(json.dumps(earlier))
    with pytest.raises(SystemExit) as exit_info:
        main(["--smoke", "--only", "mobilenet", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_mobilenet_takes_digits_resized_to_rgb():
    from bench.applications import rgb_digits

    x = np.random.default_rng(0).random((3, 28, 28)).astype("float32")
    images = rgb_digits(x, 32)
    assert images.shape == (3, 32, 32, 3) and images.dtype == np.float32
    np.testing.assert_array_equal(images[..., 0], images[..., 2])
    assert 0.0 <= images.min() and images.max() <= 1.0
    model = models.mobilenet_v2(keras, 32)
    assert model.count_params() == 423_018
    assert model.output_shape == (None, 10)
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and all(layer.momentum == 0.9 for layer in norms)


@pytest.mark.parametrize("width", [0.25, 0.5, 1.0])
def test_cnn_parameter_count_matches_keras(width):
    model = models.cnn(keras, width)
    assert models.cnn_parameters(width) == model.count_params()


def test_matching_width_gives_the_closest_dense_size():
    target = models.cnn_parameters(1.0, 0.9)
    width = models.matching_width(target)
    assert abs(models.cnn_parameters(width) - target) / target < 0.1
    assert models.cnn_parameters(1.0, 0.5) < models.cnn_parameters(1.0)


def test_lenet_and_lstm_build_with_keras_3():
    assert models.lenet(keras).count_params() == 266_610
    lm = models.lstm_lm(keras, vocab=50, length=7, units=8, embed=8)
    assert lm.output_shape == (None, 7, 50)


def test_corpus_is_next_word_sequences_from_the_installed_package():
    (x, y), (xt, yt), vocab = corpus.load_corpus(vocab_size=300, length=10)
    assert vocab == 300
    assert x.shape[1] == 10 and x.shape == y.shape and xt.shape == yt.shape
    assert len(x) > 2000 and len(xt) > 100
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    assert x.max() < vocab


def test_perplexity_of_uniform_logits_is_the_vocabulary_size():
    class Uniform:
        def predict(self, x, **kwargs):
            return np.zeros((*x.shape, 40), dtype="float32")

    x = np.zeros((3, 5), dtype="int32")
    assert protocol.score(Uniform(), x, x, "lm") == pytest.approx(40.0)


@pytest.mark.parametrize("rows,epochs,frequency", [(4000, 3, 10), (512, 1, 2), (100, 1, 7)])
def test_ramp_ends_on_a_multiple_of_the_frequency(rows, epochs, frequency):
    end = protocol.ramp_end_step(rows, epochs, frequency)
    assert end % frequency == 0
    assert end <= max(frequency, epochs * protocol.steps_per_epoch(rows) - 1)


@pytest.mark.slow
def test_int8_kernel_scaling_writes_verified_files_and_prints_every_ratio(capsys, full):
    from bench import int8_kernels

    # The cheapest form times two layers; `make test-full` all of them.
    layers = list(int8_kernels.LAYERS) if full else ["conv 3x3", "depthwise 3x3"]
    int8_kernels.main(["--repeats", "2", "--size", "4", "--layers", ",".join(layers)])
    lines = capsys.readouterr().out.strip().splitlines()
    rows = [line.split("|")[1:-1] for line in lines[2:]]
    # Every layer, with both kernel sets and both kinds; a time per width, a ratio per pair.
    # How fast a busy machine runs them is the benchmark's business, not a unit test's: every
    # cell is a number, a time is never negative.
    assert [row[0].strip() for row in rows[:: 2 * len(int8_kernels.KINDS)]] == layers
    assert len(rows) == len(layers) * 2 * len(int8_kernels.KINDS)
    for row in rows:
        assert len(row) == 3 + 2 * len(int8_kernels.WIDTHS)
        values = [float(cell) for cell in row[3:]]
        assert all(v >= 0 or math.isnan(v) for v in values)


def test_int8_kernel_scaling_refuses_an_unknown_layer(capsys):
    from bench import int8_kernels

    with pytest.raises(SystemExit):
        int8_kernels.main(["--layers", "conv 7x7"])
    assert "unknown layers ['conv 7x7']" in capsys.readouterr().err
