"""Speech to text: `Transcriber` over faster-whisper, and transcription while the key is still held.

Whisper's encoder always sees a 30-second window: a 3-second question is padded with 27 seconds
of silence, and on a small board that fixed cost (a third of a second with tiny.en on two cores)
dominates. CTranslate2 accepts a shorter window, as whisper.cpp's `audio_ctx` does, so a short
clip is encoded in a window fitted to it (`speech.whisper_window_s`, 10 s by default, and always
the clip plus a second). Whisper was trained on 30-second windows, and a short one sometimes makes
it repeat itself or lose confidence; such a result is decoded again in the full window. Below
10 s it loses words: over 240 clips of 0.5-5 s in four voices (`scripts/speech_wer.py`), tiny.en
missed 10.3 % of the words with a 10 s window, 11.2 % with 12 s, 11.6 % with 15 s, but 12.5 %
with 8 s and 15.0 % with 5 s. On the bench's 4-second questions a pass takes about 0.75 times as
long at 10 s as at 15 s (the encoder 0.63 times). 30 turns the shortcut off.

`IncrementalTranscriber` transcribes while audio is still arriving: each pause in the speech
commits the text before it, so when the key is released only the stretch after the last pause is
left to decode, and when the speaker paused before releasing, nothing is. A shorter silence
(`settle_s`, a tenth of a second) starts a pass over everything not yet committed: if no speech
follows, that pass is the final text, ready about when the key comes up, and the pipeline reads the
reply's prompt from it in the meantime (`on_guess`).
"""

from __future__ import annotations

import os
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from edgeassist.cores import claim
from edgeassist.errors import ModelLoadError
from edgeassist.speech import require_speech
from edgeassist.speech.models import SpeechModel, resolve_whisper
from edgeassist.speech.samples import WHISPER_RATE, to_float32

FRAME_S = 0.02
"""Voice-activity frame length."""
SPEECH_FLOOR_DB = -50.0
"""Frames quieter than this are never speech."""
SPEECH_RANGE_DB = 35.0
"""Frames more than this below the loudest frame so far are not speech."""
SPEECH_PAD_S = 0.2
"""Silence kept on each side of the speech in a clip whisper transcribes; after it, made up with zeros
where the audio stops sooner (a pass a tenth of a second into a silence otherwise often loses its last
word: 7 of 60 clips read differently, against 2 with the silence made up)."""


# -- voice activity --------------------------------------------------------------------------------


def frame_levels(audio: np.ndarray, sample_rate: int = WHISPER_RATE) -> np.ndarray:
    """dBFS of each complete `FRAME_S` frame."""
    n = int(sample_rate * FRAME_S)
    frames = len(audio) // n
    if frames == 0:
        return np.zeros(0, dtype=np.float32)
    x = np.asarray(audio[: frames * n], dtype=np.float64).reshape(frames, n)
    rms = np.sqrt(np.mean(x * x, axis=1))
    levels: np.ndarray = (20.0 * np.log10(rms + 1e-9)).astype(np.float32)
    return levels


def speech_threshold(levels: np.ndarray) -> float:
    """The level above which a frame counts as speech, given the frames heard so far."""
    peak = float(levels.max()) if len(levels) else -120.0
    return max(SPEECH_FLOOR_DB, peak - SPEECH_RANGE_DB)


def speech_bounds(audio: np.ndarray, sample_rate: int = WHISPER_RATE, pad_s: float = SPEECH_PAD_S) -> tuple[int, int]:
    """Sample range holding the speech, with `pad_s` of margin; (0, 0) when there is none."""
    levels = frame_levels(audio, sample_rate)
    voiced = np.flatnonzero(levels > speech_threshold(levels))
    if len(voiced) == 0:
        return 0, 0
    n = int(sample_rate * FRAME_S)
    pad = int(sample_rate * pad_s)
    return max(0, int(voiced[0]) * n - pad), min(len(audio), (int(voiced[-1]) + 1) * n + pad)


