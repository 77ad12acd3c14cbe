"""Masks restored behind the wrappers' back, and the warning that says so.

Restoring weights restores masks too (`set_weights`, `EarlyStopping(restore_best_weights=True)`,
a checkpoint): the model stays consistent, but it may be less sparse than its last pruning
update left it. Each wrapper remembers the sparsity it last wrote (`written_sparsity`).
"""

from __future__ import annotations

import warnings
from typing import Any

from tfprune.core.find import pruning_wrappers
from tfprune.core.wrapper import PruneLowMagnitude

__all__ = ["replaced_masks", "warn_replaced_masks"]


def replaced_masks(model: Any) -> list[tuple[PruneLowMagnitude, float, float]]:
    """The wrappers whose masks were replaced behind their back, with both sparsities.

    Restoring weights restores masks too (`set_weights`, `EarlyStopping(restore_best_weights=
    True)`): the model stays consistent, but it may be less sparse than its last update left it.

    Returns:
        `(wrapper, sparsity now, sparsity it last wrote)` for each wrapper where they differ.
    """
    found = []
    for w in pruning_wrappers(model):
        written = w.written_sparsity
        if written is None:
            continue
        now = w.mask_sparsity()
        if abs(now - written) > 1e-9:
            found.append((w, now, written))
    return found


def warn_replaced_masks(model: Any, stacklevel: int = 2) -> None:
    """Warns once, naming every wrapper whose masks were replaced (see `replaced_masks`).

    The current masks are then taken as the wrappers' own, so each restore is told once.
    """
    found = replaced_masks(model)
    if not found:
        return
    layers = ", ".join(f"'{w.name}' is {now:.1%} sparse (was {was:.1%})" for w, now, was in found)
    warnings.warn(
        f"Masks of model '{model.name}' were restored together with its weights, after the "
        f"last pruning update: {layers}. This is what set_weights, or "
        "EarlyStopping(restore_best_weights=True), does: the model is consistent (its weights "
        "are zero where masked) but less sparse than pruned. To keep the target sparsity, let "
        "EarlyStopping start after the ramp (start_from_epoch=<first epoch after end_step>) "
        "or keep training with UpdatePruningStep.",
        UserWarning,
        stacklevel=stacklevel,
    )
    for w, _, _ in found:
        w.adopt_masks()
