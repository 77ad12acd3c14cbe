"""The models users have: subclassed models, composite layers, layer choice, global allocation."""

from __future__ import annotations

import warnings
import zipfile

import h5py
import keras
import numpy as np
import pytest
from keras import layers, ops

import tfprune
from tfprune.core.find import pruning_wrappers


def floats(*shape, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype("float32")


@keras.saving.register_keras_serializable(package="tests")
class Block(layers.Layer):
    """A residual block whose Dense layers are built on its first call."""

    def __init__(self, units=8, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.inner = layers.Dense(units, activation="relu")
        self.outer = layers.Dense(units)

    def call(self, x):
        return x + self.outer(self.inner(x))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="tests")
class Net(keras.Model):
    """A subclassed model holding layers directly, in a list, in a dict, and shared."""

    def __init__(self, width=8, **kwargs):
        super().__init__(**kwargs)
        self.width = width
        self.stem = layers.Dense(width)
        self.blocks = [Block(width), Block(width)]
        self.heads = {"logits": layers.Dense(3)}
        self.norm = layers.LayerNormalization()

    def call(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.heads["logits"](self.norm(x))

    def get_config(self):
        return {**super().get_config(), "width": self.width}


def train(model, x, steps=4):
    model.compile(optimizer="adam", loss="mse")
    y = np.zeros_like(ops.convert_to_numpy(model(x[:1])), shape=None)
    y = np.zeros((len(x), *y.shape[1:]), "float32")
    model.fit(
        x,
        y,
        batch_size=len(x) // steps,
        epochs=1,
        verbose=0,
        shuffle=False,
        callbacks=[tfprune.UpdatePruningStep()],
    )
    return model


def test_unbuilt_subclassed_model_is_pruned_in_place_and_round_trips(tmp_path):
    keras.utils.set_random_seed(0)
    x = floats(32, 5)
    net = Net()
    pruned = tfprune.prune_low_magnitude(net, tfprune.ConstantSparsity(0.5, 0, frequency=1))
    assert pruned is net and isinstance(net, Net)
    assert isinstance(net.stem, tfprune.PruneLowMagnitude)
    assert isinstance(net.heads["logits"], tfprune.PruneLowMagnitude)
    assert all(isinstance(b.inner, tfprune.PruneLowMagnitude) for b in net.blocks)
    train(net, x)
    report = tfprune.sparsity_report(net)
    assert len(report) == 6 and all(row.sparsity == 0.5 for row in report)
    net.save(tmp_path / "net.keras")
    loaded = keras.models.load_model(tmp_path / "net.keras")
    assert isinstance(loaded, Net) and isinstance(loaded.blocks[1].outer, tfprune.PruneLowMagnitude)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), net.predict(x, verbose=0), atol=1e-6)
    train(loaded, x)  # keeps training from the saved step
    expected = net.predict(x, verbose=0)
    stripped = tfprune.strip_pruning(net)
    assert stripped is net and type(net) is Net
    assert not pruning_wrappers(net) and isinstance(net.blocks[0].inner, layers.Dense)
    np.testing.assert_allclose(net.predict(x, verbose=0), expected, atol=1e-6)
    kernel = ops.convert_to_numpy(net.stem.kernel)
    assert np.mean(kernel == 0) == 0.5


def test_built_subclassed_model_is_pruned_through_a_copy():
    keras.utils.set_random_seed(0)
    x = floats(8, 5)
    net = Net()
    before = net.predict(x, verbose=0)
    pruned = tfprune.prune_low_magnitude(net)
    assert pruned is not net and not pruning_wrappers(net)
    np.testing.assert_allclose(pruned.predict(x, verbose=0), before, atol=1e-6)
    assert len(pruning_wrappers(pruned)) == 6


