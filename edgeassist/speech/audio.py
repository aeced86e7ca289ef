"""Audio in and out: sounddevice (PortAudio) devices and wav files.

Two small protocols carry every sound: `AudioIn.record` delivers mono float32 chunks until told to
stop (or the input ends), `AudioOut.play` plays mono float32 samples and returns early, at once,
when told to stop. The device versions use PortAudio's blocking read/write calls in small blocks,
checking the stop event between blocks, so barge-in is immediate and nothing runs in a real-time
callback. The wav versions are for scripting (`--input-wav/--output-wav`) and tests. Resampling,
levels and sample conversion live in `speech.samples`, the wav reader and writer in `speech.wav`;
their names are re-exported here for the code that imports them from this module.
"""

from __future__ import annotations

import threading
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from edgeassist.errors import AudioUnavailableError
from edgeassist.speech import INSTALL_HINT, PORTAUDIO_HINT
from edgeassist.speech.samples import (
    WHISPER_RATE,
    Chunk,
    LevelMeter,
    Resampler,
    resample,
    rms_dbfs,
    to_float32,
    to_int16,
)
from edgeassist.speech.wav import read_wav, write_wav

__all__ = [
    "WHISPER_RATE",
    "ArrayIn",
    "AudioDevice",
    "AudioIn",
    "AudioOut",
    "Chunk",
    "LevelMeter",
    "MicrophoneIn",
    "NullOut",
    "Resampler",
    "SpeakerOut",
    "WavIn",
    "WavOut",
    "find_device",
    "list_devices",
    "read_wav",
    "resample",
    "rms_dbfs",
    "sounddevice_module",
    "to_float32",
    "to_int16",
    "write_wav",
]

# -- protocols -------------------------------------------------------------------------------------


@runtime_checkable
class AudioIn(Protocol):
    """A source of mono audio: a microphone, or a file for scripts and tests."""

    sample_rate: int
    """Rate of the chunks `record` delivers."""
    realtime: bool
    """Whether chunks arrive at the pace of real time (a microphone) rather than as fast as read."""

    def record(self, on_chunk: Callable[[np.ndarray], None], stop: threading.Event) -> None:
        """Deliver mono float32 chunks to `on_chunk` until `stop` is set or the input ends."""
        ...


@runtime_checkable
class AudioOut(Protocol):
    """A sink for mono audio: a speaker, or a wav file."""

    realtime: bool
    """Whether `play` takes as long as the sound (a speaker) rather than returning at once."""

    def play(self, samples: np.ndarray, sample_rate: int, stop: threading.Event) -> bool:
        """Play mono float32 samples; return False as soon as `stop` is set (what is queued is dropped)."""
        ...

    def drain(self, stop: threading.Event) -> bool:
        """Wait until everything played has been heard; False if `stop` cut it short."""
        ...

    def close(self) -> None:
        """Release the device or finish the file."""
        ...


# -- files -----------------------------------------------------------------------------------------


class ArrayIn:
    """Audio from memory, delivered in blocks; with `realtime`, paced like a microphone."""

    def __init__(
        self,
        samples: np.ndarray,
        sample_rate: int,
        *,
        realtime: bool = False,
        block_s: float = 0.05,
        on_end: Callable[[], None] | None = None,
    ) -> None:
        """`on_end` runs when the audio has all been delivered (the simulated key release)."""
        self.samples = to_float32(samples)
        self.sample_rate = sample_rate
        self.realtime = realtime
        self.block = max(1, int(sample_rate * block_s))
        self.on_end = on_end

    def record(self, on_chunk: Callable[[np.ndarray], None], stop: threading.Event) -> None:
        """Deliver the samples block by block until they run out or `stop` is set."""
        t0 = time.perf_counter()
        for i in range(0, len(self.samples), self.block):
            if stop.is_set():
                return
            if self.realtime:
                # Pacing real audio: wait until this block would have been captured by a microphone.
                due = t0 + (i + self.block) / self.sample_rate
                wait = due - time.perf_counter()
                if wait > 0 and stop.wait(wait):
                    return
            on_chunk(self.samples[i : i + self.block])
        if self.on_end is not None:
            self.on_end()


