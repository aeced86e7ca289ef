"""Hands-free conversation: endpointing, the state machine, its own voice, barge-in, the CLI, the real
device path through ALSA, and the bench's figure."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from audio_helpers import (
    HELD,
    WAIT_S,
    AlsaRoom,
    EchoRoom,
    HeldTranscriber,
    LevelDetector,
    RecordingOut,
    ScriptedEngine,
    SilentTranscriber,
    ToneSynth,
    cough,
    noise_burst,
    silence,
    speak_16k,
    tone,
    transcribe_any,
    word_recall,
    words,
)

from edgeassist.chat import Conversation
from edgeassist.cli import main
from edgeassist.engine.base import Text
from edgeassist.reply import IllegalTransition
from edgeassist.speech.audio import ArrayIn, read_wav, write_wav
from edgeassist.speech.samples import WHISPER_RATE
from edgeassist.voice import Heard, Speaking, TurnDone, VoiceConfig, VoicePipeline
from edgeassist.voice.handsfree import (
    TRANSITIONS,
    HandsFree,
    HandsFreeEvent,
    HandsFreeState,
    StateChanged,
    simulate_conversation,
)
from edgeassist.voice.vad import FRAME, EndOfTurn, EndpointConfig, Endpointer, Onset, SileroDetector

S = HandsFreeState
RATE = WHISPER_RATE
QUESTION = "What is the capital of France?"
OTHER_QUESTION = "What is the capital of Italy?"


def clicks(seconds: float = 1.0) -> np.ndarray:
    x = silence(seconds)
    x[:: RATE // 8] = 0.9
    return x


def states(events: list[HandsFreeEvent]) -> list[HandsFreeState]:
    return [e.state for e in events if isinstance(e, StateChanged)]


def fake_pipeline(engine: ScriptedEngine, audio_in: object, out: object, **config: object) -> VoicePipeline:
    """Fakes behind the real protocols: the transcriber 'hears' a fixed question in any sound."""
    return VoicePipeline(
        Conversation(engine),
        SilentTranscriber("Tell me about Paris"),
        ToneSynth(),
        audio_in,  # type: ignore[arg-type]
        out,  # type: ignore[arg-type]
        config=VoiceConfig(prefill=False, **config),  # type: ignore[arg-type]
    )


def run_session(session: HandsFree) -> list[HandsFreeEvent]:
    session.start()
    return list(session.events())


# -- endpointing, frame by frame ---------------------------------------------------------------------------


def feed(ep: Endpointer, frames: list[tuple[float, float]]) -> list[tuple[int, Onset | EndOfTurn]]:
    out = []
    for p, db in frames:
        i = ep.frame
        b = ep.feed(p, db)
        if b is not None:
            out.append((i, b))
    return out


SPEECH, QUIET = (0.9, -20.0), (0.0, -80.0)


def test_a_turn_begins_after_min_speech_and_ends_after_the_end_of_turn_silence() -> None:
    cfg = EndpointConfig(min_speech_s=0.2, end_of_turn_s=0.7)  # 6 frames of speech, 22 of silence
    ep = Endpointer(cfg)
    got = feed(ep, [QUIET] * 5 + [SPEECH] * 30 + [QUIET] * 30)
    assert [type(b) for _, b in got] == [Onset, EndOfTurn]
    (onset_at, onset), (end_at, end) = got
    assert onset.start == 5 and onset_at == 5 + 5  # known on the 6th speech frame; the turn starts at the 1st
    assert isinstance(end, EndOfTurn) and end.last == 34 and end_at == 34 + 22 and end.frames == end_at + 1


def test_a_cough_a_click_or_quiet_noise_does_not_begin_a_turn() -> None:
    ep = Endpointer(EndpointConfig(min_speech_s=0.2, onset_gap_s=0.25))
    blips = [SPEECH] * 3 + [QUIET] * 10 + [SPEECH] * 2 + [QUIET] * 10  # two short blips, apart
    loud_but_quiet = [(0.99, -70.0)] * 40  # Silero sure, but under the floor
    assert feed(ep, blips + loud_but_quiet) == []
    assert not ep.in_turn and not ep.candidate


def test_pauses_shorter_than_the_end_of_turn_keep_the_turn_going() -> None:
    ep = Endpointer(EndpointConfig(min_speech_s=0.2, end_of_turn_s=0.7))
    words_and_pauses = ([SPEECH] * 10 + [QUIET] * 15) * 4 + [QUIET] * 30  # 0.48 s pauses
    got = feed(ep, words_and_pauses)
    assert [type(b) for _, b in got] == [Onset, EndOfTurn]
    end = got[1][1]
    assert isinstance(end, EndOfTurn) and end.last == 3 * 25 + 9


def test_silero_streamed_frame_by_frame_matches_faster_whisper_on_the_whole_clip() -> None:
    from faster_whisper.vad import get_vad_model

    audio = np.concatenate([silence(0.3), speak_16k(QUESTION), silence(0.3)])
    audio = audio[: len(audio) // FRAME * FRAME]
    whole = np.asarray(get_vad_model()(audio)).reshape(-1)
    det = SileroDetector()
    streamed = np.array([det.probability(audio[i : i + FRAME]) for i in range(0, len(audio), FRAME)])
    np.testing.assert_allclose(streamed, whole, atol=1e-5)
    assert streamed.max() > 0.9 and streamed[:5].max() < 0.1  # the speech, and the silence before it


@pytest.mark.parametrize(
    ("sound", "turns"),
    [
        ("speech", 1),
        ("short answer", 1),
        ("white noise", 0),
        ("loud cough", 0),
        ("double cough", 0),
        ("clicks", 0),
        ("silence", 0),
    ],
)
def test_speech_begins_a_turn_and_noise_does_not_with_the_real_vad(sound: str, turns: int) -> None:
    x = {
        "speech": lambda: speak_16k(QUESTION),
        "short answer": lambda: speak_16k("Yes."),
        "white noise": lambda: noise_burst(1.0, 0.3),
        "loud cough": lambda: cough(0.4, 0.5),
        "double cough": lambda: np.concatenate([cough(0.3, 0.5, 3), silence(0.1), cough(0.3, 0.5, 4)]),
        "clicks": lambda: clicks(1.0),
        "silence": lambda: silence(2.0),
    }[sound]()
    audio = np.concatenate([silence(0.5), x, silence(1.0)])
    det, ep = SileroDetector(), Endpointer()
    onsets = 0
    for i in range(0, len(audio) - FRAME + 1, FRAME):
        frame = audio[i : i + FRAME]
        rms = float(np.sqrt(np.mean(frame * frame)))
        onsets += isinstance(ep.feed(det.probability(frame), 20 * np.log10(rms + 1e-9)), Onset)
    assert onsets == turns


# -- the state machine, with synthetic frames ------------------------------------------------------------


def test_transitions_are_the_ones_drawn_and_nothing_else() -> None:
    assert TRANSITIONS[S.STOPPED] == {S.LISTENING}
    assert S.HEARING not in TRANSITIONS[S.STOPPED] and S.SPEAKING not in TRANSITIONS[S.LISTENING]
    assert all(S.STOPPED in TRANSITIONS[s] for s in S if s is not S.STOPPED)
    session = HandsFree(fake_pipeline(ScriptedEngine("Hi."), ArrayIn(silence(0.1), RATE), RecordingOut()))
    with pytest.raises(IllegalTransition):
        session._move(S.SPEAKING, "test")  # stopped -> speaking is not a move
    assert session.state is S.STOPPED and S.HEARING.label == "hearing you"


def test_a_conversation_of_synthetic_frames_gives_exactly_its_two_turns() -> None:
    conversation = np.concatenate(
        [silence(0.3), tone(1.0), silence(1.0), tone(0.8), silence(1.0), tone(0.06), silence(0.3), tone(0.1)]
        + [silence(1.0)]  # after the second question, two blips (a knock, a click) shorter than min_speech_s
    )
    engine = ScriptedEngine("Paris is lovely. It really is.")
    out = RecordingOut()
    pipeline = fake_pipeline(engine, ArrayIn(conversation, RATE), out)  # a file: paused while it answers
    session = HandsFree(pipeline, detector=LevelDetector())
    events = run_session(session)

    assert states(events) == [S.LISTENING, *[S.HEARING, S.THINKING, S.SPEAKING, S.LISTENING] * 2, S.STOPPED]
    done = [e for e in events if isinstance(e, TurnDone)]
    assert [d.status for d in done] == ["complete", "complete"] and session.turns == done
    assert len(engine.calls) == 2 and len(out.played) == 4  # two replies of two sentences each
    # The first turn's speech ended 1.3 s in; the turn ended after the end-of-turn silence (0.7 s).
    for d in done:
        assert d.timings.release_lag_s == pytest.approx(0.7, abs=0.04)
        assert d.timings.speech_end_to_first_audio_s is not None
        assert d.timings.speech_end_to_first_audio_s >= d.timings.release_lag_s
    changes = [e for e in events if isinstance(e, StateChanged)]
    assert [c.reason for c in changes[1:5]] == ["speech", "end of turn", "reply", "played"]


def test_nothing_heard_goes_back_to_listening_quietly() -> None:
    engine = ScriptedEngine("Never said.")
    pipeline = fake_pipeline(engine, ArrayIn(np.concatenate([silence(0.2), tone(0.5), silence(1.0)]), RATE), None)
    pipeline.transcriber = SilentTranscriber("")  # whisper hears no words in it
    events = run_session(HandsFree(pipeline, detector=LevelDetector()))
    assert states(events) == [S.LISTENING, S.HEARING, S.THINKING, S.LISTENING, S.STOPPED]
    assert engine.calls == [] and [type(e).__name__ for e in events if not isinstance(e, StateChanged)] == [
        "Heard",
        "TurnDone",
    ]


def test_stopped_while_the_vad_loads_it_never_starts_listening() -> None:
    pipeline = fake_pipeline(ScriptedEngine("Never said."), ArrayIn(tone(0.5), RATE), None)
    config = pipeline.config
    box: list[HandsFree] = []

    class SlowToLoad(LevelDetector):
        def load(self) -> None:
            stopper = threading.Thread(target=box[0].stop)  # the user turns it off meanwhile
            stopper.start()
            stopper.join(10)

    box.append(session := HandsFree(pipeline, detector=SlowToLoad()))
    session.start()
    assert session.wait(10) and session.state is S.STOPPED
    assert pipeline.config is config and pipeline.state == "idle"  # nothing was lent, nothing listens
    assert states(list(session.events())) == []


def test_its_own_voice_is_not_taken_for_the_user() -> None:
    """The reply plays into the room as loud as the user (no headset, no echo cancellation): with
    barge-in off the microphone is deaf while it speaks and for the echo's tail, so one question
    gets one answer, and then it listens."""
    room = EchoRoom(echo_gain=1.0)
    engine = ScriptedEngine("Paris is lovely in the spring. It really is a wonderful city to visit. Truly lovely.")
    pipeline = fake_pipeline(engine, room, room.speaker(), echo_tail_s=0.3)
    changes: list[StateChanged] = []
    listening = threading.Semaphore(0)

    def on_event(e: HandsFreeEvent) -> None:
        if isinstance(e, StateChanged):
            changes.append(e)
            if e.state is S.LISTENING:
                listening.release()

    session = HandsFree(pipeline, detector=LevelDetector(), on_event=on_event)
    session.start()
    try:
        assert listening.acquire(timeout=30)
        room.say(np.concatenate([tone(0.6), silence(0.1)]))
        assert listening.acquire(timeout=30)  # answered, and listening again
        heard_echo = room.played_s
        assert not listening.acquire(timeout=1.0)  # nothing more happens in the room
    finally:
        session.stop()
    assert heard_echo > 0.5 and len(engine.calls) == 1
    assert [c.state for c in changes] == [S.LISTENING, S.HEARING, S.THINKING, S.SPEAKING, S.LISTENING, S.STOPPED]


def _barge_in_session(echo_gain: float, user_level: float) -> tuple[list[StateChanged], ScriptedEngine, EchoRoom]:
    room = EchoRoom(echo_gain=echo_gain)
    engine = ScriptedEngine("Let me tell you a long story. ", endless=True)
    pipeline = fake_pipeline(engine, room, room.speaker(), barge_in="headset")
    changes: list[StateChanged] = []
    moved = threading.Condition()

    def on_event(e: HandsFreeEvent) -> None:
        if isinstance(e, StateChanged):
            with moved:
                changes.append(e)
                moved.notify_all()

    session = HandsFree(pipeline, detector=LevelDetector(floor_db=-45.0), on_event=on_event)
    session.start()
    try:
        room.say(np.concatenate([silence(0.2), tone(0.6), silence(0.1)]))
        with moved:
            assert moved.wait_for(lambda: any(c.state is S.SPEAKING for c in changes), 30)
        while room.played_s < 1.5:  # a second of its voice or more: the echo's level is measured
            threading.Event().wait(0.05)
        room.say(tone(0.8, level=user_level))  # the user speaks while it speaks
        with moved:
            moved.wait_for(lambda: any(c.reason == "barge-in" for c in changes), 3.0)
    finally:
        engine.endless = False
        session.stop()
    return changes, engine, room


def test_with_a_headset_speech_louder_than_the_echo_interrupts_the_reply() -> None:
    changes, engine, _ = _barge_in_session(echo_gain=0.03, user_level=0.3)  # echo -30 dB, the user as loud as it
    barge = [c for c in changes if c.reason == "barge-in"]
    assert len(barge) == 1 and barge[0].previous is S.SPEAKING and barge[0].state is S.HEARING
    assert engine.cancelled.is_set()  # the reply stopped at once


def test_with_a_headset_its_own_echo_alone_does_not_interrupt() -> None:
    changes, engine, room = _barge_in_session(echo_gain=1.0, user_level=0.0)  # loud echo, nobody speaks
    assert room.played_s > 1.5 and not any(c.reason == "barge-in" for c in changes)
    assert [c.state for c in changes][:4] == [S.LISTENING, S.HEARING, S.THINKING, S.SPEAKING]


class Watch:
    """A session's `on_event`: every event kept, and a wait for what they show."""

    def __init__(self, on_heard: Callable[[], None] | None = None) -> None:
        self.events: list[HandsFreeEvent] = []
        self.on_heard = on_heard  # called as the words are handed on (the front end shows them)
        self._cond = threading.Condition()

    def __call__(self, event: HandsFreeEvent) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()
        if isinstance(event, Heard) and self.on_heard is not None:
            self.on_heard()

    def wait_for(self, predicate: Callable[[list[HandsFreeEvent]], bool], what: str) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: predicate(self.events), WAIT_S), (what, self.events)

    def changes(self) -> list[tuple[HandsFreeState, str]]:
        with self._cond:
            return [(e.state, e.reason) for e in self.events if isinstance(e, StateChanged)]


