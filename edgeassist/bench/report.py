"""Rendering bench results: the terminal report with its latency histogram, markdown, and a side-by-side comparison.

Plain text only (no Textual, no colours), so the same output can be piped, pasted or logged. A
result that holds local and remote runs (`edgeassist bench --endpoint URL --compare`) ends with
the two side by side; `render_compare` does the same for two saved results.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edgeassist.bench.results import NO_RAW_REMOTE, BenchResult, ContentionResult, ModelRun, RunSummary, VoiceStage
from edgeassist.bench.stats import Percentiles, Spread, gaps, histogram, median, percentile
from edgeassist.system import SystemReport
from edgeassist.units import format_bytes, format_seconds

_BLOCKS = " ▏▎▍▌▋▊▉█"


# -- number formatting --------------------------------------------------------------------------------


def _bytes(n: int | None) -> str:
    return "–" if n is None else format_bytes(n, coarse=True, gb_digits=2)


def _num(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _spread_s(s: Spread | None) -> tuple[str, str]:
    if s is None:
        return "–", ""
    return format_seconds(s.median), f"{format_seconds(s.min)}–{format_seconds(s.max)}" if s.n > 1 else ""


def _ratio_mark(ratio: float | None, limit: float = 1.05) -> str:
    if ratio is None:
        return "–"
    return f"{ratio:.3f} {'ok' if ratio <= limit else 'over'} (target ≤ {limit:.2f})"


def threads_text(n: int) -> str:
    """`1 thread`, `4 threads`."""
    return f"{n} thread" if n == 1 else f"{n} threads"


def run_label(run: ModelRun) -> str:
    """Which run this is, in a few words: `smollm2-135m · 2 threads`, `m on http://host:8080/v1 (remote)`."""
    if run.endpoint is not None:
        return f"{run.model} on {run.endpoint} (remote)"
    return f"{run.model} · {threads_text(run.threads)}"


RATIO_TARGET = 1.05
"""edgeassist's ms/token over the raw loop's should stay at or under this."""


# -- the system ---------------------------------------------------------------------------------------


def system_lines(s: SystemReport) -> list[tuple[str, str]]:
    """The system report as (label, value) rows."""
    rows = [
        (
            "CPU",
            f"{s.cpu_model} · {s.physical_cores} physical / {s.logical_cores} logical cores"
            f" · threads to try: {s.recommended_threads}",
        )
    ]
    if s.cores_free is not None:
        busy = " (other programs keep the rest busy)" if s.cores_free < s.physical_cores else ""
        rows.append(("cores free", f"{s.cores_free} of {s.physical_cores}{busy}"))
    if s.clusters:
        parts = []
        for c in s.clusters:
            mhz = f" @ {c.max_mhz:.0f} MHz" if c.max_mhz else ""
            cpus = f"cpus {c.cpus[0]}-{c.cpus[-1]}" if len(c.cpus) > 1 else f"cpu {c.cpus[0]}"
            parts.append(f"{len(c.cpus)}x {c.core or 'core'}{mhz} ({cpus})")
        rows.append(("clusters", " + ".join(parts)))
    rows.append(("SIMD", " ".join(s.simd) or "–"))
    avail = f" ({_bytes(s.ram_available_bytes)} available)" if s.ram_available_bytes else ""
    rows.append(("RAM", _bytes(s.ram_total_bytes) + avail))
    if s.board:
        rows.append(("board", s.board))
    rows.append(("OS", f"{s.os} · kernel {s.kernel} · {s.arch} · {s.python}"))
    if s.llama is not None:
        lb = s.llama
        ggml = f" · ggml {lb.ggml_version}" if lb.ggml_version else ""
        devices = f" · {', '.join(lb.devices)}" if lb.devices else ""
        repack = "" if lb.repacking else " · weights not repacked (AMX build: its kernels crash)"
        rows.append(
            (
                "llama.cpp",
                f"llama-cpp-python {lb.llama_cpp_python} · llama.cpp {lb.llama_version}{ggml}"
                f" · backend {lb.backend}{devices}{repack}",
            )
        )
    note = s.thread_note()
    if note:
        rows.append(("note", note))
    return rows


# -- one run --------------------------------------------------------------------------------------------


def run_title(run: ModelRun) -> str:
    """`model (quant, size, kind) · N threads · backend`; `model · remote · endpoint` for a server's."""
    if run.endpoint is not None:
        state = "" if run.complete else (" · FAILED: " + run.error if run.error else " · incomplete")
        return f"{run.model} · remote · {run.endpoint} · n_ctx {run.n_ctx}{state}"
    bits = [run.quant.upper() if run.quant else None, _bytes(run.file_bytes)]
    if run.synthetic:
        bits.append("random weights")
    if run.starter:
        bits.append("starter")
    if run.recurrent:
        bits.append("hybrid")
    details = ", ".join(b for b in bits if b)
    state = "" if run.complete else (" · FAILED: " + run.error if run.error else " · incomplete")
    return f"{run.model} ({details}) · {threads_text(run.threads)} · {run.backend} · n_ctx {run.n_ctx}{state}"


def _decode_line(p: Percentiles | None, tps: Spread | None) -> str:
    if p is None:
        return "–"
    rate = f" · {tps.median:.1f} tok/s" if tps else ""
    return f"p50 {p.p50:.1f} · p90 {p.p90:.1f} · p99 {p.p99:.1f} ms/token{rate}"


