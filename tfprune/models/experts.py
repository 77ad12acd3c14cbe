"""Mixture-of-experts layers: expert banks whose kernels stack one matrix per expert.

KerasHub's Mixtral and Qwen 3 MoE compute all their experts at once from stacked kernels
`[experts, inputs, outputs]` (an `ExpertBank` layer), and a sparse MoE block around the bank
routes each token to `top_k` of them with a Dense router. Pruning sees such a bank as one layer
with a rule of its own (its stacked kernels are prunable, see `tfprune.models.registry`):

- `expert_axis` marks a stacked kernel, so that masks are computed per expert, each with its
  own exact count;
- `expert_bank` describes a bank for one-shot pruning: which inputs each kernel multiplies
  (the tokens, or the expert's own hidden units), and which tokens reach each expert.

A bank is known by its exact class (a subclass may compute something else). Other MoE layers
are pruned as any layer is: a custom layer lists its weights with `get_prunable_weights()`,
and those are ranked as whole weights.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import keras
from keras import ops

from tfprune.models.walk import walk

__all__ = ["ExpertBank", "expert_axis", "expert_bank", "expert_kernels", "is_expert_bank"]


def _mixtral_hidden(bank: Any, tokens: Any) -> Any:
    gate = ops.einsum("th,ehm->etm", tokens, bank._expert_feedforward_gate_dense)
    up = ops.einsum("th,ehm->etm", tokens, bank._expert_feedforward_intermediate_dense)
    return bank.activation(gate) * up


def _qwen3_hidden(bank: Any, tokens: Any) -> Any:
    gate_up = ops.einsum("th,ehm->etm", tokens, bank._expert_feedforward_gate_dense)
    gate, up = ops.split(gate_up, 2, axis=-1)
    return up * bank.activation(gate)


@dataclasses.dataclass(frozen=True)
class _Kind:
    kernels: tuple[str, ...]  # attributes, in the order the bank's call uses them
    hidden_inputs: tuple[bool, ...]  # whether each kernel multiplies the experts' hidden units
    hidden: Callable[[Any, Any], Any]  # (bank, tokens [T, in]) -> hidden units [E, T, units]


_GATE, _UP, _DOWN = (
    "_expert_feedforward_gate_dense",
    "_expert_feedforward_intermediate_dense",
    "_expert_feedforward_output_dense",
)
# Class name -> what it holds; the classes of `keras_hub` only (see `is_expert_bank`).
_KINDS = {
    "MixtralMoeExperts": _Kind((_GATE, _UP, _DOWN), (False, False, True), _mixtral_hidden),
    "Qwen3MoeExperts": _Kind((_GATE, _DOWN), (False, True), _qwen3_hidden),
}


def _kind(layer: Any) -> _Kind | None:
    cls = type(layer)
    if not cls.__module__.startswith("keras_hub."):
        return None
    return _KINDS.get(cls.__name__)


def is_expert_bank(layer: Any) -> bool:
    """Whether `layer` is one of KerasHub's expert banks (Mixtral's, Qwen 3 MoE's).

    Example:

    >>> is_expert_bank(keras.layers.Dense(2))
    False
    """
    return _kind(layer) is not None


def expert_kernels(layer: Any) -> list[Any]:
    """The stacked `[experts, inputs, outputs]` kernels of a built expert bank, in call order."""
    kind = _kind(layer)
    return [] if kind is None else [getattr(layer, name) for name in kind.kernels]


def expert_axis(layer: Any, weight: Any) -> int | None:
    """0 when `weight` is a stacked expert kernel of an expert bank inside `layer` (itself
    included): axis 0 numbers the experts. None for every other weight."""
    for part in walk(layer):
        if any(weight is kernel for kernel in expert_kernels(part)):
            return 0
    return None


@dataclasses.dataclass(frozen=True)
class ExpertBank:
    """An expert bank as one-shot pruning sees it.

    Attributes:
        layer: The bank.
        router: The Dense layer whose logits choose the experts (the sparse MoE block's).
        top_k: How many experts each token reaches.
    """

    layer: Any
    router: Any
    top_k: int

    @property
    def experts(self) -> int:
        return int(self.layer.num_experts)

    def hidden_input(self, weight: Any) -> bool:
        """Whether `weight` multiplies the experts' hidden units (else the tokens)."""
        kind = _kind(self.layer)
        return any(
            weight is getattr(self.layer, name) and hidden
            for name, hidden in zip(kind.kernels, kind.hidden_inputs, strict=True)
        )

    def routed(self, tokens: Any) -> Any:
        """Which experts each token reaches: a boolean `[tokens, experts]` tensor, from the
        router's top-k logits (its softmax keeps their order)."""
        _, chosen = ops.top_k(self.router(tokens), k=self.top_k)
        return ops.sum(ops.one_hot(chosen, self.experts), axis=1) > 0

    def hidden(self, tokens: Any) -> Any:
        """The experts' hidden units for `tokens` ([tokens, inputs]): `[experts, tokens,
        units]`, from the bank's current weights."""
        return _kind(self.layer).hidden(self.layer, tokens)


def expert_bank(root: Any, layer: Any) -> ExpertBank | None:
    """`layer` as an `ExpertBank`, with the router of the sparse MoE block inside `root` that
    holds it; None when `layer` is no expert bank or no such block holds it."""
    if not is_expert_bank(layer):
        return None
    for block in walk(root):
        router = getattr(block, "_sparse_feedforward_gate_dense", None)
        if getattr(block, "expert_bank", None) is layer and isinstance(router, keras.layers.Dense):
            return ExpertBank(layer, router, int(block.top_k))
    return None