def listening_again(events: list[HandsFreeEvent]) -> bool:
    return [e.state for e in events if isinstance(e, StateChanged)].count(S.LISTENING) >= 2


@pytest.mark.parametrize("moment", ["last pass", "heard"])
def test_esc_while_it_thinks_stops_the_turn_and_it_listens_again(moment: str) -> None:
    """Esc after the turn has ended, before its reply has begun (whisper's last pass, or the words just
    shown): no reply comes. Words not shown yet are dropped; words shown are kept, their reply stopped."""
    room = EchoRoom()
    engine = ScriptedEngine("Never said.")
    out = RecordingOut()
    pipeline = fake_pipeline(engine, room, out, **HELD)
    pipeline.transcriber = transcriber = HeldTranscriber("Tell me about Paris")
    box: list[HandsFree] = []
    watch = Watch(on_heard=(lambda: box[0].interrupt()) if moment == "heard" else None)
    box.append(session := HandsFree(pipeline, detector=LevelDetector(), on_event=watch))
    session.start()
    try:
        room.say(np.concatenate([silence(0.2), tone(0.6)]))
        assert transcriber.holding.wait(WAIT_S)  # the turn ended; whisper's last pass runs
        assert session.state is S.THINKING
        if moment == "last pass":
            session.interrupt()  # Esc
        transcriber.go.set()
        watch.wait_for(listening_again, "listening again")
    finally:
        session.stop()
    assert watch.changes() == [
        (S.LISTENING, "started"),
        (S.HEARING, "speech"),
        (S.THINKING, "end of turn"),
        (S.LISTENING, "stopped"),
        (S.STOPPED, "stopped"),
    ]
    done = [e for e in watch.events if isinstance(e, TurnDone)]
    assert len(done) == 1 and done[0].status == "cancelled" and done[0].reply == ""
    assert not any(isinstance(e, Text | Speaking) for e in watch.events) and out.played == []
    if moment == "heard":
        assert [(t.role, t.content) for t in pipeline.conversation.turns] == [("user", "Tell me about Paris")]
    else:
        assert not any(isinstance(e, Heard) for e in watch.events)
        assert engine.calls == [] and pipeline.conversation.turns == []


