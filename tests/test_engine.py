"""LlamaEngine on real GGUFs: the starter SmolLM2 (a transformer) and the synthetic Qwen 3.5 (hybrid)."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from edgeassist.config import GenerationSettings
from edgeassist.engine import Done, GenerationOptions, Message, Text, Thinking
from edgeassist.engine.encoder import PromptEncoder
from edgeassist.engine.llama import LlamaEngine
from edgeassist.engine.thinking import ThinkSplitter
from edgeassist.errors import ContextOverflowError, ModelLoadError

GREEDY = GenerationOptions(temperature=0, max_tokens=24)


@pytest.fixture(scope="module")
def smol(starter_gguf: Path) -> LlamaEngine:
    engine = LlamaEngine(starter_gguf, name="smollm2", n_ctx=2048)
    engine.load()
    return engine


@pytest.fixture(scope="module")
def qwen(tiny_qwen35: Path) -> LlamaEngine:
    engine = LlamaEngine(tiny_qwen35, name="tiny-qwen35", n_ctx=2048)
    engine.load()
    return engine


def run(engine: LlamaEngine, messages: list[Message], options: GenerationOptions = GREEDY) -> tuple[str, str, Done]:
    text, thinking, done = [], [], None
    for ev in engine.stream(messages, options):
        if isinstance(ev, Text):
            text.append(ev.text)
        elif isinstance(ev, Thinking):
            thinking.append(ev.text)
        elif isinstance(ev, Done):
            done = ev
    assert done is not None
    return "".join(text), "".join(thinking), done


def test_starter_answers_and_reports_stats(smol: LlamaEngine) -> None:
    msgs: list[Message] = [
        {"role": "system", "content": GenerationSettings().system_prompt},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    answer, thinking, done = run(smol, msgs)
    assert "Paris" in answer
    assert thinking == ""
    s = done.stats
    assert s.backend == "cpu" and s.load_s > 0
    assert s.prompt_tokens > 0 and s.evaluated_tokens == s.prompt_tokens - s.reused_tokens
    assert s.generated_tokens == len(s.token_times) > 1
    assert s.ttft_s == s.token_times[0]
    assert s.token_times == sorted(s.token_times)
    assert s.finish_reason == "stop"
    assert s.decode_ms_per_token() is not None


def test_threads_default_to_physical_cores(starter_gguf: Path) -> None:
    from edgeassist.system import physical_cores

    assert LlamaEngine(starter_gguf).n_threads == physical_cores()


@pytest.mark.parametrize(
    ("features", "extra_buffers"), [("AVX2 = 1 | AMX_INT8 = 1 | REPACK = 1", False), ("AVX2 = 1 | REPACK = 1", True)]
)
def test_an_amx_build_loads_weights_without_extra_buffers(
    monkeypatch: pytest.MonkeyPatch, features: str, extra_buffers: bool
) -> None:
    """llama.cpp's AMX kernels die with SIGSEGV (seen on this workplace's Sapphire Rapids machines): in a build
    with them, weights stay in plain CPU buffers; elsewhere llama.cpp repacks them as it would."""
    from edgeassist.engine import build

    monkeypatch.setattr(build, "system_info", lambda: f"CPU : SSE3 = 1 | {features} | ")
    build.repacking_safe.cache_clear()
    try:
        assert build.model_params().use_extra_bufts is extra_buffers  # type: ignore[attr-defined]
        assert build.model_params(-1).n_gpu_layers == -1  # type: ignore[attr-defined]
    finally:
        build.repacking_safe.cache_clear()


def test_max_tokens_stops_with_length(smol: LlamaEngine) -> None:
    # Greedy: a sampled reply may draw its end-of-turn token within five (CI once saw a 4-token reply).
    count: list[Message] = [{"role": "user", "content": "Count from one to fifty."}]
    _, _, whole = run(smol, count, GenerationOptions(temperature=0, max_tokens=40))
    assert whole.stats.generated_tokens > 5  # (the unbounded reply is longer, so the cap is what stops it)
    _, _, done = run(smol, count, GenerationOptions(temperature=0, max_tokens=5))
    assert done.stats.generated_tokens == 5 and done.stats.finish_reason == "length"


def test_ignore_eos_generates_exactly_max_tokens(smol: LlamaEngine) -> None:
    msgs: list[Message] = [{"role": "user", "content": "Say OK."}]
    _, _, normal = run(smol, msgs, GenerationOptions(temperature=0, max_tokens=60))
    assert normal.stats.finish_reason == "stop" and normal.stats.generated_tokens < 60
    _, _, forced = run(smol, msgs, GenerationOptions(temperature=0, max_tokens=60, ignore_eos=True))
    assert forced.stats.generated_tokens == 60 and forced.stats.finish_reason == "length"


def test_cancel_stops_within_one_token(smol: LlamaEngine) -> None:
    cancel = threading.Event()
    texts = 0
    done = None
    story: list[Message] = [{"role": "user", "content": "Write a long story about a cat."}]
    for ev in smol.stream(story, GenerationOptions(seed=1), cancel):
        if isinstance(ev, Text):
            texts += 1
            if texts == 3:
                cancel.set()
        elif isinstance(ev, Done):
            done = ev
    assert done is not None and done.stats.finish_reason == "cancelled"
    assert texts == 3  # nothing streamed after the cancel
    # Each Text event carries at least one token; at most one more may sit in the UTF-8/tag buffer.
    assert 3 <= done.stats.generated_tokens <= 4


def test_transformer_follow_up_reuses_the_prefix(smol: LlamaEngine) -> None:
    msgs: list[Message] = [{"role": "user", "content": "Name a fruit."}]
    answer, _, first = run(smol, msgs)
    msgs += [{"role": "assistant", "content": answer}, {"role": "user", "content": "Name a colour."}]
    _, _, second = run(smol, msgs)
    assert second.stats.reused_tokens >= first.stats.prompt_tokens - 1
    assert second.stats.evaluated_tokens < second.stats.prompt_tokens - first.stats.prompt_tokens + 40


def test_prompt_beyond_context_is_a_clear_error(starter_gguf: Path) -> None:
    engine = LlamaEngine(starter_gguf, n_ctx=256)
    with pytest.raises(ContextOverflowError, match="context window is 256"):
        list(engine.stream([{"role": "user", "content": "word " * 400}], GREEDY))


def test_missing_non_gguf_and_truncated_files(tmp_path: Path, starter_gguf: Path) -> None:
    with pytest.raises(ModelLoadError, match="not found"):
        LlamaEngine(tmp_path / "nope.gguf").load()
    junk = tmp_path / "junk.gguf"
    junk.write_text("<html>not a model</html>")
    with pytest.raises(ModelLoadError, match="not a GGUF"):
        LlamaEngine(junk).load()
    cut = tmp_path / "cut.gguf"
    with starter_gguf.open("rb") as src, cut.open("wb") as dst:
        dst.write(src.read(starter_gguf.stat().st_size // 2))
    with pytest.raises(ModelLoadError, match="truncated") as e:
        LlamaEngine(cut).load()
    assert "cut.gguf" in str(e.value) and "\n" not in str(e.value)


def test_copy_of_model_loads(tmp_path: Path, starter_gguf: Path) -> None:
    copy = tmp_path / "copy.gguf"
    shutil.copy(starter_gguf, copy)
    engine = LlamaEngine(copy, n_ctx=512)
    assert engine.load() > 0 and engine.loaded
    engine.close()
    assert not engine.loaded


# -- Qwen 3.5 (synthetic, real architecture and template) ----------------------------------------


def test_qwen35_thinking_arrives_as_thinking_never_as_text(qwen: LlamaEngine) -> None:
    assert qwen.recurrent and qwen.supports_thinking
    prompt = qwen.render([{"role": "user", "content": "hi"}], think=True)
    assert prompt.endswith("<|im_start|>assistant\n<think>\n")
    hi: list[Message] = [{"role": "user", "content": "hi"}]
    text, thinking, done = run(qwen, hi, GenerationOptions(think=True, max_tokens=12, seed=1))
    # Random weights never close the think block, so everything generated is thinking.
    assert done.stats.generated_tokens > 0
    assert thinking and text == ""
    off = qwen.render([{"role": "user", "content": "hi"}], think=False)
    assert off.endswith("<think>\n\n</think>\n\n")


def test_flash_attention_is_off_on_the_cpu_unless_asked_for(
    starter_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llama_cpp

    seen: list[int] = []
    real = llama_cpp.llama_init_from_model

    def spy(model: object, params: object) -> object:
        seen.append(params.flash_attn_type)  # type: ignore[attr-defined]
        return real(model, params)

    monkeypatch.setattr(llama_cpp, "llama_init_from_model", spy)
    for mode in ("auto", "on", "off"):
        engine = LlamaEngine(starter_gguf, n_ctx=512, n_gpu_layers=0, flash_attn=mode)
        engine.load()
        engine.close()
    assert seen == [0, 1, 0]  # auto on the CPU: off (llama.cpp's own auto would turn it on)


def test_pieces_count_the_tokens_they_come_from(qwen: LlamaEngine) -> None:
    # Random weights pick rare tokens, many of them parts of a character: those make no piece alone.
    opts = GenerationOptions(max_tokens=40, temperature=1.0, seed=3, ignore_eos=True)
    events = list(qwen.stream([{"role": "user", "content": "Hi"}], opts))
    pieces = [e for e in events if isinstance(e, Text | Thinking)]
    done = events[-1]
    assert isinstance(done, Done) and done.stats.generated_tokens == 40
    counted = sum(e.tokens for e in pieces)
    assert 40 - 3 <= counted <= 40  # all but a character left unfinished at the end (at most 3 bytes)
    assert len(pieces) < counted or all(e.tokens == 1 for e in pieces)


def test_qwen35_follow_ups_evaluate_only_new_tokens_and_previous_reply(qwen: LlamaEngine) -> None:
    msgs: list[Message] = [{"role": "system", "content": "You are terse."}]
    previous_split = None
    for turn in range(6):
        msgs.append({"role": "user", "content": f"Question number {turn}: tell me something about the number {turn}."})
        encoded = qwen.encode(msgs, think=False)
        prompt = encoded.tokens
        answer, _, done = run(qwen, msgs, GenerationOptions(temperature=0, max_tokens=16))
        s = done.stats
        assert s.prompt_tokens == len(prompt)
        if previous_split is not None:
            # Resumed exactly where the previous reply started: only that reply and the new turn are evaluated.
            assert s.reused_tokens == previous_split
            assert s.evaluated_tokens == len(prompt) - previous_split
        previous_split = encoded.split
        msgs.append({"role": "assistant", "content": answer})
    assert s.evaluated_tokens < s.prompt_tokens / 2


def test_qwen35_restored_state_gives_the_same_reply_as_a_fresh_evaluation(tiny_qwen35: Path) -> None:
    msgs: list[Message] = [{"role": "user", "content": "Say something."}]
    warm = LlamaEngine(tiny_qwen35, n_ctx=1024)
    first, _, _ = run(warm, msgs)
    msgs += [{"role": "assistant", "content": first}, {"role": "user", "content": "And again."}]
    reused, _, done = run(warm, msgs)
    assert done.stats.reused_tokens > 0
    fresh_engine = LlamaEngine(tiny_qwen35, n_ctx=1024)
    fresh, _, fresh_done = run(fresh_engine, msgs)
    assert fresh_done.stats.reused_tokens == 0
    assert reused == fresh


def test_a_hybrid_turn_evaluates_its_prompt_in_one_pass_and_still_resumes(
    tiny_qwen35: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpoint where the reply starts comes from llama.cpp's state snapshots, not a second pass.

    Replies are the same as with the two-pass way (no snapshots), turn after turn, and each
    follow-up resumes where the previous reply started.
    """
    one_pass = LlamaEngine(tiny_qwen35, n_ctx=1024)
    one_pass.load()
    assert one_pass._rollback >= 4  # Qwen 3.5 opens a reply with `<think>\n\n</think>\n\n` after its start
    two_pass = LlamaEngine(tiny_qwen35, n_ctx=1024)
    monkeypatch.setattr(PromptEncoder, "reply_tail_depth", lambda self, most: 0)
    two_pass.load()
    assert two_pass._rollback == 0
    passes: dict[LlamaEngine, int] = {}
    for engine in (one_pass, two_pass):
        assert engine._state is not None

        def counting(
            tokens: object,
            cancel: object = None,
            *,
            last: int = 1,
            engine: LlamaEngine = engine,
            decode: Any = engine._state.decode,
        ) -> bool:
            passes[engine] += 1
            return bool(decode(tokens, cancel, last=last))

        monkeypatch.setattr(engine._state, "decode", counting)
    msgs: dict[LlamaEngine, list[Message]] = {one_pass: [], two_pass: []}
    for turn in range(3):
        replies = []
        for engine in (one_pass, two_pass):
            passes[engine] = 0
            msgs[engine].append({"role": "user", "content": f"Turn {turn}: say something."})
            split = engine.encode(msgs[engine], think=False).split
            answer, _, done = run(engine, msgs[engine])
            if turn:
                assert done.stats.reused_tokens > 0
            msgs[engine].append({"role": "assistant", "content": answer})
            replies.append(answer)
            assert engine._state is not None and engine._state.checkpoint is not None
            assert len(engine._state.checkpoint.tokens) == split
        assert (passes[one_pass], passes[two_pass]) == (1, 2)
        assert replies[0] == replies[1]