def _aligned(rows: list[tuple[str, str, str, str]]) -> list[str]:
    """(label, value, range, note) rows as aligned lines."""
    width = max(len(r[0]) for r in rows)
    out = []
    for label, value, spread, note in rows:
        line = f"  {label:<{width}}  {value}"
        if spread or note:
            line = f"  {label:<{width}}  {value:<9} {spread:<17} {note}".rstrip()
        out.append(line)
    return out


def run_lines(run: ModelRun, target_ms: float) -> list[str]:
    """The figures of one run as aligned text lines."""
    s = run.summary
    if s is None or (run.remote and not run.repetitions):
        return ["  (nothing measured)"]
    if run.remote:
        return remote_lines(run, s)
    rows: list[tuple[str, str, str, str]] = []

    def add(label: str, spread: Spread | None, note: str = "") -> None:
        med, rng = _spread_s(spread)
        rows.append((label, med, rng, note))

    add("load", s.load_s)
    prefill = f"{s.prompt_tokens}-token prompt" if s.prompt_tokens else ""
    if s.prefill_tps:
        prefill += f" · prefill {s.prefill_tps.median:.0f} tok/s"
    add("time to first token", s.ttft_s, prefill)
    if s.first_event_s:
        add("  first event at the front end", s.first_event_s)
    fu = ""
    if s.followup_evaluated_tokens is not None and s.followup_prompt_tokens:
        fu = f"evaluated {s.followup_evaluated_tokens} of {s.followup_prompt_tokens} tokens"
        if s.followup_ttft_s and s.ttft_s and s.ttft_s.median > 0:
            fu += f" · {s.followup_ttft_s.median / s.ttft_s.median:.2f}x the first"
    add("follow-up time to first token", s.followup_ttft_s, fu)
    if s.resumed_ttft_s is not None:
        res = f"evaluated {s.resumed_evaluated_tokens} of {s.resumed_prompt_tokens} tokens"
        if s.resumed_ratio is not None:
            res += f" · {s.resumed_ratio:.2f}x in-process"
        if s.state_bytes is not None:
            res += f" · state {_bytes(s.state_bytes)}"
        add("resumed chat time to first token", s.resumed_ttft_s, res)
    rows += image_rows(run, s)
    rows.append(("decode (edgeassist)", _decode_line(s.decode_ms, s.decode_tps), "", ""))
    if s.raw_decode_ms is not None:
        raw = _decode_line(s.raw_decode_ms, s.raw_decode_tps)
        if s.raw_prefill_tps:
            raw += f" · prefill {s.raw_prefill_tps.median:.0f} tok/s"
        rows.append(("decode (raw llama.cpp)", raw, "", ""))
        ratio = _ratio_mark(s.ratio, RATIO_TARGET)
        if s.ratio_p10 is not None:
            ratio += f"; at p10 {s.ratio_p10:.3f}"
        if s.ratio is not None and s.ratio < 0.97:
            ratio += " (below 1 is noise: the machine was busier during the raw loop)"
        rows.append(("edgeassist / raw", ratio, "", ""))
        if s.breakdown is not None:
            b = s.breakdown
            rows.append(
                (
                    "  excess per token",
                    f"{b.excess_ms:+.2f} ms = sampling {b.sample_ms:.2f} + detokenize {b.detokenize_ms:.3f}"
                    f" + dispatch and the rest {b.dispatch_ms:+.2f}",
                    "",
                    "",
                )
            )
        if s.ttft_ratio is not None:
            rows.append(("  time to first token / raw", f"{s.ttft_ratio:.2f}", "", ""))
    elif run.no_raw_reason:
        rows.append(("raw baseline", f"none: {run.no_raw_reason}", "", ""))
    if s.tool_decode_ms is not None:
        rows.append(("tool call (grammar held)", tool_text(s), "", ""))
    mem = _bytes(s.peak_rss_bytes)
    if s.model_rss_bytes is not None:
        mem += f" (model and context: +{_bytes(s.model_rss_bytes)})"
    if s.rss_anon_bytes is not None and s.rss_file_bytes is not None:
        mem += f"; after the turns {_bytes(s.rss_anon_bytes)} allocated + {_bytes(s.rss_file_bytes)} mapped file"
    if run.peak_rss_source == "process":
        mem += " (the process's lifetime peak)"
    rows.append(("peak memory", mem, "", ""))
    if s.verdict is not None:
        rows.append(("verdict", verdict_text(s), "", ""))
    return _aligned(rows)


def _pictures(n: int | None) -> str:
    return f"{n} picture" if n == 1 else f"{n} pictures"