def test_with_a_headset_a_barge_in_while_the_last_words_are_decoded_keeps_them() -> None:
    """The user pauses long enough to end the turn, then goes on while whisper still decodes the first
    words: those words are sent (their reply stopped before it began), and the reply to the new turn
    reads them too."""
    room = EchoRoom(echo_gain=0.03)
    engine = ScriptedEngine("Paris, then Rome.")
    pipeline = fake_pipeline(engine, room, room.speaker(), barge_in="headset", **HELD)
    pipeline.transcriber = transcriber = HeldTranscriber("What is the capital of France", "and of Italy")
    watch = Watch()
    session = HandsFree(pipeline, detector=LevelDetector(floor_db=-45.0), on_event=watch)
    session.start()
    try:
        room.say(np.concatenate([silence(0.2), tone(0.6)]))
        assert transcriber.holding.wait(WAIT_S)  # the turn ended; whisper's last pass runs
        room.say(tone(0.6))  # and the user goes on
        watch.wait_for(lambda _: any(r == "barge-in" for _, r in watch.changes()), "the barge-in")
        transcriber.go.set()
        watch.wait_for(listening_again, "the answer, and listening again")
    finally:
        session.stop()
    assert [s for s, _ in watch.changes()] == [
        *(S.LISTENING, S.HEARING, S.THINKING, S.HEARING),
        *(S.THINKING, S.SPEAKING, S.LISTENING, S.STOPPED),
    ]
    done = [e for e in watch.events if isinstance(e, TurnDone)]
    assert [(d.transcript, d.status) for d in done] == [
        ("What is the capital of France", "cancelled"),
        ("and of Italy", "complete"),
    ]
    assert session.turns == done
    assert [(t.role, t.content) for t in pipeline.conversation.turns] == [
        ("user", "What is the capital of France"),
        ("user", "and of Italy"),
        ("assistant", "Paris, then Rome."),
    ]
    assert [m["content"] for m in engine.calls[-1] if m["role"] == "user"] == [
        "What is the capital of France",
        "and of Italy",
    ]  # the reply read both


