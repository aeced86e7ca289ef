"""A reply's life as one state machine, the same for every front end.

```
pending ──start──► streaming ──Done(stop)────────► complete
   │                   ├──────Done(length)──────► cut
   │                   ├──Done(cancelled), stop─► stopped
   │                   └──────error─────────────► failed
   ├──stop──► stopped   (stopped before it started: nothing was written)
   └──error─► failed    (failed before it started: a spoken turn's microphone, say)
```

*pending*: the reply exists (a front end shows it) but no model work has started for it.
*streaming*: its events are being produced. The four endings are final. A stop is asked with
`request_stop()` and takes effect when the reply's thread answers (a Done marked cancelled),
or with `stop()` when the front end settles a reply whose thread ended without a Done.

`ReplyMachine` is the one thing that moves a reply's state; a move that `TRANSITIONS` does not
allow raises `IllegalTransition` (a bug in the caller, never a user's error).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from enum import Enum

from edgeassist.engine.base import Done


class ReplyState(Enum):
    """Where a reply is in its life."""

    PENDING = "pending"
    """Shown, but its model work has not started."""
    STREAMING = "streaming"
    """Its pieces are being written."""
    COMPLETE = "complete"
    """The model ended it."""
    STOPPED = "stopped"
    """Stopped by the user (Esc, quit, a new chat, a signal) before the model ended it."""
    CUT = "cut"
    """Ended by the token limit (`generation.max_tokens`)."""
    FAILED = "failed"
    """Ended by an error."""

    @property
    def ended(self) -> bool:
        """Whether this is one of the four final states."""
        return not TRANSITIONS[self]


TRANSITIONS: Mapping[ReplyState, frozenset[ReplyState]] = {
    ReplyState.PENDING: frozenset({ReplyState.STREAMING, ReplyState.STOPPED, ReplyState.FAILED}),
    ReplyState.STREAMING: frozenset({ReplyState.COMPLETE, ReplyState.STOPPED, ReplyState.CUT, ReplyState.FAILED}),
    ReplyState.COMPLETE: frozenset(),
    ReplyState.STOPPED: frozenset(),
    ReplyState.CUT: frozenset(),
    ReplyState.FAILED: frozenset(),
}
"""The moves a reply may make: from each state, the states it may go to next."""

_FINISHES: Mapping[str, ReplyState] = {
    "stop": ReplyState.COMPLETE,
    "length": ReplyState.CUT,
    "cancelled": ReplyState.STOPPED,
    "error": ReplyState.FAILED,
}


class IllegalTransition(RuntimeError):
    """A reply was moved where its state machine does not go (a bug in the front end, not a user's error)."""


def ending(done: Done) -> ReplyState:
    """The final state that a reply's Done puts it in, from the stats' `finish_reason`."""
    return _FINISHES[done.stats.finish_reason]


class ReplyMachine:
    """One reply's state. `start`, `finish`, `fail` and `stop` are the only ways to move it.

    Safe to use from any thread; a front end usually moves it from its UI thread only.
    """

    def __init__(self) -> None:
        """A new reply, pending."""
        self._state = ReplyState.PENDING
        self._started = False
        self._stop_requested = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ReplyMachine({self._state.value})"

    @property
    def state(self) -> ReplyState:
        """Where the reply is now."""
        return self._state

    @property
    def ended(self) -> bool:
        """Whether the reply has reached one of its four endings."""
        return self._state.ended

    @property
    def started(self) -> bool:
        """Whether the reply went through streaming (a reply that ended pending never wrote anything)."""
        return self._started

    @property
    def stop_requested(self) -> bool:
        """Whether a stop was asked for (it may still end otherwise: the model finished first)."""
        return self._stop_requested

    def start(self) -> None:
        """pending → streaming: its model work begins."""
        self._move(ReplyState.STREAMING)

    def request_stop(self) -> bool:
        """Ask the reply to stop; the state moves when its thread answers. False when it had already ended."""
        with self._lock:
            if self._state.ended:
                return False
            self._stop_requested = True
            return True

    def finish(self, done: Done) -> ReplyState:
        """streaming → complete, cut, stopped or failed, as the Done says; returns the new state."""
        return self._move(ending(done))

    def fail(self) -> ReplyState:
        """→ failed: an error ended the reply (pending or streaming)."""
        return self._move(ReplyState.FAILED)

    def stop(self) -> ReplyState:
        """→ stopped, with no Done: stopped before it started, or its thread ended without one."""
        return self._move(ReplyState.STOPPED)

    def _move(self, to: ReplyState) -> ReplyState:
        with self._lock:
            if to not in TRANSITIONS[self._state]:
                raise IllegalTransition(f"a reply cannot go from {self._state.value} to {to.value}")
            self._state = to
            self._started = self._started or to is ReplyState.STREAMING
            return to
