"""The vision projector (mmproj GGUF) of a synthetic Qwen 3.5: the shape per text shape, its tensors, metadata, writer.

A published Qwen 3.5 ships its vision encoder as a second GGUF, of llama.cpp's `clip` architecture
with the projector type `qwen3vl_merger` (converted from `Qwen3_5ForConditionalGeneration` by
llama.cpp's `Qwen3VLVisionModel`). This module writes one with the same tensors, types and
metadata and seeded random weights, so the mtmd path (load, tokenize an image, encode it, decode
its embeddings into the text model) runs offline. Like the text model, what it "sees" is noise.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeassist.errors import EdgeAssistError
from edgeassist.synthetic.shapes import GENERATOR_VERSION, Qwen35Shape, TensorSpec, get_shape
from edgeassist.synthetic.sizes import _kv_bytes as _text_kv_bytes
from edgeassist.synthetic.sizes import _pad
from edgeassist.synthetic.writer import write_tensors

PROJECTOR_ARCH = "clip"
"""`general.architecture` of a projector file."""
PROJECTOR_TYPE = "qwen3vl_merger"
"""`clip.projector_type`: what clip.cpp builds the Qwen 3-VL / 3.5 vision graph for."""
PROJECTOR_PRECISION = "F16"
"""The precision `build_projector` writes, as it appears in the file name."""
PUBLISHED_PROJECTOR_BYTES = {"0.8b": 205_000_000, "2b": 668_000_000}
"""Sizes of the published F16 mmproj files (205 MB, 668 MB): megabytes, as the model pages round them."""


@dataclass(frozen=True)
class Qwen35VisionShape:
    """Hyperparameters of a Qwen 3.5 vision encoder (its HF `vision_config`), as clip.cpp reads them."""

    name: str
    """The text shape it belongs to: tiny, 0.8b, 2b."""
    n_embd: int
    """Hidden size of the encoder (`hidden_size`)."""
    n_layer: int
    """Encoder blocks (`depth`)."""
    n_ff: int
    """FFN intermediate size (`intermediate_size`)."""
    n_head: int
    """Attention heads (`num_heads`)."""
    n_embd_text: int
    """Width of the embeddings it hands the text model (`out_hidden_size`): the text model's n_embd."""
    patch_size: int = 16
    """Pixels per patch side."""
    temporal_patch_size: int = 2
    """Frames per patch: the patch convolution is stored as one 2D kernel per frame."""
    spatial_merge_size: int = 2
    """Patches merged per side into one image token (2: four patches a token)."""
    n_pos_embd: int = 2304
    """Learned position embeddings (`num_position_embeddings`), a square grid clip.cpp interpolates."""
    eps: float = 1e-6
    """LayerNorm epsilon (the converter takes the text model's `rms_norm_eps`)."""
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    """Per-channel mean the pixels are normalized with."""
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    """Per-channel standard deviation the pixels are normalized with."""

    @property
    def image_size(self) -> int:
        """`clip.vision.image_size`: the side of the position grid in pixels, as the converter derives it."""
        return math.isqrt(self.n_pos_embd) * self.patch_size

    @property
    def merged_dim(self) -> int:
        """Width of one image token before the merger's MLP: the merged patches side by side."""
        return self.n_embd * self.spatial_merge_size**2

    @property
    def head_dim(self) -> int:
        """Size of one attention head."""
        return self.n_embd // self.n_head


VISION_SHAPES: dict[str, Qwen35VisionShape] = {
    # Small enough that building and encoding take milliseconds; head size 32 leaves clip.cpp's
    # M-RoPE its four sections of 8. The full 2304-entry position grid keeps the published
    # image_size (768) at 590 KB.
    "tiny": Qwen35VisionShape("tiny", n_embd=64, n_layer=2, n_ff=128, n_head=2, n_embd_text=128),
    "0.8b": Qwen35VisionShape("0.8b", n_embd=768, n_layer=12, n_ff=3072, n_head=12, n_embd_text=1024),
    "2b": Qwen35VisionShape("2b", n_embd=1024, n_layer=24, n_ff=4096, n_head=16, n_embd_text=2048),
}
"""The vision encoder of each text shape: `tiny` for tests, and those of the published 0.8B and 2B."""


def get_vision_shape(shape: str | Qwen35Shape | Qwen35VisionShape) -> Qwen35VisionShape:
    """The vision encoder of text shape `shape` (a name or a `Qwen35Shape`), or `shape` itself."""
    if isinstance(shape, Qwen35VisionShape):
        return shape
    return VISION_SHAPES[get_shape(shape).name]