class ByLength(SilentTranscriber):
    """A `Transcriber` that names a turn by how long its tone lasted: under 0.75 s, to 1.4 s, longer (a barge-in's
    recording misses about 0.3 s of its onset)."""

    def transcribe(self, audio: np.ndarray, *, prompt: str | None = None) -> Any:
        from edgeassist.speech.stt import FRAME_S, Transcript, frame_levels

        self.calls += 1
        loud_s = int(np.count_nonzero(frame_levels(audio, RATE) > -20.0)) * FRAME_S  # (the tones are at -13.5 dBFS)
        text = "" if loud_s == 0 else "first" if loud_s < 0.75 else "second" if loud_s < 1.4 else "third"
        return Transcript(text, len(audio) / RATE, 0.0)


def _three_turns(watch: Watch) -> tuple[HandsFree, VoicePipeline, ScriptedEngine, threading.Event]:
    """A reply whose model is slow to stop (until the event is set), interrupted by a second turn, and a
    third begun after the second has ended, all before that reply has stopped."""
    room = EchoRoom()
    slow_stop = threading.Event()
    engine = ScriptedEngine("Paris is lovely. It really is.", wait_before={3: slow_stop})
    pipeline = fake_pipeline(engine, room, room.speaker(), barge_in="headset", **HELD)
    pipeline.transcriber = ByLength("")
    session = HandsFree(pipeline, detector=LevelDetector(floor_db=-45.0), on_event=watch)
    session.start()
    room.say(np.concatenate([silence(0.2), tone(0.6)]))
    watch.wait_for(lambda _: any(s is S.SPEAKING for s, _ in watch.changes()), "the first reply to speak")
    room.say(tone(1.2))  # the second turn: a barge-in, its reply's model still busy
    watch.wait_for(lambda _: [r for _, r in watch.changes()].count("end of turn") == 2, "the second turn's end")
    room.say(tone(1.8))  # the third, before the first reply has stopped
    watch.wait_for(lambda _: [r for _, r in watch.changes()].count("barge-in") == 2, "the third turn")
    return session, pipeline, engine, slow_stop


