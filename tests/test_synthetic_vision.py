"""The synthetic vision projector: its shape rules, the file it writes, and a real mtmd round trip on the tiny one."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

import numpy as np
import pytest

from edgeassist.engine.build import init_backend, model_params
from edgeassist.engine.modelthread import MODEL_THREAD
from edgeassist.errors import EdgeAssistError
from edgeassist.synthetic import (
    PROJECTOR_TYPE,
    PUBLISHED_PROJECTOR_BYTES,
    SHAPES,
    VISION_SHAPES,
    build_projector,
    projector_kv,
    projector_path,
    projector_size,
    projector_tensor_specs,
)
from edgeassist.synthetic import writer as synthetic_writer

# -- the shape rules (no file written) ------------------------------------------------------------


def test_published_vision_shapes_match_the_model_cards() -> None:
    small, big = VISION_SHAPES["0.8b"], VISION_SHAPES["2b"]
    assert (small.n_layer, small.n_embd, small.n_ff, small.n_head, small.n_embd_text) == (12, 768, 3072, 12, 1024)
    assert (big.n_layer, big.n_embd, big.n_ff, big.n_head, big.n_embd_text) == (24, 1024, 4096, 16, 2048)
    for v in VISION_SHAPES.values():
        assert (v.patch_size, v.temporal_patch_size, v.spatial_merge_size, v.n_pos_embd) == (16, 2, 2, 2304)
        assert v.image_size == 768  # sqrt(2304) * 16, as the converter derives it
        assert v.image_mean == v.image_std == (0.5, 0.5, 0.5)
        # The projector hands the text model embeddings of its own width, or mtmd refuses the pair.
        assert v.n_embd_text == SHAPES[v.name].n_embd
        # clip.cpp's vision M-RoPE splits a head into four equal sections.
        assert v.head_dim * v.n_head == v.n_embd and v.head_dim % 4 == 0


def test_0_8b_and_2b_projectors_have_the_published_sizes() -> None:
    specs = projector_tensor_specs("0.8b")
    # patch kernels (2) + patch bias + positions, 12 per block, post_ln (2), mm.0 and mm.2 (4).
    assert len(specs) == 4 + 12 * 12 + 2 + 4 == 154
    shapes = {t.name: t.shape for t in specs}
    assert shapes["v.patch_embd.weight"] == shapes["v.patch_embd.weight.1"] == (768, 3, 16, 16)
    assert shapes["v.position_embd.weight"] == (2304, 768)
    assert shapes["v.blk.11.attn_qkv.weight"] == (3 * 768, 768)
    assert shapes["mm.0.weight"] == (4 * 768, 4 * 768) and shapes["mm.2.weight"] == (1024, 4 * 768)
    assert "v.blk.12.ln1.weight" not in shapes and not any("deepstack" in n for n in shapes)
    for shape, published in PUBLISHED_PROJECTOR_BYTES.items():
        assert abs(projector_size(shape) / published - 1) < 0.01, shape


def test_every_projector_tensor_is_an_mmproj_tensor_of_gguf_py() -> None:
    import gguf

    known = {gguf.TENSOR_NAMES[t] for t in gguf.MODEL_TENSORS[gguf.MODEL_ARCH.MMPROJ]}
    for spec in projector_tensor_specs("0.8b"):
        base = re.sub(r"\.(weight|bias)(\.1)?$", "", spec.name)
        assert re.sub(r"^(v\.blk|mm)\.\d+", r"\1.{bid}", base) in known, spec.name


def test_tensor_types_are_the_converters() -> None:
    for spec in projector_tensor_specs("0.8b"):
        # F16 output: matrices and patch kernels F16; vectors and the position embeddings F32.
        want = "F32" if len(spec.shape) == 1 or spec.name == "v.position_embd.weight" else "F16"
        assert spec.dtype == want, spec.name
        if spec.name.endswith((".ln1.weight", ".ln2.weight", "post_ln.weight")):
            assert spec.init == "ones", spec.name


def _gguf_key_names(cls: Any) -> set[str]:
    names: set[str] = set()
    for value in vars(cls).values():
        if isinstance(value, str) and "." in value:
            names.add(value)
        elif isinstance(value, type):
            names |= _gguf_key_names(value)
    return names


def test_metadata_uses_the_clip_keys_of_gguf_py() -> None:
    import gguf

    known = _gguf_key_names(gguf.Keys)
    kv = projector_kv("0.8b")
    assert [k for k in kv if k not in known] == ["edgeassist.synthetic.generator"]
    assert kv["general.architecture"][0] == gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.MMPROJ] == "clip"
    assert kv["general.type"][0] == gguf.GGUFType.MMPROJ
    assert kv["clip.projector_type"][0] == PROJECTOR_TYPE == gguf.VisionProjectorType.QWEN3VL
    assert kv["clip.vision.projection_dim"][0] == 1024 and kv["clip.vision.embedding_length"][0] == 768
    assert kv["clip.use_gelu"][0] is True and kv["clip.has_vision_encoder"][0] is True
    # clip.cpp sets a qwen3vl_merger image's token budget itself: no pixel limits in the file.
    assert not any("pixels" in k for k in kv)


def test_projector_path_follows_the_naming_rule() -> None:
    for model, projector in [
        ("models/synthetic-qwen3.5-0.8b-Q4_K_M.gguf", "models/synthetic-qwen3.5-0.8b-mmproj-F16.gguf"),
        ("models/synthetic-qwen3.5-tiny-F16.gguf", "models/synthetic-qwen3.5-tiny-mmproj-F16.gguf"),
        ("/x/synthetic-qwen3.5-2b-Q8_0.gguf", "/x/synthetic-qwen3.5-2b-mmproj-F16.gguf"),
    ]:
        assert projector_path(Path(model)) == Path(projector)


# -- the file ---------------------------------------------------------------------------------------


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_tiny_projector_file_matches_its_spec(tiny_qwen35: Path, tiny_qwen35_vision: Path) -> None:
    import gguf

    assert tiny_qwen35_vision == projector_path(tiny_qwen35) and tiny_qwen35_vision.parent == tiny_qwen35.parent
    assert tiny_qwen35_vision.stat().st_size == projector_size("tiny")
    reader = gguf.GGUFReader(tiny_qwen35_vision)
    for key, (value, kind) in projector_kv("tiny").items():
        got = reader.fields[key].contents()
        assert got == (pytest.approx(value) if "f32" in kind else value), key
    specs = projector_tensor_specs("tiny")
    assert [t.name for t in reader.tensors] == [s.name for s in specs]
    for t, s in zip(reader.tensors, specs, strict=True):
        assert (tuple(int(n) for n in t.shape[::-1]), t.tensor_type.name) == (s.shape, s.dtype), s.name


def test_the_same_seed_writes_the_same_file(tmp_path: Path, tiny_qwen35_vision: Path) -> None:
    first = build_projector("tiny", tmp_path / "a-mmproj-F16.gguf", seed=0)
    again = build_projector("tiny", tmp_path / "b-mmproj-F16.gguf", seed=0)
    other = build_projector("tiny", tmp_path / "c-mmproj-F16.gguf", seed=1)
    assert _sha(first) == _sha(again) == _sha(tiny_qwen35_vision)
    assert _sha(other) != _sha(first) and other.stat().st_size == first.stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-mmproj-F16.gguf", "b-mmproj-F16.gguf", "c-mmproj-F16.gguf"]


def test_a_failed_write_leaves_the_old_file_and_no_part(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "x-mmproj-F16.gguf"
    out.write_bytes(b"the projector that was there")
    real_tofile = synthetic_writer._Fill.tofile

    def disk_full(self: Any, f: IO[bytes]) -> None:
        real_tofile(self, f)
        if self.spec.name == "mm.0.weight":  # most of the file is written by then
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(synthetic_writer._Fill, "tofile", disk_full)
    with pytest.raises(EdgeAssistError, match="No space left on device") as info:
        build_projector("tiny", out)
    assert str(out) in str(info.value) and "\n" not in str(info.value)
    assert out.read_bytes() == b"the projector that was there"
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


# -- the real mtmd path -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One picture through mtmd: its chunks, the image's embeddings, and the model's next token after it."""

    chunk_types: list[int]
    chunk_tokens: list[int]
    chunk_pos: list[int]
    grid: tuple[int, int]
    embd: np.ndarray[Any, np.dtype[np.float32]]
    n_past: int
    token: int
    logits_finite: bool


