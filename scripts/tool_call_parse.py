#!/usr/bin/env python3
"""Force many tool calls from a model and count those that do not parse (the grammar's promise: none).

Each run offers a set of tools with varied schemas and makes the reply a call (`tool_choice =
"required"`: the grammar holds it from the first token); a different seed each time. A run counts
as a failure when it gives no `ToolCall` event, or a notice that a call could not be read or was
cut off. The random-weight synthetic model never chooses what it writes, so every token of its
calls is the grammar's doing: the strictest test of it.

    scripts/tool_call_parse.py --model models/synthetic-qwen3.5-0.8b-Q4_K_M.gguf --runs 40
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeassist.engine.base import Done, GenerationOptions, Notice, ToolCall, ToolSpec  # noqa: E402
from edgeassist.engine.llama import LlamaEngine  # noqa: E402

TOOL_SETS: list[tuple[ToolSpec, ...]] = [
    (
        ToolSpec(
            "get_weather",
            "The weather in a city.",
            {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                    "days": {"type": "integer"},
                },
                "required": ["city"],
            },
        ),
    ),
    (
        ToolSpec("calculate", "Arithmetic.", {"type": "object", "properties": {"expression": {"type": "string"}}}),
        ToolSpec(
            "set_alarm",
            "Set an alarm.",
            {
                "type": "object",
                "properties": {
                    "hour": {"type": "integer"},
                    "minute": {"type": "integer"},
                    "repeat": {"type": "boolean"},
                    "label": {"type": ["string", "null"]},
                },
                "required": ["hour", "minute"],
            },
        ),
    ),
    (
        ToolSpec(
            "time.convert_time",
            "Convert a time between zones.",
            {
                "type": "object",
                "properties": {
                    "source_timezone": {"type": "string"},
                    "time": {"type": "string"},
                    "target_timezone": {"type": "string"},
                },
                "required": ["source_timezone", "time", "target_timezone"],
            },
        ),
        ToolSpec(
            "notes.add",
            "Add a note with tags.",
            {
                "type": "object",
                "properties": {
                    "text": {"type": "string"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "meta": {"type": "object", "properties": {"pinned": {"type": "boolean"}}},
                    "weight": {"type": "number"},
                },
                "required": ["text"],
            },
        ),
    ),
]


def main() -> int:
    """Run the forced calls; exit 1 when any failed to parse."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=Path("models/synthetic-qwen3.5-0.8b-Q4_K_M.gguf"))
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--max-tokens", type=int, default=800)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()

    engine = LlamaEngine(args.model, n_ctx=4096, n_threads=args.threads)
    engine.load()
    if not engine.capabilities.tools:
        print(f"{args.model.name} cannot call tools (no tool format in its template)", file=sys.stderr)
        return 2
    failures, calls = 0, 0
    ms: list[float] = []
    redraws: list[float] = []
    for run in range(args.runs):
        tools = TOOL_SETS[run % len(TOOL_SETS)]
        options = GenerationOptions(max_tokens=args.max_tokens, seed=run, tools=tools, tool_choice="required")
        messages = [{"role": "user", "content": f"Please use a tool ({run})."}]
        made: list[ToolCall] = []
        notes: list[str] = []
        stats = None
        for event in engine.stream(messages, options):  # type: ignore[arg-type]
            if isinstance(event, ToolCall):
                made.append(event)
            elif isinstance(event, Notice) and "tool call" in event.text:
                notes.append(event.text)
            elif isinstance(event, Done):
                stats = event.stats
        calls += len(made)
        if not made or notes:
            failures += 1
            print(f"run {run}: FAILED {notes or 'no call'}")
        if stats is not None and stats.decode_ms_per_token() and stats.grammar_tokens:
            ms.append(stats.decode_ms_per_token() or 0.0)
            redraws.append(stats.grammar_redraws / stats.grammar_tokens)
    print(f"{args.runs} forced replies, {calls} calls, {failures} failed to parse")
    if ms:
        print(
            f"decode with the grammar held: median {statistics.median(ms):.1f} ms/token; "
            f"tokens drawn again through the grammar: median {100 * statistics.median(redraws):.0f}%"
        )
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