def compression_ratio(text: str) -> float:
    """How well the text compresses; whisper's own test for a decoder stuck in a loop (> 2.4)."""
    raw = text.encode("utf-8")
    return len(raw) / max(1, len(zlib.compress(raw)))


def repeats_itself(text: str, times: int = 3) -> bool:
    """Whether a run of one to four words occurs `times` times in a row ("Hello? Hello? Hello?")."""
    words = [w.strip(".,!?;:\"'").lower() for w in text.split()]
    for size in range(1, 5):
        for i in range(0, len(words) - size * times + 1):
            gram = words[i : i + size]
            if all(words[i + k * size : i + (k + 1) * size] == gram for k in range(1, times)):
                return True
    return False


def join_text(a: str, b: str) -> str:
    """Two stretches of transcript as one (`b` continues `a` exactly, after one space)."""
    a, b = a.strip(), b.strip()
    return f"{a} {b}" if a and b else a or b


# -- the protocol ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transcript:
    """What a transcriber heard in one stretch of audio."""

    text: str
    """The words, stripped; empty when there was no speech."""
    audio_s: float
    """Seconds of audio given (before silence was trimmed)."""
    elapsed_s: float
    """Seconds spent transcribing it."""
    speech_s: float = 0.0
    """Seconds of audio actually decoded, after trimming silence."""
    avg_logprob: float = 0.0
    """Mean token log-probability (below -1 is doubtful)."""
    window_s: float = 30.0
    """The encoder window used."""
    retried: bool = False
    """The fitted window gave a doubtful result and the full window was used."""


@runtime_checkable
class Transcriber(Protocol):
    """Speech to text for one stretch of 16 kHz mono audio."""

    sample_rate: int
    """Rate the audio must be at (16000 for whisper)."""
    supports_prompt: bool
    """Whether `prompt` (the text said just before) is used to continue a transcript."""

    def load(self) -> float:
        """Get the model ready now (once), so the first turn is as quick as the others; return seconds taken."""
        ...

    def transcribe(self, audio: np.ndarray, *, prompt: str | None = None) -> Transcript:
        """Transcribe `audio`; `prompt` is what was said just before, for context."""
        ...


# -- faster-whisper --------------------------------------------------------------------------------

CT2_DEFAULT_THREADS = 4
"""CTranslate2's CPU threads when faster-whisper is given `cpu_threads=0`."""
_model_lock = threading.Lock()
_models: dict[tuple[str, str, str, int], Any] = {}


def _load_whisper(path: Path, device: str, compute_type: str, cpu_threads: int) -> Any:
    """One WhisperModel per (path, device, compute type, threads) in the process, loaded once."""
    key = (str(path), device, compute_type, cpu_threads)
    with _model_lock:
        model = _models.get(key)
        if model is None:
            require_speech("faster_whisper", purpose="speech to text")
            from faster_whisper import WhisperModel

            try:
                model = WhisperModel(str(path), device=device, compute_type=compute_type, cpu_threads=cpu_threads)
            except (RuntimeError, ValueError, OSError) as e:
                raise ModelLoadError(f"cannot load the whisper model in {path}: {e}") from None
            _models[key] = model
        return model


