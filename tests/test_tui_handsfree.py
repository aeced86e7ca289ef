"""Pilot tests of hands-free in the chat app (F7): a recorded conversation through the real pipeline (Silero
VAD, whisper tiny, piper, the starter model), Esc while it speaks, and a voice that cannot start."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from audio_helpers import cough, noise_burst, silence
from test_tui import _isolated, make_settings, ready, replies, send, wait_until  # noqa: F401 - _isolated: autouse

from edgeassist.config import Settings
from edgeassist.tui import EdgeAssistApp, create_app
from edgeassist.tui.widgets import UserMessage, VoiceBar
from edgeassist.voice import HandsFreeState
from edgeassist.voice.handsfree import PoliteUser

RATE = 16000
S = HandsFreeState
QUESTION = "What is the capital of France?"
OTHER_QUESTION = "What is the capital of Italy?"


def session_state(app: EdgeAssistApp) -> HandsFreeState:
    """Where the app's hands-free session really is (not as shown): what a person hears."""
    live = app.handsfree.live
    return live.session.state if live is not None else S.STOPPED


def polite_mic(parts: Sequence[np.ndarray], state: Callable[[], HandsFreeState]) -> PoliteUser:
    """A microphone at real-time pace playing a recorded conversation, part by part: each part once the
    session listens again, as a person waits for the answer; silence between and after them."""
    return PoliteUser(state, parts, lead_s=0.0, tail_s=0.0, block=512, keep_open=True)


def recorded_voice(mic: PoliteUser, reply_wav: Path) -> Any:
    """A `make_voice` for the app: the real pipeline (whisper, piper, the app's model) with `mic` as the
    microphone, and the spoken replies written to `reply_wav` where a speaker would play them."""

    def make(settings: Settings, convo: Any, on_level: Any, on_transcript: Any) -> Any:
        from edgeassist.speech.audio import WavOut
        from edgeassist.speech.build import speech_models
        from edgeassist.voice import VoiceConfig, VoicePipeline

        transcriber, synthesizer, notes = speech_models(settings)
        return VoicePipeline(
            convo, transcriber, synthesizer, mic, WavOut(reply_wav),
            config=VoiceConfig.from_settings(settings), on_level=on_level, on_transcript=on_transcript, notes=notes,
        )  # fmt: skip

    return make


def scripted_voice(heard: str, mic: PoliteUser, out: Any) -> Any:
    """A `make_voice` of scripted parts around the real VAD: a transcriber that 'hears' `heard` in any
    sound, a tone per spoken sentence, played to `out`."""
    from audio_helpers import SilentTranscriber, ToneSynth

    from edgeassist.voice import VoiceConfig, VoicePipeline

    def make(settings: Settings, convo: Any, on_level: Any, on_transcript: Any) -> Any:
        return VoicePipeline(
            convo, SilentTranscriber(heard), ToneSynth(), mic, out,
            config=VoiceConfig(prefill=False), on_level=on_level, on_transcript=on_transcript,
        )  # fmt: skip

    return make


def record_bar(app: EdgeAssistApp) -> list[str]:
    """Every hands-free state the voice bar shows from now on (repeats, such as a new partial, once)."""
    bar = app.query_one(VoiceBar)
    shown: list[str] = []
    show = bar.show_hands_free

    def recording(state: str, text: str = "") -> None:
        if not shown or shown[-1] != state:
            shown.append(state)
        show(state, text)

    bar.show_hands_free = recording  # type: ignore[method-assign]
    return shown


def bar_line(app: EdgeAssistApp) -> str:
    return str(app.query_one(VoiceBar).render())