def projector_tensor_specs(shape: str | Qwen35Shape | Qwen35VisionShape) -> list[TensorSpec]:
    """Every tensor clip.cpp loads for a `qwen3vl_merger` projector without deepstack layers, in file order.

    Types follow the converter's F16 output: matrices and the patch kernels F16; vectors (norms,
    biases) and the position embeddings F32.
    """
    v = get_vision_shape(shape)
    d, p = v.n_embd, v.patch_size
    specs = [
        # HF's Conv3d kernel [d, 3, 2, p, p], split along time into one Conv2d kernel per frame.
        TensorSpec("v.patch_embd.weight", (d, 3, p, p), "normal"),
        TensorSpec("v.patch_embd.weight.1", (d, 3, p, p), "normal"),
        TensorSpec("v.patch_embd.bias", (d,), "normal", "F32"),
        TensorSpec("v.position_embd.weight", (v.n_pos_embd, d), "normal", "F32"),
    ]
    for i in range(v.n_layer):
        b = f"v.blk.{i}."
        specs += [
            TensorSpec(b + "ln1.weight", (d,), "ones", "F32"),
            TensorSpec(b + "ln1.bias", (d,), "normal", "F32"),
            # q, k and v stacked, as clip.cpp's graph views them out of one product.
            TensorSpec(b + "attn_qkv.weight", (3 * d, d), "normal"),
            TensorSpec(b + "attn_qkv.bias", (3 * d,), "normal", "F32"),
            TensorSpec(b + "attn_out.weight", (d, d), "normal"),
            TensorSpec(b + "attn_out.bias", (d,), "normal", "F32"),
            TensorSpec(b + "ln2.weight", (d,), "ones", "F32"),
            TensorSpec(b + "ln2.bias", (d,), "normal", "F32"),
            TensorSpec(b + "ffn_up.weight", (v.n_ff, d), "normal"),
            TensorSpec(b + "ffn_up.bias", (v.n_ff,), "normal", "F32"),
            TensorSpec(b + "ffn_down.weight", (d, v.n_ff), "normal"),
            TensorSpec(b + "ffn_down.bias", (d,), "normal", "F32"),
        ]
    m = v.merged_dim
    specs += [
        # The merger: LayerNorm over each patch, then an MLP over four merged patches (mm.0, GELU,
        # mm.2: the indices of Qwen 2-VL's nn.Sequential, which the converter keeps).
        TensorSpec("v.post_ln.weight", (d,), "ones", "F32"),
        TensorSpec("v.post_ln.bias", (d,), "normal", "F32"),
        TensorSpec("mm.0.weight", (m, m), "normal"),
        TensorSpec("mm.0.bias", (m,), "normal", "F32"),
        TensorSpec("mm.2.weight", (v.n_embd_text, m), "normal"),
        TensorSpec("mm.2.bias", (v.n_embd_text,), "normal", "F32"),
    ]
    return specs


def projector_kv(shape: str | Qwen35Shape | Qwen35VisionShape) -> dict[str, tuple[Any, str]]:
    """The projector's metadata as (value, kind) by key: what the converter writes and clip.cpp reads.

    clip.cpp fixes a `qwen3vl_merger` image's token budget itself (8 to 4096 tokens, or the
    context's `image_min_tokens`/`image_max_tokens`), so there are no min/max pixel keys.
    """
    v = get_vision_shape(shape)
    return {
        "general.architecture": (PROJECTOR_ARCH, "str"),
        "general.type": ("mmproj", "str"),
        "general.name": (f"synthetic-qwen3.5-{v.name}-mmproj", "str"),
        "general.description": ("Random weights of the Qwen 3.5 vision projector, for tests and benchmarks", "str"),
        "general.file_type": (1, "u32"),  # LLAMA_FTYPE_MOSTLY_F16
        "edgeassist.synthetic.generator": (GENERATOR_VERSION, "u32"),
        "clip.has_vision_encoder": (True, "bool"),
        "clip.projector_type": (PROJECTOR_TYPE, "str"),
        "clip.use_gelu": (True, "bool"),  # gelu_pytorch_tanh: ggml's gelu is the tanh form
        "clip.vision.projection_dim": (v.n_embd_text, "u32"),
        "clip.vision.image_size": (v.image_size, "u32"),
        "clip.vision.patch_size": (v.patch_size, "u32"),
        "clip.vision.embedding_length": (v.n_embd, "u32"),
        "clip.vision.feed_forward_length": (v.n_ff, "u32"),
        "clip.vision.block_count": (v.n_layer, "u32"),
        "clip.vision.attention.head_count": (v.n_head, "u32"),
        "clip.vision.attention.layer_norm_epsilon": (v.eps, "f32"),
        "clip.vision.image_mean": (list(v.image_mean), "arr_f32"),
        "clip.vision.image_std": (list(v.image_std), "arr_f32"),
        "clip.vision.spatial_merge_size": (v.spatial_merge_size, "u32"),
        # The converter writes the flags even when none is set; clip.cpp finds deepstack layers by
        # their tensors, and Qwen 3.5 has none.
        "clip.vision.is_deepstack_layers": ([False] * v.n_layer, "arr_bool"),
    }


