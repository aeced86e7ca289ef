"""`Vision`: a model's projector (its `mmproj` GGUF) through llama.cpp's multimodal library, mtmd.

A picture becomes a run of one negative token id in a prompt's token list (see `engine.state`),
wrapped in the text tokens mtmd puts around it (Qwen 3.5's `<|vision_start|>`/`<|vision_end|>`).
The id comes from the picture's content, the projector and the token budget, so the same picture
in the history is the same prefix turn after turn: a hybrid model resumes after it, and the
projector reads it once. Its embeddings are kept too (for a few pictures), so a chat whose state
was lost does not run the vision encoder again. The encoder can be stopped between graph nodes
(llama.cpp's eval callback), so a cancel lands during an encode too.
"""

from __future__ import annotations

import ctypes
import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeassist.engine.base import ImageRef
from edgeassist.engine.log import LOG, first_error, install_mtmd_log
from edgeassist.errors import EdgeAssistError, ImageError, ModelLoadError

KEEP_ENCODED = 8
"""Pictures whose embeddings (and mtmd chunk) are kept in memory; older ones are read again if needed."""
CHECK_EVERY = 24
"""Graph nodes between two looks at the cancel flag while the vision encoder runs."""
PIXELS_PER_TOKEN = 32 * 32
"""Pixels one image token covers in Qwen 3.5's projector (16-pixel patches, merged 2 by 2)."""


@dataclass
class Picture:
    """A picture as the projector reads it: its tokens and positions, and what is kept of its reading."""

    id: int
    """Its (negative) token id in prompts."""
    ref: ImageRef
    n_tokens: int
    """Prompt tokens it takes (cells in the context)."""
    n_pos: int
    """Positions it spans (fewer than tokens under M-RoPE)."""
    before: list[int]
    """Text tokens mtmd puts before it."""
    after: list[int]
    """Text tokens mtmd puts after it."""
    chunk: Any = None
    """The mtmd chunk (owned), while kept."""
    embd: Any = None
    """Its embeddings (`n_tokens` rows), once encoded and while kept."""


@dataclass
class VisionStats:
    """What the projector did for one reply."""

    encoded: int = 0
    encode_s: float = 0.0


class _Span:
    """A picture as `ContextState` evaluates it (`engine.state.Media`)."""

    def __init__(self, vision: Vision, picture: Picture) -> None:
        self.vision, self.picture = vision, picture
        self.n_tokens, self.n_pos = picture.n_tokens, picture.n_pos

    def decode(self, pos: int, cancel: threading.Event | None) -> bool:
        return self.vision.decode(self.picture, pos, cancel)