async def test_a_recorded_conversation_gives_two_turns_in_the_chat_and_the_noise_none(
    tmp_path: Path, starter_gguf: Path
) -> None:
    from audio_helpers import speak_16k, word_recall

    from edgeassist.speech.audio import read_wav

    app: EdgeAssistApp | None = None
    conversation = [
        np.concatenate([silence(0.5), speak_16k(QUESTION), silence(1.5)]),
        np.concatenate([silence(0.5), speak_16k(OTHER_QUESTION), silence(1.5)]),
        np.concatenate([silence(0.5), noise_burst(0.6, 0.1), silence(0.4), cough(0.4, 0.4), silence(1.5)]),
    ]
    mic = polite_mic(conversation, lambda: session_state(app) if app is not None else S.STOPPED)
    settings = make_settings(tmp_path, str(starter_gguf), max_tokens=24)
    app = create_app(settings, new_chat=True, make_voice=recorded_voice(mic, tmp_path / "replies.wav"))
    async with app.run_test() as pilot:
        await ready(pilot)
        shown = record_bar(app)
        await pilot.press("f7")
        await wait_until(pilot, lambda: app.handsfree.live is not None, timeout=180, what="hands-free to start")
        live = app.handsfree.live
        assert live is not None
        pipeline, push_to_talk_transcript = live.pipeline, live.transcript
        await wait_until(pilot, mic.played.is_set, timeout=300, what="the conversation to be played in")
        await wait_until(
            pilot, lambda: app.handsfree.state is S.LISTENING and not app.generating, what="the last answer"
        )
        assert "🎧 hands-free · listening (F7 to stop)" in bar_line(app)

        await pilot.press("f7")  # off
        await wait_until(pilot, lambda: app.handsfree.live is None, what="hands-free to stop")
        bar = app.query_one(VoiceBar)
        assert app.handsfree.state is S.STOPPED and live.session.state is S.STOPPED
        assert not bar.display and bar.mode == "off" and bar.hands_free == "off"
        assert pipeline.on_transcript is push_to_talk_transcript  # push-to-talk's callback is back

        # The bar showed every state, in order; the noise and the cough began no turn.
        turn = ["listening", "hearing you", "thinking", "speaking"]
        assert shown == ["starting", *turn, *turn, "listening", "stopping"], shown
        assert [t.status for t in live.session.turns] == ["complete", "complete"]

        # Exactly the two questions became messages, each with its reply under it, all saved.
        asked = [m.text for m in app.query(UserMessage)]
        assert len(asked) == 2, asked
        for said, question in zip(asked, (QUESTION, OTHER_QUESTION), strict=True):
            assert word_recall(question, said) >= 0.8, (question, said)  # whisper tiny.en, as in test_tui
        views = replies(app)
        assert len(views) == 2 and all(v.content.strip() and v.status in ("complete", "cut") for v in views)
        assert app.chat is not None  # the new chat was saved when its first words were heard
        saved = app.store.messages(app.chat.id)
        assert [m.role for m in saved] == ["user", "assistant", "user", "assistant"]
        assert [m.content for m in saved if m.role == "user"] == asked
        assert [m.content for m in saved if m.role == "assistant"] == [v.content for v in views]
        assert [m.status for m in saved if m.role == "assistant"] == [v.status for v in views]
    spoken, _ = read_wav(tmp_path / "replies.wav")
    assert len(spoken) > 0  # both replies were spoken


@pytest.mark.parametrize("writing", [True, False], ids=["while-written", "written"])
async def test_esc_while_it_speaks_stops_the_reply_and_it_listens_again(
    tmp_path: Path, fake_engine: Any, writing: bool
) -> None:
    """Esc while it speaks, the reply still being written (it stops, saved as stopped) or all written (its
    voice stops; the reply stays complete)."""
    from audio_helpers import RecordingOut, speak_16k

    app: EdgeAssistApp | None = None
    gate = threading.Event()
    engine = fake_engine("Once upon a time. There was a board. It ran a model.", gate=gate, pause_at=5)
    if not writing:
        gate.set()
    out = RecordingOut(hold=True)  # each sentence plays until it is stopped
    ask = np.concatenate([silence(0.3), speak_16k("Tell me a long story."), silence(1.2)])
    mic = polite_mic([ask], lambda: session_state(app) if app is not None else S.STOPPED)
    make = scripted_voice("Tell me a long story", mic, out)
    app = create_app(make_settings(tmp_path), open_model=engine.opener(), new_chat=True, make_voice=make)
    async with app.run_test() as pilot:
        await ready(pilot)
        shown = record_bar(app)
        await pilot.press("f7")
        await wait_until(pilot, out.playing.is_set, timeout=60, what="the reply to be spoken")
        await wait_until(pilot, lambda: app.handsfree.state is S.SPEAKING, what="the bar to say it speaks")
        await wait_until(pilot, lambda: "Once upon a time." in bar_line(app), what="the sentence in the bar")
        assert "speaking: Once upon a time. (Esc to stop it, F7 to end)" in bar_line(app)
        if writing:
            assert engine.paused.is_set() and app.generating  # the rest of the reply waits at the gate
        else:
            await wait_until(pilot, lambda: not app.generating, what="the reply to be written")
        assert app.check_action("stop", ()) and app.handsfree.busy  # the footer offers Esc

        await pilot.press("f5")  # push-to-talk while hands-free is on: a notice, no recording
        assert any("Hands-free is on" in str(n.message) for n in app._notifications)
        assert not app.talk.turns

        await pilot.press("escape")
        await wait_until(pilot, lambda: not app.generating, what="the reply to stop")
        await wait_until(pilot, lambda: app.handsfree.state is S.LISTENING, what="hands-free to listen again")
        assert out.stopped_while_playing.is_set()  # the speech was cut short
        assert app.handsfree.live is not None and session_state(app) is S.LISTENING  # still on
        assert "listening (F7 to stop)" in bar_line(app) and not app.check_action("stop", ())
        assert shown == ["starting", "listening", "hearing you", "thinking", "speaking", "listening"], shown
        status = "cancelled" if writing else "complete"
        views = replies(app)
        assert len(views) == 1 and views[0].status == status and views[0].content.startswith("Once upon")
        assert app.chat is not None
        saved = app.store.messages(app.chat.id)
        assert [(m.role, m.status) for m in saved] == [("user", "complete"), ("assistant", status)]
        assert saved[0].content == "Tell me a long story" and saved[1].content == views[0].content

        # Typing while it listens works as ever.
        gate.set()
        out.hold = False
        await send(pilot, "And then?")
        await wait_until(pilot, lambda: len(replies(app)) == 2 and replies(app)[-1].status == "complete")
        assert session_state(app) is S.LISTENING

        await pilot.press("f7")
        await wait_until(pilot, lambda: app.handsfree.live is None, what="hands-free to stop")
        assert app.handsfree.state is S.STOPPED and not app.query_one(VoiceBar).display


