"""From raw samples to conclusions: run summaries, the target verdict and the model recommendation."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

from edgeassist.bench.results import (
    BenchResult,
    Breakdown,
    Candidate,
    ContentionResult,
    ContentionSummary,
    Jitter,
    ModelRun,
    Recommendation,
    RunSummary,
    ServerSummary,
    TurnSample,
    Verdict,
)
from edgeassist.bench.stats import Percentiles, Spread, gaps, median, percentile
from edgeassist.hub import CATALOG, CatalogEntry

RAM_HEADROOM = 0.8
"""Share of the machine's RAM a model may plan to use; the rest is left to the system and the speech models."""


SMALL_BASIS_BYTES = 200_000_000
"""Below this file size a model's decode time is dominated by fixed per-token costs, not by reading weights."""


def _int_median(values: Sequence[int]) -> int | None:
    return round(median(values)) if values else None


def _rate(tokens: int, seconds: float | None) -> float | None:
    return tokens / seconds if seconds and seconds > 0 and tokens > 0 else None


def _tps(times: Sequence[float]) -> float | None:
    if len(times) < 2 or times[-1] <= times[0]:
        return None
    return (len(times) - 1) / (times[-1] - times[0])


def jitter(turns: Sequence[TurnSample]) -> Jitter | None:
    """The spread of the gaps between the tokens (remote: chunks) of `turns`, pooled; None with no gap.

    Network jitter, on a remote run, is defined as this spread: p90 − p50 of the gaps between
    streamed chunks as the client received them (and their standard deviation). It holds the
    network's unevenness and the server's own; the server's timings, when sent, say how much of
    the mean is compute (`server_summary`).
    """
    pooled = [g * 1000 for t in turns for g in gaps(t.token_times)]
    if not pooled:
        return None
    chunks = sum(len(t.token_times) for t in turns)
    counted = [t.server.completion_tokens for t in turns if t.server is not None]
    per_chunk = None
    if len(counted) == len(turns) and chunks and all(c is not None for c in counted):
        per_chunk = sum(c for c in counted if c is not None) / chunks
    return Jitter(
        spread_ms=percentile(pooled, 90) - percentile(pooled, 50),
        stdev_ms=statistics.stdev(pooled) if len(pooled) > 1 else 0.0,
        max_gap_ms=max(pooled),
        gaps=len(pooled),
        tokens_per_chunk=per_chunk,
    )


def server_summary(turns: Sequence[TurnSample]) -> ServerSummary:
    """A remote run's server-reported figures (first turns) and the client's time beyond them."""
    prompt_s, prefill, decode, ttft_over, decode_over = [], [], [], [], []
    reported = 0
    for t in turns:
        sv = t.server
        if sv is None or (sv.prompt_ms is None and sv.decode_ms is None):
            continue
        reported += 1
        if sv.prompt_ms is not None:
            prompt_s.append(sv.prompt_ms / 1000)
            if t.ttft_s is not None:
                ttft_over.append(t.ttft_s - sv.prompt_ms / 1000)
            if (rate := _rate(sv.evaluated_tokens or 0, sv.prompt_ms / 1000)) is not None:
                prefill.append(rate)
        if sv.decode_ms is not None and sv.decoded_tokens:
            server_ms = sv.decode_ms / sv.decoded_tokens
            decode.append(server_ms)
            tokens = sv.completion_tokens or t.generated_tokens
            span = t.token_times[-1] - t.token_times[0] if len(t.token_times) > 1 else 0.0
            if tokens > 1 and span > 0:
                decode_over.append(span * 1000 / (tokens - 1) - server_ms)
    return ServerSummary(
        prompt_s=Spread.of(prompt_s),
        prefill_tps=Spread.of(prefill),
        decode_ms=Spread.of(decode),
        ttft_overhead_s=Spread.of(ttft_over),
        decode_overhead_ms=Spread.of(decode_over),
        reported=reported,
    )


def verdict(p50_ms: float | None, p90_ms: float | None, target_ms: float) -> Verdict:
    """Whether decode p50 and p90 meet `target_ms`."""
    meets_p50 = p50_ms is not None and p50_ms <= target_ms
    meets_p90 = p90_ms is not None and p90_ms <= target_ms
    if p50_ms is None:
        status = "unknown"
    elif meets_p50 and meets_p90:
        status = "meets"
    elif meets_p50:
        status = "p50-only"
    else:
        status = "misses"
    return Verdict(target_ms, p50_ms, p90_ms, meets_p50, meets_p90, status)  # type: ignore[arg-type]