class Vision:
    """One model's projector: loaded on the first picture, used on the model thread only."""

    def __init__(self, projector: Path, *, image_tokens: int, n_threads: int, use_gpu: bool, n_batch: int) -> None:
        """Remember how to open `projector`; `image_tokens` is the most tokens one picture may take."""
        self.projector = Path(projector)
        self.image_tokens = image_tokens
        self.n_threads = n_threads
        self.use_gpu = use_gpu
        self.n_batch = n_batch
        self.stats = VisionStats()
        self._ctx: Any = None
        self._llama: Any = None  # the llama.cpp context pictures are decoded into
        self._cancel: threading.Event | None = None  # the reply being encoded for
        self._nodes = 0
        self._callback: Any = None  # kept: ctypes frees a callback nobody references
        self._pictures: dict[int, Picture] = {}
        self._by_ref: dict[ImageRef, Picture] = {}
        self._kept: OrderedDict[int, None] = OrderedDict()  # pictures holding a chunk, oldest first
        try:
            stat = self.projector.stat()
            self._identity = f"{self.projector.name}:{stat.st_size}:{image_tokens}"
        except OSError:
            self._identity = f"{self.projector.name}:?:{image_tokens}"

    @property
    def max_pixels(self) -> int:
        """The most pixels a picture is scaled to before the projector reads it."""
        return self.image_tokens * PIXELS_PER_TOKEN

    def open(self, model: Any, llama_ctx: Any) -> None:
        """Load the projector for `model` (once), decoding into `llama_ctx`."""
        self._llama = llama_ctx
        if self._ctx is not None:
            return
        from llama_cpp import llama_cpp as lc
        from llama_cpp import mtmd_cpp as mtmd

        if not self.projector.is_file():
            raise ModelLoadError(f"vision projector not found: {self.projector}")
        with self.projector.open("rb") as f:
            if f.read(4) != b"GGUF":
                raise ModelLoadError(f"{self.projector} is not a GGUF projector file; delete it and pull it again")
        install_mtmd_log()

        @lc.ggml_backend_sched_eval_callback  # type: ignore[untyped-decorator]
        def _eval(tensor: Any, ask: bool, user_data: Any) -> bool:
            cancel = self._cancel
            stopped = cancel is not None and cancel.is_set()
            if ask:
                self._nodes += 1
                return stopped or self._nodes % CHECK_EVERY == 0
            return not stopped

        self._callback = _eval
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = self.use_gpu
        params.print_timings = False
        params.n_threads = self.n_threads
        params.warmup = False
        params.image_max_tokens = self.image_tokens
        params.cb_eval = _eval
        mark = LOG.count
        ctx = mtmd.mtmd_init_from_file(str(self.projector).encode(), model, params)
        if not ctx:
            reason = first_error(mark) or "unknown error"
            raise ModelLoadError(
                f"cannot load the vision projector {self.projector.name} ({reason}): it is corrupt or not this "
                "model's; delete it and pull it again"
            )
        if not mtmd.mtmd_support_vision(ctx):
            mtmd.mtmd_free(ctx)
            raise ModelLoadError(f"{self.projector.name} is not a vision projector")
        self._ctx = ctx

    def close(self) -> None:
        """Free the projector and what is kept of the pictures."""
        from llama_cpp import mtmd_cpp as mtmd

        for picture in self._pictures.values():
            self._drop(picture)
        self._pictures.clear()
        self._by_ref.clear()
        self._kept.clear()
        if self._ctx is not None:
            mtmd.mtmd_free(self._ctx)
            self._ctx = None

    # -- pictures into tokens ----------------------------------------------------------------------

    def tokens(self, ref: ImageRef) -> list[int]:
        """The prompt tokens of `ref`: mtmd's text before, the picture's run, the text after."""
        picture = self._by_ref.get(ref)
        if picture is None:
            picture = self._read(ref)
        return picture.before + [picture.id] * picture.n_tokens + picture.after

    def span(self, token: int) -> _Span:
        """The picture behind a negative token id (one this process has read)."""
        picture = self._pictures.get(token)
        if picture is None:
            raise EdgeAssistError("the model state holds a picture this process has not read")
        return _Span(self, picture)

    def _id(self, ref: ImageRef) -> int:
        digest = hashlib.sha256(f"{ref.sha256}:{self._identity}".encode()).digest()
        return -1 - (int.from_bytes(digest[:4], "little") & 0x3FFFFFFF)

    def _read(self, ref: ImageRef) -> Picture:
        """Read `ref`'s pixels and cut them into mtmd's chunk (no encoding yet)."""
        from edgeassist.images import read_image, rgb_pixels

        if self._ctx is None:
            raise EdgeAssistError("the vision projector is not loaded")
        width, height, rgb = rgb_pixels(read_image(ref.path), self.max_pixels)
        picture = Picture(self._id(ref), ref, 0, 0, [], [])
        self._chunk(picture, width, height, rgb)
        self._pictures[picture.id] = picture
        self._by_ref[ref] = picture
        return picture

    def _chunk(self, picture: Picture, width: int, height: int, rgb: bytes) -> None:
        from llama_cpp import mtmd_cpp as mtmd

        data = (ctypes.c_uint8 * len(rgb)).from_buffer_copy(rgb)
        bitmap = mtmd.mtmd_bitmap_init(width, height, data)
        if not bitmap:
            raise ImageError(f"{picture.ref.path.name}: llama.cpp could not take the picture ({width}x{height})")
        chunks = mtmd.mtmd_input_chunks_init()
        try:
            marker = mtmd.mtmd_default_marker()
            text = mtmd.mtmd_input_text(marker, len(marker), False, True)
            bitmaps = (mtmd.mtmd_bitmap_p_ctypes * 1)(bitmap)
            rc = mtmd.mtmd_tokenize(self._ctx, chunks, ctypes.byref(text), bitmaps, 1)
            if rc != 0:
                raise ImageError(f"{picture.ref.path.name}: the projector could not read the picture (code {rc})")
            before: list[int] = []
            after: list[int] = []
            for i in range(mtmd.mtmd_input_chunks_size(chunks)):
                chunk = mtmd.mtmd_input_chunks_get(chunks, i)
                kind = mtmd.mtmd_input_chunk_get_type(chunk)
                if kind == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                    picture.chunk = mtmd.mtmd_input_chunk_copy(chunk)
                    picture.n_tokens = int(mtmd.mtmd_input_chunk_get_n_tokens(chunk))
                    picture.n_pos = int(mtmd.mtmd_input_chunk_get_n_pos(chunk))
                elif kind == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                    n = ctypes.c_size_t(0)
                    ptr = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                    (after if picture.chunk is not None else before).extend(ptr[j] for j in range(n.value))
        finally:
            mtmd.mtmd_input_chunks_free(chunks)
            mtmd.mtmd_bitmap_free(bitmap)
        if picture.chunk is None or picture.n_tokens <= 0:
            raise ImageError(f"{picture.ref.path.name}: the projector made no tokens of the picture")
        picture.before, picture.after = before, after
        self._keep(picture)

    def _keep(self, picture: Picture) -> None:
        self._kept[picture.id] = None
        self._kept.move_to_end(picture.id)
        while len(self._kept) > KEEP_ENCODED:
            oldest, _ = self._kept.popitem(last=False)
            self._drop(self._pictures[oldest])

    def _drop(self, picture: Picture) -> None:
        from llama_cpp import mtmd_cpp as mtmd

        if picture.chunk is not None:
            mtmd.mtmd_input_chunk_free(picture.chunk)
        picture.chunk = picture.embd = None

    # -- pictures into the context -----------------------------------------------------------------

    def decode(self, picture: Picture, pos: int, cancel: threading.Event | None) -> bool:
        """Evaluate `picture` into the llama.cpp context at `pos`, encoding it first if need be; False if cancelled."""
        from llama_cpp import llama_cpp as lc
        from llama_cpp import mtmd_cpp as mtmd

        if picture.chunk is None:  # (dropped from memory since: read the file again)
            from edgeassist.images import read_image, rgb_pixels

            width, height, rgb = rgb_pixels(read_image(picture.ref.path), self.max_pixels)
            self._chunk(picture, width, height, rgb)
        self._keep(picture)
        if picture.embd is None:
            if not self._encode(picture, cancel):
                return False
        if cancel is not None and cancel.is_set():
            return False
        new_pos = lc.llama_pos(0)
        rc = mtmd.mtmd_helper_decode_image_chunk(
            self._ctx,
            self._llama,
            picture.chunk,
            picture.embd,
            pos,
            0,
            self.n_batch,
            ctypes.byref(new_pos),
            mtmd.mtmd_helper_post_decode_callback(),  # (none: a NULL function pointer)
            None,
        )
        if rc != 0:
            raise EdgeAssistError(f"llama.cpp failed to read the picture into the model (code {rc})")
        return True

    def _encode(self, picture: Picture, cancel: threading.Event | None) -> bool:
        """Run the vision encoder on `picture`, keeping its embeddings; False if cancelled meanwhile."""
        from llama_cpp import llama_cpp as lc
        from llama_cpp import mtmd_cpp as mtmd

        t0 = time.perf_counter()
        self._cancel, self._nodes = cancel, 0
        try:
            rc = mtmd.mtmd_encode_chunk(self._ctx, picture.chunk)
        finally:
            self._cancel = None
        if cancel is not None and cancel.is_set():
            return False  # (what the encoder left is half a picture)
        if rc != 0:
            raise EdgeAssistError(f"the vision encoder failed on {picture.ref.path.name} (code {rc})")
        n_embd = lc.llama_model_n_embd_inp(lc.llama_get_model(self._llama))
        size = picture.n_tokens * n_embd
        out = mtmd.mtmd_get_output_embd(self._ctx)
        embd = (ctypes.c_float * size)()
        ctypes.memmove(embd, out, size * ctypes.sizeof(ctypes.c_float))
        picture.embd = embd
        self.stats.encoded += 1
        self.stats.encode_s += time.perf_counter() - t0
        return True
