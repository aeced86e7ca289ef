"""Synthetic Qwen 3.5 models: the real `qwen35` llama.cpp architecture with random weights.

They load and run like the published GGUFs of the same shape (hybrid Gated DeltaNet + full
attention, the same tensors, types and vocabulary size), tokenize with a Qwen BPE vocabulary
and the `qwen35` pre-tokenizer, and carry the real Qwen 3.5 chat template, so the bench can
measure speed and the tests can exercise the engine without a download. Their text is noise.

A model is written as F16 with `gguf.GGUFWriter`, one tensor at a time, then quantized
with llama.cpp's own quantizer. The tokenizer and template come from llama-cpp-python's
sdist on PyPI (llama.cpp's `ggml-vocab-qwen35.gguf` and `Qwen3.5-4B.jinja`), fetched once
with pip into a cache folder.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from edgeassist.errors import DownloadError, EdgeAssistError, UsageError

ARCH = "qwen35"
QUANTS = ("Q4_K_M", "Q8_0", "F16")
"""Quantizations `build` can produce."""
PUBLISHED_BYTES = {("0.8b", "Q4_K_M"): 532_517_120}
"""Sizes of published Qwen 3.5 GGUFs, to check the synthetic ones against."""
CACHE_ENV = "EDGEASSIST_CACHE_DIR"
"""Environment variable that overrides the cache folder."""
GENERATOR_VERSION = 1
"""Bumped when the same seed would give different weights or metadata."""

VOCAB_FILE = "ggml-vocab-qwen35.gguf"
TEMPLATE_FILE = "Qwen3.5-4B.jinja"
_SDIST_MEMBERS = {
    VOCAB_FILE: "vendor/llama.cpp/models/ggml-vocab-qwen35.gguf",
    TEMPLATE_FILE: "vendor/llama.cpp/models/templates/Qwen3.5-4B.jinja",
}

# Qwen 3's added tokens after <|im_end|> (151645), at the same ids. The vocab file has only the
# first three; the Qwen 3.5 template needs the think, tool and vision ones. The converter
# (convert_hf_to_gguf.py) types `<|...|>` tokens CONTROL and the others USER_DEFINED; both kinds
# tokenize as one token (USER_DEFINED even without parse_special).
_ADDED_TOKENS = (
    "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>",
    "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>",
    "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>",
    "<|file_sep|>", "<tool_response>", "</tool_response>", "<think>", "</think>",
)  # fmt: skip
_FIRST_ADDED_ID = 151_646
_TOKEN_CONTROL, _TOKEN_USER_DEFINED, _TOKEN_UNUSED = 3, 4, 5  # gguf.TokenType
_ENDOFTEXT, _IM_END = "<|endoftext|>", "<|im_end|>"


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


@dataclass(frozen=True)
class SyntheticModel:
    """A synthetic model file on disk."""

    path: Path
    """The GGUF file."""
    shape: str
    """Shape name."""
    quant: str
    """Quantization."""
    size_bytes: int
    """File size."""
    build_s: float
    """Seconds it took to build (0 when an existing file was reused)."""
    reused: bool = False
    """True when the file was already there and was not rebuilt."""


# -- shapes and tensors -----------------------------------------------------------------------


def get_shape(shape: str | Qwen35Shape) -> Qwen35Shape:
    """The shape called `shape` (tiny, 0.8b, 2b), or `shape` itself."""
    if isinstance(shape, Qwen35Shape):
        return shape
    try:
        return SHAPES[shape.lower()]
    except KeyError:
        raise UsageError(f"unknown synthetic shape {shape!r}: choose one of {', '.join(SHAPES)}") from None


def _check_quant(quant: str) -> str:
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


# -- size arithmetic ------------------------------------------------------------------------------

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
    s, quant = get_shape(shape), _check_quant(quant)
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
    kv = _model_kv(s, _check_quant(quant))
    if quant.upper() != "F16":
        kv["general.quantization_version"] = (2, "u32")  # the quantizer adds it
    header = 4 + 4 + 8 + 8
    infos = sum(8 + len(t.name) + 4 + 8 * len(t.shape) + 4 + 8 for t in specs)
    meta = header + _kv_bytes(kv) + _TOKENIZER_KV_BYTES + infos
    data = sum(_pad(_tensor_bytes(t, types[t.name])) for t in specs)
    return _pad(meta) + data


# -- tokenizer and template ----------------------------------------------------------------------


def cache_dir() -> Path:
    """Where fetched assets live: $EDGEASSIST_CACHE_DIR, else $XDG_CACHE_HOME/edgeassist, else ~/.cache/edgeassist."""
    if env := os.environ.get(CACHE_ENV):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "edgeassist"


def _llama_cpp_version() -> str:
    try:
        return importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        raise EdgeAssistError(
            "llama-cpp-python is not installed: `pip install llama-cpp-python` (it carries the Qwen 3.5 tokenizer)"
        ) from None


def tokenizer_assets(cache: Path | None = None) -> tuple[Path, Path]:
    """Paths of the Qwen 3.5 vocab GGUF and chat template, fetched from PyPI on first use."""
    version = _llama_cpp_version()
    folder = (cache or cache_dir()) / f"llama-cpp-python-{version}"
    paths = {name: folder / name for name in _SDIST_MEMBERS}
    if all(p.is_file() for p in paths.values()):
        return paths[VOCAB_FILE], paths[TEMPLATE_FILE]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EdgeAssistError(f"cannot create the cache folder {folder}: {e.strerror}; set {CACHE_ENV}") from None
    with tempfile.TemporaryDirectory(dir=folder, prefix=".sdist-") as tmp:
        sdist = _download_sdist(version, Path(tmp))
        _extract(sdist, paths)
    return paths[VOCAB_FILE], paths[TEMPLATE_FILE]


def _download_sdist(version: str, dest: Path) -> Path:
    # The ordinary client: pip resolves the index and any proxy the user has configured.
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--disable-pip-version-check"]
    cmd += ["--quiet", "-d", str(dest), f"llama-cpp-python=={version}"]
    hint = f"check the network, or put {VOCAB_FILE} and {TEMPLATE_FILE} in {dest.parent}"
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise DownloadError(f"cannot fetch the Qwen 3.5 tokenizer from PyPI ({e}); {hint}") from None
    found = sorted(dest.glob("llama_cpp_python-*.tar.gz"))
    if proc.returncode != 0 or not found:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        reason = lines[-1] if lines else f"pip exited with {proc.returncode}"
        raise DownloadError(
            f"cannot fetch the Qwen 3.5 tokenizer: `pip download llama-cpp-python=={version}` failed ({reason}); {hint}"
        )
    return found[0]


def _extract(sdist: Path, paths: dict[str, Path]) -> None:
    wanted = {suffix: paths[name] for name, suffix in _SDIST_MEMBERS.items()}
    try:
        with tarfile.open(sdist, "r:gz") as tar:
            for member in tar:
                target = next((p for suf, p in wanted.items() if member.name.endswith("/" + suf)), None)
                if target is None or not member.isfile():
                    continue
                src = tar.extractfile(member)
                assert src is not None
                tmp = target.with_name(f"{target.name}.{os.getpid()}.part")
                with src, tmp.open("wb") as out:
                    shutil.copyfileobj(src, out)
                os.replace(tmp, target)  # atomic: a concurrent build never sees half a file
    except (OSError, tarfile.TarError) as e:
        raise DownloadError(f"cannot unpack {sdist.name}: {e}; delete {sdist.parent.parent} and retry") from None
    missing = [p.name for p in wanted.values() if not p.is_file()]
    if missing:
        raise EdgeAssistError(f"{sdist.name} does not contain {', '.join(missing)}: this llama-cpp-python is too old")


def _read_gguf_kv(path: Path) -> dict[str, Any]:
    """The key/value metadata of a GGUF file (strings as bytes, arrays as lists).

    gguf.GGUFReader takes 7 s on this vocab (it maps every array item); this reads the same
    metadata in a fraction of a second and stops before the tensors.
    """
    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
    buf = path.read_bytes()
    if buf[:4] != b"GGUF":
        raise EdgeAssistError(f"{path} is not a GGUF file: delete it and it will be fetched again")
    (n_kv,) = struct.unpack_from("<Q", buf, 16)
    pos = 24

    def read_str() -> bytes:
        nonlocal pos
        (n,) = struct.unpack_from("<Q", buf, pos)
        pos += 8 + n
        return buf[pos - n : pos]

    def read_val(vtype: int) -> Any:
        nonlocal pos
        if vtype == 8:
            return read_str()
        if vtype == 9:
            (item, count) = struct.unpack_from("<IQ", buf, pos)
            pos += 12
            if item == 8:
                return [read_str() for _ in range(count)]
            fmt = scalar[item]
            out = list(struct.unpack_from(f"<{count}{fmt}", buf, pos))
            pos += count * struct.calcsize(fmt)
            return out
        fmt = scalar[vtype]
        (v,) = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize(fmt)
        return v

    kv: dict[str, Any] = {}
    for _ in range(n_kv):
        key = read_str().decode()
        (vtype,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        kv[key] = read_val(vtype)
    return kv


@dataclass(frozen=True)
class _Tokenizer:
    tokens: list[bytes]
    types: list[int]
    merges: list[bytes]
    model: str
    pre: str
    eos: int
    bos: int
    pad: int
    template: str


def _load_tokenizer(n_vocab: int) -> _Tokenizer:
    vocab_path, template_path = tokenizer_assets()
    kv = _read_gguf_kv(vocab_path)
    tokens: list[bytes] = list(kv["tokenizer.ggml.tokens"])
    types: list[int] = list(kv["tokenizer.ggml.token_type"])
    if len(tokens) > n_vocab:
        raise EdgeAssistError(f"{vocab_path.name} has {len(tokens)} tokens, more than the model's {n_vocab}")
    # llama.cpp's converter marks padding UNUSED: as USER_DEFINED, as in the vocab file, every pad
    # would join the special-token scan that each tokenize call makes (96k string searches).
    types = [_TOKEN_UNUSED if t.startswith(b"[PAD") else ty for t, ty in zip(tokens, types, strict=True)]
    tokens += [f"[PAD{i}]".encode() for i in range(len(tokens), n_vocab)]
    types += [_TOKEN_UNUSED] * (n_vocab - len(types))
    for i, text in enumerate(_ADDED_TOKENS, start=_FIRST_ADDED_ID):
        tokens[i] = text.encode()
        types[i] = _TOKEN_CONTROL if text.startswith("<|") else _TOKEN_USER_DEFINED
    index = {t: i for i, t in enumerate(tokens[_FIRST_ADDED_ID - 3 : _FIRST_ADDED_ID], _FIRST_ADDED_ID - 3)}
    return _Tokenizer(
        tokens=tokens,
        types=types,
        merges=list(kv["tokenizer.ggml.merges"]),
        model=kv["tokenizer.ggml.model"].decode(),
        pre=kv["tokenizer.ggml.pre"].decode(),
        eos=index[_IM_END.encode()],
        bos=index[_ENDOFTEXT.encode()],
        pad=index[_ENDOFTEXT.encode()],
        template=template_path.read_text(encoding="utf-8"),
    )


# -- writing --------------------------------------------------------------------------------------


def _model_kv(s: Qwen35Shape, quant: str) -> dict[str, tuple[Any, str]]:
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


class _NormalPool:
    """Seeded N(0, 1) values as float32, handed out as slices of a pool at random offsets.

    Drawing every value takes ~20 ns (15 s for the 0.8B); slicing a 4M-value pool is a copy.
    For a speed benchmark and smoke tests the weights only need to be random-looking and
    well scaled, not independent.
    """

    size = 1 << 22

    def __init__(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)
        pool = self._rng.standard_normal(self.size, dtype=np.float32)
        self._pool = np.concatenate([pool, pool])  # a slice up to `size` long never wraps

    def take(self, n: int) -> Iterator[np.ndarray[Any, np.dtype[np.float32]]]:
        """`n` values, in slices of at most the pool size."""
        while n > 0:
            k = min(n, self.size)
            off = int(self._rng.integers(0, self.size))
            yield self._pool[off : off + k]
            n -= k


class _Fill:
    """A tensor's data, generated while it is written (GGUFWriter only asks for nbytes and tofile)."""

    def __init__(self, spec: TensorSpec, pool: _NormalPool, seed: int) -> None:
        self.spec = spec
        self.nbytes = spec.n_elements * (2 if spec.dtype == "F16" else 4)
        self._pool = pool
        # Per-tensor seed: a tensor's values do not depend on which tensors come before it.
        self._rng = np.random.default_rng([seed, zlib.crc32(spec.name.encode())])

    def tofile(self, f: IO[bytes]) -> None:
        spec = self.spec
        out_type = np.float16 if spec.dtype == "F16" else np.float32
        if spec.init == "ones":
            np.ones(spec.shape, dtype=out_type).tofile(f)
        elif spec.init == "ssm_a":
            # ssm_a = -exp(A_log), with A drawn from U(1, 16) as in the HF initialisation:
            # negative, so the DeltaNet state decays instead of blowing up.
            (-self._rng.uniform(1.0, 16.0, spec.shape)).astype(out_type).tofile(f)
        else:
            for chunk in self._pool.take(spec.n_elements):
                (chunk * np.float32(0.02)).astype(out_type).tofile(f)