def image_rows(run: ModelRun, s: RunSummary) -> list[tuple[str, str, str, str]]:
    """The image turns' rows (`--image`): the picture's tokens, encoder and first token, then the follow-up."""
    if run.no_image_reason is not None:
        return [("image", f"none: {run.no_image_reason}", "", "")]
    if s.image_ttft_s is None:
        return []
    med, rng = _spread_s(s.image_ttft_s)
    note = f"{_pictures(s.images)}, {s.image_tokens} tokens of a {s.image_prompt_tokens}-token prompt"
    if s.image_encode_s is not None:
        note += f" · encode {format_seconds(s.image_encode_s.median)}"
    if s.image_prompt_eval_s is not None:
        note += f" · prompt {format_seconds(s.image_prompt_eval_s.median)}"
    if s.ttft_s is not None:
        note += f" · text-only {format_seconds(s.ttft_s.median)}"
    rows = [("image time to first token", med, rng, note)]
    if s.image_followup_ttft_s is not None:
        med, rng = _spread_s(s.image_followup_ttft_s)
        fu = (
            f"evaluated {s.image_followup_evaluated_tokens} of {s.image_followup_prompt_tokens} tokens"
            f" · read the picture again: {_again(s.image_followup_read_again)}"
        )
        rows.append(("  follow-up after the picture", med, rng, fu))
    if run.vision_load_s is not None:
        load = format_seconds(run.vision_load_s)
        rows.append(("  first picture after load", load, "", "the projector loads with it (no encoding)"))
    return rows


def _again(read_again: bool | None) -> str:
    return "–" if read_again is None else ("YES (it should not)" if read_again else "no")


def image_text(run: ModelRun) -> str | None:
    """The image turns in one line (`1 picture 252 tokens · encode 1.23 s · ...`); None without `--image`."""
    if run.no_image_reason is not None:
        return f"none: {run.no_image_reason}"
    s = run.summary
    if s is None or s.image_ttft_s is None:
        return None
    encode = format_seconds(s.image_encode_s.median) if s.image_encode_s else "–"
    text_only = f" (text-only {format_seconds(s.ttft_s.median)})" if s.ttft_s else ""
    return (
        f"{_pictures(s.images)} {s.image_tokens} tokens · encode {encode}"
        f" · time to first token {format_seconds(s.image_ttft_s.median)}{text_only}"
        f" · follow-up read it again: {_again(s.image_followup_read_again)}"
    )


def tool_text(s: RunSummary) -> str:
    """The forced tool calls in one line: grammar-held ms/token, against free decoding, and the slow path's share."""
    p = s.tool_decode_ms
    if p is None:
        return "–"
    text = f"p50 {p.p50:.1f} · p90 {p.p90:.1f} ms/token"
    if s.tool_ratio is not None:
        text += f" · {s.tool_ratio:.2f}x free decode"
    if s.tool_redraw_share is not None:
        text += f" · {s.tool_redraw_share:.0%} redrawn (slow path)"
    if s.tool_tokens is not None and s.tool_calls:
        text += f" · {s.tool_tokens} tokens a call, {s.tool_calls_complete or 0} of {s.tool_calls} complete"
    return text


def jitter_text(s: RunSummary) -> str:
    """`p90−p50 1.1 ms · sd 0.8 ms · longest gap 12.0 ms (7 gaps)`, or a dash."""
    j = s.jitter
    if j is None:
        return "–"
    text = f"p90−p50 {j.spread_ms:.1f} ms · sd {j.stdev_ms:.1f} ms · longest gap {j.max_gap_ms:.1f} ms ({j.gaps} gaps)"
    if j.tokens_per_chunk is not None and j.tokens_per_chunk > 1.05:
        text += f"; {j.tokens_per_chunk:.1f} tokens a chunk: each gap spans several tokens"
    return text


def server_lines(s: RunSummary) -> list[tuple[str, str]]:
    """What the server reported about a remote run, and the client's time beyond it."""
    sv = s.server
    if sv is None or sv.reported == 0:
        return [("server's own figures", "none sent (no llama-server `timings`): compute and network not told apart")]
    parts = []
    if sv.prompt_s is not None:
        part = f"prompt {format_seconds(sv.prompt_s.median)}"
        if sv.prefill_tps is not None:
            part += f" ({sv.prefill_tps.median:.0f} tok/s)"
        parts.append(part)
    if sv.decode_ms is not None:
        parts.append(f"decode {sv.decode_ms.median:.1f} ms/token")
    rows = [("server's own figures", " · ".join(parts) or "–")]
    beyond = []
    if sv.ttft_overhead_s is not None:
        beyond.append(f"{sv.ttft_overhead_s.median * 1000:+.0f} ms before the first token")
    if sv.decode_overhead_ms is not None:
        beyond.append(f"{sv.decode_overhead_ms.median:+.2f} ms/token")
    if beyond:
        rows.append(("  the client saw beyond it", ", ".join(beyond) + ": network, HTTP and queueing"))
    return rows


def remote_lines(run: ModelRun, s: RunSummary) -> list[str]:
    """The figures of a remote run: the client's view of the stream, the server's where it reported them."""
    rows: list[tuple[str, str, str, str]] = []

    def add(label: str, spread: Spread | None, note: str = "") -> None:
        med, rng = _spread_s(spread)
        rows.append((label, med, rng, note))

    counted = any(r.first.server is not None and r.first.server.prompt_tokens is not None for r in run.repetitions)
    prompt = ""
    if s.prompt_tokens:
        prompt = f"{s.prompt_tokens}-token prompt" if counted else f"~{s.prompt_tokens}-token prompt (estimated)"
    add("time to first token", s.ttft_s, prompt + " · as this machine saw it")
    if s.first_event_s:
        add("  first event at the front end", s.first_event_s)
    fu = []
    cached = [r.followup.server for r in run.repetitions if r.followup is not None and r.followup.server is not None]
    if cached and all(c.evaluated_tokens is not None for c in cached) and s.followup_prompt_tokens:
        fu.append(f"the server evaluated {s.followup_evaluated_tokens} of {s.followup_prompt_tokens} tokens")
    if s.followup_ttft_s and s.ttft_s and s.ttft_s.median > 0:
        fu.append(f"{s.followup_ttft_s.median / s.ttft_s.median:.2f}x the first")
    add("follow-up time to first token", s.followup_ttft_s, " · ".join(fu))
    rows.append(("decode (as received)", _decode_line(s.decode_ms, s.decode_tps), "", ""))
    rows.append(("network jitter", jitter_text(s), "", ""))
    rows += [(label, value, "", "") for label, value in server_lines(s)]
    rows.append(("raw baseline", f"none: {run.no_raw_reason or NO_RAW_REMOTE}", "", ""))
    rows += image_rows(run, s)
    rows.append(("load, memory, threads", "the server's: not measured here", "", ""))
    if s.verdict is not None:
        rows.append(("verdict", verdict_text(s), "", ""))
    return _aligned(rows)


