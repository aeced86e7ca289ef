"""The Qwen 3.5 shapes: their hyperparameters, the tensors llama.cpp's `qwen35` loader asks for, the metadata."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeassist.errors import UsageError

ARCH = "qwen35"
QUANTS = ("Q4_K_M", "Q8_0", "F16")
"""Quantizations `build` can produce."""
GENERATOR_VERSION = 1
"""Bumped when the same seed would give different weights or metadata."""


@dataclass(frozen=True)
class Qwen35Shape:
    """Hyperparameters of a dense Qwen 3.5 model, as llama.cpp's `qwen35` architecture reads them."""

    name: str
    """Shape name: tiny, 0.8b, 2b."""
    n_embd: int
    """Hidden size."""
    n_layer: int
    """Decoder layers."""
    n_ff: int
    """FFN intermediate size."""
    n_head: int = 8
    """Query heads of the full-attention layers."""
    n_head_kv: int = 2
    """Key/value heads of the full-attention layers."""
    head_dim: int = 256
    """Head size of the full-attention layers."""
    linear_k_heads: int = 16
    """Gated DeltaNet key heads (`ssm.group_count`)."""
    linear_v_heads: int = 16
    """Gated DeltaNet value heads (`ssm.time_step_rank`)."""
    linear_head_dim: int = 128
    """Gated DeltaNet key and value head size (`ssm.state_size`)."""
    conv_kernel: int = 4
    """Short convolution width of the DeltaNet layers."""
    full_attention_interval: int = 4
    """Every n-th layer is full attention, the rest Gated DeltaNet."""
    n_vocab: int = 248_320
    """Embedding rows (the tokenizer is padded to this)."""
    n_ctx_train: int = 262_144
    """Trained context length."""
    rope_base: float = 1e7
    """RoPE frequency base."""
    rope_dims: int = 64
    """Rotated dimensions per head (partial rotary: 64 of 256)."""
    mrope_sections: tuple[int, int, int, int] = (11, 11, 10, 0)
    """M-RoPE sections; text positions use the same index in all of them."""
    rms_eps: float = 1e-6
    """RMSNorm epsilon."""

    @property
    def key_dim(self) -> int:
        """Width of the DeltaNet q and k projections."""
        return self.linear_k_heads * self.linear_head_dim

    @property
    def value_dim(self) -> int:
        """Width of the DeltaNet v projection (`ssm.inner_size`)."""
        return self.linear_v_heads * self.linear_head_dim

    def is_full_attention(self, layer: int) -> bool:
        """Whether `layer` is a full-attention layer (else Gated DeltaNet)."""
        return (layer + 1) % self.full_attention_interval == 0


