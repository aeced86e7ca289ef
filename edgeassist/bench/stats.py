"""Small statistics for the bench: percentiles, medians with their spread, gaps and histograms."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from edgeassist.units import median as median  # the bench's median is the package's one


def percentile(samples: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0-100) of `samples`, linearly interpolated (numpy's default method)."""
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0-100")
    xs = sorted(samples)
    pos = (len(xs) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def gaps(times: Sequence[float]) -> list[float]:
    """Differences between consecutive timestamps."""
    return [b - a for a, b in zip(times, times[1:], strict=False)]


@dataclass(frozen=True)
class Spread:
    """A median over repetitions, with the smallest and largest value."""

    median: float
    """Median of the samples."""
    min: float
    """Smallest sample."""
    max: float
    """Largest sample."""
    n: int
    """Number of samples."""

    @classmethod
    def of(cls, samples: Sequence[float]) -> Spread | None:
        """The spread of `samples`; None when there are none."""
        if not samples:
            return None
        return cls(median(samples), min(samples), max(samples), len(samples))

    def scaled(self, factor: float) -> Spread:
        """The same spread in other units (seconds to milliseconds: 1000)."""
        return Spread(self.median * factor, self.min * factor, self.max * factor, self.n)


@dataclass(frozen=True)
class Percentiles:
    """The distribution of many samples (per-token latencies)."""

    p10: float
    """10th percentile (the fast end; other processes only ever add time, so it is the least noisy)."""
    p50: float
    """Median."""
    p90: float
    """90th percentile."""
    p99: float
    """99th percentile."""
    mean: float
    """Arithmetic mean."""
    min: float
    """Smallest sample."""
    max: float
    """Largest sample."""
    n: int
    """Number of samples."""

    @classmethod
    def of(cls, samples: Sequence[float]) -> Percentiles | None:
        """The percentiles of `samples`; None when there are none."""
        if not samples:
            return None
        return cls(
            p10=percentile(samples, 10),
            p50=percentile(samples, 50),
            p90=percentile(samples, 90),
            p99=percentile(samples, 99),
            mean=sum(samples) / len(samples),
            min=min(samples),
            max=max(samples),
            n=len(samples),
        )

    def scaled(self, factor: float) -> Percentiles:
        """The same distribution in other units."""
        return Percentiles(
            self.p10 * factor,
            self.p50 * factor,
            self.p90 * factor,
            self.p99 * factor,
            self.mean * factor,
            self.min * factor,
            self.max * factor,
            self.n,
        )


@dataclass(frozen=True)
class Bin:
    """One bar of a histogram: samples in [lo, hi)."""

    lo: float
    """Lower edge (inclusive)."""
    hi: float
    """Upper edge (exclusive; the last bin includes it)."""
    count: int
    """Samples in the bin."""


def histogram(
    samples: Sequence[float], bins: int = 12, *, clip: float = 99.0, upper: float | None = None
) -> tuple[list[Bin], int]:
    """Equal-width bins from the smallest sample to the `clip` percentile (or `upper` if lower), and the count above.

    Clipping keeps a few stalls from squeezing every other bar into one bin; the samples above
    are counted separately so nothing is hidden.
    """
    if not samples:
        return [], 0
    lo = min(samples)
    hi = percentile(samples, clip) if len(samples) > 20 else max(samples)
    if upper is not None and lo < upper < hi:
        hi = upper
    if hi <= lo:
        return [Bin(lo, lo, len(samples))], 0
    width = (hi - lo) / bins
    counts = [0] * bins
    above = 0
    for x in samples:
        if x > hi:
            above += 1
            continue
        counts[min(int((x - lo) / width), bins - 1)] += 1
    return [Bin(lo + i * width, lo + (i + 1) * width, c) for i, c in enumerate(counts)], above