def verdict_text(s: RunSummary) -> str:
    """One line: does decoding meet the target at p50 and p90."""
    v = s.verdict
    if v is None or v.status == "unknown":
        return "no decode samples"
    mark = {"meets": "MEETS", "p50-only": "MEETS AT p50 ONLY", "misses": "MISSES"}[v.status]
    return f"{mark} the {v.target_ms:g} ms/token target (p50 {_num(v.p50_ms)} ms, p90 {_num(v.p90_ms)} ms)"


def histogram_lines(run: ModelRun, target_ms: float, *, bins: int = 12, width: int = 40) -> list[str]:
    """The per-token latency histogram of a run (edgeassist's decode gaps, all repetitions)."""
    samples = [g * 1000 for rep in run.repetitions for g in gaps(rep.first.token_times)]
    if not samples:
        return []
    # Up to 3x the median (or 1.5x the target): the shape around typical tokens; stalls are counted below.
    upper = max(3 * percentile(samples, 50), 1.5 * target_ms)
    bars, above = histogram(samples, bins, upper=upper)
    if not bars:
        return []
    top = max(b.count for b in bars) or 1
    what = "gaps between streamed chunks as received" if run.remote else "per-token latency"
    out = [f"  {what}, ms ({len(samples)} {'gaps' if run.remote else 'tokens'}; target {target_ms:g} ms)"]
    marked = False
    for b in bars:
        cells = b.count / top * width
        full = int(cells)
        bar = "█" * full + (_BLOCKS[int((cells - full) * 8)] if full < width else "")
        mark = ""
        if not marked and b.lo <= target_ms < b.hi:
            mark, marked = "  ◂ target", True
        out.append(f"  {b.lo:7.1f}–{b.hi:<7.1f}│{bar:<{width}} {b.count}{mark}")
    if above:
        out.append(f"  {'slower':>15}│ {above} more, up to {max(samples):.1f} ms")
    if not marked:
        side = "under" if bars[-1].hi <= target_ms else "over"
        out.append(f"  {'':>15}  target {target_ms:g} ms: {'all' if side == 'under' else 'most'} tokens {side} it")
    return out


# -- the whole result -----------------------------------------------------------------------------------


def settings_line(result: BenchResult, *, raw_baseline: bool = True) -> str:
    """How the bench was run, in one line (`raw_baseline=False`: without whether the raw loop ran)."""
    c = result.config
    samp = c.sampling
    sampling = (
        f"temperature {samp.get('temperature', 0):g}, top-p {samp.get('top_p', 0):g}, top-k {samp.get('top_k', 0):g}"
    )
    raw = ""
    if raw_baseline and not c.raw_baseline:
        raw = "; no raw baseline" + (" (the model ran on a server)" if all(r.remote for r in result.runs) else "")
    image = ""
    if c.image is not None:
        picture = "the generated test picture" if c.image.source == "generated" else c.image.source
        image = f"; image turns with {picture} ({c.image.width}x{c.image.height} {c.image.format})"
    return (
        f"{c.prompt_tokens}-token prompt, {c.gen_tokens} tokens generated, {c.followup_tokens}-token follow-up; "
        f"{c.repetitions} repetition{'s' if c.repetitions != 1 else ''} after {c.warmup} warm-up; "
        f"target {c.target_ms:g} ms/token; {sampling}{raw}{image}"
    )


def sweep_table(runs: Sequence[ModelRun]) -> list[list[str]]:
    """One row per run (header first): the headline figures, for sweeps over models and threads.

    A remote run's threads read `remote`; with one in the table, a jitter column (p90 − p50 gap, ms) is added;
    with image turns in it, an image TTFT column.
    """
    with_jitter = any(r.remote for r in runs)
    with_image = any(r.summary is not None and r.summary.image_ttft_s is not None for r in runs)
    rows = [
        [
            "model",
            "threads",
            "load",
            "TTFT",
            "prefill t/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "tok/s",
            "raw p50",
            "ea/raw",
            "follow-up",
            "peak mem",
            "verdict",
        ]
    ]
    if with_jitter:
        rows[0].insert(9, "jitter")
    image_at = rows[0].index("peak mem")
    if with_image:
        rows[0].insert(image_at, "image TTFT")
    for run in runs:
        s = run.summary
        if s is None:
            continue
        d, r = s.decode_ms, s.raw_decode_ms
        row = [
            run.model,
            "remote" if run.remote else str(run.threads),
            format_seconds(s.load_s.median) if s.load_s else "–",
            format_seconds(s.ttft_s.median) if s.ttft_s else "–",
            _num(s.prefill_tps.median if s.prefill_tps else None, 0),
            _num(d.p50 if d else None),
            _num(d.p90 if d else None),
            _num(d.p99 if d else None),
            _num(s.decode_tps.median if s.decode_tps else None),
            _num(r.p50 if r else None),
            _num(s.ratio, 3),
            format_seconds(s.followup_ttft_s.median) if s.followup_ttft_s else "–",
            _bytes(s.peak_rss_bytes),
            s.verdict.status if s.verdict else "–",
        ]
        if with_jitter:
            row.insert(9, _num(s.jitter.spread_ms if s.jitter else None))
        if with_image:
            row.insert(image_at, format_seconds(s.image_ttft_s.median) if s.image_ttft_s else "–")
        rows.append(row)
    return rows


