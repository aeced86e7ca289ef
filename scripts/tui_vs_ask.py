#!/usr/bin/env python3
"""Decode speed seen in the chat app against `edgeassist ask`, same model, prompt, max tokens, greedy.

The app runs headless through Textual's `App.run_test()`, so its whole rendering path (Markdown
streaming, status bar, compositor) runs while the model decodes; its figure is the tokens/s of the
Done stats the app shows (saved with the reply). `ask` runs as a subprocess with `--json`. Runs
alternate (ask, app, ask, app, ...) so machine noise hits both alike; medians are compared.

    python scripts/tui_vs_ask.py                       # the offline starter model
    python scripts/tui_vs_ask.py -m qwen3.5-0.8b --runs 7 --max-tokens 256
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeassist.config import load_settings  # noqa: E402

PROMPT = "Write a detailed essay about the history of the Roman Empire, from its founding to its fall."


def ask_once(model: str, prompt: str, max_tokens: int, store: Path, threads: int | None) -> dict[str, Any]:
    """One `edgeassist ask --json` run; its stats."""
    cmd = [
        sys.executable,
        "-m",
        "edgeassist",
        "ask",
        "--json",
        "-m",
        model,
        "--max-tokens",
        str(max_tokens),
        "--temperature",
        "0",
        "--seed",
        "1",
        "--no-think",
        *(["--threads", str(threads)] if threads else []),
        prompt,
    ]
    env = {**__import__("os").environ, "EDGEASSIST_STORE__PATH": str(store)}
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    stats: dict[str, Any] = json.loads(out.stdout)["stats"]
    return stats


async def app_runs(
    model: str, prompt: str, max_tokens: int, store: Path, runs: int, between: Any, threads: int | None
) -> list[dict[str, Any]]:
    """`runs` replies in the app (a new chat each), calling `between()` before each; their saved stats."""
    from edgeassist.tui import create_app
    from edgeassist.tui.widgets import PromptInput

    settings = load_settings(
        None,
        {
            "model": {"name": model, **({"n_threads": threads} if threads else {})},
            "store": {"path": store},
            "generation": {"max_tokens": max_tokens, "temperature": 0.0, "seed": 1, "think": False},
        },
    )
    app = create_app(settings, new_chat=True)
    results: list[dict[str, Any]] = []
    async with app.run_test(size=(80, 24)) as pilot:
        while not app.model_ready:
            if app.model_error:
                raise SystemExit(f"the app could not load the model: {app.model_error}")
            await pilot.pause(0.05)
        for _ in range(runs):
            await asyncio.to_thread(between)
            await app.open_chat(None)
            box = app.query_one(PromptInput)
            box.text = prompt
            # What Enter posts; `pilot.press` would then poll the process 50 times a second while it decodes.
            box.post_message(PromptInput.Submitted(box, prompt))
            # Poll gently: the harness must not add wake-ups of its own to the app's event loop.
            while not replied(app):
                await asyncio.sleep(0.25)
            reply = app.store.messages(app.chat.id)[-1]
            assert reply.stats is not None
            results.append(reply.stats)
        await pilot.press("ctrl+q")
    return results


def replied(app: Any) -> bool:
    """Whether the app's open chat ends with a saved reply and no reply is being written."""
    if app.chat is None or app.generating:
        return False
    saved = app.store.messages(app.chat.id)
    return bool(saved) and saved[-1].role == "assistant"


def main() -> int:
    """Measure and print the comparison."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-m", "--model", default="smollm2-135m", help="model name or path (default: the starter)")
    p.add_argument("--prompt", default=PROMPT)
    p.add_argument("--max-tokens", type=int, default=200)
    p.add_argument("--runs", type=int, default=5, help="runs of each (after one warm-up of each)")
    p.add_argument("--threads", type=int, help="llama.cpp threads for both (default: physical cores)")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "history.sqlite3"
        ask_stats: list[dict[str, Any]] = []

        def ask() -> None:
            ask_stats.append(
                ask_once(args.model, args.prompt, args.max_tokens, Path(tmp) / "ask.sqlite3", args.threads)
            )

        t0 = time.perf_counter()
        app_stats = asyncio.run(
            app_runs(args.model, args.prompt, args.max_tokens, store, args.runs + 1, ask, args.threads)
        )
        elapsed = time.perf_counter() - t0

    # Drop the warm-up run of each.
    ask_stats, app_stats = ask_stats[1:], app_stats[1:]

    def column(stats: list[dict[str, Any]], key: str) -> list[float]:
        return [float(s[key]) for s in stats if s.get(key) is not None]

    rows = []
    for label, stats in (("ask", ask_stats), ("app", app_stats)):
        tps = column(stats, "tokens_per_s")
        ms = column(stats, "decode_ms_per_token")
        toks = column(stats, "generated_tokens")
        rows.append((label, statistics.median(tps), statistics.median(ms), statistics.median(toks), tps))
    print(f"model {args.model} · {args.max_tokens} max tokens · greedy · {args.runs} runs each · {elapsed:.0f} s")
    print(f"{'':4} {'tok/s (median)':>15} {'ms/tok (median)':>16} {'tokens':>7}  runs (tok/s)")
    for label, tps, ms, toks, all_tps in rows:
        print(f"{label:4} {tps:15.1f} {ms:16.2f} {toks:7.0f}  {' '.join(f'{x:.1f}' for x in all_tps)}")
    ratio = rows[1][1] / rows[0][1]
    verdict = "within 5%" if ratio >= 0.95 else "MORE than 5% slower"
    print(f"app / ask tokens/s: {ratio:.3f} ({verdict})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
