"""Messages from the worker threads to the app: small dataclasses, posted thread-safely."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from textual.message import Message

from edgeassist.engine.base import Stats
from edgeassist.images import Picture
from edgeassist.tools import ConsentRequest, ToolResult, ToolStarted


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


@dataclass
class ToolAsked(Message):
    """A reply's tool call asks first: the app shows the dialog; the reply's thread waits for `answered`."""

    reply_id: int
    """The reply."""
    request: ConsentRequest
    """What to ask; answered (`request.answer`) before `answered` is set."""
    answered: threading.Event
    """Set once the request is answered (or the reply stopped)."""


@dataclass
class ToolCalled(Message):
    """A reply's tool call started or ended: the app shows it; the reply's thread waits for `shown`.

    (The thread waits so that what the model writes after the call streams below the call's block.)
    """

    reply_id: int
    """The reply."""
    event: ToolStarted | ToolResult
    """The call's event."""
    shown: threading.Event
    """Set once the event is shown (or the reply stopped)."""


# -- pictures ---------------------------------------------------------------------------------------


@dataclass
class PictureAttached(Message):
    """A pasted path was read and checked: attach the picture to the next message."""

    picture: Picture
    """The picture."""


@dataclass
class PictureRefused(Message):
    """A pasted path is no picture edgeassist reads: nothing is attached."""

    error: str
    """The ImageError's one line."""


# -- push-to-talk -----------------------------------------------------------------------------------


@dataclass
class VoiceReady(Message):
    """The voice pipeline is built and warmed up: start the recording the key asked for."""

    pipeline: Any
    """The `edgeassist.voice.VoicePipeline` (not imported here: the app starts without the speech extra)."""
    hands_free: bool = False
    """The hands-free key asked for it: no push-to-talk recording starts."""


@dataclass
class VoiceUnavailable(Message):
    """Voice cannot run here (no speech extra, no PortAudio, no microphone); chat goes on."""

    error: str
    """One line: what is missing and what to install."""


@dataclass
class VoiceLevel(Message):
    """The microphone's level while recording, 0..1; only the latest matters."""

    level: float
    """0 is silence, 1 is full scale."""

    def can_replace(self, message: Message) -> bool:
        """A queued level is superseded by a newer one."""
        return isinstance(message, VoiceLevel)


@dataclass
class VoicePartial(Message):
    """What has been heard so far while the key is held."""

    text: str
    """The partial transcript."""


@dataclass
class VoiceHeard(Message):
    """The recording has been transcribed: the user's message for this voice turn."""

    reply_id: int
    """The voice turn's reply."""
    text: str
    """The transcript; empty when nothing was heard."""


@dataclass
class VoiceSpeaking(Message):
    """A sentence of the reply started to play."""

    reply_id: int
    """The voice turn's reply."""
    text: str
    """The sentence as spoken."""


@dataclass
class VoiceTurnDone(Message):
    """The voice turn is over (its audio too): complete, cancelled or empty."""

    reply_id: int
    """The voice turn's reply."""
    status: str
    """complete, cancelled (barge-in, Esc), or empty (nothing heard)."""


@dataclass
class HandsFreeChanged(Message):
    """A hands-free session moved to another state (`edgeassist.voice.handsfree.StateChanged`)."""

    live: Any
    """The session as the app holds it (`tui.handsfree.Live`); a session that has ended is ignored."""
    state: Any
    """The `HandsFreeState` it is in now (not imported here: the app starts without the speech extra)."""
    reason: str
    """Why, in a few words (speech, end of turn, played, interrupted...)."""


@dataclass
class HandsFreeSpeaking(Message):
    """A sentence of a hands-free reply started to play."""

    live: Any
    """The session as the app holds it."""
    text: str
    """The sentence as spoken."""


@dataclass
class HandsFreeTurnDone(Message):
    """A hands-free turn that showed a message is over, its audio too: its reply ends (stopped, if it got no Done)."""

    reply_id: int
    """The turn's reply."""
    status: str
    """complete or cancelled (Esc, a typed message, hands-free turned off)."""


@dataclass
class HandsFreeFailed(Message):
    """A hands-free session could not start (no microphone, no speech extra); chat goes on."""

    live: Any
    """The session as the app holds it."""
    error: str
    """One line: what is missing and what to do."""


@dataclass
class HandsFreeEnded(Message):
    """A hands-free session's events have ended: it was turned off, or it stopped by itself (`error`)."""

    live: Any
    """The session as the app holds it."""
    error: str | None
    """What stopped it, when something failed (a microphone unplugged); None when it was turned off."""
