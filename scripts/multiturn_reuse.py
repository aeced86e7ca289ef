#!/usr/bin/env python3
"""Show, turn by turn, how much of the prompt a conversation re-evaluates.

Runs a scripted conversation through the real Conversation + LlamaEngine path and prints,
for every turn, the prompt length, the tokens reused from the previous turn's state, and the
tokens evaluated, split into the part of the previous reply (as the chat template renders it in history)
and the new message. On Qwen 3.5 (hybrid recurrent) a follow-up turn should evaluate only
those two, whatever the history's length.

    scripts/multiturn_reuse.py --model models/synthetic-qwen3.5-0.8b-Q4_K_M.gguf --turns 8
    scripts/multiturn_reuse.py --tools 2 --turns 6     # every 2nd turn calls a tool first
    scripts/multiturn_reuse.py --image generated       # a picture in the first message

With `--tools N`, a tool is offered on every turn and every Nth turn must call it (a grammar-held
call: the random-weight model never chooses to); each step of such a reply (the call, then the
answer after the tool's result) is a row `turn.step`, and it too should evaluate only what is new
since the step before: that step's reply, the tool's result and the generation prompt.

With `--image FILE` (or `generated`: the bench's 1024x768 test picture) the first user message
carries the picture, and the model's projector (beside it, or `--mmproj`) reads it: the vision
encoder should run on turn 1 only (`enc` 1, then 0) and every later turn should still evaluate
only the previous reply and the new message, the picture's tokens staying in the reused state.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeassist.chat import Conversation  # noqa: E402
from edgeassist.config import ToolsSettings  # noqa: E402
from edgeassist.engine import Done, GenerationOptions, Stats  # noqa: E402
from edgeassist.engine.base import ToolSpec  # noqa: E402
from edgeassist.engine.llama import LlamaEngine  # noqa: E402
from edgeassist.errors import EdgeAssistError  # noqa: E402
from edgeassist.hub import projector_for, projector_name  # noqa: E402
from edgeassist.images import Picture  # noqa: E402
from edgeassist.tools import Tool, Toolbox  # noqa: E402

CLOCK = Tool(
    ToolSpec(
        "clock",
        "The current time in a city.",
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    ),
    "built-in",
    "allow",
    lambda args, cancel: f"It is 12:00 in {str(args.get('city'))[:40]}.",
)


def context_before(convo: Conversation, i: int) -> list:  # type: ignore[type-arg]
    """The messages the reply at turn `i` was given (the turns before it)."""
    saved = convo.turns
    convo.turns = saved[:i]
    try:
        return convo.context()
    finally:
        convo.turns = saved


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
    ap.add_argument("--tools", type=int, default=0, metavar="N", help="offer a tool; every Nth turn calls it first")
    ap.add_argument("--image", metavar="FILE|generated", help="a picture in the first user message")
    ap.add_argument("--mmproj", type=Path, help="the vision projector (default: the one beside the model)")
    args = ap.parse_args()

    picture = None
    projector = args.mmproj
    if args.image is not None:
        from edgeassist.bench.picture import bench_picture

        projector = projector or projector_for(args.model)
        try:
            picture = bench_picture(args.image)
        except EdgeAssistError as e:
            print(f"error: {e}", file=sys.stderr)
            return e.exit_code
        if projector is None:
            print(
                f"error: {args.model.name} has no vision projector beside it ({projector_name(args.model.name)}); "
                "build one with scripts/make_synthetic_qwen35.py --vision, or pass --mmproj",
                file=sys.stderr,
            )
            return 2
    engine = LlamaEngine(args.model, n_ctx=args.n_ctx, projector=projector)
    print(f"model {args.model.name}: loaded in {engine.load():.2f} s, hybrid/recurrent={engine.recurrent}")
    if picture is not None and projector is not None:
        print(f"picture {picture.name} ({picture.width}x{picture.height} {picture.format}), projector {projector.name}")
    options = GenerationOptions(think=args.think, max_tokens=args.max_tokens, temperature=0)
    if args.tools:
        return tool_turns(engine, options, args, picture)
    convo = Conversation(engine, system_prompt="You are a helpful assistant.", options=options)
    header = f"{'turn':>4} {'prompt':>7} {'reused':>7} {'evaluated':>9} {'prev reply':>10} {'new msg':>7} {'ttft s':>7}"
    print(header + (IMAGE_HEADER if picture else ""))
    ok = True
    ttfts: list[float] = []
    prev_head = 0  # tokens before the previous reply, in the previous prompt
    for turn in range(args.turns):
        before = convo.context()
        done = None
        images = (picture,) if picture is not None and turn == 0 else ()
        for ev in convo.send(QUESTIONS[turn % len(QUESTIONS)], images=images):
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
            render = engine._template.render
            # What pictures add to the prompt beyond the text the template renders for them (0 without).
            media = len(prompt) - len(engine.tokenize(render(ctx[:-1], think=options.think)))
            history = render(before, think=options.think, add_generation_prompt=False)
            prev_reply = max(0, len(engine.tokenize(history)) + media - s.reused_tokens)
            new_msg = s.evaluated_tokens - prev_reply
        if turn > 0 and s.evaluated_tokens > len(prompt) - prev_head:
            ok = False
        if picture is not None and s.images_encoded != (1 if turn == 0 else 0):
            ok = False  # the encoder reads the picture once, with the message that brings it
        print(
            f"{turn + 1:>4} {s.prompt_tokens:>7} {s.reused_tokens:>7} {s.evaluated_tokens:>9} "
            f"{prev_reply:>10} {new_msg:>7} {s.ttft_s or 0:>7.2f}" + (image_cells(s) if picture else "")
        )
        ttfts.append(s.ttft_s or 0.0)
        prev_head = encoded.split
    if len(ttfts) > 1:
        print(
            f"time to first token: turn 1 {ttfts[0]:.2f} s, follow-ups median {statistics.median(ttfts[1:]):.2f} s "
            f"(ratio {statistics.median(ttfts[1:]) / ttfts[0]:.2f})"
        )
    said = "OK: each follow-up evaluated only the previous reply and the new message"
    if picture is not None:
        said += "; the picture was encoded once, on turn 1"
    print(said if ok else "FAIL")
    return 0 if ok else 1


IMAGE_HEADER = f" {'pics':>4} {'img tok':>7} {'enc':>3} {'enc s':>6}"
"""The image columns (`--image`): pictures in the prompt, their tokens, pictures encoded and the encoder's time."""


