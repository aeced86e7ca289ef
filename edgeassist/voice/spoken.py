"""One spoken reply: the model's answer cut into sentences, each synthesized while the next is
generated and played while the one after is synthesized.

Three threads: the turn's scheduler streams the reply (`TurnScheduler.run`), piper synthesizes in
another, the speaker plays in a third; all post to one queue, which `SpokenReply.events()` (in the
caller's thread) turns into events in the order they happened.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from edgeassist.chat import Conversation
from edgeassist.engine.base import Done, GenerationOptions, Notice, Stats, Text
from edgeassist.speech.audio import AudioOut
from edgeassist.speech.text import SentenceSplitter
from edgeassist.speech.tts import SpeechChunk, Synthesizer
from edgeassist.tools import ConsentRequest
from edgeassist.voice.config import VoiceConfig
from edgeassist.voice.events import Speaking, VoiceEvent, VoiceTurnTimings
from edgeassist.voice.prefill import TurnScheduler

VOICE_CONSENT = "allow it with `--allow-tool NAME` or `[tools.policy]` in the config, or ask in the chat app"
"""What a refused call's notice tells a voice user to do."""
FIRST_CHUNK_WAIT_S = 10.0
"""Longest the model pauses for the first sentence's synthesis (see `SpokenReply._generate`)."""

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


def first_chunk_splitter(config: VoiceConfig) -> SentenceSplitter:
    """The splitter a spoken reply is cut with: a short first chunk as `config` says, then sentences."""
    return SentenceSplitter(eager_first=config.eager_first_clause, first_max_words=config.first_chunk_max_words)


