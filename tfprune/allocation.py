"""Global allocation: the masks of several wrappers computed with one threshold across them."""

from __future__ import annotations

from typing import Any

from tfprune.channel_masks import update_channel_masks
from tfprune.solvers import pattern_masks

__all__ = ["update_masks_together"]


def update_masks_together(wrappers: list[Any], sparsity: float, step: int | None = None) -> None:
    """Recomputes the masks of several wrappers with one magnitude threshold across them all.

    Exactly `round(sparsity * n)` entries are masked over the `n` entries of all their pruned
    weights, the smallest magnitudes of `weight * mask` first, ties broken by position in the
    order of `wrappers` and their weights; each weight ends up with its own sparsity.
    Wrappers pruned by channels (`tfprune.prune_channels`) mask `round(sparsity * groups)`
    whole channel groups instead (see `tfprune.channel_masks`).

    Args:
        wrappers: The wrappers pruned together (an allocation group).
        sparsity: Target sparsity of the total, in [0, 1).
        step: The training step to record in each `pruning_step`. Defaults to None.

    Raises:
        ValueError: If a weight holds NaN or Inf values.
    """
    if any(wrapper.channels is not None for wrapper in wrappers):
        update_channel_masks(wrappers, sparsity, step)
        return
    pairs = [(wrapper, w, m) for wrapper in wrappers for w, m in wrapper.pruned_weights]
    views = [view for wrapper in wrappers for view in wrapper._views.items]
    effective = [wrapper._effective(w, m) for wrapper, w, m in pairs]
    names = [wrapper._describe(w) for wrapper, w, _ in pairs]
    patterns = {wrapper.pattern for wrapper in wrappers}
    if len(patterns) != 1:
        raise ValueError(
            "Wrappers pruned together must share one pattern (block size, pooling, N:M). "
            f"Received: {sorted(map(str, patterns))}"
        )
    computed = pattern_masks(patterns.pop(), effective, sparsity, names, views)
    for (wrapper, w, m), values, new in zip(pairs, effective, computed, strict=True):
        wrapper._set_mask(w, m, values, new)
    for wrapper in wrappers:
        wrapper._finish_update(step)