def test_a_built_subclassed_model_that_cannot_be_copied_is_pruned_in_place():
    class Plain(keras.Model):
        def __init__(self, units):  # no get_config: Keras cannot re-create it
            super().__init__()
            self.d = layers.Dense(units)

        def call(self, x):
            return self.d(x)

    x = floats(8, 3)
    model = Plain(2)
    model(x)
    kernel = model.d.kernel
    with pytest.raises(ValueError, match="(?s)built subclassed model 'plain.*in_place=True"):
        tfprune.prune_low_magnitude(model, in_place=False)
    with pytest.warns(UserWarning, match="(?s)cannot be copied.*pruned in place"):
        pruned = tfprune.prune_low_magnitude(model, tfprune.ConstantSparsity(0.5, 0))
    assert pruned is model and isinstance(model.d, tfprune.PruneLowMagnitude)
    assert model.d.layer.kernel is kernel  # the same variable, the mask beside it
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, x[:, :2], epochs=1, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    assert tfprune.sparsity_report(model).sparsity == 0.5
    stripped = tfprune.strip_pruning(model)
    assert stripped is model and model.d.kernel is kernel
    assert np.count_nonzero(keras.ops.convert_to_numpy(kernel)) == 3
    unbuilt = Plain(2)
    assert tfprune.prune_low_magnitude(unbuilt) is unbuilt  # in place needs no copy


def test_a_layer_whose_get_config_fails_is_named_and_pruned_in_place():
    class Broken(layers.Dense):
        def get_config(self):
            return {**super().get_config(), "scale": self.scale}  # never set

    inputs = keras.Input((3,))
    broken = Broken(2, name="broken")
    model = keras.Model(inputs, broken(layers.Dense(4)(inputs)))
    x = floats(4, 3)
    with pytest.raises(
        ValueError, match=r"(?s)layer 'broken' of type Broken: its get_config\(\) raises.*in_place"
    ):
        tfprune.prune_low_magnitude(model, in_place=False)
    with pytest.warns(UserWarning, match="pruned in place"):
        pruned = tfprune.prune_low_magnitude(model)
    wrapped = {w.layer.name: w.layer for w in pruning_wrappers(pruned)}
    assert wrapped["broken"] is broken  # no copy: the model's own layer
    np.testing.assert_allclose(pruned.predict(x, verbose=0), model.predict(x, verbose=0))
    stripped = tfprune.strip_pruning(pruned)  # cannot copy it either: the same layer objects
    assert broken in stripped.layers and not pruning_wrappers(stripped)


class KeywordBlock(layers.Layer):
    """Called as KerasHub's Bart and T5 call their blocks: the first input by keyword, and a
    tensor keyword next to plain ones."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = layers.Dense(4)

    def call(self, sequence, bias=None, use_bias=False, scale=1.0):
        y = self.dense(sequence) * scale
        return y + bias if use_bias else y


@pytest.mark.parametrize(
    "call",
    [
        lambda block, x: block(sequence=x, bias=x),
        lambda block, x: block(x, bias=x, use_bias=True, scale=2.0),
    ],
    ids=["first-input-by-keyword", "tensor-and-plain-keywords"],
)
def test_layers_called_with_keywords_are_pruned(call):
    x = keras.Input((4,))
    model = keras.Model(x, call(KeywordBlock(name="block"), x))
    pruned = tfprune.prune_low_magnitude(model, tfprune.ConstantSparsity(0.5, begin_step=0))
    data = floats(3, 4)
    np.testing.assert_allclose(pruned.predict(data, verbose=0), model.predict(data, verbose=0))
    (wrapper,) = pruning_wrappers(pruned)
    wrapper.update_masks(0.5)
    assert tfprune.sparsity_report(pruned).sparsity == 0.5


@keras.saving.register_keras_serializable(package="tests")
class CallBuilt(layers.Layer):
    """Builds its part on its first call, not in `build` (as KerasHub's T5 blocks do)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = layers.Dense(6)

    def build(self, input_shape):
        pass

    def call(self, x):
        return self.dense(x)


def test_a_layer_whose_parts_build_on_first_call_saves_and_loads(tmp_path):
    inputs = keras.Input((5,))
    model = keras.Model(inputs, CallBuilt(name="lazy")(inputs))
    pruned = tfprune.prune_low_magnitude(model, tfprune.ConstantSparsity(0.5, begin_step=0))
    (wrapper,) = pruning_wrappers(pruned)
    wrapper.update_masks(0.5)
    pruned.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    x = floats(4, 5)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), pruned.predict(x, verbose=0))
    assert tfprune.sparsity_report(loaded).sparsity == 0.5


