#!/usr/bin/env python3
"""Show, turn by turn, how much of the prompt a conversation re-evaluates.

Runs a scripted conversation through the real Conversation + LlamaEngine path and prints,
for every turn, the prompt length, the tokens reused from the previous turn's state, and the
tokens evaluated, split into the part of the previous reply (as the chat template renders it in history)
and the new message. On Qwen 3.5 (hybrid recurrent) a follow-up turn should evaluate only
those two, whatever the history's length.

    scripts/multiturn_reuse.py --model models/synthetic-qwen3.5-0.8b-Q4_K_M.gguf --turns 8
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeassist.chat import Conversation  # noqa: E402
from edgeassist.engine import Done, GenerationOptions  # noqa: E402
from edgeassist.engine.llama import LlamaEngine  # noqa: E402

QUESTIONS = [
    "What is a good name for a grey cat?",
    "Why that one?",
    "Suggest three more, shorter ones.",
    "Which of them works best in Portuguese?",
    "How do I teach a cat its name?",
    "How long does that usually take?",
    "What if the cat ignores me?",
    "Summarise your advice in one sentence.",
    "Thanks. Any final tip?",
    "Goodbye!",
]


def main() -> int:
    """Run the conversation and print the table; exit 1 if a follow-up evaluated more than it should."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=Path("models/synthetic-qwen3.5-0.8b-Q4_K_M.gguf"))
    ap.add_argument("--turns", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--n-ctx", type=int, default=8192)
    ap.add_argument("--think", action="store_true", help="thinking mode (the template drops thinking from history)")
    args = ap.parse_args()

    engine = LlamaEngine(args.model, n_ctx=args.n_ctx)
    print(f"model {args.model.name}: loaded in {engine.load():.2f} s, hybrid/recurrent={engine.recurrent}")
    options = GenerationOptions(think=args.think, max_tokens=args.max_tokens, temperature=0)
    convo = Conversation(engine, system_prompt="You are a helpful assistant.", options=options)
    header = f"{'turn':>4} {'prompt':>7} {'reused':>7} {'evaluated':>9} {'prev reply':>10} {'new msg':>7} {'ttft s':>7}"
    print(header)
    ok = True
    ttfts: list[float] = []
    prev_head = 0  # tokens before the previous reply, in the previous prompt
    for turn in range(args.turns):
        before = convo.context()
        done = None
        for ev in convo.send(QUESTIONS[turn % len(QUESTIONS)]):
            if isinstance(ev, Done):
                done = ev
        assert done is not None
        s = done.stats
        ctx = convo.context()
        encoded = engine.encode(ctx[:-1], options.think)
        prompt = encoded.tokens
        # The previous reply as history renders it, and the new message with the generation prompt.
        if turn == 0:
            prev_reply, new_msg = 0, s.evaluated_tokens
        else:
            assert engine._template is not None
            history = engine._template.render(before, think=options.think, add_generation_prompt=False)
            prev_reply = max(0, len(engine.tokenize(history)) - s.reused_tokens)
            new_msg = s.evaluated_tokens - prev_reply
        if turn > 0 and s.evaluated_tokens > len(prompt) - prev_head:
            ok = False
        print(
            f"{turn + 1:>4} {s.prompt_tokens:>7} {s.reused_tokens:>7} {s.evaluated_tokens:>9} "
            f"{prev_reply:>10} {new_msg:>7} {s.ttft_s or 0:>7.2f}"
        )
        ttfts.append(s.ttft_s or 0.0)
        prev_head = encoded.split
    if len(ttfts) > 1:
        print(
            f"time to first token: turn 1 {ttfts[0]:.2f} s, follow-ups median {statistics.median(ttfts[1:]):.2f} s "
            f"(ratio {statistics.median(ttfts[1:]) / ttfts[0]:.2f})"
        )
    print("OK: each follow-up evaluated only the previous reply and the new message" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
