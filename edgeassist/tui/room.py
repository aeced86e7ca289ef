"""What the parts ("rooms") of the chat app share: the session's state, Textual's services, one guard.

Each room (models, chats, replies, push-to-talk) is a plain object holding the app, for Textual's
services (queries, workers, timers, notifications), and the `Session`, for the state they all
read. A room that needs another takes it in its constructor; only the app sees them all.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import TYPE_CHECKING, Any

from textual.css.query import NoMatches

if TYPE_CHECKING:
    from textual.app import App

    from edgeassist.config import Settings
    from edgeassist.store import Store
    from edgeassist.tools import Toolbox


@dataclass
class Session:
    """The app's state that every room reads."""

    settings: Settings
    """The settings (a model switch replaces them with the new model's name)."""
    store: Store
    """The chat history."""
    think: bool
    """Whether the next message asks the model to think."""
    quitting: bool = False
    """The app is shutting down: its widgets may be gone, and nothing new starts."""
    tools: Toolbox | None = None
    """The session's tools, offered by every chat (to a model that can call them)."""
    tools_started: threading.Event = field(default_factory=threading.Event)
    """Set once a reply's thread has started the tools (MCP servers take seconds): from then on the UI
    thread may count the tools' tokens without starting anything."""


class Room:
    """One part of the chat app: Textual's services through `app`, the shared state through `session`."""

    def __init__(self, app: App[Any], session: Session) -> None:
        """A room of `app`."""
        self.app = app
        self.session = session


def while_shown(handler: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Skip a room's handler once the app's widgets are gone (a reply ending while the app shuts down)."""

    @wraps(handler)
    async def guarded(self: Room, *args: Any) -> None:
        try:
            await handler(self, *args)
        except NoMatches:
            if self.app.is_running and not self.session.quitting and self.app.screen_stack:
                raise

    return guarded