def _write_f16(s: Qwen35Shape, path: Path, seed: int, tok: _Tokenizer) -> None:
    import gguf

    vt = gguf.GGUFValueType
    kinds = {"str": vt.STRING, "u32": vt.UINT32, "f32": vt.FLOAT32, "bool": vt.BOOL, "arr_i32": vt.ARRAY}
    w = gguf.GGUFWriter(path, ARCH)
    for key, (value, kind) in _model_kv(s, "F16").items():
        if key != "general.architecture":  # GGUFWriter writes that one itself
            w.add_key_value(key, value, kinds[kind], sub_type=vt.INT32 if kind == "arr_i32" else None)
    w.add_tokenizer_model(tok.model)
    w.add_tokenizer_pre(tok.pre)
    # The long arrays get their item type up front: GGUFWriter would otherwise check every item.
    arr, keys = gguf.GGUFValueType.ARRAY, gguf.Keys.Tokenizer
    w.add_key_value(keys.LIST, tok.tokens, arr, sub_type=gguf.GGUFValueType.STRING)
    w.add_key_value(keys.TOKEN_TYPE, tok.types, arr, sub_type=gguf.GGUFValueType.INT32)
    w.add_key_value(keys.MERGES, tok.merges, arr, sub_type=gguf.GGUFValueType.STRING)
    w.add_eos_token_id(tok.eos)
    w.add_bos_token_id(tok.bos)
    w.add_pad_token_id(tok.pad)
    w.add_add_bos_token(False)  # Qwen 3.5 prompts start with <|im_start|>, no BOS
    w.add_chat_template(tok.template)

    specs = tensor_specs(s)
    pool = _NormalPool(seed)
    fills = [_Fill(spec, pool, seed) for spec in specs]
    for fill in fills:
        np_dtype = np.dtype(np.float16 if fill.spec.dtype == "F16" else np.float32)
        w.add_tensor_info(fill.spec.name, fill.spec.shape, np_dtype, fill.nbytes)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for fill in fills:
        w.write_tensor_data(fill)  # type: ignore[arg-type]  # duck-typed: nbytes + tofile
    w.close()


