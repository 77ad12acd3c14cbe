"""`prune_one_shot`: prune a trained model from a little calibration data, without training."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from tfprune.calibration.data import batches, replayable
from tfprune.calibration.recorder import Recorder
from tfprune.core.selection import LayerSelection
from tfprune.core.wrap import wrap_model
from tfprune.masks.magnitude import num_pruned
from tfprune.masks.patterns import Pattern
from tfprune.oneshot.blocks import BlockChain, model_feed
from tfprune.oneshot.groups import needs_data, prune_group, record
from tfprune.oneshot.owl import exact_counts, group_sparsities, outlier_ratio
from tfprune.oneshot.solve import (
    MAX_HESSIAN_INPUTS,
    OneShotLayer,
    Settings,
)
from tfprune.oneshot.targets import one_shot_targets
from tfprune.oneshot.wanda import wanda_scores
from tfprune.schedules import ConstantSparsity
from tfprune.utils.checks import check_choice, check_int, check_number
from tfprune.utils.progress import Stages

__all__ = ["prune_one_shot", "OneShotLayer", "METHODS", "MAX_HESSIAN_INPUTS"]

METHODS = ("magnitude", "wanda", "sparsegpt")


def prune_one_shot(
    model: Any,
    calibration_data: Any,
    sparsity: float | None = 0.5,
    *,
    method: str = "sparsegpt",
    pattern: Any = None,
    layers: Any = None,
    batch_size: int = 32,
    dampening: float = 0.01,
    block_size: int = 128,
    verbose: bool | int = False,
    allocation: str = "layer",
    precision: str = "float32",
    return_stats: bool = False,
    in_place: bool | None = None,
    sequential: str | bool = "blocks",
) -> Any:
    """Prunes a trained model in one pass over calibration data, with no training.

    In the order the model calls its layers, each weight is pruned from the inputs its layer
    receives when the calibration data run through the model, the layers before it already
    pruned (as SparseGPT and Wanda do). `method`:

    * "magnitude": the smallest `|w|`, as `prune_low_magnitude` would.
    * "wanda" (Sun et al. 2023): the smallest `|w| * ||x||` within each output, no update.
    * "sparsegpt" (Frantar & Alistarh 2023): masks chosen column block by column block from
      the inverse Hessian of the layer's inputs, and the remaining weights updated to make up
      for the pruned ones (least-squares reconstruction of the layer's outputs).

    Weights that multiply the layer's input take the method: Dense, EinsumDense (attention
    projections included), Conv1D/2D/3D (as im2col) and the input kernels of LSTM, GRU and
    SimpleRNN. Embeddings, depthwise, grouped and transposed convolutions and recurrent kernels
    are pruned by magnitude. Each weight prunes exactly `round(sparsity * size)` entries (N:M:
    m of every n input channels).

    Mixtures of experts (stacked `[experts, ...]` kernels, as KerasHub's Mixtral and Qwen 3
    MoE): each expert is pruned on its own, exact counts per expert, from the statistics of
    the calibration tokens routed to it; an expert no token reaches is pruned by magnitude,
    with a `UserWarning` and a `note` in its report row (one row per expert).

    Memory: calibration runs in batches of `batch_size`; statistics are accumulated, never the
    activations. SparseGPT keeps a float64 `d x d` Hessian for a weight with `d` inputs (a
    Dense layer's input width, a Conv2D's `kh * kw * C_in`); `d` may be up to
    `MAX_HESSIAN_INPUTS` (8192: 512 MiB), beyond which it raises: use "wanda" for such layers.

    Time: with `sequential="blocks"` (the default), a model that is a chain of blocks (a
    KerasHub backbone's transformer layers, a Sequential model's layers: each block taking
    the previous one's output, with the same masks) runs about two forward passes over the
    calibration data in all: the first block's inputs are kept, each block is run alone to
    record the inputs of all its weights, pruned, and run again to give the next block its
    inputs. Other models, and `sequential="layers"`, run one forward pass of the whole model
    per layer whose inputs are read (each layer then sees every layer before it pruned, also
    inside its block). `sequential=False` reads every weight's inputs from the dense model in
    one pass.

    Args:
        model: A built Sequential or Functional model (a KerasHub task or backbone too).
        calibration_data: The inputs (no labels): an array, a list of arrays or a dict for a
            multi-input model, or an iterable of batches (a `tf.data.Dataset`, or a generator,
            whose batches are then kept in memory: the data are read more than once;
            `(x, y)` tuples are read as `x`).
        sparsity: Fraction of each weight to prune, in [0, 1). With `pattern`, None or m/n.
            Defaults to 0.5.
        method: "magnitude", "wanda" or "sparsegpt". Defaults to "sparsegpt".
        pattern: None (unstructured) or `(m, n)`: m zeros in every n consecutive input
            channels, as `sparsity_m_by_n`. Defaults to None.
        layers: Which layers to prune, as `prune_low_magnitude`'s `layers`: None (all with
            prunable weights), a list of selectors, or a dict from selectors to a sparsity
            (float) or None (kept dense). Defaults to None.
        batch_size: Rows per forward pass for array data. Defaults to 32.
        dampening: SparseGPT's Hessian dampening, relative to its mean diagonal. Defaults to
            0.01.
        block_size: SparseGPT's column block. Defaults to 128.
        verbose: 0 or False (silent), 1 or True (a `keras.utils.Progbar` that advances
            as each block, or each layer when not `sequential="blocks"`, is pruned) or 2
            (one line per pruned weight and per block on stderr, with the time it took).
            Defaults to False.
        return_stats: Return `(model, stats)` with a list of `OneShotLayer`. Defaults to False.
        in_place: As `prune_low_magnitude`'s: None (copy, or the model's own layers when it
            cannot be copied, with a warning), True (the model's own layers: no second copy
            of a large model) or False (copy, or raise). Defaults to None.
        sequential: The order in which inputs are read: "blocks" (block by block, each block
            from the outputs of the pruned blocks before it), "layers" (layer by layer, each
            from the outputs of every pruned layer before it) or False (every layer from the
            dense model). Defaults to "blocks".
        allocation: "layer" (every weight pruned to `sparsity`, or to its own in `layers`),
            "global" (method="magnitude" only: one ranking of the magnitudes of all the
            weights sharing a sparsity, so that their total reaches it and each gets its own
            share, as `prune_low_magnitude`'s; fine-tuning keeps the ranking global) or
            "owl" (Outlier Weighed Layerwise sparsity, Yin et al. 2024: each block's weights,
            or each layer's where the model has no chain of blocks, get the target plus or
            minus up to `tfprune.oneshot.owl.SPREAD`, lower where the dense model's Wanda
            scores hold more outliers; the total over these weights exactly
            `round(sparsity * size)`; unstructured only). Defaults to "layer".
        precision: SparseGPT's solver: "float32" (with `keras.ops` on the backend's device,
            compiled where the backend compiles; a Cholesky factor that fails falls back to
            "float64" with the dampening raised, with a warning) or "float64" (numpy on the
            host, the same on every backend). Defaults to "float32".

    Returns:
        The model with `PruneLowMagnitude` wrappers holding the masks (a copy, `model` left as
        it was, unless pruned in place), each with `ConstantSparsity(sparsity, begin_step=0)`:
        fine-tune it with `UpdatePruningStep` (the masks stay: pruned weights are zero, the
        smallest), or `strip_pruning` and export it.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If `method`, `sparsity`, `pattern` or `batch_size` are out of range, the
            calibration data are empty or produce NaN/Inf activations, or a weight has more
            than `MAX_HESSIAN_INPUTS` inputs for SparseGPT.

    Example:

    >>> import numpy as np, keras, tfprune
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="fc")])
    >>> x = np.random.default_rng(0).standard_normal((64, 8)).astype("float32")
    >>> pruned = tfprune.prune_one_shot(model, x, 0.5, method="sparsegpt")
    >>> tfprune.sparsity_report(pruned).sparsity
    0.5
    """
    sparsity, m_by_n = _check(method, sparsity, pattern, batch_size, dampening, block_size, verbose)
    check_choice("allocation", allocation, ("layer", "global", "owl"))
    if allocation == "global" and method != "magnitude":
        raise ValueError(
            "allocation='global' ranks the magnitudes of all the pruned weights together, "
            f"which is method='magnitude'; {method}'s scores are not comparable across layers. "
            f"Received: method={method!r}. Use allocation='owl' for a non-uniform {method}."
        )
    check_choice("precision", precision, ("float32", "float64"))
    if allocation == "owl" and m_by_n is not None:
        raise ValueError(
            f"allocation='owl' gives each block its own sparsity; pattern={pattern!r} fixes "
            "it. Use one of them."
        )
    if sequential is not False:
        check_choice("sequential", sequential, ("blocks", "layers", False))
    # One pass per layer: batches that can be read once are kept.
    calibration_data = replayable(calibration_data, batch_size)
    if not isinstance(model, keras.Model):
        raise TypeError(
            "Argument `model` must be a built keras Model. "
            f"Received: model={model!r} of type {type(model).__name__}"
        )
    selection = LayerSelection(
        _layer_schedules(layers),
        ConstantSparsity(sparsity, begin_step=0),
        allocation="global" if allocation == "global" else "layer",
        group=model.name,
        pattern=Pattern.of(sparsity_m_by_n=m_by_n),
    )
    pruned = wrap_model(model, selection, in_place)
    targets = one_shot_targets(pruned)
    by_source: dict[int, list[Any]] = {}
    for t in targets:
        by_source.setdefault(id(t.source), []).append(t)
    stages = Stages("prune_one_shot", enabled=verbose == 2)
    order = _call_order(pruned, calibration_data, batch_size, targets)
    settings = Settings(method, m_by_n, dampening, block_size, precision)
    feed = model_feed(pruned, calibration_data, batch_size)
    data_sources = [s for s in order if any(needs_data(t, method) for t in by_source[id(s)])]
    stats: list[OneShotLayer] = []
    chain = None
    if sequential == "blocks":
        chain = BlockChain.of(pruned, calibration_data, batch_size, data_sources)
    if allocation == "global":
        _global(targets)
    if allocation == "owl":
        _owl(pruned, feed, order, by_source, sparsity, (calibration_data, batch_size), chain)
    if sequential is False:
        # Every weight from the inputs of the dense model.
        everything = [t for s in order for t in by_source[id(s)]]
        stats += prune_group(feed, everything, settings, stages, dense=True)
    elif chain is not None:
        # The weights that need no data first (an embedding: the first block's inputs are
        # read from it), then block by block.
        needless = [t for s in order for t in by_source[id(s)] if not needs_data(t, method)]
        stats += prune_group(feed, needless, settings, stages)
        chain.start()
        bar = _progbar(verbose, len(chain.blocks), "block")
        for i, (block, sources) in enumerate(chain.blocks):
            group = [t for s in sources for t in by_source[id(s)] if needs_data(t, method)]
            stats += prune_group(chain.feed, group, settings, stages)
            stages(f"block '{block.name}' pruned ({i + 1}/{len(chain.blocks)})")
            if bar is not None:
                bar.update(i + 1)
            if i + 1 < len(chain.blocks):
                chain.advance()
    else:
        bar = _progbar(verbose, len(order), "layer")
        for i, source in enumerate(order):
            stats += prune_group(feed, by_source[id(source)], settings, stages)
            if bar is not None:
                bar.update(i + 1)
    for wrapper in {id(t.wrapper): t.wrapper for t in targets}.values():
        wrapper.adopt_masks()
    return (pruned, stats) if return_stats else pruned


def _owl(pruned, feed, order, by_source, sparsity, data, chain) -> None:
    """Sets each weight's sparsity (and its wrapper's schedule) by OWL, from the Wanda scores
    of the dense model's inputs, one group per block (or per layer)."""
    viewed = [s for s in order if any(t.view is not None for t in by_source[id(s)])]
    if chain is None:
        chain = BlockChain.of(pruned, *data, viewed)
    groups = [list(sources) for _, sources in chain.blocks] if chain else [[s] for s in viewed]
    members = [[t for s in g for t in by_source[id(s)] if t.view is not None] for g in groups]
    scored = [t for group in members for t in group if t.bank is None]
    stats = record(feed, scored, Settings("wanda", None, 0.0, 1))
    ratios, sizes = [], []
    for group in members:
        scores = []
        for t in group:
            if id(t) in stats:
                values = np.asarray(keras.ops.convert_to_numpy(t.target.weight), np.float64)
                scores.append(wanda_scores(t.view.to_matrix(values), stats[id(t)].squares))
        ratios.append(outlier_ratio(scores))
        sizes.append(sum(int(np.prod(t.target.weight.shape)) for t in group))
    levels = group_sparsities(ratios, sizes, sparsity)
    flat = [(t, level) for group, level in zip(members, levels, strict=True) for t in group]
    weights = [int(np.prod(t.target.weight.shape)) for t, _ in flat]
    counts = exact_counts([level for _, level in flat], weights, sparsity)
    for (t, level), count, size in zip(flat, counts, weights, strict=True):
        t.sparsity = count / size if size else 0.0
        t.wrapper.pruning_schedule = ConstantSparsity(level, begin_step=0)