def summarize(run: ModelRun, target_ms: float) -> RunSummary:
    """The derived figures of one run, from its raw samples only."""
    reps = run.repetitions
    firsts = [r.first for r in reps]
    follows = [r.followup for r in reps if r.followup is not None]
    raws = [r.raw for r in reps if r.raw is not None]
    resumed = [r.resumed for r in reps if r.resumed is not None]
    resumed_ttft = Spread.of([t.ttft_s for t in resumed if t.ttft_s is not None])
    third_ttft = Spread.of([r.third.ttft_s for r in reps if r.third is not None and r.third.ttft_s is not None])

    pictured = [r.image for r in reps if r.image is not None]
    after = [r.image_followup for r in reps if r.image_followup is not None]
    image_ttft = Spread.of([t.ttft_s for t in pictured if t.ttft_s is not None])

    calls = [r.tool_call for r in reps if r.tool_call is not None]
    tool = Percentiles.of([g for t in calls for g in gaps(t.token_times)])
    held = sum(t.grammar_tokens for t in calls)

    app_gaps = [g for t in firsts for g in gaps(t.token_times)]
    raw_gaps = [g for r in raws for g in gaps(r.token_times)]
    decode = Percentiles.of(app_gaps)
    raw_decode = Percentiles.of(raw_gaps)
    decode_ms = decode.scaled(1000) if decode else None
    raw_ms = raw_decode.scaled(1000) if raw_decode else None

    ttft = Spread.of([t.ttft_s for t in firsts if t.ttft_s is not None])
    raw_ttft = Spread.of([r.prompt_eval_s for r in raws])
    ratio = decode.p50 / raw_decode.p50 if decode and raw_decode and raw_decode.p50 > 0 else None
    ratio_p10 = decode.p10 / raw_decode.p10 if decode and raw_decode and raw_decode.p10 > 0 else None
    ttft_ratio = ttft.median / raw_ttft.median if ttft and raw_ttft and raw_ttft.median > 0 else None

    breakdown = None
    if decode_ms and raw_ms and run.overheads is not None:
        sample_ms = median(run.overheads.sample_s) * 1000 if run.overheads.sample_s else 0.0
        detok_ms = median(run.overheads.detokenize_s) * 1000 if run.overheads.detokenize_s else 0.0
        excess = decode_ms.p50 - raw_ms.p50
        breakdown = Breakdown(excess, sample_ms, detok_ms, excess - sample_ms - detok_ms)

    peaks = [r.peak_rss_bytes for r in reps if r.peak_rss_bytes is not None]
    if run.load_peak_rss_bytes is not None:
        peaks.append(run.load_peak_rss_bytes)
    peak = max(peaks) if peaks else None
    model_rss = peak - run.rss_before_bytes if peak is not None and run.rss_before_bytes is not None else None
    bandwidth = run.file_bytes / (decode.p50 * 1e9) if decode and decode.p50 > 0 and not run.remote else None
    server = server_summary(firsts) if run.remote else None
    if run.remote:
        # The client's TTFT holds the network: only the server's own count and time give a prefill rate.
        prefill = server.prefill_tps if server else None
    else:
        prefill = Spread.of(
            [r for t in firsts if (r := _rate(t.evaluated_tokens, t.ttft_s or t.prompt_eval_s)) is not None]
        )

    return RunSummary(
        load_s=Spread.of(run.load_s),
        prompt_tokens=_int_median([t.prompt_tokens for t in firsts]),
        ttft_s=ttft,
        first_event_s=Spread.of([t.first_event_s for t in firsts if t.first_event_s is not None]),
        prefill_tps=prefill,
        decode_ms=decode_ms,
        decode_tps=Spread.of([v for t in firsts if (v := _tps(t.token_times)) is not None]),
        followup_ttft_s=Spread.of([t.ttft_s for t in follows if t.ttft_s is not None]),
        followup_prompt_tokens=_int_median([t.prompt_tokens for t in follows]),
        followup_evaluated_tokens=_int_median([t.evaluated_tokens for t in follows]),
        resumed_ttft_s=resumed_ttft,
        resumed_base_ttft_s=third_ttft,
        resumed_ratio=(
            resumed_ttft.median / third_ttft.median if resumed_ttft and third_ttft and third_ttft.median > 0 else None
        ),
        resumed_evaluated_tokens=_int_median([t.evaluated_tokens for t in resumed]),
        resumed_prompt_tokens=_int_median([t.prompt_tokens for t in resumed]),
        state_bytes=_int_median([r.state_bytes for r in reps if r.state_bytes is not None]),
        tool_decode_ms=tool.scaled(1000) if tool else None,
        tool_ratio=tool.p50 / decode.p50 if tool and decode and decode.p50 > 0 else None,
        tool_redraw_share=sum(t.grammar_redraws for t in calls) / held if held else None,
        tool_tokens=_int_median([t.grammar_tokens for t in calls]),
        tool_calls=len(calls) or None,
        tool_calls_complete=sum(t.call_s is not None for t in calls) if calls else None,
        images=_int_median([t.images for t in pictured]),
        image_tokens=_int_median([t.image_tokens for t in pictured]),
        image_prompt_tokens=_int_median([t.prompt_tokens for t in pictured]),
        image_encode_s=Spread.of([t.image_encode_s for t in pictured]),
        image_prompt_eval_s=Spread.of([t.prompt_eval_s for t in pictured]),
        image_ttft_s=image_ttft,
        image_ttft_ratio=image_ttft.median / ttft.median if image_ttft and ttft and ttft.median > 0 else None,
        images_encoded=sum(t.images_encoded for t in pictured) if pictured else None,
        image_followup_ttft_s=Spread.of([t.ttft_s for t in after if t.ttft_s is not None]),
        image_followup_prompt_tokens=_int_median([t.prompt_tokens for t in after]),
        image_followup_evaluated_tokens=_int_median([t.evaluated_tokens for t in after]),
        image_followup_read_again=any(t.read_again for t in after) if after else None,
        raw_ttft_s=raw_ttft,
        raw_prefill_tps=Spread.of([v for r in raws if (v := _rate(r.prompt_tokens, r.prompt_eval_s)) is not None]),
        raw_decode_ms=raw_ms,
        raw_decode_tps=Spread.of([v for r in raws if (v := _tps(r.token_times)) is not None]),
        ratio=ratio,
        ratio_p10=ratio_p10,
        ttft_ratio=ttft_ratio,
        breakdown=breakdown,
        peak_rss_bytes=peak,
        model_rss_bytes=model_rss,
        rss_anon_bytes=_int_median([r.rss_anon_bytes for r in reps if r.rss_anon_bytes is not None]),
        rss_file_bytes=_int_median([r.rss_file_bytes for r in reps if r.rss_file_bytes is not None]),
        bandwidth_gbs=bandwidth,
        verdict=verdict(decode_ms.p50 if decode_ms else None, decode_ms.p90 if decode_ms else None, target_ms),
        jitter=jitter(firsts),
        server=server,
    )


