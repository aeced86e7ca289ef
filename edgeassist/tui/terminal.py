"""The terminal the app writes to may vanish (a dropped SSH session): writing to it must not hang the app,
and a stop signal (`kill`, a closed terminal) must stop the app the way ctrl+q does."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
"""`kill`, a closed terminal (SSH session) and `kill -INT` quit the app the way ctrl+q does."""


class LostTerminalSafe:
    """A text file that drops what it cannot write once the terminal behind it is gone.

    Textual's output thread writes every frame to `sys.__stderr__` and dies on the first error; a
    terminal that hangs up fails every write (EIO), and the app then blocks for good on the
    thread's full queue, before it can save the reply being written. Through this wrapper the
    frames are dropped instead, so the app reaches its SIGHUP handling and exits.
    """

    def __init__(self, file: TextIO) -> None:
        """Wrap `file`."""
        self._file = file
        self.lost = False
        """Whether a write has failed (the terminal is gone); everything after it is dropped."""

    def write(self, text: str) -> int:
        """Write `text`, or drop it once the terminal is gone."""
        if not self.lost:
            try:
                return self._file.write(text)
            except (OSError, ValueError):
                self.lost = True
        return len(text)

    def flush(self) -> None:
        """Flush, unless the terminal is gone."""
        if not self.lost:
            try:
                self._file.flush()
            except (OSError, ValueError):
                self.lost = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


@contextmanager
def lost_terminal_safe() -> Iterator[None]:
    """While the block runs, Textual's output (`sys.__stderr__`) survives the terminal hanging up."""
    real = sys.__stderr__
    if real is None:
        yield
        return
    sys.__stderr__ = LostTerminalSafe(real)  # type: ignore[misc,assignment]
    try:
        yield
    finally:
        sys.__stderr__ = real  # type: ignore[misc]


class StopSignals:
    """The app's handlers for the stop signals: the first one calls `on_signal(signum)` on the event loop.

    Textual leaves SIGTERM and SIGHUP fatal, which would lose the reply being written and leave the
    terminal in the app's modes. Once a signal has come, the handlers stay and ignore the next ones,
    so that the reply's save is not cut short.
    """

    def __init__(self, on_signal: Callable[[int], None]) -> None:
        """`on_signal` runs on the event loop that `install` was called from."""
        self._on_signal = on_signal
        self._previous: dict[int, Any] = {}  # the handlers ours replaced
        self._tty_fds: list[int] = []
        self.came = False
        """A stop signal has come from outside."""

    def install(self) -> None:
        """Catch the stop signals (from the main thread only; elsewhere, as in tests, nothing is done)."""
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        self._tty_fds = [fd for fd in (0, 1, 2) if os.isatty(fd)]

        def handler(signum: int, frame: object) -> None:
            if self.came:
                return  # already quitting: let the reply be saved
            self.came = True
            if signum == signal.SIGHUP:
                self._drop_lost_terminal()
            loop.call_soon_threadsafe(self._on_signal, signum)

        for sig in STOP_SIGNALS:
            if signal.getsignal(sig) is not signal.SIG_IGN:  # nohup's SIGHUP stays ignored
                self._previous[sig] = signal.signal(sig, handler)

    def restore(self) -> None:
        """Put the handlers ours replaced back, unless a signal has come."""
        if not self.came:
            for sig, previous in self._previous.items():
                signal.signal(sig, previous)

    def _drop_lost_terminal(self) -> None:
        """After a hang-up the terminal is gone and every write to it fails: send them to /dev/null."""
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            for fd in self._tty_fds:
                if not os.isatty(fd):
                    os.dup2(devnull, fd)
        finally:
            os.close(devnull)