def test_a_config_that_forgets_a_constructor_argument_is_refused():
    class Scaled(layers.Layer):
        def __init__(self, units, scale=1.0, **kwargs):
            super().__init__(**kwargs)
            self.scale = scale
            self.dense = layers.Dense(units)

        def call(self, x):
            return self.dense(x) * self.scale

        def get_config(self):  # forgets `scale`, adds what __init__ refuses
            return {**super().get_config(), "units": self.dense.units, "derived": 1}

    inputs = keras.Input((4,))
    scaled = Scaled(3, scale=10.0, name="scaled")
    model = keras.Model(inputs, scaled(inputs))
    with pytest.raises(ValueError, match=r"leaves out the constructor arguments \['scale'\]"):
        tfprune.prune_low_magnitude(model, in_place=False)
    # No copy, then: the model's own layer, scale and all.
    with pytest.warns(UserWarning, match="pruned in place"):
        pruned = tfprune.prune_low_magnitude(model)
    assert pruning_wrappers(pruned)[0].layer is scaled


def test_a_layer_out_of_reach_is_named():
    class Hidden(keras.Model):
        def __init__(self):
            super().__init__()
            self.table = {"deep": [layers.Dense(2, name="buried")]}  # two containers deep
            self.head = layers.Dense(2)

        def call(self, x):
            return self.head(self.table["deep"][0](x))

    with pytest.raises(ValueError, match=r"Cannot reach layers \['buried'\]"):
        tfprune.prune_low_magnitude(Hidden())


def _functional():
    keras.utils.set_random_seed(1)
    inputs = keras.Input((6,), dtype="int32")
    x = layers.Embedding(40, 16, name="embed")(inputs)
    x = layers.MultiHeadAttention(2, 8, name="attention")(x, x)
    x = layers.LSTM(8, return_sequences=True, name="lstm")(x)
    x = layers.Conv1D(8, 3, name="conv")(x)
    x = layers.Flatten()(x)
    return keras.Model(inputs, layers.Dense(3, name="head")(x))


def test_built_multi_input_layers_stay_built_and_every_weight_is_pruned():
    model = _functional()
    pruned = tfprune.prune_low_magnitude(model, tfprune.ConstantSparsity(0.8, 0))
    for wrapper in pruning_wrappers(pruned):
        wrapper.update_masks(0.8)
    rows = tfprune.sparsity_report(pruned)
    assert {row.layer for row in rows} == {"embed", "attention", "lstm", "conv", "head"}
    assert len(rows) == 1 + 4 + 2 + 1 + 1
    for row in rows:
        assert row.nonzeros == int(np.prod(row.shape)) - round(0.8 * int(np.prod(row.shape)))


