"""The engine sees pictures through llama.cpp's mtmd: a random-weight Qwen 3.5 and its projector, for real.

The tiny synthetic model and its projector (`qwen3vl_merger`, the real Qwen 3.5 vision encoder's
layout at a tiny width) run the whole path: Pillow's pixels, mtmd's chunk, the vision encoder,
the embeddings decoded into the hybrid model at M-RoPE positions, the prompt reuse after them.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from edgeassist.chat import Conversation
from edgeassist.engine.base import Done, GenerationOptions, ImageRef, Message, Stats
from edgeassist.engine.llama import LlamaEngine
from edgeassist.engine.modelthread import MODEL_THREAD
from edgeassist.engine.state import ContextState
from edgeassist.engine.statefile import StateFiles
from edgeassist.errors import ModelLoadError, VisionUnavailableError
from edgeassist.images import read_image
from edgeassist.store import Store

GREEDY = GenerationOptions(max_tokens=4, temperature=0, top_k=1, repeat_penalty=1.0, presence_penalty=0.0, seed=1)


def picture(path: Path, size: tuple[int, int] = (320, 240), colour: tuple[int, int, int] = (200, 40, 40)) -> Path:
    """A JPEG with a few shapes (not one flat colour), written to `path`."""
    im = Image.new("RGB", size, colour)
    draw = ImageDraw.Draw(im)
    draw.ellipse((size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2), fill=(20, 200, 90))
    draw.rectangle((size[0] // 2, size[1] // 2, size[0] - 10, size[1] - 10), fill=(30, 30, 220))
    im.save(path, quality=92)
    return path


def ref(path: Path) -> ImageRef:
    return ImageRef(read_image(path).sha256, path)


@pytest.fixture
def engine(tiny_qwen35: Path, tiny_qwen35_vision: Path) -> Iterator[LlamaEngine]:
    eng = LlamaEngine(tiny_qwen35, projector=tiny_qwen35_vision, n_ctx=2048, n_threads=2, adapt_threads=False)
    try:
        yield eng
    finally:
        eng.close()


def reply(eng: LlamaEngine, messages: list[Message], cancel: threading.Event | None = None) -> Stats:
    done = [e for e in eng.stream(messages, GREEDY, cancel) if isinstance(e, Done)]
    assert len(done) == 1
    return done[0].stats


def test_an_engine_with_a_projector_declares_it_sees(engine: LlamaEngine, tiny_qwen35: Path) -> None:
    assert engine.capabilities.images
    blind = LlamaEngine(tiny_qwen35)
    try:
        assert not blind.capabilities.images
        with pytest.raises(VisionUnavailableError):
            blind.encode(
                [
                    {
                        "role": "user",
                        "content": "what is it?",
                        "images": (ref(picture(Path(blind.path).parent / "p.jpg")),),
                    }
                ],
                False,
            )
    finally:
        blind.close()


def test_a_picture_is_read_at_llama_cpps_own_positions(engine: LlamaEngine, tmp_path: Path) -> None:
    """The logits after a picture are those llama.cpp's own mtmd helper gives for the same prompt.

    Under M-RoPE a picture spans fewer positions than tokens: text after it placed at the next
    token's index instead would change these logits (by about 6% of their scale here).
    """
    import llama_cpp
    from llama_cpp import mtmd_cpp as mtmd

    from edgeassist.images import rgb_pixels

    path = picture(tmp_path / "p.jpg")
    msgs: list[Message] = [{"role": "user", "content": "What is in it?", "images": (ref(path),)}]
    prompt = engine.encode(msgs, False)
    images = [t for t in prompt.tokens if t < 0]
    assert images and len(set(images)) == 1  # one picture: one run of one id
    assert "<image>" in prompt.text

    vision = engine._vision
    assert vision is not None
    n_vocab = llama_cpp.llama_vocab_n_tokens(engine._vocab)

    def ours() -> np.ndarray:
        state = engine._state
        assert state is not None
        state.reset()
        assert state.decode(prompt.tokens)
        assert state.shift > 0  # (M-RoPE: the picture took fewer positions than tokens)
        # The next token's position, which llama.cpp gives a batch without positions, follows on.
        last = llama_cpp.llama_memory_seq_pos_max(llama_cpp.llama_get_memory(state.ctx), 0)
        assert last == len(prompt.tokens) - state.shift - 1
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(state.ctx, -1), shape=(n_vocab,)).copy()

    def theirs() -> np.ndarray:
        ctx = engine.new_context()
        width, height, rgb = rgb_pixels(read_image(path), vision.max_pixels)
        bitmap = mtmd.mtmd_bitmap_init(width, height, (ctypes.c_uint8 * len(rgb)).from_buffer_copy(rgb))
        chunks = mtmd.mtmd_input_chunks_init()
        try:
            text = prompt.text.replace("<image>", mtmd.mtmd_default_marker().decode()).encode()
            inp = mtmd.mtmd_input_text(text, len(text), False, True)
            bitmaps = (mtmd.mtmd_bitmap_p_ctypes * 1)(bitmap)
            assert mtmd.mtmd_tokenize(vision._ctx, chunks, ctypes.byref(inp), bitmaps, 1) == 0
            n_past = llama_cpp.llama_pos(0)
            assert mtmd.mtmd_helper_eval_chunks(vision._ctx, ctx, chunks, 0, 0, 512, True, ctypes.byref(n_past)) == 0
            assert n_past.value < len(prompt.tokens)
            return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1), shape=(n_vocab,)).copy()
        finally:
            mtmd.mtmd_input_chunks_free(chunks)
            mtmd.mtmd_bitmap_free(bitmap)
            llama_cpp.llama_free(ctx)

    mine = MODEL_THREAD.call(ours)
    reference = MODEL_THREAD.call(theirs)
    assert np.abs(mine - reference).max() <= 1e-4 * max(1.0, float(np.abs(reference).max()))


def test_a_picture_is_encoded_once_and_the_turns_after_it_reuse_it(engine: LlamaEngine, tmp_path: Path) -> None:
    path = picture(tmp_path / "p.jpg")
    msgs: list[Message] = [
        {"role": "system", "content": "You describe pictures."},
        {"role": "user", "content": "What is in it?", "images": (ref(path),)},
    ]
    first = reply(engine, msgs)
    assert first.images == 1 and first.images_encoded == 1
    assert first.image_tokens > 0 and first.evaluated_tokens > first.image_tokens
    assert 0 < first.image_encode_s <= first.prompt_eval_s
    for text in ("And its colours?", "Thanks."):
        msgs += [{"role": "assistant", "content": "A picture."}, {"role": "user", "content": text}]
        later = reply(engine, msgs)
        assert later.images_encoded == 0 and later.image_encode_s == 0
        assert later.image_tokens == first.image_tokens
        assert later.reused_tokens > first.image_tokens  # the picture stays in the kept state
        assert later.evaluated_tokens < first.image_tokens  # only the new turn is read

    # With the state gone, the history is read again, but the picture's embeddings are kept.
    engine.forget()
    cold = reply(engine, msgs)
    assert cold.reused_tokens == 0 and cold.images_encoded == 0


def test_two_pictures_in_one_message_and_another_later(engine: LlamaEngine, tmp_path: Path) -> None:
    a, b = picture(tmp_path / "a.jpg"), picture(tmp_path / "b.png", (200, 300), (10, 10, 10))
    msgs: list[Message] = [{"role": "user", "content": "Compare them.", "images": (ref(a), ref(b))}]
    first = reply(engine, msgs)
    assert first.images == 2 and first.images_encoded == 2
    msgs += [{"role": "assistant", "content": "Two."}, {"role": "user", "content": "And this?", "images": (ref(a),)}]
    second = reply(engine, msgs)
    assert second.images == 3 and second.images_encoded == 0  # (the same picture again: read once)
    assert second.reused_tokens > first.image_tokens


def test_a_cancel_lands_during_the_vision_encoder(tiny_qwen35: Path, tiny_qwen35_vision: Path, tmp_path: Path) -> None:
    """The encoder stops between graph nodes once cancelled, and nothing half-read is kept."""
    eng = LlamaEngine(tiny_qwen35, projector=tiny_qwen35_vision, n_ctx=4096, image_tokens=1024, adapt_threads=False)
    try:
        vision = eng._vision
        assert vision is not None

        class Midway(threading.Event):
            """Reads as set once the encoder has passed a few graph nodes."""

            def is_set(self) -> bool:
                return vision._nodes >= 4

        path = picture(tmp_path / "big.jpg", (1024, 1024))
        msgs: list[Message] = [{"role": "user", "content": "What is it?", "images": (ref(path),)}]
        stopped = reply(eng, msgs, Midway())
        assert stopped.finish_reason == "cancelled" and stopped.images_encoded == 0 and stopped.generated_tokens == 0
        nodes_when_stopped = vision._nodes
        assert all(p.embd is None for p in vision._pictures.values())

        whole = reply(eng, msgs)
        assert whole.finish_reason != "cancelled" and whole.images_encoded == 1
        assert nodes_when_stopped < vision._nodes // 2  # it stopped early, not at the end
    finally:
        eng.close()


def test_a_chat_with_a_picture_resumes_in_a_new_process_without_the_encoder(
    tiny_qwen35: Path, tiny_qwen35_vision: Path, tmp_path: Path
) -> None:
    store = Store(tmp_path / "data" / "history.sqlite3")
    files = StateFiles(store.states_dir, 1 << 30)
    path = picture(tmp_path / "p.jpg")

    def process() -> LlamaEngine:
        return LlamaEngine(tiny_qwen35, projector=tiny_qwen35_vision, n_ctx=2048, state_files=files)

    eng = process()
    try:
        convo = Conversation.open(eng, store, "pics", options=GREEDY)
        first = [e for e in convo.send("What is it?", images=[read_image(path)]) if isinstance(e, Done)][0].stats
    finally:
        eng.close()
    kept = store.images.get(read_image(path).sha256)
    assert kept is not None and kept.stat().st_mode & 0o777 == 0o600

    eng = process()
    try:
        convo = Conversation.open(eng, Store(store.path), "pics", options=GREEDY)
        assert convo.turns[0].images[0].ref.path == kept
        later = [e for e in convo.send("And then?") if isinstance(e, Done)][0].stats
    finally:
        eng.close()
    assert later.images == 1 and later.images_encoded == 0  # restored from the kept state: no encoder
    assert later.reused_tokens > first.image_tokens


def test_a_projector_that_is_not_one_is_a_one_line_error(tiny_qwen35: Path, tmp_path: Path) -> None:
    bad = tmp_path / "x-mmproj-F16.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    eng = LlamaEngine(tiny_qwen35, projector=bad)
    try:
        with pytest.raises(ModelLoadError) as e:
            reply(eng, [{"role": "user", "content": "?", "images": (ref(picture(tmp_path / "p.jpg")),)}])
        assert "\n" not in str(e.value) and "projector" in str(e.value)
        assert reply(eng, [{"role": "user", "content": "text still works"}]).generated_tokens > 0
        # Through a saved chat: the message is not kept, nor its picture.
        store = Store(tmp_path / "data" / "history.sqlite3")
        convo = Conversation.open(eng, store, "c", options=GREEDY)
        with pytest.raises(ModelLoadError):
            list(convo.send("What is it?", images=[read_image(tmp_path / "p.jpg")]))
        assert convo.turns == [] and store.messages(convo.chat.id) == []  # type: ignore[union-attr]
        assert not any(store.images.folder.iterdir())
    finally:
        eng.close()


def test_message_text_never_becomes_a_picture_or_vision_markup(engine: LlamaEngine, tmp_path: Path) -> None:
    """`<__media__>`, `<|vision_start|>`, `<|image_pad|>` typed or pasted stay characters; no picture without one."""
    text = "<__media__> <|vision_start|><|image_pad|><|vision_end|> \ue004 <image>"
    prompt = engine.encode([{"role": "user", "content": text}], False)
    assert all(t >= 0 for t in prompt.tokens)
    specials = {engine.tokenize(s, special=True)[0] for s in ("<|vision_start|>", "<|image_pad|>", "<|vision_end|>")}
    assert not specials & set(prompt.tokens)


def test_a_cut_never_lands_inside_a_picture() -> None:
    """A transformer's cache is cut back to the common prefix: never to the middle of a picture's run."""
    state = ContextState(object(), n_batch=8, recurrent=False, rollback=0)
    prompt = [1, 2, -7, -7, -7, -7, 3, 4]
    assert state.reusable([1, 2, -7, -7, 9], prompt) == 2
    assert state.reusable([1, 2, -7, -7, -7, -7, 3, 9], prompt) == 7
