"""Mono float32 samples: whisper's rate, resampling, levels, and conversion from and to integers."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

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
