"""Speech input from every wav a user may have: each sample format, channel count and rate heard alike
by the real whisper, the RIFF reader's edge cases, and a one-line error naming the file for the rest.

The wav files here are written by this module's own writer (numpy + struct), not by the code under
test, so a reader and a writer cannot share a mistake.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from audio_helpers import speak, transcribe_any, word_recall, words
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edgeassist.cli import main
from edgeassist.errors import AudioUnavailableError
from edgeassist.speech.audio import read_wav, to_float32

# -- an independent wav writer ---------------------------------------------------------------------

KINDS = ("u8", "s16", "s24", "s32", "s24in32", "f32", "f64")
"""Sample formats: unsigned 8-bit; signed 16, 24, 32-bit; 24 valid bits in 32; 32/64-bit float."""
CONTAINER_BITS = {"u8": 8, "s16": 16, "s24": 24, "s32": 32, "s24in32": 32, "f32": 32, "f64": 64}
VALID_BITS = {**CONTAINER_BITS, "s24in32": 24}
PCM, IEEE_FLOAT, EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
GUID_TAIL = b"\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"  # KSDATAFORMAT_SUBTYPE_*, after the tag


def quantise(x: np.ndarray, kind: str) -> np.ndarray:
    """Float samples in [-1, 1] as the integers (or floats) a `kind` wav stores, rounded and clipped."""
    if kind in ("f32", "f64"):
        return x.astype("<f4" if kind == "f32" else "<f8")
    bits = VALID_BITS[kind]
    full = 2.0 ** (bits - 1)
    q = np.clip(np.round(np.asarray(x, dtype=np.float64) * full), -full, full - 1).astype(np.int64)
    return q + 128 if kind == "u8" else q


def dequantised(x: np.ndarray, kind: str) -> np.ndarray:
    """What an exact reader gives back for `x` stored as `kind`: the mono mix, in float64."""
    q = quantise(x, kind).astype(np.float64)
    if kind == "u8":
        q = (q - 128) / 128
    elif kind not in ("f32", "f64"):
        q = q / 2.0 ** (VALID_BITS[kind] - 1)
    return q.mean(axis=1) if q.ndim == 2 else q


def sample_bytes(x: np.ndarray, kind: str) -> bytes:
    """Interleaved little-endian sample bytes of `x` (frames, channels) stored as `kind`."""
    q = quantise(x, kind)
    if kind == "u8":
        return q.astype("u1").tobytes()
    if kind == "s16":
        return q.astype("<i2").tobytes()
    if kind == "s24":
        return q.astype("<i4").view("u1").reshape(-1, 4)[:, :3].tobytes()
    if kind == "s24in32":
        return (q.astype("<i4") << 8).tobytes()  # left-justified, the low byte zero
    if kind == "s32":
        return q.astype("<i4").tobytes()
    return q.tobytes()


def chunk(cid: bytes, body: bytes, *, size: int | None = None, pad: bool = True) -> bytes:
    """One RIFF chunk; `size` overrides the size written; the pad byte after an odd body unless `pad` is off."""
    head = cid + struct.pack("<I", len(body) if size is None else size)
    return head + body + (b"\x00" if pad and len(body) % 2 else b"")


def fmt_chunk(kind: str, channels: int, rate: int, *, extensible: bool = False, tag: int | None = None) -> bytes:
    """The fmt chunk for `kind` (plain, or WAVE_FORMAT_EXTENSIBLE with the real format in the GUID)."""
    bits = CONTAINER_BITS[kind]
    real = tag if tag is not None else IEEE_FLOAT if kind.startswith("f") else PCM
    if kind == "s24in32" and not extensible:
        raise ValueError("24 valid bits in a 32-bit container needs WAVE_FORMAT_EXTENSIBLE")
    block = channels * bits // 8
    common = struct.pack("<HIIHH", channels, rate, rate * block, block, bits)
    if not extensible:
        return chunk(b"fmt ", struct.pack("<H", real) + common)
    mask = (1 << channels) - 1 if channels <= 18 else 0
    ext = struct.pack("<HHI", 22, VALID_BITS[kind], mask) + struct.pack("<I", real) + GUID_TAIL
    return chunk(b"fmt ", struct.pack("<H", EXTENSIBLE) + common + ext)


def riff(chunks: Sequence[bytes], *, kind: bytes = b"RIFF", size: int | None = None) -> bytes:
    """A RIFF/WAVE file of `chunks`; `size` overrides the RIFF size written."""
    body = b"WAVE" + b"".join(chunks)
    return kind + struct.pack("<I", len(body) if size is None else size) + body


def wav_bytes(x: np.ndarray, rate: int, kind: str, *, extensible: bool = False) -> bytes:
    """A whole wav file of `x` (frames,) or (frames, channels) in [-1, 1], stored as `kind`."""
    x = np.asarray(x, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    data = sample_bytes(x, kind)
    return riff([fmt_chunk(kind, x.shape[1], rate, extensible=extensible), chunk(b"data", data)])


def fft_resample(x: np.ndarray, src: int, dst: int) -> np.ndarray:
    """Band-limited resampling through the FFT: not the code under test's resampler."""
    n = len(x)
    m = int(round(n * dst / src))
    spectrum = np.fft.rfft(np.asarray(x, dtype=np.float64))
    out = np.zeros(m // 2 + 1, dtype=complex)
    k = min(len(spectrum), len(out))
    out[:k] = spectrum[:k]
    return np.fft.irfft(out, m) * (m / n)


def one_line_error(path: Path, *needles: str) -> str:
    """The message read_wav raises for `path`, checked to be one line that names the file."""
    with pytest.raises(AudioUnavailableError) as e:
        read_wav(path)
    message = str(e.value)
    assert "\n" not in message and str(path) in message, message
    for needle in needles:
        assert needle in message, message
    return message


# -- the same sentence, heard alike in every format --------------------------------------------------

SENTENCE = "Please turn on the kitchen lights and set a timer for ten minutes."
STEREO_GAINS = (1.5, 0.5)  # averaged, they give the original back: any mis-scaling shows
QUAD_GAINS = (1.4, 0.6, 0.0, 2.0)  # a silent channel, and one at twice the level


@pytest.fixture(scope="module")
def sentence() -> np.ndarray:
    """The sentence spoken by the real piper voice at 48 kHz, peak 0.45, with silence either side."""
    audio, rate = speak(SENTENCE)
    x = fft_resample(np.concatenate([np.zeros(rate // 4), audio, np.zeros(rate // 4)]), rate, 48000)
    return 0.45 * x / np.max(np.abs(x))


@pytest.fixture(scope="module")
def reference(sentence: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> str:
    """What whisper hears in the mono 16-bit 16 kHz original."""
    path = tmp_path_factory.mktemp("reference") / "original.wav"
    path.write_bytes(wav_bytes(fft_resample(sentence, 48000, 16000), 16000, "s16"))
    samples, rate = read_wav(path)
    heard = transcribe_any(samples, rate)
    assert word_recall(SENTENCE, heard) >= 0.8, heard  # the original itself is understood
    return heard


FORMATS = [
    # every sample format, at 16 kHz stereo
    *[pytest.param(kind, 16000, STEREO_GAINS, False, id=f"{kind}-16k-stereo") for kind in ("u8", "s16", "s24")],
    *[pytest.param(kind, 16000, STEREO_GAINS, False, id=f"{kind}-16k-stereo") for kind in ("s32", "f32", "f64")],
    # every rate, at 16-bit mono
    *[pytest.param("s16", r, (1.0,), False, id=f"s16-{r}-mono") for r in (8000, 11025, 22050, 32000, 44100, 48000)],
    # WAVE_FORMAT_EXTENSIBLE: float, 24 valid bits in 32, and more than two channels
    pytest.param("f32", 48000, STEREO_GAINS, True, id="extensible-f32-48k-stereo"),
    pytest.param("s24in32", 44100, QUAD_GAINS, True, id="extensible-s24in32-44k-4ch"),
    pytest.param("s16", 22050, STEREO_GAINS, True, id="extensible-s16-22k-stereo"),
]


@pytest.mark.parametrize(("kind", "rate", "gains", "extensible"), FORMATS)
def test_the_same_sentence_is_heard_alike_in_every_format(
    kind: str,
    rate: int,
    gains: tuple[float, ...],
    extensible: bool,
    sentence: np.ndarray,
    reference: str,
    tmp_path: Path,
) -> None:
    mono = fft_resample(sentence, 48000, rate)
    x = np.stack([g * mono for g in gains], axis=1)
    path = tmp_path / f"{kind}-{rate}-{len(gains)}ch.wav"
    path.write_bytes(wav_bytes(x, rate, kind, extensible=extensible))

    samples, got_rate = read_wav(path)
    assert got_rate == rate and samples.dtype == np.float32 and samples.ndim == 1
    assert len(samples) == len(mono)
    # The mix of the channels is the original, within the format's quantisation.
    np.testing.assert_allclose(samples, dequantised(x, kind), atol=1e-5)
    assert words(transcribe_any(samples, rate)) == words(reference)


# -- the mix of channels ---------------------------------------------------------------------------


def test_to_float32_scales_every_channel_before_mixing() -> None:
    stereo = np.array([[16384, 0], [-32768, -32768], [8192, 24576]], dtype=np.int16)
    np.testing.assert_allclose(to_float32(stereo), [0.25, -1.0, 0.5])
    assert to_float32(stereo).dtype == np.float32
    np.testing.assert_allclose(to_float32(np.array([[0, 255], [128, 128]], dtype=np.uint8)), [-0.00390625, 0.0])
    np.testing.assert_allclose(to_float32(np.array([[2**30, -(2**30)]], dtype=np.int32)), [0.0])
    np.testing.assert_allclose(to_float32(np.array([[2**30], [-(2**31)]], dtype=np.int32)), [0.5, -1.0])
    np.testing.assert_allclose(to_float32(np.array([[0.5, -0.25]], dtype=np.float64)), [0.125])
    np.testing.assert_allclose(to_float32(np.array([1000, -1000], dtype=np.int16)), [1000 / 32768, -1000 / 32768])


def test_a_stereo_16_bit_wav_reads_at_its_own_level(tmp_path: Path) -> None:
    t = np.arange(1600) / 16000
    left = 0.6 * np.sin(2 * np.pi * 300 * t)
    (tmp_path / "s.wav").write_bytes(wav_bytes(np.stack([left, 0.5 * left], axis=1), 16000, "s16"))
    samples, rate = read_wav(tmp_path / "s.wav")
    assert rate == 16000
    assert 0.44 < np.max(np.abs(samples)) < 0.46  # the mean of 0.6 and 0.3


# -- any signal, any supported format --------------------------------------------------------------

STEP = {"u8": 2.0**-7, "s16": 2.0**-15, "s24": 2.0**-23, "s24in32": 2.0**-23, "s32": 2.0**-31, "f32": 0.0, "f64": 0.0}
"""The quantisation step of each format (full scale is 1)."""


@st.composite
def signals(draw: st.DrawFn) -> np.ndarray:
    """(frames, channels) float64 in [-1, 1]: from int16 samples or from float32 ones."""
    channels = draw(st.integers(1, 5))
    frames = draw(st.integers(0, 64))
    if draw(st.booleans()):
        ints = draw(arrays(np.int16, (frames, channels)))
        return ints.astype(np.float64) / 32768
    floats = draw(arrays(np.float32, (frames, channels), elements=st.floats(-1, 1, width=32)))
    return floats.astype(np.float64)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    x=signals(),
    kind=st.sampled_from(KINDS),
    extensible=st.booleans(),
    rate=st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000, 96000]),
)
def test_any_signal_reads_back_within_quantisation_error(
    x: np.ndarray, kind: str, extensible: bool, rate: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    extensible = extensible or kind == "s24in32"
    path = tmp_path_factory.mktemp("prop") / "x.wav"
    path.write_bytes(wav_bytes(x, rate, kind, extensible=extensible))
    samples, got_rate = read_wav(path)
    assert got_rate == rate and samples.dtype == np.float32 and samples.shape == (len(x),)
    # Rounding is half a step, clipping at positive full scale one step; float32 arithmetic the rest.
    np.testing.assert_allclose(samples, x.mean(axis=1), rtol=0, atol=STEP[kind] + 1e-6)
    np.testing.assert_allclose(samples, dequantised(x, kind), rtol=0, atol=1e-6)


# -- the RIFF reader's edge cases ------------------------------------------------------------------

TONE = 0.5 * np.sin(2 * np.pi * 440 * np.arange(800) / 16000)
TONE_BYTES = sample_bytes(TONE.reshape(-1, 1), "s16")
TONE_READ = dequantised(TONE.reshape(-1, 1), "s16")


def read_back(tmp_path: Path, data: bytes, name: str = "t.wav") -> tuple[np.ndarray, int]:
    path = tmp_path / name
    path.write_bytes(data)
    return read_wav(path)


def test_chunks_before_between_and_after_are_skipped_with_their_pad_bytes(tmp_path: Path) -> None:
    data = riff(
        [
            chunk(b"JUNK", b"x" * 27),  # odd: a pad byte follows
            fmt_chunk("s16", 1, 16000),
            chunk(b"LIST", b"INFOISFT\x05\x00\x00\x00test\x00"),  # odd again
            chunk(b"fact", struct.pack("<I", len(TONE))),
            chunk(b"data", TONE_BYTES),
            chunk(b"id3 ", b"trailing tag"),
        ]
    )
    samples, rate = read_back(tmp_path, data)
    assert rate == 16000
    np.testing.assert_allclose(samples, TONE_READ, atol=1e-6)


def test_an_odd_chunk_without_its_pad_byte_is_still_followed(tmp_path: Path) -> None:
    data = riff([chunk(b"LIST", b"abcde", pad=False), fmt_chunk("s16", 1, 16000), chunk(b"data", TONE_BYTES)])
    samples, _ = read_back(tmp_path, data)
    np.testing.assert_allclose(samples, TONE_READ, atol=1e-6)


def test_an_odd_sized_data_chunk_of_8_bit_audio_is_read_and_the_next_chunk_found(tmp_path: Path) -> None:
    x = np.linspace(-0.5, 0.5, 7).reshape(-1, 1)
    data = riff([chunk(b"data", sample_bytes(x, "u8")), chunk(b"LIST", b"after"), fmt_chunk("u8", 1, 8000)])
    samples, rate = read_back(tmp_path, data)
    assert rate == 8000
    np.testing.assert_allclose(samples, dequantised(x, "u8"), atol=1e-6)


def test_the_fmt_chunk_may_come_after_the_data(tmp_path: Path) -> None:
    samples, _ = read_back(tmp_path, riff([chunk(b"data", TONE_BYTES), fmt_chunk("s16", 1, 16000)]))
    np.testing.assert_allclose(samples, TONE_READ, atol=1e-6)


@pytest.mark.parametrize("data_size", [0, 0xFFFFFFFF], ids=["zero", "minus-one"])
@pytest.mark.parametrize("riff_size", [0, 0xFFFFFFFF, 36], ids=["riff-zero", "riff-minus-one", "riff-header-only"])
def test_sizes_a_streaming_recorder_never_filled_in_mean_to_the_end(
    tmp_path: Path, data_size: int, riff_size: int
) -> None:
    data = riff([fmt_chunk("s16", 1, 16000), chunk(b"data", TONE_BYTES, size=data_size)], size=riff_size)
    samples, _ = read_back(tmp_path, data)
    np.testing.assert_allclose(samples, TONE_READ, atol=1e-6)


def test_a_cut_off_recording_gives_the_whole_frames_there_are(tmp_path: Path) -> None:
    x = np.stack([TONE, -TONE], axis=1)
    full = riff([fmt_chunk("s24", 2, 16000), chunk(b"data", sample_bytes(x, "s24"))])
    cut = full[: len(full) - 600 - 4]  # 100 frames of 6 bytes, and 4 bytes of the next frame
    samples, _ = read_back(tmp_path, cut)
    assert len(samples) == len(TONE) - 101
    np.testing.assert_allclose(samples, dequantised(x, "s24")[: len(samples)], atol=1e-6)


def test_an_empty_data_chunk_is_no_samples_and_not_an_error(tmp_path: Path) -> None:
    samples, rate = read_back(tmp_path, riff([fmt_chunk("s16", 1, 22050), chunk(b"data", b"")]))
    assert rate == 22050 and samples.shape == (0,) and samples.dtype == np.float32
    # An empty data chunk followed by another chunk is empty too (not "to the end of the file").
    samples, _ = read_back(tmp_path, riff([fmt_chunk("s16", 1, 22050), chunk(b"data", b""), chunk(b"LIST", b"ab")]))
    assert samples.shape == (0,)


def test_rf64_takes_the_data_size_from_its_ds64_chunk(tmp_path: Path) -> None:
    ds64 = chunk(b"ds64", struct.pack("<QQQI", 0, len(TONE_BYTES), len(TONE), 0))
    data = riff(
        [ds64, fmt_chunk("s16", 1, 16000), chunk(b"data", TONE_BYTES, size=0xFFFFFFFF), chunk(b"LIST", b"tail")],
        kind=b"RF64",
        size=0xFFFFFFFF,
    )
    samples, _ = read_back(tmp_path, data)
    np.testing.assert_allclose(samples, TONE_READ, atol=1e-6)


def test_nan_and_infinity_in_a_float_wav_become_silence(tmp_path: Path) -> None:
    x = np.array([0.5, np.nan, np.inf, -np.inf, 1.5, -0.25]).reshape(-1, 1)
    samples, _ = read_back(tmp_path, wav_bytes(x, 16000, "f32"))
    np.testing.assert_allclose(samples, [0.5, 0, 0, 0, 1.5, -0.25])  # beyond full scale is kept


def test_12_bit_audio_in_16_bit_containers_and_24_bit_in_32_bit_plain_pcm(tmp_path: Path) -> None:
    q = np.array([2047, -2048, 1024], dtype="<i2") << 4  # 12-bit samples, left-justified
    fmt = chunk(b"fmt ", struct.pack("<HHIIHH", PCM, 1, 8000, 16000, 2, 12))
    samples, _ = read_back(tmp_path, riff([fmt, chunk(b"data", q.tobytes())]), "12.wav")
    np.testing.assert_allclose(samples, [2047 / 2048, -1.0, 0.5], atol=1e-6)
    q32 = np.array([2**22, -(2**23)], dtype="<i4") << 8  # 24 valid bits, block align says 4 bytes
    fmt = chunk(b"fmt ", struct.pack("<HHIIHH", PCM, 1, 8000, 32000, 4, 24))
    samples, _ = read_back(tmp_path, riff([fmt, chunk(b"data", q32.tobytes())]), "24in32.wav")
    np.testing.assert_allclose(samples, [0.5, -1.0], atol=1e-6)


def test_a_wav_read_through_a_pipe(tmp_path: Path) -> None:
    import os
    import threading

    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    data = wav_bytes(np.stack([TONE, TONE], axis=1), 16000, "f32")

    def feed() -> None:
        with open(fifo, "wb") as f:
            f.write(data)

    writer = threading.Thread(target=feed)
    writer.start()
    samples, _ = read_wav(fifo)
    writer.join()
    np.testing.assert_allclose(samples, TONE, atol=1e-6)


# -- one line for everything else -----------------------------------------------------------------


def test_not_a_file_not_there_not_a_wav(tmp_path: Path) -> None:
    one_line_error(tmp_path, "is a folder, not a wav file")
    one_line_error(tmp_path / "missing.wav", "no such wav file")
    (tmp_path / "zero.wav").write_bytes(b"")
    one_line_error(tmp_path / "zero.wav", "not a PCM wav file", "empty (0 bytes)")
    (tmp_path / "text.wav").write_text("hello, I am text\n")
    one_line_error(tmp_path / "text.wav", "not a PCM wav file", "RIFF/WAVE header", "ffmpeg -i")
    (tmp_path / "song.wav").write_bytes(b"ID3\x04\x00" + bytes(100))
    one_line_error(tmp_path / "song.wav", "looks like MP3")
    (tmp_path / "frame.wav").write_bytes(b"\xff\xfb\x90\x00" + bytes(100))
    one_line_error(tmp_path / "frame.wav", "looks like MP3")
    (tmp_path / "a.wav").write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(100))
    one_line_error(tmp_path / "a.wav", "looks like MP4/M4A")
    (tmp_path / "f.wav").write_bytes(b"fLaC" + bytes(100))
    one_line_error(tmp_path / "f.wav", "looks like FLAC")
    (tmp_path / "short.wav").write_bytes(b"RIFF\x04\x00")
    one_line_error(tmp_path / "short.wav", "cut short (6 bytes")
    (tmp_path / "avi.wav").write_bytes(riff([]).replace(b"WAVE", b"AVI "))
    one_line_error(tmp_path / "avi.wav", "RIFF 'AVI ' file, not WAVE")
    (tmp_path / "be.wav").write_bytes(b"RIFX" + riff([])[4:])
    one_line_error(tmp_path / "be.wav", "big-endian")
    with pytest.raises(AudioUnavailableError, match=r"no such wav file: ''"):
        read_wav("")


def test_a_wav_without_its_fmt_or_data_chunk_or_cut_inside_one(tmp_path: Path) -> None:
    (tmp_path / "nodata.wav").write_bytes(riff([fmt_chunk("s16", 1, 16000), chunk(b"LIST", b"info")]))
    one_line_error(tmp_path / "nodata.wav", "has no audio in it", "no data chunk")
    (tmp_path / "nofmt.wav").write_bytes(riff([chunk(b"data", TONE_BYTES)]))
    one_line_error(tmp_path / "nofmt.wav", "no fmt chunk")
    (tmp_path / "header.wav").write_bytes(riff([]))
    one_line_error(tmp_path / "header.wav", "no fmt chunk")
    full = riff([fmt_chunk("s16", 1, 16000), chunk(b"data", TONE_BYTES)])
    (tmp_path / "cutfmt.wav").write_bytes(full[:30])
    one_line_error(tmp_path / "cutfmt.wav", "ends inside its fmt chunk")
    (tmp_path / "cutlist.wav").write_bytes(riff([fmt_chunk("s16", 1, 16000), chunk(b"LIST", bytes(100))])[:-50])
    one_line_error(tmp_path / "cutlist.wav", "no data chunk", "ends inside its 'LIST' chunk")


@pytest.mark.parametrize(
    ("tag", "name"),
    [(0x0006, "A-law"), (0x0007, "mu-law"), (0x0002, "Microsoft ADPCM"), (0x0011, "IMA ADPCM"), (0x0055, "MP3")],
)
@pytest.mark.parametrize("extensible", [False, True], ids=["plain", "extensible"])
def test_compressed_encodings_say_what_they_are_and_how_to_convert(
    tmp_path: Path, tag: int, name: str, extensible: bool
) -> None:
    path = tmp_path / "call recording.wav"
    path.write_bytes(riff([fmt_chunk("u8", 1, 8000, extensible=extensible, tag=tag), chunk(b"data", bytes(80))]))
    message = one_line_error(path, f"holding {name} audio", "does not decode", "pcm_s16le", "sox")
    assert "'" + str(path) + "'" in message  # quoted for the shell: the name has a space


def test_unsupported_depths_and_damaged_headers_are_one_line(tmp_path: Path) -> None:
    def fmt(tag: int, channels: int, rate: int, block: int, bits: int) -> bytes:
        return chunk(b"fmt ", struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits))

    cases = [
        (fmt(PCM, 1, 8000, 8, 64), "64-bit integer PCM"),
        (fmt(IEEE_FLOAT, 1, 8000, 2, 16), "16-bit float"),
        (fmt(0x1234, 1, 8000, 2, 16), "unknown format 0x1234"),
        (fmt(PCM, 0, 8000, 2, 16), "no channels"),
        (fmt(PCM, 1, 0, 2, 16), "sample rate is 0 Hz"),
        (fmt(PCM, 1, 5_000_000, 2, 16), "5000000 Hz"),
        (fmt(PCM, 2, 8000, 3, 16), "3 bytes per frame"),
        (chunk(b"fmt ", struct.pack("<HHI", PCM, 1, 8000)), "fmt chunk is only 8 bytes"),
        (fmt(EXTENSIBLE, 1, 8000, 2, 16), "extensible fmt chunk is only 16 bytes"),
    ]
    for i, (fmt_body, needle) in enumerate(cases):
        path = tmp_path / f"case{i}.wav"
        path.write_bytes(riff([fmt_body, chunk(b"data", bytes(16))]))
        one_line_error(path, needle)
    b_format = uuid.UUID("00000001-0721-11d3-8644-c8c1ca000000")  # ambisonic B-format PCM: not a plain tag
    ambisonic = fmt_chunk("s16", 4, 48000, extensible=True)[:-16] + b_format.bytes_le
    (tmp_path / "ambi.wav").write_bytes(riff([ambisonic, chunk(b"data", bytes(16))]))
    one_line_error(tmp_path / "ambi.wav", "unknown extensible subformat")


@st.composite
def damaged_wavs(draw: st.DrawFn) -> bytes:
    """A valid wav, then cut, overwritten and extended at random; or any bytes at all."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=200))
    kind = draw(st.sampled_from(KINDS))
    extensible = kind == "s24in32" or draw(st.booleans())
    x = draw(arrays(np.float32, (draw(st.integers(0, 20)), draw(st.integers(1, 3))), elements=st.floats(-1, 1)))
    data = bytearray(wav_bytes(x.astype(np.float64), 16000, kind, extensible=extensible))
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, len(data) - 1))
        data[i] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data) + draw(st.binary(max_size=20))


@settings(max_examples=500, deadline=None)
@given(data=damaged_wavs())
def test_any_bytes_read_as_audio_or_one_line_error(data: bytes, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "x.wav"
    path.write_bytes(data)
    try:
        samples, rate = read_wav(path)
    except AudioUnavailableError as e:
        assert "\n" not in str(e) and str(path) in str(e)
    else:
        assert samples.dtype == np.float32 and samples.ndim == 1 and 0 < rate <= 384_000
        assert np.all(np.isfinite(samples))


# -- through the command line ------------------------------------------------------------------------


@pytest.mark.parametrize("what", ["folder", "empty", "missing", "alaw"])
def test_voice_input_wav_problems_are_one_line_and_exit_6(
    what: str, tmp_path: Path, starter_gguf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = {"folder": tmp_path, "empty": tmp_path / "q.wav", "missing": tmp_path / "nope.wav"}.get(
        what, tmp_path / "alaw.wav"
    )
    if what == "empty":
        path.write_bytes(b"")
    elif what == "alaw":
        path.write_bytes(riff([fmt_chunk("u8", 1, 8000, tag=0x0006), chunk(b"data", bytes(80))]))
    rc = main(["voice", "-m", str(starter_gguf), "--no-speak", "--input-wav", str(path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 6 and len(err) == 1, err
    assert str(path) in err[0] and "Traceback" not in err[0]
