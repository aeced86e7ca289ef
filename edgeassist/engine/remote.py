"""`RemoteEngine`: the engine contract over an OpenAI-compatible server (llama-server, vLLM, Ollama).

The reply streams from `POST {endpoint}/chat/completions` with `stream: true` as server-sent events.

The client is httpx2 and its own server-sent-events reader (`httpx2.EventSource`, derived from
httpx-sse). httpx2 is already installed with huggingface-hub (the hub's downloads run on it), is
about 1 MB, and leaves every request, status and header to this module, which the error cases need:
each one becomes one `EdgeAssistError` line with its own exit code. The `openai` SDK (about 30 MB,
a pydantic model for every chunk) would add a dependency, its own retry policy and exception family
to translate, and hide what llama-server and vLLM add to the protocol (`reasoning_content`,
`timings`) behind `model_extra`.

What the client measures itself: the time to the first generated piece and the time of every
piece (one streamed chunk is one token on llama-server and on an idle vLLM). What the server says,
its `usage` (asked for with `stream_options.include_usage`) and llama-server's `timings`, is kept
in `Stats.server` and fills the token counts when present.

A stop (`cancel`) is checked before every chunk is taken, and a helper thread ends a read that
waits on a silent server (`_CancelWatcher`), so Esc does not wait for the next token.

Security: TLS certificates are verified (the system's store); the API key is read from the
environment variable `api_key_env` names and sent only in the `Authorization` header, to the
endpoint itself (redirects are not followed); plain `http://` to a host other than this machine
gives a one-time `Notice`.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx2

from edgeassist import __version__
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
)
from edgeassist.engine.thinking import ThinkSplitter
from edgeassist.errors import (
    ContextOverflowError,
    EdgeAssistError,
    RemoteModelNotFoundError,
    ServerAuthError,
    ServerBusyError,
    ServerReplyError,
    ServerUnreachableError,
)

DEFAULT_API_KEY_ENV = "EDGEASSIST_API_KEY"
"""Where the API key is read from unless `model.api_key_env` names another variable."""
RETRY_AFTER_DEFAULT_S = 1.0
"""How long to wait before the one retry after a 429/503 without a `Retry-After`."""
RETRY_AFTER_MAX_S = 30.0
"""The longest `Retry-After` waited for; a server that asks for more is reported busy at once."""
ERROR_BODY_MAX = 64 * 1024
"""Bytes of an error response read for its message."""

_warned_hosts: set[str] = set()
_warned_lock = threading.Lock()


@dataclass(frozen=True)
class ServerModel:
    """One model a server offers: an entry of its `GET /models`."""

    id: str
    """The name a request asks for it by."""
    owned_by: str | None = None
    """Who the server says owns it (vLLM: `vllm`, llama-server: `llamacpp`)."""
    max_model_len: int | None = None
    """Its context window in tokens, where the server says (vLLM)."""


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


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine (`localhost`, 127.0.0.0/8, ::1)."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def plain_http_warning(endpoint: str) -> str | None:
    """The warning for an endpoint that sends prompts and the key unencrypted across a network, or None."""
    url = urlsplit(endpoint)
    if url.scheme != "http" or is_loopback(url.hostname or ""):
        return None
    return (
        f"{endpoint} is plain http:// to another machine: prompts, replies and the API key cross the network "
        "unencrypted; use https://"
    )


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


class _Refused(Exception):
    """A status of 400 or more on a request, before any reply streamed."""

    def __init__(self, status: int, reason: str, message: str, retry_after: float | None) -> None:
        super().__init__(f"{status} {reason}")
        self.status, self.reason, self.message, self.retry_after = status, reason, message, retry_after


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
    ) -> None:
        """An engine for `endpoint` (the API's base URL, e.g. `http://127.0.0.1:8080/v1`); nothing is sent yet.

        `model` is the server's name for the model (empty: the server's only one); `n_ctx` is the
        context window assumed unless the server states its own; `stall_timeout_s` is how long the
        server may stay silent before a reply's first piece or between two.
        """
        self.endpoint = endpoint.rstrip("/")
        self._asked = model or None
        url = urlsplit(self.endpoint)
        self._host = url.netloc
        self.name = self._asked or self._host
        self.api_key_env = api_key_env
        self.family = model_family(self.name)
        self._n_ctx = n_ctx
        self.connect_timeout_s = connect_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.load_s = 0.0
        self._loaded = False
        self._client: httpx2.Client | None = None
        self._client_lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._reply_lock = threading.Lock()  # one reply at a time, as the contract says
        self._warning = plain_http_warning(self.endpoint)

    # -- the contract's members ---------------------------------------------------------------

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
        """Thinking switches through the template's `enable_thinking`; the model is elsewhere."""
        return Capabilities(thinking=True, tools=False, images=False, local=False)

    def load(self) -> float:
        """Ask the server for its models (`GET /models`) and check that the configured one is there."""
        with self._load_lock:
            if self._loaded:
                return 0.0
            t0 = time.perf_counter()
            self._pick(self.server_models())
            self._loaded = True
            self.load_s = time.perf_counter() - t0
            return self.load_s

    def close(self) -> None:
        """Close the connections; a later call connects again."""
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()
        self._loaded = False

    def count_tokens(self, messages: Sequence[Message], options: GenerationOptions) -> int:
        """An estimate (`estimate_tokens`), to spare a request per turn; the server's `usage` gives the real count."""
        return estimate_tokens(messages)

    def prefill(self, messages: Sequence[Message], think: bool, cancel: threading.Event | None = None) -> int:
        """A server cannot be asked to start on a prompt early: 0."""
        return 0

    def held(self) -> AbstractContextManager[None]:
        """Nothing to lend: the model computes elsewhere."""
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
        try:
            response = self._send("GET", "/models", None)
        except _Refused as e:
            raise self._refused(e, "GET /models") from None
        try:
            response.read()
            data = response.json()
        except httpx2.HTTPError as e:
            raise self._transport_error(e, replying=True) from None
        except ValueError:
            raise ServerReplyError(
                f"the server at {self._host} answered GET /models with something that is not JSON: "
                "is model.endpoint the API's base URL (often ending in /v1)?"
            ) from None
        finally:
            response.close()
        entries = data.get("data") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise ServerReplyError(f"the server at {self._host} answered GET /models without a list of models")
        models = []
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
                continue
            owner, length = entry.get("owned_by"), entry.get("max_model_len")
            models.append(
                ServerModel(
                    entry["id"],
                    owner if isinstance(owner, str) else None,
                    length if isinstance(length, int) and not isinstance(length, bool) and length > 0 else None,
                )
            )
        return models

    def _pick(self, models: list[ServerModel]) -> None:
        """Take the configured model (or the server's only one) from `models`, with its context window."""
        names = ", ".join(m.id for m in models) or "none"
        if self._asked is not None:
            found = next((m for m in models if m.id == self._asked), None)
            if found is None:
                raise RemoteModelNotFoundError(
                    f"the server at {self._host} has no model {self._asked!r}; it has: {names} "
                    "(set model.remote_model or --remote-model)"
                )
        elif len(models) == 1:
            found = models[0]
        else:
            raise RemoteModelNotFoundError(
                f"the server at {self._host} has "
                + (f"several models ({names}): choose one" if models else "no models: name one")
                + " with --remote-model or model.remote_model"
            )
        self.name = found.id
        self.family = model_family(found.id)
        if found.max_model_len is not None:
            self._n_ctx = found.max_model_len

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
        if self._warning is not None:
            with _warned_lock:
                first = self._host not in _warned_hosts
                _warned_hosts.add(self._host)
            if first:
                yield Notice(self._warning)
        body = self.request_body(messages, options)
        # A reply that goes on where it was cut goes on with its answer (its thinking, if any, is over).
        continuing = bool(messages) and messages[-1]["role"] == "assistant" and bool(messages[-1]["content"])
        response: httpx2.Response | None = None
        for attempt in (1, 2):
            if cancel is not None and cancel.is_set():
                break
            try:
                response = self._send("POST", "/chat/completions", body)
                break
            except _Refused as e:
                if e.status not in (429, 503):
                    raise self._refused(e, "the reply") from None
                wait = RETRY_AFTER_DEFAULT_S if e.retry_after is None else e.retry_after
                if attempt == 2 or wait > RETRY_AFTER_MAX_S:
                    after = f"; it asks to wait {wait:.0f} s" if e.retry_after is not None and attempt == 1 else ""
                    raise ServerBusyError(
                        f"the server at {self._host} is busy ({e.status} {e.reason}){after}: try again later"
                        + ("" if attempt == 1 else " (it still was after waiting once)")
                    ) from None
                yield Notice(f"the server is busy ({e.status}): trying again in {wait:.0f} s")
                if cancel is not None:
                    cancel.wait(wait)
                else:
                    time.sleep(wait)
        if response is None:  # stopped before the request was answered
            stats.finish_reason = "cancelled"
            yield Done(stats)
            return
        try:
            yield from self._read(response, options, cancel, stats, t0, thinking=options.think and not continuing)
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

        watcher = _CancelWatcher(cancel, response) if cancel is not None else None
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
            if not stopped():  # (a stop during a silence ends the read this way: see _CancelWatcher)
                raise self._transport_error(e, replying=True) from None
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
                    f"the server at {self._host} ended the reply without sending any of it (its log may say why)"
                )
            raise ServerReplyError(
                f"the server at {self._host} ended the reply before it was complete (the connection closed "
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
            raise ServerReplyError(f"the server at {self._host} failed mid-reply: {_one_line(str(message))}")
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
            f"the server at {self._host} sent a malformed event ({_one_line(repr(shown))}): "
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

    # -- HTTP -----------------------------------------------------------------------------------

    def _http(self) -> httpx2.Client:
        with self._client_lock:
            if self._client is None:
                headers = {"User-Agent": f"edgeassist/{__version__}"}
                key = os.environ.get(self.api_key_env, "").strip()
                if key:
                    headers["Authorization"] = f"Bearer {key}"
                # Stall timeout = the read timeout: the longest wait for the next bytes of a reply.
                timeout = httpx2.Timeout(
                    connect=self.connect_timeout_s,
                    read=self.stall_timeout_s,
                    write=self.stall_timeout_s,
                    pool=self.connect_timeout_s,
                )
                # verify=True (the system's trust store); no redirects, so the key goes nowhere else.
                self._client = httpx2.Client(headers=headers, timeout=timeout, follow_redirects=False, verify=True)
            return self._client

    def _send(self, method: str, path: str, body: dict[str, Any] | None) -> httpx2.Response:
        """An open (streaming) response with a status below 400; `_Refused` for the rest."""
        client = self._http()
        headers = {"Accept": "text/event-stream" if body is not None else "application/json"}
        try:
            request = client.build_request(method, self.endpoint + path, json=body, headers=headers)
            response = client.send(request, stream=True)
        except httpx2.HTTPError as e:
            raise self._transport_error(e, replying=False) from None
        if response.status_code < 400:
            return response
        try:
            raw = b""
            for part in response.iter_bytes():
                raw += part
                if len(raw) >= ERROR_BODY_MAX:
                    break
        except httpx2.HTTPError:
            pass
        finally:
            response.close()
        raise _Refused(
            response.status_code,
            response.reason_phrase,
            _error_message(raw[:ERROR_BODY_MAX]),
            _retry_after(response.headers.get("retry-after")),
        )

    def _refused(self, e: _Refused, what: str) -> EdgeAssistError:
        """The error for a refused request."""
        status = f"{e.status} {e.reason}".strip()
        said = f": {e.message}" if e.message else ""
        if e.status in (401, 403):
            if os.environ.get(self.api_key_env, "").strip():
                return ServerAuthError(
                    f"the server at {self._host} refused the API key from ${self.api_key_env} ({status}): check it"
                )
            return ServerAuthError(
                f"the server at {self._host} wants an API key ({status}): put it in the environment variable "
                f"{self.api_key_env}"
            )
        if e.status == 404:
            if what == "GET /models":
                return ServerUnreachableError(
                    f"no OpenAI-compatible API at {self.endpoint} (GET /models: {status}): model.endpoint is the "
                    "API's base URL, often ending in /v1"
                )
            try:
                names = ", ".join(m.id for m in self.server_models()) or "none"
            except EdgeAssistError:
                names = "(the server did not say)"
            return RemoteModelNotFoundError(
                f"the server at {self._host} has no model {self.name!r} ({status}); it has: {names} "
                "(set model.remote_model or --remote-model)"
            )
        if e.status in (429, 503):
            return ServerBusyError(f"the server at {self._host} is busy ({status}){said}: try again later")
        if e.status in (400, 413) and re.search(r"context|too long|maximum.*length", e.message, re.IGNORECASE):
            return ContextOverflowError(
                f"the server at {self._host} says the prompt does not fit{said}; shorten it, or lower "
                "model.n_ctx so old turns are trimmed sooner"
            )
        return ServerReplyError(f"the server at {self._host} refused {what} ({status}){said}")

    def _transport_error(self, e: httpx2.HTTPError, *, replying: bool) -> EdgeAssistError:
        """The error for a failure below HTTP: connecting, TLS, a timeout, a dropped connection."""
        host = self._host
        if isinstance(e, httpx2.ConnectTimeout):
            return ServerUnreachableError(
                f"the server at {host} did not take the connection within {self.connect_timeout_s:g} s "
                "(model.connect_timeout_s)"
            )
        if isinstance(e, httpx2.TimeoutException):
            return ServerReplyError(
                f"the server at {host} sent nothing for {self.stall_timeout_s:g} s (model.stall_timeout_s): "
                + ("the reply was given up; what arrived is kept, marked as stopped" if replying else "gave up")
            )
        if isinstance(e, httpx2.SSEError):
            return ServerReplyError(
                f"the server at {host} sent a malformed event stream ({_one_line(str(e))}): "
                "what arrived is kept, marked as stopped"
            )
        causes = _causes(e)
        if any(isinstance(c, ssl.SSLError) for c in causes) or "SSL" in str(e):
            ssl_error = next((c for c in causes if isinstance(c, ssl.SSLError)), e)
            reason = getattr(ssl_error, "verify_message", None) or getattr(ssl_error, "reason", None) or ssl_error
            return ServerUnreachableError(
                f"TLS with {host} failed ({_one_line(str(reason))}): the server's certificate must be valid and "
                "trusted by this system"
            )
        if isinstance(e, httpx2.ConnectError):
            if any(isinstance(c, socket.gaierror) for c in causes) or "Name or service not known" in str(e):
                return ServerUnreachableError(f"unknown host {urlsplit(self.endpoint).hostname}: check model.endpoint")
            if any(isinstance(c, ConnectionRefusedError) for c in causes) or "refused" in str(e).lower():
                return ServerUnreachableError(f"connection refused by {host}: is the server running there?")
            return ServerUnreachableError(f"cannot connect to {host}: {_one_line(str(e))}")
        if replying:
            return ServerReplyError(
                f"the server at {host} dropped the connection mid-reply ({_one_line(str(e)) or type(e).__name__}): "
                "what arrived is kept, marked as stopped"
            )
        return ServerUnreachableError(f"the server at {host} closed the connection without answering")


class _CancelWatcher:
    """Ends a read that waits on a silent server (a long prompt, a stall) as soon as `cancel` is set.

    A thread of its own waits for the stop and shuts the connection's socket down, which wakes the
    reading thread with the end of the stream; without it a stop would wait for the next chunk.
    """

    def __init__(self, cancel: threading.Event, response: httpx2.Response) -> None:
        stream = response.extensions.get("network_stream")
        self._sock: socket.socket | None = stream.get_extra_info("socket") if stream is not None else None
        self._cancel = cancel
        self._lock = threading.Lock()
        self._finished = False
        if self._sock is not None:
            threading.Thread(target=self._watch, name="edgeassist-remote-stop", daemon=True).start()

    def _watch(self) -> None:
        while not self._cancel.wait(0.05):
            if self._finished:
                return
        with self._lock:
            if not self._finished and self._sock is not None:
                try:  # the plain socket's shutdown (an SSLSocket's own would drop its TLS state under the reader)
                    socket.socket.shutdown(self._sock, socket.SHUT_RDWR)
                except OSError:
                    pass

    def finish(self) -> None:
        """The read is over: never touch the connection after this (it may serve the next request)."""
        with self._lock:
            self._finished = True


def _causes(e: BaseException) -> list[BaseException]:
    """`e` and the exceptions it was raised from."""
    seen: list[BaseException] = []
    cur: BaseException | None = e
    while cur is not None and cur not in seen:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def _one_line(text: str) -> str:
    """`text` on one line, without control characters, cut short."""
    flat = " ".join(text.split())
    flat = "".join(c for c in flat if c.isprintable())
    return flat if len(flat) <= 200 else flat[:197] + "..."


def _error_message(raw: bytes) -> str:
    """What an error response says: the OpenAI-style `error.message` (or `detail`), else its text."""
    text = raw.decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except ValueError:
        return _one_line(text)
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return _one_line(str(error["message"]))
        for key in ("error", "detail", "message"):
            if isinstance(data.get(key), str):
                return _one_line(data[key])
    return _one_line(text)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header (a number of seconds or an HTTP date), None if absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