def held_voice(transcriber: Any, room: Any, **config: Any) -> Any:
    """A `make_voice` around the real VAD: `room` (an `audio_helpers.EchoRoom`) as microphone and speaker, and
    a transcriber whose passes a test holds (`audio_helpers.HeldTranscriber`: with `HELD`, a turn's last pass)."""
    from audio_helpers import HELD, ToneSynth

    from edgeassist.voice import VoiceConfig, VoicePipeline

    def make(settings: Settings, convo: Any, on_level: Any, on_transcript: Any) -> Any:
        return VoicePipeline(
            convo, transcriber, ToneSynth(), room, room.speaker(),
            config=VoiceConfig(prefill=False, **HELD, **config), on_level=on_level, on_transcript=on_transcript,
        )  # fmt: skip

    return make


async def test_esc_while_it_thinks_drops_the_turn_and_no_reply_comes(tmp_path: Path, fake_engine: Any) -> None:
    """Esc once the turn has ended, while its words are still decoded (nothing shown yet): no message, no
    reply, nothing saved; it listens again."""
    from audio_helpers import EchoRoom, HeldTranscriber, speak_16k

    room = EchoRoom()
    transcriber = HeldTranscriber("Tell me a long story", warm_up=True)
    engine = fake_engine("Once upon a time.")
    make = held_voice(transcriber, room)
    app = create_app(make_settings(tmp_path), open_model=engine.opener(), new_chat=True, make_voice=make)
    async with app.run_test() as pilot:
        await ready(pilot)
        shown = record_bar(app)
        await pilot.press("f7")
        await wait_until(pilot, lambda: session_state(app) is S.LISTENING, timeout=60, what="hands-free to listen")
        room.say(np.concatenate([silence(0.3), speak_16k("Tell me a long story.")]))
        await wait_until(pilot, transcriber.holding.is_set, what="the turn to end (its last pass runs)")
        await wait_until(pilot, lambda: app.handsfree.state is S.THINKING, what="the bar to say it thinks")
        assert app.check_action("stop", ())  # the footer offers Esc
        await pilot.press("escape")
        transcriber.go.set()
        await wait_until(pilot, lambda: app.handsfree.state is S.LISTENING, what="hands-free to listen again")
        assert shown == ["starting", "listening", "hearing you", "thinking", "listening"], shown
        assert session_state(app) is S.LISTENING and not app.check_action("stop", ())
        assert not app.query(UserMessage) and not replies(app) and engine.calls == []
        assert app.chat is None  # nothing was said to save

        await pilot.press("f7")
        await wait_until(pilot, lambda: app.handsfree.live is None, what="hands-free to stop")


