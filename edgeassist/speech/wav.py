"""Wav files: edgeassist's own RIFF/WAVE reader, and the 16-bit writer.

The reader takes integer PCM and float audio, plain or WAVE_FORMAT_EXTENSIBLE, RIFF or RF64; a file
it cannot decode is one error saying what the file is and how to convert it.
"""

from __future__ import annotations

import os
import shlex
import stat
import struct
import uuid
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeassist.errors import AudioUnavailableError
from edgeassist.speech.samples import WHISPER_RATE, to_float32, to_int16

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
