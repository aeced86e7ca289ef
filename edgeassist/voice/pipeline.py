"""The push-to-talk voice turn, written once for every front end (no Textual, no CLI here).

A turn: `start_recording()` on key press; audio flows to an `IncrementalTranscriber` (which
transcribes at each pause while the key is still held) and the level to `on_level`; meanwhile the
conversation's prompt is evaluated in the model up to the user's words, so that little is left to
do at release. `stop_recording()` on release; `respond()` then yields the final transcript, the
reply's events as the model streams them, and `Speaking` as each sentence starts to play: the
reply is cut into sentences as it arrives, each one synthesized while the next is generated and
played while the one after is synthesized. Pressing the key again while it speaks (barge-in)
stops playback and generation at once and starts the next recording.

Threads in a turn: one orders the model's work (the prefill while recording, then the reply: see
`_ModelThread`), piper synthesizes in another, the speaker plays in a third; all post to one
queue, which `respond()` (in the caller's worker thread) turns into events in the order they
happened.

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

import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from edgeassist.chat import Conversation
from edgeassist.engine.base import Done, GenerationOptions, Message, Notice, Stats, Text, Thinking
from edgeassist.engine.modelthread import MODEL_THREAD
from edgeassist.errors import UsageError
from edgeassist.speech.audio import WHISPER_RATE, ArrayIn, AudioIn, AudioOut, LevelMeter, Resampler
from edgeassist.speech.stt import IncrementalTranscriber, Transcriber, Transcript
from edgeassist.speech.text import SentenceSplitter
from edgeassist.speech.tts import SpeechChunk, Synthesizer

if TYPE_CHECKING:
    from edgeassist.config import Settings


# -- configuration ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class VoiceConfig:
    """How the voice pipeline behaves (built from `[speech]` settings by `from_settings`)."""

    speak: bool = True
    """Speak the reply (False: transcribe and answer in text only)."""
    partial_interval_s: float = 1.0
    """While recording, show a partial transcript every this many seconds of speech; 0: only at pauses."""
    pause_s: float = 0.3
    """A silence this long while recording commits the words before it."""
    eager_first_clause: bool = True
    """Let the first spoken chunk end at a clause (`,` `;` `:`) so the first audio comes sooner."""
    prefill: bool = True
    """Evaluate the conversation's prompt in the model while the user is still speaking."""
    end_silence_s: float | None = None
    """Stop recording by itself after this much silence following speech (None: only the key stops it)."""
    max_record_s: float = 120.0
    """Stop recording by itself after this many seconds."""
    first_chunk_tokens: int | None = None
    """Speak the first chunk after this many answer tokens even if no sentence has ended (None: wait
    for one). For models whose text is random (the bench's synthetic Qwen 3.5), where it stands in
    for a first sentence."""

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> VoiceConfig:
        """The config the `[speech]` settings describe, with keyword overrides."""
        s = settings.speech
        values: dict[str, Any] = {
            "speak": s.speak_replies,
            "partial_interval_s": s.partial_interval_s,
            "pause_s": s.pause_s,
            "eager_first_clause": s.eager_first_clause,
            "prefill": s.prefill,
            "end_silence_s": s.end_silence_s,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


# -- events ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Heard:
    """What the user said: `final` once the recording has ended and been fully transcribed."""

    text: str
    """The transcript (empty when nothing was heard)."""
    final: bool = True
    """False for a partial transcript shown while recording."""


@dataclass(frozen=True)
class Speaking:
    """A sentence of the reply has started to play."""

    text: str
    """The sentence, as spoken (prose, not Markdown)."""
    index: int
    """0 for the reply's first sentence."""


@dataclass
class VoiceTurnTimings:
    """Where the time of one voice turn went; seconds, None where a stage did not happen."""

    record_s: float = 0.0
    """Audio recorded (the whole press of the key)."""
    release_lag_s: float | None = None
    """From the end of speech to the key's release (how long the key was held after the last word)."""
    stt_passes: int = 0
    """Whisper passes run while the key was held."""
    stt_busy_s: float = 0.0
    """All the time spent in whisper for this turn, the passes while recording included."""
    stt_rtf: float | None = None
    """Real-time factor of speech to text: `stt_busy_s / record_s`."""
    stt_tail_audio_s: float = 0.0
    """Audio left to decode at release (0 when the speaker paused before releasing)."""
    stt_final_s: float = 0.0
    """From release to the final transcript."""
    stt_window_s: float = 0.0
    """Whisper's encoder window for the final pass (30 is whisper's own)."""
    prefill_tokens: int = 0
    """Prompt tokens evaluated while the user was still speaking."""
    prompt_tokens: int = 0
    """Tokens in the reply's prompt."""
    evaluated_tokens: int = 0
    """Prompt tokens evaluated after release."""
    llm_first_token_s: float | None = None
    """From the final transcript to the first answer token."""
    llm_first_sentence_s: float | None = None
    """From the final transcript to the first complete sentence (or clause) of the answer."""
    tts_first_s: float | None = None
    """Synthesis time of the first spoken chunk."""
    tts_rtf: float | None = None
    """Real-time factor of text to speech: synthesis time / audio produced."""
    first_audio_s: float | None = None
    """From release to the first reply sample handed to the speaker."""
    speech_end_to_first_audio_s: float | None = None
    """From the end of the user's speech to the first reply sample handed to the speaker."""
    reply_audio_s: float = 0.0
    """Seconds of reply audio played."""
    total_s: float = 0.0
    """From release to the end of the turn."""
    stats: Stats | None = None
    """The engine's figures for the reply."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (the engine stats nested)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "stats"}
        d["stats"] = self.stats.to_dict() if self.stats is not None else None
        return d


TurnStatus = Literal["complete", "cancelled", "empty"]


@dataclass(frozen=True)
class TurnDone:
    """The turn is over (replied, interrupted, or nothing was heard); always the last event."""

    transcript: str
    """What the user said."""
    reply: str
    """The answer's text (without thinking)."""
    status: TurnStatus
    """complete, cancelled (barge-in, Esc), or empty (nothing heard)."""
    timings: VoiceTurnTimings
    """Where the time went."""


VoiceEvent = Heard | Thinking | Text | Notice | Speaking | Done | TurnDone


@dataclass
class VoiceTurnResult:
    """A whole turn, collected (`run_turn`, `simulate_turn`)."""

    transcript: str
    """What the user said."""
    reply: str
    """The answer's text."""
    spoken: list[str]
    """The sentences spoken, in order."""
    status: TurnStatus
    """How the turn ended."""
    timings: VoiceTurnTimings
    """Where the time went."""
    events: list[VoiceEvent] = field(default_factory=list)
    """Every event, in order."""


# -- prefill ---------------------------------------------------------------------------------------


def prefill_prompt(
    engine: Any,
    messages: Sequence[Message],
    options: GenerationOptions,
    user_prefix: str = "",
    cancel: threading.Event | None = None,
) -> int:
    """Evaluate the next turn's prompt ahead of time, up to the user's words so far; return tokens evaluated.

    The engine renders the conversation with a user message that starts with `user_prefix`, cut
    where the rest of the message would begin, and evaluates the part of it that no continuation
    can change, which the reply then reuses. Engines without `prefill` return 0.
    """
    prefill = getattr(engine, "prefill", None)
    if not callable(prefill):
        return 0
    think = options.think and bool(getattr(engine, "supports_thinking", False))
    return int(prefill([*messages, {"role": "user", "content": user_prefix}], think, cancel))


class _ModelThread:
    """The thread that orders a turn's model work: prefills while the user speaks, then the reply.

    A newer prefill request replaces one still waiting, and the reply runs after the last prefill,
    never beside it. Each piece of work runs on the process's model thread (see
    `edgeassist.engine.modelthread`), the reply's loop included, so the decode loop and its
    consumer take turns on one thread. It starts after the previous turn's has exited and exits
    itself when the turn is over.
    """

    def __init__(self, conversation: Conversation, options: GenerationOptions, previous: _ModelThread | None) -> None:
        self.conversation = conversation
        self.options = options
        self.tokens = 0
        """Prompt tokens evaluated ahead by this thread."""
        self._previous = previous
        self._cond = threading.Condition()
        self._want: str | None = None
        self._job: Callable[[], None] | None = None
        self._busy = False
        self._done = False
        self._thread = threading.Thread(target=self._run, name="voice-model", daemon=True)
        self._thread.start()

    def prefill(self, user_prefix: str) -> None:
        """Evaluate the prompt up to `user_prefix` of the coming message (a newer request replaces a waiting one)."""
        with self._cond:
            if not self._done and self._job is None:
                self._want = user_prefix
                self._cond.notify_all()

    def discard(self) -> None:
        """Forget a prefill request that has not started."""
        with self._cond:
            self._want = None

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no prefill is waiting or running."""
        with self._cond:
            return self._cond.wait_for(lambda: self._want is None and not self._busy, timeout)

    def run(self, job: Callable[[], None]) -> None:
        """Run `job` (the reply) on this thread next; the thread exits after it."""
        with self._cond:
            self._want = None
            self._job = job
            self._cond.notify_all()

    def finish(self) -> None:
        """Exit without a reply (nothing was heard, or the turn was abandoned)."""
        with self._cond:
            self._want = None
            self._done = True
            self._cond.notify_all()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to exit."""
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        if self._previous is not None:
            self._previous.join()
            self._previous = None
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._want is not None or self._job is not None or self._done)
                if self._job is not None or self._done:
                    job, self._done = self._job, True
                    break
                prefix, self._want = self._want, None
                self._busy = True
            try:
                engine, context = self.conversation.engine, self.conversation.context()
                n = MODEL_THREAD.call(prefill_prompt, engine, context, self.options, prefix or "")
            except Exception:  # noqa: BLE001 - prefill is only a head start; the reply does the work anyway
                n = 0
            with self._cond:
                self.tokens += n
                self._busy = False
                self._cond.notify_all()
        if job is not None:
            MODEL_THREAD.call(job)  # the reply's loop on the model thread: no hand-off per token


