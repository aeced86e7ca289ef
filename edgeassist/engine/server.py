"""`ServerClient`: HTTP to an OpenAI-compatible server (llama-server, vLLM, Ollama), for `RemoteEngine`.

The client is httpx2 and its own server-sent-events reader (`httpx2.EventSource`, derived from
httpx-sse). httpx2 is already installed with huggingface-hub (the hub's downloads run on it), is
about 1 MB, and leaves every request, status and header to this module, which the error cases need:
each one becomes one `EdgeAssistError` line with its own exit code. The `openai` SDK (about 30 MB,
a pydantic model for every chunk) would add a dependency, its own retry policy and exception family
to translate, and hide what llama-server and vLLM add to the protocol (`reasoning_content`,
`timings`) behind `model_extra`.

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
from collections.abc import Generator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx2

from edgeassist import __version__
from edgeassist.engine.base import Notice
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
PROBE_BODY_MAX = 1024 * 1024
"""Bytes of a probe's answer read at most (llama-server's `/props` is a few kilobytes)."""

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


class Refused(Exception):
    """A status of 400 or more on a request, before any reply streamed."""

    def __init__(self, status: int, reason: str, message: str, retry_after: float | None) -> None:
        super().__init__(f"{status} {reason}")
        self.status, self.reason, self.message, self.retry_after = status, reason, message, retry_after


class ServerClient:
    """Requests to one server's API, and its refusals and transport failures as one-line `EdgeAssistError`s."""

    def __init__(
        self,
        endpoint: str,
        *,
        api_key_env: str = DEFAULT_API_KEY_ENV,
        connect_timeout_s: float = 10.0,
        stall_timeout_s: float = 60.0,
    ) -> None:
        """A client for `endpoint` (the API's base URL); nothing is sent yet."""
        self.endpoint = endpoint.rstrip("/")
        self.host = urlsplit(self.endpoint).netloc
        """The server's `host:port`, as the error messages name it."""
        self.api_key_env = api_key_env
        self.connect_timeout_s = connect_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self._client: httpx2.Client | None = None
        self._client_lock = threading.Lock()
        self._warning = plain_http_warning(self.endpoint)

    def close(self) -> None:
        """Close the connections; a later request connects again."""
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def first_warning(self) -> str | None:
        """The plain-http warning the first time it is asked for this host (in this process), else None."""
        if self._warning is None:
            return None
        with _warned_lock:
            first = self.host not in _warned_hosts
            _warned_hosts.add(self.host)
        return self._warning if first else None

    def models(self) -> list[ServerModel]:
        """The models the server offers (`GET /models`)."""
        try:
            response = self.send("GET", "/models", None)
        except Refused as e:
            raise self.refused(e, "GET /models", None) from None
        try:
            response.read()
            data = response.json()
        except httpx2.HTTPError as e:
            raise self.transport_error(e, replying=True) from None
        except ValueError:
            raise ServerReplyError(
                f"the server at {self.host} answered GET /models with something that is not JSON: "
                "is model.endpoint the API's base URL (often ending in /v1)?"
            ) from None
        finally:
            response.close()
        entries = data.get("data") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise ServerReplyError(f"the server at {self.host} answered GET /models without a list of models")
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

    @property
    def root(self) -> str:
        """The server's own address, beside its OpenAI-compatible API (the endpoint without its `/v1`)."""
        return self.endpoint.removesuffix("/v1")

    def probe(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The JSON object at `path` on the server's root (llama-server's `/props`, Ollama's `/api/show`), or None.

        For what only some servers answer: a refusal, a failure, or an answer that is not a JSON
        object of at most `PROBE_BODY_MAX` bytes is None, never an error.
        """
        try:
            request = self._http().build_request(method, self.root + path, json=body)
            response = self._http().send(request, stream=True)
        except httpx2.HTTPError:
            return None
        try:
            if response.status_code != 200:
                return None
            raw = b""
            for part in response.iter_bytes():
                raw += part
                if len(raw) > PROBE_BODY_MAX:
                    return None
            data = json.loads(raw)
        except (httpx2.HTTPError, ValueError):
            return None
        finally:
            response.close()
        return data if isinstance(data, dict) else None

    def post_reply(
        self, body: dict[str, Any], model: str, cancel: threading.Event | None
    ) -> Generator[Notice, None, httpx2.Response | None]:
        """`POST /chat/completions`: the open reply, None if `cancel` came first; one retry after a 429/503.

        Yields a Notice before waiting to retry; a refusal raises its `EdgeAssistError`.
        """
        for attempt in (1, 2):
            if cancel is not None and cancel.is_set():
                break
            try:
                return self.send("POST", "/chat/completions", body)
            except Refused as e:
                if e.status not in (429, 503):
                    raise self.refused(e, "the reply", model) from None
                wait = RETRY_AFTER_DEFAULT_S if e.retry_after is None else e.retry_after
                if attempt == 2 or wait > RETRY_AFTER_MAX_S:
                    after = f"; it asks to wait {wait:.0f} s" if e.retry_after is not None and attempt == 1 else ""
                    raise ServerBusyError(
                        f"the server at {self.host} is busy ({e.status} {e.reason}){after}: try again later"
                        + ("" if attempt == 1 else " (it still was after waiting once)")
                    ) from None
                yield Notice(f"the server is busy ({e.status}): trying again in {wait:.0f} s")
                (cancel or threading.Event()).wait(wait)  # (a stop ends the wait at once)
        return None  # stopped before the request was answered

    def _http(self) -> httpx2.Client:
        """The connection pool, made on first use with the key, the timeouts and no redirects."""
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

    def send(self, method: str, path: str, body: dict[str, Any] | None) -> httpx2.Response:
        """An open (streaming) response with a status below 400; `Refused` for the rest."""
        client = self._http()
        headers = {"Accept": "text/event-stream" if body is not None else "application/json"}
        try:
            request = client.build_request(method, self.endpoint + path, json=body, headers=headers)
            response = client.send(request, stream=True)
        except httpx2.HTTPError as e:
            raise self.transport_error(e, replying=False) from None
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
        raise Refused(
            response.status_code,
            response.reason_phrase,
            _error_message(raw[:ERROR_BODY_MAX]),
            _retry_after(response.headers.get("retry-after")),
        )

    def refused(self, e: Refused, what: str, model: str | None) -> EdgeAssistError:
        """The error for a refused request (`what`: the request, `model`: the model it asked for)."""
        status = f"{e.status} {e.reason}".strip()
        said = f": {e.message}" if e.message else ""
        if e.status in (401, 403):
            if os.environ.get(self.api_key_env, "").strip():
                return ServerAuthError(
                    f"the server at {self.host} refused the API key from ${self.api_key_env} ({status}): check it"
                )
            return ServerAuthError(
                f"the server at {self.host} wants an API key ({status}): put it in the environment variable "
                f"{self.api_key_env}"
            )
        if e.status == 404:
            if what == "GET /models":
                return ServerUnreachableError(
                    f"no OpenAI-compatible API at {self.endpoint} (GET /models: {status}): model.endpoint is the "
                    "API's base URL, often ending in /v1"
                )
            try:
                names = ", ".join(m.id for m in self.models()) or "none"
            except EdgeAssistError:
                names = "(the server did not say)"
            return RemoteModelNotFoundError(
                f"the server at {self.host} has no model {model!r} ({status}); it has: {names} "
                "(set model.remote_model or --remote-model)"
            )
        if e.status in (429, 503):
            return ServerBusyError(f"the server at {self.host} is busy ({status}){said}: try again later")
        if e.status in (400, 413) and re.search(r"context|too long|maximum.*length", e.message, re.IGNORECASE):
            return ContextOverflowError(
                f"the server at {self.host} says the prompt does not fit{said}; shorten it, or lower "
                "model.n_ctx so old turns are trimmed sooner"
            )
        return ServerReplyError(f"the server at {self.host} refused {what} ({status}){said}")

    def transport_error(self, e: httpx2.HTTPError, *, replying: bool) -> EdgeAssistError:
        """The error for a failure below HTTP: connecting, TLS, a timeout, a dropped connection."""
        host = self.host
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
                f"the server at {host} sent a malformed event stream ({one_line(str(e))}): "
                "what arrived is kept, marked as stopped"
            )
        causes = _causes(e)
        if any(isinstance(c, ssl.SSLError) for c in causes) or "SSL" in str(e):
            ssl_error = next((c for c in causes if isinstance(c, ssl.SSLError)), e)
            reason = getattr(ssl_error, "verify_message", None) or getattr(ssl_error, "reason", None) or ssl_error
            return ServerUnreachableError(
                f"TLS with {host} failed ({one_line(str(reason))}): the server's certificate must be valid and "
                "trusted by this system"
            )
        if isinstance(e, httpx2.ConnectError):
            if any(isinstance(c, socket.gaierror) for c in causes) or "Name or service not known" in str(e):
                return ServerUnreachableError(f"unknown host {urlsplit(self.endpoint).hostname}: check model.endpoint")
            if any(isinstance(c, ConnectionRefusedError) for c in causes) or "refused" in str(e).lower():
                return ServerUnreachableError(f"connection refused by {host}: is the server running there?")
            return ServerUnreachableError(f"cannot connect to {host}: {one_line(str(e))}")
        if replying:
            return ServerReplyError(
                f"the server at {host} dropped the connection mid-reply ({one_line(str(e)) or type(e).__name__}): "
                "what arrived is kept, marked as stopped"
            )
        return ServerUnreachableError(f"the server at {host} closed the connection without answering")


class CancelWatcher:
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


def one_line(text: str) -> str:
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
        return one_line(text)
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return one_line(str(error["message"]))
        for key in ("error", "detail", "message"):
            if isinstance(data.get(key), str):
                return one_line(data[key])
    return one_line(text)


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