def _global(targets) -> None:
    """Sets each weight's sparsity to its share of one magnitude ranking over the weights
    that share a schedule (the `allocation="global"` of `prune_low_magnitude`): the total of
    each group is exactly `round(sparsity * size)`, the smallest magnitudes first, ties to the
    earlier weight."""
    groups: dict[str, list[Any]] = {}
    for t in targets:
        if t.wrapper.allocation_group is not None:
            groups.setdefault(t.wrapper.allocation_group, []).append(t)
    for group in groups.values():
        values = [
            np.abs(np.asarray(keras.ops.convert_to_numpy(t.target.weight), np.float32)).ravel()
            for t in group
        ]
        sizes = [v.size for v in values]
        k = num_pruned(sum(sizes), group[0].sparsity)
        flat = np.concatenate(values) if values else np.zeros(0, np.float32)
        if k == 0:
            counts = [0] * len(sizes)
        elif k == flat.size:
            counts = list(sizes)
        else:
            kth = np.partition(flat, k - 1)[k - 1]
            below = [int(np.count_nonzero(v < kth)) for v in values]
            tied = [int(np.count_nonzero(v == kth)) for v in values]
            need = k - sum(below)
            counts = []
            for b, tie in zip(below, tied, strict=True):
                take = min(tie, need)
                counts.append(b + take)
                need -= take
        for t, count, size in zip(group, counts, sizes, strict=True):
            t.sparsity = count / size if size else 0.0


