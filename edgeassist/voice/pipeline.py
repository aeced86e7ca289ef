"""The push-to-talk voice turn, written once for every front end (no Textual, no CLI here).

A turn: `start_recording()` on key press; audio flows to an `IncrementalTranscriber` (which
transcribes at each pause while the key is still held) and the level to `on_level`; meanwhile the
conversation's prompt is evaluated in the model up to the user's words, so that little is left to
do at release. `stop_recording()` on release; `respond()` then yields the final transcript, the
reply's events as the model streams them, and `Speaking` as each sentence starts to play: the
reply is cut into sentences as it arrives, each one synthesized while the next is generated and
played while the one after is synthesized. Pressing the key again while it speaks (barge-in)
stops playback and generation at once and starts the next recording.

A stop may also come between the end of the recording and the reply (whisper's last pass, or
while the front end shows the words): `interrupt()` (Esc) then drops the turn when its words have
not been shown yet, as while recording; once they have been shown, Esc or a barge-in sends them
with the reply stopped before its first token, as a stop a moment later would. What the user was
shown is what the conversation keeps, and a barge-in never loses the words before it.

Threads in a turn: the recording's (`recording.Recording`); one that orders the model's work, the
prefill while recording, then the reply (`prefill.TurnScheduler`); piper synthesizes in another
and the speaker plays in a third (`spoken.SpokenReply`); all post to one queue, which `respond()`
(in the caller's worker thread) turns into events in the order they happened.

    pipeline = build_pipeline(settings, conversation, on_level=..., on_transcript=...)
    pipeline.warm_up()                  # optional: load models now rather than on the first turn
    pipeline.start_recording()          # key down (barge-in when it is speaking)
    pipeline.stop_recording()           # key up
    for event in pipeline.respond():    # in a worker thread
        ...                             # Heard, Thinking, Text, Notice, Speaking, Done, then TurnDone
    pipeline.interrupt()                # Esc: stop speaking, generating and recording now
    pipeline.close()
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from edgeassist.chat import Conversation
from edgeassist.engine.base import GenerationOptions, Notice
from edgeassist.errors import UsageError
from edgeassist.speech.audio import ArrayIn, AudioIn, AudioOut
from edgeassist.speech.build import audio_input, audio_output, speech_models
from edgeassist.speech.samples import WHISPER_RATE, Resampler
from edgeassist.speech.stt import Transcriber, Transcript
from edgeassist.speech.tts import Synthesizer
from edgeassist.voice.config import VoiceConfig
from edgeassist.voice.events import (
    Heard,
    Speaking,
    TurnDone,
    TurnStatus,
    VoiceEvent,
    VoiceTurnResult,
    VoiceTurnTimings,
)
from edgeassist.voice.prefill import TurnScheduler
from edgeassist.voice.recording import Recording
from edgeassist.voice.spoken import SpokenReply

if TYPE_CHECKING:
    from edgeassist.config import Settings

EMPTY_NOTICE = "nothing was heard: hold the key while you speak, a little closer to the microphone"
"""What push-to-talk says when a recording held no words."""


class VoicePipeline:
    """Push-to-talk turns over one Conversation: thread-safe controls, a blocking event stream per turn."""

    def __init__(
        self,
        conversation: Conversation,
        transcriber: Transcriber,
        synthesizer: Synthesizer | None = None,
        audio_in: AudioIn | None = None,
        audio_out: AudioOut | None = None,
        *,
        options: GenerationOptions | None = None,
        config: VoiceConfig | None = None,
        on_level: Callable[[float], None] | None = None,
        on_transcript: Callable[[str, bool], None] | None = None,
        notes: Sequence[str] = (),
    ) -> None:
        """Wire the parts; `on_level(0..1)` and `on_transcript(text, final)` are called from worker threads."""
        self.conversation = conversation
        self.transcriber = transcriber
        self.synthesizer = synthesizer
        self.audio_in = audio_in
        self.audio_out = audio_out
        self.options = options or conversation.options
        self.config = config or VoiceConfig()
        self.on_level = on_level
        self.on_transcript = on_transcript
        self.notes = list(notes)
        """One-line notes for the user (offline fallback models in use)."""
        self._lock = threading.RLock()
        self._recording: Recording | None = None
        self._cancel = threading.Event()  # the current reply's generation
        self._stop_play = threading.Event()  # the current reply's playback
        self._replying = False
        self._scheduler: TurnScheduler | None = None  # orders the model's work for the current turn

    @property
    def speaks(self) -> bool:
        """Whether replies are spoken (a synthesizer, an output and `config.speak`)."""
        return self._speech() is not None

    def _speech(self) -> tuple[Synthesizer, AudioOut] | None:
        synthesizer, audio_out = self.synthesizer, self.audio_out
        if self.config.speak and synthesizer is not None and audio_out is not None:
            return synthesizer, audio_out
        return None

    @property
    def state(self) -> Literal["idle", "recording", "replying"]:
        """What the pipeline is doing now."""
        rec = self._recording
        if rec is not None and not rec.ended.is_set():
            return "recording"
        return "replying" if self._replying else "idle"

    def warm_up(self) -> None:
        """Load whisper, piper and the model now, so that the first turn is as quick as the others."""
        self.transcriber.load()
        if self.synthesizer is not None:
            chunks = list(self.synthesizer.synthesize("Hello there."))  # the first run of onnxruntime is slow
            audio = np.concatenate([c.samples for c in chunks]) if chunks else np.zeros(0, dtype=np.float32)
            if len(audio):
                self.transcriber.transcribe(Resampler(chunks[0].sample_rate, WHISPER_RATE).process(audio, final=True))
        with self._lock:
            scheduler = self._scheduler = TurnScheduler(
                self.conversation, self.options, self._scheduler, draft_tokens=self.config.draft_tokens
            )
        if self.config.prefill:
            scheduler.prefill("")
            scheduler.wait_idle(timeout=120)
        scheduler.finish()
        scheduler.join(timeout=120)

    # -- controls (any thread) -----------------------------------------------------------------

    def start_recording(self, audio_in: AudioIn | None = None) -> None:
        """Start a recording (key down). While a reply plays, this is barge-in: it stops at once."""
        source = audio_in or self.audio_in
        if source is None:
            raise UsageError("no audio input: give the pipeline a microphone or a wav file")
        with self._lock:
            self._cancel.set()
            self._stop_play.set()
            rec = self._recording
            if rec is not None and not rec.ended.is_set():
                return  # already recording
            if rec is not None and not rec.consumed:  # recorded, never answered: drop it
                rec.consumed = True
                rec.drop()
            scheduler = self._scheduler = TurnScheduler(
                self.conversation, self.options, self._scheduler, draft_tokens=self.config.draft_tokens
            )
            self._recording = Recording(
                source, self.transcriber, self.config, scheduler, on_level=self._level, on_text=self._partial_text
            )
            self._recording.start()
        if self.config.prefill:
            scheduler.prefill("")

    def stop_recording(self) -> None:
        """End the recording (key up); `respond()` then finishes the transcript and replies."""
        rec = self._recording
        if rec is not None:
            rec.release()

    def interrupt(self) -> None:
        """Stop everything now: playback, generation, and the latest recording's turn (discarded while it
        records or before its words are shown; once shown, they are sent and the reply stops at once)."""
        with self._lock:
            self._cancel.set()
            self._stop_play.set()
            rec = self._recording
            if rec is not None:
                # `_respond` reads this until the reply begins: an Esc that comes after the recording
                # ended, before the reply's own cancel event exists, must not be lost.
                rec.abandoned = True
                if not rec.ended.is_set():
                    rec.release()

    def close(self) -> None:
        """Stop everything and release the devices."""
        self.interrupt()
        rec = self._recording
        if rec is not None:
            rec.stt.cancel()
            rec.ended.wait(timeout=5)
        scheduler = self._scheduler
        if scheduler is not None:
            scheduler.finish()
            scheduler.join(timeout=60)  # the engine may be freed next
        if self.audio_out is not None:
            self.audio_out.close()

    # -- callbacks from the recording ---------------------------------------------------------

    def _level(self, level: float) -> None:
        if self.on_level is not None:
            self.on_level(level)

    def _partial_text(self, text: str, final: bool) -> None:
        if self.on_transcript is not None:
            self.on_transcript(text, final)

    # -- the turn ------------------------------------------------------------------------------

    def respond(self, *, empty_notice: str | None = EMPTY_NOTICE) -> TurnEvents:
        """The turn of the latest recording: wait for it to end, then yield its events; `TurnDone` is always last.

        The recording is taken at once (a `UsageError` now when there is none new), its events come
        as the returned iterator is read. Blocking: read it in a worker thread. Closing it early stops
        the reply. `empty_notice` is the `Notice` shown when nothing was heard (None: none).
        A recording once taken is never dropped by the next `start_recording()`: its words are kept.
        """
        with self._lock:
            rec = self._recording
            if rec is None or rec.consumed:
                raise UsageError("nothing new was recorded: call start_recording() first")
            rec.consumed = True
        return TurnEvents(rec, self._respond(rec, empty_notice))

    def _respond(self, rec: Recording, empty_notice: str | None) -> Generator[VoiceEvent, None, None]:
        """`respond`'s events for the recording it took."""
        rec.ended.wait()
        timings = VoiceTurnTimings()
        if rec.error is not None:
            rec.stt.cancel()
            rec.scheduler.finish()
            raise rec.error
        release = rec.release_at or time.perf_counter()
        timings.record_s = rec.stt.duration_s
        if rec.speech_end_at is not None:
            timings.release_lag_s = max(0.0, release - rec.speech_end_at)
        if rec.abandoned:
            rec.drop()
            yield TurnDone("", "", "cancelled", timings)
            return
        try:
            transcript = rec.stt.finish()
        except BaseException:
            rec.scheduler.finish()
            raise
        heard = time.perf_counter()
        rec.scheduler.discard()  # no use evaluating part of the message now: the reply evaluates all of it
        self._fill_stt(timings, rec, transcript, release, heard)
        if rec.abandoned:  # Esc during whisper's last pass: the words were never shown, so nothing is sent
            rec.scheduler.finish()
            yield TurnDone("", "", "cancelled", timings)
            return
        if self.on_transcript is not None:
            self.on_transcript(transcript.text, True)
        yield Heard(transcript.text, True)
        if not transcript.text:
            rec.scheduler.finish()
            if empty_notice:
                yield Notice(empty_notice)
            timings.total_s = time.perf_counter() - release
            yield TurnDone("", "", "empty", timings)
            return
        cancel, stop_play = threading.Event(), threading.Event()
        with self._lock:
            # The words have been shown. A stop since (Esc, or a barge-in while they were decoded) stops
            # the reply before its first token, and the words are sent all the same, as they would be
            # had the stop come a moment later: the chat keeps what it showed, and the next reply reads it.
            stopped = rec.abandoned or self._recording is not rec
            if stopped:
                cancel.set()
                stop_play.set()
            else:
                self._cancel, self._stop_play = cancel, stop_play
                self._replying = True
        try:
            reply = SpokenReply(self.conversation, self.options, self.config, self._speech(), cancel, stop_play, heard)
            yield from reply.events(transcript.text, rec.scheduler)
            status: TurnStatus = "cancelled" if reply.cancelled else "complete"
            timings.prefill_tokens = rec.scheduler.tokens
            reply.fill_timings(timings, release, rec.speech_end_at, time.perf_counter())
            yield TurnDone(transcript.text, reply.answer, status, timings)
        finally:
            if not stopped:
                self._replying = False

    def _fill_stt(self, t: VoiceTurnTimings, rec: Recording, tr: Transcript, release: float, heard: float) -> None:
        s = rec.stt.stats
        t.stt_passes = s.passes
        t.stt_busy_s = s.busy_s
        t.stt_rtf = s.busy_s / t.record_s if t.record_s > 0 else None
        t.stt_tail_audio_s = s.tail_s
        t.stt_final_s = heard - release
        t.stt_window_s = tr.window_s

    # -- whole turns ---------------------------------------------------------------------------

    def run_turn(
        self, audio_in: AudioIn | None = None, on_event: Callable[[VoiceEvent], None] | None = None
    ) -> VoiceTurnResult:
        """Record from `audio_in` until it ends (a file) or `stop_recording()`, then reply; all of it, collected."""
        self.start_recording(audio_in)
        events: list[VoiceEvent] = []
        for event in self.respond():
            events.append(event)
            if on_event is not None:
                on_event(event)
        done = events[-1]
        assert isinstance(done, TurnDone)
        spoken = [e.text for e in events if isinstance(e, Speaking)]
        return VoiceTurnResult(done.transcript, done.reply, spoken, done.status, done.timings, events)


