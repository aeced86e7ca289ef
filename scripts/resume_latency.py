#!/usr/bin/env python3
"""Time to first token of a resumed chat, each turn in a new process, against the same chat in one process.

Runs one scripted conversation three ways, greedy, so the three histories are the same:

- **resumed**: every turn is its own `edgeassist ask --json --chat` process, with the chat's
  model state kept on disk (`store.state_cache_mb`, the default);
- **cold**: the same, with no state kept (`EDGEASSIST_STORE__STATE_CACHE_MB=0`): a new process
  reads the whole history again, as before states were kept;
- **in-process**: one process runs every turn through the same `Conversation` and engine; from
  turn 2 on each is an in-process follow-up.

Each run has its own data folder, so the history, the kept states and the configs never mix.
The table has every turn; the summary gives, at the turns asked (`--at`), the median over that
turn and the two before it, and the resumed/in-process ratio (the goal: at most 1.2), plus the
size of the chat's kept state.

    scripts/resume_latency.py --model models/synthetic-qwen3.5-0.8b-Q4_K_M.gguf --turns 30 --at 8,30
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeassist.chat import Conversation  # noqa: E402
from edgeassist.config import load_settings  # noqa: E402
from edgeassist.engine import Done, GenerationOptions  # noqa: E402
from edgeassist.engine.factory import generation_options, open_local_engine  # noqa: E402
from edgeassist.units import format_bytes  # noqa: E402

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
    "What food do grey cats like?",
]


def question(turn: int) -> str:
    """The scripted question of `turn` (1-based); the list repeats with the turn's number."""
    return f"{QUESTIONS[(turn - 1) % len(QUESTIONS)]} (question {turn})"


def env_for(data: Path, keep_states: bool) -> dict[str, str]:
    """The environment of one run: its own data and config folders, states kept or not."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEASSIST_")}
    env["XDG_DATA_HOME"] = str(data / "data")
    env["XDG_CONFIG_HOME"] = str(data / "config")
    env["HF_HUB_OFFLINE"] = "1"
    if not keep_states:
        env["EDGEASSIST_STORE__STATE_CACHE_MB"] = "0"
    return env


def ask_turn(args: argparse.Namespace, env: dict[str, str], turn: int) -> dict[str, float]:
    """One turn as its own `edgeassist ask` process; its stats."""
    cmd = [sys.executable, "-m", "edgeassist", "ask", "--json", "--chat", "resume", "-m", str(args.model)]
    cmd += ["--n-ctx", str(args.n_ctx), "--max-tokens", str(args.max_tokens), "--temperature", "0", "--seed", "1"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    r = subprocess.run([*cmd, question(turn)], capture_output=True, text=True, env=env, timeout=900)
    if r.returncode not in (0,):
        raise SystemExit(f"turn {turn}: ask exited {r.returncode}: {r.stderr.strip()[-400:]}")
    return json.loads(r.stdout)["stats"]  # type: ignore[no-any-return]


def in_process(args: argparse.Namespace, data: Path, turns: int) -> list[dict[str, float]]:
    """Every turn in this process, through the same Conversation (the in-process follow-ups)."""
    os.environ.update(env_for(data, keep_states=False))
    flags = {"model": {"name": str(args.model), "n_ctx": args.n_ctx}}
    if args.threads:
        flags["model"]["n_threads"] = args.threads
    settings = load_settings(flags=flags)
    engine = open_local_engine(settings, explicit=True)
    options: GenerationOptions = generation_options(settings, max_tokens=args.max_tokens, temperature=0.0, seed=1)
    convo = Conversation(engine, system_prompt=settings.generation.system_prompt, options=options)
    out = []
    for turn in range(1, turns + 1):
        for event in convo.send(question(turn)):
            if isinstance(event, Done):
                out.append(event.stats.to_dict())
    engine.close()
    return out


def median_at(rows: list[dict[str, float]], turn: int) -> float:
    """The median time to first token over `turn` and the two turns before it."""
    return statistics.median(r["ttft_s"] for r in rows[max(0, turn - 3) : turn])


def main() -> int:
    """Run the three ways and print the table and the summary."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=Path("models/synthetic-qwen3.5-0.8b-Q4_K_M.gguf"))
    ap.add_argument("--turns", type=int, default=30)
    ap.add_argument("--at", default="8,30", help="turns to summarise (comma list)")
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--n-ctx", type=int, default=8192)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    args.model = args.model.resolve()
    at = [int(t) for t in args.at.split(",") if t.strip()]

    with tempfile.TemporaryDirectory(prefix="resume-") as tmp:
        root = Path(tmp)
        resumed_env, cold_env = env_for(root / "resumed", True), env_for(root / "cold", False)
        resumed, cold = [], []
        for turn in range(1, args.turns + 1):
            resumed.append(ask_turn(args, resumed_env, turn))
            cold.append(ask_turn(args, cold_env, turn))
            print(f"  turn {turn}/{args.turns} done", file=sys.stderr, flush=True)
        states = root / "resumed" / "data" / "edgeassist" / "states"
        chat_state = max((p.stat().st_size for p in states.glob("chat-*.state")), default=0)
        prompt_state = max((p.stat().st_size for p in states.glob("prompt-*.state")), default=0)
        same = in_process(args, root / "inproc", args.turns)

    print(f"model {args.model.name}, n_ctx {args.n_ctx}, {args.max_tokens} tokens a reply, greedy")
    print(
        f"{'turn':>4} {'prompt':>6} | {'cold reused':>11} {'ttft':>6} | {'resumed reused':>14} {'ttft':>6} |"
        f" {'in-process reused':>17} {'ttft':>6}"
    )
    for i, (c, r, s) in enumerate(zip(cold, resumed, same, strict=True), start=1):
        print(
            f"{i:>4} {r['prompt_tokens']:>6} | {c['reused_tokens']:>11} {c['ttft_s']:>6.2f} |"
            f" {r['reused_tokens']:>14} {r['ttft_s']:>6.2f} | {s['reused_tokens']:>17} {s['ttft_s']:>6.2f}"
        )
    print()
    print("median time to first token over the turn and the two before it:")
    for turn in at:
        if turn > len(resumed):
            continue
        c, r, s = median_at(cold, turn), median_at(resumed, turn), median_at(same, turn)
        print(
            f"  turn {turn:>2} ({resumed[turn - 1]['prompt_tokens']} prompt tokens): cold {c:.2f} s,"
            f" resumed {r:.2f} s, in-process {s:.2f} s; resumed/in-process {r / s:.2f}, cold/resumed {c / r:.1f}"
        )
    print(f"kept state of the chat: {format_bytes(chat_state)}; of the system prompt: {format_bytes(prompt_state)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
