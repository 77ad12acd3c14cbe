"""sparsity_report and the pruning plot."""

from __future__ import annotations

import keras
import pytest
from conftest import small_mlp
from packaging.version import Version

import tfprune
from tfprune.report import plot_pruning


def test_report_rows_of_a_pruned_model():
    pruned = tfprune.prune_low_magnitude(small_mlp())
    for w in tfprune.core.find.pruning_wrappers(pruned):
        w.update_masks(0.75)
    rows = tfprune.sparsity_report(pruned)
    assert [(r.layer, r.weight, r.shape) for r in rows] == [
        ("fc1", "kernel", (784, 32)),
        ("fc2", "kernel", (32, 10)),
    ]
    assert rows[0].nonzeros == 784 * 32 - round(0.75 * 784 * 32)
    assert rows[0]["sparsity"] == pytest.approx(0.75, abs=1e-4)
    assert rows.sparsity == pytest.approx(0.75, abs=1e-3)


def test_report_of_the_stripped_model_matches_the_pruned_one():
    pruned = tfprune.prune_low_magnitude(small_mlp())
    for w in tfprune.core.find.pruning_wrappers(pruned):
        w.update_masks(0.6)
    a = tfprune.sparsity_report(pruned)
    b = tfprune.sparsity_report(tfprune.strip_pruning(pruned))
    assert [(r.layer, r.nonzeros) for r in a] == [(r.layer, r.nonzeros) for r in b]


def test_report_prints_a_table_with_a_total():
    text = str(tfprune.sparsity_report(small_mlp()))
    lines = text.splitlines()
    assert lines[0].split() == ["layer", "weight", "shape", "nonzeros", "sparsity"]
    assert "784x32" in text and lines[-1].startswith("total")


def test_report_rejects_a_non_model():
    with pytest.raises(TypeError, match="Received: model="):
        tfprune.sparsity_report([1, 2])


def test_plot_writes_a_png(tmp_path):
    schedule = tfprune.PolynomialDecay(0.0, 0.9, begin_step=0, end_step=50, frequency=10)
    model = tfprune.prune_low_magnitude(small_mlp(), schedule)
    path = plot_pruning(model, schedule, 60, str(tmp_path / "p.png"))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["p.png"]


def test_embedded_mnist_sample_is_real_and_split():
    (x, y), (xt, yt) = tfprune.datasets.load_mnist_sample()
    assert x.shape == (4000, 28, 28) and xt.shape == (1000, 28, 28)
    assert x.dtype.name == "uint8" and y.dtype.name == "int64"
    assert sorted(set(y.tolist())) == list(range(10))
    assert 60 <= min((yt == c).sum() for c in range(10))  # shuffled: every class in the test
    again = tfprune.datasets.load_mnist_sample()
    assert (again[0][0] == x).all()


def test_import_tfprune_does_not_import_the_export_stage():
    import subprocess
    import sys

    code = "import sys, tfprune; print('tfprune.export' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert Version(keras.__version__) >= Version("3.13")  # the oldest Keras setup.cfg allows