_ITEM_BYTES = {"arr_f32": 4, "arr_bool": 1}


def _kv_bytes(kv: dict[str, tuple[Any, str]]) -> int:
    # The text model's arithmetic for the scalars and strings; the arrays here hold floats and flags.
    arrays = {key: value for key, (value, kind) in kv.items() if kind in _ITEM_BYTES}
    n = _text_kv_bytes({key: item for key, item in kv.items() if key not in arrays})
    for key, value in arrays.items():
        n += 8 + len(key.encode()) + 4 + 4 + 8 + len(value) * _ITEM_BYTES[kv[key][1]]  # key, type, item type, count
    return n


def projector_size(shape: str | Qwen35Shape | Qwen35VisionShape) -> int:
    """Bytes of the file `build_projector(shape, ...)` writes, from the tensor list and the metadata."""
    specs = projector_tensor_specs(shape)
    header = 4 + 4 + 8 + 8  # magic, version, tensor count, metadata count
    infos = sum(8 + len(t.name) + 4 + 8 * len(t.shape) + 4 + 8 for t in specs)
    data = sum(_pad(t.n_elements * (2 if t.dtype == "F16" else 4)) for t in specs)
    return _pad(header + _kv_bytes(projector_kv(shape)) + infos) + data


def projector_path(model_path: Path) -> Path:
    """Where a model's F16 projector sits: `<model stem without the quant>-mmproj-F16.gguf` in the same folder.

    `models/synthetic-qwen3.5-0.8b-Q4_K_M.gguf` -> `models/synthetic-qwen3.5-0.8b-mmproj-F16.gguf`:
    the hub's naming rule (`projector_name`), by which `resolve` finds it.
    """
    from edgeassist.hub import projector_name  # the one naming rule; the hub's import is not free

    model_path = Path(model_path)
    return model_path.with_name(projector_name(model_path.name, PROJECTOR_PRECISION))


def _write(v: Qwen35VisionShape, path: Path, seed: int) -> None:
    import gguf

    vt = gguf.GGUFValueType
    kinds = {"str": vt.STRING, "u32": vt.UINT32, "f32": vt.FLOAT32, "bool": vt.BOOL}
    items = {"arr_f32": vt.FLOAT32, "arr_bool": vt.BOOL}
    w = gguf.GGUFWriter(path, PROJECTOR_ARCH)
    for key, (value, kind) in projector_kv(v).items():
        if key == "general.architecture":
            continue  # GGUFWriter writes that one itself
        if kind in items:
            w.add_key_value(key, value, vt.ARRAY, sub_type=items[kind])
        else:
            w.add_key_value(key, value, kinds[kind])
    write_tensors(w, projector_tensor_specs(v), seed)  # (the text model's random weights, the same way)


def build_projector(
    shape: str | Qwen35Shape | Qwen35VisionShape,
    out: Path,
    *,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write the random-weight F16 vision projector of `shape` to `out` and return `out`.

    The file appears only complete: it is written next to `out` and renamed into place. Put it at
    `projector_path(model)` for the text model of the same shape to find it.
    """
    v = get_vision_shape(shape)
    out = Path(out)
    say = progress or (lambda _msg: None)
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(f".{out.name}.{os.getpid()}.part")  # per process: two builds of one file must not collide
    try:
        say(f"writing the {v.name} vision projector with random weights (seed {seed})")
        _write(v, part, seed)
        os.replace(part, out)
    except OSError as e:
        raise EdgeAssistError(f"cannot write {out}: {e.strerror or e}") from None
    finally:
        part.unlink(missing_ok=True)
    return out
