"""A fault-injecting HTTP proxy in front of a real OpenAI-compatible server, for the remote engine's tests.

Requests are forwarded to the server as they came (headers, body); a streamed reply is relayed event
by event, chunked, as the server sent it, unless the proxy's `fault` says otherwise:

- `drop_after=n`: close the connection after `n` events, mid-reply (no closing chunk);
- `stall_after=n`: after `n` events, send nothing more until `release()` (or the test ends);
- `hold_after=n`: like `stall_after`, then carry on relaying once released;
- `garbage_after=n`: after `n` events, send one event whose data is not JSON;
- `busy=k` (`busy_status`, `retry_after`): answer the first `k` chat requests with 429 (or 503);
- `chat_status=s` (`chat_message`): answer every chat request with status `s` (an OpenAI-style error body);
- `api_key=key`: answer 401 to any request without `Authorization: Bearer key`;
- `reasoning_field=name`, `reasoning_events=n`: move the first `n` events' content into
  `delta.<name>` (`reasoning_content`, `reasoning`), as a server with a reasoning parser sends thinking;
- `close_tag_after=n`: put `</think>` in the content after `n` events, as a server without one does.

Every request is logged in `requests` (method, path, headers, body); `events_sent` counts the
events relayed, `relayed` the content of each event of the last reply, `text_before_hold` the answer
relayed before a hold or stall, and `client_gone`
is set when writing to a client fails because it left.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import httpx2


@dataclass
class Fault:
    """What the proxy does wrong (see the module docstring); all None/0: a faithful proxy."""

    drop_after: int | None = None
    stall_after: int | None = None
    hold_after: int | None = None
    garbage_after: int | None = None
    busy: int = 0
    busy_status: int = 429
    retry_after: str | None = "1"
    chat_status: int | None = None
    chat_message: str | None = None
    api_key: str | None = None
    reasoning_field: str | None = None
    reasoning_events: int = 0
    close_tag_after: int | None = None


@dataclass
class Logged:
    """One request as the proxy received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FaultProxy:
    """The proxy's state, shared with its handler threads."""

    upstream: str
    """The real server's origin (`http://127.0.0.1:PORT`)."""
    fault: Fault = field(default_factory=Fault)
    requests: list[Logged] = field(default_factory=list)
    events_sent: int = 0
    client_gone: threading.Event = field(default_factory=threading.Event)
    held: threading.Event = field(default_factory=threading.Event)
    """Set when a reply is being held or stalled."""
    text_before_hold: str = ""
    """The answer text (`delta.content`) relayed before the hold or stall."""
    relayed: list[str] = field(default_factory=list)
    """The `delta.content` of each event of the last reply relayed (as rewritten), "" for none."""
    _release: threading.Event = field(default_factory=threading.Event)
    _server: ThreadingHTTPServer | None = None
    _busy_left: int = 0

    @property
    def url(self) -> str:
        """The proxy's API base URL (`http://127.0.0.1:PORT/v1`)."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def set_fault(self, fault: Fault) -> None:
        """Misbehave this way from the next request on."""
        self.fault = fault
        self._busy_left = fault.busy
        self._release.clear()
        self.held.clear()

    def release(self) -> None:
        """Let a stalled or held reply go on."""
        self._release.set()

    def chat_requests(self) -> list[Logged]:
        """The chat-completions requests received."""
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def __enter__(self) -> FaultProxy:
        proxy = self

        class Handler(_Handler):
            state = proxy

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True).start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._release.set()
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: FaultProxy

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        state = self.state
        fault = state.fault
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        state.requests.append(Logged(self.command, self.path, dict(self.headers.items()), body))
        chat = self.path.endswith("/chat/completions")
        if fault.api_key is not None and self.headers.get("Authorization") != f"Bearer {fault.api_key}":
            return self._error(401, "Unauthorized", "invalid api key")
        if chat and fault.chat_status is not None:
            return self._error(fault.chat_status, "Refused", fault.chat_message or f"refused with {fault.chat_status}")
        if chat and state._busy_left > 0:
            state._busy_left -= 1
            extra = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            return self._error(fault.busy_status, "Busy", "server busy", extra)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")}
        with httpx2.Client(timeout=httpx2.Timeout(600.0)) as client:
            request = client.build_request(self.command, state.upstream + self.path, content=body, headers=headers)
            response = client.send(request, stream=True)
            try:
                if "text/event-stream" in response.headers.get("content-type", ""):
                    self._relay_events(response)
                else:
                    data = response.read()
                    self.send_response(response.status_code)
                    self.send_header("Content-Type", response.headers.get("content-type", "application/json"))
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
            finally:
                response.close()

    def _error(self, status: int, reason: str, message: str, extra: dict[str, str] | None = None) -> None:
        data = json.dumps({"error": {"message": message, "type": reason, "code": status}}).encode()
        self.send_response(status, reason)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _chunk(self, text: str) -> None:
        data = text.encode()
        try:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
        except OSError:
            self.state.client_gone.set()
            raise

    def _relay_events(self, response: httpx2.Response) -> None:
        state, fault = self.state, self.state.fault
        self.send_response(response.status_code)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        sent = 0
        relayed: list[str] = []
        state.relayed = relayed
        lines: list[str] = []
        try:
            for line in response.iter_lines():
                if line:
                    lines.append(line)
                    continue
                if not lines:
                    continue
                event, lines = lines, []
                if not any(line.startswith("data:") for line in event):  # a keep-alive comment: not counted
                    self._chunk("\n".join(event) + "\n\n")
                    continue
                if sent == fault.drop_after:
                    self.connection.shutdown(2)  # mid-reply, without the closing chunk
                    return
                if sent in (fault.stall_after, fault.hold_after):
                    state.text_before_hold = "".join(relayed)
                    state.held.set()
                    state._release.wait(120)
                    if sent == fault.stall_after:
                        return
                if sent == fault.garbage_after:
                    self._chunk('data: {"choices": [{"delta": {"content": "x"\n\n')
                    sent += 1
                    continue
                rewritten = self._rewrite(event, sent)
                self._chunk("\n".join(rewritten) + "\n\n")
                relayed.append(_content(rewritten))
                sent += 1
                state.events_sent += 1
            self._chunk("")  # the closing chunk
        except OSError:
            state.client_gone.set()

    def _rewrite(self, event: list[str], index: int) -> list[str]:
        """The event's lines, with the fault's rewriting of its delta."""
        fault = self.state.fault
        if not (fault.reasoning_field or fault.close_tag_after is not None):
            return event
        out = []
        for line in event:
            if not line.startswith("data: ") or line == "data: [DONE]":
                out.append(line)
                continue
            chunk = json.loads(line[len("data: ") :])
            delta = (chunk.get("choices") or [{}])[0].get("delta") or {}
            content = delta.get("content")
            if content and fault.reasoning_field and index < fault.reasoning_events:
                delta[fault.reasoning_field] = delta.pop("content")
            elif content and fault.close_tag_after is not None and index == fault.close_tag_after:
                delta["content"] = "</think>" + content
            out.append("data: " + json.dumps(chunk))
        return out


def _content(event: list[str]) -> str:
    """The `delta.content` an event carries ("" for none)."""
    for line in event:
        if line.startswith("data: ") and line != "data: [DONE]":
            choices = json.loads(line[len("data: ") :]).get("choices") or [{}]
            return str((choices[0].get("delta") or {}).get("content") or "")
    return ""