@dataclass(frozen=True)
class Look:
    """What mtmd says of the projector with its model, and each picture it saw."""

    vision: bool
    mrope: bool
    n_embd: int
    n_vocab: int
    seen: list[Seen]


def _picture(nx: int, ny: int, flip: bool = False) -> bytes:
    yy, xx = np.mgrid[0:ny, 0:nx]
    rgb = np.stack([xx * 255 // (nx - 1), yy * 255 // (ny - 1), (xx * yy) % 256], axis=-1).astype(np.uint8)
    return (255 - rgb if flip else rgb).tobytes()


def _context_params(n_threads: int = 2) -> Any:
    import llama_cpp.mtmd_cpp as mtmd

    params = mtmd.mtmd_context_params_default()
    params.use_gpu, params.print_timings, params.warmup, params.n_threads = False, False, False, n_threads
    return params


def _look(model_path: Path, projector: Path, pictures: list[tuple[int, int, bool]]) -> Look:
    """Load the model and projector, and for each picture: tokenize, encode, evaluate, sample one token."""
    import llama_cpp
    import llama_cpp.mtmd_cpp as mtmd

    init_backend()
    model = llama_cpp.llama_model_load_from_file(str(model_path).encode(), model_params())
    assert model
    ctx = mtmd.mtmd_init_from_file(str(projector).encode(), model, _context_params())
    assert ctx, "mtmd refused the projector"
    cparams = llama_cpp.llama_context_default_params()
    cparams.n_ctx, cparams.n_batch, cparams.n_ubatch = 512, 256, 256
    cparams.n_threads = cparams.n_threads_batch = 1  # a busy machine: see tests/test_toolcalls.py
    lctx = llama_cpp.llama_init_from_model(model, cparams)
    assert lctx
    n_embd = llama_cpp.llama_model_n_embd(model)
    n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model))
    sampler = llama_cpp.llama_sampler_init_greedy()
    seen = []
    try:
        for nx, ny, flip in pictures:
            data = _picture(nx, ny, flip)
            bitmap = mtmd.mtmd_bitmap_init(nx, ny, (ctypes.c_uint8 * len(data)).from_buffer_copy(data))
            assert bitmap
            text = (
                b"<|im_start|>user\n"
                + mtmd.mtmd_default_marker()
                + b"\nWhat is this?<|im_end|>\n<|im_start|>assistant\n"
            )
            chunks = mtmd.mtmd_input_chunks_init()
            try:
                prompt = mtmd.mtmd_input_text(text, len(text), False, True)
                bitmaps = (mtmd.mtmd_bitmap_p_ctypes * 1)(bitmap)
                assert mtmd.mtmd_tokenize(ctx, chunks, ctypes.byref(prompt), bitmaps, 1) == 0
                parts = [mtmd.mtmd_input_chunks_get(chunks, i) for i in range(mtmd.mtmd_input_chunks_size(chunks))]
                types = [mtmd.mtmd_input_chunk_get_type(c) for c in parts]
                image = parts[types.index(mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE)]
                tokens = mtmd.mtmd_input_chunk_get_tokens_image(image)
                n_img = mtmd.mtmd_input_chunk_get_n_tokens(image)
                assert mtmd.mtmd_encode_chunk(ctx, image) == 0
                out = mtmd.mtmd_get_output_embd(ctx)
                embd = np.ctypeslib.as_array(out, shape=(n_img * n_embd,)).reshape(n_img, n_embd).copy()
                llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(lctx), True)
                n_past = llama_cpp.llama_pos(0)
                assert mtmd.mtmd_helper_eval_chunks(ctx, lctx, chunks, 0, 0, 256, True, ctypes.byref(n_past)) == 0
                logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(lctx, -1), shape=(n_vocab,))
                seen.append(
                    Seen(
                        chunk_types=types,
                        chunk_tokens=[mtmd.mtmd_input_chunk_get_n_tokens(c) for c in parts],
                        chunk_pos=[mtmd.mtmd_input_chunk_get_n_pos(c) for c in parts],
                        grid=(mtmd.mtmd_image_tokens_get_nx(tokens), mtmd.mtmd_image_tokens_get_ny(tokens)),
                        embd=embd,
                        n_past=n_past.value,
                        token=llama_cpp.llama_sampler_sample(sampler, lctx, -1),
                        logits_finite=bool(np.isfinite(logits).all()),
                    )
                )
            finally:
                mtmd.mtmd_input_chunks_free(chunks)
                mtmd.mtmd_bitmap_free(bitmap)
        return Look(mtmd.mtmd_support_vision(ctx), mtmd.mtmd_decode_use_mrope(ctx), n_embd, n_vocab, seen)
    finally:
        llama_cpp.llama_sampler_free(sampler)
        llama_cpp.llama_free(lctx)
        mtmd.mtmd_free(ctx)
        llama_cpp.llama_model_free(model)


