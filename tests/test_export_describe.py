"""`describe_tflite` and `compare_variants`: what the CLI prints about `.tflite` files."""

from __future__ import annotations

import pytest
from export_helpers import stripped_mlp
from tiny_models import digits

from tfprune.export import compare_variants, describe_tflite, format_compare_table, to_tflite
from tfprune.export.compare import VARIANTS


@pytest.fixture(scope="module")
def data():
    return digits()


@pytest.fixture(scope="module")
def model(data):
    return stripped_mlp(data, sequential=False, seed=21)


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    return to_tflite(model, tmp_path_factory.mktemp("describe") / "mlp.tflite")


def test_describe_lists_every_constant_with_its_layout(exported):
    text = describe_tflite(exported.path)
    lines = text.splitlines()
    assert lines[0].startswith(f"{exported.path}: {exported.bytes:,} bytes")
    assert "DENSIFY x2" in lines[0]
    assert lines[1].split() == ["tensor", "shape", "dtype", "sparsity", "layout", "bytes"]
    assert any("64x784" in line and "CSR idx u8" in line and "90.0%" in line for line in lines)
    assert any("10x64" in line and "CSR idx u8" in line for line in lines)
    assert lines[-2].split()[0] == "total"
    assert lines[-1] == f"bytes: {exported.byte_split}"
    assert exported.byte_split.total == exported.bytes


def test_describe_a_dense_file_reports_zeros_but_dense_layout(model, tmp_path):
    result = to_tflite(model, tmp_path / "dense.tflite", sparse=False)
    text = describe_tflite(result.path)
    assert "CSR" not in text
    assert any(
        "64x784" in line and "dense" in line and "90.0%" in line for line in text.splitlines()
    )


def test_describe_a_missing_file_is_a_one_line_value_error(tmp_path):
    with pytest.raises(ValueError, match="Received: path=") as info:
        describe_tflite(tmp_path / "missing.tflite")
    assert "\n" not in str(info.value)


def test_describe_a_file_that_is_not_a_flatbuffer_is_a_one_line_value_error(tmp_path):
    path = tmp_path / "notes.tflite"
    path.write_text("these are not the bytes you are looking for")
    with pytest.raises(ValueError, match="Not a TFLite flatbuffer") as info:
        describe_tflite(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("keep", [0.5, 0.1, 0.01])
def test_describe_a_truncated_file_is_a_one_line_value_error(exported, tmp_path, keep):
    data = open(exported.path, "rb").read()
    path = tmp_path / "cut.tflite"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ValueError) as info:
        describe_tflite(path)
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_compare_variants_exports_and_measures_every_variant(model, data, tmp_path):
    _, (xt, yt) = data
    rows = compare_variants(model, tmp_path / "out", x_eval=xt, y_eval=yt)
    assert [row.variant for row in rows] == [name for name, _, _ in VARIANTS]
    by_name = {row.variant: row for row in rows}
    assert by_name["float32 dense"].ratio == 1.0
    assert by_name["float32 sparse"].ratio < 0.25
    assert by_name["int8 sparse"].bytes < by_name["int8"].bytes
    keras_accuracy = float((model.predict(xt, verbose=0).argmax(-1) == yt).mean())
    for row in rows:
        assert row.metric == "accuracy"
        assert abs(row.score - keras_accuracy) <= 0.05
        assert row.latency_us > 0
        assert (tmp_path / "out" / row.path.rsplit("/", 1)[-1]).exists()
    table = format_compare_table(rows)
    assert len(table.splitlines()) == 1 + len(VARIANTS)
    assert "int8 sparse" in table and "accuracy" in table


def test_compare_variants_without_labels_reports_agreement(model, data, tmp_path):
    _, (xt, _) = data
    rows = compare_variants(model, tmp_path, x_eval=xt[:32])
    assert {row.metric for row in rows} == {"top-1 agreement"}
    assert rows[1].score == 1.0


def test_compare_variants_rejects_mismatched_labels(model, data, tmp_path):
    _, (xt, yt) = data
    with pytest.raises(ValueError, match="Received: 3 labels"):
        compare_variants(model, tmp_path, x_eval=xt, y_eval=yt[:3])