class TurnEvents(Iterator[VoiceEvent]):
    """The events of a turn `VoicePipeline.respond()` took, as they are read; `drop()`, before the first
    read, answers nothing (a session stopping with turns not yet answered)."""

    def __init__(self, recording: Recording, events: Generator[VoiceEvent, None, None]) -> None:
        """The recording taken, and `_respond`'s events for it."""
        self._recording = recording
        self._events = events
        self._read = False

    def __next__(self) -> VoiceEvent:
        """The next event (the first waits for the recording to end)."""
        self._read = True
        return next(self._events)

    def close(self) -> None:
        """Stop reading: a reply under way stops."""
        self._events.close()

    def drop(self) -> None:
        """Never answer the turn, if its events have not been read (else, as `close`)."""
        if not self._read:
            self._recording.drop()
        self._events.close()


def simulate_turn(
    pipeline: VoicePipeline,
    samples: np.ndarray,
    sample_rate: int,
    *,
    hold_after_s: float = 0.0,
    realtime: bool = True,
    on_event: Callable[[VoiceEvent], None] | None = None,
) -> VoiceTurnResult:
    """One turn from recorded speech, fed like a microphone: at real-time pace, the key released
    `hold_after_s` after the audio ends (that stretch is silence). This is what the bench measures.
    """
    audio = np.concatenate(
        [np.asarray(samples, dtype=np.float32), np.zeros(int(hold_after_s * sample_rate), np.float32)]
    )
    return pipeline.run_turn(ArrayIn(audio, sample_rate, realtime=realtime), on_event=on_event)


