"""llama.cpp's log, kept in memory: the last lines it wrote, for the chat app's log screen and for load errors.

llama.cpp reports through one process-wide callback. It writes while a model loads and a context
is made (about 150 lines at INFO and above for a small GGUF, and thousands at DEBUG: one per
tensor) and nothing while it decodes: measured on SmolLM2 and on a Qwen 3.5 model, 0 calls in a
300-token reply, and on Qwen 3.5 one DEBUG line per reply (its state restored), none per token.
So keeping the log adds no work per token. DEBUG lines are dropped at the door; the rest go, a
whole line at a time, into a bounded ring (`LOG`). Nothing is ever printed: a terminal UI's screen
would be corrupted by it, and `ask` prints only the reply.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

RING_LINES = 2000
"""How many lines the log keeps (about ten model loads' worth)."""

LLAMA_LEVELS = {2: "info", 3: "warning", 4: "error"}
"""ggml's log levels that are kept, by number (1 is DEBUG, dropped; 5 continues the previous message)."""
_CONT = 5


@dataclass(frozen=True)
class LogLine:
    """One line of the log."""

    time: float
    """When it was written, in seconds since the epoch."""
    source: str
    """Who wrote it: `llama.cpp`, or a Python logger's name."""
    level: str
    """`info`, `warning`, `error` (or `critical`, from Python)."""
    text: str
    """The line, without its newline."""


class LogRing:
    """The last `size` lines of the log; any thread may add to it or read it."""

    def __init__(self, size: int = RING_LINES) -> None:
        """An empty ring keeping at most `size` lines."""
        self.size = size
        """The most lines it keeps."""
        self._lines: deque[LogLine] = deque(maxlen=size)
        self._count = 0
        # Re-entrant: adding may allocate, the collector may then finalize an engine, and its close
        # makes llama.cpp log again, into this same ring, on this same thread.
        self._lock = threading.RLock()

    @property
    def count(self) -> int:
        """How many lines were ever added (the ring keeps the last of them): a mark for `since`."""
        with self._lock:
            return self._count

    def add(self, source: str, level: str, text: str) -> None:
        """Add `text`, one line per line it holds (blank ones left out)."""
        now = time.time()
        with self._lock:
            for line in text.splitlines():
                if line.strip():
                    self._lines.append(LogLine(now, source, level, line.rstrip()))
                    self._count += 1

    def since(self, mark: int = 0) -> tuple[list[LogLine], int]:
        """The lines added after `count` was `mark` (those still kept), oldest first, and the mark for next time."""
        with self._lock:
            new = min(len(self._lines), max(0, self._count - mark))
            lines = list(self._lines)[len(self._lines) - new :] if new else []
            return lines, self._count


class LlamaLog:
    """Turns llama.cpp's callback calls (a line in pieces, CONT for more of the last) into whole lines in a ring.

    `tail` also gets the warning and error lines (`engine.build.log_tail`: the reason behind a failed
    quantization). `calls` counts the callback's calls, kept or not, so that a test can show
    decoding makes none.
    """

    def __init__(self, ring: LogRing, tail: deque[str] | None = None) -> None:
        """Feed `ring` (and `tail`)."""
        self.ring = ring
        self.tail = tail
        self.calls = 0
        self._level = 0  # the level of the message being written: what a CONT piece continues
        self._pending = ""  # its text since the last newline
        self._lock = threading.RLock()  # (re-entered when a finalizer's llama.cpp call logs: see LogRing)

    def feed(self, level: int, text: bytes | None) -> None:
        """One call of llama.cpp's callback. Never raises: ctypes would print the traceback to the terminal."""
        with self._lock:
            self.calls += 1
            if level != _CONT:
                if self._pending:  # a message that did not end its line: it is one now
                    pending, self._pending = self._pending, ""
                    self._emit(pending)
                self._level = level
            if self._level not in LLAMA_LEVELS:
                return
            self._pending += (text or b"").decode("utf-8", "replace")
            if "\n" in self._pending:
                whole, _, self._pending = self._pending.rpartition("\n")
                self._emit(whole)

    def _emit(self, text: str) -> None:
        level = LLAMA_LEVELS[self._level]
        self.ring.add("llama.cpp", level, text)
        if self.tail is not None and level != "info":
            self.tail.extend(line.strip() for line in text.splitlines() if line.strip())


LOG = LogRing()
"""The process's log: llama.cpp's lines (once `install_llama_log` has run) and, in the chat app, Python's warnings."""
LLAMA_LOG = LlamaLog(LOG)
"""What llama.cpp's callback feeds."""

_callback: object = None
_install_lock = threading.Lock()


def install_llama_log(tail: deque[str] | None = None) -> None:
    """Route llama.cpp's log into `LOG` (its warnings and errors into `tail` too); once per process.

    `engine.build.init_backend` calls it as llama.cpp starts, so that nothing it logs reaches
    the terminal (llama.cpp keeps only the last callback set).
    """
    global _callback
    with _install_lock:
        if _callback is not None:
            return
        import ctypes

        import llama_cpp

        LLAMA_LOG.tail = tail

        @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
        def _log(level: int, text: bytes | None, user_data: ctypes.c_void_p) -> None:
            LLAMA_LOG.feed(level, text)

        _callback = _log  # keep a reference: ctypes would free the callback
        llama_cpp.llama_log_set(_log, ctypes.c_void_p(0))


_mtmd_callback: object = None


def install_mtmd_log() -> None:
    """Route the multimodal library's log (mtmd and its clip encoder) into `LOG` with llama.cpp's; once per process.

    mtmd keeps a logger of its own, which writes to the terminal until told otherwise: under the
    chat app that would tear the screen.
    """
    global _mtmd_callback
    install_llama_log()
    with _install_lock:
        if _mtmd_callback is not None:
            return
        import ctypes

        import llama_cpp
        from llama_cpp import mtmd_cpp

        @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
        def _log(level: int, text: bytes | None, user_data: ctypes.c_void_p) -> None:
            LLAMA_LOG.feed(level, text)

        _mtmd_callback = _log
        mtmd_cpp.mtmd_log_set(_log, ctypes.c_void_p(0))
        mtmd_cpp.mtmd_helper_log_set(_log, ctypes.c_void_p(0))


def first_error(since: int, ring: LogRing = LOG) -> str | None:
    """The first error llama.cpp logged after `ring.count` was `since`: why a load failed, in its own words."""
    lines, _ = ring.since(since)
    return next((line.text for line in lines if line.source == "llama.cpp" and line.level == "error"), None)


__all__ = [
    "LLAMA_LOG",
    "LOG",
    "RING_LINES",
    "LlamaLog",
    "LogLine",
    "LogRing",
    "first_error",
    "install_llama_log",
    "install_mtmd_log",
]