async def test_with_a_headset_a_barge_in_while_it_thinks_keeps_the_first_words(
    tmp_path: Path, fake_engine: Any
) -> None:
    """The user pauses long enough to end the turn and goes on while its words are decoded: the first
    words stay a message of the chat, saved (their reply stopped before it began), and the one reply,
    to the words after them, reads them too."""
    from audio_helpers import EchoRoom, HeldTranscriber, speak_16k

    room = EchoRoom(echo_gain=0.03)
    transcriber = HeldTranscriber("What is the capital of France", "and of Italy", warm_up=True)
    engine = fake_engine("Paris, then Rome.")
    make = held_voice(transcriber, room, barge_in="headset")
    app = create_app(make_settings(tmp_path), open_model=engine.opener(), new_chat=True, make_voice=make)
    async with app.run_test() as pilot:
        await ready(pilot)
        await pilot.press("f7")
        await wait_until(pilot, lambda: session_state(app) is S.LISTENING, timeout=60, what="hands-free to listen")
        room.say(np.concatenate([silence(0.3), speak_16k("What is the capital of France?")]))
        await wait_until(pilot, transcriber.holding.is_set, what="the turn to end (its last pass runs)")
        room.say(speak_16k("And of Italy?"))  # the user goes on
        await wait_until(pilot, lambda: session_state(app) is S.HEARING, what="the barge-in")
        transcriber.go.set()
        await wait_until(
            pilot,
            lambda: len(app.query(UserMessage)) == 2 and session_state(app) is S.LISTENING and not app.generating,
            what="the answer, and listening again",
        )
        live = app.handsfree.live
        assert live is not None
        assert [t.status for t in live.session.turns] == ["cancelled", "complete"]
        asked = [m.text for m in app.query(UserMessage)]
        assert asked == ["What is the capital of France", "and of Italy"]
        views = replies(app)
        assert len(views) == 1 and views[0].status == "complete" and views[0].content == "Paris, then Rome."
        assert app.chat is not None  # what the chat shows is what it keeps
        saved = app.store.messages(app.chat.id)
        assert [(m.role, m.content) for m in saved] == [
            ("user", "What is the capital of France"),
            ("user", "and of Italy"),
            ("assistant", "Paris, then Rome."),
        ]
        sent = [m["content"] for m in engine.calls[-1][0] if m["role"] == "user"]
        assert sent == asked  # the reply read both

        await pilot.press("f7")
        await wait_until(pilot, lambda: app.handsfree.live is None, what="hands-free to stop")


@pytest.mark.parametrize("missing", ["microphone", "vad"])
async def test_a_voice_that_cannot_start_says_so_once_and_chat_goes_on(
    tmp_path: Path, fake_engine: Any, monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    from audio_helpers import RecordingOut

    import edgeassist.speech as speech
    import edgeassist.speech.audio as audio

    if missing == "microphone":  # PortAudio sees no device: the pipeline cannot be built
        monkeypatch.setattr(audio, "list_devices", lambda: [])

        def make(*_: Any) -> Any:
            audio.find_device(None, "input")  # what the microphone does first
            raise AssertionError("unreachable")

        said = "no microphone found"
    else:  # the pipeline is built, but the VAD's package is missing when the session starts
        monkeypatch.setattr(speech, "missing_speech_packages", lambda *modules: list(modules))
        mic = polite_mic([], lambda: S.STOPPED)
        make = scripted_voice("never heard", mic, RecordingOut())
        said = "hands-free listening needs the speech extra"

    app = create_app(make_settings(tmp_path), open_model=fake_engine().opener(), new_chat=True, make_voice=make)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await pilot.press("f7")
        await wait_until(pilot, lambda: not app.handsfree.on and not app.talk.loading, what="the failure")
        notices = [str(n.message) for n in app._notifications if said in str(n.message)]
        assert len(notices) == 1 and "\n" not in notices[0], [str(n.message) for n in app._notifications]
        assert "--input-wav" not in notices[0]  # a flag of `edgeassist voice`, not of the app
        assert app.handsfree.state is S.STOPPED and not app.query_one(VoiceBar).display
        await send(pilot, "Still there?")
        await wait_until(pilot, lambda: replies(app) and replies(app)[-1].status == "complete", what="a reply")


async def test_another_chat_turns_it_off_and_quitting_stops_it_and_releases_the_devices(
    tmp_path: Path, fake_engine: Any
) -> None:
    from audio_helpers import RecordingOut

    out = RecordingOut()
    mic = polite_mic([], lambda: S.STOPPED)  # a quiet room
    make = scripted_voice("never heard", mic, out)
    app = create_app(make_settings(tmp_path), open_model=fake_engine().opener(), new_chat=True, make_voice=make)
    async with app.run_test() as pilot:
        await ready(pilot)
        await pilot.press("f7")
        await wait_until(pilot, lambda: app.handsfree.state is S.LISTENING, what="hands-free to listen")
        first = app.handsfree.live
        assert first is not None and first.pipeline.conversation is app.conversation

        await pilot.press("ctrl+n")  # another chat: hands-free answers into one conversation, so it goes off
        await wait_until(pilot, lambda: app.handsfree.live is None, what="hands-free to stop")
        assert first.session.state is S.STOPPED and not app.query_one(VoiceBar).display
        assert any("Hands-free is off for the change of chat" in str(n.message) for n in app._notifications)

        await pilot.press("f7")  # on again: in the chat now in view
        await wait_until(pilot, lambda: app.handsfree.state is S.LISTENING, what="hands-free to listen again")
        second = app.handsfree.live
        assert second is not None and second is not first and second.pipeline.conversation is app.conversation

        await pilot.press("ctrl+q")
        await wait_until(pilot, lambda: not app.is_running, what="the app to quit")
    assert second.session.state is S.STOPPED and out.closed  # stopped, then the speaker was released
