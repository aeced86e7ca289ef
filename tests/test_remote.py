"""The remote engine against a real OpenAI-compatible server (llama-cpp-python's, with the starter model),
directly, through `ask` and `models` as processes, and in the chat app; the error cases through a
fault-injecting proxy in front of that server (`tests/remote_proxy.py`)."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pilot import wait_until
from remote_proxy import Fault, FaultProxy
from servers import REMOTE_MODEL, LlamaServer, ask, collect, done, free_port, texts, user

from edgeassist.chat import Conversation
from edgeassist.config import GenerationSettings, load_settings
from edgeassist.engine.base import Event, GenerationOptions, Message, Notice, Text, Thinking
from edgeassist.engine.factory import open_engine
from edgeassist.engine.remote import RemoteEngine, RemoteModel, name_thinks, plain_http_warning, template_thinks
from edgeassist.errors import (
    ConfigError,
    RemoteModelNotFoundError,
    ServerAuthError,
    ServerBusyError,
    ServerReplyError,
    ServerUnreachableError,
)
from edgeassist.store import Store

GREEDY = GenerationOptions(temperature=0.0, seed=1, max_tokens=48)
THINKING = GenerationOptions(think=True, temperature=0.0, seed=1, max_tokens=48)
COUNT = "Count from one to twenty in words, separated by commas."


def engine_for(url: str, **kwargs: Any) -> RemoteEngine:
    return RemoteEngine(url, **{"model": REMOTE_MODEL, **kwargs})


# -- settings and the parts that need no server ---------------------------------------------------


def test_settings_take_an_endpoint_and_refuse_what_is_not_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEASSIST_API_KEY", "sekrit")  # the key's variable is not mistaken for a setting
    s = load_settings(None, {"model": {"endpoint": "http://127.0.0.1:8080/v1/", "remote_model": "m"}})
    assert s.model.endpoint == "http://127.0.0.1:8080/v1" and s.model.remote_model == "m"
    assert "sekrit" not in s.model_dump_json()
    for here in ("none", "None", ""):  # `--endpoint none` runs the model here whatever the config says
        assert load_settings(None, {"model": {"endpoint": here}}).model.endpoint is None
    for bad, why in [
        ("ftp://host/v1", "http:// or https://"),
        ("http://me:pw@host/v1", "user name or password"),
        ("http://host/v1?key=x", "base URL"),
        ("http://host:port/v1", "not a URL"),
    ]:
        with pytest.raises(ConfigError, match="model.endpoint") as e:
            load_settings(None, {"model": {"endpoint": bad}})
        assert why in str(e.value)
    with pytest.raises(ConfigError, match="would be read as a setting"):
        load_settings(None, {"model": {"api_key_env": "EDGEASSIST_TOKEN"}})


def test_every_front_end_takes_endpoint_flags() -> None:
    from edgeassist.cli import build_parser, settings_flags

    for command in ("chat", "ask", "voice", "models", "bench"):
        extra = ["hi"] if command == "ask" else []
        args = build_parser().parse_args([command, "--endpoint", "http://h:1/v1", "--remote-model", "m", *extra])
        assert settings_flags(args)["model"] == {"endpoint": "http://h:1/v1", "remote_model": "m"}, command


def test_plain_http_warns_only_off_this_machine() -> None:
    assert plain_http_warning("http://127.0.0.1:8080/v1") is None
    assert plain_http_warning("http://localhost:8080/v1") is None
    assert plain_http_warning("http://[::1]:8080/v1") is None
    assert plain_http_warning("https://gpu-box.example/v1") is None
    warning = plain_http_warning("http://gpu-box.example:8000/v1")
    assert warning is not None and "unencrypted" in warning


def test_the_request_carries_sampling_and_the_thinking_switch() -> None:
    engine = RemoteEngine("http://127.0.0.1:1/v1", model="Qwen/Qwen3.5-9B")
    body = engine.request_body(user("hi"), GenerationOptions(think=True, seed=3, max_tokens=7))
    assert body["chat_template_kwargs"] == {"enable_thinking": True}
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert (body["temperature"], body["top_p"], body["top_k"], body["presence_penalty"]) == (1.0, 0.95, 20, 1.5)
    assert (body["seed"], body["max_tokens"], body["model"]) == (3, 7, "Qwen/Qwen3.5-9B")
    off = engine.request_body(user("hi"), GenerationOptions(think=False, temperature=0.1))
    assert off["chat_template_kwargs"] == {"enable_thinking": False} and off["temperature"] == 0.1
    assert "seed" not in off
    caps = engine.capabilities
    assert caps.thinking and not caps.local and engine.backend == "remote"
    assert engine.prefill(user("hi"), False) == 0
    with engine.held(), engine.stepwise():
        pass


def test_a_cut_reply_is_continued_not_answered_anew() -> None:
    engine = RemoteEngine("http://127.0.0.1:1/v1", model="Qwen/Qwen3.5-9B")
    cut: list[Message] = [*user("Count to ten."), {"role": "assistant", "content": "One, two,"}]
    body = engine.request_body(cut, GREEDY)
    assert body["messages"][-1] == {"role": "assistant", "content": "One, two,"}
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert "continue_final_message" not in engine.request_body(user("Count to ten."), GREEDY)


def test_open_engine_gives_a_remote_engine_for_an_endpoint(tmp_path: Path) -> None:
    settings = load_settings(None, {"model": {"endpoint": "http://127.0.0.1:1/v1", "name": "no-such-local-model"}})
    opened = open_engine(settings, explicit=True)  # the local model is not looked for
    assert isinstance(opened.engine, RemoteEngine) and isinstance(opened.resolved, RemoteModel)
    assert opened.resolved.note is None and not opened.resolved.is_starter and opened.resolved.quant is None


# -- a real server ---------------------------------------------------------------------------------


def test_ask_streams_the_answer_from_the_server(llama_server: LlamaServer) -> None:
    r = ask("--endpoint", llama_server.url, "--temperature", "0", "What is the capital of France?")
    assert r.returncode == 0, r.stderr
    assert "Paris" in r.stdout
    r = ask("--endpoint", llama_server.url, "--json", "--temperature", "0", "--max-tokens", "12", "Name a colour.")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["model"] == REMOTE_MODEL and out["answer"] and out["starter"] is False
    stats = out["stats"]
    assert stats["backend"] == "remote" and stats["finish_reason"] in ("stop", "length")
    assert stats["ttft_s"] > 0 and len(stats["token_times"]) >= 1
    assert stats["generated_tokens"] <= 12


def test_the_engine_finds_the_servers_only_model_and_streams(llama_server: LlamaServer) -> None:
    engine = RemoteEngine(llama_server.url, n_ctx=2048)  # no model named: the server has one
    assert not engine.loaded
    engine.load()
    assert engine.loaded and engine.name == REMOTE_MODEL
    # With the app's system prompt, as the app asks: the 135M model's bare greedy answer to this question
    # turns on the CPU's kernels (without it, AVX-512 ones answer "L'Étoile, la Cité, ...").
    question: list[Message] = [
        {"role": "system", "content": GenerationSettings().system_prompt},
        *user("What is the capital of France?"),
    ]
    events = collect(engine.stream(question, GREEDY))
    assert "Paris" in texts(events)
    stats = done(events).stats
    assert stats.finish_reason == "stop" and stats.model == REMOTE_MODEL and stats.backend == "remote"
    assert stats.ttft_s is not None and stats.token_times == sorted(stats.token_times)
    assert sum(e.tokens for e in events if isinstance(e, Text)) == len(stats.token_times)
    assert engine.count_tokens(user("hello there"), GREEDY) > 0
    engine.close()
    assert not engine.loaded


def test_a_model_the_server_does_not_have_lists_the_ones_it_has(llama_server: LlamaServer) -> None:
    with pytest.raises(RemoteModelNotFoundError, match=REMOTE_MODEL) as e:
        RemoteEngine(llama_server.url, model="qwen3.5-9b").load()
    assert "'qwen3.5-9b'" in str(e.value) and e.value.exit_code == 3


def test_the_models_command_lists_the_servers_models(llama_server: LlamaServer) -> None:
    cmd = [sys.executable, "-m", "edgeassist", "models", "--endpoint", llama_server.url]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert REMOTE_MODEL in r.stdout and "default" in r.stdout
    r = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=120)
    data = json.loads(r.stdout)
    assert data["endpoint"] == llama_server.url
    assert [m["name"] for m in data["models"]] == [REMOTE_MODEL]


# -- cannot connect --------------------------------------------------------------------------------


def test_connection_refused_is_one_line_and_exit_code_8() -> None:
    r = ask("--endpoint", f"http://127.0.0.1:{free_port()}/v1", "hi")
    assert r.returncode == 8
    assert r.stderr.count("\n") == 1 and "connection refused" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_an_unknown_host_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "no-such-host.invalid":  # no DNS query leaves this machine
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with pytest.raises(ServerUnreachableError, match="unknown host no-such-host.invalid"):
        RemoteEngine("https://no-such-host.invalid/v1").load()


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[int]:
    """A TLS server on 127.0.0.1 with a self-signed certificate (which verification must refuse)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is needed to make the test's self-signed certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            try:
                with ctx.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()