def test_with_a_headset_a_turn_heard_while_the_last_reply_still_stops_is_kept() -> None:
    """The user interrupts a reply whose model is slow to stop, pauses long enough to end that turn, and
    goes on before the reply has stopped: the second turn's words are not lost. They are sent with their
    reply stopped before it began, and the third turn's reply reads them."""
    watch = Watch()
    session, pipeline, engine, slow_stop = _three_turns(watch)
    try:
        slow_stop.set()
        watch.wait_for(listening_again, "the answer, and listening again")
    finally:
        slow_stop.set()
        session.stop()
    done = [(d.transcript, d.status) for d in watch.events if isinstance(d, TurnDone)]
    assert done == [("first", "cancelled"), ("second", "cancelled"), ("third", "complete")]
    assert [t.content for t in pipeline.conversation.turns if t.role == "user"] == ["first", "second", "third"]
    assert [m["content"] for m in engine.calls[-1] if m["role"] == "user"] == ["first", "second", "third"]


def test_stopped_with_turns_not_answered_yet_it_sends_none_and_push_to_talk_still_answers() -> None:
    """Hands-free turned off while two turns wait for a reply still stopping: neither is sent, and the
    next push-to-talk turn on the same pipeline (the chat app's key) is answered, not left waiting."""
    watch = Watch()
    session, pipeline, engine, slow_stop = _three_turns(watch)
    stopper = threading.Thread(target=session.stop)
    try:
        stopper.start()
        while not session._closing:
            threading.Event().wait(0.01)
        slow_stop.set()  # the first reply stops now, after the session has begun stopping
        stopper.join(WAIT_S)
    finally:
        slow_stop.set()
    assert session.state is S.STOPPED and pipeline.state == "idle"  # (the key may be pressed at once)
    done = [(d.transcript, d.status) for d in watch.events if isinstance(d, TurnDone)]
    assert done == [("first", "cancelled")]
    box: list[object] = []
    key = threading.Thread(target=lambda: box.append(pipeline.run_turn(ArrayIn(tone(0.6), RATE))), daemon=True)
    key.start()
    key.join(WAIT_S)
    assert box, "the push-to-talk turn was never answered"
    assert [t.content for t in pipeline.conversation.turns if t.role == "user"] == ["first", "first"]


