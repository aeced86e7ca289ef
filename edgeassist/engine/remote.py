"""`RemoteEngine`: the engine contract over an OpenAI-compatible server (llama-server, vLLM, Ollama).

The reply streams from `POST {endpoint}/chat/completions` with `stream: true` as server-sent events.

The HTTP itself (the httpx2 client, the requests, a refusal or a transport failure as one
`EdgeAssistError` line, TLS and the API key) is `engine.server`'s `ServerClient`; this module reads
the reply's events into the contract's.

What the client measures itself: the time to the first generated piece and the time of every
piece (one streamed chunk is one token on llama-server and on an idle vLLM). What the server says,
its `usage` (asked for with `stream_options.include_usage`) and llama-server's `timings`, is kept
in `Stats.server` and fills the token counts when present.

A stop (`cancel`) is checked before every chunk is taken, and a helper thread ends a read that
waits on a silent server (`server.CancelWatcher`), so Esc does not wait for the next token.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx2

from edgeassist.engine.base import (
    Capabilities,
    Done,
    Event,
    GenerationOptions,
    Message,
    Notice,
    Stats,
    Text,
    Thinking,
    ToolSpec,
)
from edgeassist.engine.server import (
    DEFAULT_API_KEY_ENV,
    CancelWatcher,
    ServerClient,
    ServerModel,
    one_line,
    plain_http_warning,
)
from edgeassist.engine.thinking import ThinkSplitter
from edgeassist.errors import RemoteModelNotFoundError, ServerReplyError

__all__ = [
    "DEFAULT_API_KEY_ENV",
    "RemoteEngine",
    "RemoteModel",
    "ServerModel",
    "estimate_tokens",
    "model_family",
    "name_thinks",
    "template_thinks",
    "plain_http_warning",
]


@dataclass
class RemoteModel:
    """Where a remote engine's model is, for front ends: the counterpart of the hub's `ResolvedModel`."""

    engine: RemoteEngine = field(repr=False)
    """The engine, whose `name` becomes the server's model name once loaded."""
    quant: str | None = None
    """Not known from a server: None."""
    is_starter: bool = False
    """A server's model is never the offline starter."""
    note: str | None = None
    """Nothing to say before the first reply (a plain-http warning comes as a Notice then)."""

    @property
    def name(self) -> str:
        """The model's name on the server (before `load()`: as configured, or the server's address)."""
        return self.engine.name

    @property
    def endpoint(self) -> str:
        """The server's base URL."""
        return self.engine.endpoint


def estimate_tokens(messages: Sequence[Message]) -> int:
    """A cautious count of a prompt's tokens: a third of its UTF-8 bytes, plus each message's template markup.

    Qwen's tokenizer averages about four bytes a token on English and three on code, and about a
    token a character (three bytes) on CJK text. Erring high trims old turns a little early rather
    than sending a prompt the server refuses as beyond its window.
    """
    return 3 + sum(5 + math.ceil(len(m["content"].encode("utf-8", "replace")) / 3) for m in messages)


def model_family(name: str) -> str:
    """The sampling family (`GenerationOptions.sampling`) of a server's model, from its name."""
    return "qwen3.5" if re.search(r"qwen[-_ ]?3[._]?5", name, re.IGNORECASE) else "other"


THINKING_NAMES = re.compile(
    r"qwen[-_ ]?3|qwq|deepseek[-_ ]?r1|r1[-_]distill|gpt[-_]oss|magistral|smollm[-_]?3|think|reason", re.IGNORECASE
)
"""Names of models with a thinking mode (Qwen 3 and 3.5, QwQ, DeepSeek-R1 and its distills, gpt-oss, …)."""
NOT_THINKING_NAMES = re.compile(r"instruct[-_]?2507|coder|vl[-_].*instruct", re.IGNORECASE)
"""Names in those families of models that never think (Qwen3's 2507 Instruct, its Coder and VL Instruct)."""


