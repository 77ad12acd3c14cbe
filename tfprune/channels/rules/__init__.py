"""Channel rules, one class per kind of layer, registered by the modules of this package:
`kernels` (Dense, convolutions, embeddings), `recurrent` (LSTM, GRU, SimpleRNN,
Bidirectional), `attention` (MultiHeadAttention), `normalization`, `elementwise` (per-channel
layers, merges and operations), `shapes` (Concatenate, Flatten, Reshape, Permute, `x[...]`),
`composites` (TimeDistributed, nested models) and `keras_hub` (KerasHub's transformer layers
and embeddings). A new kind of layer is one new class in one of them (see `base`)."""

from tfprune.channels.rules import (  # noqa: F401 - each module registers its rules
    attention,
    composites,
    elementwise,
    keras_hub,
    kernels,
    normalization,
    recurrent,
    shapes,
)
from tfprune.channels.rules.base import (
    COUPLING,
    LayerRule,
    UnsupportedLayer,
    activation_name,
    resized_config,
    rule_for,
)

__all__ = [
    "COUPLING",
    "LayerRule",
    "UnsupportedLayer",
    "activation_name",
    "resized_config",
    "rule_for",
]