def _accepted(model_path: Path, projector: Path) -> bool:
    import llama_cpp
    import llama_cpp.mtmd_cpp as mtmd

    init_backend()
    model = llama_cpp.llama_model_load_from_file(str(model_path).encode(), model_params())
    assert model
    try:
        ctx = mtmd.mtmd_init_from_file(str(projector).encode(), model, _context_params())
        if ctx:
            mtmd.mtmd_free(ctx)
        return bool(ctx)
    finally:
        llama_cpp.llama_model_free(model)


@pytest.fixture(scope="module")
def look(tiny_qwen35: Path, tiny_qwen35_vision: Path) -> Look:
    """The tiny model and projector through mtmd, with a square picture, its negative, and a wide one.

    On the model thread, as all llama.cpp work of the process (docs/ARCHITECTURE.md, the threading rule).
    """
    pictures = [(448, 448, False), (448, 448, True), (320, 192, False)]
    return MODEL_THREAD.call(_look, tiny_qwen35, tiny_qwen35_vision, pictures)


def test_mtmd_loads_the_projector_as_a_vision_encoder_with_m_rope(look: Look) -> None:
    assert look.vision is True
    assert look.mrope is True  # qwen35 is an IMROPE model: image tokens take 2D positions


def test_a_448_picture_is_196_tokens_on_14_positions(look: Look) -> None:
    import llama_cpp.mtmd_cpp as mtmd

    text, image = mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT, mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE
    square = look.seen[0]
    assert square.chunk_types == [text, image, text]
    # 448 / 16 = 28 patches a side, merged 2 x 2: a 14 x 14 grid of tokens. Under M-RoPE the image
    # advances the position by its longer side, not by its token count.
    assert square.grid == (14, 14) and square.chunk_tokens[1] == 196 and square.chunk_pos[1] == 14
    assert square.chunk_pos[0] == square.chunk_tokens[0] and square.chunk_pos[2] == square.chunk_tokens[2]
    assert square.n_past == sum(square.chunk_pos) < sum(square.chunk_tokens)