def _quantize(src: Path, dst: Path, quant: str, n_threads: int | None) -> None:
    import llama_cpp

    from edgeassist.engine.build import init_backend as _init_backend
    from edgeassist.engine.build import log_tail as _log_tail
    from edgeassist.engine.build import physical_cores

    _init_backend()  # routes llama.cpp's per-tensor log lines away from the terminal
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = {"Q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0, "Q4_K_M": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M}[quant]
    params.nthread = n_threads or physical_cores()
    _log_tail.clear()
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0:
        reason = _log_tail[-1] if _log_tail else f"code {rc}"
        raise EdgeAssistError(f"llama.cpp could not quantize the synthetic model to {quant}: {reason}")


def default_path(shape: str, quant: str, models_dir: Path = Path("models")) -> Path:
    """`models/synthetic-qwen3.5-<shape>-<quant>.gguf`."""
    return models_dir / f"synthetic-qwen3.5-{get_shape(shape).name}-{_check_quant(quant)}.gguf"


def build(
    shape: str | Qwen35Shape,
    quant: str = "Q4_K_M",
    out: Path | None = None,
    *,
    seed: int = 0,
    n_threads: int | None = None,
    force: bool = True,
    progress: Callable[[str], None] | None = None,
) -> SyntheticModel:
    """Write a random-weight Qwen 3.5 GGUF of `shape` and quantize it to `quant`.

    With `force=False` an existing file at `out` is reused (files appear there only complete:
    they are written next to it and renamed). `progress` receives a line per stage.
    """
    s, quant = get_shape(shape), _check_quant(quant)
    out = Path(out) if out is not None else default_path(s.name, quant)
    say = progress or (lambda _msg: None)
    if not force and out.is_file():
        return SyntheticModel(out, s.name, quant, out.stat().st_size, 0.0, reused=True)
    t0 = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    say("tokenizer: loading (fetched from PyPI on first use)")
    tok = _load_tokenizer(s.n_vocab)
    f16 = out.with_name(f".{out.name}.{os.getpid()}.f16.part")  # per process: two builds of one file must not collide
    part = out.with_name(f".{out.name}.{os.getpid()}.part")
    try:
        say(f"writing {s.name} with random weights (seed {seed})")
        _write_f16(s, f16, seed, tok)
        if quant == "F16":
            os.replace(f16, out)
        else:
            say(f"quantizing to {quant}")
            _quantize(f16, part, quant, n_threads)
            os.replace(part, out)
    except OSError as e:
        raise EdgeAssistError(f"cannot write {out}: {e.strerror or e}") from None
    finally:
        for p in (f16, part):
            p.unlink(missing_ok=True)
    return SyntheticModel(out, s.name, quant, out.stat().st_size, time.perf_counter() - t0)