def basis_run(runs: Sequence[ModelRun]) -> ModelRun | None:
    """The run a recommendation scales from: the largest model measured, at its fastest thread count.

    The largest file is the most bandwidth-bound, so the least distorted by fixed per-token costs.
    Remote runs never count: their speed says nothing about this device.
    """
    usable = [r for r in runs if r.summary is not None and r.summary.decode_ms is not None and not r.remote]
    if not usable:
        return None

    def key(r: ModelRun) -> tuple[int, float]:
        assert r.summary is not None and r.summary.decode_ms is not None
        return (r.file_bytes, -r.summary.decode_ms.p50)

    return max(usable, key=key)


def recommend(
    runs: Sequence[ModelRun],
    target_ms: float,
    ram_total_bytes: int | None,
    n_ctx: int,
    catalog: Mapping[str, CatalogEntry] = CATALOG,
) -> Recommendation | None:
    """The largest catalog model and quant expected to meet `target_ms` at p90 here, and every candidate's estimate.

    Decoding reads every weight once per token, so time per token scales with the file size at
    the bandwidth measured on the basis run; the p90 keeps the measured p90/p50 ratio. Memory
    comes from the catalog's estimate against `RAM_HEADROOM` of the RAM. An estimate, not a measurement.
    """
    base = basis_run(runs)
    if base is None:
        return None
    assert base.summary is not None and base.summary.decode_ms is not None
    dec = base.summary.decode_ms
    bandwidth = base.file_bytes / (dec.p50 / 1000)  # bytes per second
    tail = dec.p90 / dec.p50 if dec.p50 > 0 else 1.0
    candidates: list[Candidate] = []
    for entry in catalog.values():
        for key, qf in entry.quants.items():
            p50 = qf.approx_bytes / bandwidth * 1000
            ram = entry.ram_gb(key, n_ctx)
            fits = ram_total_bytes is None or ram * 1e9 <= ram_total_bytes * RAM_HEADROOM
            candidates.append(
                Candidate(
                    model=f"{entry.name}:{key}",
                    file_bytes=qf.approx_bytes,
                    ram_gb=ram,
                    predicted_p50_ms=p50,
                    predicted_p90_ms=p50 * tail,
                    fits_ram=fits,
                    meets_target=fits and p50 * tail <= target_ms,
                )
            )
    candidates.sort(key=lambda c: c.file_bytes)
    good = [c for c in candidates if c.meets_target]
    best = good[-1].model if good else None
    typical = [c for c in candidates if c.fits_ram and c.predicted_p50_ms <= target_ms]
    best_p50 = typical[-1].model if typical else None
    basis = f"{base.model} at {base.threads} thread{'s' if base.threads != 1 else ''}"
    if base.file_bytes < SMALL_BASIS_BYTES:
        basis += " (a small model: fixed per-token costs weigh more in it, so larger ones may do better than this)"
    if best is None:
        note = f"estimate scaled from {basis}: no catalog model is expected to meet {target_ms:g} ms/token at p90 here"
        if candidates:
            note += f"; the smallest, {candidates[0].model}, should take about {candidates[0].predicted_p90_ms:.0f} ms"
        note += (
            "; this device is not enough: run the model on a bigger machine (vLLM, llama-server, Ollama) and point "
            "edgeassist at it with --endpoint URL (README: When the device is not enough)"
        )
    else:
        note = (
            f"estimate scaled from {basis} by file size (decoding reads every weight once per token); "
            "measure it with `edgeassist bench -m " + best + "` to be sure"
        )
    return Recommendation(
        model=best,
        model_p50=best_p50,
        basis_model=base.model,
        basis_threads=base.threads,
        bandwidth_gbs=bandwidth / 1e9,
        p90_over_p50=tail,
        ram_total_bytes=ram_total_bytes,
        target_ms=target_ms,
        candidates=candidates,
        note=note,
    )


