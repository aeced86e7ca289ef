"""One press of the push-to-talk key: capture, level meter, incremental transcription, auto-stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from edgeassist.speech.audio import AudioIn
from edgeassist.speech.samples import WHISPER_RATE, LevelMeter, Resampler
from edgeassist.speech.stt import IncrementalTranscriber, Transcriber
from edgeassist.voice.config import VoiceConfig
from edgeassist.voice.prefill import TurnScheduler


class Recording:
    """One press of the key: audio from `audio_in` to the transcriber on a thread of its own.

    While the key is still held, the turn's `scheduler` reads the reply's prompt ahead (when
    `config.prefill`): up to the words the transcriber commits at a pause, up to a partial
    transcript (without the stop whisper ends it with), and, for the text of a pass that no speech
    has followed (the speaker may have finished), the reply itself is begun (`TurnScheduler`): the
    reply to those very words takes it over. Once the reply has started, the scheduler takes no more.
    """

    def __init__(
        self,
        audio_in: AudioIn,
        transcriber: Transcriber,
        config: VoiceConfig,
        scheduler: TurnScheduler,
        *,
        on_level: Callable[[float], None],
        on_text: Callable[[str, bool], None],
    ) -> None:
        """Wire the parts; nothing records before `start()`. The callbacks are called from the recording thread."""
        self.audio_in = audio_in
        self.config = config
        self.scheduler = scheduler
        self.on_level = on_level
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
        self.stt = IncrementalTranscriber(
            transcriber,
            interval_s=config.partial_interval_s if config.partial_interval_s > 0 else 1e9,
            pause_s=config.pause_s,
            settle_s=config.settle_s,
            partials=config.partial_interval_s > 0,
            on_text=on_text,
            on_commit=self._committed,
            on_guess=self._guessed,
        )
        self.thread = threading.Thread(target=self._run, name="voice-record", daemon=True)

    def start(self) -> None:
        """Start capturing."""
        self.thread.start()

    def release(self) -> None:
        """The key is up (or the recording stops itself): stop capturing."""
        if self.release_at is None:
            self.release_at = time.perf_counter()
        self.stop.set()

    def drop(self, timeout: float = 5.0) -> None:
        """No reply will take it: stop capturing, its transcription and what its scheduler reads ahead;
        return once its thread has let go of the input (at most `timeout`), so a new one may start."""
        self.abandoned = True
        self.release()
        self.stt.cancel()
        self.scheduler.finish()
        self.ended.wait(timeout)

    def _committed(self, text: str) -> None:
        if self.config.prefill and text and not self.ended.is_set():
            self.scheduler.prefill(text)

    def _guessed(self, text: str, settled: bool) -> None:
        if not self.config.prefill or not text:
            return
        if settled:
            self.scheduler.prefill(text, complete=True)
        elif not self.ended.is_set():
            # A partial ends where the audio did, often mid-sentence: without the full stop or
            # question mark whisper puts there. A wrong last word costs only what was read after
            # the last anchor (`ContextState.anchors`).
            self.scheduler.prefill(text.rstrip(" .?!…,;:"))

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
        self.on_level(self.meter.update(chunk, rate))
        x = self.resampler.process(chunk) if self.resampler is not None else chunk
        self._heard_s += len(chunk) / rate
        if self.stt.feed(x):
            self.speech_end_at = now
            self._speech_end_s = self._heard_s
        cfg = self.config
        if self._heard_s >= cfg.max_record_s:
            self.release()
        elif cfg.end_silence_s is not None and self._speech_end_s is not None:
            if self._heard_s - self._speech_end_s >= cfg.end_silence_s:
                self.release()
