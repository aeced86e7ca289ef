"""Figures for people, and the median: the one copy of each, for every layer to share."""

from __future__ import annotations

from collections.abc import Sequence


def format_bytes(n: float, *, coarse: bool = False, gb_digits: int = 1) -> str:
    """A size in decimal units: `512 B`, `1.5 KB`, `12.3 MB`, `4.2 GB`.

    `coarse` gives only whole megabytes or gigabytes (`532 MB`, `1.3 GB`), for model files;
    `gb_digits` is how many decimals gigabytes get.
    """
    if coarse:
        return f"{n / 1e9:.{gb_digits}f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"
    for unit in ("B", "KB", "MB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.{gb_digits}f} GB"


def format_seconds(seconds: float | None) -> str:
    """`850 ms` under a second, `1.25 s` from there on, `–` for none."""
    if seconds is None:
        return "–"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def median(samples: Sequence[float]) -> float:
    """The median: the middle sample, or halfway between the two middle ones (numpy's 50th percentile)."""
    if not samples:
        raise ValueError("median of no samples")
    xs = sorted(samples)
    mid = len(xs) // 2
    # Interpolated as `lo + (hi - lo) / 2`, as numpy does, so bench results stay what they were.
    return xs[mid] if len(xs) % 2 else xs[mid - 1] + (xs[mid] - xs[mid - 1]) * 0.5
