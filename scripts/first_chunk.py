#!/usr/bin/env python3
"""How long a spoken reply's first chunk is, in tokens, under each rule for cutting it.

The first audio waits for the first chunk: the fewer tokens the model must write before it, the
sooner the voice starts. This asks a real model (the offline starter, or -m MODEL) the bench's
spoken questions and twenty more, greedily, with the configured system prompt, and counts the
tokens each reply takes to complete its first chunk when cut:

- at a clause or a sentence, once it has four words (voice mode's rule before phrases);
- also before a word that starts a phrase ("in", "and", "because"...), once it has three words
  (`SentenceSplitter(eager_first=True)`, voice mode's rule now);
- and that, ending after `speech.first_chunk_max_words` words whatever comes.

The bench cannot count this on a random-weight model, whose text has no words: it cuts the first
chunk at `bench.voice.RANDOM_TEXT_FIRST_CHUNK_TOKENS`, which this measurement sets.

    scripts/first_chunk.py              # the starter model
    scripts/first_chunk.py -m FILE      # another GGUF (a real Qwen 3.5, where you have one)
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeassist.bench.voice import BENCH_QUESTIONS, RANDOM_TEXT_FIRST_CHUNK_TOKENS  # noqa: E402
from edgeassist.config import load_settings  # noqa: E402
from edgeassist.engine.base import Text  # noqa: E402
from edgeassist.engine.factory import generation_options  # noqa: E402
from edgeassist.engine.llama import LlamaEngine  # noqa: E402
from edgeassist.hub import resolve  # noqa: E402
from edgeassist.speech import text as speech_text  # noqa: E402
from edgeassist.speech.text import SentenceSplitter  # noqa: E402

MORE_QUESTIONS = (
    "What is the capital of France?",
    "How do I make a cup of tea?",
    "Tell me a fun fact about cats.",
    "What time zone is London in?",
    "How far away is the moon?",
    "Can you explain what a GPU does?",
    "Why do we dream?",
    "What is a good name for a dog?",
    "How do I undo my last git commit?",
    "What is the boiling point of water?",
    "Should I learn Python or JavaScript first?",
    "How many legs does a spider have?",
    "What does HTTP stand for?",
    "Give me a tip for sleeping better.",
    "How do I center a div in CSS?",
)
"""Questions beside the bench's, of the kind people ask a voice assistant."""


def first_chunk_tokens(pieces: list[Text], splitter: SentenceSplitter) -> tuple[int, str]:
    """Tokens the reply streamed as `pieces` takes to complete its first chunk, and that chunk."""
    tokens = 0
    for piece in pieces:
        tokens += piece.tokens
        out = splitter.feed(piece.text)
        if out:
            return tokens, out[0]
    out = splitter.flush()
    return tokens, out[0] if out else ""


def main() -> int:
    """Ask the questions, count the first chunks, print the medians."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", default="starter", help="GGUF path or catalog name (default: the starter)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each reply's first chunk under each rule")
    args = ap.parse_args()
    settings = load_settings()
    model = resolve(args.model, settings.models_dir(), fallback=False)
    engine = LlamaEngine(model.path, name=model.name, n_ctx=2048)
    options = generation_options(settings, temperature=0.0, max_tokens=60)
    cap = settings.speech.first_chunk_max_words
    rules = {
        "clause or sentence, 4 words": lambda: SentenceSplitter(eager_first=True, first_min_words=4),
        "+ before a phrase, 3 words": lambda: SentenceSplitter(eager_first=True),
        f"+ at most {cap} words": lambda: SentenceSplitter(eager_first=True, first_max_words=cap),
    }
    counts: dict[str, list[int]] = {name: [] for name in rules}
    questions = [*BENCH_QUESTIONS, *MORE_QUESTIONS]
    for question in questions:
        messages = [
            {"role": "system", "content": settings.generation.system_prompt},
            {"role": "user", "content": question},
        ]
        pieces = [e for e in engine.stream(messages, options) if isinstance(e, Text)]  # type: ignore[arg-type]
        for name, make in rules.items():
            phrases = speech_text.PHRASE_WORDS
            if name.startswith("clause"):
                speech_text.PHRASE_WORDS = frozenset()  # the rule before phrases
            try:
                n, chunk = first_chunk_tokens(pieces, make())
            finally:
                speech_text.PHRASE_WORDS = phrases
            counts[name].append(n)
            if args.verbose:
                print(f"{name:<30} {n:>3}  {chunk}")
    print(f"{model.name}: tokens to the first spoken chunk, {len(questions)} questions")
    for name, values in counts.items():
        print(f"  {name:<30} median {statistics.median(values):5.1f}  (from {min(values)} to {max(values)})")
    print(f"  the bench cuts a random-weight model's first chunk at {RANDOM_TEXT_FIRST_CHUNK_TOKENS} tokens")
    engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