def test_keras_operations_in_a_graph_are_kept():
    inputs = keras.Input((4,))
    x = layers.Dense(8)(inputs)
    x = layers.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)  # MobileNetV3's hard sigmoid: operations
    model = keras.Model(inputs, layers.Dense(2)(x))
    pruned = tfprune.prune_low_magnitude(model)
    x = floats(4, 4)
    np.testing.assert_allclose(pruned.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_a_composite_layer_is_pruned_through_its_parts_with_exact_counts():
    @keras.saving.register_keras_serializable(package="tests")
    class Pair(layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.a, self.b = layers.Dense(12), layers.Dense(7)

        def call(self, x):
            return self.b(self.a(x))

    inputs = keras.Input((10,))
    model = keras.Model(inputs, Pair(name="pair")(inputs))
    pruned = tfprune.prune_low_magnitude(model, tfprune.ConstantSparsity(0.3, 0))
    (wrapper,) = pruning_wrappers(pruned)
    wrapper.update_masks(0.3)
    counts = [int(np.sum(~ops.convert_to_numpy(m))) for _, m in wrapper.pruned_weights]
    assert counts == [round(0.3 * 120), round(0.3 * 84)]


def test_layers_choose_what_is_pruned_and_with_which_schedule():
    model = _functional()
    slow = tfprune.ConstantSparsity(0.5, 0)
    fast = tfprune.ConstantSparsity(0.9, 0)
    pruned = tfprune.prune_low_magnitude(
        model, layers={"embed": None, "head": None, layers.Conv1D: fast, "*": slow}
    )
    chosen = {w.layer.name: w.pruning_schedule for w in pruning_wrappers(pruned)}
    assert chosen == {"attention": slow, "lstm": slow, "conv": fast}
    listed = tfprune.prune_low_magnitude(model, slow, layers=["att*", layers.LSTM])
    assert sorted(w.layer.name for w in pruning_wrappers(listed)) == ["attention", "lstm"]
    picked = tfprune.prune_low_magnitude(model, layers=[lambda layer: layer.name == "head"])
    assert [w.layer.name for w in pruning_wrappers(picked)] == ["head"]


@pytest.mark.parametrize(
    ("layers_argument", "error", "match"),
    [
        (["emb*", "nothing_*"], ValueError, r"names 'nothing_\*', which match no layer"),
        ({"*": None}, ValueError, "leaves no layer"),
        ("embed", TypeError, "Argument `layers` must be"),
        ([3], TypeError, "Received: 3 of type int"),
        ({"embed": 0.5}, TypeError, "must be a tfprune.PruningSchedule or None"),
    ],
)
def test_bad_layer_choices_are_clear_errors(layers_argument, error, match):
    with pytest.raises(error, match=match):
        tfprune.prune_low_magnitude(_functional(), layers=layers_argument)


def test_global_allocation_reaches_the_total_with_one_threshold(tmp_path):
    keras.utils.set_random_seed(3)
    inputs = keras.Input((20,))
    x = layers.Dense(30, name="small", kernel_initializer=keras.initializers.RandomNormal(0, 0.01))(
        inputs
    )
    model = keras.Model(inputs, layers.Dense(10, name="large")(x))
    schedule = tfprune.ConstantSparsity(0.6, 0, frequency=1)
    pruned = tfprune.prune_low_magnitude(model, schedule, allocation="global")
    x = floats(16, 20)
    train(pruned, x, steps=2)
    masks = [ops.convert_to_numpy(m) for w in pruning_wrappers(pruned) for _, m in w.pruned_weights]
    total = sum(m.size for m in masks)
    assert sum(int(np.sum(~m)) for m in masks) == round(0.6 * total)
    per_layer = [float(np.mean(~m)) for m in masks]
    assert per_layer[0] > 0.8 and per_layer[1] < 0.2  # the small weights go first
    pruned.save(tmp_path / "g.keras")
    loaded = keras.models.load_model(tmp_path / "g.keras")
    assert {w.allocation_group for w in pruning_wrappers(loaded)} == {f"{model.name}/0"}
    with pytest.raises(ValueError, match='`allocation` must be "layer" or "global"'):
        tfprune.prune_low_magnitude(model, allocation="all")


def test_masks_take_one_byte_a_weight_in_checkpoints(tmp_path):
    model = tfprune.prune_low_magnitude(_functional())
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as archive:
        archive.extract("model.weights.h5", tmp_path)
    dtypes = {}

    def record(name, obj):
        dtypes[name] = getattr(obj, "dtype", None)  # returns None: visit everything

    with h5py.File(tmp_path / "model.weights.h5") as weights:
        weights.visititems(record)
    masks = [d for d in dtypes.values() if d is not None and d == np.dtype(bool)]
    assert len(masks) == 9 and all(d.itemsize == 1 for d in masks)
    # Each weight is stored once: by its layer, not again by the wrapper around it.
    floats_stored = sum(1 for d in dtypes.values() if d is not None and d.kind == "f")
    assert floats_stored == len(_functional().weights)


@keras.saving.register_keras_serializable(package="tests")
class Lookup(layers.Layer):
    """A layer with a large weight that no rule prunes."""

    def build(self, input_shape):
        self.table = self.add_weight(shape=(input_shape[-1], 400), name="table")

    def call(self, x):
        return x @ self.table


def test_a_large_share_of_unprunable_weights_is_told():
    inputs = keras.Input((16,))
    model = keras.Model(inputs, layers.Dense(4, name="head")(Lookup(name="lookup")(inputs)))
    with pytest.warns(
        UserWarning,
        match=r"of the parameters .* no rule prunes.*'lookup' \(6,400\).*PrunableLayer.*"
        r"custom layer\(s\) 'lookup'",
    ):
        tfprune.prune_low_magnitude(model)
    # Keras's own layers leave such weights dense by design: no advice to write a rule.
    inputs = keras.Input((64,))
    norm = keras.Model(inputs, layers.Dense(1)(layers.LayerNormalization(name="norm")(inputs)))
    with pytest.warns(UserWarning, match=r"'norm' \(128\)\. These are weights tfprune keeps"):
        tfprune.prune_low_magnitude(norm)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        tfprune.prune_low_magnitude(_functional())