SHAPES: dict[str, Qwen35Shape] = {
    # Hidden 128 keeps the 248,320-row embedding small (32M values, Q8_0): built in ~3 s. Rows 128
    # wide are not whole Q4_K blocks, so under Q4_K_M those matrices fall back to Q5_0 (Q6_K ones to
    # Q8_0) as llama.cpp does for any such shape; attn_output, ssm_out and ffn_down stay K-quants.
    "tiny": Qwen35Shape(
        "tiny", n_embd=128, n_layer=4, n_ff=512, n_head=4, n_head_kv=1, linear_k_heads=4, linear_v_heads=4
    ),
    "0.8b": Qwen35Shape("0.8b", n_embd=1024, n_layer=24, n_ff=3584),
    "2b": Qwen35Shape("2b", n_embd=2048, n_layer=24, n_ff=6144),
}
"""The shapes `build` knows: `tiny` for tests, and the published 0.8B and 2B."""


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of the model file: its name, numpy shape (ggml's dims reversed) and contents."""

    name: str
    """GGUF tensor name, with its `.weight`/`.bias` suffix (`ssm_a` has none)."""
    shape: tuple[int, ...]
    """Numpy shape: rows first, so `shape[-1]` is ggml's ne[0]."""
    init: str
    """How to fill it: normal, ones, ssm_a."""
    dtype: str = "F16"
    """Type in the unquantized file: F16 for matrices, F32 for vectors, norms and the conv kernel."""

    @property
    def n_elements(self) -> int:
        """Number of values."""
        return int(np.prod(self.shape))


def get_shape(shape: str | Qwen35Shape) -> Qwen35Shape:
    """The shape called `shape` (tiny, 0.8b, 2b), or `shape` itself."""
    if isinstance(shape, Qwen35Shape):
        return shape
    try:
        return SHAPES[shape.lower()]
    except KeyError:
        raise UsageError(f"unknown synthetic shape {shape!r}: choose one of {', '.join(SHAPES)}") from None


def check_quant(quant: str) -> str:
    """`quant` in capitals, or a UsageError naming the quantizations `build` can produce."""
    q = quant.upper()
    if q not in QUANTS:
        raise UsageError(f"unknown quantization {quant!r}: choose one of {', '.join(QUANTS)}")
    return q


def tensor_specs(shape: str | Qwen35Shape) -> list[TensorSpec]:
    """Every tensor llama.cpp's qwen35 loader asks for (src/models/qwen35.cpp), in file order."""
    s = get_shape(shape)
    d = s.n_embd
    specs = [
        # Tied embeddings: no output.weight, so the quantizer treats token_embd as the output
        # matrix (Q6_K under Q4_K_M), as in the published files.
        TensorSpec("token_embd.weight", (s.n_vocab, d), "normal"),
        TensorSpec("output_norm.weight", (d,), "ones", "F32"),
    ]
    for i in range(s.n_layer):
        b = f"blk.{i}."
        specs += [
            TensorSpec(b + "attn_norm.weight", (d,), "ones", "F32"),
            TensorSpec(b + "post_attention_norm.weight", (d,), "ones", "F32"),
        ]
        if s.is_full_attention(i):
            specs += [
                # q carries the query and its output gate, interleaved per head.
                TensorSpec(b + "attn_q.weight", (s.head_dim * s.n_head * 2, d), "normal"),
                TensorSpec(b + "attn_k.weight", (s.head_dim * s.n_head_kv, d), "normal"),
                TensorSpec(b + "attn_v.weight", (s.head_dim * s.n_head_kv, d), "normal"),
                TensorSpec(b + "attn_output.weight", (d, s.head_dim * s.n_head), "normal"),
                TensorSpec(b + "attn_q_norm.weight", (s.head_dim,), "ones", "F32"),
                TensorSpec(b + "attn_k_norm.weight", (s.head_dim,), "ones", "F32"),
            ]
        else:
            conv_dim = 2 * s.key_dim + s.value_dim
            specs += [
                TensorSpec(b + "attn_qkv.weight", (conv_dim, d), "normal"),
                TensorSpec(b + "attn_gate.weight", (s.value_dim, d), "normal"),
                TensorSpec(b + "ssm_conv1d.weight", (conv_dim, s.conv_kernel), "normal", "F32"),
                # dt_bias starts at ones in the HF model, as here.
                TensorSpec(b + "ssm_dt.bias", (s.linear_v_heads,), "ones", "F32"),
                TensorSpec(b + "ssm_a", (s.linear_v_heads,), "ssm_a", "F32"),
                TensorSpec(b + "ssm_beta.weight", (s.linear_v_heads, d), "normal"),
                TensorSpec(b + "ssm_alpha.weight", (s.linear_v_heads, d), "normal"),
                TensorSpec(b + "ssm_norm.weight", (s.linear_head_dim,), "ones", "F32"),
                TensorSpec(b + "ssm_out.weight", (d, s.value_dim), "normal"),
            ]
        specs += [
            TensorSpec(b + "ffn_gate.weight", (s.n_ff, d), "normal"),
            TensorSpec(b + "ffn_up.weight", (s.n_ff, d), "normal"),
            TensorSpec(b + "ffn_down.weight", (d, s.n_ff), "normal"),
        ]
    return specs


def model_kv(s: Qwen35Shape, quant: str) -> dict[str, tuple[Any, str]]:
    """The architecture metadata (everything but the tokenizer), as (value, kind) by key."""
    a = ARCH
    file_type = {"F16": 1, "Q8_0": 7, "Q4_K_M": 15}[quant]
    return {
        "general.architecture": (a, "str"),
        "general.name": (f"synthetic-qwen3.5-{s.name}", "str"),
        "general.description": ("Random weights in the Qwen 3.5 architecture, for tests and benchmarks", "str"),
        "general.file_type": (file_type, "u32"),
        "edgeassist.synthetic.generator": (GENERATOR_VERSION, "u32"),
        f"{a}.context_length": (s.n_ctx_train, "u32"),
        f"{a}.embedding_length": (s.n_embd, "u32"),
        f"{a}.block_count": (s.n_layer, "u32"),
        f"{a}.feed_forward_length": (s.n_ff, "u32"),
        f"{a}.attention.head_count": (s.n_head, "u32"),
        f"{a}.attention.head_count_kv": (s.n_head_kv, "u32"),
        f"{a}.attention.key_length": (s.head_dim, "u32"),
        f"{a}.attention.value_length": (s.head_dim, "u32"),
        f"{a}.attention.layer_norm_rms_epsilon": (s.rms_eps, "f32"),
        f"{a}.rope.freq_base": (s.rope_base, "f32"),
        f"{a}.rope.dimension_count": (s.rope_dims, "u32"),
        f"{a}.rope.dimension_sections": (list(s.mrope_sections), "arr_i32"),
        f"{a}.ssm.conv_kernel": (s.conv_kernel, "u32"),
        f"{a}.ssm.state_size": (s.linear_head_dim, "u32"),
        f"{a}.ssm.group_count": (s.linear_k_heads, "u32"),
        f"{a}.ssm.time_step_rank": (s.linear_v_heads, "u32"),
        f"{a}.ssm.inner_size": (s.value_dim, "u32"),
        f"{a}.full_attention_interval": (s.full_attention_interval, "u32"),
    }