def image_cells(s: Stats) -> str:
    """One row's image columns."""
    return f" {s.images:>4} {s.image_tokens:>7} {s.images_encoded:>3} {s.image_encode_s:>6.2f}"


def tool_turns(
    engine: LlamaEngine, options: GenerationOptions, args: argparse.Namespace, picture: Picture | None = None
) -> int:
    """The conversation with a tool offered, one row per engine step."""
    from dataclasses import replace

    box = Toolbox(ToolsSettings(), tools=[CLOCK])
    convo = Conversation(engine, system_prompt="You are a helpful assistant.", options=options, tools=box)
    tools = convo.offered_tools()
    print(f"{'step':>5} {'prompt':>7} {'reused':>7} {'evaluated':>9} {'new':>5} {'ttft s':>7}  kind")
    encoded = 0  # pictures the encoder read over the whole conversation
    ok = True
    prev: tuple[int, int] | None = None  # the step before: its prompt length and where its reply started
    turn_start = 0  # where the previous turn's first reply started (the next turn resumes there)
    step_ttfts: list[float] = []
    turn_ttfts: list[float] = []
    for turn in range(args.turns):
        calls = (turn + 1) % args.tools == 0
        first = len(convo.turns) + 1  # the first reply of this turn comes after the user's message
        opts = replace(options, tool_choice="required" if calls else "auto", max_tokens=args.max_tokens)
        images = (picture,) if picture is not None and turn == 0 else ()
        for _ in convo.send(QUESTIONS[turn % len(QUESTIONS)], options=opts, images=images):
            pass
        step = 0
        for i in range(first, len(convo.turns)):
            t = convo.turns[i]
            if t.role != "assistant" or t.stats is None:
                continue
            step += 1
            s = t.stats
            encoded += s.images_encoded
            prompt = engine.encode(context_before(convo, i), options.think, tools)
            # New since the step before; for a turn's first step, since the last turn's first reply began
            # (the template renders a finished tool loop's steps differently once a new message follows).
            new = s.prompt_tokens - (prev[1] if step > 1 and prev is not None else turn_start)
            kind = "call" if i + 1 < len(convo.turns) and convo.turns[i + 1].role == "tool" else "answer"
            if step > 1:
                kind += " after the tool"
                step_ttfts.append(s.ttft_s or 0.0)
                if s.evaluated_tokens > new:
                    ok = False
            else:
                turn_ttfts.append(s.ttft_s or 0.0)
                if turn > 0 and s.evaluated_tokens > new:
                    ok = False
            print(
                f"{turn + 1:>3}.{step:<1} {s.prompt_tokens:>7} {s.reused_tokens:>7} {s.evaluated_tokens:>9} "
                f"{new:>5} {s.ttft_s or 0:>7.2f}  {kind}" + (f" (encoded {s.images_encoded})" if picture else "")
            )
            prev = (s.prompt_tokens, prompt.split)
            if step == 1:
                turn_start = prompt.split
    if step_ttfts and turn_ttfts:
        print(
            f"time to first token: a turn's first step median {statistics.median(turn_ttfts):.2f} s, "
            f"a step after a tool's result median {statistics.median(step_ttfts):.2f} s"
        )
    if picture is not None and encoded != 1:
        ok = False  # the picture is read once, however many steps and turns follow it
    print("OK: each step evaluated only what was new since the step (or the turn) before" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