def test_simulate_conversation_asks_each_question_once_it_listens() -> None:
    engine = ScriptedEngine("Sure.")
    pipeline = fake_pipeline(engine, None, RecordingOut())
    turns = simulate_conversation(pipeline, [tone(0.5), tone(0.5), tone(0.5)], realtime=False, detector=LevelDetector())
    assert [t.status for t in turns] == ["complete"] * 3 and len(engine.calls) == 3


# -- the real models: a recorded conversation, the command line ------------------------------------------


def recorded_conversation() -> np.ndarray:
    """Speech, silence, speech, a noise burst and a cough, silence."""
    return np.concatenate(
        [
            silence(0.5),
            speak_16k(QUESTION),
            silence(1.5),
            speak_16k(OTHER_QUESTION),
            silence(1.0),
            noise_burst(0.6, 0.1),
            silence(0.4),
            cough(0.4, 0.4),
            silence(1.5),
        ]
    )


def test_hands_free_from_and_to_wav_files(
    tmp_path: Path, starter_gguf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_wav(tmp_path / "talk.wav", recorded_conversation(), RATE)
    rc = main(
        [
            "voice",
            "--hands-free",
            "-m",
            str(starter_gguf),
            "--input-wav",
            str(tmp_path / "talk.wav"),
            "--output-wav",
            str(tmp_path / "replies.wav"),
            "--max-tokens",
            "30",
            "--timings",
        ]
    )
    out = capsys.readouterr()
    assert rc == 0, out.err
    lines = out.out.splitlines()
    assert [line for line in lines if line.startswith("you: ")] == [f"you: {QUESTION}", f"you: {OTHER_QUESTION}"]
    replies = [line.removeprefix("assistant: ") for line in lines if line.startswith("assistant: ")]
    assert len(replies) == 2 and all(replies)
    err = out.err.splitlines()
    assert err.count("[hearing you]") == 2  # the noise and the cough began no turn
    assert sum(line.startswith("timings: ") for line in err) == 2
    audio, rate = read_wav(tmp_path / "replies.wav")
    heard_back = transcribe_any(audio, rate)  # both replies were spoken into the file, one after the other
    for reply in replies:
        assert word_recall(reply, heard_back) >= 0.6, (replies, heard_back)


def test_hands_free_without_a_microphone_is_one_line_and_exit_code_6(
    starter_gguf: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("edgeassist.speech.audio.list_devices", lambda: [])
    assert main(["voice", "--hands-free", "-m", str(starter_gguf)]) == 6
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edgeassist: no microphone found"), err
    assert main(["voice", "--hands-free", "--once", "-m", str(starter_gguf)]) == 2
    assert "choose one" in capsys.readouterr().err


# -- the real sound-device path, through ALSA file plugins (named pipes) ----------------------------------


def test_the_real_device_path_hands_free_ignores_its_own_echo(tmp_path: Path, starter_gguf: Path) -> None:
    """A room without echo cancellation: the microphone hears the speaker at half its level. The user
    asks, waits for the answer, then (after a noise burst and a cough) asks again; Ctrl+C ends it.
    The microphone is deaf while it speaks and for the echo's tail, so its own voice starts no turn."""
    room = AlsaRoom(tmp_path / "room", echo_gain=0.5)
    room.start(["-m", "edgeassist", "voice", "--hands-free", "-m", str(starter_gguf), "--max-tokens", "30"])
    try:
        assert room.wait_for(lambda r: r.count("[listening]") >= 1), room.err
        room.say(np.concatenate([speak_16k(QUESTION), silence(1.0)]))
        assert room.wait_for(lambda r: r.count("[listening]") >= 2), room.err  # answered, listening again
        room.say(np.concatenate([noise_burst(0.6, 0.1), silence(0.6), cough(0.4, 0.4), silence(0.8)]))
        room.say(np.concatenate([speak_16k(OTHER_QUESTION), silence(1.0)]))
        assert room.wait_for(lambda r: r.count("[listening]") >= 3), room.err
    finally:
        rc = room.stop()
    assert rc == 0, room.err
    assert room.count("[hearing you]") == 2, room.err  # two turns: no echo, noise or cough taken for one
    you = [line for line in room.out if line.startswith("you: ")]
    # Whisper tiny may mishear one word of real-time device audio on a loaded machine ("France" as
    # "friends" was seen once): each turn must be its question, give or take one word.
    expected = [words(f"you: {QUESTION}"), words(f"you: {OTHER_QUESTION}")]
    assert len(you) == 2, room.out
    for heard, asked in zip((words(line) for line in you), expected, strict=True):
        assert len(heard) == len(asked) and sum(a != b for a, b in zip(heard, asked, strict=True)) <= 1, room.out
    replies = [line.removeprefix("assistant: ") for line in room.out if line.startswith("assistant: ")]
    assert len(replies) == 2 and all(replies)
    played = room.played_samples()
    assert len(played) / room.speaker_rate > 1.0
    # The microphone did hear the replies (the echo was there to be mistaken), yet took none for a turn.
    heard = transcribe_any(room.heard_samples(), WHISPER_RATE)
    assert word_recall(replies[0], heard) >= 0.5, (replies, heard)


def test_the_real_device_path_with_a_headset_lets_the_user_interrupt(tmp_path: Path, starter_gguf: Path) -> None:
    """A headset: the speaker leaks into the microphone at -26 dB. Asked for a story, it speaks; the
    user talks over it, the story stops, and the new question is answered."""
    room = AlsaRoom(tmp_path / "room", echo_gain=0.05)
    args = ["-m", "edgeassist", "voice", "--hands-free", "--barge-in", "headset", "-m", str(starter_gguf)]
    room.start([*args, "--max-tokens", "60"])
    try:
        assert room.wait_for(lambda r: r.count("[listening]") >= 1), room.err
        room.say(np.concatenate([speak_16k("Tell me a long story about a dragon and a knight."), silence(1.0)]))
        assert room.wait_for(lambda r: r.played_s() > 1.5), room.err  # it is telling the story
        room.say(np.concatenate([speak_16k(QUESTION), silence(1.0)]))
        assert room.wait_for(lambda r: r.count("[listening]") >= 2), room.err
    finally:
        rc = room.stop()
    assert rc == 0, room.err
    said = "\n".join(room.out)  # a story's reply may hold blank lines
    you = [line.removeprefix("you: ") for line in room.out if line.startswith("you: ")]
    assert len(you) == 2 and word_recall(QUESTION, you[1]) >= 0.8, you
    assert said.count("assistant: ") == 2 and said.count("[interrupted]") == 1, said
    assert said.index("[interrupted]") < said.index(f"you: {you[1]}") < said.rindex("assistant: ")
    assert room.count("[hearing you]") == 2, room.err  # the barge-in, shown once the story's line ended


# -- the bench ------------------------------------------------------------------------------------------------


def test_bench_times_hands_free_turns_beside_push_to_talk(starter_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeassist.bench import voice as bench_voice
    from edgeassist.config import load_settings

    monkeypatch.setattr(bench_voice, "BENCH_QUESTIONS", ("What time is it?",))

    class QuickOut(RecordingOut):  # the reply need not be heard out: the figure ends at its first audio
        pass

    monkeypatch.setattr(bench_voice, "NullOut", QuickOut)
    settings = load_settings(flags={"bench": {"repetitions": 1}, "model": {"n_ctx": 1024}})
    stages = bench_voice.bench_voice_both(settings, bench_voice.VoiceTarget("starter", starter_gguf, 2))
    assert list(stages) == [*bench_voice.BENCH_STAGES, *bench_voice.HANDS_FREE_STAGES]
    assert all(len(v) == 1 for v in stages.values()), stages
    end_of_turn = stages["hands_free_end_of_turn_s"][0]
    assert end_of_turn == pytest.approx(settings.speech.end_of_turn_s, abs=0.04)  # frames of 32 ms
    assert stages["hands_free_speech_end_to_first_audio_s"][0] > end_of_turn  # the wait is part of it
