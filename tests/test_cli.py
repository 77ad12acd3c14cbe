"""The `tfprune` command line: demo, export, report, and its one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import small_mlp

import tfprune
from tfprune.cli import main


@pytest.fixture(scope="module")
def pruned_file(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = tfprune.prune_low_magnitude(small_mlp())
    for w in tfprune.core.find.pruning_wrappers(model):
        w.update_masks(0.8)
    path = tmp_path_factory.mktemp("cli") / "pruned.keras"
    model.save(path)
    return str(path)


@pytest.fixture(scope="module")
def calibration(tmp_path_factory):
    (x, y), _ = tfprune.datasets.load_mnist_sample()
    path = tmp_path_factory.mktemp("cal") / "cal.npz"
    np.savez(path, x=x[:64].astype("float32") / 255.0, y=y[:64])
    return str(path)


def run(capsys, *args):
    code = main(["tfprune", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_no_command_prints_usage(capsys):
    code, out, _ = run(capsys)
    assert code == 2 and "usage: tfprune COMMAND" in out


def test_unknown_command_is_an_error(capsys):
    code, _, err = run(capsys, "frobnicate")
    assert code == 2 and "unknown command 'frobnicate'" in err


def test_report_of_a_keras_file(capsys, pruned_file):
    code, out, _ = run(capsys, "report", pruned_file)
    assert code == 0
    assert "fc1" in out and "80.00%" in out


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("missing.keras", None, "no such file"),
        ("model.h5", b"x", "expected a file ending in .keras"),
        ("broken.keras", b"PK\x03\x04 truncated", "not a .keras file"),
        ("broken.tflite", b"\x00" * 7, ""),
    ],
)
def test_report_bad_files_fail_with_one_line(capsys, tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    code, out, err = run(capsys, "report", str(path))
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and message in err
    assert "Traceback" not in err + out


def test_report_of_a_truncated_real_keras_file(capsys, tmp_path, pruned_file):
    data = open(pruned_file, "rb").read()
    path = tmp_path / "cut.keras"
    path.write_bytes(data[: len(data) // 2])
    code, _, err = run(capsys, "report", str(path))
    assert code == 1 and len(err.strip().splitlines()) == 1


def test_export_and_report_a_tflite_file(capsys, tmp_path, pruned_file, calibration):
    out_path = tmp_path / "m.tflite"
    code, out, err = run(
        capsys,
        "export",
        pruned_file,
        "-o",
        str(out_path),
        "--quantize",
        "int8",
        "--calibration",
        calibration,
    )
    assert code == 0, err
    assert out_path.exists() and str(out_path.stat().st_size) in out.replace(",", "")
    assert "export m.tflite: converted (int8)" in err  # a line per stage, on stderr
    assert "export m.tflite: verified in LiteRT" in err
    code, out, _ = run(capsys, "report", str(out_path))
    assert code == 0 and "int8" in out


def test_export_int8_without_calibration_is_an_error(capsys, tmp_path, pruned_file):
    code, _, err = run(
        capsys, "export", pruned_file, "-o", str(tmp_path / "x.tflite"), "--quantize", "int8"
    )
    assert code == 1 and "--calibration" in err
    assert not (tmp_path / "x.tflite").exists()


def test_export_into_a_missing_directory_is_an_error(capsys, tmp_path, pruned_file):
    target = tmp_path / "nowhere" / "x.tflite"
    code, _, err = run(capsys, "export", pruned_file, "-o", str(target))
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert not target.parent.exists()


def test_export_needs_an_output(capsys, pruned_file):
    code, _, err = run(capsys, "export", pruned_file)
    assert code == 1 and "-o OUT.tflite" in err


def test_bad_flag_value_is_an_error(capsys, pruned_file):
    code, _, err = run(capsys, "export", pruned_file, "--quantize", "int4")
    assert code == 2 and "int4" in err


def test_export_compare_prints_every_variant(capsys, tmp_path, pruned_file, calibration):
    code, out, err = run(
        capsys,
        "export",
        pruned_file,
        "-o",
        str(tmp_path / "x.tflite"),
        "--compare",
        "--calibration",
        calibration,
    )
    assert code == 0, err
    for variant in ("float32 dense", "float32 sparse", "float16", "dynamic", "int8 sparse"):
        assert variant in out


@pytest.mark.slow
def test_demo_runs_end_to_end_as_a_console_script(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    bin_dir = os.path.dirname(sys.executable)
    result = subprocess.run(
        [os.path.join(bin_dir, "tfprune"), "demo", "--epochs", "2", "--out_dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test accuracy: dense" in result.stdout
    assert "int8 sparse" in result.stdout
    names = {p.name for p in tmp_path.iterdir()}
    assert {"lenet_pruned.keras", "pruning.png", "int8_sparse.tflite"} <= names
    # TensorFlow's, the converter's and LiteRT's native start-up lines are not shown.
    for noise in ("absl::InitializeLog", "I0000", "E0000", "XNNPACK delegate", "fully_quantize"):
        assert noise not in result.stderr + result.stdout, noise


def test_the_console_script_shows_tfprune_s_own_error_and_nothing_else(tmp_path):
    bin_dir = os.path.dirname(sys.executable)
    missing = str(tmp_path / "missing.keras")
    result = subprocess.run(
        [os.path.join(bin_dir, "tfprune"), "report", missing],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert result.stderr == f"tfprune report: {missing}: no such file\n"


def test_command_help_lists_its_flags(capsys):
    code, out, _ = run(capsys, "export", "--help")
    assert code == 0
    assert "--quantize" in out and "--calibration" in out and "absl.flags" not in out


def test_export_prefer_speed_and_fixed_batch(capsys, tmp_path, pruned_file):
    out_path = tmp_path / "fast.tflite"
    code, out, err = run(
        capsys,
        "export",
        pruned_file,
        "-o",
        str(out_path),
        "--prefer",
        "speed",
        "--batch_size",
        "2",
        "--noprogress",
    )
    assert code == 0, err
    assert "export fast.tflite:" not in err
    assert "prefer='speed'" in out and "batch_size=2" in out
    assert " as [" not in out  # no reshaped view in a speed file


def test_prune_one_shot_writes_a_pruned_model_and_prints_each_weight(capsys, tmp_path, calibration):
    keras.utils.set_random_seed(1)
    dense_path = tmp_path / "dense.keras"
    small_mlp().save(dense_path)
    out = tmp_path / "pruned.keras"

    def one_shot(*flags):
        return run(
            capsys,
            "prune_one_shot",
            str(dense_path),
            "--calibration",
            calibration,
            "-o",
            str(out),
            *flags,
        )

    code, printed, err = one_shot("--m_by_n", "2,4", "--method", "wanda")
    assert code == 0, err
    assert "fc1/kernel" in printed and "wanda" in printed and f"wrote {out}" in printed
    assert "prune_one_shot: fc1/kernel: wanda, 50.0% pruned" in err  # progress lines
    assert tfprune.check_sparsity_m_by_n(keras.models.load_model(out), 2, 4).holds
    code, printed, err = one_shot("--sparsity", "0.7", "--layers", "fc1", "--noprogress")
    assert code == 0 and err == ""
    rows = {row.layer: row for row in tfprune.sparsity_report(keras.models.load_model(out))}
    assert rows["fc1"].sparsity == pytest.approx(0.7, abs=1e-3) and rows["fc2"].sparsity == 0


@pytest.mark.parametrize(
    "extra, message",
    [
        (["-o", "x.tflite"], "needs -o OUT.keras"),
        (["-o", "x.keras"], "needs --calibration DATA.npz"),
        (["-o", "x.keras", "--calibration", "CAL", "--m_by_n", "2,x"], "two integers"),
        (["-o", "x.keras", "--calibration", "CAL", "--sparsity", "1.5"], "`sparsity`"),
    ],
)
def test_prune_one_shot_errors_are_one_line(capsys, tmp_path, calibration, extra, message):
    dense_path = tmp_path / "dense.keras"
    small_mlp().save(dense_path)
    extra = [
        calibration if a == "CAL" else str(tmp_path / a) if a == "x.keras" else a for a in extra
    ]
    code, _, err = run(capsys, "prune_one_shot", str(dense_path), *extra)
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x.keras").exists()


def test_prune_channels_writes_the_trimmed_model(capsys, tmp_path, calibration):
    keras.utils.set_random_seed(1)
    dense_path = tmp_path / "dense.keras"
    dense = small_mlp()
    dense.save(dense_path)
    out = tmp_path / "small.keras"
    code, printed, err = run(
        capsys,
        "prune_channels",
        str(dense_path),
        "-o",
        str(out),
        "--fraction",
        "0.5",
        "--calibration",
        calibration,
        "--round_to",
        "4",
    )
    assert code == 0, err
    small = keras.models.load_model(out)
    hidden = [layer for layer in dense.layers if layer.weights][:-1]
    for layer in hidden:
        units = small.get_layer(layer.name).units
        assert units == layer.units // 2 and units % 4 == 0
        assert layer.name in printed
    assert "updated on the calibration inputs" in printed and f"wrote {out}" in printed
    code, _, err = run(capsys, "prune_channels", str(dense_path), "-o", str(tmp_path / "x.tflite"))
    assert code == 1 and "needs -o OUT.keras" in err
    code, _, err = run(
        capsys, "prune_channels", str(dense_path), "-o", str(out), "--layers", "nothing*"
    )
    assert code == 1 and "no channel that can be removed" in err
