"""A local stand-in for the Hugging Face hub's file-download API, for tests that run real huggingface-hub.

It speaks what `get_hf_file_metadata` and `http_get` (the calls behind `hf_hub_download` and
`edgeassist.hub.pull`) use, the way the real hub answers for an LFS file:

- `HEAD|GET /{owner}/{repo}/resolve/{revision}/{path}`: `302` to a CDN address (a second local
  server: another origin, so huggingface-hub treats it as off-hub and drops the token), with
  `X-Repo-Commit`, `X-Linked-Etag` (the sha256, quoted), `X-Linked-Size` and an `ETag`.
  Unknown repo: `401` + `X-Error-Code: RepoNotFound`; unknown file: `404` + `EntryNotFound`.
  No `X-Xet-*` headers and no xet `Link`, so huggingface-hub takes the plain HTTP path.
- `HEAD|GET /cdn/{sha256}` on the CDN server: the bytes, with `Accept-Ranges`, `Content-Length`,
  and `Range: bytes=N-[M]` answered `206` with `Content-Range` (`416` past the end).

Faults, for the failure paths: `cut_next_get(n)` closes the connection after `n` body bytes of the
next file GET, or of the next GET of one file (`sha256=`), optionally leaving the hub down: every
later connection is dropped unanswered until `set_down(False)`; `add(..., served_sha256=...)`
advertises a wrong checksum; `pause_next_get()` holds a file GET after its headers until the test
lets it go (to run something while a pull is mid-download).
Every request is logged in `requests` (method, path, Range header), and every body byte sent is
counted (`bytes_served`).
"""

from __future__ import annotations

import functools
import hashlib
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"
"""The commit every repo on the fake hub is at (`X-Repo-Commit`)."""


@dataclass(frozen=True)
class HubFile:
    """A file served by the fake hub."""

    source: Path
    """Where the bytes come from."""
    size: int
    """Its size in bytes."""
    sha256: str
    """Its real sha256."""
    served_sha256: str
    """The sha256 the hub advertises (differs from `sha256` to fake a corrupt upload)."""


@dataclass(frozen=True)
class Pause:
    """A file GET held after its headers: `reached` is set when it is held, `go` lets it carry on."""

    sha256: str | None
    """Only a GET of the file advertised with this sha256 is held (None: the next file GET)."""
    reached: threading.Event
    """Set once the GET is being held."""
    go: threading.Event
    """Set by the test to let the GET send its body."""


