"""The weights one-shot pruning visits: each with the layer whose input it multiplies.

A wrapper's `Target` (a weight and its mask) becomes a `OneShotTarget` with a `source` (the
layer whose calls give the weight's input rows: the weight's own layer, or for a recurrent
cell's kernel the recurrent layer) and the weight's matrix view, or None when it multiplies no
input (embeddings, depthwise and recurrent kernels: those are pruned by magnitude). A mixture
of experts' stacked kernel has no view but its `ExpertBank`: each expert is pruned from the
tokens routed to it (`tfprune.oneshot.experts`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras

from tfprune.core.find import pruning_wrappers
from tfprune.masks.views import MatrixView
from tfprune.models.experts import ExpertBank, expert_axis, expert_bank
from tfprune.models.views import matrix_view
from tfprune.models.walk import owner_of, walk

__all__ = ["OneShotTarget", "one_shot_targets"]


@dataclasses.dataclass
class OneShotTarget:
    """One weight to prune in one shot.

    Attributes:
        wrapper: Its `PruneLowMagnitude` wrapper.
        target: Its `Target` in the wrapper (weight, mask, label, layout).
        source: The layer whose input the weight multiplies.
        view: The weight as a matrix of that input, or None.
        sparsity: The sparsity its wrapper's schedule asks for at step 0.
        name: "<layer>/<weight label>", as the report names it.
        bank: For a stacked expert kernel, the expert bank that holds it (its `source`), with
            the router that sends tokens to each expert; else None.
    """

    wrapper: Any
    target: Any
    source: Any
    view: MatrixView | None
    sparsity: float
    name: str
    bank: ExpertBank | None = None


def one_shot_targets(model: Any) -> list[OneShotTarget]:
    """The weights of every wrapper of `model`, in the model's order."""
    found = []
    for wrapper in pruning_wrappers(model):
        _, sparsity = wrapper.pruning_schedule(0)
        cells = {
            id(sub.cell): sub for sub in walk(wrapper.layer) if isinstance(sub, keras.layers.RNN)
        }
        for target in wrapper.targets:
            weight = target.weight
            owner = owner_of(wrapper.layer, weight)
            parent = owner if isinstance(owner, keras.layers.RNN) else cells.get(id(owner))
            view = matrix_view(owner, weight, parent)
            source = parent if parent is not None else owner
            label = target.label
            if "/" not in label and not weight.path.endswith(f"{wrapper.layer.name}/{label}"):
                label = weight.path  # inside Bidirectional: forward_gru/gru_cell/kernel
            name = f"{wrapper.layer.name}/{label}"
            bank = expert_bank(model, owner) if expert_axis(owner, weight) == 0 else None
            found.append(OneShotTarget(wrapper, target, source, view, sparsity, name, bank))
    return found
