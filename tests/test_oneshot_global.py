"""`allocation="global"` in one shot: one magnitude ranking over all the pruned weights, the
same masks as `prune_low_magnitude(allocation="global")`, the total exact."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import tfprune


def mlp() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((16,))]
        + [keras.layers.Dense(16, activation="relu", name=f"fc{i}") for i in range(3)]
    )
    big = model.get_layer("fc1")
    big.kernel.assign(big.kernel * 10.0)  # large weights: few of them among the smallest
    return model


def masks(model) -> dict:
    return {
        w.path.split("/")[-2]: np.asarray(w) != 0
        for w in tfprune.strip_pruning(model).weights
        if w.path.endswith("kernel")
    }


def test_one_magnitude_ranking_over_every_weight_with_the_total_exact():
    model = mlp()
    x = np.zeros((8, 16), "float32")  # magnitude reads no data
    pruned, stats = tfprune.prune_one_shot(
        model, x, 0.6, method="magnitude", allocation="global", return_stats=True
    )
    kept = masks(pruned)
    total = sum(m.size for m in kept.values())
    assert total - sum(int(m.sum()) for m in kept.values()) == round(0.6 * total)
    share = {s.name.split("/")[0]: s.sparsity for s in stats}
    assert share["fc1"] < 0.2 and min(share["fc0"], share["fc2"]) > 0.7
    # Every pruned weight is smaller than every kept one, across layers.
    values = {
        w.path.split("/")[-2]: np.abs(np.asarray(w))
        for w in model.weights
        if w.path.endswith("kernel")
    }
    pruned_max = max(v[~kept[p]].max() for p, v in values.items() if (~kept[p]).any())
    kept_min = min(v[kept[p]].min() for p, v in values.items())
    assert pruned_max < kept_min
    # Fine-tuning keeps one ranking: the wrappers share an allocation group.
    groups = {w.allocation_group for w in tfprune.core.find.pruning_wrappers(pruned)}
    assert len(groups) == 1 and None not in groups


def test_it_gives_prune_low_magnitudes_global_masks():
    model = mlp()
    x = np.random.default_rng(0).standard_normal((32, 16)).astype("float32")
    one_shot = masks(tfprune.prune_one_shot(model, x, 0.6, method="magnitude", allocation="global"))
    gradual = tfprune.prune_low_magnitude(
        model, tfprune.ConstantSparsity(0.6, begin_step=0), allocation="global"
    )
    gradual.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    gradual.fit(x, x, epochs=1, batch_size=32, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    for path, mask in masks(gradual).items():
        np.testing.assert_array_equal(one_shot[path], mask)


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_global_is_for_magnitude_only(method):
    x = np.zeros((8, 16), "float32")
    with pytest.raises(ValueError, match="allocation='owl'"):
        tfprune.prune_one_shot(mlp(), x, 0.5, method=method, allocation="global")
