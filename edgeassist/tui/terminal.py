"""The terminal the app writes to may vanish (a dropped SSH session): writing to it must not hang the app."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO


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
