"""One-shot pruning block by block: each block calibrated on the pruned blocks before it, the
calibration data run through the whole model about twice in all."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops
from llm_families import FAMILIES, SEQUENCE, VOCABULARY, causal_lm

import tfprune
from tfprune.calibration.recorder import Recorder
from tfprune.oneshot import prune as prune_module
from tfprune.oneshot.blocks import BlockChain
from tfprune.oneshot.targets import one_shot_targets
from tfprune.oneshot.wanda import wanda_mask


def tokens(rows: int = 16) -> dict:
    ids = np.random.default_rng(0).integers(1, VOCABULARY, (rows, SEQUENCE)).astype("int32")
    return {"token_ids": ids, "padding_mask": np.ones((rows, SEQUENCE), bool)}


def mlp(depth: int = 4) -> keras.Model:
    keras.utils.set_random_seed(0)
    layers = [keras.Input((12,))]
    layers += [keras.layers.Dense(12, activation="relu", name=f"fc{i}") for i in range(depth)]
    return keras.Sequential(layers)


def calls_of(model: keras.Model, monkeypatch) -> list:
    seen: list = []
    original = type(model).__call__

    def counted(self, *args, **kwargs):
        if self is model:
            seen.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "__call__", counted)
    return seen


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_a_chain_of_layers_gives_the_layer_order_result_from_two_passes(method, monkeypatch):
    x = np.random.default_rng(1).standard_normal((96, 12)).astype("float32")
    by_layers = tfprune.prune_one_shot(mlp(), x, 0.5, method=method, sequential="layers")
    model = mlp()
    calls = calls_of(model, monkeypatch)
    by_blocks = tfprune.prune_one_shot(model, x, 0.5, method=method, batch_size=32)
    for a, b in zip(by_layers.weights, by_blocks.weights, strict=True):
        np.testing.assert_allclose(ops.convert_to_numpy(a), ops.convert_to_numpy(b), atol=1e-6)
    # Per layer one pass of the whole model (3 batches each) with "layers"; with "blocks": the
    # call order, the chain's check (a batch each) and the first block's inputs (3 batches).
    assert len(calls) <= 3 + 3


def test_the_dense_order_reads_every_layer_from_the_dense_model():
    x = np.random.default_rng(1).standard_normal((64, 12)).astype("float32")
    model = mlp(2)
    pruned = tfprune.prune_one_shot(model, x, 0.5, method="wanda", sequential=False)
    # fc1's mask is Wanda's on the dense fc0's outputs.
    hidden = ops.convert_to_numpy(model.get_layer("fc0")(x))
    kernel = ops.convert_to_numpy(model.get_layer("fc1").kernel)
    expected = ~wanda_mask(kernel.T, np.sum(hidden.astype(np.float64) ** 2, axis=0), 0.5).T
    got = ops.convert_to_numpy(pruned.get_layer("prune_low_magnitude_fc1").layer.kernel) != 0
    np.testing.assert_array_equal(got, expected & (kernel != 0))


def test_a_model_that_is_not_a_chain_is_fed_whole():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    a = keras.layers.Dense(8, name="a")(inputs)
    b = keras.layers.Dense(8, name="b")(inputs)  # a branch: b does not take a's output
    model = keras.Model(inputs, keras.layers.Dense(4, name="c")(keras.layers.Add()([a, b])))
    x = np.random.default_rng(0).standard_normal((32, 8)).astype("float32")
    chain = BlockChain.of(model, x, 32, [model.get_layer(n) for n in "abc"])
    assert chain is None
    by_blocks = tfprune.prune_one_shot(model, x, 0.5, method="wanda")
    by_layers = tfprune.prune_one_shot(model, x, 0.5, method="wanda", sequential="layers")
    for u, v in zip(by_blocks.weights, by_layers.weights, strict=True):
        np.testing.assert_array_equal(ops.convert_to_numpy(u), ops.convert_to_numpy(v))


def test_bad_order_is_refused():
    with pytest.raises(ValueError, match="`sequential`.*Received: sequential='dense'"):
        tfprune.prune_one_shot(mlp(1), np.zeros((4, 12), "float32"), sequential="dense")


def _chain_of(monkeypatch) -> list:
    found: list = []
    original = BlockChain.of

    def spy(*args, **kwargs):
        chain = original(*args, **kwargs)
        found.append(chain)
        return chain

    monkeypatch.setattr(prune_module.BlockChain, "of", spy)
    return found


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_decoder_family_is_a_chain_of_its_blocks(name, monkeypatch):
    keras.utils.set_random_seed(0)
    lm = causal_lm(name)
    x = tokens()
    found = _chain_of(monkeypatch)
    pruned = tfprune.prune_one_shot(lm, x, 0.5, method="wanda")
    (chain,) = found
    assert chain is not None, f"{name}: the blocks were not seen as a chain"
    blocks = [block for block, _ in chain.blocks]
    assert len(blocks) == 2 and all(b.name.endswith(("_0", "_1")) for b in blocks)
    # The last block's first weights were pruned from the inputs the pruned model gives
    # them (every block before it pruned): recompute their Wanda masks.
    source = chain.blocks[-1][1][0]
    target = next(t for t in one_shot_targets(pruned) if t.source is source)
    seen = []
    with Recorder([source], lambda _, t: seen.append(ops.convert_to_numpy(t))):
        pruned(x, training=False)
    rows = np.concatenate([target.view.rows(np.asarray(t)) for t in seen]).astype(np.float64)
    kept = target.view.to_matrix(ops.convert_to_numpy(target.target.weight) != 0)
    original = target.view.to_matrix(_original_kernel(lm, pruned, target.target.weight))
    expected = ~wanda_mask(original, np.sum(rows**2, axis=0), 0.5)
    np.testing.assert_array_equal(kept, expected & (original != 0))


def _original_kernel(lm, pruned, kernel) -> np.ndarray:
    """The weight of `lm` (the dense model) at the place of `kernel` in `pruned`."""
    names = [w.path for w in pruned.weights]
    index = next(i for i, w in enumerate(pruned.weights) if w is kernel)
    path = names[index].replace("prune_low_magnitude_", "")
    dense = {w.path.replace("prune_low_magnitude_", ""): w for w in lm.weights}
    return ops.convert_to_numpy(dense[path])


def test_verbose_one_shows_a_progress_bar_per_block_and_two_a_line_per_weight(capsys):
    model, data = causal_lm("GPT2"), tokens()
    tfprune.prune_one_shot(model, data, 0.5, method="wanda", verbose=1)
    out, err = capsys.readouterr()
    blocks = 2  # the tiny backbone's transformer layers
    assert f"{blocks}/{blocks}" in out  # the Progbar's last count
    assert "prune_one_shot:" not in err
    tfprune.prune_one_shot(model, data, 0.5, method="wanda", verbose=2)
    out, err = capsys.readouterr()
    assert f"/{blocks})" in err and "wanda, 50.0% pruned" in err and "/1 " not in out
    x = np.random.default_rng(0).standard_normal((8, 12)).astype("float32")
    tfprune.prune_one_shot(mlp(), x, 0.5, verbose=1, sequential="layers")
    assert "4/4" in capsys.readouterr().out  # a step per layer
    tfprune.prune_one_shot(model, data, 0.5, method="wanda", verbose=0)
    assert capsys.readouterr() == ("", "")
    with pytest.raises(ValueError, match="verbose"):
        tfprune.prune_one_shot(model, data, 0.5, verbose=3)


def test_weights_that_read_one_tensor_share_one_product(monkeypatch):
    # A Llama block's query, key and value projections read one tensor, and so do its gate
    # and up projections: 4 Gram products per block and batch for its 7 weights.
    import keras_hub

    from tfprune.calibration import statistics

    products = []
    own = statistics.Statistics.product

    def counted(self, rows):
        products.append(self.label)
        return own(self, rows)

    monkeypatch.setattr(statistics.Statistics, "product", counted)
    backbone = keras_hub.models.LlamaBackbone(
        vocabulary_size=64,
        num_layers=2,
        num_query_heads=4,
        num_key_value_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
    )
    ids = np.random.default_rng(0).integers(1, 64, (16, 12))
    data = {"token_ids": ids, "padding_mask": np.ones_like(ids, dtype=bool)}
    _, stats = tfprune.prune_one_shot(
        backbone,
        data,
        0.5,
        layers=["transformer_layer_*"],
        batch_size=8,
        in_place=True,
        return_stats=True,
    )
    assert len(stats) == 14 and len(products) == 2 * 2 * 4  # blocks x batches x products
    assert all(s.rows == 16 * 12 for s in stats)
