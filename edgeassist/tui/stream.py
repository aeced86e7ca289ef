"""The hand-over between the reply worker thread and the UI: pieces buffered, the UI woken at a bounded rate.

The worker runs the decode loop; posting one message per token would wake the event loop (and take
the GIL for Markdown rendering) once per token. Instead pieces collect here and the worker posts
one notification only when the UI has drained the last batch and at least `interval_s` has passed.
The UI drains everything at once, so nothing is lost and rendering cost grows with frames, not tokens.

A frame (Markdown append, layout, compositor) costs the UI thread 5-25 ms of CPU, and that CPU
and the GIL are taken from llama.cpp's threads, which use every core. `FrameBudget` measures the
UI thread's CPU per frame and spaces frames so that rendering stays a small share of the time.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

try:
    from time import thread_time as _thread_time
except ImportError:  # pragma: no cover - platforms without per-thread CPU clocks
    _thread_time = time.process_time

clock = time.perf_counter
"""The clock for stream timings (tests replace it to make labels deterministic)."""


@dataclass
class Chunk:
    """What arrived since the last drain, and the running figures of the reply."""

    thinking: str = ""
    """New thinking text."""
    text: str = ""
    """New answer text."""
    pieces: int = 0
    """Pieces (about one per token) received so far in this reply."""
    first_s: float | None = None
    """When the first piece arrived, seconds from the request."""
    last_s: float | None = None
    """When the latest piece arrived, seconds from the request."""
    thinking_s: float | None = None
    """How long the model thought: from the request to the first answer piece (or the latest thinking piece)."""
    answering: bool = False
    """Whether the answer has started."""

    def rate(self) -> float | None:
        """Pieces per second after the first: the live decode speed."""
        if self.first_s is None or self.last_s is None or self.pieces < 2 or self.last_s <= self.first_s:
            return None
        return (self.pieces - 1) / (self.last_s - self.first_s)


@dataclass
class Outbox:
    """A thread-safe buffer for one reply; `put` runs in the worker, `take` on the UI thread."""

    interval_s: float = 1 / 30
    """Least time between two notifications to the UI."""
    started: float = field(default_factory=lambda: clock())
    """When the request started (clock seconds)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _thinking: list[str] = field(default_factory=list, repr=False)
    _text: list[str] = field(default_factory=list, repr=False)
    _pieces: int = 0
    _first: float | None = None
    _last: float | None = None
    _first_text: float | None = None
    _waiting: bool = False  # a notification is on its way and not yet drained
    _last_post: float = float("-inf")

    def put(self, thinking: bool, text: str) -> bool:
        """Buffer one piece; True when the caller should notify the UI now."""
        now = clock() - self.started
        with self._lock:
            (self._thinking if thinking else self._text).append(text)
            self._pieces += 1
            if self._first is None:
                self._first = now
            self._last = now
            if not thinking and self._first_text is None:
                self._first_text = now
                # The answer starting is an event worth a frame at once (the thinking block collapses).
                notify = not self._waiting
            else:
                notify = not self._waiting and now - self._last_post >= self.interval_s
            if notify:
                self._waiting = True
                self._last_post = now
            return notify

    def pending(self) -> bool:
        """Whether pieces are waiting that no notification will bring (the model paused after them)."""
        with self._lock:
            return bool(self._thinking or self._text) and not self._waiting

    def take(self) -> Chunk:
        """Everything buffered since the last call, with the running figures."""
        with self._lock:
            chunk = Chunk(
                thinking="".join(self._thinking),
                text="".join(self._text),
                pieces=self._pieces,
                first_s=self._first,
                last_s=self._last,
                thinking_s=self._first_text if self._first_text is not None else self._last,
                answering=self._first_text is not None,
            )
            self._thinking.clear()
            self._text.clear()
            self._waiting = False
            return chunk


@dataclass
class FrameBudget:
    """Spaces streaming frames so the UI thread's CPU stays near `duty` of the wall time.

    Call `sample()` on the UI thread at each drain; it returns the interval the worker should wait
    between notifications: the CPU the UI spent since the last drain (one frame's work) over `duty`.
    """

    duty: float = 0.02
    """Share of wall time the UI may spend rendering while a reply streams."""
    min_interval: float = 1 / 30
    """Fastest frame rate: 30 a second."""
    max_interval: float = 1.5
    """Slowest frame rate, so text still flows on a slow board with every core decoding."""
    interval: float = 0.2
    """The current interval; starts at 5 frames a second and adapts from the first frame's cost."""
    _cpu: float | None = None

    def reset(self) -> None:
        """Start measuring afresh (a new reply)."""
        self._cpu = None

    def sample(self) -> float:
        """Update and return the interval from the UI thread's CPU since the previous sample."""
        cpu = _thread_time()
        if self._cpu is not None:
            spent = cpu - self._cpu
            wanted = min(self.max_interval, max(self.min_interval, spent / self.duty))
            self.interval = 0.5 * self.interval + 0.5 * wanted
        self._cpu = cpu
        return self.interval


def render_duty(decode_threads: int, cpus: int) -> float:
    """The UI's CPU share while decoding: generous with a core to spare, strict when llama.cpp uses them all.

    With every core decoding, each millisecond the UI renders is taken from llama.cpp's threads
    (which wait for each other at every step); with a spare core only the GIL is shared.
    """
    return 0.05 if cpus > decode_threads else 0.015