def _progbar(verbose, target: int, unit: str) -> keras.utils.Progbar | None:
    """The progress bar of `verbose=1`, counting `target` `unit`s; None otherwise."""
    if verbose != 1 or target == 0:
        return None
    return keras.utils.Progbar(target, unit_name=unit)


def _check(method, sparsity, pattern, batch_size, dampening, block_size, verbose):
    check_choice("method", method, METHODS)
    check_int("batch_size", batch_size, 1)
    check_int("block_size", block_size, 1)
    check_number("dampening", dampening, 0.0, None)
    if isinstance(verbose, float) or verbose not in (0, 1, 2):
        raise ValueError(
            "Argument `verbose` must be 0/False, 1/True or 2. "
            f"Received: verbose={verbose!r} of type {type(verbose).__name__}"
        )
    m_by_n = Pattern.of(sparsity_m_by_n=pattern).m_by_n if pattern is not None else None
    if m_by_n is not None:
        ratio = m_by_n[0] / m_by_n[1]
        if sparsity is not None and sparsity != ratio:
            raise ValueError(
                f"With pattern={pattern!r}, argument `sparsity` must be None or {ratio:g} "
                f"(m/n). Received: sparsity={sparsity!r}"
            )
        return ratio, m_by_n
    return check_number("sparsity", sparsity, 0.0, 1.0), None


def _layer_schedules(layers: Any) -> Any:
    if not isinstance(layers, dict):
        return layers
    out = {}
    for key, value in layers.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise TypeError(
                "The values of argument `layers` must be sparsities (floats) or None. "
                f"Received: {key!r}: {value!r}"
            )
        out[key] = None if value is None else ConstantSparsity(value, begin_step=0)
    return out


def _call_order(model, data, batch_size, targets) -> list[Any]:
    """The sources of `targets` in the order one forward pass calls them (first call counts);
    sources the model never calls come last."""
    sources = list({id(t.source): t.source for t in targets}.values())
    order: dict[int, Any] = {}
    with Recorder(sources, lambda layer, _: order.setdefault(id(layer), layer)):
        # One row is enough to see the order (a batch where the data come in batches).
        model(next(batches(data, 1)), training=False)
    return list(order.values()) + [s for s in sources if id(s) not in order]
