"""Size arithmetic: the type llama.cpp's quantizer gives each tensor, and the bytes of a built file."""

from __future__ import annotations

from typing import Any

from edgeassist.synthetic.shapes import Qwen35Shape, TensorSpec, check_quant, get_shape, model_kv, tensor_specs

PUBLISHED_BYTES = {("0.8b", "Q4_K_M"): 532_517_120}
"""Sizes of published Qwen 3.5 GGUFs, to check the synthetic ones against."""


# ggml type: (values per block, bytes per block)
_GGML_TYPES = {
    "F32": (1, 4), "F16": (1, 2), "Q8_0": (32, 34), "Q5_0": (32, 22), "Q5_1": (32, 24),
    "Q4_K": (256, 144), "Q5_K": (256, 176), "Q6_K": (256, 210),
}  # fmt: skip
# What llama.cpp falls back to when a row is not a whole number of blocks (tensor_type_fallback).
_FALLBACK = {"Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}
_ALIGN = 32  # GGUF_DEFAULT_ALIGNMENT
# Bytes of the tokenizer and template metadata (tokens, types, merges, ids, chat template), measured
# from llama-cpp-python 0.3.36's vocab padded to 248,320 tokens; the tiny model's test checks it.
_TOKENIZER_KV_BYTES = 8_152_572


def _use_more_bits(i: int, n: int) -> bool:
    # llama-quant.cpp: the first and last eighth of the layers, and every third one between.
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def _quantized(spec: TensorSpec) -> bool:
    # llama-quant.cpp tensor_allows_quantization, for the names this architecture has.
    return (
        len(spec.shape) >= 2
        and spec.name.endswith("weight")
        and "_norm.weight" not in spec.name
        and "ssm_conv1d" not in spec.name
    )


def planned_types(shape: str | Qwen35Shape, quant: str) -> dict[str, str]:
    """The ggml type llama.cpp's quantizer gives each tensor for `quant` (its Q4_K_M rules, in short)."""
    s, quant = get_shape(shape), check_quant(quant)
    # The quantizer walks tensors by layer, then name; each layer has one attn_v-like tensor
    # (attn_v or the DeltaNet attn_qkv) and one ffn_down, so its counters equal the layer index.
    n_wv = s.n_layer
    types: dict[str, str] = {}
    for spec in tensor_specs(s):
        if not _quantized(spec) or quant == "F16":
            types[spec.name] = spec.dtype
            continue
        ne0 = spec.shape[-1]
        layer = int(spec.name.split(".")[1]) if spec.name.startswith("blk.") else -1
        t = "Q8_0"
        if quant == "Q4_K_M":
            t = "Q4_K"
            if spec.name == "token_embd.weight":
                t = "Q6_K" if ne0 % 256 == 0 else "Q8_0"
            elif spec.name.endswith(("attn_v.weight", "attn_qkv.weight")) and _use_more_bits(layer, n_wv):
                t = "Q6_K"
            elif spec.name.endswith("ffn_down.weight") and _use_more_bits(layer, s.n_layer):
                t = "Q6_K"
        if ne0 % _GGML_TYPES[t][0]:
            t = _FALLBACK.get(t, t)
            if ne0 % _GGML_TYPES[t][0]:
                t = "F16"
        types[spec.name] = t
    return types


def _tensor_bytes(spec: TensorSpec, ggml_type: str) -> int:
    per_block, block_bytes = _GGML_TYPES[ggml_type]
    return spec.n_elements // per_block * block_bytes


def _pad(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def _kv_bytes(kv: dict[str, tuple[Any, str]]) -> int:
    n = 0
    for key, (value, kind) in kv.items():
        n += 8 + len(key.encode()) + 4
        if kind == "str":
            n += 8 + len(value.encode())
        elif kind == "arr_i32":
            n += 4 + 8 + 4 * len(value)
        else:
            n += {"u32": 4, "f32": 4, "bool": 1}[kind]
    return n


def expected_size(shape: str | Qwen35Shape, quant: str) -> int:
    """Bytes of the file `build(shape, quant)` writes, from the shapes and llama.cpp's type rules."""
    s = get_shape(shape)
    types = planned_types(s, quant)
    specs = tensor_specs(s)
    kv = model_kv(s, check_quant(quant))
    if quant.upper() != "F16":
        kv["general.quantization_version"] = (2, "u32")  # the quantizer adds it
    header = 4 + 4 + 8 + 8
    infos = sum(8 + len(t.name) + 4 + 8 * len(t.shape) + 4 + 8 for t in specs)
    meta = header + _kv_bytes(kv) + _TOKENIZER_KV_BYTES + infos
    data = sum(_pad(_tensor_bytes(t, types[t.name])) for t in specs)
    return _pad(meta) + data