def contention_summary(c: ContentionResult) -> ContentionSummary:
    """Adaptive against the best fixed thread count, under the load and quiet (medians over replies)."""

    def pick(busy: bool) -> tuple[int | None, float | None, float | None]:
        fixed = {r.threads: r for r in c.runs if bool(r.busy) == busy and r.threads is not None and r.decode_tps}
        adaptive = next((r for r in c.runs if bool(r.busy) == busy and r.threads is None and r.decode_tps), None)
        if not fixed:
            return None, None, None
        best = max(fixed, key=lambda n: median(fixed[n].decode_tps))
        if adaptive is None:
            return best, None, None
        tps = median(adaptive.decode_tps) / median(fixed[best].decode_tps)
        ttft = None
        if adaptive.ttft_s and fixed[best].ttft_s:
            ttft = median(adaptive.ttft_s) / median(fixed[best].ttft_s)
        return best, tps, ttft

    busy, quiet = pick(True), pick(False)
    return ContentionSummary(*busy, *quiet)


def conclude(result: BenchResult) -> BenchResult:
    """Recompute every summary and the recommendation from the raw samples (after a bench, or on a loaded file)."""
    if result.contention is not None:
        result.contention.summary = contention_summary(result.contention)
    for run in result.runs:
        run.summary = summarize(run, result.config.target_ms)
    result.recommendation = recommend(
        result.runs,
        result.config.target_ms,
        result.system.ram_total_bytes,
        max((r.n_ctx for r in result.runs), default=4096),
    )
    return result