def name_thinks(name: str) -> bool:
    """Whether a server's model has a thinking mode, judged by its name alone (the last resort)."""
    return bool(THINKING_NAMES.search(name)) and not NOT_THINKING_NAMES.search(name)


def template_thinks(template: str) -> bool:
    """Whether a chat template has a thinking mode: it writes `<think>` or reads `enable_thinking`."""
    return "<think>" in template or "enable_thinking" in template


class RemoteEngine:
    """The `ChatEngine` contract over an OpenAI-compatible server's chat completions, streamed."""

    backend = "remote"
    """The model runs on the server."""

    def __init__(
        self,
        endpoint: str,
        *,
        model: str | None = None,
        api_key_env: str = DEFAULT_API_KEY_ENV,
        n_ctx: int = 4096,
        connect_timeout_s: float = 10.0,
        stall_timeout_s: float = 60.0,
        thinking: bool | None = None,
    ) -> None:
        """An engine for `endpoint` (the API's base URL, e.g. `http://127.0.0.1:8080/v1`); nothing is sent yet.

        `model` is the server's name for the model (empty: the server's only one); `n_ctx` is the
        context window assumed unless the server states its own; `stall_timeout_s` is how long the
        server may stay silent before a reply's first piece or between two; `thinking` says whether
        the model has a thinking mode (None: found out on `load()`, see `capabilities`).
        """
        self.server = ServerClient(
            endpoint, api_key_env=api_key_env, connect_timeout_s=connect_timeout_s, stall_timeout_s=stall_timeout_s
        )
        """The HTTP to the server: requests, and their failures as `EdgeAssistError`s."""
        self._asked = model or None
        self.name = self._asked or self.server.host
        self.family = model_family(self.name)
        self._n_ctx = n_ctx
        self._thinking_given = thinking
        self._thinks = thinking if thinking is not None else name_thinks(self.name)
        self.load_s = 0.0
        self._loaded = False
        self._load_lock = threading.Lock()
        self._reply_lock = threading.Lock()  # one reply at a time, as the contract says

    # -- the contract's members ---------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The server's base URL (the API's, e.g. `http://127.0.0.1:8080/v1`)."""
        return self.server.endpoint

    @property
    def n_ctx(self) -> int:
        """The context window: the server's where it states one (vLLM's `max_model_len`), else the configured one."""
        return self._n_ctx

    @property
    def loaded(self) -> bool:
        """Whether `load()` has found the model on the server."""
        return self._loaded

    @property
    def capabilities(self) -> Capabilities:
        """The model is elsewhere; thinking if the model has a thinking mode (switched by `enable_thinking`).

        Unless given, whether it thinks is found out on `load()`: from the chat template the server
        applies (llama-server's `/props`), else the capabilities it reports (Ollama's `/api/show`),
        else the model's name (`name_thinks`). Before `load()`, the configured name's.
        """
        return Capabilities(thinking=self._thinks, tools=False, images=False, local=False)

    def load(self) -> float:
        """Ask the server for its models (`GET /models`) and check that the configured one is there."""
        with self._load_lock:
            if self._loaded:
                return 0.0
            t0 = time.perf_counter()
            self._pick(self.server_models())
            if self._thinking_given is None:
                self._thinks = self._detect_thinking()
            self._loaded = True
            self.load_s = time.perf_counter() - t0
            return self.load_s

    def close(self) -> None:
        """Close the connections; a later call connects again."""
        self.server.close()
        self._loaded = False

    def count_tokens(self, messages: Sequence[Message], options: GenerationOptions) -> int:
        """An estimate (`estimate_tokens`), to spare a request per turn; the server's `usage` gives the real count."""
        return estimate_tokens(messages)

    def prefill(
        self,
        messages: Sequence[Message],
        think: bool,
        cancel: threading.Event | None = None,
        *,
        state_path: Path | None = None,
        tools: Sequence[ToolSpec] = (),
        complete: bool = False,
    ) -> int:
        """A server cannot be asked to start on a prompt early: 0."""
        return 0

    def draft(
        self,
        messages: Sequence[Message],
        options: GenerationOptions,
        cancel: threading.Event | None = None,
        *,
        tokens: int = 16,
    ) -> int:
        """A server's reply starts when it is asked for: 0."""
        return 0

    def held(self) -> AbstractContextManager[None]:
        """Nothing to lend: the model computes elsewhere."""
        return nullcontext()

    def stepwise(self) -> AbstractContextManager[None]:
        """The server computes at its own pace."""
        return nullcontext()

    def stream(
        self,
        messages: Sequence[Message],
        options: GenerationOptions,
        cancel: threading.Event | None = None,
    ) -> Iterator[Event]:
        """Stream the reply: Thinking/Text events, then one Done.

        `cancel` stops it at once, even while the server is silent: no chunk that arrives after it
        is taken, and the connection is closed, which tells the server to stop. A last message of the
        assistant's (a reply the token limit cut) is continued from its end.

        A reply that breaks off (a dropped connection, a stall, a malformed event) raises a
        `ServerReplyError` after the pieces that arrived, so the conversation keeps them as stopped.
        """
        with self._reply_lock:
            self.load()
            yield from self._stream(messages, options, cancel)

    # -- the server's models --------------------------------------------------------------------

    def server_models(self) -> list[ServerModel]:
        """The models the server offers (`GET /models`)."""
        return self.server.models()

    def _pick(self, models: list[ServerModel]) -> None:
        """Take the configured model (or the server's only one) from `models`, with its context window."""
        names = ", ".join(m.id for m in models) or "none"
        if self._asked is not None:
            found = next((m for m in models if m.id == self._asked), None)
            if found is None:
                raise RemoteModelNotFoundError(
                    f"the server at {self.server.host} has no model {self._asked!r}; it has: {names} "
                    "(set model.remote_model or --remote-model)"
                )
        elif len(models) == 1:
            found = models[0]
        else:
            raise RemoteModelNotFoundError(
                f"the server at {self.server.host} has "
                + (f"several models ({names}): choose one" if models else "no models: name one")
                + " with --remote-model or model.remote_model"
            )
        self.name = found.id
        self.family = model_family(found.id)
        if found.max_model_len is not None:
            self._n_ctx = found.max_model_len

    def _detect_thinking(self) -> bool:
        """Whether the server's model has a thinking mode, from what the server says of it, else its name."""
        props = self.server.probe("GET", "/props")  # llama-server: the chat template it applies
        template = props.get("chat_template") if props else None
        if isinstance(template, str) and template:
            return template_thinks(template)
        shown = self.server.probe("POST", "/api/show", {"model": self.name})  # Ollama: what the model can do
        capabilities = shown.get("capabilities") if shown else None
        if isinstance(capabilities, list):
            return "thinking" in capabilities
        return name_thinks(self.name)

    # -- a reply ------------------------------------------------------------------------------

    def request_body(self, messages: Sequence[Message], options: GenerationOptions) -> dict[str, Any]:
        """The JSON of the chat-completions request for `messages` with `options`."""
        s = options.sampling(self.family)
        body: dict[str, Any] = {
            "model": self.name,
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": options.max_tokens,
            "temperature": s["temperature"],
            "top_p": s["top_p"],
            "top_k": int(s["top_k"]),
            "min_p": s["min_p"],
            "presence_penalty": s["presence_penalty"],
            # llama.cpp's name, then vLLM's: each server ignores the other's.
            "repeat_penalty": s["repeat_penalty"],
            "repetition_penalty": s["repeat_penalty"],
            "chat_template_kwargs": {"enable_thinking": options.think},
        }
        if messages and messages[-1]["role"] == "assistant":
            # Go on with a reply the token limit cut: vLLM's switches; llama-server and Ollama take a
            # last assistant message as the start of the reply by themselves.
            body["continue_final_message"] = True
            body["add_generation_prompt"] = False
        if options.seed is not None:
            body["seed"] = options.seed
        if options.ignore_eos:
            body["ignore_eos"] = True
        return body

    def _stream(
        self, messages: Sequence[Message], options: GenerationOptions, cancel: threading.Event | None
    ) -> Iterator[Event]:
        t0 = time.perf_counter()
        stats = Stats(
            model=self.name,
            backend=self.backend,
            load_s=self.load_s,
            prompt_tokens=estimate_tokens(messages),
            n_ctx=self._n_ctx,
        )
        if (warning := self.server.first_warning()) is not None:
            yield Notice(warning)
        body = self.request_body(messages, options)
        # A reply that goes on where it was cut goes on with its answer (its thinking, if any, is over).
        continuing = bool(messages) and messages[-1]["role"] == "assistant" and bool(messages[-1]["content"])
        response = yield from self.server.post_reply(body, self.name, cancel)
        if response is None:  # stopped before the request was answered
            stats.finish_reason = "cancelled"
            yield Done(stats)
            return
        try:
            thinking = options.think and self._thinks and not continuing
            yield from self._read(response, options, cancel, stats, t0, thinking=thinking)
        finally:
            response.close()  # a stop, a closed iterator or an error: the server sees the connection go

    def _read(
        self,
        response: httpx2.Response,
        options: GenerationOptions,
        cancel: threading.Event | None,
        stats: Stats,
        t0: float,
        *,
        thinking: bool,
    ) -> Iterator[Event]:
        """The events of one streamed reply, then its Done; `thinking`: the reply starts inside a think block."""
        # Without a reasoning parser the server leaves thinking in the content, after the `<think>`
        # the template opened; with one (llama-server, vLLM's --reasoning-parser, Ollama) the
        # content is all answer and the thinking comes as `reasoning_content` or `reasoning`.
        splitter = ThinkSplitter(thinking=thinking)
        reasoning_seen = content_seen = False
        pending = 0  # chunks (tokens) since the last event, counted into the next one
        finish: str | None = None
        ended = False
        usage: dict[str, Any] | None = None
        timings: dict[str, Any] | None = None

        def counted(event: Thinking | Text) -> Thinking | Text:
            nonlocal pending
            event = replace(event, tokens=pending) if event.tokens != pending else event
            pending = 0
            return event

        def stopped() -> bool:
            return cancel is not None and cancel.is_set()

        watcher = CancelWatcher(cancel, response) if cancel is not None else None
        try:
            for sse in httpx2.EventSource(response):
                if stopped():
                    break
                data = sse.data.strip()
                if not data:
                    continue
                if data == "[DONE]":
                    ended = True
                    break
                chunk = self._chunk(data)
                if isinstance(chunk.get("usage"), dict):
                    usage = chunk["usage"]
                if isinstance(chunk.get("timings"), dict):
                    timings = chunk["timings"]
                choice = self._choice(chunk, data)
                if choice is None:
                    continue
                delta = choice.get("delta")
                delta = delta if isinstance(delta, dict) else {}
                reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                content = delta.get("content")
                if not isinstance(reasoning, str | None) or not isinstance(content, str | None):
                    raise self._malformed(data)
                if reasoning or content:
                    now = time.perf_counter() - t0
                    stats.token_times.append(now)
                    if stats.ttft_s is None:
                        stats.ttft_s = now
                    pending += 1
                if reasoning:
                    reasoning_seen = True
                    yield counted(Thinking(reasoning))
                if content:
                    if reasoning_seen and splitter.thinking:
                        splitter.thinking = False  # the server separates thinking: the content is the answer
                    if not content_seen and splitter.thinking:
                        content = content.removeprefix("<think>")  # a template that lets the model open it
                    content_seen = True
                    for event in splitter.feed(content):
                        yield counted(event)
                reason = choice.get("finish_reason")
                if isinstance(reason, str) and reason:
                    finish = reason
                if stopped():
                    break
        except httpx2.HTTPError as e:
            yield from splitter.flush()
            if not stopped():  # (a stop during a silence ends the read this way: see CancelWatcher)
                raise self.server.transport_error(e, replying=True) from None
        except ServerReplyError:
            yield from splitter.flush()
            if not stopped():
                raise
        finally:
            if watcher is not None:
                watcher.finish()
        for event in splitter.flush():
            yield counted(event)
        if stopped():
            stats.finish_reason = "cancelled"
        elif not ended and finish is None:
            if not stats.token_times:  # llama-cpp-python's server ends the stream so when the request fails
                raise ServerReplyError(
                    f"the server at {self.server.host} ended the reply without sending any of it (its log may say why)"
                )
            raise ServerReplyError(
                f"the server at {self.server.host} ended the reply before it was complete (the connection closed "
                "mid-reply): what arrived is kept, marked as stopped"
            )
        else:
            stats.finish_reason = "length" if finish == "length" else "stop"
        self._fill(stats, usage, timings)
        yield Done(stats)

    def _chunk(self, data: str) -> dict[str, Any]:
        """One event's JSON object; an error the server sends mid-stream raises with its message."""
        try:
            chunk = json.loads(data)
        except ValueError:
            raise self._malformed(data) from None
        if not isinstance(chunk, dict):
            raise self._malformed(data)
        error = chunk.get("error")
        if error is not None:
            message = error.get("message") if isinstance(error, dict) else error
            raise ServerReplyError(f"the server at {self.server.host} failed mid-reply: {one_line(str(message))}")
        return chunk

    def _choice(self, chunk: dict[str, Any], data: str) -> dict[str, Any] | None:
        """The first choice of a chunk, None for a chunk without one (the closing usage chunk)."""
        choices = chunk.get("choices")
        if choices is None or choices == []:
            if "usage" in chunk or "timings" in chunk:
                return None
            raise self._malformed(data)
        if not isinstance(choices, list) or not isinstance(choices[0], dict):
            raise self._malformed(data)
        return choices[0]

    def _malformed(self, data: str) -> ServerReplyError:
        shown = data if len(data) <= 60 else data[:57] + "..."
        return ServerReplyError(
            f"the server at {self.server.host} sent a malformed event ({one_line(repr(shown))}): "
            "what arrived is kept, marked as stopped"
        )

    @staticmethod
    def _fill(stats: Stats, usage: dict[str, Any] | None, timings: dict[str, Any] | None) -> None:
        """Counts from the server's usage and timings where it sent them, the client's own otherwise."""

        def number(d: dict[str, Any] | None, key: str) -> float | None:
            value = d.get(key) if d else None
            return value if isinstance(value, int | float) and not isinstance(value, bool) else None

        stats.generated_tokens = len(stats.token_times)
        if (completion := number(usage, "completion_tokens")) is not None:
            stats.generated_tokens = int(completion)
        prompt = number(usage, "prompt_tokens")
        evaluated, cached = number(timings, "prompt_n"), number(timings, "cache_n")
        if prompt is None and evaluated is not None:
            prompt = evaluated + (cached or 0)
        if prompt is not None:
            stats.prompt_tokens = int(prompt)
        stats.reused_tokens = int(cached or 0)
        stats.evaluated_tokens = int(evaluated) if evaluated is not None else stats.prompt_tokens - stats.reused_tokens
        if (prompt_ms := number(timings, "prompt_ms")) is not None:
            stats.prompt_eval_s = prompt_ms / 1000.0
        stats.context_used = stats.prompt_tokens + stats.generated_tokens
        stats.server = {k: v for k, v in (("usage", usage), ("timings", timings)) if v is not None}
