"""Audio in and out: sounddevice (PortAudio) devices, wav files, resampling and a level meter.

Two small protocols carry every sound: `AudioIn.record` delivers mono float32 chunks until told to
stop (or the input ends), `AudioOut.play` plays mono float32 samples and returns early, at once,
when told to stop. The device versions use PortAudio's blocking read/write calls in small blocks,
checking the stop event between blocks, so barge-in is immediate and nothing runs in a real-time
callback. The wav versions are for scripting (`--input-wav/--output-wav`) and tests.
"""

from __future__ import annotations

import math
import os
import shlex
import stat
import struct
import threading
import time
import uuid
import wave
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from edgeassist.errors import AudioUnavailableError
from edgeassist.speech import INSTALL_HINT, PORTAUDIO_HINT

WHISPER_RATE = 16000
"""The sample rate whisper listens at."""

Chunk = np.ndarray
"""Mono float32 samples in [-1, 1]."""

# -- resampling ------------------------------------------------------------------------------------


class Resampler:
    """Band-limited resampling between two rates, chunk by chunk with state (windowed-sinc, polyphase).

    Output sample n sits at input time n * src / dst; it is the input convolved there with a
    Kaiser-windowed sinc whose cut-off is the lower Nyquist frequency, so nothing aliases when
    going down and no images appear going up. The kernel is centred, so there is no delay: a
    resampled sine lines up with the same sine sampled at the new rate.
    """

    def __init__(self, src_rate: int, dst_rate: int, *, half_taps: int = 16, beta: float = 8.0) -> None:
        """Prepare the per-phase filter table for `src_rate` -> `dst_rate`."""
        if src_rate <= 0 or dst_rate <= 0:
            raise ValueError("sample rates must be positive")
        ratio = Fraction(dst_rate, src_rate)
        self.src_rate, self.dst_rate = src_rate, dst_rate
        self._up, self._down = ratio.numerator, ratio.denominator  # out n <-> in n * down / up
        self._identity = src_rate == dst_rate
        cutoff = min(1.0, dst_rate / src_rate) * 0.94  # fraction of the input Nyquist, with a guard band
        self._half = int(math.ceil(half_taps / min(1.0, dst_rate / src_rate)))
        k = np.arange(-self._half + 1, self._half + 1)  # taps relative to floor(t)
        phases = np.arange(self._up) / self._up  # frac(t) for each phase
        d = phases[:, None] - k[None, :]  # t - j
        w = np.i0(beta * np.sqrt(np.clip(1.0 - (d / self._half) ** 2, 0.0, None))) / np.i0(beta)
        self._table = (cutoff * np.sinc(cutoff * d) * w).astype(np.float64)  # (up, taps)
        self._k = k
        self._buf = np.zeros(self._half, dtype=np.float64)  # input history; index 0 is absolute _buf_start
        self._buf_start = -self._half
        self._n_in = 0
        self._n_out = 0

    def process(self, chunk: np.ndarray, *, final: bool = False) -> np.ndarray:
        """Resample the next `chunk`; with `final`, also return the samples the input's end completes."""
        x = np.asarray(chunk, dtype=np.float64).reshape(-1)
        if self._identity:
            return x.astype(np.float32)
        self._buf = np.concatenate([self._buf, x])
        self._n_in += len(x)
        if final:
            total = -(-self._n_in * self._up // self._down)  # ceil(n_in * dst / src)
            pad = self._half + 2
            self._buf = np.concatenate([self._buf, np.zeros(pad)])
            last = total - 1
        else:
            # Output n needs input up to floor(t_n) + half.
            available = self._buf_start + len(self._buf) - 1  # last input index held
            last = ((available - self._half) * self._up) // self._down
        if last < self._n_out:
            return np.zeros(0, dtype=np.float32)
        pieces = []
        for first in range(self._n_out, last + 1, 4096):  # bounded memory for long inputs
            n = np.arange(first, min(first + 4096, last + 1))
            num = n * self._down
            base = num // self._up
            idx = base[:, None] + self._k[None, :] - self._buf_start
            pieces.append(np.einsum("ij,ij->i", self._buf[idx], self._table[num % self._up]))
        y = np.concatenate(pieces)
        self._n_out = last + 1
        # Keep only the history the next output needs.
        next_base = (self._n_out * self._down) // self._up
        keep_from = next_base - self._half + 1 - self._buf_start
        if keep_from > 0:
            self._buf = self._buf[keep_from:]
            self._buf_start += keep_from
        return y.astype(np.float32)


def resample(samples: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Resample a whole signal (float32 out); `len(out) == ceil(len(in) * dst / src)`."""
    if src_rate == dst_rate:
        return np.asarray(samples, dtype=np.float32).reshape(-1)
    return Resampler(src_rate, dst_rate).process(samples, final=True)


# -- levels ----------------------------------------------------------------------------------------


def rms_dbfs(samples: np.ndarray) -> float:
    """Root-mean-square level in dB relative to full scale (-120 for silence)."""
    if len(samples) == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return max(-120.0, 20.0 * math.log10(rms + 1e-12))


class LevelMeter:
    """A microphone level for a meter: 0 at `floor_db` or below, 1 at full scale; fast rise, slow fall."""

    def __init__(self, floor_db: float = -60.0, fall_per_s: float = 1.5) -> None:
        """`fall_per_s` is how much of the full range the needle may drop per second."""
        self.floor_db = floor_db
        self.fall_per_s = fall_per_s
        self.level = 0.0
        """The current needle position, 0..1."""

    def update(self, samples: np.ndarray, sample_rate: int) -> float:
        """Take the next chunk and return the needle position."""
        db = rms_dbfs(samples)
        target = min(1.0, max(0.0, (db - self.floor_db) / -self.floor_db))
        drop = self.fall_per_s * len(samples) / sample_rate
        self.level = target if target >= self.level else max(target, self.level - drop)
        return self.level


def to_float32(samples: np.ndarray) -> np.ndarray:
    """Mono float32 from integer or float samples, mono or (frames, channels); channels are averaged.

    Integers are scaled to [-1, 1) before the channels are mixed (signed by 2**(bits-1), unsigned
    around their midpoint, as 8-bit wav is), so a mix keeps each channel's level; floats pass as
    they are.
    """
    a = np.asarray(samples)
    if a.dtype.kind in "iu":
        full = np.float32(2.0 ** (a.dtype.itemsize * 8 - 1))
        x = a.astype(np.float32)
        if a.dtype.kind == "u":
            x -= full
        x /= full
    else:
        x = a.astype(np.float32)  # a copy, as for integers: the caller's array is never shared
    if x.ndim == 2:
        x = x[:, 0] if x.shape[1] == 1 else x.mean(axis=1, dtype=np.float32)
    return x.reshape(-1)


def to_int16(samples: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] as clipped int16."""
    return (np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0) * 32767.0).astype(np.int16)


# -- wav files -------------------------------------------------------------------------------------

_RIFF_KINDS = (b"RIFF", b"RF64", b"BW64")  # RF64/BW64: the 64-bit variant, sizes in a ds64 chunk
_UNKNOWN_SIZE = 0xFFFFFFFF
_GUID_TAIL = bytes.fromhex("00001000800000aa00389b71")
"""KSDATAFORMAT_SUBTYPE_* GUIDs of WAVE_FORMAT_EXTENSIBLE: the format tag, then these 12 bytes."""
_MAX_RATE = 384_000
"""Highest sample rate read: above it there is no audio recorder, only broken headers."""
_ENCODINGS = {
    0x0002: "Microsoft ADPCM",
    0x0006: "A-law",
    0x0007: "mu-law",
    0x0011: "IMA ADPCM",
    0x0031: "GSM 6.10",
    0x0040: "G.721 ADPCM",
    0x0050: "MPEG",
    0x0055: "MP3",
    0x00FF: "AAC",
    0x0160: "WMA",
    0x0161: "WMA",
    0x2000: "AC-3",
    0xF1AC: "FLAC",
}
"""Names of the compressed encodings a wav file may hold, for the error that says what it is."""


@dataclass(frozen=True)
class _WavFormat:
    """How a wav file's samples are stored (its fmt chunk)."""

    is_float: bool
    channels: int
    sample_rate: int
    width: int
    """Bytes per sample of one channel (the container: 24-bit audio may sit in 4 bytes)."""


def _shown(path: Path | str) -> str:
    """The path as it goes into a one-line message (quoted when empty or holding control characters)."""
    text = str(path)
    return text if text and text.isprintable() else ascii(text)


def _convert_hint(path: Path | str, *, rate: int | None = None) -> str:
    """Commands that turn the file into a 16-bit PCM wav edgeassist reads (at `rate`, if given)."""
    p = Path(path)
    src, dst = shlex.quote(str(p)), shlex.quote(str(p.with_name(p.stem + "-pcm16.wav")))
    ffmpeg_rate, sox_rate = (f" -ar {rate}", f" rate {rate}") if rate else ("", "")
    return (
        f"`ffmpeg -i {src}{ffmpeg_rate} -c:a pcm_s16le {dst}` (or `sox {src} -e signed-integer -b 16 {dst}{sox_rate}`)"
    )


def _read_file(path: Path | str, shown: str) -> bytes:
    """The file's bytes, or one AudioUnavailableError saying why they cannot be had."""
    try:
        with open(path, "rb") as f:
            if stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return f.read()
            # A pipe (`--input-wav <(sox ...)`) is read to its end, but only once its start looks
            # like a wav: a device such as /dev/zero would never end.
            head = f.read(12)
            return head + f.read() if head[:4] in _RIFF_KINDS else head
    except FileNotFoundError:
        raise AudioUnavailableError(f"no such wav file: {shown}") from None
    except IsADirectoryError:
        raise AudioUnavailableError(f"{shown} is a folder, not a wav file: give the path of a .wav file") from None
    except PermissionError:
        if Path(path).is_dir():  # what Windows says for a folder
            raise AudioUnavailableError(f"{shown} is a folder, not a wav file: give the path of a .wav file") from None
        raise AudioUnavailableError(f"cannot read {shown}: permission denied") from None
    except OSError as e:
        raise AudioUnavailableError(f"cannot read {shown}: {e.strerror or e}") from None


def _not_wav(data: bytes, shown: str, path: Path | str) -> AudioUnavailableError:
    """The error for a file that is not a wav, saying what it looks like where that is clear."""
    looks = {
        b"ID3": "MP3",
        b"fLaC": "FLAC",
        b"OggS": "Ogg (Vorbis or Opus)",
        b"FORM": "AIFF",
        b"\x1aE\xdf\xa3": "WebM/Matroska",
        b"caff": "Core Audio (CAF)",
        b"#!AMR": "AMR",
        b".snd": "Sun/NeXT AU",
    }
    what = next((name for magic, name in looks.items() if data.startswith(magic)), None)
    if what is None and data[4:8] == b"ftyp":
        what = "MP4/M4A"
    elif what is None and len(data) >= 2 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0:
        what = "AAC (ADTS)" if data[1] & 0x06 == 0 else "MP3"  # MPEG audio frame sync; layer bits 0: AAC
    if data[:4] == b"RIFX":
        why = "it is a big-endian wav (RIFX)"
    elif data[:4] in _RIFF_KINDS and len(data) >= 12:
        why = f"it is a RIFF {data[8:12].decode('latin-1')!r} file, not WAVE"
    elif data[:4] in _RIFF_KINDS:
        why = f"it is cut short ({len(data)} bytes, less than a wav header)"
    elif what is not None:
        why = f"it looks like {what} audio"
    else:
        why = "it does not start with a RIFF/WAVE header"
    return AudioUnavailableError(f"{shown} is not a PCM wav file: {why}; convert it with {_convert_hint(path)}")


def _plausible_id(data: bytes, pos: int) -> bool:
    """Whether a chunk header could start at `pos`: four printable ASCII bytes, then a size."""
    return pos >= 0 and pos + 8 <= len(data) and all(0x20 <= c <= 0x7E for c in data[pos : pos + 4])


def _parse_fmt(body: bytes, shown: str, path: Path | str) -> _WavFormat:
    """Read a fmt chunk; anything edgeassist cannot decode is one error saying what it is."""
    if len(body) < 16:
        raise AudioUnavailableError(f"{shown} is a damaged wav file: its fmt chunk is only {len(body)} bytes")
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", body)
    if tag == 0xFFFE:  # WAVE_FORMAT_EXTENSIBLE: the real format is the GUID's first four bytes
        if len(body) < 40:
            raise AudioUnavailableError(
                f"{shown} is a damaged wav file: its extensible fmt chunk is only {len(body)} bytes"
            )
        guid = body[24:40]
        if guid[4:] != _GUID_TAIL:
            raise AudioUnavailableError(
                f"{shown} is a wav file of the unknown extensible subformat {uuid.UUID(bytes_le=guid)}, "
                f"which edgeassist does not decode: convert it to 16-bit PCM first, e.g. {_convert_hint(path)}"
            )
        tag = struct.unpack_from("<I", guid)[0]
    if channels == 0:
        raise AudioUnavailableError(f"{shown} is a damaged wav file: its header says it has no channels")
    if rate == 0:
        raise AudioUnavailableError(f"{shown} is a damaged wav file: its header says the sample rate is 0 Hz")
    if rate > _MAX_RATE:
        raise AudioUnavailableError(
            f"{shown} is a wav file at {rate} Hz, beyond the {_MAX_RATE} Hz edgeassist reads: "
            f"resample it first, e.g. {_convert_hint(path, rate=WHISPER_RATE)}"
        )
    if tag == 1 and 1 <= bits <= 32:
        width = (bits + 7) // 8
        # Some writers keep 24-bit audio in 4-byte containers and say so only in the block size;
        # the samples are left-justified either way, so reading the whole container is right.
        if bits > 8 and block_align % channels == 0 and width <= block_align // channels <= 4:
            width = block_align // channels
    elif tag == 3 and bits in (32, 64):
        width = bits // 8
    else:
        if tag == 1:
            what = f"{bits}-bit integer PCM audio"
        elif tag == 3:
            what = f"{bits}-bit float audio"
        else:
            what = f"{_ENCODINGS[tag]} audio" if tag in _ENCODINGS else f"audio in the unknown format 0x{tag:04X}"
        raise AudioUnavailableError(
            f"{shown} is a wav file holding {what}, which edgeassist does not decode: "
            f"convert it to 16-bit PCM first, e.g. {_convert_hint(path)}"
        )
    if block_align not in (0, width * channels):
        raise AudioUnavailableError(
            f"{shown} is a damaged wav file: its header says {block_align} bytes per frame, "
            f"but {channels} channel(s) of {bits}-bit audio take {width * channels}"
        )
    return _WavFormat(tag == 3, channels, rate, width)


def _find_audio(data: bytes, shown: str, path: Path | str) -> tuple[_WavFormat, int, int]:
    """Walk a RIFF/WAVE file's chunks: the format, and where its audio starts and stops.

    Lenient where recorders are sloppy: a data size of 0 or 0xFFFFFFFF (a streaming recorder that
    never went back to fill it in) or beyond the end of the file (a cut-off recording) means "to
    the end of the file"; the RIFF size is ignored; an odd-sized chunk whose writer forgot the pad
    byte is still followed; the fmt chunk may come after the data.
    """
    if not data:
        raise AudioUnavailableError(f"{shown} is not a PCM wav file: it is empty (0 bytes)")
    if data[:4] not in _RIFF_KINDS or data[8:12] != b"WAVE":
        raise _not_wav(data, shown, path)
    fmt: _WavFormat | None = None
    audio: tuple[int, int] | None = None
    ds64_data_size: int | None = None
    n, pos, cut_in = len(data), 12, None
    while pos + 8 <= n:
        cid, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if cid == b"data":
            if size == _UNKNOWN_SIZE and ds64_data_size is not None:
                size = ds64_data_size
            # Size 0 is a streaming recorder's placeholder, unless another chunk follows at once.
            follows = _plausible_id(data, body) and body + 8 + struct.unpack_from("<I", data, body + 4)[0] <= n
            to_end = size == _UNKNOWN_SIZE or (size == 0 and not follows)
            end = n if to_end else min(body + size, n)
            audio = audio or (body, end)
            if end == n:
                break
        elif cid == b"fmt ":
            if body + size > n:
                cut_in = "its fmt chunk"
                break
            fmt = fmt or _parse_fmt(data[body : body + size], shown, path)
        elif cid == b"ds64" and data[:4] != b"RIFF" and body + 16 <= n:
            ds64_data_size = struct.unpack_from("<Q", data, body + 8)[0]
        if fmt is not None and audio is not None:
            break
        if body + size > n:
            cut_in = f"its {cid.decode('latin-1')!r} chunk"
        pos = body + size + (size & 1)
        if size & 1 and not _plausible_id(data, pos) and _plausible_id(data, pos - 1):
            pos -= 1  # the writer left out the pad byte
    if fmt is None:
        where = f"inside {cut_in}" if cut_in else "before saying how its audio is stored (no fmt chunk)"
        raise AudioUnavailableError(f"{shown} is a damaged or cut-short wav file: it ends {where}")
    if audio is None:
        where = f": the file ends inside {cut_in}" if cut_in else ""
        raise AudioUnavailableError(f"{shown} has no audio in it: the wav file has no data chunk{where}")
    return fmt, audio[0], audio[1]


def read_wav(path: Path | str) -> tuple[np.ndarray, int]:
    """A wav file's samples as mono float32 (channels averaged), and its rate.

    Reads integer PCM (8-bit unsigned, up to 32-bit signed) and 32/64-bit float, plain or
    WAVE_FORMAT_EXTENSIBLE, RIFF or RF64, any number of channels and any rate up to 384 kHz.
    Float samples beyond [-1, 1] are kept (the caller decides), NaN and infinity become silence.
    Every problem (missing, a folder, empty, not a wav, damaged, an encoding it does not decode)
    is one AudioUnavailableError naming the file and what to do about it.
    """
    shown = _shown(path)
    data = _read_file(path, shown)
    fmt, start, stop = _find_audio(data, shown, path)
    frames = (stop - start) // (fmt.width * fmt.channels)  # a cut-off last frame is dropped
    count = frames * fmt.channels
    if fmt.is_float:
        with np.errstate(over="ignore"):  # a 64-bit value beyond float32 is garbage: it becomes inf, then 0
            x = np.frombuffer(data, dtype=f"<f{fmt.width}", count=count, offset=start).astype(np.float32)
        x[~np.isfinite(x)] = 0.0
        samples: np.ndarray = x
    elif fmt.width == 3:  # 24-bit: into the top three bytes of an int32, which scales the same
        wide = np.zeros((count, 4), dtype=np.uint8)
        wide[:, 1:] = np.frombuffer(data, dtype=np.uint8, count=count * 3, offset=start).reshape(-1, 3)
        samples = wide.view("<i4")
    else:
        samples = np.frombuffer(data, dtype={1: "u1", 2: "<i2", 4: "<i4"}[fmt.width], count=count, offset=start)
    return to_float32(samples.reshape(frames, fmt.channels)), fmt.sample_rate


def write_wav(path: Path | str, samples: np.ndarray, sample_rate: int) -> None:
    """Write mono float samples as a 16-bit wav file."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(to_int16(samples).tobytes())


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