def test_a_wide_picture_keeps_its_aspect(look: Look) -> None:
    wide = look.seen[2]
    assert wide.grid == (10, 6) and wide.chunk_tokens[1] == 60 and wide.chunk_pos[1] == 10


def test_the_encoder_output_is_finite_model_width_and_depends_on_the_picture(look: Look) -> None:
    square, negative, wide = look.seen
    for s in look.seen:
        assert s.embd.shape == (s.chunk_tokens[1], look.n_embd) and np.isfinite(s.embd).all()
        assert s.embd.std() > 1e-3
    assert not np.allclose(square.embd, negative.embd, atol=1e-4)
    assert wide.embd.shape[0] != square.embd.shape[0]


def test_the_model_reads_the_image_and_samples_a_token(look: Look) -> None:
    for s in look.seen:
        assert s.logits_finite
        assert 0 <= s.token < look.n_vocab


def test_a_projector_of_another_width_is_refused(tmp_path: Path, tiny_qwen35: Path, tiny_qwen35_vision: Path) -> None:
    # The check the round trip above passes: a projector must hand the model embeddings of its width.
    wrong = build_projector(replace(VISION_SHAPES["tiny"], n_embd_text=256), tmp_path / "wrong-mmproj-F16.gguf")
    assert MODEL_THREAD.call(_accepted, tiny_qwen35, tiny_qwen35_vision) is True
    assert MODEL_THREAD.call(_accepted, tiny_qwen35, wrong) is False
