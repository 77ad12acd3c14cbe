"""Tiny random configurations of every KerasHub decoder family, for the LLM tests.

Each entry builds a backbone small enough to prune, train a step and generate in seconds, with
the family's own structure kept: grouped-query attention where the family has it, a head size
unlike `hidden_dim // num_query_heads` where the family takes `head_dim`, experts where it
routes, tied or untied embeddings as it ships.
"""

from __future__ import annotations

import keras_hub

VOCABULARY = 64
SEQUENCE = 8

_COMMON = dict(vocabulary_size=VOCABULARY, num_layers=2, hidden_dim=16, intermediate_dim=32)
_GQA = dict(num_query_heads=4, num_key_value_heads=2)

# name: (backbone class name, causal LM class name, constructor arguments)
FAMILIES = {
    "GPT2": ("GPT2Backbone", "GPT2CausalLM", dict(_COMMON, num_heads=2, max_sequence_length=16)),
    "OPT": ("OPTBackbone", "OPTCausalLM", dict(_COMMON, num_heads=2, max_sequence_length=16)),
    "GPTNeoX": ("GPTNeoXBackbone", "GPTNeoXCausalLM", dict(_COMMON, num_heads=2)),
    "Bloom": ("BloomBackbone", "BloomCausalLM", dict(_COMMON, num_heads=2)),
    "Falcon": ("FalconBackbone", "FalconCausalLM", dict(_COMMON, num_attention_heads=2)),
    "Gemma": ("GemmaBackbone", "GemmaCausalLM", dict(_COMMON, **_GQA, head_dim=8)),
    "Gemma3": (
        "Gemma3Backbone",
        "Gemma3CausalLM",
        dict(_COMMON, **_GQA, head_dim=8, image_size=16, vision_encoder=None),
    ),
    "Llama": ("LlamaBackbone", "LlamaCausalLM", dict(_COMMON, **_GQA)),
    "Llama3": ("Llama3Backbone", "Llama3CausalLM", dict(_COMMON, **_GQA)),
    "Qwen": ("QwenBackbone", "QwenCausalLM", dict(_COMMON, **_GQA)),
    "Qwen3": ("Qwen3Backbone", "Qwen3CausalLM", dict(_COMMON, **_GQA, head_dim=8)),
    "Mistral": ("MistralBackbone", "MistralCausalLM", dict(_COMMON, **_GQA)),
    "Phi3": ("Phi3Backbone", "Phi3CausalLM", dict(_COMMON, **_GQA)),
    "SmolLM3": (
        "SmolLM3Backbone",
        "SmolLM3CausalLM",
        dict(
            _COMMON,
            num_attention_heads=4,
            num_key_value_heads=2,
            attention_bias=False,
            attention_dropout=0.0,
            rope_layer_enabled_list=[True, False],
            layer_types=["attention", "attention"],
            mlp_bias=False,
            layer_norm_epsilon=1e-6,
            max_position_embeddings=32,
            rope_theta=10000.0,
            partial_rotary_factor=1.0,
        ),
    ),
    "Mixtral": (
        "MixtralBackbone",
        "MixtralCausalLM",
        dict(_COMMON, **_GQA, num_experts=4, top_k=2),
    ),
    "Qwen3Moe": (
        "Qwen3MoeBackbone",
        "Qwen3MoeCausalLM",
        dict(_COMMON, **_GQA, head_dim=8, moe_intermediate_dim=8, num_experts=4, top_k=2),
    ),
}
MIXTURES = {"Mixtral", "Qwen3Moe"}


def backbone(name: str):
    """A new tiny random backbone of family `name`."""
    cls, _, arguments = FAMILIES[name]
    return getattr(keras_hub.models, cls)(**arguments)


def causal_lm(name: str, model=None):
    """The family's causal LM around `model` (a new tiny backbone by default), no preprocessor."""
    _, cls, _ = FAMILIES[name]
    return getattr(keras_hub.models, cls)(backbone=model or backbone(name), preprocessor=None)
