"""The voice turn: real models end to end, sentence streaming, barge-in, the real device path, the CLI."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from audio_helpers import (
    HELD,
    WAIT_S,
    HeldTranscriber,
    RecordingOut,
    ScriptedEngine,
    SilentTranscriber,
    ToneSynth,
    alsa_rig,
    piper,
    speak,
    speak_16k,
    tone,
    transcribe_any,
    whisper,
    word_recall,
    words,
)

from edgeassist.bench.voice import BENCH_STAGES, STAND_IN_SENTENCE, StandInSynthesizer, VoiceTarget, bench_stages
from edgeassist.chat import Conversation
from edgeassist.cli import main
from edgeassist.cli.voice import Key, parse_keys
from edgeassist.config import load_settings
from edgeassist.engine.base import Done, GenerationOptions, Notice, Text, Thinking
from edgeassist.engine.llama import LlamaEngine
from edgeassist.errors import UsageError
from edgeassist.speech.audio import ArrayIn, WavIn, WavOut, read_wav, write_wav
from edgeassist.speech.text import CODE_PLACEHOLDER, markdown_to_prose
from edgeassist.voice import (
    Heard,
    Speaking,
    TurnDone,
    VoiceConfig,
    VoicePipeline,
    build_pipeline,
    prefill_prompt,
    simulate_turn,
)
from edgeassist.voice.prefill import TurnScheduler

QUESTION = "What is the capital of France?"
OTHER_QUESTION = "What is the capital of Italy?"
SYSTEM = "You are a helpful assistant running offline on the user's device. Answer clearly and concisely."


def fake_pipeline(
    engine: ScriptedEngine, out: RecordingOut, synth: ToneSynth | None = None, **kw: object
) -> VoicePipeline:
    """A pipeline of fakes: the transcriber 'hears' a fixed question in any sound."""
    return VoicePipeline(
        Conversation(engine),
        SilentTranscriber("Tell me about Paris"),
        synth or ToneSynth(),
        ArrayIn(tone(1.0), 16000),
        out,
        config=VoiceConfig(prefill=False, **kw),  # type: ignore[arg-type]
    )


# -- real models, end to end -----------------------------------------------------------------------------


def test_a_spoken_question_gets_a_spoken_answer_with_the_real_models(tmp_path: Path, starter_gguf: Path) -> None:
    audio, rate = speak(QUESTION)  # piper speaks the question to a wav file
    write_wav(tmp_path / "question.wav", audio, rate)
    engine = LlamaEngine(starter_gguf, n_ctx=1024)
    convo = Conversation(engine, system_prompt=SYSTEM, options=GenerationOptions(max_tokens=48, temperature=0))
    out = WavOut(tmp_path / "reply.wav")
    pipeline = VoicePipeline(convo, whisper(), piper(), WavIn(tmp_path / "question.wav"), out)
    result = pipeline.run_turn()
    pipeline.close()

    assert result.status == "complete"
    assert words(result.transcript) == words(QUESTION)  # whisper heard the question
    assert result.reply and result.spoken and convo.turns[-1].content == result.reply
    assert isinstance(result.events[0], Heard) and isinstance(result.events[-1], TurnDone)
    reply_audio, reply_rate = read_wav(tmp_path / "reply.wav")
    heard_back = transcribe_any(reply_audio, reply_rate)  # whisper listens to the spoken reply
    assert word_recall(markdown_to_prose(result.reply), heard_back) >= 0.6, (result.reply, heard_back)
    t = result.timings
    assert t.first_audio_s is not None and t.tts_first_s is not None and t.llm_first_token_s is not None
    assert t.stats is not None and t.stats.generated_tokens > 0 and t.reply_audio_s > 0.5


@pytest.mark.parametrize("model", ["starter_gguf", "tiny_qwen35"])
def test_the_prompt_is_evaluated_while_the_user_speaks(model: str, request: pytest.FixtureRequest) -> None:
    engine = LlamaEngine(request.getfixturevalue(model), n_ctx=1024)
    convo = Conversation(engine, system_prompt=SYSTEM, options=GenerationOptions(max_tokens=6, temperature=0))
    list(convo.send("Hello there."))  # some history, and a reply whose state the next turn cannot reuse as is
    evaluated = prefill_prompt(engine, convo.context(), convo.options, "What is the capital")
    assert engine._state is not None
    held = len(engine._state.tokens)
    assert evaluated > 0
    assert prefill_prompt(engine, convo.context(), convo.options, "What is the capital") == 0  # held already
    done = [e for e in convo.send(QUESTION) if isinstance(e, Done)][0]
    # Everything evaluated ahead is reused, on the hybrid (recurrent) Qwen 3.5 too: no reset, no rollback.
    assert done.stats.reused_tokens >= held


def _greedy(engine: LlamaEngine) -> Conversation:
    return Conversation(engine, system_prompt=SYSTEM, options=GenerationOptions(max_tokens=6, temperature=0))


def _reply(convo: Conversation, text: str) -> tuple[str, Any]:
    events = list(convo.send(text))
    answer = "".join(e.text for e in events if isinstance(e, Text))
    return answer, next(e for e in events if isinstance(e, Done)).stats


@pytest.mark.parametrize("model", ["starter_gguf", "tiny_qwen35"])
def test_a_message_guessed_whole_is_answered_from_its_first_token(model: str, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(model)
    plain = _greedy(LlamaEngine(path, n_ctx=1024))  # the same turns without reading ahead
    ahead = _greedy(engine := LlamaEngine(path, n_ctx=1024))
    for convo in (plain, ahead):
        _reply(convo, "Hello there.")
    assert prefill_prompt(engine, ahead.context(), ahead.options, QUESTION, complete=True) > 0
    answer, stats = _reply(ahead, QUESTION)
    # Only the prompt's last token is left for the reply (its logits), and the reply is the one it
    # would have been: the state read ahead is the state the reply reads.
    assert stats.evaluated_tokens == 1
    expected, plain_stats = _reply(plain, QUESTION)
    assert answer == expected and stats.prompt_tokens == plain_stats.prompt_tokens
    # On the hybrid model the next turn resumes from where that reply started, as it would have.
    follow_up = [_reply(c, OTHER_QUESTION)[1] for c in (ahead, plain)]
    assert follow_up[0].evaluated_tokens == follow_up[1].evaluated_tokens


@pytest.mark.parametrize("model", ["starter_gguf", "tiny_qwen35"])
def test_a_reply_begun_ahead_is_taken_over_by_the_reply_to_those_words(
    model: str, request: pytest.FixtureRequest
) -> None:
    path = request.getfixturevalue(model)
    plain, ahead = _greedy(LlamaEngine(path, n_ctx=1024)), _greedy(engine := LlamaEngine(path, n_ctx=1024))
    for convo in (plain, ahead):
        _reply(convo, "Hello there.")
    messages, options = ahead.request(QUESTION)
    assert 3 <= engine.draft(messages, options, tokens=3) < 6  # written while the user is silent
    events = list(ahead.send(QUESTION))
    expected = list(plain.send(QUESTION))
    # The reply is the one it would have been, event for event; it read no prompt of its own.
    assert [e.text for e in events if isinstance(e, Text)] == [e.text for e in expected if isinstance(e, Text)]
    stats = next(e for e in events if isinstance(e, Done)).stats
    assert (
        stats.generated_tokens == 6
        and stats.prompt_tokens == next(e for e in expected if isinstance(e, Done)).stats.prompt_tokens
    )
    assert (ahead.turns[-1].content, ahead.turns[-1].status) == (plain.turns[-1].content, plain.turns[-1].status)
    follow_up = [_reply(c, OTHER_QUESTION)[1] for c in (ahead, plain)]  # the checkpoint is where it should be
    assert follow_up[0].evaluated_tokens == follow_up[1].evaluated_tokens


def test_a_reply_begun_for_other_words_is_dropped(tiny_qwen35: Path) -> None:
    plain, ahead = (
        _greedy(LlamaEngine(tiny_qwen35, n_ctx=1024)),
        _greedy(engine := LlamaEngine(tiny_qwen35, n_ctx=1024)),
    )
    for convo in (plain, ahead):
        _reply(convo, "Hello there.")
    messages, options = ahead.request("What is the capital of France")  # whisper's guess, without the end
    assert engine.draft(messages, options, tokens=4) >= 4
    answer, stats = _reply(ahead, QUESTION)
    expected, plain_stats = _reply(plain, QUESTION)
    assert answer == expected and stats.generated_tokens == plain_stats.generated_tokens
    assert stats.evaluated_tokens < plain_stats.evaluated_tokens  # (from the anchor at the guess's words)
    # Stopped at once: what was written stays for the reply, nothing more is written.
    stop = threading.Event()
    stop.set()
    assert engine.draft(*ahead.request(OTHER_QUESTION), stop, tokens=8) == 0


def test_a_pause_before_the_key_is_released_reads_the_whole_prompt_ahead() -> None:
    engine = ScriptedEngine("Paris is the capital of France.")
    heard = SilentTranscriber("Tell me about Paris")
    mic = ArrayIn(np.concatenate([tone(1.0), np.zeros(8000, np.float32)]), 16000, realtime=True)
    pipeline = VoicePipeline(
        Conversation(engine), heard, ToneSynth(), mic, RecordingOut(), config=VoiceConfig(pause_s=2.0)
    )
    result = pipeline.run_turn()  # the key goes up half a second after the speech, before any pause commits it
    # A tenth of a second into the silence the words were decoded and the reply begun as if the message
    # were whole; it was, so at release nothing was left to decode.
    assert engine.drafts == ["Tell me about Paris"]
    assert result.transcript == "Tell me about Paris" and heard.calls == 1 and result.status == "complete"
    assert result.timings.stt_tail_audio_s == 0.0


def test_a_commit_of_the_words_guessed_whole_does_not_replace_the_guess() -> None:
    class Waiting:  # the last turn's scheduler, still busy: requests wait
        go = threading.Event()

        def join(self, timeout: float | None = None) -> None:
            self.go.wait(timeout)

    engine, previous = ScriptedEngine("Paris."), Waiting()
    scheduler = TurnScheduler(Conversation(engine), GenerationOptions(), previous, draft_tokens=8)  # type: ignore[arg-type]
    scheduler.prefill("Tell me about Paris", complete=True)  # a settle pass: the message guessed whole
    scheduler.prefill("Tell me about Paris")  # the pause commit of the same words, just after
    previous.go.set()
    assert scheduler.wait_idle(10)
    assert engine.drafts == ["Tell me about Paris"] and engine.prefills == []  # the reply was begun
    scheduler.prefill("Tell me about Paris and Rome")  # the speaker went on: that replaces the guess
    assert scheduler.wait_idle(10)
    scheduler.finish()
    scheduler.join(10)
    assert engine.prefills == [("Tell me about Paris and Rome", False)]


def test_a_wrong_guess_on_the_hybrid_model_costs_only_what_it_read(tiny_qwen35: Path) -> None:
    plain = _greedy(LlamaEngine(tiny_qwen35, n_ctx=1024))
    ahead = _greedy(engine := LlamaEngine(tiny_qwen35, n_ctx=1024))
    for convo in (plain, ahead):
        _reply(convo, "Hello there.")
    # While the user speaks: a partial transcript, then a guess that the message is over, which whisper's
    # final pass turns out to contradict ("Italy", not "Fr...").
    prefill_prompt(engine, ahead.context(), ahead.options, "What is the capital of")
    prefill_prompt(engine, ahead.context(), ahead.options, "What is the capital of France", complete=True)
    assert engine._state is not None and engine._state.anchors  # where each read ahead began
    answer, stats = _reply(ahead, OTHER_QUESTION)
    expected, plain_stats = _reply(plain, OTHER_QUESTION)
    # The recurrent state cannot be cut back: without the anchors the reply would start again from
    # the last turn's checkpoint and read the whole message; it reads only what follows "of".
    assert stats.evaluated_tokens < plain_stats.evaluated_tokens - 3
    assert answer == expected
    assert engine._state.anchors == []  # (the turn is over: its checkpoint holds more)


# -- streaming, thinking, code ------------------------------------------------------------------------


def test_the_first_sentence_is_spoken_before_generation_ends() -> None:
    out = RecordingOut()
    answer = "Paris is the capital. It lies on the Seine. It has many museums."
    # The model stops before "lies" until the first audio has been played: if the pipeline waited
    # for the whole reply before speaking, the wait would run out (and be recorded).
    engine = ScriptedEngine(answer, wait_before={5: out.first_played})
    result = fake_pipeline(engine, out).run_turn()

    assert engine.timed_out == []
    events = result.events
    first_audio = next(i for i, e in enumerate(events) if isinstance(e, Speaking))
    lies = next(i for i, e in enumerate(events) if isinstance(e, Text) and e.text.startswith("lies"))
    done = next(i for i, e in enumerate(events) if isinstance(e, Done))
    assert first_audio < lies < done
    assert result.spoken == ["Paris is the capital.", "It lies on the Seine.", "It has many museums."]
    assert [e.index for e in events if isinstance(e, Speaking)] == [0, 1, 2]
    assert result.status == "complete" and len(out.played) == 3


def test_thinking_is_never_spoken_and_code_is_not_read_out() -> None:
    synth = ToneSynth()
    engine = ScriptedEngine(
        "Here is a loop:\n```python\nfor i in range(3):\n    print(i)\n```\nIt prints **three** numbers.",
        thinking="The user wants a loop, so I will write one.",
    )
    pipeline = fake_pipeline(engine, RecordingOut(), synth)
    pipeline.options = GenerationOptions(think=True)
    result = pipeline.run_turn()
    assert any(isinstance(e, Thinking) for e in result.events)
    assert synth.texts == ["Here is a loop:", CODE_PLACEHOLDER, "It prints three numbers."]
    assert result.reply.startswith("Here is a loop:") and "```python" in result.reply  # the text keeps the code


# -- barge-in and stopping ----------------------------------------------------------------------------


def test_barge_in_stops_playback_and_generation_at_once_and_records() -> None:
    out = RecordingOut(hold=True)  # each sentence "plays" until it is stopped
    engine = ScriptedEngine("Let me tell you a long story. ", endless=True)
    pipeline = fake_pipeline(engine, out)
    pipeline.start_recording()
    events: list[object] = []
    worker = threading.Thread(target=lambda: events.extend(pipeline.respond()))
    worker.start()
    assert out.playing.wait(30)  # it is speaking, and still generating

    pipeline.start_recording(ArrayIn(tone(0.5), 16000))  # the key, pressed while it speaks
    worker.join(30)
    assert not worker.is_alive()
    assert out.stopped_while_playing.is_set() and engine.cancelled.is_set()
    done = next(e for e in events if isinstance(e, Done))
    assert done.stats.finish_reason == "cancelled"
    last = events[-1]
    assert isinstance(last, TurnDone) and last.status == "cancelled"
    assert pipeline.conversation.turns[-1].status == "cancelled"

    engine.endless, out.hold = False, False  # the next turn, recorded by the barge-in, runs normally
    second = list(pipeline.respond())
    assert isinstance(second[-1], TurnDone) and second[-1].status == "complete"
    assert second[-1].transcript == "Tell me about Paris"


def test_esc_while_recording_discards_the_recording() -> None:
    engine = ScriptedEngine("Never said.")
    pipeline = fake_pipeline(engine, RecordingOut())
    pipeline.start_recording(ArrayIn(tone(30.0), 16000, realtime=True))  # a long press, paced like a microphone
    assert pipeline.state == "recording"
    pipeline.interrupt()
    events = list(pipeline.respond())
    assert len(events) == 1 and isinstance(events[0], TurnDone) and events[0].status == "cancelled"
    assert engine.calls == [] and pipeline.conversation.turns == []


def _respond_stopped_at(
    moment: str, pipeline: VoicePipeline, transcriber: HeldTranscriber, stop: Callable[[], None]
) -> list[object]:
    """The recorded turn's events, `stop` called at `moment`: once the recording has ended ("ended", before
    `respond()` takes it), during whisper's last pass ("last pass") or once the words are heard ("heard",
    before the reply begins)."""
    rec = pipeline._recording
    assert rec is not None and rec.ended.wait(WAIT_S)  # a file: the recording ends by itself
    if moment == "ended":
        stop()
    events = pipeline.respond()
    got: list[object] = []
    if moment == "last pass":
        reader = threading.Thread(target=lambda: got.extend(events))
        reader.start()
        assert transcriber.holding.wait(WAIT_S)
        stop()
        transcriber.go.set()
        reader.join(WAIT_S)
        assert not reader.is_alive()
        return got
    transcriber.go.set()
    for event in events:
        got.append(event)
        if moment == "heard" and isinstance(event, Heard):
            stop()  # the front end shows the words; the reply has not begun
    return got


@pytest.mark.parametrize("moment", ["ended", "last pass", "heard"])
def test_esc_between_the_end_of_the_recording_and_the_reply_stops_the_turn(moment: str) -> None:
    """Esc after the recording has ended and before the reply has begun stops the turn as it would a
    moment later: words not yet shown are dropped, as while recording; words shown are kept (sent, the
    reply stopped before its first token), so the chat holds what it showed."""
    engine = ScriptedEngine("Never said.")
    out = RecordingOut()
    pipeline = fake_pipeline(engine, out, **HELD)
    pipeline.transcriber = transcriber = HeldTranscriber("Tell me about Paris")
    pipeline.start_recording()
    events = _respond_stopped_at(moment, pipeline, transcriber, pipeline.interrupt)

    done = events[-1]
    assert isinstance(done, TurnDone) and done.status == "cancelled" and done.reply == ""
    assert not any(isinstance(e, Text | Speaking) for e in events) and out.played == []
    if moment == "heard":
        assert done.transcript == "Tell me about Paris"
        assert [(t.role, t.content) for t in pipeline.conversation.turns] == [("user", "Tell me about Paris")]
    else:
        assert not any(isinstance(e, Heard) for e in events)  # nothing was shown
        assert engine.calls == [] and pipeline.conversation.turns == []
    assert pipeline.state == "idle"
    pipeline.close()


@pytest.mark.parametrize("moment", ["last pass", "heard"])
def test_a_barge_in_while_the_last_words_are_decoded_keeps_them(moment: str) -> None:
    """Speaking again (the key, or hands-free barge-in) while the last words are still decoded: those words
    are sent (their reply stopped before it began, as a barge-in a moment later stops it), and the reply
    to the new words reads them too. Nothing the user said is lost."""
    engine = ScriptedEngine("Paris is lovely.")
    out = RecordingOut()
    pipeline = fake_pipeline(engine, out, **HELD)
    pipeline.transcriber = transcriber = HeldTranscriber("What is the capital of France", "and of Italy")
    pipeline.start_recording()
    events = _respond_stopped_at(
        moment, pipeline, transcriber, lambda: pipeline.start_recording(ArrayIn(tone(0.5), 16000))
    )

    done = events[-1]
    assert isinstance(done, TurnDone) and done.status == "cancelled" and done.reply == ""
    assert done.transcript == "What is the capital of France"
    assert [e.text for e in events if isinstance(e, Heard)] == ["What is the capital of France"]
    assert not any(isinstance(e, Text | Speaking) for e in events) and out.played == []
    assert [t.role for t in pipeline.conversation.turns] == ["user"]  # sent, not answered on its own

    second = list(pipeline.respond())  # the barge-in's turn
    last = second[-1]
    assert isinstance(last, TurnDone) and last.status == "complete" and last.transcript == "and of Italy"
    turns = pipeline.conversation.turns
    assert [(t.role, t.content) for t in turns] == [
        ("user", "What is the capital of France"),
        ("user", "and of Italy"),
        ("assistant", "Paris is lovely."),
    ]
    assert [m["content"] for m in engine.calls[-1] if m["role"] == "user"] == [
        "What is the capital of France",
        "and of Italy",
    ]  # the reply read both
    pipeline.close()


def test_silence_is_not_sent_to_the_model() -> None:
    engine = ScriptedEngine("Never said.")
    pipeline = fake_pipeline(engine, RecordingOut())
    result = pipeline.run_turn(ArrayIn(np.zeros(16000, np.float32), 16000))
    assert result.status == "empty" and engine.calls == []
    assert isinstance(result.events[0], Heard) and isinstance(result.events[1], Notice)


def test_timings_of_a_simulated_turn() -> None:
    out = RecordingOut()
    pipeline = fake_pipeline(ScriptedEngine("Paris, of course. It is lovely."), out)
    result = simulate_turn(pipeline, tone(0.4), 16000, hold_after_s=0.4)  # real-time pace
    t = result.timings
    assert result.status == "complete" and result.spoken == ["Paris, of course.", "It is lovely."]
    assert t.release_lag_s is not None and 0.3 <= t.release_lag_s <= 0.6
    assert t.first_audio_s is not None and t.speech_end_to_first_audio_s is not None
    assert t.speech_end_to_first_audio_s >= t.first_audio_s
    assert t.llm_first_sentence_s is not None and t.llm_first_token_s is not None
    assert abs(t.record_s - 0.8) < 0.06 and t.reply_audio_s > 0
    assert "stats" in t.to_dict()


def test_random_text_has_its_first_chunk_cut_at_a_token_count() -> None:
    out = RecordingOut()
    # No sentence ever ends (the synthetic model's text is random); the model waits before its 9th
    # piece until the first audio has played, so a pipeline that waited for a sentence would time out.
    engine = ScriptedEngine(
        "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod", wait_before={8: out.first_played}
    )
    result = fake_pipeline(engine, out, first_chunk_tokens=4).run_turn()
    assert engine.timed_out == []
    assert result.spoken == ["lorem ipsum dolor sit", "amet consectetur adipiscing elit sed do eiusmod"]
    first_audio = next(i for i, e in enumerate(result.events) if isinstance(e, Speaking))
    assert first_audio < next(i for i, e in enumerate(result.events) if isinstance(e, Done))
    # The bench speaks an ordinary sentence in place of random text (see StandInSynthesizer): a reply's
    # first chunk as the pipeline would cut the sentence, then the whole sentence for each later one.
    stand_in = StandInSynthesizer(ToneSynth(), VoiceConfig())
    spoken = [c.text for text in ("ꙮ漢 random", "more ꙮ", "and more") for c in stand_in.synthesize(text)]
    assert spoken == ["To list every file", STAND_IN_SENTENCE, STAND_IN_SENTENCE]
    stand_in.new_reply()
    assert [c.text for c in stand_in.synthesize("ꙮ漢")] == ["To list every file"]
    assert STAND_IN_SENTENCE.startswith("To list every file in")  # (cut before the phrase "in a folder")


def test_bench_stages_time_real_voice_turns(starter_gguf: Path) -> None:
    """`edgeassist bench --voice`'s hook: whisper, the starter model and piper, one measured turn."""
    settings = load_settings(flags={"bench": {"repetitions": 1}, "model": {"n_ctx": 1024}})
    stages = bench_stages(settings, VoiceTarget("starter", starter_gguf, 2))
    assert list(stages) == list(BENCH_STAGES)
    assert all(len(v) == 1 and v[0] > 0 for v in stages.values()), stages
    # Causal order within a turn (not speed): a sentence needs a token, audio needs release first.
    assert stages["llm_first_sentence_s"][0] >= stages["llm_first_token_s"][0]
    assert stages["speech_end_to_first_audio_s"][0] >= stages["first_audio_s"][0]