class SpokenReply:
    """The reply to one transcript: streamed, and (with a synthesizer and a speaker) spoken as it comes.

    `cancel` stops generation, `stop_play` playback (barge-in and Esc set both). After `events()`
    has ended, `answer`, `stats` and `cancelled` say how it went and `fill_timings` records where
    the time went.
    """

    def __init__(
        self,
        conversation: Conversation,
        options: GenerationOptions,
        config: VoiceConfig,
        speech: tuple[Synthesizer, AudioOut] | None,
        cancel: threading.Event,
        stop_play: threading.Event,
        heard: float,
    ) -> None:
        """Prepare a reply; `speech` is None for a text-only one, `heard` when the final transcript was ready."""
        self.conversation = conversation
        self.options = options
        self.config = config
        self.speech = speech
        self.cancel = cancel
        self.stop_play = stop_play
        self.marks = _Marks(heard=heard)
        self.answer = ""
        """The answer's text (without thinking), once `events()` has ended."""
        self.stats: Stats | None = None
        """The engine's figures, once `events()` has ended."""
        self._events: queue.Queue[Any] = queue.Queue()
        self._sentences: queue.Queue[str | None] = queue.Queue()
        self._audio: queue.Queue[tuple[str, SpeechChunk] | None] = queue.Queue()

    @property
    def cancelled(self) -> bool:
        """Whether the reply was stopped before its end (barge-in, Esc, an error)."""
        stats = self.stats
        return (
            self.cancel.is_set()
            or self.stop_play.is_set()
            or (stats is not None and stats.finish_reason == "cancelled")
        )

    def events(self, text: str, scheduler: TurnScheduler) -> Iterator[VoiceEvent]:
        """Send `text` and yield the reply's events (Thinking, Text, Notice, Speaking, Done) as they happen.

        The reply runs on `scheduler`'s thread. Closing the generator early stops everything; an
        error in any of the threads is raised here once they have all stopped.
        """
        cancel, stop_play, events = self.cancel, self.stop_play, self._events
        threads: list[threading.Thread] = []
        if self.speech is not None:
            synthesizer, audio_out = self.speech
            threads.append(
                threading.Thread(target=self._synthesize, args=(synthesizer,), name="voice-tts", daemon=True)
            )
            threads.append(threading.Thread(target=self._play, args=(audio_out,), name="voice-play", daemon=True))
        for th in threads:
            th.start()
        scheduler.run(lambda: self._generate(text))
        pending = {_LLM_END, _PLAY_END} if self.speech is not None else {_LLM_END}
        answer: list[str] = []
        error: BaseException | None = None
        finished = False
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
                elif isinstance(item, Done):
                    self.stats = item.stats
                yield item
            finished = True
        finally:
            if not finished:  # the consumer went away, or an error: stop the threads
                cancel.set()
                stop_play.set()
            for th in threads:
                th.join(timeout=10)
            scheduler.join(timeout=10)
        self.answer = "".join(answer).strip()
        if error is not None:
            raise error

    def fill_timings(self, t: VoiceTurnTimings, release: float, speech_end_at: float | None, end: float) -> None:
        """Record the reply's stages in `t`: `release` of the key, the end of speech and of the turn (perf_counter)."""
        m, stats = self.marks, self.stats
        t.stats = stats
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
            if speech_end_at is not None:
                t.speech_end_to_first_audio_s = m.first_audio - speech_end_at
        t.total_s = end - release

    def _generate(self, text: str) -> None:
        """The scheduler's thread: stream the reply, cut the answer (never the thinking) into sentences."""
        cancel, events, marks = self.cancel, self._events, self.marks
        sentences = self._sentences if self.speech is not None else None
        splitter = first_chunk_splitter(self.config)

        # Until the first chunk is complete the model computes a token only when this thread asks for
        # it: the token that completes the chunk is not followed by one in flight, which the hold
        # below would have to wait out before piper may start.
        stepwise = ExitStack()
        if sentences is not None:
            stepwise.enter_context(self.conversation.engine.stepwise())

        def dispatch(parts: list[str]) -> None:
            if sentences is None:
                return
            for s in parts:
                if marks.first_sentence is not None:
                    sentences.put(s)
                    continue
                marks.first_sentence = time.perf_counter()
                # On a small board the model and the voice compete for the same cores: the first
                # audio gets them to itself (piper starts once the token being computed is done:
                # the two side by side would slow each other down far more; read stepwise, none
                # is). The model catches up while that sentence plays.
                deadline = time.perf_counter() + FIRST_CHUNK_WAIT_S
                with self.conversation.engine.held():
                    stepwise.close()
                    sentences.put(s)
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
                if isinstance(event, ConsentRequest):
                    # Voice cannot show a dialog, and a spoken "yes" could come from anyone in the room
                    # (or from the speaker): a tool that asks is refused, and the model told so.
                    event.answer("deny")
                    events.put(Notice(f"`{event.tool}` asks before it runs, which voice cannot do: {VOICE_CONSENT}"))
                    continue
                if isinstance(event, Done) and not cancel.is_set():
                    dispatch(splitter.flush())
                events.put(event)
        except BaseException as e:  # noqa: BLE001 - re-raised by events() in the caller's thread
            events.put(_Failure(e))
        finally:
            stepwise.close()
            if sentences is not None:
                sentences.put(None)
            events.put(_LLM_END)

    def _synthesize(self, synthesizer: Synthesizer) -> None:
        """Piper's thread: each sentence to audio, as soon as it is complete."""
        sentences, audio, stop_play, marks = self._sentences, self._audio, self.stop_play, self.marks
        try:
            while True:
                sentence = sentences.get()
                if sentence is None:
                    break
                if stop_play.is_set():
                    continue  # drain until the scheduler's thread says it is done
                for chunk in synthesizer.synthesize(sentence):
                    marks.synth_s += chunk.elapsed_s
                    if marks.first_synth_s is None:
                        marks.first_synth_s = chunk.elapsed_s
                    if stop_play.is_set():
                        break
                    audio.put((sentence, chunk))
                    marks.first_chunk.set()
                marks.first_chunk.set()
        except BaseException as e:  # noqa: BLE001 - re-raised by events()
            self._events.put(_Failure(e))
            stop_play.set()
            marks.first_chunk.set()
            while sentences.get() is not None:  # let the scheduler's thread finish
                pass
        finally:
            marks.first_chunk.set()
            audio.put(None)

    def _play(self, audio_out: AudioOut) -> None:
        """The speaker's thread: play each chunk as it arrives; stop at once on barge-in."""
        audio, events, stop_play, marks = self._audio, self._events, self.stop_play, self.marks
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
                audio_out.play(chunk.samples, chunk.sample_rate, stop_play)
            if not stop_play.is_set():
                audio_out.drain(stop_play)
        except BaseException as e:  # noqa: BLE001 - re-raised by events()
            events.put(_Failure(e))
            stop_play.set()
            while audio.get() is not None:
                pass
        finally:
            events.put(_PLAY_END)
