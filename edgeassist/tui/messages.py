"""Messages from the worker threads to the app: small dataclasses, posted thread-safely."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from edgeassist.engine.base import Stats


@dataclass
class ModelLoading(Message):
    """The model is being loaded on this backend."""

    generation: int
    """Which model load this belongs to."""
    backend: str
    """cpu, metal, cuda, …"""


@dataclass
class ModelReady(Message):
    """The model finished loading."""

    generation: int
    """Which model load this answers (older ones are ignored)."""
    load_s: float
    """Load time in seconds."""


@dataclass
class ModelFailed(Message):
    """The model could not be opened or loaded."""

    generation: int
    """Which model load this answers."""
    error: str
    """What went wrong, for people."""


@dataclass
class ReplyStreamed(Message):
    """New pieces of a reply are waiting in its outbox; merges with queued ones, since one drain takes all."""

    reply_id: int
    """The reply the pieces belong to."""

    def can_replace(self, message: Message) -> bool:
        """A queued notification for the same reply is superseded by this one."""
        return isinstance(message, ReplyStreamed) and message.reply_id == self.reply_id


@dataclass
class ReplyNotice(Message):
    """A one-line note from the pipeline (old turns trimmed)."""

    reply_id: int
    """The reply it came with."""
    text: str
    """The note."""


@dataclass
class ReplyDone(Message):
    """The reply ended: finished, hit the limit, or stopped."""

    reply_id: int
    """The reply."""
    stats: Stats
    """Its figures."""


@dataclass
class ReplyFailed(Message):
    """The reply ended with an error (model error, context full, history not writable)."""

    reply_id: int
    """The reply."""
    error: str
    """What went wrong, for people."""
    unsaved: bool = False
    """The history could not be written (the reply itself may be whole)."""