# -- the real sound-device path, through ALSA file plugins ----------------------------------------------


def test_the_real_device_path_records_the_microphone_and_plays_to_the_speaker(
    tmp_path: Path, starter_gguf: Path
) -> None:
    question = speak_16k(OTHER_QUESTION, lead_s=0.3, tail_s=1.5)  # the mic plays this (looped)
    rig = alsa_rig(tmp_path / "alsa", question)
    listed = rig.run(["-m", "edgeassist", "voice", "--list-devices"], timeout=60)
    assert listed.returncode == 0 and "default" in listed.stdout, listed.stderr

    run = rig.run(
        ["-m", "edgeassist", "voice", "--once", "--end-silence", "0.8", "-m", str(starter_gguf), "--max-tokens", "40"]
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert f"you: {OTHER_QUESTION}" in lines, run.stdout
    reply = next(line for line in lines if line.startswith("assistant: ")).removeprefix("assistant: ")
    played = rig.played_samples()
    rate = piper().sample_rate  # the speaker was opened at the voice's rate
    assert len(played) / rate > 0.5
    heard_back = transcribe_any(played, rate)
    assert word_recall(markdown_to_prose(reply), heard_back) >= 0.6, (reply, heard_back)


def test_no_sound_device_is_one_line_and_exit_code_6(
    starter_gguf: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # PortAudio is there but lists nothing (as on this sound-card-less machine; the same on any other).
    monkeypatch.setattr("edgeassist.speech.audio.list_devices", lambda: [])
    assert main(["voice", "--list-devices"]) == 0
    assert "no sound devices found" in capsys.readouterr().out
    assert main(["voice", "--once", "-m", str(starter_gguf)]) == 6
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edgeassist: no microphone found"), err


# -- the command line -------------------------------------------------------------------------------------


def test_voice_command_one_turn_from_and_to_wav_files(
    tmp_path: Path, starter_gguf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    audio, rate = speak(QUESTION)
    write_wav(tmp_path / "q.wav", audio, rate)
    rc = main(
        [
            "voice",
            "-m",
            str(starter_gguf),
            "--input-wav",
            str(tmp_path / "q.wav"),
            "--output-wav",
            str(tmp_path / "a.wav"),
            "--max-tokens",
            "30",
            "--timings",
        ]
    )
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert f"you: {QUESTION}" in out.out and "assistant: " in out.out
    assert "timings: stt" in out.err
    reply, reply_rate = read_wav(tmp_path / "a.wav")
    assert reply_rate == 22050 and len(reply) > reply_rate // 2


def test_voice_without_the_speech_extra_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "faster_whisper" else real(n, *a))
    rc = main(["voice", "--input-wav", str(tmp_path / "q.wav")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 6 and len(err) == 1
    assert "missing: faster-whisper" in err[0] and "pip install 'edgeassist[speech]'" in err[0]
    assert "typed chat works" in err[0]


def test_push_to_talk_keys() -> None:
    assert parse_keys(b" ") == [Key("talk")]
    assert parse_keys(b"\r\x1b\x03q") == [Key("talk"), Key("esc"), Key("ctrl-c"), Key("other")]
    assert parse_keys(b"\x1b[A") == [Key("other")]  # an arrow key is not Esc
    # The kitty keyboard protocol: press, repeat, release of Space; Esc; Ctrl+C.
    assert parse_keys(b"\x1b[32u\x1b[32;1:2u\x1b[32;1:3u") == [
        Key("talk", "press"),
        Key("talk", "repeat"),
        Key("talk", "release"),
    ]
    assert parse_keys(b"\x1b[27u\x1b[99;5u\x1b[13;1:3u") == [Key("esc"), Key("ctrl-c"), Key("talk", "release")]


def test_pipeline_from_settings_with_wav_files(tmp_path: Path, starter_gguf: Path) -> None:
    write_wav(tmp_path / "q.wav", tone(0.2), 16000)
    settings = load_settings(flags={"speech": {"pause_s": 0.5, "eager_first_clause": False}})
    convo = Conversation(LlamaEngine(starter_gguf))
    pipeline = build_pipeline(settings, convo, input_wav=tmp_path / "q.wav", output_wav=tmp_path / "a.wav")
    assert pipeline.speaks and pipeline.config.pause_s == 0.5 and not pipeline.config.eager_first_clause
    assert isinstance(pipeline.audio_in, WavIn) and isinstance(pipeline.audio_out, WavOut)
    quiet = build_pipeline(settings, convo, input_wav=tmp_path / "q.wav", speak=False)
    assert not quiet.speaks and quiet.audio_out is None


def test_push_to_talk_loop_keys_drive_the_pipeline() -> None:
    import io
    import os

    from edgeassist.cli.voice import _Loop, _Printer

    chunks = 0
    heard = threading.Condition()

    def on_level(_level: float) -> None:
        nonlocal chunks
        with heard:
            chunks += 1
            heard.notify_all()

    def wait_chunks(n: int) -> None:
        with heard:
            assert heard.wait_for(lambda: chunks >= n, timeout=30)

    out = RecordingOut(hold=True)
    engine = ScriptedEngine("Paris is lovely. It really is. ")
    pipeline = VoicePipeline(
        Conversation(engine),
        SilentTranscriber("Tell me about Paris"),
        ToneSynth(),
        ArrayIn(tone(60.0), 16000, realtime=True),  # a microphone that hears a voice for as long as the key is down
        out,
        config=VoiceConfig(prefill=False),
        on_level=on_level,
    )
    printed, notes = io.StringIO(), io.StringIO()
    read_fd, write_fd = os.pipe()
    loop = _Loop(pipeline, _Printer(printed, notes, timings=False), read_fd, releases=True)
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(loop.run()))
    runner.start()
    try:
        os.write(write_fd, b"\x1b[32u")  # Space down (kitty protocol): recording
        wait_chunks(10)  # half a second of audio: a hold, not a tap
        os.write(write_fd, b"\x1b[32;1:3u")  # Space up: send
        assert out.playing.wait(30)  # the reply is being spoken
        os.write(write_fd, b" ")  # Space while it speaks: barge-in
        assert out.stopped_while_playing.wait(30)
        wait_chunks(chunks + 2)
        assert pipeline.state == "recording"
        os.write(write_fd, b"\x1b[27u")  # Esc: quit
        runner.join(30)
    finally:
        os.close(write_fd)
        os.close(read_fd)
    assert result == [0] and not runner.is_alive()
    assert "you: Tell me about Paris" in printed.getvalue() and "assistant: Paris is lovely." in printed.getvalue()
    assert len(engine.calls) == 1  # one question sent; the barge-in recording was discarded by Esc
    pipeline.close()


def test_a_recording_never_answered_does_not_block_the_next_turn() -> None:
    engine = ScriptedEngine("Fine.")
    pipeline = fake_pipeline(engine, RecordingOut())
    pipeline.start_recording()
    assert pipeline._recording is not None and pipeline._recording.ended.wait(30)  # nobody asks for the reply
    pipeline.start_recording()  # the next press drops it
    done = list(pipeline.respond())[-1]
    assert isinstance(done, TurnDone) and done.status == "complete" and len(engine.calls) == 1
    with pytest.raises(UsageError, match="nothing new was recorded"):
        list(pipeline.respond())  # a recording is answered once
    pipeline.close()