class WavIn(ArrayIn):
    """A wav file as the microphone (`--input-wav`)."""

    def __init__(self, path: Path | str, *, realtime: bool = False, block_s: float = 0.05) -> None:
        """Read the whole file now (errors show before anything else starts)."""
        samples, rate = read_wav(path)
        super().__init__(samples, rate, realtime=realtime, block_s=block_s)
        self.path = Path(path)


class WavOut:
    """A wav file as the speaker (`--output-wav`): every turn's reply is appended to it."""

    def __init__(self, path: Path | str, *, sample_rate: int | None = None, realtime: bool = False) -> None:
        """The file's rate is `sample_rate`, else the rate of the first audio played."""
        self.path = Path(path)
        self.sample_rate = sample_rate
        self.realtime = realtime
        self._wav: wave.Wave_write | None = None
        self._lock = threading.Lock()
        self.frames = 0
        """Samples written so far."""

    def play(self, samples: np.ndarray, sample_rate: int, stop: threading.Event) -> bool:
        """Append the samples (resampled to the file's rate); with `realtime`, take as long as they last."""
        if stop.is_set():
            return False
        with self._lock:
            if self._wav is None:
                self.sample_rate = self.sample_rate or sample_rate
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._wav = wave.open(str(self.path), "wb")
                self._wav.setnchannels(1)
                self._wav.setsampwidth(2)
                self._wav.setframerate(self.sample_rate)
            assert self.sample_rate is not None
            data = resample(samples, sample_rate, self.sample_rate)
        if not self.realtime:
            self._write(data)
            return True
        block = max(1, self.sample_rate // 20)
        t0 = time.perf_counter()
        for i in range(0, len(data), block):
            if stop.is_set():
                return False
            self._write(data[i : i + block])
            # Pacing real audio: a speaker takes as long as the sound lasts.
            if stop.wait(max(0.0, t0 + (i + block) / self.sample_rate - time.perf_counter())):
                return False
        return True

    def _write(self, data: np.ndarray) -> None:
        with self._lock:
            assert self._wav is not None
            self._wav.writeframes(to_int16(data).tobytes())
            self.frames += len(data)

    def drain(self, stop: threading.Event) -> bool:
        """Nothing is buffered: a file has always 'heard' everything."""
        return not stop.is_set()

    def close(self) -> None:
        """Finish the file's header (an empty reply still leaves a valid, empty wav file)."""
        with self._lock:
            if self._wav is None:
                self._wav = wave.open(str(self.path), "wb")
                self._wav.setnchannels(1)
                self._wav.setsampwidth(2)
                self._wav.setframerate(self.sample_rate or 22050)
            self._wav.close()
            self._wav = None


class NullOut:
    """A speaker that plays nothing but takes as long as the sound lasts (the bench's output)."""

    realtime = True

    def play(self, samples: np.ndarray, sample_rate: int, stop: threading.Event) -> bool:
        """Take as long as the samples last, or return at once when stopped."""
        return not stop.wait(len(samples) / sample_rate)  # pacing real audio, as a speaker does

    def drain(self, stop: threading.Event) -> bool:
        """Nothing is buffered."""
        return not stop.is_set()

    def close(self) -> None:
        """Nothing to release."""


# -- devices ---------------------------------------------------------------------------------------

_sd_lock = threading.Lock()
_sd: ModuleType | None = None


def sounddevice_module() -> ModuleType:
    """The sounddevice module, or `AudioUnavailableError` saying what to install."""
    global _sd
    with _sd_lock:
        if _sd is not None:
            return _sd
        import importlib.util

        if importlib.util.find_spec("sounddevice") is None:
            raise AudioUnavailableError(
                f"sound devices need the speech extra (missing: sounddevice): {INSTALL_HINT}; "
                "or use --input-wav/--output-wav"
            )
        try:
            import sounddevice
        except OSError as e:  # sounddevice raises OSError when the PortAudio library is absent
            raise AudioUnavailableError(
                f"PortAudio is not installed ({e}): {PORTAUDIO_HINT}; or use --input-wav/--output-wav"
            ) from None
        module: ModuleType = sounddevice
        _sd = module
        return module


@dataclass(frozen=True)
class AudioDevice:
    """One sound device as PortAudio lists it."""

    index: int
    """PortAudio's device index (what `audio.input_device = "3"` refers to)."""
    name: str
    """The device's name."""
    hostapi: str
    """The host API it belongs to (ALSA, Core Audio, WASAPI...)."""
    inputs: int
    """Input channels (0: not a microphone)."""
    outputs: int
    """Output channels (0: not a speaker)."""
    default_rate: float
    """The device's preferred sample rate."""
    default_input: bool = False
    """Whether this is the system's default microphone."""
    default_output: bool = False
    """Whether this is the system's default speaker."""


def list_devices() -> list[AudioDevice]:
    """Every device PortAudio sees (an empty list on a machine without sound hardware)."""
    sd = sounddevice_module()
    try:
        raw = sd.query_devices()
        hostapis = sd.query_hostapis()
        default_in, default_out = sd.default.device
    except sd.PortAudioError as e:
        raise AudioUnavailableError(f"PortAudio cannot list sound devices: {e}") from None
    out = []
    for d in raw:
        out.append(
            AudioDevice(
                index=int(d["index"]),
                name=str(d["name"]),
                hostapi=str(hostapis[d["hostapi"]]["name"]),
                inputs=int(d["max_input_channels"]),
                outputs=int(d["max_output_channels"]),
                default_rate=float(d["default_samplerate"]),
                default_input=int(d["index"]) == default_in,
                default_output=int(d["index"]) == default_out,
            )
        )
    return out


def find_device(spec: str | int | None, kind: Literal["input", "output"]) -> AudioDevice:
    """The device `spec` names (an index, or part of a name; None: the default) that can do `kind`."""
    devices = list_devices()
    what = "microphone" if kind == "input" else "speaker"
    usable = [d for d in devices if (d.inputs if kind == "input" else d.outputs) > 0]
    if not usable:
        raise AudioUnavailableError(
            f"no {what} found: PortAudio sees no {kind} device; connect one, or use "
            f"--{kind}-wav FILE (typed chat keeps working)"
        )
    key = f"audio.{kind}_device"
    if spec is None or str(spec).strip() == "":
        for d in usable:
            if d.default_input if kind == "input" else d.default_output:
                return d
        return usable[0]
    text = str(spec).strip()
    if text.lstrip("-").isdigit():
        for d in usable:
            if d.index == int(text):
                return d
        raise AudioUnavailableError(f"{key} = {text}: no {what} has that index; see `edgeassist voice --list-devices`")
    matches = [d for d in usable if text.lower() in d.name.lower()]
    exact = [d for d in matches if d.name.lower() == text.lower()]
    if exact:
        return exact[0]
    if not matches:
        raise AudioUnavailableError(f"{key} = {text!r}: no {what} by that name; see `edgeassist voice --list-devices`")
    return matches[0]


def _pick_rate(sd: ModuleType, device: AudioDevice, kind: str, wanted: int) -> int:
    """`wanted` if the device takes it, else the device's own rate (the caller resamples)."""
    check = sd.check_input_settings if kind == "input" else sd.check_output_settings
    try:
        check(device=device.index, samplerate=wanted, channels=1, dtype="int16")
        return wanted
    except Exception:  # noqa: BLE001 - PortAudio reports unsupported rates as various errors
        return int(device.default_rate)


class MicrophoneIn:
    """A microphone through sounddevice, read in small blocks (PortAudio's blocking read)."""

    realtime = True

    def __init__(self, device: str | int | None = None, *, sample_rate: int = WHISPER_RATE, block_s: float = 0.05):
        """Pick the device now (errors show at once); the stream opens for each recording."""
        self._sd = sounddevice_module()
        self.device = find_device(device, "input")
        self.sample_rate = _pick_rate(self._sd, self.device, "input", sample_rate)
        self.block = max(1, int(self.sample_rate * block_s))

    def record(self, on_chunk: Callable[[np.ndarray], None], stop: threading.Event) -> None:
        """Capture until `stop` is set."""
        sd = self._sd
        try:
            stream = sd.InputStream(
                device=self.device.index, samplerate=self.sample_rate, channels=1, dtype="int16", blocksize=self.block
            )
            stream.start()
        except sd.PortAudioError as e:
            raise AudioUnavailableError(
                f"cannot open the microphone {self.device.name!r}: {e}; pick another with "
                "`edgeassist voice --list-devices` and audio.input_device"
            ) from None
        try:
            while not stop.is_set():
                data, _overflowed = stream.read(self.block)
                on_chunk(to_float32(data))
        finally:
            stream.abort()
            stream.close()


class SpeakerOut:
    """A speaker through sounddevice, written in small blocks so that a stop takes effect at once."""

    realtime = True

    def __init__(self, device: str | int | None = None, *, block_s: float = 0.04) -> None:
        """Pick the device now; the stream opens on the first `play` (at the voice's rate if it can)."""
        self._sd = sounddevice_module()
        self.device = find_device(device, "output")
        self.block_s = block_s
        self.sample_rate: int | None = None
        """The rate the stream runs at (the voice's, or the device's own)."""
        self._stream: object = None
        self._opened_for: int | None = None
        self._started = False
        self._lock = threading.Lock()

    def _ensure(self, rate: int) -> object:
        """The open stream for audio at `rate` (reopened when the voice's rate changes)."""
        sd = self._sd
        if self._stream is not None and self._opened_for == rate:
            return self._stream
        self._close_stream()
        self.sample_rate = _pick_rate(sd, self.device, "output", rate)
        try:
            self._stream = sd.OutputStream(
                device=self.device.index, samplerate=self.sample_rate, channels=1, dtype="int16"
            )
        except sd.PortAudioError as e:
            raise AudioUnavailableError(
                f"cannot open the speaker {self.device.name!r}: {e}; pick another with "
                "`edgeassist voice --list-devices` and audio.output_device"
            ) from None
        self._opened_for = rate
        self._started = False
        return self._stream

    def play(self, samples: np.ndarray, sample_rate: int, stop: threading.Event) -> bool:
        """Write the samples block by block; on `stop`, drop what the device still holds and return."""
        with self._lock:
            stream = self._ensure(sample_rate)
            assert self.sample_rate is not None
            data = to_int16(resample(samples, sample_rate, self.sample_rate)).reshape(-1, 1)
            if not self._started:
                stream.start()  # type: ignore[attr-defined]
                self._started = True
            block = max(1, int(self.sample_rate * self.block_s))
            for i in range(0, len(data), block):
                if stop.is_set():
                    stream.abort()  # type: ignore[attr-defined]
                    self._started = False
                    return False
                stream.write(data[i : i + block])  # type: ignore[attr-defined]
            return True

    def drain(self, stop: threading.Event) -> bool:
        """Let the device play out what it holds (at most its buffer latency), then pause the stream."""
        with self._lock:
            if self._stream is None or not self._started:
                return not stop.is_set()
            if stop.is_set():
                self._stream.abort()  # type: ignore[attr-defined]
            else:
                self._stream.stop()  # type: ignore[attr-defined]
            self._started = False
            return not stop.is_set()

    def _close_stream(self) -> None:
        if self._stream is not None:
            try:
                self._stream.abort()  # type: ignore[attr-defined]
                self._stream.close()  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - closing a broken stream must not mask the real error
                pass
            self._stream = None
            self._started = False

    def close(self) -> None:
        """Close the stream."""
        with self._lock:
            self._close_stream()
