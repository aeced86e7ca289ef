"""The log screen: llama.cpp's log and the app's warnings, newest last, as plain text to select and copy.

The lines come from `engine.log.LOG`: llama.cpp's, from the first model load on, and, while the
app runs (`capture_python`), Python's warnings and log records at WARNING and above, and the
app's own warning and error notices (`record_notice`). Under the app nobody reads stderr (Textual
holds it), so without this they would be lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Log, Static

from edgeassist.engine.log import LOG, LogLine, LogRing

if TYPE_CHECKING:
    from textual.notifications import Notification

POLL_S = 0.5
"""How often the open screen looks for new lines (nothing runs while it is closed)."""
EMPTY = "Nothing logged yet: llama.cpp writes here when a model loads; warnings and errors come here too."


class RingHandler(logging.Handler):
    """Python's log records into the ring, one line per line of the formatted record."""

    def __init__(self, ring: LogRing) -> None:
        """Feed `ring`."""
        super().__init__(logging.WARNING)
        self.ring = ring

    def emit(self, record: logging.LogRecord) -> None:
        """Add the record (a warning's message keeps its file and line)."""
        try:
            self.ring.add(record.name, record.levelname.lower(), self.format(record))
        except Exception:  # noqa: BLE001 - logging's own rule: a handler never raises
            self.handleError(record)


def capture_python(ring: LogRing = LOG) -> Callable[[], None]:
    """From now on, Python's warnings and log records at WARNING and above go to `ring`; returns the undo.

    For the chat app only: it attaches to the root logger, which also ends Python's last-resort
    printing of such records to stderr (under the app, stderr reaches no one anyway).
    """
    handler = RingHandler(ring)
    root = logging.getLogger()
    root.addHandler(handler)
    logging.captureWarnings(True)

    def undo() -> None:
        logging.captureWarnings(False)
        root.removeHandler(handler)

    return undo


def record_notice(notification: Notification, ring: LogRing = LOG) -> None:
    """Keep a warning or error notice in the log: a notice goes away, the log keeps what it said."""
    if notification.severity in ("warning", "error"):
        title = f"{notification.title}: " if notification.title else ""
        ring.add("edgeassist", notification.severity, f"{title}{notification.message}")


def format_line(line: LogLine) -> str:
    """`12:03:04 llama.cpp warning text`: the time, who wrote it, how serious, what."""
    stamp = time.strftime("%H:%M:%S", time.localtime(line.time))
    return f"{stamp} {line.source} {line.level:<7} {line.text.expandtabs()}"


class LogScreen(Screen[None]):
    """The log, newest last, followed while open: drag to select and ctrl+c copies; c copies it all."""

    BINDINGS = [
        Binding("escape,q", "close", "Close"),
        Binding("c", "copy_all", "Copy all"),
    ]
    DEFAULT_CSS = """
    LogScreen { layout: vertical; }
    LogScreen #log-title { height: 1; padding: 0 1; text-style: bold; }
    LogScreen #log-lines { height: 1fr; }
    LogScreen #log-hint { height: 1; padding: 0 1; color: $text-muted; }
    """

    def __init__(self, ring: LogRing = LOG) -> None:
        """Show `ring`."""
        super().__init__()
        self.ring = ring
        self._mark = 0

    def compose(self) -> ComposeResult:
        """A title, the lines, a line of keys."""
        yield Static("Log: llama.cpp and edgeassist, newest last", id="log-title", markup=False)
        yield Log(id="log-lines", max_lines=self.ring.size)
        yield Static("drag to select, ctrl+c copies it · c copies everything · Esc closes", id="log-hint", markup=False)

    def on_mount(self) -> None:
        """Show what is there, then follow it."""
        log = self.query_one(Log)
        log.focus()
        self._follow()
        if not log.line_count:
            log.write_line(EMPTY)
        self.set_interval(POLL_S, self._follow)

    def _follow(self) -> None:
        """Append the lines added since last time (scrolling along unless the view was scrolled up)."""
        lines, self._mark = self.ring.since(self._mark)
        if lines:
            log = self.query_one(Log)
            if log.lines[:1] == [EMPTY]:
                log.clear()
            log.write_lines(format_line(line) for line in lines)

    def action_copy_all(self) -> None:
        """Copy every line shown."""
        lines = [line for line in self.query_one(Log).lines if line != EMPTY]
        self.app.copy_to_clipboard("\n".join(lines))
        self.notify(f"Copied {len(lines)} log lines.", timeout=2)

    def action_close(self) -> None:
        """Back to the chat."""
        self.dismiss()
