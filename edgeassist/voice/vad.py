"""Voice activity for hands-free turns: the Silero VAD that faster-whisper bundles, run frame by frame
on the microphone stream, and the endpointing rules that turn its verdicts into turns.

    SileroDetector  speech probability of each 32 ms frame (512 samples at 16 kHz), its LSTM state carried
    FrameCutter     16 kHz chunks of any size in, whole 512-sample frames out
    Endpointer      frames in, `Onset` (a turn begins) and `EndOfTurn` (it ended) out: pure logic
    EchoGate        hands-free barge-in: whether a frame heard while the assistant speaks is louder than its echo

faster-whisper runs Silero over a whole file (`faster_whisper.vad.get_speech_timestamps`); here the
same ONNX session (`get_vad_model()`, loaded once per process) is called on one frame at a time with
the 64 samples before it as context and the state the last call returned, which gives the same
probabilities as the batched call (checked in tests/test_handsfree.py).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from edgeassist.speech.samples import WHISPER_RATE, rms_dbfs

VAD_RATE = WHISPER_RATE
"""Silero's rate here (16 kHz, whisper's)."""
FRAME = 512
"""Samples in one VAD frame (Silero's window at 16 kHz)."""
FRAME_S = FRAME / VAD_RATE
"""Seconds in one VAD frame (32 ms)."""
CONTEXT = 64
"""Samples of the previous frame Silero sees before each frame."""


@runtime_checkable
class SpeechDetector(Protocol):
    """Speech probability of consecutive 512-sample frames of 16 kHz audio (stateful: frames in order)."""

    def load(self) -> None:
        """Get ready now (once), so that a missing part shows before listening starts."""
        ...

    def probability(self, frame: np.ndarray) -> float:
        """How likely the frame is speech, 0..1."""
        ...

    def reset(self) -> None:
        """Forget the frames seen so far (a new stream)."""
        ...


_load_lock = threading.Lock()


def _silero_session() -> Any:
    """faster-whisper's bundled Silero VAD (ONNX, one thread), loaded once per process."""
    from edgeassist.speech import require_speech

    require_speech("faster_whisper", purpose="hands-free listening")
    with _load_lock:
        from faster_whisper.vad import get_vad_model  # functools.lru_cache: one session per process

        return get_vad_model().session


class SileroDetector:
    """Silero VAD (v6, as bundled by faster-whisper) on one frame at a time, state carried between calls."""

    def __init__(self) -> None:
        """Nothing loads until the first frame (or `load()`)."""
        self._session: Any = None
        self.reset()

    def load(self) -> None:
        """Load the ONNX session now."""
        if self._session is None:
            self._session = _silero_session()

    def reset(self) -> None:
        """A new stream: zero state and context."""
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros((1, CONTEXT), dtype=np.float32)

    def probability(self, frame: np.ndarray) -> float:
        """Speech probability of the next 512 samples."""
        self.load()
        x = np.asarray(frame, dtype=np.float32).reshape(1, FRAME)
        out, self._h, self._c = self._session.run(
            None, {"input": np.concatenate([self._context, x], axis=1), "h": self._h, "c": self._c}
        )
        self._context = x[:, -CONTEXT:]
        return float(np.asarray(out).reshape(-1)[0])


class FrameCutter:
    """Cuts a stream of 16 kHz chunks into whole `FRAME`-sample frames, keeping the remainder."""

    def __init__(self, frame: int = FRAME) -> None:
        """Empty."""
        self.frame = frame
        self._rest = np.zeros(0, dtype=np.float32)

    def feed(self, chunk: np.ndarray) -> Iterator[np.ndarray]:
        """The whole frames the stream now holds, in order."""
        x = np.concatenate([self._rest, np.asarray(chunk, dtype=np.float32)]) if len(self._rest) else chunk
        n = len(x) // self.frame
        for i in range(n):
            yield np.asarray(x[i * self.frame : (i + 1) * self.frame], dtype=np.float32)
        self._rest = np.asarray(x[n * self.frame :], dtype=np.float32).copy()

    @property
    def pending(self) -> int:
        """Samples waiting for the rest of their frame."""
        return len(self._rest)


# -- endpointing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EndpointConfig:
    """When speech starts a turn and when silence ends it (see `scripts/vad_tuning.py` for the numbers)."""

    threshold: float = 0.5
    """A frame whose Silero probability reaches this is speech."""
    neg_threshold: float = 0.35
    """Once speech has started, frames stay speech down to this probability (hysteresis, as faster-whisper)."""
    floor_db: float = -60.0
    """Frames quieter than this (dBFS) are never speech, whatever Silero says."""
    min_speech_s: float = 0.2
    """A turn begins only after this much speech (frames, gaps excluded): a cough or a click does not reach it."""
    onset_gap_s: float = 0.25
    """Before a turn has begun, a silence this long forgets the speech heard so far."""
    end_of_turn_s: float = 0.7
    """A silence this long after speech ends the turn."""
    max_turn_s: float = 120.0
    """A turn ends by itself after this long."""


@dataclass(frozen=True)
class Onset:
    """A turn begins: its speech started `start` frames into the stream."""

    start: int
    """Frame index of the first speech frame."""


@dataclass(frozen=True)
class EndOfTurn:
    """The turn is over: its speech ended after frame `last` (the frame after it is the first silent one)."""

    last: int
    """Frame index of the last speech frame."""
    frames: int
    """Frames into the stream when the end was decided (`last` + the end-of-turn silence)."""


Boundary = Onset | EndOfTurn


class Endpointer:
    """Frame-by-frame turn detection: per frame a probability and a level in, `Onset`/`EndOfTurn` out.

    Idle until a speech frame; then a candidate, which becomes a turn (`Onset`) once it holds
    `min_speech_s` of speech frames, or is forgotten after `onset_gap_s` of silence (a cough, a door,
    a click). In a turn, `end_of_turn_s` of silence (or `max_turn_s`) ends it (`EndOfTurn`). A frame is
    speech when it is louder than `floor_db` and Silero's probability reaches `threshold` (or
    `neg_threshold` inside speech). Pure: no audio, no clock, no threads.
    """

    def __init__(self, config: EndpointConfig | None = None) -> None:
        """Idle, at frame 0."""
        self.config = config or EndpointConfig()
        c = self.config
        self._min_speech = max(1, round(c.min_speech_s / FRAME_S))
        self._onset_gap = max(1, round(c.onset_gap_s / FRAME_S))
        self._end_gap = max(1, round(c.end_of_turn_s / FRAME_S))
        self._max_turn = max(1, round(c.max_turn_s / FRAME_S))
        self.frame = 0
        """Frames fed so far."""
        self.reset()

    def reset(self) -> None:
        """Back to idle (the frame count goes on)."""
        self.in_turn = False
        """Whether a turn has begun and not yet ended."""
        self._speaking = False  # inside a run of speech frames (for the hysteresis)
        self._start: int | None = None  # first speech frame of the candidate or turn
        self._speech_frames = 0
        self._last_speech = -1

    @property
    def candidate(self) -> bool:
        """Whether speech has been heard that may yet become a turn."""
        return self._start is not None and not self.in_turn

    def voiced(self, probability: float, level_db: float) -> bool:
        """Whether a frame is speech (updates the hysteresis)."""
        c = self.config
        limit = c.neg_threshold if self._speaking else c.threshold
        self._speaking = level_db >= c.floor_db and probability >= limit
        return self._speaking

    def feed(self, probability: float, level_db: float, *, allowed: bool = True) -> Boundary | None:
        """One frame; `allowed=False` counts it as silence whatever it holds (speech too quiet to barge in)."""
        i = self.frame
        self.frame += 1
        speech = self.voiced(probability, level_db) and allowed
        if speech:
            if self._start is None:
                self._start = i
            self._speech_frames += 1
            self._last_speech = i
        if not self.in_turn:
            if self._start is None:
                return None
            if self._speech_frames >= self._min_speech:
                self.in_turn = True
                return Onset(self._start)
            if i - self._last_speech >= self._onset_gap:
                self.reset()
            return None
        assert self._start is not None
        if i - self._last_speech >= self._end_gap or i - self._start + 1 >= self._max_turn:
            last = self._last_speech
            self.reset()
            return EndOfTurn(last, i + 1)
        return None

    def finish(self) -> EndOfTurn | None:
        """The stream ended: the turn in progress (if any) ends at its last speech frame."""
        if not self.in_turn:
            self.reset()
            return None
        last = self._last_speech
        self.reset()
        return EndOfTurn(last, self.frame)


# -- barge-in over the assistant's own voice -------------------------------------------------------


DEFAULT_COUPLING_DB = 0.0
"""Echo assumed before any has been measured: as loud as what is played (only louder speech interrupts)."""
COUPLING_FRAMES = 30
"""Echo frames heard during playback before the measured coupling replaces `DEFAULT_COUPLING_DB` (about a second)."""
COUPLING_PERCENTILE = 95.0
"""The echo's loudness is the 95th percentile of (mic level - playback level) over recent echo frames:
its peaks, not its average (syllables make the echo swing by 15 dB and more)."""
LATENCY_S = (0.5, 0.05)
"""A mic frame at time t is compared with the loudest playback between t - 0.5 s and t + 0.05 s: the
speaker's buffer and the microphone's differ by device, and Bluetooth adds a few tenths."""
SILENT_DB = -120.0


class EchoGate:
    """Whether speech heard while the assistant speaks is the user's, not the assistant's own echo.

    The rule: the echo a frame can hold is the loudest audio played around that time (`LATENCY_S`)
    plus the coupling from speaker to microphone, measured during playback as the 95th percentile of
    (mic level - playback level) over the frames taken for echo: with a headset about -25 dB or less,
    with open speakers -15 to 0 dB. A frame may count towards barge-in only when it is at least
    `margin_db` louder than that. Frames that pass are the user's, and are left out of the
    measurement, so the user's own words do not raise the bar; so are frames louder than the
    playback itself. Until a second of playback has been heard the coupling is taken as 0 dB (only
    speech louder than the reply interrupts); a user who talks quietly over that first second of the
    session's first reply raises it for a while (up to `history` frames).
    Thread-safe: the speaker's thread records what it plays, the capture thread asks.
    """

    def __init__(self, margin_db: float = 10.0, history: int = 400) -> None:
        """`history`: playback frames the coupling is measured over (about 13 s)."""
        self.margin_db = margin_db
        self._lock = threading.Lock()
        self._played: collections.deque[tuple[float, float]] = collections.deque(maxlen=4096)  # (time, dB)
        self._coupling: collections.deque[float] = collections.deque(maxlen=history)

    def played(self, samples: np.ndarray, sample_rate: int, start: float) -> None:
        """Record audio handed to the speaker at `start` (perf_counter), in 20 ms blocks."""
        block = max(1, sample_rate // 50)
        x = np.asarray(samples, dtype=np.float32)
        with self._lock:
            for i in range(0, len(x), block):
                self._played.append((start + i / sample_rate, rms_dbfs(x[i : i + block])))

    def playback_db(self, at: float) -> float:
        """The loudest audio played within the latency window around `at` (`SILENT_DB` when none)."""
        lo, hi = at - LATENCY_S[0], at + LATENCY_S[1]
        with self._lock:
            levels = [db for t, db in self._played if lo <= t <= hi]
        return max(levels) if levels else SILENT_DB

    @property
    def coupling_db(self) -> float:
        """Speaker-to-microphone coupling measured so far (mic dB minus playback dB)."""
        with self._lock:
            if len(self._coupling) < COUPLING_FRAMES:
                return DEFAULT_COUPLING_DB
            return float(np.percentile(np.asarray(self._coupling), COUPLING_PERCENTILE))

    def expected_echo_db(self, at: float) -> float:
        """The loudest echo a mic frame captured at `at` may hold."""
        played = self.playback_db(at)
        return SILENT_DB if played <= SILENT_DB else played + self.coupling_db

    def allows(self, level_db: float, at: float) -> bool:
        """Whether a frame at `level_db`, captured at `at`, is loud enough over the echo to be the user;
        a frame that is not, heard while something plays, refines the measured coupling."""
        played = self.playback_db(at)
        expected = SILENT_DB if played <= SILENT_DB else played + self.coupling_db
        user = level_db >= expected + self.margin_db
        if not user and played > -60.0 and level_db - played <= DEFAULT_COUPLING_DB:
            with self._lock:
                self._coupling.append(level_db - played)
        return user