# -- building one from the settings ----------------------------------------------------------------


def build_pipeline(
    settings: Settings,
    conversation: Conversation,
    *,
    input_wav: Path | None = None,
    output_wav: Path | None = None,
    speak: bool | None = None,
    realtime_input: bool = False,
    on_level: Callable[[float], None] | None = None,
    on_transcript: Callable[[str, bool], None] | None = None,
    config: VoiceConfig | None = None,
) -> VoicePipeline:
    """The pipeline the settings describe: whisper, piper, and the configured devices (or wav files).

    Raises `AudioUnavailableError` (one line: what to install or which device is missing) when the
    speech extra, PortAudio or a device is missing; nothing here touches the network.
    """
    from edgeassist.speech import require_speech

    config = config or VoiceConfig.from_settings(settings, speak=speak)
    require_speech("faster_whisper", *(("piper",) if config.speak else ()))
    audio_in = audio_input(settings, input_wav, realtime=realtime_input)  # first: without one there is no turn
    transcriber, synthesizer, notes = speech_models(settings, speak=config.speak)
    audio_out = audio_output(settings, output_wav) if config.speak else None
    return VoicePipeline(
        conversation,
        transcriber,
        synthesizer,
        audio_in,
        audio_out,
        config=config,
        on_level=on_level,
        on_transcript=on_transcript,
        notes=notes,
    )
