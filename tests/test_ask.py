"""`edgeassist ask` end to end, as a person runs it: a real process, the real starter model."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from edgeassist.store import Store


def ask(*args: str, stdin: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgeassist", "ask", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ.copy(),
    )


def test_offline_falls_back_to_the_starter_and_says_so(models_dir: Path) -> None:
    r = ask("--temperature", "0", "What is the capital of France?")
    assert r.returncode == 0, r.stderr
    assert "Paris" in r.stdout
    notes = [line for line in r.stderr.splitlines() if line]
    assert len(notes) == 1 and "starter" in notes[0] and "edgeassist pull qwen3.5-0.8b" in notes[0]


def test_json_and_stdin(models_dir: Path) -> None:
    r = ask("--json", "--temperature", "0", "--max-tokens", "12", "-", stdin="Name a colour.\n")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["starter"] is True and out["answer"]
    stats = out["stats"]
    assert stats["generated_tokens"] == len(stats["token_times"]) <= 12
    assert stats["backend"] == "cpu" and stats["ttft_s"] > 0 and stats["load_s"] > 0
    for key in ("prompt_tokens", "reused_tokens", "decode_ms_per_token", "tokens_per_s", "finish_reason"):
        assert key in stats


def test_model_by_path_and_chat_continues(models_dir: Path, starter_gguf: Path, isolated_env: Path) -> None:
    local = models_dir / "my-model.gguf"
    shutil.copy(starter_gguf, local)
    for q in ("My favourite number is 7.", "What is my favourite number?"):
        r = ask("--model", str(local), "--max-tokens", "16", "--chat", "numbers", q)
        assert r.returncode == 0, r.stderr
        assert "starter" not in r.stderr
    store = Store(isolated_env / "data" / "edgeassist" / "history.sqlite3")
    msgs = store.messages(store.find_chat("numbers").id)
    assert [m.role for m in msgs] == ["user", "assistant", "user", "assistant"]


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["   "], 2, "empty"),
        (["--model", "qwen3.5-08b", "hi"], 3, "qwen3.5-0.8b"),
        (["--model", "/nonexistent/model.gguf", "hi"], 3, "model.gguf"),
        (["--n-ctx", "256", "word " * 700], 5, "context window"),
    ],
)
def test_errors_are_one_line_with_an_exit_code(models_dir: Path, args: list[str], code: int, needle: str) -> None:
    r = ask(*args)
    assert r.returncode == code, r.stderr
    lines = [line for line in r.stderr.splitlines() if line and "starter" not in line]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr


def test_corrupt_model_file_names_it_and_suggests_a_pull(models_dir: Path, starter_gguf: Path) -> None:
    cut = models_dir / "Qwen3.5-0.8B-Q4_K_M.gguf"
    with starter_gguf.open("rb") as src:
        cut.write_bytes(src.read(5_000_000))
    r = ask("hi")
    assert r.returncode == 3
    assert "Qwen3.5-0.8B-Q4_K_M.gguf" in r.stderr and "edgeassist pull" in r.stderr
    assert "Traceback" not in r.stderr


def test_ctrl_c_mid_reply_stops_exits_130_and_saves_it_as_stopped(models_dir: Path, isolated_env: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgeassist",
            "ask",
            "--chat",
            "story",
            "--max-tokens",
            "2000",
            "Write a very long story about a lighthouse keeper.",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )
    assert proc.stdout is not None
    got = proc.stdout.read(40)  # the reply is streaming
    assert got
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert b"interrupted" in err and b"Traceback" not in err
    store = Store(isolated_env / "data" / "edgeassist" / "history.sqlite3")
    reply = store.messages(store.find_chat("story").id)[-1]
    assert reply.role == "assistant" and reply.status == "cancelled" and reply.content


def test_a_reply_cut_by_the_token_limit_says_so_on_stderr(models_dir: Path) -> None:
    r = ask("--temperature", "0", "--max-tokens", "3", "Tell me a long story about a dragon.")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()
    cut = [line for line in r.stderr.splitlines() if "cut" in line]
    assert len(cut) == 1 and "at 3 tokens" in cut[0] and "--max-tokens" in cut[0]
    whole = ask("--temperature", "0", "--max-tokens", "200", "What is the capital of France?")
    assert whole.returncode == 0 and "cut" not in whole.stderr
