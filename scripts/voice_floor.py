#!/usr/bin/env python3
"""The voice floor: the work that has to follow the last word before the first reply audio, timed.

Whatever was read ahead while the user spoke, a question said without a pause (as the bench's are)
leaves this much to do once it ends, one step after the other, each needing the step before:

1. the settle silence (`speech.settle_s`): only then does whisper know the speech may be over;
2. whisper over the question: its last words are in no earlier pass;
3. the model reads the end of the prompt: the user's last word (the read-ahead stops short of it:
   a longer word may follow) and the assistant's turn opening (`<|im_end|>`, `<|im_start|>assistant`,
   the empty think block), at prompt speed;
4. the model writes the first spoken chunk: `RANDOM_TEXT_FIRST_CHUNK_TOKENS` tokens, one at a time;
5. piper speaks that chunk (the bench's stand-in, "To list every file").

This script times steps 2 to 5 on this machine in one run, on the bench's questions, model and
threads, and prints each median and their sum with step 1 added. `edgeassist bench --voice` cannot
come in under that sum on the same machine at the same moment by reordering the work: only a reply
begun before the speech ends (at a pause) can, and the bench's questions have none.

    python scripts/voice_floor.py                                    # the synthetic 0.8B, 2 threads
    python scripts/voice_floor.py -m models/other.gguf -t 4 -n 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from itertools import pairwise
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeassist.bench.voice import (  # noqa: E402
    BENCH_QUESTIONS,
    RANDOM_TEXT_FIRST_CHUNK_TOKENS,
    TARGET_S,
    StandInSynthesizer,
    VoiceTarget,
    open_target,
    speak_questions,
)
from edgeassist.config import load_settings  # noqa: E402
from edgeassist.engine.base import Done, Message  # noqa: E402
from edgeassist.engine.factory import generation_options  # noqa: E402
from edgeassist.errors import EdgeAssistError  # noqa: E402
from edgeassist.speech import require_speech  # noqa: E402
from edgeassist.speech.build import speech_models  # noqa: E402
from edgeassist.speech.samples import WHISPER_RATE, resample  # noqa: E402
from edgeassist.voice import VoiceConfig  # noqa: E402
from edgeassist.voice.prefill import prefill_prompt  # noqa: E402

DEFAULT_MODEL = "models/synthetic-qwen3.5-0.8b-Q4_K_M.gguf"
"""What the bench's `--synthetic 0.8b` runs on (`scripts/make_synthetic_qwen35.py` writes it)."""


def ms(seconds: float) -> str:
    """Seconds as milliseconds for the table."""
    return f"{seconds * 1000:6.0f} ms"


def main() -> int:
    """Time each step and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-m", "--model", type=Path, default=Path(DEFAULT_MODEL), help=f"GGUF (default {DEFAULT_MODEL})")
    ap.add_argument("-t", "--threads", type=int, default=2, help="model threads (default 2, as the bench's -t 2)")
    ap.add_argument("-n", "--rounds", type=int, default=3, help="rounds over the bench's questions (default 3)")
    ap.add_argument("--first-chunk-tokens", type=int, default=RANDOM_TEXT_FIRST_CHUNK_TOKENS, help="tokens written")
    args = ap.parse_args()
    if not args.model.is_file():
        print(f"no model at {args.model}: run scripts/make_synthetic_qwen35.py, or pass -m", file=sys.stderr)
        return 2

    require_speech("faster_whisper", "piper")
    settings = load_settings()
    target = VoiceTarget(args.model.stem, args.model.resolve(), args.threads, random_text=True)
    try:
        engine = open_target(settings, target)
        engine.load()
    except EdgeAssistError as e:
        print(f"voice_floor: {e}", file=sys.stderr)
        return 1
    options = generation_options(settings, temperature=0.0, max_tokens=args.first_chunk_tokens + 4)
    config = VoiceConfig.from_settings(settings, speak=True, first_chunk_tokens=args.first_chunk_tokens)
    transcriber, synthesizer, _ = speech_models(settings)
    assert synthesizer is not None  # (speak is on)
    chunk_text = StandInSynthesizer(synthesizer, config).first_chunk
    system: list[Message] = [{"role": "system", "content": settings.generation.system_prompt}]

    transcriber.load()
    questions = [
        (q, resample(audio, rate, WHISPER_RATE))
        for q, (audio, rate) in zip(BENCH_QUESTIONS, speak_questions(synthesizer), strict=True)
    ]

    def model_steps(question: str) -> tuple[float, float, int, list[float]]:
        """(prompt end read, first chunk written, prompt-end tokens, token gaps) for one question, its
        prompt read ahead up to the words (as the read-ahead while speaking leaves it)."""
        prefill_prompt(engine, system, options, question)
        stats = None
        for event in engine.stream([*system, {"role": "user", "content": question}], options):
            if isinstance(event, Done):
                stats = event.stats
        assert stats is not None and stats.token_times, "the model wrote nothing"
        times = stats.token_times  # (from the stream's start: the prompt's end is read first)
        gaps = [b - a for a, b in pairwise(times)]
        end = times[min(args.first_chunk_tokens, len(times)) - 1]
        return times[0], end - times[0], stats.evaluated_tokens, gaps

    model_steps(questions[0][0])  # warm-up: the system prompt is read once, as in a chat under way
    transcriber.transcribe(questions[0][1])
    list(synthesizer.synthesize(chunk_text))

    whisper_s, read_s, write_s, piper_s, gaps, read_tokens = [], [], [], [], [], []
    for _ in range(max(1, args.rounds)):
        for question, audio in questions:
            t0 = time.perf_counter()
            transcriber.transcribe(audio)
            whisper_s.append(time.perf_counter() - t0)
            first, written, n, g = model_steps(question)
            read_s.append(first)
            write_s.append(written)
            read_tokens.append(n)
            gaps.extend(g)
            spoken = next(iter(synthesizer.synthesize(chunk_text)))
            piper_s.append(spoken.elapsed_s)
    engine.close()

    settle = config.settle_s
    steps = [
        ("settle silence (speech.settle_s)", settle),
        (f"whisper over the question (window {settings.speech.whisper_window_s:.0f} s)", statistics.median(whisper_s)),
        (
            f"model reads the prompt's end ({statistics.median(read_tokens):.0f} tokens) to its first token",
            statistics.median(read_s),
        ),
        (f"model writes the first chunk's other {args.first_chunk_tokens - 1} tokens", statistics.median(write_s)),
        (f'piper speaks "{chunk_text}"', statistics.median(piper_s)),
    ]
    total = sum(s for _, s in steps)
    width = max(len(name) for name, _ in steps)
    print(f"{engine.name} · {args.threads} threads · {len(whisper_s)} turns · medians")
    for name, seconds in steps:
        print(f"  {name:<{width}}  {ms(seconds)}")
    print(f"  {'floor: end of speech → first audio':<{width}}  {ms(total)}")
    decode = statistics.median(gaps) * 1000
    print(f"  decode {decode:.1f} ms/token in these runs; the bench's voice target is {TARGET_S:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
