"""Tools through `edgeassist ask`, for real: the synthetic Qwen 3.5 makes grammar-held calls, and
every policy path (allow, ask on a terminal, ask without one, deny) is taken in a real process.

The random-weight model never chooses to call a tool on its own, so these use `--tool-choice
required`: the grammar then holds the whole reply to a call of one of the offered tools, and a
call with arguments valid for its schema is what comes out, whatever the weights say.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ONLY_FILES = {"EDGEASSIST_TOOLS__CLOCK": "false", "EDGEASSIST_TOOLS__CALCULATOR": "false"}


def ask(model: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "edgeassist", "ask", "-m", str(model), "--max-tokens", "400", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # no controlling terminal: /dev/tty cannot be opened
    )


def answer_json(r: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "notes"
    d.mkdir()
    (d / "a.txt").write_text("alpha\n")
    return d


def files_env(folder: Path, **extra: str) -> dict[str, str]:
    return {**ONLY_FILES, "EDGEASSIST_TOOLS__ALLOWED_DIRS": json.dumps([str(folder)]), **extra}


def test_a_forced_call_of_an_allowed_tool_runs_and_is_in_the_json(tiny_qwen35: Path) -> None:
    env = {"EDGEASSIST_TOOLS__CALCULATOR": "false"}
    r = ask(tiny_qwen35, "--json", "--tool-choice", "required", "--seed", "3", "What time is it?", env=env)
    out = answer_json(r)
    calls = out["tool_calls"]
    assert calls and calls[0]["name"] == "current_time" and calls[0]["source"] == "built-in"
    # The grammar held the call to the schema; a random time zone is the tool's error, not a broken call.
    assert calls[0]["outcome"] in ("ok", "error")
    assert set(calls[0]["arguments"]) <= {"timezone"}
    assert "tool `current_time`" in r.stderr
    assert out["stats"]["finish_reason"] in ("stop", "length")


def test_ask_without_a_terminal_refuses_a_tool_that_asks(tiny_qwen35: Path, folder: Path) -> None:
    r = ask(tiny_qwen35, "--json", "--tool-choice", "required", "--seed", "1", "list it", env=files_env(folder))
    calls = answer_json(r)["tool_calls"]
    assert calls[0]["name"] in ("read_file", "list_folder")
    assert (calls[0]["outcome"], calls[0]["result"]) == ("denied", "Not run: the user did not allow this call.")
    assert calls[0]["duration_s"] == 0


def test_allow_tool_lets_it_run_without_asking(tiny_qwen35: Path, folder: Path) -> None:
    args = ["--json", "--tool-choice", "required", "--seed", "1", "--allow-tool", "read_file"]
    args += ["--allow-tool", "list_folder", "list it"]
    calls = answer_json(ask(tiny_qwen35, *args, env=files_env(folder)))["tool_calls"]
    assert calls[0]["outcome"] in ("ok", "error")  # ran: a random path is the tool's own refusal
    assert calls[0]["result"] != "Not run: the user did not allow this call."


def test_a_denied_tool_is_never_offered(tiny_qwen35: Path, folder: Path) -> None:
    env = files_env(folder, EDGEASSIST_TOOLS__POLICY=json.dumps({"read_file": "deny"}))
    args = ["--json", "--tool-choice", "required", "--allow-tool", "read_file", "--allow-tool", "list_folder"]
    for seed in ("1", "2", "3"):
        calls = answer_json(ask(tiny_qwen35, *args, "--seed", seed, "read it", env=env))["tool_calls"]
        assert {c["name"] for c in calls} == {"list_folder"}


def _ask_on_a_terminal(model: Path, answer: bytes, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """Run ask with a pseudo-terminal as its controlling terminal; type `answer` each time it asks.

    (A reply may make more than one call, and each asks.) A child still running at the deadline is
    killed, so a test that goes wrong fails instead of hanging the suite.
    """
    pid, fd = pty.fork()
    argv = [sys.executable, "-m", "edgeassist", "ask", "-m", str(model), "--max-tokens", "400", "--json", *args]
    if pid == 0:  # the child: the pty is its controlling terminal and its stdin/stdout/stderr
        os.environ.update(env)
        os.execv(sys.executable, argv)
    seen = b""
    answered = 0
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
            while seen.count(b"allow it?") > answered:
                os.write(fd, answer + b"\n")
                answered += 1
    finally:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == 0:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
        os.close(fd)
    text = seen.decode("utf-8", "replace").replace("\r\n", "\n")
    line = next((x for x in text.splitlines() if x.startswith('{"model"')), "{}")
    return os.waitstatus_to_exitcode(status), text, line


@pytest.mark.parametrize(("typed", "outcome"), [(b"y", "ok"), (b"n", "denied"), (b"", "denied")])
def test_ask_on_a_terminal_asks_and_takes_the_answer(
    tiny_qwen35: Path, folder: Path, typed: bytes, outcome: str
) -> None:
    args = ("--tool-choice", "required", "--seed", "4", "go")
    rc, text, line = _ask_on_a_terminal(tiny_qwen35, typed, files_env(folder), *args)
    assert rc == 0, text
    assert "the model wants to run `" in text and "[y]es once / [a]lways / [N]o" in text
    calls = json.loads(line)["tool_calls"]
    ran = calls[0]["outcome"] in ("ok", "error")
    assert ran == (outcome == "ok")


def test_always_on_a_terminal_is_saved_to_the_config_and_not_asked_again(tiny_qwen35: Path, folder: Path) -> None:
    config = folder.parent / "mine.toml"
    config.write_text("# my settings\n")
    env = files_env(folder)
    rc, text, line = _ask_on_a_terminal(
        tiny_qwen35, b"a", env, "--config", str(config), "--tool-choice", "required", "--seed", "5", "go"
    )
    assert rc == 0, text
    name = json.loads(line)["tool_calls"][0]["name"]
    assert f'"{name}" = "allow"' in config.read_text()
    r = ask(tiny_qwen35, "--config", str(config), "--json", "--tool-choice", "required", "--seed", "5", "go", env=env)
    assert answer_json(r)["tool_calls"][0]["result"] != "Not run: the user did not allow this call."


def test_the_starter_cannot_call_tools_and_says_so_once(starter_gguf: Path, folder: Path) -> None:
    r = ask(starter_gguf, "--json", "--temperature", "0", "--max-tokens", "8", "hi", env=files_env(folder))
    out = answer_json(r)
    assert out["tool_calls"] == []
    assert r.stderr.count("cannot call tools") == 1


def test_no_tools_offers_none(tiny_qwen35: Path) -> None:
    r = ask(tiny_qwen35, "--json", "--no-tools", "--tool-choice", "required", "--max-tokens", "4", "x")
    assert answer_json(r)["tool_calls"] == []


def test_the_mcp_time_server_answers_a_grammar_forced_call(tiny_qwen35: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        "[tools]\nclock = false\ncalculator = false\n\n[tools.mcp.time]\n"
        f"command = {json.dumps(sys.executable)}\n"
        'args = ["-m", "mcp_server_time", "--local-timezone", "UTC"]\n'
    )
    args = ["--config", str(config), "--json", "--tool-choice", "required", "--allow-tool", "time"]
    r = ask(tiny_qwen35, *args, "--seed", "2", "What time is it in Tokyo?")
    calls = answer_json(r)["tool_calls"]
    assert calls[0]["name"] in ("time.get_current_time", "time.convert_time")
    assert calls[0]["source"] == "time"
    # A real MCP round trip: the server checked the (random) arguments and answered.
    assert calls[0]["outcome"] in ("ok", "error") and calls[0]["duration_s"] > 0
    assert calls[0]["result"]


def tools_json(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    r = subprocess.run(
        [sys.executable, "-m", "edgeassist", "tools", "--json", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def test_edgeassist_tools_lists_each_tool_its_source_and_policy(tmp_path: Path, folder: Path) -> None:
    rows = {r["name"]: r for r in tools_json()["tools"]}
    assert {n: r["policy"] for n, r in rows.items()} == {
        "calculate": "allow",
        "current_time": "allow",
        "list_folder": "off",
        "read_file": "off",
        "run_shell": "off",
    }
    assert "tools.allowed_dirs" in rows["read_file"]["description"]
    rows = {r["name"]: r["policy"] for r in tools_json(env=files_env(folder))["tools"]}
    assert rows["read_file"] == rows["list_folder"] == "ask"
    config = tmp_path / "config.toml"
    config.write_text(
        f"[tools.mcp.time]\ncommand = {json.dumps(sys.executable)}\n"
        'args = ["-m", "mcp_server_time", "--local-timezone", "UTC"]\n'
        '[tools.policy]\ncalculate = "deny"\n'
    )
    listed = tools_json("--config", str(config), "--allow-tool", "time")
    rows = {r["name"]: (r["source"], r["policy"]) for r in listed["tools"]}
    assert rows["time.get_current_time"] == rows["time.convert_time"] == ("time", "allow")
    assert rows["calculate"] == ("built-in", "off")
    assert listed["servers"] == {"time": "running (2 tools)"}
    assert {r["policy"] for r in tools_json("--no-tools")["tools"]} == {"off"}
