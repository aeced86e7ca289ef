#!/usr/bin/env python3
"""Voice latency: end of speech -> first reply audio, over N turns fed like a microphone.

Each question is spoken by the piper voice, then fed to the voice pipeline in 50 ms blocks at
real-time pace (the incremental transcriber and the prefill work while it "speaks"), and the key
is released `--hold-after` seconds after the audio ends (0: at once; people usually let go a few
tenths of a second after their last word). The reply is played to a real-time null speaker. It
prints each turn and the medians of every stage; `--json` writes them all. The `others` column is
how many cores other processes kept busy during the turn: llama.cpp's OpenMP threads slow down
many times over when another process competes for the cores, so the medians of the quiet turns
are printed apart.

    python scripts/voice_latency.py                      # starter model, tiny.en, en_US-joe-medium
    python scripts/voice_latency.py -n 9 --hold-after 0,0.3 --window 30
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeassist.bench.voice import (  # noqa: E402
    BENCH_QUESTIONS,
    RANDOM_TEXT_FIRST_CHUNK_TOKENS,
    StandInSynthesizer,
    simulation_pipeline,
)
from edgeassist.chat import Conversation  # noqa: E402
from edgeassist.config import load_settings  # noqa: E402
from edgeassist.engine.factory import generation_options  # noqa: E402
from edgeassist.engine.llama import LlamaEngine  # noqa: E402
from edgeassist.hub import resolve  # noqa: E402
from edgeassist.voice import VoiceConfig, VoiceTurnTimings, simulate_turn  # noqa: E402

QUIET_CORES = 0.3
"""A turn during which other processes kept more than this many cores busy is not a quiet one."""


def cpu_counters() -> tuple[float, float, float]:
    """(wall seconds, busy CPU seconds of the whole machine, CPU seconds of this process)."""
    busy = float("nan")
    try:
        with open("/proc/stat") as f:
            fields = [float(x) for x in f.readline().split()[1:]]
        busy = (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
    except (OSError, ValueError, IndexError):
        pass
    t = os.times()
    return time.perf_counter(), busy, t.user + t.system


def median(values: list[float | None]) -> float | None:
    """The median of the values that are there."""
    xs = [v for v in values if v is not None]
    return statistics.median(xs) if xs else None


def fmt(v: float | None, unit: str = "s") -> str:
    """A figure for the table."""
    return "-" if v is None else f"{v:.2f}{unit}" if unit else f"{v:.2f}"


def main() -> int:
    """Run the turns and print the report."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--turns", type=int, default=5, help="measured turns per release delay (default 5)")
    ap.add_argument("--hold-after", default="0,0.4", help="release delays after the audio ends, seconds, comma list")
    ap.add_argument("-m", "--model", default=None, help="GGUF path or catalog name (default: the offline starter)")
    ap.add_argument("--window", type=float, default=None, help="whisper encoder window in seconds (default: setting)")
    ap.add_argument("--no-prefill", action="store_true", help="do not evaluate the prompt while the user speaks")
    ap.add_argument("--no-eager", action="store_true", help="do not speak the first clause early")
    ap.add_argument("--no-partials", action="store_true", help="no partial transcripts while the key is held")
    ap.add_argument("--fresh", action="store_true", help="a new conversation for every turn")
    ap.add_argument(
        "--first-chunk-tokens",
        type=int,
        default=None,
        help="speak the first chunk after this many tokens even without a sentence end "
        f"(default: {RANDOM_TEXT_FIRST_CHUNK_TOKENS} for a synthetic model, whose text is random; else off)",
    )
    ap.add_argument("--json", type=Path, help="also write every turn's timings here")
    args = ap.parse_args()

    settings = load_settings()
    models_dir = settings.models_dir()
    model = resolve(args.model or "starter", models_dir, fallback=False)
    engine = LlamaEngine(model.path, name=model.name, n_ctx=settings.model.n_ctx)
    options = generation_options(settings, temperature=0.0, max_tokens=48)  # first audio does not depend on length
    first_chunk = args.first_chunk_tokens
    if first_chunk is None and model.path.name.startswith("synthetic-"):
        first_chunk = RANDOM_TEXT_FIRST_CHUNK_TOKENS
    config = VoiceConfig.from_settings(
        settings,
        first_chunk_tokens=first_chunk,
        prefill=not args.no_prefill,
        eager_first_clause=not args.no_eager,
        partial_interval_s=0.0 if args.no_partials else None,
    )

    def conversation() -> Conversation:
        return Conversation(engine, system_prompt=settings.generation.system_prompt, options=options)

    pipeline = simulation_pipeline(settings, conversation(), options=options, config=config, window_s=args.window)
    stt, tts = pipeline.transcriber, pipeline.synthesizer
    if first_chunk and model.path.name.startswith("synthetic-"):
        pipeline.synthesizer = StandInSynthesizer(tts, config)  # random text: piper speaks an ordinary sentence instead
    print(
        f"model {engine.name} · whisper {stt.resolved.name} (window {stt.window_s:.0f}s) · voice {tts.resolved.name} · "
        f"prefill {'on' if config.prefill else 'off'} · "
        f"eager first clause {'on' if config.eager_first_clause else 'off'} · "
        f"partials {f'every {config.partial_interval_s:.1f}s' if config.partial_interval_s else 'off'} · "
        f"first chunk {f'at {first_chunk} tokens' if first_chunk else 'at a sentence or clause'}",
        file=sys.stderr,
    )
    t0 = time.perf_counter()
    pipeline.warm_up()
    spoken = []
    for q in BENCH_QUESTIONS:
        chunks = list(tts.synthesize(q))
        spoken.append((q, np.concatenate([c.samples for c in chunks]), chunks[0].sample_rate))
    simulate_turn(pipeline, spoken[0][1], spoken[0][2], realtime=False)  # an unmeasured first turn
    print(f"warm-up {time.perf_counter() - t0:.1f}s; questions {', '.join(f'{len(a) / r:.1f}s' for _, a, r in spoken)}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{os.cpu_count()} CPUs, load average {load:.2f} (other work on the machine skews every figure)")

    holds = [float(h) for h in args.hold_after.split(",") if h.strip()]
    rows: list[dict[str, object]] = []
    for hold in holds:
        turns: list[VoiceTurnTimings] = []
        print(f"\nrelease {hold:.1f}s after the audio ends")
        print(
            "  turn  speech-end->audio  release->audio  stt@release  passes  1st token  1st sentence  tts 1st  "
            "others  heard"
        )
        quiet: list[VoiceTurnTimings] = []
        for i in range(args.turns):
            if args.fresh:
                pipeline.conversation = conversation()
            q, audio, rate = spoken[i % len(spoken)]
            w0, b0, o0 = cpu_counters()
            if isinstance(pipeline.synthesizer, StandInSynthesizer):
                pipeline.synthesizer.new_reply()
            r = simulate_turn(pipeline, audio, rate, hold_after_s=hold)
            w1, b1, o1 = cpu_counters()
            others = max(0.0, ((b1 - b0) - (o1 - o0)) / (w1 - w0))  # cores busy with other processes
            t = r.timings
            turns.append(t)
            if others < QUIET_CORES:
                quiet.append(t)
            rows.append(
                {
                    "hold_after_s": hold,
                    "question": q,
                    "heard": r.transcript,
                    "reply": r.reply,
                    "other_cores": others,
                    **t.to_dict(),
                }
            )
            print(
                f"  {i + 1:>4}  {fmt(t.speech_end_to_first_audio_s):>17}  {fmt(t.first_audio_s):>14}  "
                f"{fmt(t.stt_final_s):>11}  {t.stt_passes:>6}  {fmt(t.llm_first_token_s):>9}  "
                f"{fmt(t.llm_first_sentence_s):>12}  {fmt(t.tts_first_s):>7}  {others:>6.2f}  {r.transcript[:36]}"
            )
        m = {f: median([getattr(t, f) for t in turns]) for f in VoiceTurnTimings.__dataclass_fields__ if f != "stats"}
        print(
            f"  median: end of speech -> first audio {fmt(m['speech_end_to_first_audio_s'])} "
            f"(release -> first audio {fmt(m['first_audio_s'])}, key held {fmt(m['release_lag_s'])} after speech)\n"
            f"          stt at release {fmt(m['stt_final_s'])} (tail {fmt(m['stt_tail_audio_s'])} of audio), "
            f"stt rtf {fmt(m['stt_rtf'], '')}, prefill {fmt(m['prefill_tokens'], ' tok')}; "
            f"first token {fmt(m['llm_first_token_s'])}, first sentence {fmt(m['llm_first_sentence_s'])}; "
            f"tts first chunk {fmt(m['tts_first_s'])}, tts rtf {fmt(m['tts_rtf'], '')}"
        )
        if len(quiet) < len(turns):
            q_e2a = median([t.speech_end_to_first_audio_s for t in quiet])
            q_r2a = median([t.first_audio_s for t in quiet])
            print(
                f"          {len(turns) - len(quiet)} turn(s) shared the CPU with other processes "
                f"(>= {QUIET_CORES} core); the {len(quiet)} quiet turn(s): end of speech -> first audio "
                f"{fmt(q_e2a)}, release -> first audio {fmt(q_r2a)}"
            )
        target = 1.0
        e2a = m["speech_end_to_first_audio_s"]
        if e2a is not None:
            print(f"          target {target:.1f}s: {'met' if e2a <= target else 'missed'} ({e2a / target:.2f}x)")
    pipeline.close()
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