def _text_table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for n, row in enumerate(rows):
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        out.append(indent + "  ".join(cells).rstrip())
        if n == 0:
            out.append(indent + "  ".join("-" * w for w in widths))
    return out


def recommendation_lines(result: BenchResult) -> list[str]:
    """The recommendation and each catalog candidate's estimate."""
    rec = result.recommendation
    if rec is None:
        return []
    head = rec.model or "none of the catalog models"
    if rec.model is None and rec.model_p50 is not None:
        head += f" at p90; {rec.model_p50} at p50 (typical tokens)"
    elif rec.model_p50 is not None and rec.model_p50 != rec.model:
        head += f" (at p50 alone: {rec.model_p50})"
    out = [
        f"Recommendation (an estimate): {head}",
        f"  scaled from {rec.basis_model} at {threads_text(rec.basis_threads)}: {rec.bandwidth_gbs:.1f} GB/s "
        f"of weights read per second of decoding, p90/p50 {rec.p90_over_p50:.2f}; RAM {_bytes(rec.ram_total_bytes)}",
    ]
    rows = [["model", "size", "RAM est.", "p50 ms", "p90 ms", "fits RAM", "meets target"]]
    for c in rec.candidates:
        rows.append(
            [
                c.model,
                _bytes(c.file_bytes),
                f"{c.ram_gb:.1f} GB",
                f"{c.predicted_p50_ms:.0f}",
                f"{c.predicted_p90_ms:.0f}",
                "yes" if c.fits_ram else "no",
                "yes" if c.meets_target else "no",
            ]
        )
    out += _text_table(rows)
    out.append(f"  {rec.note}")
    return out


VOICE_LABELS = {
    "stt_final_s": "speech to text: release → transcript",
    "stt_rtf": "speech to text: real-time factor",
    "llm_first_token_s": "model: transcript → first token",
    "llm_first_sentence_s": "model: transcript → first sentence",
    "tts_first_s": "text to speech: first chunk",
    "tts_rtf": "text to speech: real-time factor",
    "first_audio_s": "release → first audio",
    "speech_end_to_first_audio_s": "end of speech → first audio",
    "hands_free_end_of_turn_s": "hands-free: end-of-turn silence",
    "hands_free_speech_end_to_first_audio_s": "hands-free: end of speech → first audio",
}
"""How the report names the voice pipeline's stages (others are shown as they come)."""


def voice_lines(result: BenchResult) -> list[str]:
    """The speech stages, when measured."""
    v = result.voice
    if v is None:
        return []
    if v.error:
        return [f"Voice: not measured ({v.error})"]
    on = f" · {v.model} · {threads_text(v.threads)}" if v.model and v.threads else ""
    rows = [["stage", "median", "min–max", "n"]]
    headline: VoiceStage | None = None
    for st in v.stages:
        if st.name.endswith("_rtf"):
            sm = st.summary
            med = _num(sm.median, 2) if sm else "–"
            rng = f"{sm.min:.2f}–{sm.max:.2f}" if sm and sm.n > 1 else ""
        else:
            med, rng = _spread_s(st.summary)
        rows.append([VOICE_LABELS.get(st.name, st.name), med, rng, str(len(st.samples_s))])
        if st.name == "speech_end_to_first_audio_s":
            headline = st
    out = [f"Voice pipeline{on}", *_text_table(rows)]
    if headline is not None and headline.summary is not None and v.target_s:
        met = headline.summary.median <= v.target_s
        out.append(
            f"  verdict: end of speech → first audio {format_seconds(headline.summary.median)} median, "
            f"{'meets' if met else 'misses'} the {v.target_s:.1f} s target"
        )
    return out


def render_text(result: BenchResult, *, show_histogram: bool = True) -> str:
    """The full terminal report."""
    out = [f"edgeassist bench · {result.created} · edgeassist {result.edgeassist_version}"]
    if result.interrupted:
        out.append("INTERRUPTED: partial results (what was measured before Ctrl+C)")
    out += ["", "System"]
    rows = system_lines(result.system)
    width = max(len(k) for k, _ in rows)
    out += [f"  {k:<{width}}  {v}" for k, v in rows]
    out += ["", "Settings: " + settings_line(result)]
    for run in result.runs:
        out += ["", run_title(run)]
        out += run_lines(run, result.config.target_ms)
        if show_histogram:
            hist = histogram_lines(run, result.config.target_ms)
            if hist:
                out += ["", *hist]
    if len(result.runs) > 1:
        out += ["", "Summary", *_text_table(sweep_table(result.runs))]
    for block in (side_by_side_lines(result), recommendation_lines(result), voice_lines(result)):
        if block:
            out += ["", *block]
    return "\n".join(out) + "\n"