def test_a_turn_renders_and_tokenizes_its_prompt_once(qwen: LlamaEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeassist.chat import Conversation

    assert qwen._template is not None
    renders: list[int] = []
    render = qwen._template.render

    def counting(*args: object, **kwargs: object) -> str:
        renders.append(1)
        return render(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(qwen._template, "render", counting)
    tokenized: list[str] = []
    tokenize = qwen.tokenize

    def counting_tokens(text: str, **kwargs: bool) -> list[int]:
        if len(text) > 40:  # (the prompt's long segments, not the short control-token probes)
            tokenized.append(text)
        return tokenize(text, **kwargs)

    monkeypatch.setattr(qwen, "tokenize", counting_tokens)
    convo = Conversation(qwen, system_prompt="You are terse.", options=GREEDY)
    for turn in range(3):
        renders.clear()
        tokenized.clear()
        list(convo.send(f"Question {turn}: tell me something about the number {turn} in a sentence."))
        assert len(renders) == 1  # the fit to the context and the stream share one rendering
        assert len(tokenized) == len(set(tokenized))  # no text tokenized twice


# -- pieces ----------------------------------------------------------------------------------------


def feed_all(splitter: ThinkSplitter, pieces: list[str]) -> list[tuple[str, str]]:
    out = [ev for p in pieces for ev in splitter.feed(p)] + list(splitter.flush())
    merged: list[tuple[str, str]] = []
    for ev in out:
        kind = type(ev).__name__
        if merged and merged[-1][0] == kind:
            merged[-1] = (kind, merged[-1][1] + ev.text)
        else:
            merged.append((kind, ev.text))
    return merged


def test_think_splitter_handles_tags_split_across_pieces() -> None:
    pieces = ["<thi", "nk>\nLet me ", "think.</th", "ink>\n\nThe answer", " is 4."]
    assert feed_all(ThinkSplitter(), pieces) == [("Thinking", "Let me think."), ("Text", "The answer is 4.")]
    assert feed_all(ThinkSplitter(thinking=True), ["hmm</think>\n\nok"]) == [("Thinking", "hmm"), ("Text", "ok")]
    assert feed_all(ThinkSplitter(), ["a < b and <thin"]) == [("Text", "a < b and <thin")]


def test_sampling_defaults_follow_the_qwen35_model_card() -> None:
    assert GenerationOptions(think=True).sampling() == {
        "temperature": 1.0,
        "top_p": 0.95,
        "top_k": 20,
        "min_p": 0.0,
        "presence_penalty": 1.5,
        "repeat_penalty": 1.0,
    }
    off = GenerationOptions(think=False).sampling()
    assert (off["temperature"], off["top_p"], off["top_k"], off["presence_penalty"]) == (0.7, 0.8, 20, 1.5)
    assert GenerationOptions(think=False, temperature=0.1, top_k=5).sampling()["temperature"] == 0.1
    # Other models (the starter) get general defaults: no presence penalty.
    assert GenerationOptions().sampling("other")["presence_penalty"] == 0.0


def test_model_family_picks_the_sampling_defaults(smol: LlamaEngine, qwen: LlamaEngine) -> None:
    assert (smol.family, qwen.family) == ("other", "qwen3.5")


def test_a_hybrid_model_continues_a_cut_reply_from_its_state(qwen: LlamaEngine) -> None:
    msgs: list[Message] = [{"role": "user", "content": "Tell me about the sea."}]
    split = qwen.encode(msgs, think=False).split
    part, _, first = run(qwen, msgs, GenerationOptions(temperature=0, max_tokens=5, ignore_eos=True))
    assert first.stats.finish_reason == "length"
    going_on = [*msgs, {"role": "assistant", "content": part}]
    more, _, done = run(qwen, going_on, GenerationOptions(temperature=0, max_tokens=5, ignore_eos=True))
    assert more and done.stats.generated_tokens == 5
    assert done.stats.reused_tokens >= split  # resumed from the reply's state, never from the start
    assert part.strip() in qwen.encode(going_on, think=False).text  # (the template strips a message)