def test_a_certificate_that_does_not_verify_is_a_tls_failure(tls_server: int, llama_server: LlamaServer) -> None:
    with pytest.raises(ServerUnreachableError, match="TLS with 127.0.0.1") as e:
        RemoteEngine(f"https://127.0.0.1:{tls_server}/v1").load()
    assert "certificate" in str(e.value)
    # https:// to a server that speaks plain HTTP fails the same way, not as a garbled reply.
    with pytest.raises(ServerUnreachableError, match="TLS with"):
        RemoteEngine(llama_server.url.replace("http://", "https://")).load()


def test_a_server_that_never_takes_the_connection_times_out() -> None:
    # A listener whose accept queue is full: the kernel drops further SYNs, so connecting hangs.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        with pytest.raises(ServerUnreachableError, match=r"did not take the connection within 0.5 s"):
            RemoteEngine(f"http://127.0.0.1:{port}/v1", connect_timeout_s=0.5).load()
    finally:
        for s in fillers:
            s.close()
        listener.close()


# -- the fault proxy -------------------------------------------------------------------------------


def test_401_names_the_variable_and_the_key_goes_only_in_the_header(
    fault_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    fault_proxy.set_fault(Fault(api_key="sekrit-123"))
    with pytest.raises(ServerAuthError, match="put it in the environment variable EDGEASSIST_API_KEY") as e:
        engine_for(fault_proxy.url).load()
    assert e.value.exit_code == 9
    monkeypatch.setenv("EDGEASSIST_API_KEY", "wrong-456")
    with pytest.raises(ServerAuthError, match=r"refused the API key from \$EDGEASSIST_API_KEY") as e:
        engine_for(fault_proxy.url).load()
    assert "wrong-456" not in str(e.value)
    monkeypatch.setenv("MY_SERVER_KEY", "sekrit-123")
    engine = engine_for(fault_proxy.url, api_key_env="MY_SERVER_KEY")
    events = collect(engine.stream(user("Say hi."), GREEDY))
    assert done(events).stats.finish_reason in ("stop", "length")
    chat = fault_proxy.chat_requests()[-1]
    assert chat.headers["Authorization"] == "Bearer sekrit-123"
    assert "sekrit-123" not in chat.path and b"sekrit-123" not in chat.body
    assert "sekrit-123" not in repr(engine.__dict__) and "sekrit-123" not in json.dumps(done(events).stats.to_dict())


def test_a_refused_key_exits_9_without_showing_it(fault_proxy: FaultProxy) -> None:
    fault_proxy.set_fault(Fault(api_key="sekrit-123"))
    r = ask("--endpoint", fault_proxy.url, "--json", "hi", env={"EDGEASSIST_API_KEY": "wrong-456"})
    assert r.returncode == 9, r.stderr
    assert "EDGEASSIST_API_KEY" in r.stderr and "wrong-456" not in r.stderr + r.stdout


def test_404_for_the_reply_lists_the_servers_models(fault_proxy: FaultProxy) -> None:
    fault_proxy.set_fault(Fault(chat_status=404))  # as vLLM answers a model it does not serve
    with pytest.raises(RemoteModelNotFoundError, match=f"it has: {REMOTE_MODEL}"):
        collect(engine_for(fault_proxy.url).stream(user("hi"), GREEDY))


def test_a_busy_server_is_asked_again_once_after_retry_after(fault_proxy: FaultProxy) -> None:
    fault_proxy.set_fault(Fault(busy=1, retry_after="1"))
    events = collect(engine_for(fault_proxy.url).stream(user("Say hi."), GREEDY))
    notices = [e.text for e in events if isinstance(e, Notice)]
    assert notices == ["the server is busy (429): trying again in 1 s"]
    assert done(events).stats.finish_reason in ("stop", "length") and texts(events)
    assert len(fault_proxy.chat_requests()) == 2


def test_a_server_still_busy_after_one_wait_exits_10(fault_proxy: FaultProxy) -> None:
    fault_proxy.set_fault(Fault(busy=5, busy_status=503, retry_after="0"))
    with pytest.raises(ServerBusyError, match="busy") as e:
        collect(engine_for(fault_proxy.url).stream(user("hi"), GREEDY))
    assert e.value.exit_code == 10
    assert len(fault_proxy.chat_requests()) == 2  # the one retry, no more
    fault_proxy.set_fault(Fault(busy=5, busy_status=429, retry_after="3600"))
    with pytest.raises(ServerBusyError, match="asks to wait 3600 s"):
        collect(engine_for(fault_proxy.url).stream(user("hi"), GREEDY))


def chat_with_store(tmp_path: Path, engine: RemoteEngine) -> tuple[Conversation, Store]:
    store = Store(tmp_path / "history.sqlite3")
    return Conversation.open(engine, store, "remote", options=GREEDY), store


def broken_reply(
    tmp_path: Path, proxy: FaultProxy, fault: Fault, match: str, **engine_kwargs: Any
) -> tuple[list[Event], Any]:
    """Send COUNT through a Conversation while the proxy breaks the reply; the events and the saved reply."""
    proxy.set_fault(fault)
    convo, store = chat_with_store(tmp_path, engine_for(proxy.url, **engine_kwargs))
    events: list[Event] = []
    with pytest.raises(ServerReplyError, match=match) as e:
        for event in convo.send(COUNT):
            events.append(event)
    assert e.value.exit_code == 11 and "\n" not in str(e.value)
    assert convo.chat is not None
    saved = store.messages(convo.chat.id)
    assert [m.role for m in saved] == ["user", "assistant"]
    return events, saved[-1]


def test_a_stall_between_chunks_gives_up_and_keeps_the_part(tmp_path: Path, fault_proxy: FaultProxy) -> None:
    # The stall timeout also covers the wait for the first chunk (the server may still be finishing
    # an earlier test's reply): long enough for that, far shorter than the proxy's stall.
    events, saved = broken_reply(
        tmp_path, fault_proxy, Fault(stall_after=6), "sent nothing for 5 s .model.stall_timeout_s.", stall_timeout_s=5
    )
    assert texts(events) and saved.status == "cancelled" and saved.content == texts(events).strip()
    fault_proxy.release()


def test_a_malformed_event_ends_the_reply_and_keeps_the_part(tmp_path: Path, fault_proxy: FaultProxy) -> None:
    events, saved = broken_reply(tmp_path, fault_proxy, Fault(garbage_after=6), "malformed event")
    assert texts(events) and saved.status == "cancelled" and saved.content == texts(events).strip()


def test_a_connection_dropped_mid_reply_keeps_the_part(tmp_path: Path, fault_proxy: FaultProxy) -> None:
    events, saved = broken_reply(tmp_path, fault_proxy, Fault(drop_after=6), "dropped the connection mid-reply")
    assert texts(events) and saved.status == "cancelled" and saved.content == texts(events).strip()


def test_ask_exits_11_when_the_server_drops_and_the_chat_keeps_the_part(
    fault_proxy: FaultProxy, isolated_env: Path
) -> None:
    fault_proxy.set_fault(Fault(drop_after=6))
    r = ask("--endpoint", fault_proxy.url, "--temperature", "0", "--chat", "dropped", COUNT)
    assert r.returncode == 11, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "dropped the connection mid-reply" in lines[0]
    store = Store(isolated_env / "data" / "edgeassist" / "history.sqlite3")
    chat = store.find_chat("dropped")
    assert chat is not None
    saved = store.messages(chat.id)
    assert [(m.role, m.status) for m in saved] == [("user", "complete"), ("assistant", "cancelled")]
    assert saved[-1].content and saved[-1].content in r.stdout


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_streamed_reasoning_is_thinking(fault_proxy: FaultProxy, field: str) -> None:
    # The proxy moves the first events' content into the field a server with a reasoning parser uses.
    fault_proxy.set_fault(Fault(reasoning_field=field, reasoning_events=5))
    plain = collect(engine_for(fault_proxy.url).stream(user(COUNT), GREEDY))
    assert texts(plain, Thinking) and texts(plain)
    kinds = [type(e) for e in plain if isinstance(e, Text | Thinking)]
    assert kinds == sorted(kinds, key=lambda k: k is Text)  # all the thinking comes first
    # With thinking asked for, content after the reasoning is still the answer.
    thought = collect(engine_for(fault_proxy.url).stream(user(COUNT), THINKING))
    assert texts(thought, Thinking) and texts(thought)


def test_thinking_left_inline_is_split_at_the_tag(fault_proxy: FaultProxy) -> None:
    # A server without a reasoning parser leaves the thinking in the content, closed by </think>.
    # (The starter cannot think: the engine is told its model can, as `model.remote_thinking = "on"` does.)
    fault_proxy.set_fault(Fault())
    untagged = collect(engine_for(fault_proxy.url, thinking=True).stream(user(COUNT), THINKING))
    assert texts(untagged, Thinking) and not texts(untagged)  # no tag: all of it is thinking
    fault_proxy.set_fault(Fault(close_tag_after=5))
    events = collect(engine_for(fault_proxy.url, thinking=True).stream(user(COUNT), THINKING))
    thinking, answer = texts(events, Thinking), texts(events)
    assert thinking and answer and "</think>" not in thinking + answer
    sent = fault_proxy.relayed
    assert thinking.strip() == "".join(sent[:5]).strip()  # what came before the tag
    assert answer.strip() == "".join(sent[5:]).removeprefix("</think>").strip()


def test_a_model_that_cannot_think_answers_as_text_with_thinking_on(llama_server: LlamaServer) -> None:
    # llama-cpp-python's server has no /props or /api/show: the model's name (SmolLM2) says it cannot think.
    engine = engine_for(llama_server.url)
    engine.load()
    assert engine.capabilities.thinking is False
    events = collect(engine.stream(user(COUNT), THINKING))
    assert texts(events) and not texts(events, Thinking)
    told = engine_for(llama_server.url, thinking=True)  # model.remote_thinking = "on" overrides the guess
    told.load()
    assert told.capabilities.thinking is True


@pytest.mark.parametrize(
    ("name", "thinks"),
    [
        ("Qwen/Qwen3.5-9B", True),
        ("qwen3.5:4b", True),
        ("Qwen/Qwen3-8B", True),
        ("Qwen/QwQ-32B", True),
        ("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", True),
        ("openai/gpt-oss-20b", True),
        ("Qwen/Qwen3-4B-Instruct-2507", False),
        ("Qwen/Qwen3-Coder-30B-A3B-Instruct", False),
        ("HuggingFaceTB/SmolLM2-135M-Instruct", False),
        ("meta-llama/Llama-3.1-8B-Instruct", False),
        ("127.0.0.1:8080", False),
    ],
)
def test_a_server_model_thinks_by_its_name_when_the_server_does_not_say(name: str, thinks: bool) -> None:
    assert name_thinks(name) is thinks
    assert RemoteEngine("http://127.0.0.1:1/v1", model=name).capabilities.thinking is thinks


def test_a_chat_template_that_thinks() -> None:
    assert template_thinks("{%- if enable_thinking is defined and enable_thinking is false %}")
    assert template_thinks("{{- '<|im_start|>assistant\n<think>\n' }}")
    assert not template_thinks("{% for message in messages %}{{ message['content'] }}{% endfor %}")


def test_cancel_stops_within_one_chunk_and_closes_the_stream(fault_proxy: FaultProxy) -> None:
    fault_proxy.set_fault(Fault(hold_after=6))
    engine = engine_for(fault_proxy.url)
    cancel = threading.Event()
    events: list[Event] = []
    reader = threading.Thread(target=lambda: events.extend(engine.stream(user(COUNT), GREEDY, cancel)))
    reader.start()
    assert fault_proxy.held.wait(120), "the reply never reached the hold"
    cancel.set()
    fault_proxy.release()
    reader.join(120)
    assert not reader.is_alive()
    stats = done(events).stats
    assert stats.finish_reason == "cancelled"
    assert fault_proxy.text_before_hold  # the reply was under way
    # The chunk that came after the stop was not taken: the reply is what was relayed before the hold.
    assert texts(events).strip() == fault_proxy.text_before_hold.strip()
    assert fault_proxy.client_gone.wait(60), "the engine did not close the stream"


def test_cancel_while_the_server_is_silent_stops_without_waiting_for_it(fault_proxy: FaultProxy) -> None:
    fault_proxy.set_fault(Fault(hold_after=0))  # headers sent, then nothing until released
    engine = engine_for(fault_proxy.url, stall_timeout_s=600)
    cancel = threading.Event()
    events: list[Event] = []
    reader = threading.Thread(target=lambda: events.extend(engine.stream(user(COUNT), GREEDY, cancel)))
    reader.start()
    assert fault_proxy.held.wait(120), "the reply never reached the hold"
    cancel.set()
    reader.join(60)  # the proxy holds for 120 s: only the stop can end the reply before that
    assert not reader.is_alive()
    assert done(events).stats.finish_reason == "cancelled" and not texts(events)
    fault_proxy.release()
    events = collect(engine.stream(user("Say hi."), GREEDY))  # the engine serves the next reply
    assert done(events).stats.finish_reason in ("stop", "length")


def test_plain_http_to_another_host_warns_once(llama_server: LlamaServer, monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        return real("127.0.0.1" if host == "gpu-box.example" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    engine = RemoteEngine(llama_server.url.replace("127.0.0.1", "gpu-box.example"), model=REMOTE_MODEL)
    first = collect(engine.stream(user("Say hi."), GREEDY))
    second = collect(engine.stream(user("Say hi."), GREEDY))
    notices = [e.text for e in first + second if isinstance(e, Notice)]
    assert len(notices) == 1 and "plain http://" in notices[0]


# -- the chat app ----------------------------------------------------------------------------------


def app_settings(tmp_path: Path, endpoint: str, **generation: Any) -> Any:
    return load_settings(
        None,
        {
            "store": {"path": tmp_path / "history.sqlite3"},
            "model": {"endpoint": endpoint, "starter_fallback": False, "models_dir": tmp_path / "models"},
            "generation": {"max_tokens": 48, "temperature": 0.0, "seed": 1, **generation},
        },
    )


async def send(pilot: Any, text: str) -> None:
    from edgeassist.tui.widgets import PromptInput

    box = pilot.app.query_one(PromptInput)
    box.focus()
    box.text = text
    await pilot.press("enter")


async def test_the_chat_app_streams_from_the_server(tmp_path: Path, llama_server: LlamaServer) -> None:
    from edgeassist.tui import create_app
    from edgeassist.tui.widgets import ReplyView

    app = create_app(app_settings(tmp_path, llama_server.url), new_chat=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.model_ready, what="the server's model")
        assert "remote" in str(app.query_one("#model").render())
        assert REMOTE_MODEL in str(app.query_one("#model").render())
        await send(pilot, "What is the capital of France?")
        await wait_until(pilot, lambda: list(app.query(ReplyView)), what="the reply to start")
        await wait_until(pilot, lambda: not app.generating, what="the reply to end")
        reply = list(app.query(ReplyView))[-1]
        assert reply.status == "complete" and "Paris" in reply.content
        assert app.chat is not None
        saved = app.store.messages(app.chat.id)
        assert [(m.role, m.status) for m in saved] == [("user", "complete"), ("assistant", "complete")]
        assert saved[-1].content == reply.content and saved[-1].stats["backend"] == "remote"


async def test_escape_in_the_chat_app_stops_the_remote_reply_and_keeps_the_part(
    tmp_path: Path, fault_proxy: FaultProxy
) -> None:
    from edgeassist.tui import create_app
    from edgeassist.tui.widgets import ReplyView

    fault_proxy.set_fault(Fault(hold_after=6))
    app = create_app(app_settings(tmp_path, fault_proxy.url), new_chat=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.model_ready, what="the server's model")
        await send(pilot, COUNT)
        await wait_until(pilot, fault_proxy.held.is_set, what="the reply to be held mid-way")
        await wait_until(pilot, lambda: list(app.query(ReplyView)) and list(app.query(ReplyView))[-1].content)
        await pilot.press("escape")
        fault_proxy.release()
        await wait_until(pilot, lambda: not app.generating, what="the reply to stop")
        reply = list(app.query(ReplyView))[-1]
        assert reply.status == "cancelled"
        assert app.chat is not None
        saved = app.store.messages(app.chat.id)[-1]
        assert saved.role == "assistant" and saved.status == "cancelled" and saved.content == reply.content
        assert saved.stats["finish_reason"] == "cancelled"
        assert saved.content == fault_proxy.text_before_hold.strip()  # nothing that came after Esc
        assert fault_proxy.client_gone.wait(60)


def test_an_endpoint_without_the_api_path_says_where_the_api_is(llama_server: LlamaServer) -> None:
    with pytest.raises(ServerUnreachableError, match="often ending in /v1"):
        RemoteEngine(llama_server.origin).load()  # the server's root, not its /v1


def test_a_prompt_the_server_finds_too_long_is_a_context_error(fault_proxy: FaultProxy) -> None:
    from edgeassist.errors import ContextOverflowError

    for message in (
        "the request exceeds the available context size, try increasing it",  # llama-server
        "This model's maximum context length is 2048 tokens. However, you requested 3100 tokens.",  # vLLM
    ):
        fault_proxy.set_fault(Fault(chat_status=400, chat_message=message))
        with pytest.raises(ContextOverflowError, match="does not fit") as e:
            collect(engine_for(fault_proxy.url).stream(user("hi"), GREEDY))
        assert e.value.exit_code == 5 and message in str(e.value)


def test_a_stream_that_ends_before_any_of_the_reply_says_so(llama_server: LlamaServer) -> None:
    # llama-cpp-python's server starts the stream, then ends it bare when the prompt is beyond its window.
    engine = RemoteEngine(llama_server.url, n_ctx=100_000)
    with pytest.raises(ServerReplyError, match="without sending any of it"):
        collect(engine.stream(user("word " * 3000), GREEDY))


def test_voice_takes_one_turn_from_and_to_wav_files_on_the_server(
    tmp_path: Path, llama_server: LlamaServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from audio_helpers import speak

    monkeypatch.setenv("EDGEASSIST_GENERATION__TEMPERATURE", "0")

    from edgeassist.cli import main
    from edgeassist.speech.audio import read_wav, write_wav

    question = "What is the capital of France?"
    audio, rate = speak(question)
    write_wav(tmp_path / "q.wav", audio, rate)
    rc = main(
        ["voice", "--endpoint", llama_server.url, "--input-wav", str(tmp_path / "q.wav"),
         "--output-wav", str(tmp_path / "a.wav"), "--max-tokens", "30", "--timings"]
    )  # fmt: skip
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert f"you: {question}" in out.out and "assistant: " in out.out
    assert "Paris" in out.out.split("assistant: ", 1)[1]
    reply, reply_rate = read_wav(tmp_path / "a.wav")
    assert reply_rate == 22050 and len(reply) > reply_rate // 2  # the reply was spoken