# -- recording -------------------------------------------------------------------------------------


class _Recording:
    """One press of the key: capture, level, incremental transcription."""

    def __init__(self, pipeline: VoicePipeline, audio_in: AudioIn, model: _ModelThread) -> None:
        self.pipeline = pipeline
        self.audio_in = audio_in
        self.model = model
        self.stop = threading.Event()
        self.ended = threading.Event()
        self.abandoned = False
        self.consumed = False  # respond() has taken this recording
        self.error: BaseException | None = None
        self.started_at = time.perf_counter()
        self.release_at: float | None = None
        self.speech_end_at: float | None = None
        self._heard_s = 0.0  # audio time, for auto-stop (a fast file or device is not paced by the clock)
        self._speech_end_s: float | None = None
        rate = audio_in.sample_rate
        self.resampler = Resampler(rate, WHISPER_RATE) if rate != WHISPER_RATE else None
        self.meter = LevelMeter()
        cfg = pipeline.config
        self.stt = IncrementalTranscriber(
            pipeline.transcriber,
            interval_s=cfg.partial_interval_s if cfg.partial_interval_s > 0 else 1e9,
            pause_s=cfg.pause_s,
            partials=cfg.partial_interval_s > 0,
            on_text=pipeline._partial_text,
            on_commit=pipeline._committed_text,
        )
        self.thread = threading.Thread(target=self._run, name="voice-record", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def release(self) -> None:
        if self.release_at is None:
            self.release_at = time.perf_counter()
        self.stop.set()

    def _run(self) -> None:
        try:
            self.audio_in.record(self._on_chunk, self.stop)
        except BaseException as e:  # noqa: BLE001 - handed to respond(), which raises it in the caller
            self.error = e
        finally:
            if self.release_at is None:
                self.release_at = time.perf_counter()
            self.ended.set()

    def _on_chunk(self, chunk: np.ndarray) -> None:
        now = time.perf_counter()
        rate = self.audio_in.sample_rate
        level = self.meter.update(chunk, rate)
        if self.pipeline.on_level is not None:
            self.pipeline.on_level(level)
        x = self.resampler.process(chunk) if self.resampler is not None else chunk
        self._heard_s += len(chunk) / rate
        if self.stt.feed(x):
            self.speech_end_at = now
            self._speech_end_s = self._heard_s
        cfg = self.pipeline.config
        if self._heard_s >= cfg.max_record_s:
            self.release()
        elif cfg.end_silence_s is not None and self._speech_end_s is not None:
            if self._heard_s - self._speech_end_s >= cfg.end_silence_s:
                self.release()


# -- the pipeline ----------------------------------------------------------------------------------

FIRST_CHUNK_WAIT_S = 10.0
"""Longest the model pauses for the first sentence's synthesis (see `_generate`)."""

_LLM_END = object()
_PLAY_END = object()


@dataclass
class _Failure:
    error: BaseException


@dataclass
class _Marks:
    """Absolute perf_counter times in one reply."""

    heard: float = 0.0
    first_token: float | None = None
    first_sentence: float | None = None
    first_audio: float | None = None
    synth_s: float = 0.0
    first_synth_s: float | None = None
    audio_s: float = 0.0
    first_chunk: threading.Event = field(default_factory=threading.Event)  # the first audio is synthesized


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
        self._recording: _Recording | None = None
        self._cancel = threading.Event()  # the current reply's generation
        self._stop_play = threading.Event()  # the current reply's playback
        self._replying = False
        self._model: _ModelThread | None = None  # the thread that runs the model for the current turn

    @property
    def speaks(self) -> bool:
        """Whether replies are spoken (a synthesizer, an output and `config.speak`)."""
        return self.config.speak and self.synthesizer is not None and self.audio_out is not None

    @property
    def state(self) -> Literal["idle", "recording", "replying"]:
        """What the pipeline is doing now."""
        rec = self._recording
        if rec is not None and not rec.ended.is_set():
            return "recording"
        return "replying" if self._replying else "idle"

    def warm_up(self) -> None:
        """Load whisper, piper and the model now, so that the first turn is as quick as the others."""
        load = getattr(self.transcriber, "load", None)
        if callable(load):
            load()
        if self.synthesizer is not None:
            chunks = list(self.synthesizer.synthesize("Hello there."))  # the first run of onnxruntime is slow
            audio = np.concatenate([c.samples for c in chunks]) if chunks else np.zeros(0, dtype=np.float32)
            if len(audio):
                self.transcriber.transcribe(Resampler(chunks[0].sample_rate, WHISPER_RATE).process(audio, final=True))
        with self._lock:
            model = self._model = _ModelThread(self.conversation, self.options, self._model)
        if self.config.prefill:
            model.prefill("")
            model.wait_idle(timeout=120)
        model.finish()
        model.join(timeout=120)

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
                rec.stt.cancel()
                rec.model.finish()
            model = self._model = _ModelThread(self.conversation, self.options, self._model)
            self._recording = _Recording(self, source, model)
            self._recording.start()
        if self.config.prefill:
            model.prefill("")

    def stop_recording(self) -> None:
        """End the recording (key up); `respond()` then finishes the transcript and replies."""
        rec = self._recording
        if rec is not None:
            rec.release()

    def interrupt(self) -> None:
        """Stop everything now: playback, generation, and a recording in progress (it is discarded)."""
        with self._lock:
            self._cancel.set()
            self._stop_play.set()
            rec = self._recording
            if rec is not None and not rec.ended.is_set():
                rec.abandoned = True
                rec.release()

    def close(self) -> None:
        """Stop everything and release the devices."""
        self.interrupt()
        rec = self._recording
        if rec is not None:
            rec.stt.cancel()
            rec.ended.wait(timeout=5)
        model = self._model
        if model is not None:
            model.finish()
            model.join(timeout=60)  # the engine may be freed next
        if self.audio_out is not None:
            self.audio_out.close()

    # -- callbacks from the recording ---------------------------------------------------------

    def _partial_text(self, text: str, final: bool) -> None:
        if self.on_transcript is not None:
            self.on_transcript(text, final)

    def _committed_text(self, text: str) -> None:
        rec = self._recording
        if self.config.prefill and text and rec is not None and not rec.ended.is_set():
            rec.model.prefill(text)

    # -- the turn ------------------------------------------------------------------------------

    def respond(self) -> Iterator[VoiceEvent]:
        """Wait for the recording to end, then yield the turn's events; `TurnDone` is always last.

        Blocking: run it in a worker thread. Closing the generator early stops the reply.
        """
        with self._lock:
            rec = self._recording
            if rec is None or rec.consumed:
                raise UsageError("nothing new was recorded: call start_recording() first")
            rec.consumed = True
        rec.ended.wait()
        timings = VoiceTurnTimings()
        if rec.error is not None:
            rec.stt.cancel()
            rec.model.finish()
            raise rec.error
        release = rec.release_at or time.perf_counter()
        timings.record_s = rec.stt.duration_s
        if rec.speech_end_at is not None:
            timings.release_lag_s = max(0.0, release - rec.speech_end_at)
        if rec.abandoned:
            rec.stt.cancel()
            rec.model.finish()
            yield TurnDone("", "", "cancelled", timings)
            return
        try:
            transcript = rec.stt.finish()
        except BaseException:
            rec.model.finish()
            raise
        heard = time.perf_counter()
        rec.model.discard()  # no use evaluating part of the message now: the reply evaluates all of it
        self._fill_stt(timings, rec, transcript, release, heard)
        if self.on_transcript is not None:
            self.on_transcript(transcript.text, True)
        yield Heard(transcript.text, True)
        if not transcript.text:
            rec.model.finish()
            yield Notice("nothing was heard: hold the key while you speak, a little closer to the microphone")
            timings.total_s = time.perf_counter() - release
            yield TurnDone("", "", "empty", timings)
            return
        with self._lock:
            if self._recording is not rec:  # barged in while the last words were decoded
                rec.model.finish()
                yield TurnDone(transcript.text, "", "cancelled", timings)
                return
            cancel, stop_play = threading.Event(), threading.Event()
            self._cancel, self._stop_play = cancel, stop_play
            self._replying = True
        try:
            yield from self._reply(transcript.text, rec, release, heard, timings, cancel, stop_play)
        finally:
            self._replying = False

    def _fill_stt(self, t: VoiceTurnTimings, rec: _Recording, tr: Transcript, release: float, heard: float) -> None:
        s = rec.stt.stats
        t.stt_passes = s.passes
        t.stt_busy_s = s.busy_s
        t.stt_rtf = s.busy_s / t.record_s if t.record_s > 0 else None
        t.stt_tail_audio_s = s.tail_s
        t.stt_final_s = heard - release
        t.stt_window_s = tr.window_s

    def _reply(
        self,
        text: str,
        rec: _Recording,
        release: float,
        heard: float,
        timings: VoiceTurnTimings,
        cancel: threading.Event,
        stop_play: threading.Event,
    ) -> Iterator[VoiceEvent]:
        events: queue.Queue[Any] = queue.Queue()
        sentences: queue.Queue[str | None] = queue.Queue()
        audio: queue.Queue[tuple[str, SpeechChunk] | None] = queue.Queue()
        marks = _Marks(heard=heard)
        speaks = self.speaks
        answer: list[str] = []
        spoken: list[str] = []
        threads: list[threading.Thread] = []
        if speaks:
            threads.append(
                threading.Thread(
                    target=self._synthesize,
                    args=(sentences, audio, stop_play, events, marks),
                    name="voice-tts",
                    daemon=True,
                )
            )
            threads.append(
                threading.Thread(
                    target=self._play, args=(audio, events, stop_play, marks), name="voice-play", daemon=True
                )
            )
        for th in threads:
            th.start()
        rec.model.run(lambda: self._generate(text, cancel, events, sentences if speaks else None, marks))
        pending = {_LLM_END, _PLAY_END} if speaks else {_LLM_END}
        error: BaseException | None = None
        finished = False
        stats: Stats | None = None
        try:
            while pending:
                item = events.get()
                if item is _LLM_END or item is _PLAY_END:
                    pending.discard(item)
                    continue
                if isinstance(item, _Failure):
                    error = error or item.error
                    cancel.set()
                    stop_play.set()
                    continue
                if isinstance(item, Text):
                    answer.append(item.text)
                elif isinstance(item, Speaking):
                    spoken.append(item.text)
                elif isinstance(item, Done):
                    stats = item.stats
                yield item
            finished = True
        finally:
            if not finished:  # the consumer went away, or an error: stop the threads
                cancel.set()
                stop_play.set()
            for th in threads:
                th.join(timeout=10)
            rec.model.join(timeout=10)
        if error is not None:
            raise error
        cancelled = cancel.is_set() or stop_play.is_set() or (stats is not None and stats.finish_reason == "cancelled")
        end = time.perf_counter()
        self._fill_reply(timings, marks, stats, rec, release, end)
        yield TurnDone(text, "".join(answer).strip(), "cancelled" if cancelled else "complete", timings)

    def _fill_reply(
        self, t: VoiceTurnTimings, m: _Marks, stats: Stats | None, rec: _Recording, release: float, end: float
    ) -> None:
        t.stats = stats
        t.prefill_tokens = rec.model.tokens
        if stats is not None:
            t.prompt_tokens = stats.prompt_tokens
            t.evaluated_tokens = stats.evaluated_tokens
        if m.first_token is not None:
            t.llm_first_token_s = m.first_token - m.heard
        if m.first_sentence is not None:
            t.llm_first_sentence_s = m.first_sentence - m.heard
        t.tts_first_s = m.first_synth_s
        t.tts_rtf = m.synth_s / m.audio_s if m.audio_s > 0 else None
        t.reply_audio_s = m.audio_s
        if m.first_audio is not None:
            t.first_audio_s = m.first_audio - release
            if rec.speech_end_at is not None:
                t.speech_end_to_first_audio_s = m.first_audio - rec.speech_end_at
        t.total_s = end - release

    def _generate(
        self,
        text: str,
        cancel: threading.Event,
        events: queue.Queue[Any],
        sentences: queue.Queue[str | None] | None,
        marks: _Marks,
    ) -> None:
        """The model's thread: stream the reply, cut the answer (never the thinking) into sentences."""
        splitter = SentenceSplitter(eager_first=self.config.eager_first_clause)

        def dispatch(parts: list[str]) -> None:
            if sentences is None:
                return
            for s in parts:
                first = marks.first_sentence is None
                if first:
                    marks.first_sentence = time.perf_counter()
                sentences.put(s)
                if first:
                    # On a small board the model and the voice compete for the same cores: the first
                    # audio gets them to itself. The model catches up while that sentence plays.
                    deadline = time.perf_counter() + FIRST_CHUNK_WAIT_S
                    with MODEL_THREAD.held():
                        while not marks.first_chunk.wait(0.02) and not cancel.is_set():
                            if time.perf_counter() > deadline:
                                break

        cut_at = self.config.first_chunk_tokens
        tokens = 0
        try:
            for event in self.conversation.send(text, cancel, self.options):
                if isinstance(event, Text):
                    if marks.first_token is None:
                        marks.first_token = time.perf_counter()
                    events.put(event)
                    tokens += event.tokens
                    if not cancel.is_set():
                        dispatch(splitter.feed(event.text))
                        if cut_at is not None and tokens >= cut_at and marks.first_sentence is None:
                            dispatch(splitter.cut())
                    continue
                if isinstance(event, Done) and not cancel.is_set():
                    dispatch(splitter.flush())
                events.put(event)
        except BaseException as e:  # noqa: BLE001 - re-raised by respond() in the caller's thread
            events.put(_Failure(e))
        finally:
            if sentences is not None:
                sentences.put(None)
            events.put(_LLM_END)

    def _synthesize(
        self,
        sentences: queue.Queue[str | None],
        audio: queue.Queue[tuple[str, SpeechChunk] | None],
        stop_play: threading.Event,
        events: queue.Queue[Any],
        marks: _Marks,
    ) -> None:
        """Piper's thread: each sentence to audio, as soon as it is complete."""
        assert self.synthesizer is not None
        try:
            while True:
                sentence = sentences.get()
                if sentence is None:
                    break
                if stop_play.is_set():
                    continue  # drain until the model's thread says it is done
                for chunk in self.synthesizer.synthesize(sentence):
                    marks.synth_s += chunk.elapsed_s
                    if marks.first_synth_s is None:
                        marks.first_synth_s = chunk.elapsed_s
                    if stop_play.is_set():
                        break
                    audio.put((sentence, chunk))
                    marks.first_chunk.set()
                marks.first_chunk.set()
        except BaseException as e:  # noqa: BLE001 - re-raised by respond()
            events.put(_Failure(e))
            stop_play.set()
            marks.first_chunk.set()
            while sentences.get() is not None:  # let the model's thread finish
                pass
        finally:
            marks.first_chunk.set()
            audio.put(None)

    def _play(
        self,
        audio: queue.Queue[tuple[str, SpeechChunk] | None],
        events: queue.Queue[Any],
        stop_play: threading.Event,
        marks: _Marks,
    ) -> None:
        """The speaker's thread: play each chunk as it arrives; stop at once on barge-in."""
        assert self.audio_out is not None
        index = 0
        last: str | None = None
        try:
            while True:
                item = audio.get()
                if item is None:
                    break
                if stop_play.is_set():
                    continue
                sentence, chunk = item
                if sentence is not last:
                    events.put(Speaking(sentence, index))
                    index += 1
                    last = sentence
                if marks.first_audio is None:
                    marks.first_audio = time.perf_counter()
                marks.audio_s += chunk.duration_s
                self.audio_out.play(chunk.samples, chunk.sample_rate, stop_play)
            if not stop_play.is_set():
                self.audio_out.drain(stop_play)
        except BaseException as e:  # noqa: BLE001 - re-raised by respond()
            events.put(_Failure(e))
            stop_play.set()
            while audio.get() is not None:
                pass
        finally:
            events.put(_PLAY_END)

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


def speech_models(
    settings: Settings, *, speak: bool = True, window_s: float | None = None
) -> tuple[Transcriber, Synthesizer | None, list[str]]:
    """Whisper and (when `speak`) piper as the `[speech]` settings describe them, and one-line notes
    about offline fallbacks in use. Nothing is loaded yet; nothing touches the network."""
    from edgeassist.speech.stt import WhisperTranscriber
    from edgeassist.speech.tts import PiperSynthesizer

    s = settings.speech
    models_dir = settings.models_dir()
    transcriber = WhisperTranscriber(
        s.whisper_model,
        models_dir=models_dir,
        language=s.language,
        compute_type=s.compute_type,
        beam_size=s.beam_size,
        window_s=window_s or s.whisper_window_s,
    )
    notes = [n for n in (transcriber.resolved.note,) if n]
    synthesizer = None
    if speak:
        synthesizer = PiperSynthesizer(s.voice, models_dir=models_dir, length_scale=s.length_scale)
        if synthesizer.resolved.note:
            notes.append(synthesizer.resolved.note)
    return transcriber, synthesizer, notes


def simulation_pipeline(
    settings: Settings,
    conversation: Conversation,
    *,
    options: GenerationOptions | None = None,
    config: VoiceConfig | None = None,
    window_s: float | None = None,
) -> VoicePipeline:
    """The pipeline without sound devices, for the bench and `scripts/voice_latency.py`: whisper and
    piper from the settings, replies played to a paced null speaker; feed it turns with `simulate_turn`."""
    from edgeassist.speech import require_speech
    from edgeassist.speech.audio import NullOut

    require_speech("faster_whisper", "piper")
    transcriber, synthesizer, notes = speech_models(settings, window_s=window_s)
    return VoicePipeline(
        conversation, transcriber, synthesizer, None, NullOut(), options=options, config=config, notes=notes
    )


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
    from edgeassist.speech.audio import MicrophoneIn, SpeakerOut, WavIn, WavOut

    config = config or VoiceConfig.from_settings(settings, speak=speak)
    require_speech("faster_whisper", *(("piper",) if config.speak else ()))
    # The microphone first: without one there is no turn at all.
    audio_in: AudioIn = (
        WavIn(input_wav, realtime=realtime_input)
        if input_wav is not None
        else MicrophoneIn(settings.audio.input_device)
    )
    transcriber, synthesizer, notes = speech_models(settings, speak=config.speak)
    audio_out: AudioOut | None = None
    if config.speak:
        audio_out = WavOut(output_wav) if output_wav is not None else SpeakerOut(settings.audio.output_device)
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


# -- the bench's voice stages ----------------------------------------------------------------------

BENCH_QUESTIONS = (
    "How do I list all the files in a folder, including the hidden ones?",
    "What is the difference between a process and a thread?",
    "Can you suggest a quick dinner I could cook with rice and eggs?",
    "Why is the sky blue during the day and red at sunset?",
    "What should I pack for a weekend hiking trip in the mountains?",
)
"""Spoken questions of about three seconds each, read by the configured voice."""
BENCH_STAGES = (
    "stt_final_s",
    "stt_rtf",
    "llm_first_token_s",
    "llm_first_sentence_s",
    "tts_first_s",
    "tts_rtf",
    "first_audio_s",
    "speech_end_to_first_audio_s",
)
"""The `VoiceTurnTimings` fields `bench_stages` reports, in pipeline order."""
RANDOM_TEXT_FIRST_CHUNK_TOKENS = 10
"""With a random-weight model, the first spoken chunk is cut at this many tokens (a short first sentence)."""
STAND_IN_SENTENCE = "To list every file in a folder, use this command."
"""What is spoken for each chunk of a random-weight model's reply: an answer's first sentence of the usual length."""


class StandInSynthesizer:
    """Speaks `STAND_IN_SENTENCE` for every chunk it is given.

    A random-weight model's text is noise (long runs of rare tokens, other scripts), which piper
    would take far longer to speak than an answer's words; the bench times the model on that text
    and piper on an ordinary sentence in its place.
    """

    def __init__(self, inner: Synthesizer, sentence: str = STAND_IN_SENTENCE) -> None:
        """Wrap the real synthesizer."""
        self.inner = inner
        self.sentence = sentence

    @property
    def sample_rate(self) -> int:
        """The wrapped voice's rate."""
        return self.inner.sample_rate

    def synthesize(self, text: str) -> Iterator[SpeechChunk]:
        """The stand-in sentence, spoken by the wrapped voice."""
        return self.inner.synthesize(self.sentence)


def bench_stages(settings: Settings, target: Any) -> dict[str, list[float]]:
    """Time `settings.bench.repetitions` voice turns for `edgeassist bench --voice`.

    Each turn is a question spoken by the configured piper voice, fed to the pipeline at real-time
    pace like a microphone, with the key released as the speech ends; the reply plays to a paced
    null speaker. `target` (an `edgeassist.bench.voice.VoiceTarget`) names the model and threads.
    Whisper, piper and the model are warmed up, and one unmeasured turn runs first. With a
    random-weight model (`target.random_text`) the first chunk is cut at a fixed token count and
    piper speaks an ordinary sentence in place of each chunk (`StandInSynthesizer`).
    """
    from edgeassist.engine.factory import generation_options
    from edgeassist.engine.llama import LlamaEngine

    engine = LlamaEngine(target.path, name=target.name, n_ctx=settings.model.n_ctx, n_threads=target.threads)
    # Greedy, and short: the first audio does not depend on how long the reply goes on.
    options = generation_options(settings, temperature=0.0, max_tokens=48)
    first_chunk = RANDOM_TEXT_FIRST_CHUNK_TOKENS if target.random_text else None
    config = VoiceConfig.from_settings(settings, speak=True, first_chunk_tokens=first_chunk)
    convo = Conversation(engine, system_prompt=settings.generation.system_prompt, options=options)
    pipeline = simulation_pipeline(settings, convo, options=options, config=config)
    tts = pipeline.synthesizer
    assert tts is not None
    if target.random_text:
        pipeline.synthesizer = StandInSynthesizer(tts)
    try:
        pipeline.warm_up()
        spoken = []
        for question in BENCH_QUESTIONS:
            chunks = list(tts.synthesize(question))
            spoken.append((np.concatenate([c.samples for c in chunks]), chunks[0].sample_rate))
        simulate_turn(pipeline, *spoken[-1], realtime=False)  # unmeasured
        out: dict[str, list[float]] = {name: [] for name in BENCH_STAGES}
        for i in range(max(1, settings.bench.repetitions)):
            samples, rate = spoken[i % len(spoken)]
            timings = simulate_turn(pipeline, samples, rate).timings
            for name in BENCH_STAGES:
                value = getattr(timings, name)
                if value is not None:
                    out[name].append(float(value))
        return out
    finally:
        pipeline.close()
        engine.close()
