"""Formatting of the live figures for the status bar (Textual content markup, plain text without colour)."""

from __future__ import annotations

from edgeassist.engine.base import Stats
from edgeassist.tui.stream import Chunk
from edgeassist.units import format_seconds

SEP = " │ "
BACKENDS = {"cpu": "CPU", "metal": "Metal", "cuda": "CUDA", "vulkan": "Vulkan", "hip": "ROCm", "sycl": "SYCL"}
"""How backends are written for people."""


def speed(tokens_per_s: float | None, ms_per_token: float | None, target_ms: float) -> str:
    """`182 tok/s │ 5.5 ms/tok ≤50`, coloured by which side of the target the decode time is on."""
    rate = f"{tokens_per_s:.1f} tok/s" if tokens_per_s else "– tok/s"
    if ms_per_token is None:
        return f"{rate}{SEP}– ms/tok"
    ok = ms_per_token <= target_ms
    # The sign says it without colour too (NO_COLOR, monochrome terminals).
    mark = f"≤{target_ms:g}" if ok else f">{target_ms:g}"
    style = "$success" if ok else "$error"
    return f"{rate}{SEP}[{style}]{ms_per_token:.1f} ms/tok {mark}[/]"


def context(used: int | None, n_ctx: int | None) -> str:
    """`ctx 312/4096`."""
    if not n_ctx:
        return "ctx –"
    return f"ctx {used or 0}/{n_ctx}"


def pictures(stats: Stats) -> str | None:
    """`img 256 tok · 410 ms`: the prompt's pictures' tokens and the encoder's time; None for a reply without pictures.

    Pictures the encoder did not read again (earlier in the chat, kept in the model's state) say `cached`.
    """
    if not stats.images:
        return None
    count = f" ×{stats.images}" if stats.images > 1 else ""
    read = format_seconds(stats.image_encode_s) if stats.images_encoded else "cached"
    return f"img{count} {stats.image_tokens} tok · {read}"


def final_figures(stats: Stats, target_ms: float) -> str:
    """The figures of a finished reply, from its Done stats (and its pictures' when it had any)."""
    parts = [
        speed(stats.tokens_per_s(), stats.decode_ms_per_token(), target_ms),
        f"TTFT {format_seconds(stats.ttft_s)}",
    ]
    image = pictures(stats)
    if image is not None:
        parts.append(image)
    parts.append(context(stats.context_used, stats.n_ctx))
    return SEP.join(parts)


def live_figures(chunk: Chunk, target_ms: float, n_ctx: int | None, prompt_tokens: int | None = None) -> str:
    """Running figures while a reply streams (rate from pieces received; exact ones come with Done)."""
    rate = chunk.rate()
    ms = 1000 / rate if rate else None
    used = (prompt_tokens or 0) + chunk.pieces if prompt_tokens else None
    parts = [speed(rate, ms, target_ms), f"TTFT {format_seconds(chunk.first_s)}"]
    parts.append(context(used, n_ctx) if used is not None else "ctx …")
    return SEP.join(parts)


LABEL_SEP = " · "


def model_label(name: str, quant: str | None, backend: str) -> str:
    """`qwen3.5-0.8b · Q4_K_M · CPU`: the name first, then what a narrow status bar drops first.

    An empty `backend` (not known yet: the engine is still finding out) is left out.
    """
    parts = [name]
    if quant and quant.lower() not in name.lower():
        parts.append(quant.upper())
    if backend:
        parts.append(BACKENDS.get(backend, backend))
    return LABEL_SEP.join(parts)


def shorter_labels(label: str) -> list[str]:
    """`label` and its shorter forms, longest first: without the quant, then the name alone.

    A narrow status bar keeps the model's name whole for as long as it can.
    """
    parts = label.split(LABEL_SEP)
    if len(parts) < 3:
        return [label] if len(parts) < 2 else [label, parts[0]]
    name, backend = parts[0], parts[-1]
    return [label, LABEL_SEP.join([name, backend]), name]


def shorter_figures(markup: str) -> list[str]:
    """`markup` (figures joined by `SEP`) and its shorter forms, longest first.

    The tok/s rate goes first (the ms/tok beside it says the same, with the verdict), then the
    pictures' figures, then TTFT; the ms/tok and the context stay. A status line that is not figures
    has no shorter form.
    """
    parts = markup.split(SEP)
    forms = [markup]
    for drop in ("tok/s", "img", "TTFT"):
        kept = [p for p in parts if not (p.endswith(drop) if drop == "tok/s" else p.startswith(drop))]
        if len(kept) < len(parts):
            parts = kept
            forms.append(SEP.join(parts))
    return forms
