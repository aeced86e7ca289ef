"""The attach room: pictures for the next message, from the attach key's dialog or a pasted path.

ctrl+f (or F12) opens `AttachScreen`, a path input that completes against the file system
(`PathSuggester` over `paths.complete_path`: pictures first, then folders with a trailing `/`, `~`
for the home folder; Tab or → takes the completion). Pasting exactly one path to a picture into
the message box (as terminals paste a dragged file: plain, quoted, backslash-escaped or a `file://`
URI; `paths.pasted_path`, which the message box asks) attaches it instead of inserting the text.
Either way the file is read and checked by `images.read_image` in a thread worker; a bad file is
its one `ImageError` line and nothing is attached. A model that cannot see refuses at once with
`engine.factory.vision_refusal`'s line.

The pictures wait in a row above the input (`pictures.Attachments`) until the message is sent
(`take`); a click on one, or Backspace in the empty message box, takes it off.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Input, Label, Static

from edgeassist.errors import EdgeAssistError
from edgeassist.images import Picture, read_image
from edgeassist.tui.messages import PictureAttached, PictureRefused
from edgeassist.tui.paths import complete_path
from edgeassist.tui.pictures import Attachments
from edgeassist.tui.room import Room, Session

if TYPE_CHECKING:
    from textual.app import App

    from edgeassist.tui.models import ModelRoom

MAX_ATTACHED = 8
"""Pictures one message may carry (each takes hundreds of tokens of the context)."""


class PathSuggester(Suggester):
    """Completes the path typed so far against the file system (`complete_path`), off the event loop."""

    def __init__(self, cwd: Path | None = None) -> None:
        """Complete relative paths from `cwd` (default: the working folder). Nothing cached: folders change."""
        super().__init__(use_cache=False, case_sensitive=True)
        self.cwd = cwd

    async def get_suggestion(self, value: str) -> str | None:
        """The first picture or folder that `value` begins (`complete_path`)."""
        return await asyncio.to_thread(complete_path, value, self.cwd)


def read_picture(text: str) -> Picture:
    """Read and check the picture at the path `text` (`~` expanded). Raises ImageError. Blocking."""
    return read_image(Path(os.path.expanduser(text.strip())))


class PathInput(Input):
    """A one-line path input: Tab (or →) takes the completion shown."""

    BINDINGS = [Binding("tab", "complete", "Complete", show=False)]

    def action_complete(self) -> None:
        """Take the completion shown (the suggester then offers the next part)."""
        if self._suggestion and self.cursor_at_end:
            self.action_cursor_right()


class AttachScreen(ModalScreen[Picture | None]):
    """Ask for a picture's path: Tab completes, Enter reads it (a bad file: its line; the dialog stays), Esc cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    @dataclass
    class Read(Message):
        """The worker has read the file: the picture, or why it cannot be used."""

        picture: Picture | None
        """The picture (None: refused)."""
        error: str = ""
        """The ImageError's line."""

    def __init__(self, start: str = "", cwd: Path | None = None) -> None:
        """Start the input at `start` (the folder of the last picture); complete relative paths from `cwd`."""
        super().__init__()
        self.start = start
        self.cwd = cwd
        self.reading = False

    def compose(self) -> ComposeResult:
        """The question, the path input, the error line and the keys."""
        with Vertical(classes="dialog wide", id="attach-box"):
            yield Label("Attach a picture (JPEG, PNG or WebP):", classes="dialog-text")
            yield PathInput(
                self.start,
                placeholder="~/Pictures/photo.jpg",
                suggester=PathSuggester(self.cwd),
                id="attach-path",
            )
            yield Static("", id="attach-error", markup=False)
            yield Static("Tab completes · Enter attaches · Esc cancels", classes="dialog-hint")

    @property
    def error(self) -> str:
        """The error line shown now (empty: none)."""
        return str(self.query_one("#attach-error", Static).render())

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter: read the file (in a thread worker); the dialog closes once it is a picture."""
        event.stop()
        text = event.value.strip()
        if self.reading:
            return
        if not text:
            self._say("Type the path of a picture (Tab completes).")
            return
        self.reading = True
        self._say("")
        self._read(os.path.expanduser(text))

    @work(thread=True, exclusive=True, exit_on_error=False)
    def _read(self, text: str) -> None:
        """Read and check the picture (blocking, in a thread worker)."""
        try:
            self.post_message(self.Read(read_picture(text)))
        except EdgeAssistError as e:
            self.post_message(self.Read(None, str(e)))

    def on_attach_screen_read(self, message: AttachScreen.Read) -> None:
        """Close with the picture, or say why the file cannot be used (nothing is attached)."""
        self.reading = False
        if message.picture is not None:
            self.dismiss(message.picture)
        else:
            self._say(message.error)
            self.query_one(PathInput).focus()

    def on_mount(self) -> None:
        """No error line yet."""
        self._say("")

    def _say(self, text: str) -> None:
        line = self.query_one("#attach-error", Static)
        line.update(text)
        line.display = bool(text)

    def action_cancel(self) -> None:
        """Close without a picture."""
        self.dismiss(None)


class AttachRoom(Room):
    """The pictures attached to the next message: added from the dialog or a paste, shown, taken when it is sent."""

    def __init__(self, app: App[Any], session: Session, models: ModelRoom) -> None:
        """Pictures for the model `models` holds."""
        super().__init__(app, session)
        self.models = models
        self.pending: list[Picture] = []
        """The pictures waiting to be sent, in order."""
        self._folder = ""  # where the last picture came from: the dialog starts there

    def refusal(self) -> str | None:
        """Why no picture can be attached now (the one line to show), or None when the model can see."""
        from edgeassist.engine.factory import vision_refusal

        engine = self.models.engine
        if engine is None:
            return "No model is loaded: ctrl+p to pick one."
        if not engine.capabilities.images:
            return str(vision_refusal(engine, self.models.resolved))
        return None

    def _refused(self) -> bool:
        """Say why pictures cannot be attached, if they cannot; True then."""
        why = self.refusal()
        if why is not None:
            self.app.notify(why, title="Pictures", severity="error", timeout=15)
            return True
        if len(self.pending) >= MAX_ATTACHED:
            self.app.notify(f"A message carries at most {MAX_ATTACHED} pictures.", severity="warning")
            return True
        return False

    def ask(self) -> None:
        """The attach key: the path dialog (or, for a model that cannot see, the line saying so)."""
        if self._refused():
            return
        self.app.push_screen(AttachScreen(self._folder), self._chosen)

    async def _chosen(self, picture: Picture | None) -> None:
        if picture is not None:
            await self.add(picture)

    def attach_path(self, path: Path) -> None:
        """Attach the picture at `path` (a paste): read and checked in a thread worker."""
        if self._refused():
            return
        read = partial(self._read, path)
        self.app.run_worker(read, name="attach", group="attach", thread=True, exit_on_error=False)

    def _read(self, path: Path) -> None:
        """Read and check the picture (blocking, in a thread worker); the app hears the result."""
        try:
            self.app.post_message(PictureAttached(read_image(path)))
        except EdgeAssistError as e:
            self.app.post_message(PictureRefused(str(e)))

    async def add(self, picture: Picture) -> None:
        """Attach `picture` to the next message (one already attached is not added twice)."""
        if any(p.sha256 == picture.sha256 for p in self.pending):
            self.app.notify(f"{Path(picture.name).name} is attached already.", timeout=3)
            return
        self.pending.append(picture)
        parent = str(Path(picture.name).expanduser().parent)
        self._folder = parent.rstrip("/") + "/" if parent not in ("", ".") else ""
        await self._show()

    async def remove(self, sha256: str) -> None:
        """Take the picture with this hash off."""
        self.pending = [p for p in self.pending if p.sha256 != sha256]
        await self._show()

    async def remove_last(self) -> bool:
        """Take the last picture off; False when there was none."""
        if not self.pending:
            return False
        self.pending.pop()
        await self._show()
        return True

    async def take(self) -> tuple[Picture, ...]:
        """The pictures for the message being sent; the row empties."""
        taken, self.pending = tuple(self.pending), []
        await self._show()
        return taken

    async def _show(self) -> None:
        await self.app.query_one(Attachments).show(self.pending)