class WhisperTranscriber:
    """faster-whisper (CTranslate2), int8 on CPU, greedy, with a window fitted to short clips."""

    sample_rate = WHISPER_RATE
    supports_prompt = True

    def __init__(
        self,
        model: str = "tiny.en",
        *,
        models_dir: Path | None = None,
        language: str | None = "en",
        compute_type: str = "int8",
        beam_size: int = 1,
        window_s: float = 10.0,
        device: str = "cpu",
        cpu_threads: int = 0,
        fallback: bool = True,
    ) -> None:
        """Remember the settings; the model is found now (no network) and loaded on first use."""
        self.model_name = model
        self.language = language or None
        self.compute_type = compute_type
        self.beam_size = beam_size
        self.window_s = min(30.0, max(1.0, window_s))
        self.device = device
        self.cpu_threads = cpu_threads
        self.threads = cpu_threads or min(CT2_DEFAULT_THREADS, os.cpu_count() or 1)
        """The threads a transcription runs on (CTranslate2's default when `cpu_threads` is 0)."""
        self.resolved: SpeechModel = resolve_whisper(model, models_dir or Path("models"), fallback=fallback)
        """The model folder in use, and a note when it is an offline fallback."""
        self._lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None
        self._suppress: list[int] = []
        self.load_s = 0.0
        """Seconds the last load took (0 when it was cached)."""

    def load(self) -> float:
        """Load the model (once; shared with other transcribers of the same model); return seconds taken."""
        with self._lock:
            if self._model is not None:
                return self.load_s
            t0 = time.perf_counter()
            model = _load_whisper(self.resolved.path, self.device, self.compute_type, self.cpu_threads)
            from faster_whisper.tokenizer import Tokenizer
            from faster_whisper.transcribe import get_suppressed_tokens

            multilingual = bool(model.model.is_multilingual)
            language = self.language or "en"
            if not multilingual and language != "en":
                raise ModelLoadError(
                    f"whisper {self.resolved.name} understands English only, but speech.language = {language!r}; "
                    "pull a multilingual model (`edgeassist pull whisper:base`)"
                )
            self._tokenizer = Tokenizer(model.hf_tokenizer, multilingual, task="transcribe", language=language)
            self._suppress = list(get_suppressed_tokens(self._tokenizer, [-1]))
            self._model = model
            self.load_s = time.perf_counter() - t0
            return self.load_s

    def transcribe(self, audio: np.ndarray, *, prompt: str | None = None) -> Transcript:
        """Transcribe 16 kHz mono audio, silence trimmed; `prompt` is the text said just before."""
        t0 = time.perf_counter()
        audio = to_float32(audio)
        audio_s = len(audio) / WHISPER_RATE
        # The margin trimming keeps after the speech, made up where the audio stops sooner (before it,
        # made-up silence cost piper's voice 3 points of word error rate: scripts/speech_wer.py).
        audio = np.concatenate([audio, np.zeros(int(SPEECH_PAD_S * WHISPER_RATE), dtype=np.float32)])
        start, end = speech_bounds(audio)
        if end <= start:
            return Transcript("", audio_s, time.perf_counter() - t0)
        clip = audio[start:end]
        self.load()
        # Declared while it runs, so that the model's thread count leaves these cores to it (edgeassist.cores).
        with claim(self.threads, "speech to text"):
            return self._transcribe(clip, audio_s, prompt, t0)

    def _transcribe(self, clip: np.ndarray, audio_s: float, prompt: str | None, t0: float) -> Transcript:
        """The transcript of a trimmed clip (`transcribe` without the trimming); `t0` is when the call began."""
        speech_s = len(clip) / WHISPER_RATE
        if speech_s > 28.0 or (self.language is None and self._model.model.is_multilingual):
            # Long clips and language detection: faster-whisper's own windowed loop.
            segments, _ = self._model.transcribe(
                clip,
                language=self.language,
                beam_size=self.beam_size,
                vad_filter=False,
                condition_on_previous_text=False,
                initial_prompt=prompt or None,
                without_timestamps=True,
            )
            text = "".join(s.text for s in segments).strip()
            return Transcript(text, audio_s, time.perf_counter() - t0, speech_s)
        window = self.window_s
        text, logprob, doubtful = self._decode(clip, prompt, window)
        retried = False
        if doubtful and window < 30.0:
            window, retried = 30.0, True
            text, logprob, _ = self._decode(clip, prompt, window)
        return Transcript(text, audio_s, time.perf_counter() - t0, speech_s, logprob, window, retried)

    def _decode(self, clip: np.ndarray, prompt: str | None, window_s: float) -> tuple[str, float, bool]:
        """One greedy decode in an encoder window of `window_s` (at least the clip plus one second)."""
        from faster_whisper.transcribe import get_ctranslate2_storage

        model, tok = self._model, self._tokenizer
        features = model.feature_extractor(clip)[:, :-1]  # the last frame comes from the STFT's padding
        frames = features.shape[1]
        width = int(min(3000, max(window_s * 100, frames + 100)))
        x = np.zeros((1, features.shape[0], width), dtype=np.float32)
        x[0, :, : min(frames, width)] = features[:, :width]
        encoded = model.model.encode(get_ctranslate2_storage(x), to_cpu=False)
        tokens: list[int] = []
        if prompt and prompt.strip():
            tokens = [tok.sot_prev, *tok.encode(" " + prompt.strip())[-(model.max_length // 2 - 1) :]]
        tokens += [*tok.sot_sequence, tok.no_timestamps]
        cap = int(12 + 8 * len(clip) / WHISPER_RATE)  # fast speech is ~5 tokens a second
        result = model.model.generate(
            encoded,
            [tokens],
            beam_size=self.beam_size,
            max_length=min(model.max_length, len(tokens) + cap),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=self._suppress,
        )[0]
        ids = [t for t in result.sequences_ids[0] if t < tok.eot]
        text = tok.decode(ids).strip()
        n = len(result.sequences_ids[0])
        logprob = float(result.scores[0]) * n / (n + 1) if n else 0.0
        if result.no_speech_prob > 0.6 and logprob < -1.0:
            return "", logprob, False
        doubtful = len(ids) >= cap or compression_ratio(text) > 2.0 or repeats_itself(text) or logprob < -0.8
        return text, logprob, doubtful


# -- while the key is held -------------------------------------------------------------------------


@dataclass
class _Job:
    start: int
    end: int
    commit: bool


@dataclass(frozen=True)
class _Tail:
    """The latest pass over the uncommitted audio `start:end` (a partial or a settle pass) and its text."""

    start: int
    end: int
    text: str


@dataclass
class StreamStats:
    """What the incremental transcriber did for one recording."""

    passes: int = 0
    """Whisper passes run while recording (commits and partials)."""
    busy_s: float = 0.0
    """Seconds spent in whisper for this recording, the final pass included."""
    committed_s: float = 0.0
    """Seconds of audio committed before the key was released."""
    tail_s: float = 0.0
    """Seconds of audio left to decode at release (0 when the speaker paused before releasing, or
    a pass that no speech followed already covered it)."""
    reused: int = 0
    """Passes whose text became final without decoding its audio again (no speech followed them)."""
    final_s: float = 0.0
    """Seconds from `finish()` to the final transcript (waiting for a running pass, then the tail)."""
    passes_log: list[tuple[float, float, bool]] = field(default_factory=list)
    """(audio seconds, elapsed seconds, committed) for each pass."""


class IncrementalTranscriber:
    """Transcribes a recording while it grows: each pause commits the text before it.

    `feed` (from the capture thread) appends audio; a worker runs whisper on the uncommitted
    stretch when a pause of `pause_s` follows speech (a commit: that text is final), when a
    silence of `settle_s` follows speech no pass has covered yet (a settle pass) and, with
    `partials`, every `interval_s` of new speech (a partial, shown but not kept). A pass over all
    the uncommitted audio that no speech has followed since is as good as a commit's: it is taken
    as the commit, or as the final text, without running whisper again. `finish` waits for a
    running pass, decodes what is left after the last commit (nothing, when such a pass covers
    it), and returns the whole text.
    """

    def __init__(
        self,
        transcriber: Transcriber,
        *,
        interval_s: float = 1.0,
        pause_s: float = 0.3,
        settle_s: float = 0.1,
        partials: bool = True,
        on_text: Callable[[str, bool], None] | None = None,
        on_commit: Callable[[str], None] | None = None,
        on_guess: Callable[[str, bool], None] | None = None,
    ) -> None:
        """`on_text(text, final)` gets each new partial or committed transcript; `on_commit(text)` each
        commit; `on_guess(text, settled)` the whole text after each pass that is not a commit, with
        `settled` true when no speech has followed it (the speaker may have finished). `settle_s`
        0: no settle passes."""
        self.transcriber = transcriber
        self.rate = transcriber.sample_rate
        self.interval = int(interval_s * self.rate)
        self.pause_frames = max(1, int(round(pause_s / FRAME_S)))
        self.settle_frames = max(1, int(round(settle_s / FRAME_S))) if settle_s > 0 else None
        self.partials = partials
        self.on_text = on_text
        self.on_commit = on_commit
        self.on_guess = on_guess
        self._tail: _Tail | None = None  # the latest pass over uncommitted audio that was not a commit
        self.stats = StreamStats()
        """Passes and timings for this recording."""
        self._frame = int(self.rate * FRAME_S)
        self._audio = np.zeros(self.rate * 8, dtype=np.float32)
        self._n = 0
        self._levels: list[float] = []
        self._peak = -120.0
        self._commit = 0  # samples before this are transcribed for good
        self._committed = ""
        self._partial_end = 0  # end of the audio the last pass covered
        self._cond = threading.Condition()
        self._busy = False
        self._stopping = False
        self._thread: threading.Thread | None = None

    @property
    def duration_s(self) -> float:
        """Seconds of audio fed so far."""
        return self._n / self.rate

    def feed(self, chunk: np.ndarray) -> bool:
        """Append 16 kHz mono samples; return whether the chunk held speech."""
        chunk = to_float32(chunk)
        with self._cond:
            if self._n + len(chunk) > len(self._audio):
                grown = np.zeros(max(2 * len(self._audio), self._n + len(chunk)), dtype=np.float32)
                grown[: self._n] = self._audio[: self._n]
                self._audio = grown
            self._audio[self._n : self._n + len(chunk)] = chunk
            done = len(self._levels) * self._frame
            self._n += len(chunk)
            new = frame_levels(self._audio[done : self._n], self.rate)
            self._levels.extend(float(v) for v in new)
            if len(new):
                self._peak = max(self._peak, float(new.max()))
            voiced = bool(len(new)) and bool((new > self._threshold()).any())
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(target=self._work, name="stt-stream", daemon=True)
                self._thread.start()
            self._cond.notify_all()
        return voiced

    def _threshold(self) -> float:
        return max(SPEECH_FLOOR_DB, self._peak - SPEECH_RANGE_DB)

    def _voiced(self, first_frame: int) -> np.ndarray:
        """Indices (absolute) of speech frames from `first_frame` on."""
        levels = np.asarray(self._levels[first_frame:], dtype=np.float32)
        return np.flatnonzero(levels > self._threshold()) + first_frame

    def _next_job(self) -> _Job | None:
        first = -(-self._commit // self._frame)
        voiced = self._voiced(first)
        if len(voiced) == 0:
            return None
        frames = len(self._levels)
        trailing = frames - 1 - int(voiced[-1])
        if trailing >= self.pause_frames:
            # Up to the end: the clip is then trimmed exactly as a final pass would trim it.
            return _Job(self._commit, self._n, True)
        gaps = np.diff(voiced)
        inner = np.flatnonzero(gaps > self.pause_frames)
        if len(inner):
            i = int(inner[-1])
            cut = (int(voiced[i]) + 1 + int(gaps[i]) // 2) * self._frame
            return _Job(self._commit, cut, True)
        speech_end = (int(voiced[-1]) + 1) * self._frame
        tail = self._tail
        covered = tail is not None and tail.start == self._commit and tail.end >= speech_end
        if self.settle_frames is not None and trailing >= self.settle_frames and not covered:
            return _Job(self._commit, self._n, False)  # a settle pass: the speaker may have finished
        if self.partials and self._n - max(self._partial_end, self._commit) >= self.interval:
            return _Job(self._commit, self._n, False)
        return None

    def _settled_tail(self) -> _Tail | None:
        """The latest pass, when it covers all the uncommitted audio that holds speech (none has come since)."""
        tail = self._tail
        if tail is None or tail.start != self._commit:
            return None
        return tail if len(self._voiced(tail.end // self._frame)) == 0 else None

    def _work(self) -> None:
        while True:
            with self._cond:
                job = None
                while not self._stopping:
                    job = self._next_job()
                    if job is not None:
                        break
                    self._cond.wait()
                if job is None:
                    return
                settled = self._settled_tail() if job.commit and job.end == self._n else None
                if settled is not None:  # (no speech since the last pass: its text is the commit's)
                    self._take_commit(settled.text, job.end)
                    self.stats.reused += 1
                    text = self._committed
                    self._cond.notify_all()
                else:
                    self._busy = True
                    audio = self._audio[job.start : job.end].copy()
                    prompt = self._committed
            if settled is not None:
                self._announce(True, text)
                continue
            try:
                result = self.transcriber.transcribe(audio, prompt=prompt or None)
            except BaseException:
                with self._cond:
                    self._busy = False
                    self._stopping = True
                    self._cond.notify_all()
                raise
            with self._cond:
                self._busy = False
                self.stats.passes += 1
                self.stats.busy_s += result.elapsed_s
                self.stats.passes_log.append((len(audio) / self.rate, result.elapsed_s, job.commit))
                guess: bool | None = None
                if job.commit and job.start == self._commit:
                    self._take_commit(result.text, job.end)
                    text = self._committed
                else:
                    self._partial_end = job.end
                    text = join_text(self._committed, result.text)
                    if job.start == self._commit:
                        self._tail = _Tail(job.start, job.end, result.text)
                        guess = self._settled_tail() is not None
                self._cond.notify_all()
            self._announce(job.commit, text)
            if guess is not None and self.on_guess is not None and text:
                self.on_guess(text, guess)

    def _take_commit(self, text: str, end: int) -> None:
        """Commit `text` as the transcript of the audio up to `end` (under the lock)."""
        self._committed = join_text(self._committed, text)
        self._commit = end
        self._tail = None
        self.stats.committed_s = end / self.rate

    def _announce(self, commit: bool, text: str) -> None:
        """Tell the callbacks of a pass's text (outside the lock)."""
        if commit and self.on_commit is not None:
            self.on_commit(self._committed)
        if self.on_text is not None and text:
            self.on_text(text, False)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every pass the audio fed so far calls for is done; False on timeout.

        Fed a block at a time with this between, a recording is transcribed as if whisper took no
        time: each pass happens exactly where the audio calls for it (`scripts/speech_wer.py --streamed`).
        """
        with self._cond:
            return self._cond.wait_for(lambda: self._stopping or (not self._busy and self._next_job() is None), timeout)

    def finish(self) -> Transcript:
        """The recording has ended: decode what is left and return the whole transcript."""
        t0 = time.perf_counter()
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            while self._busy:
                self._cond.wait()
            tail = self._audio[self._commit : self._n].copy()
            first = -(-self._commit // self._frame)
            has_speech = len(self._voiced(first)) > 0
            committed = self._committed
            settled = self._settled_tail() if has_speech else None
        text = committed
        result: Transcript | None = None
        if settled is not None:  # a pass no speech followed already covers the rest
            text = join_text(committed, settled.text)
            self.stats.reused += 1
        elif has_speech:
            self.stats.tail_s = len(tail) / self.rate
            result = self.transcriber.transcribe(tail, prompt=committed or None)
            self.stats.busy_s += result.elapsed_s
            text = join_text(committed, result.text)
        self.stats.final_s = time.perf_counter() - t0
        if self._thread is not None:
            self._thread.join(timeout=5)
        return Transcript(
            text,
            self._n / self.rate,
            self.stats.final_s,
            speech_s=result.speech_s if result else 0.0,
            avg_logprob=result.avg_logprob if result else 0.0,
            window_s=result.window_s if result else 0.0,
            retried=bool(result and result.retried),
        )

    def cancel(self) -> None:
        """Stop the worker without a final pass (the recording was abandoned)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