@dataclass(frozen=True)
class Request:
    """One request the fake hub received."""

    server: str
    """`hub` or `cdn`."""
    method: str
    """HTTP method."""
    path: str
    """Request path (unquoted, no query)."""
    range: str | None
    """The Range header, if sent."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file (cached while the file is unchanged: tests serve the same 100 MB GGUF often)."""
    st = path.stat()
    return _sha256_cached(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


class FakeHub:
    """Two threaded HTTP servers on 127.0.0.1 (hub + CDN) serving registered files; use as a context manager."""

    def __init__(self) -> None:
        self.files: dict[tuple[str, str], HubFile] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._cut_after: int | None = None
        self._cut_sha: str | None = None
        self._down_after_cut = False
        self._pause: Pause | None = None
        self._sent: list[tuple[str, int]] = []  # (served sha256, body bytes sent), one per file GET
        self._down = False
        self._hub = _Server(self, "hub")
        self._cdn = _Server(self, "cdn")

    # -- set-up ------------------------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The hub's base address, for `endpoint=` / `HF_ENDPOINT`."""
        return self._hub.base_url

    @property
    def cdn_url(self) -> str:
        """The CDN server's base address."""
        return self._cdn.base_url

    def add(self, repo_id: str, filename: str, source: Path, *, served_sha256: str | None = None) -> HubFile:
        """Serve `source` as `filename` in `repo_id` (advertising `served_sha256` instead of the real one)."""
        sha = sha256_file(source)
        hub_file = HubFile(source, source.stat().st_size, sha, served_sha256 or sha)
        self.files[(repo_id, filename)] = hub_file
        return hub_file

    def cut_next_get(self, after_bytes: int, *, stay_down: bool = False, sha256: str | None = None) -> None:
        """Drop the connection after `after_bytes` body bytes of the next file GET; `stay_down` keeps the hub down.

        `sha256`: only the next GET of the file advertised with it is cut (others pass untouched).
        """
        with self._lock:
            self._cut_after = after_bytes
            self._cut_sha = sha256
            self._down_after_cut = stay_down

    def pause_next_get(self, *, sha256: str | None = None) -> Pause:
        """Hold the next file GET (of the file advertised with `sha256`, if given) after its headers."""
        pause = Pause(sha256, threading.Event(), threading.Event())
        with self._lock:
            self._pause = pause
        return pause

    def bytes_served(self, sha256: str | None = None) -> int:
        """Body bytes sent by file GETs so far (of the file advertised with `sha256`, if given)."""
        with self._lock:
            return sum(n for sha, n in self._sent if sha256 is None or sha == sha256)

    def set_down(self, down: bool) -> None:
        """While down, every new request is answered by closing the connection (a network outage)."""
        with self._lock:
            self._down = down

    def file_gets(self) -> list[Request]:
        """The GETs of file bytes (on the CDN) so far."""
        with self._lock:
            return [r for r in self.requests if r.server == "cdn" and r.method == "GET"]

    # -- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> FakeHub:
        """Start both servers."""
        self._hub.start()
        self._cdn.start()
        return self

    def close(self) -> None:
        """Stop both servers."""
        self._hub.stop()
        self._cdn.stop()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- used by the handler -----------------------------------------------------------------------------

    def _log(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def _is_down(self) -> bool:
        with self._lock:
            return self._down

    def _take_cut(self, served_sha: str) -> int | None:
        """The one-shot cut for this GET, if armed for it (and go down afterwards if asked)."""
        with self._lock:
            if self._cut_sha is not None and self._cut_sha != served_sha:
                return None
            cut, self._cut_after = self._cut_after, None
            if cut is not None and self._down_after_cut:
                self._down = True
            return cut

    def _take_pause(self, served_sha: str) -> Pause | None:
        with self._lock:
            pause = self._pause
            if pause is None or (pause.sha256 is not None and pause.sha256 != served_sha):
                return None
            self._pause = None
            return pause

    def _count(self, served_sha: str, sent: int) -> None:
        with self._lock:
            self._sent.append((served_sha, sent))

    def _by_sha(self, served_sha: str) -> HubFile | None:
        for f in self.files.values():
            if f.served_sha256 == served_sha:
                return f
        return None


class _Server:
    def __init__(self, hub: FakeHub, role: str) -> None:
        handler = type(f"_{role}Handler", (_Handler,), {"hub": hub, "role": role})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        # A short poll interval keeps shutdown() (which waits for the next poll) quick between tests.
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"fakehub-{role}", daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the hub; huggingface-hub reuses connections
    hub: FakeHub
    role: str

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        pass  # keep pytest output clean

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self._dispatch(send_body=False)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._dispatch(send_body=True)

    def _drop(self) -> None:
        """Close the connection without a (complete) response, like a network failure."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _dispatch(self, *, send_body: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        self.hub._log(Request(self.role, self.command, path, self.headers.get("Range")))
        if self.hub._is_down():
            self._drop()
            return
        if self.role == "hub":
            self._resolve(path)
        else:
            self._serve_blob(path, send_body=send_body)

    def _error(self, status: int, code: str | None = None, message: str = "") -> None:
        body = message.encode()
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _resolve(self, path: str) -> None:
        parts = path.strip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            self._error(404, None, "Not Found")
            return
        repo_id, filename = "/".join(parts[:2]), "/".join(parts[4:])
        if not any(repo == repo_id for repo, _ in self.hub.files):
            self._error(401, "RepoNotFound", "Repository not found")
            return
        hub_file = self.hub.files.get((repo_id, filename))
        if hub_file is None:
            self._error(404, "EntryNotFound", "Entry not found")
            return
        # Like the real hub for LFS files: redirect to the CDN, metadata on the redirect itself.
        self.send_response(302)
        self.send_header("Location", f"{self.hub.cdn_url}/cdn/{hub_file.served_sha256}?signed=1")
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", f'"{hub_file.served_sha256}"')
        self.send_header("X-Linked-Etag", f'"{hub_file.served_sha256}"')
        self.send_header("X-Linked-Size", str(hub_file.size))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _serve_blob(self, path: str, *, send_body: bool) -> None:
        parts = path.strip("/").split("/")
        hub_file = self.hub._by_sha(parts[-1]) if len(parts) == 2 and parts[0] == "cdn" else None
        if hub_file is None:
            self._error(404, None, "Not Found")
            return
        size = hub_file.size
        start, end = 0, size - 1
        status = 200
        spec = self.headers.get("Range")
        if spec and spec.startswith("bytes="):
            first, _, last = spec[len("bytes=") :].partition("-")
            start = int(first) if first else 0
            end = min(int(last), size - 1) if last else size - 1
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        length = end - start + 1
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{hub_file.served_sha256}"')
        self.send_header("Content-Length", str(length))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if not send_body:
            return
        pause = self.hub._take_pause(hub_file.served_sha256)
        if pause is not None:
            self.wfile.flush()  # the headers reach the client: it is now inside its download
            pause.reached.set()
            pause.go.wait(120)  # only a safety net: the test sets it
        cut = self.hub._take_cut(hub_file.served_sha256)
        budget = length if cut is None else min(cut, length)
        sent = 0
        try:
            with hub_file.source.open("rb") as f:
                f.seek(start)
                while budget > 0:
                    chunk = f.read(min(1 << 20, budget))
                    if not chunk:
                        break
                    try:
                        self.wfile.write(chunk)
                    except OSError:  # the client went away
                        self.close_connection = True
                        return
                    budget -= len(chunk)
                    sent += len(chunk)
        finally:
            self.hub._count(hub_file.served_sha256, sent)
        if cut is not None and cut < length:
            self.wfile.flush()
            self._drop()
