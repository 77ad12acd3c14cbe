"""Block and N:M pruning through `prune_low_magnitude`, `model.fit`, saving and stripping."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest
from conftest import compile_model
from keras import layers
from tiny_models import digits

import tfprune
from tfprune.masks.patterns import holds_m_by_n


def cnn():
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(8, 3, name="conv1"),
            layers.Conv2D(16, 3, strides=2, name="conv2"),
            layers.Flatten(),
            layers.Dense(48, activation="relu", name="fc1"),
            layers.Dense(10, name="fc2"),
        ]
    )


def train(model, mnist, epochs=2):
    (x, y), _ = mnist
    compile_model(model)
    model.fit(
        x[:256],
        y[:256],
        batch_size=64,
        epochs=epochs,
        verbose=0,
        callbacks=[tfprune.UpdatePruningStep()],
    )
    return model


def kernel(model, name):
    return keras.ops.convert_to_numpy(model.get_layer(name).kernel)


@pytest.mark.parametrize("block", [(4, 1), (1, 4), (16, 1)])
def test_block_pruning_prunes_whole_blocks_with_exact_counts(mnist, block, tmp_path):
    keras.utils.set_random_seed(1)
    schedule = tfprune.PolynomialDecay(0.0, 0.75, begin_step=0, end_step=6, frequency=2)
    pruned = train(tfprune.prune_low_magnitude(cnn(), schedule, block_size=block), mnist)
    pruned.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert {w.rule.pattern.block for w in tfprune.core.find.pruning_wrappers(loaded)} == {block}
    stripped = tfprune.strip_pruning(loaded)
    for name in ["conv1", "conv2", "fc1", "fc2"]:
        w = kernel(stripped, name)
        matrix = w.reshape(-1, w.shape[-1])
        rows, cols = matrix.shape
        tiles = [
            matrix[i : i + block[0], j : j + block[1]]
            for i in range(0, rows, block[0])
            for j in range(0, cols, block[1])
        ]
        zero = [not t.any() for t in tiles]
        assert all(z or np.count_nonzero(t) == t.size for z, t in zip(zero, tiles, strict=True))
        assert sum(zero) == round(0.75 * len(tiles)), name


def test_two_of_four_holds_after_training_and_loading(mnist, tmp_path):
    keras.utils.set_random_seed(2)
    # As in tfmot's 2:4 guide: no schedule, the pattern is set at the first step and kept; the
    # first conv (one input channel) is pruned unstructured instead.
    model = cnn()
    pruned = tfprune.prune_low_magnitude(
        model,
        layers={"conv1": tfprune.ConstantSparsity(0.5, begin_step=0, frequency=100)},
    )
    assert [type(layer).__name__ for layer in pruned.layers][:2] == ["PruneLowMagnitude", "Conv2D"]
    pruned = tfprune.prune_low_magnitude(model, layers=["conv2", "fc1"], sparsity_m_by_n=(2, 4))
    train(pruned, mnist)
    pruned.save(tmp_path / "m.keras")
    stripped = tfprune.strip_pruning(keras.models.load_model(tmp_path / "m.keras"))
    for name in ["conv2", "fc1"]:
        w = kernel(stripped, name)
        assert holds_m_by_n(w, (2, 4))
        assert np.count_nonzero(w) == w.size // 2
    assert not holds_m_by_n(kernel(stripped, "fc2"), (2, 4))


def test_m_by_n_on_a_layer_with_too_few_input_channels_warns():
    with pytest.warns(UserWarning, match="prunes nothing"):
        tfprune.prune_low_magnitude(cnn(), layers=["conv1"], sparsity_m_by_n=(2, 4))


def test_global_allocation_with_blocks_shares_one_threshold(mnist):
    keras.utils.set_random_seed(3)
    schedule = tfprune.ConstantSparsity(0.8, begin_step=0, frequency=100)
    pruned = tfprune.prune_low_magnitude(
        cnn(), schedule, layers=["fc1", "fc2"], allocation="global", block_size=(4, 1)
    )
    train(pruned, mnist, epochs=1)
    blocks = pruned_blocks = 0
    for name in ["fc1", "fc2"]:
        matrix = kernel(tfprune.strip_pruning(pruned), name)
        tiles = matrix.reshape(matrix.shape[0] // 4, 4, matrix.shape[1])
        blocks += tiles.shape[0] * tiles.shape[2]
        pruned_blocks += int(np.sum(~tiles.any(axis=1)))
    assert pruned_blocks == round(0.8 * blocks)


@pytest.fixture(scope="module")
def two_of_four(tmp_path_factory):
    """A CNN with conv2 and fc1 at 2:4, saved as .keras and exported float32 and int8."""
    (x, y), _ = digits(256)
    x = x[..., None]
    keras.utils.set_random_seed(4)
    pruned = tfprune.prune_low_magnitude(cnn(), layers=["conv2", "fc1"], sparsity_m_by_n=(2, 4))
    compile_model(pruned)
    pruned.fit(x, y, epochs=1, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    folder = tmp_path_factory.mktemp("two_of_four")
    pruned.save(folder / "m.keras")
    for quantize in [None, "int8"]:
        tfprune.export.to_tflite(
            pruned, folder / f"{quantize}.tflite", quantize=quantize, representative_data=x[:32]
        )
    return pruned, folder


def test_check_sparsity_m_by_n_on_models_and_files(two_of_four):
    pruned, folder = two_of_four
    expected = [True, True, True, False]  # conv1 (one input channel) holds it trivially
    for source in [pruned, str(folder / "m.keras"), folder / "None.tflite", folder / "int8.tflite"]:
        report = tfprune.check_sparsity_m_by_n(source, 2, 4)
        assert [row.holds for row in report] == expected, source
        assert not report.holds and "2:4" in str(report)
        assert report[1].sparsity == pytest.approx(0.5, abs=0.002)
    assert [r.shape for r in tfprune.check_sparsity_m_by_n(folder / "None.tflite")][:2] == [
        (8, 3, 3, 1),
        (16, 3, 3, 8),
    ]  # LiteRT's layout, input channels last
    assert tfprune.check_sparsity_m_by_n(pruned, 1, 4)[1].holds is True  # 2:4 has 1 zero in 4
    assert tfprune.check_sparsity_m_by_n(pruned, 3, 4)[1].holds is False
    with pytest.raises(ValueError, match="0 < m < n"):
        tfprune.check_sparsity_m_by_n(pruned, 4, 4)
    with pytest.raises(ValueError, match=".keras or .tflite"):
        tfprune.check_sparsity_m_by_n("model.h5")


def test_check_sparsity_m_by_n_command(two_of_four, capsys):
    from tfprune.cli import main

    _, folder = two_of_four
    assert main(["tfprune", "check_sparsity_m_by_n", str(folder / "int8.tflite")]) == 0
    out = capsys.readouterr().out
    assert "2:4 holds in 3 of 4 weights." in out
    assert (
        main(["tfprune", "check_sparsity_m_by_n", str(folder / "m.keras"), "--m_by_n", "3,4"]) == 0
    )
    assert "3:4 holds in 1 of 4 weights." in capsys.readouterr().out
    assert (
        main(["tfprune", "check_sparsity_m_by_n", str(folder / "m.keras"), "--m_by_n", "a,b"]) == 1
    )
    assert "--m_by_n must be two integers" in capsys.readouterr().err


def test_m_by_n_groups_of_attention_kernels_run_along_their_input_features(tmp_path):
    # An attention query kernel is [features, heads, head_dim]: its input channels are the
    # features (axis 0), not the heads, and LiteRT multiplies it as FULLY_CONNECTED [out, in].
    inputs = keras.Input((5, 8))
    outputs = layers.MultiHeadAttention(2, 4, name="attention")(inputs, inputs)
    model = keras.Model(inputs, outputs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # two heads are not "too few input channels"
        pruned = tfprune.prune_low_magnitude(model, sparsity_m_by_n=(2, 4))
    x = np.random.default_rng(0).standard_normal((32, 5, 8)).astype("float32")
    pruned.compile(optimizer="adam", loss="mse")
    pruned.fit(x, x, epochs=1, batch_size=16, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    report = tfprune.check_sparsity_m_by_n(pruned, 2, 4)
    assert report.holds and [r.sparsity for r in report] == [0.5] * 4, str(report)
    attention = tfprune.strip_pruning(pruned).get_layer("attention")
    query = keras.ops.convert_to_numpy(attention.query_dense.kernel)  # [8, 2, 4]
    groups = np.moveaxis(query, 0, -1).reshape(-1, 2, 4)  # per (head, dim): 8 features
    assert np.all(np.count_nonzero(groups == 0, axis=-1) == 2)
    output = keras.ops.convert_to_numpy(attention.output_dense.kernel)  # [2, 4, 8]
    groups = np.moveaxis(output.reshape(8, 8), 0, -1).reshape(-1, 2, 4)
    assert np.all(np.count_nonzero(groups == 0, axis=-1) == 2)