# -- markdown -------------------------------------------------------------------------------------------


def _md_table(rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join("---" for _ in rows[0]) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return out


def render_markdown(result: BenchResult) -> str:
    """The result as markdown, for an issue or a pull request."""
    s = result.system
    out = [
        f"### edgeassist bench: {s.board or s.cpu_model}",
        "",
        f"`{result.command}` · edgeassist {result.edgeassist_version} · {result.created}"
        + (" · **interrupted: partial results**" if result.interrupted else ""),
        "",
        settings_line(result),
        "",
    ]
    out += _md_table(sweep_table(result.runs))
    out.append("")
    for run in result.runs:
        sm = run.summary
        if sm is not None and sm.breakdown is not None:
            b = sm.breakdown
            out.append(
                f"- {run.model} @ {threads_text(run.threads)}: edgeassist/raw {_num(sm.ratio, 3)} at p50, "
                f"{_num(sm.ratio_p10, 3)} at p10; excess "
                f"{b.excess_ms:+.2f} ms/token = sampling {b.sample_ms:.2f} + detokenize {b.detokenize_ms:.3f}"
                f" + dispatch {b.dispatch_ms:+.2f}; {verdict_text(sm)}"
            )
        elif sm is not None and run.remote:
            out.append(
                f"- {run_label(run)}: no raw baseline ({run.no_raw_reason or NO_RAW_REMOTE}); "
                f"network jitter {jitter_text(sm)}; {'; '.join(f'{k}: {v}' for k, v in server_lines(sm))}; "
                f"{verdict_text(sm)}"
            )
        if sm is not None and sm.tool_decode_ms is not None:
            out.append(f"- {run.model} @ {threads_text(run.threads)}: tool call (grammar held) {tool_text(sm)}")
        image = image_text(run)
        if image is not None:
            out.append(f"- {run_label(run)}: image {image}")
    side = side_by_side_lines(result)
    if side:
        out += ["", f"**{side[0]}**", "", "```", *side[1:], "```"]
    rec = recommendation_lines(result)
    if rec:
        out += ["", f"**{rec[0]}**", "", "```", *rec[1:], "```"]
    voice = voice_lines(result)
    if voice:
        out += ["", "```", *voice, "```"]
    out += ["", "<details><summary>System</summary>", ""]
    out += [f"- **{k}**: {v}" for k, v in system_lines(s)]
    out += ["", "</details>", ""]
    return "\n".join(out)


# -- comparison -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Metric:
    label: str
    get: Callable[[RunSummary], float | None]
    fmt: Callable[[float], str]
    lower_is_better: bool = True
    optional: bool = False
    """Left out when neither side has it (the figures only a remote run has)."""


def _p(attr: str, field: str) -> Callable[[RunSummary], float | None]:
    def get(s: RunSummary) -> float | None:
        v = getattr(s, attr)
        return None if v is None else float(getattr(v, field))

    return get


def _server(attr: str) -> Callable[[RunSummary], float | None]:
    def get(s: RunSummary) -> float | None:
        v = getattr(s.server, attr) if s.server is not None else None
        return None if v is None else float(v.median)

    return get


_METRICS = [
    _Metric("load", _p("load_s", "median"), format_seconds),
    _Metric("time to first token", _p("ttft_s", "median"), format_seconds),
    _Metric("prefill tok/s", _p("prefill_tps", "median"), lambda x: f"{x:.0f}", lower_is_better=False),
    _Metric("decode p50 ms", _p("decode_ms", "p50"), lambda x: f"{x:.1f}"),
    _Metric("decode p90 ms", _p("decode_ms", "p90"), lambda x: f"{x:.1f}"),
    _Metric("decode p99 ms", _p("decode_ms", "p99"), lambda x: f"{x:.1f}"),
    _Metric("decode tok/s", _p("decode_tps", "median"), lambda x: f"{x:.1f}", lower_is_better=False),
    _Metric("jitter p90−p50 ms", _p("jitter", "spread_ms"), lambda x: f"{x:.1f}", optional=True),
    _Metric("server decode ms/token", _server("decode_ms"), lambda x: f"{x:.1f}", optional=True),
    _Metric("raw decode p50 ms", _p("raw_decode_ms", "p50"), lambda x: f"{x:.1f}"),
    _Metric("edgeassist/raw", lambda s: s.ratio, lambda x: f"{x:.3f}"),
    _Metric("follow-up TTFT", _p("followup_ttft_s", "median"), format_seconds),
    _Metric("resumed chat TTFT", _p("resumed_ttft_s", "median"), format_seconds, optional=True),
    _Metric("tool call p50 ms", _p("tool_decode_ms", "p50"), lambda x: f"{x:.1f}", optional=True),
    _Metric("tool call / free decode", lambda s: s.tool_ratio, lambda x: f"{x:.2f}", optional=True),
    _Metric("tool call redrawn", lambda s: s.tool_redraw_share, lambda x: f"{x:.0%}", optional=True),
    _Metric("image TTFT", _p("image_ttft_s", "median"), format_seconds, optional=True),
    _Metric("image encode", _p("image_encode_s", "median"), format_seconds, optional=True),
    _Metric(
        "peak memory",
        lambda s: float(s.peak_rss_bytes) if s.peak_rss_bytes is not None else None,
        lambda x: _bytes(int(x)),
    ),
]


def _speed(run: ModelRun) -> float:
    """Decode p50 for picking the fastest run (unmeasured runs last)."""
    d = run.summary.decode_ms if run.summary is not None else None
    return d.p50 if d is not None else float("inf")


def _match(a: Sequence[ModelRun], b: Sequence[ModelRun]) -> list[tuple[ModelRun | None, ModelRun | None]]:
    """Pair runs by (model, threads, endpoint), then local ones by file size and threads (same model under another
    name); then a remote run left over on one side with the fastest local run left over on the other (a local
    model against a server is what comparing the two is for). In A's order, B's lone runs last."""
    partner: dict[int, ModelRun] = {}
    left = list(b)
    for ra in a:
        hit = next(
            (rb for rb in left if (rb.model, rb.threads, rb.endpoint) == (ra.model, ra.threads, ra.endpoint)), None
        )
        if hit is None and not ra.remote:
            same_file = (ra.file_bytes, ra.threads)
            hit = next((rb for rb in left if not rb.remote and (rb.file_bytes, rb.threads) == same_file), None)
        if hit is not None:
            left.remove(hit)
            partner[id(ra)] = hit
    lone_a = [ra for ra in a if id(ra) not in partner]
    for ra in [r for r in lone_a if r.remote]:
        local_b = [r for r in left if not r.remote]
        if local_b:
            partner[id(ra)] = rb = min(local_b, key=_speed)
            left.remove(rb)
    for rb in [r for r in left if r.remote]:
        local_a = [r for r in a if not r.remote and id(r) not in partner]
        if local_a:
            partner[id(min(local_a, key=_speed))] = rb
            left.remove(rb)
    pairs: list[tuple[ModelRun | None, ModelRun | None]] = [(ra, partner.get(id(ra))) for ra in a]
    return pairs + [(None, rb) for rb in left]


def pair_lines(ra: ModelRun, rb: ModelRun, na: str, nb: str) -> list[str]:
    """Two measured runs' figures side by side with the ratio `nb`/`na`, and what a remote side has not."""
    assert ra.summary is not None and rb.summary is not None
    rows = [["figure", na, nb, f"{nb}/{na}", ""]]
    for m in _METRICS:
        va, vb = m.get(ra.summary), m.get(rb.summary)
        if m.optional and va is None and vb is None:
            continue
        ratio, better = "–", ""
        if va is not None and vb is not None and va > 0:
            ratio = f"{vb / va:.2f}x"
            if abs(vb / va - 1) >= 0.02:
                better = nb if (vb < va) == m.lower_is_better else na
                better = f"{better} better"
        rows.append(
            [m.label, m.fmt(va) if va is not None else "–", m.fmt(vb) if vb is not None else "–", ratio, better]
        )
    va_, vb_ = ra.summary.verdict, rb.summary.verdict
    rows.append(["verdict", va_.status if va_ else "–", vb_.status if vb_ else "–", "", ""])
    out = _text_table(rows)
    for name, run in ((na, ra), (nb, rb)):
        if run.remote:
            out.append(
                f"  {name}: no raw baseline, load time or memory ({run.no_raw_reason or NO_RAW_REMOTE}; "
                "they are the server's)"
            )
    return out


def side_by_side_lines(result: BenchResult) -> list[str]:
    """A result with local and remote runs (`--endpoint URL --compare`): the fastest local run beside each remote."""
    local = [r for r in result.runs if not r.remote and r.summary is not None and r.summary.decode_ms is not None]
    remote = [r for r in result.runs if r.remote]
    if not local or not remote:
        return []
    best = min(local, key=_speed)
    out = ["Side by side: local and remote"]
    for rr in remote:
        fastest = " (the fastest local run)" if len(local) > 1 else ""
        out += [f"  local = {run_label(best)}{fastest}", f"  remote = {run_label(rr)}"]
        if rr.summary is None or not rr.repetitions:
            out.append("  (nothing measured on the remote side)")
            continue
        out += pair_lines(best, rr, "local", "remote")
    return out


def render_compare(a: BenchResult, b: BenchResult, sources: tuple[str, str] = ("", "")) -> str:
    """Two results side by side, run by run, with the ratio B/A for every figure (`sources`: their file names)."""
    na, nb = "A", "B"
    out = []
    for name, res, src in ((na, a, sources[0]), (nb, b, sources[1])):
        where = f"{src}: " if src else ""
        out.append(f"{name} = {where}{res.created} · {res.system.board or res.system.cpu_model} · {res.command}")
    for label, res in ((na, a), (nb, b)):
        if res.interrupted or not res.complete:
            out.append(f"note: {label} is incomplete (interrupted or a run failed)")
    # (Whether the raw loop ran is not a difference worth a line: its rows show it, and a remote run has none.)
    if settings_line(a, raw_baseline=False) != settings_line(b, raw_baseline=False):
        out += [f"settings differ: {na}: {settings_line(a)}", f"                {nb}: {settings_line(b)}"]
    for ra, rb in _match(a.runs, b.runs):
        title = ra or rb
        assert title is not None
        head = f"{title.model} @ {threads_text(title.threads)}"
        if ra is not None and rb is not None and (ra.remote or rb.remote):
            head = f"{run_label(ra)} ({na}) vs {run_label(rb)} ({nb})"
        elif ra is not None and rb is not None and ra.model != rb.model:
            head = f"{ra.model} ({na}) vs {rb.model} ({nb}) @ {threads_text(title.threads)}"
        elif title.remote:
            head = run_label(title)
        out += ["", head]
        if ra is None or rb is None or ra.summary is None or rb.summary is None:
            out.append(f"  only in {na if rb is None else nb}")
            continue
        out += pair_lines(ra, rb, na, nb)
    return "\n".join(out) + "\n"


# -- contention -----------------------------------------------------------------------------------------

BUSY_GOAL = 0.8
"""Adaptive tokens/s under one competing busy program: at least this share of the best fixed count's."""
QUIET_GOAL = 0.97
"""Adaptive tokens/s on a quiet machine: no loss, within this much of the run-to-run noise."""


def _used_text(used: Sequence[Sequence[int]]) -> str:
    """How often the adaptive engine decoded with each count: `1: 97% · 2: 3%`."""
    tokens = [n for reply in used for n in reply]
    if not tokens:
        return ""
    return " · ".join(f"{n}: {tokens.count(n) / len(tokens):.0%}" for n in sorted(set(tokens)))


def contention_rows(c: ContentionResult) -> list[list[str]]:
    """One row per fixed count and the adaptive engine, loaded then quiet (a header row first)."""
    rows = [["load", "threads", "TTFT", "tok/s", "vs best fixed", "threads per token"]]
    for busy in sorted({r.busy for r in c.runs}, reverse=True):
        mine = [r for r in c.runs if r.busy == busy]
        best = max((median(r.decode_tps) for r in mine if r.threads is not None and r.decode_tps), default=None)
        for r in mine:
            tps = median(r.decode_tps) if r.decode_tps else None
            rows.append(
                [
                    f"{busy} busy" if busy else "quiet",
                    f"adaptive (≤{c.max_threads})" if r.threads is None else str(r.threads),
                    format_seconds(median(r.ttft_s)) if r.ttft_s else "–",
                    _num(tps),
                    _num(tps / best if tps is not None and best else None, 2),
                    _used_text(r.threads_used) if r.threads is None else "",
                ]
            )
    return rows


def _goal(ratio: float | None, goal: float) -> str:
    if ratio is None:
        return "–"
    return f"{ratio:.2f} ({'meets' if ratio >= goal else 'misses'} ≥ {goal:.2f})"


def contention_verdict(c: ContentionResult) -> list[str]:
    """The ratios the run is for, against their goals, and what the free-core count saw."""
    s = c.summary
    if s is None:
        return []
    seen = [f"cores free: {n} of {c.max_threads} {what}" for n, what in
            ((c.free_cores_busy, "under the load"), (c.free_cores_quiet, "quiet")) if n is not None]  # fmt: skip
    ttft = f"; TTFT {_num(s.busy_ttft_ratio, 2)}x" if s.busy_ttft_ratio is not None else ""
    qttft = f"; TTFT {_num(s.quiet_ttft_ratio, 2)}x" if s.quiet_ttft_ratio is not None else ""
    busy = f"adaptive / best fixed ({s.busy_best_fixed}) under {c.busy} busy"
    return [
        f"{busy}: tok/s {_goal(s.busy_ratio, BUSY_GOAL)}{ttft}",
        f"adaptive / best fixed ({s.quiet_best_fixed}) quiet: tok/s {_goal(s.quiet_ratio, QUIET_GOAL)}{qttft}",
        " · ".join(seen),
    ]


def render_contention(result: BenchResult, *, markdown: bool = False) -> str:
    """The `--contention` report: the table of fixed counts and the adaptive engine, then the ratios."""
    c = result.contention
    assert c is not None
    cfg = result.config
    sizes = (
        f"{cfg.prompt_tokens}-token prompt, {cfg.gen_tokens} tokens generated; {cfg.repetitions} "
        f"repetition{'s' if cfg.repetitions != 1 else ''} after {cfg.warmup} warm-up; medians"
    )
    title = f"Contention · {c.model} · {c.busy} competing busy process{'es' if c.busy != 1 else ''}"
    rows = contention_rows(c)
    verdict = contention_verdict(c)
    if markdown:
        out = [f"### {title}", "", f"`{result.command}` · edgeassist {result.edgeassist_version} · {result.created}"]
        if result.interrupted:
            out[-1] += " · **interrupted: partial results**"
        out += ["", sizes, "", *_md_table(rows), "", *[f"- {line}" for line in verdict if line], ""]
        out += ["<details><summary>System</summary>", "", *[f"- **{k}**: {v}" for k, v in system_lines(result.system)]]
        return "\n".join([*out, "", "</details>", ""])
    out = [f"edgeassist bench · {result.created} · edgeassist {result.edgeassist_version}"]
    if result.interrupted:
        out.append("INTERRUPTED: partial results (what was measured before Ctrl+C)")
    rows_sys = system_lines(result.system)
    width = max(len(k) for k, _ in rows_sys)
    out += ["", "System", *[f"  {k:<{width}}  {v}" for k, v in rows_sys]]
    out += ["", title, f"  {sizes}", *_text_table(rows), "", *[f"  {line}" for line in verdict if line]]
    return "\n".join(out) + "\n"
