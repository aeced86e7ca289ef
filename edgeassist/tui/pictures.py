"""Pictures on screen: the thumbnails of a message's pictures, and the row of pictures waiting to be sent.

A thumbnail is drawn by textual-image where the terminal can draw one: Sixel where the terminal
says it draws Sixel (foot, WezTerm, Konsole, mlterm, xterm started with Sixel on, ...), the Kitty
graphics protocol in Kitty, else coloured half blocks (any other colour terminal). Which one is
asked of the terminal once, before Textual takes its input over (`probe_terminal`, from
`EdgeAssistApp.run`): textual-image queries the terminal when it is first imported, and the answer
would be lost once Textual reads the keys. Where it was not asked (under Pilot and in the
snapshots), under NO_COLOR, without a terminal, or when the probe fails, a picture is a labelled
placeholder instead: `[picture: photo.jpg, 800×600]`. The placeholder always works; the thumbnail
is an extra.

Reading a kept picture and scaling it down is Pillow's work, done in a thread worker; the widgets
hear the result as a posted message.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from textual import events, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Static

from edgeassist.errors import EdgeAssistError
from edgeassist.images import Picture, read_image, thumbnail

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

    from edgeassist.chat import Shown

THUMB_BOX = (480, 240)
"""The largest thumbnail handed to the drawer, in pixels (the CSS keeps it `THUMB_ROWS` lines high)."""
THUMB_ROWS = 6
"""Lines a thumbnail takes in the conversation."""

_drawer: Callable[..., Widget] | None = None
"""textual-image's widget class for this terminal: called with a PIL image (None: placeholders)."""
_kind = "placeholder"


def drawer_kind() -> str:
    """How pictures are drawn in this process: sixel, kitty, halfcell, or placeholder."""
    return _kind


def probe_terminal() -> str:
    """Ask the terminal how it draws pictures (textual-image's probe), once, before Textual takes its input.

    Only for a real terminal on both stdin and stdout, with colour; anything else, or a probe that
    fails, keeps the placeholder. Returns `drawer_kind()`.
    """
    global _drawer, _kind
    if _drawer is not None or os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return _kind
    stdin, stdout = sys.__stdin__, sys.__stdout__
    if stdin is None or stdout is None or not (stdin.isatty() and stdout.isatty()):
        return _kind
    # Its warnings (a terminal that does not say its cell size) would be left on the screen under the app.
    quiet = logging.getLogger("textual_image")  # (its modules' loggers take their level from it)
    was = quiet.level
    quiet.setLevel(logging.CRITICAL + 1)
    try:
        from textual_image import renderable
        from textual_image.widget import Image
    except Exception:  # noqa: BLE001 - a terminal that answers oddly must not stop the app: placeholders then
        return _kind
    finally:
        quiet.setLevel(was)
    kinds = {renderable.SixelImage: "sixel", renderable.TGPImage: "kitty", renderable.HalfcellImage: "halfcell"}
    kind = kinds.get(renderable.Image)
    if kind is not None:  # (unicode shading would be no picture at all: the placeholder says more)
        _drawer, _kind = Image, kind
    return _kind


def use_halfcells() -> None:
    """Draw thumbnails in coloured half blocks, without asking the terminal anything (for tests).

    Only where stdout is no terminal: importing textual-image then asks nothing.
    """
    global _drawer, _kind
    stdout = sys.__stdout__
    if stdout is not None and stdout.isatty():
        raise RuntimeError("use_halfcells() would make textual-image query the terminal")
    from textual_image.widget import HalfcellImage

    _drawer, _kind = HalfcellImage, "halfcell"


def use_placeholders() -> None:
    """Show every picture as its placeholder (the state before `probe_terminal`)."""
    global _drawer, _kind
    _drawer, _kind = None, "placeholder"


def size_text(width: int, height: int) -> str:
    """`800×600`."""
    return f"{width}×{height}"


def placeholder(name: str, size: tuple[int, int] | None) -> str:
    """`[picture: photo.jpg, 800×600]` (without the size while it is not known)."""
    return f"[picture: {name}, {size_text(*size)}]" if size else f"[picture: {name}]"


def _name(text: str) -> str:
    """A picture's name as shown: the file name, without its folders; control characters as `?`."""
    base = Path(text).name or text
    return "".join("?" if ord(c) < 32 or ord(c) == 127 else c for c in base)


class PictureView(Vertical):
    """One picture of a message: its thumbnail where the terminal draws one, else its placeholder.

    `source` is the picture itself (one just sent) or its kept file (a chat reopened); the file is
    read in a thread worker, for its size and its thumbnail. None: a picture whose file is gone.
    """

    DEFAULT_CSS = f"""
    PictureView {{
        width: auto;
        height: auto;
    }}
    PictureView > .thumb {{
        width: auto;
        height: {THUMB_ROWS};
    }}
    PictureView > .picture-caption {{
        width: auto;
    }}
    """

    @dataclass
    class Read(Message):
        """The worker has read the picture: its size, and its thumbnail when one is drawn."""

        size: tuple[int, int] | None
        """Width and height as shown (None: it could not be read)."""
        image: PILImage | None
        """The thumbnail, scaled down; None without a drawer or when it could not be read."""

    def __init__(self, name: str, source: Picture | Path | None, size: tuple[int, int] | None = None) -> None:
        """Show the picture called `name`, from `source`; `size` when already known."""
        super().__init__(classes="picture")
        self.picture_name = _name(name)
        self.source = source
        self.size_shown = size
        self.drawn = False
        """Whether a thumbnail is on screen (else the placeholder says what the picture is)."""
        self.caption = Static(placeholder(self.picture_name, size), classes="picture-caption", markup=False)

    @property
    def label(self) -> str:
        """What the caption says now."""
        return str(self.caption.render())

    def compose(self) -> ComposeResult:
        """The caption (a thumbnail goes above it once drawn)."""
        yield self.caption

    def on_mount(self) -> None:
        """Read the picture when its size or its thumbnail is still to come."""
        if self.source is not None and (self.size_shown is None or _drawer is not None):
            self._read(self.source, _drawer is not None)

    @work(thread=True, group="picture", exit_on_error=False)
    def _read(self, source: Picture | Path, draw: bool) -> None:
        """Read and scale the picture (blocking, in a thread worker); the result is posted back."""
        try:
            picture = source if isinstance(source, Picture) else read_image(source)
            image = thumbnail(picture, THUMB_BOX) if draw else None
        except EdgeAssistError:
            self.post_message(self.Read(None, None))
            return
        self.post_message(self.Read((picture.width, picture.height), image))

    async def on_picture_view_read(self, message: PictureView.Read) -> None:
        """Show the size, and the thumbnail above the caption."""
        message.stop()
        if message.size is not None:
            self.size_shown = message.size
        if message.image is not None and _drawer is not None and not self.drawn:
            self.drawn = True
            await self.mount(_drawer(message.image, classes="thumb"), before=self.caption)
            self.caption.update(f"{self.picture_name} {size_text(*message.size)}" if message.size else "")
        elif message.size is not None:
            self.caption.update(placeholder(self.picture_name, message.size))


class MessagePictures(Horizontal):
    """The pictures of one user message, in a row above its text."""

    DEFAULT_CSS = """
    MessagePictures {
        height: auto;
    }
    """

    def __init__(self, views: Sequence[PictureView]) -> None:
        """A row of `views`."""
        super().__init__(*views, classes="message-pictures")
        self.views = list(views)

    @classmethod
    def sent(cls, pictures: Sequence[Picture]) -> MessagePictures:
        """The row of pictures just sent (known: their size is shown at once)."""
        return cls([PictureView(p.name, p, (p.width, p.height)) for p in pictures])

    @classmethod
    def kept(cls, shown: Sequence[Shown]) -> MessagePictures:
        """The row of a saved message's pictures, read from the files the store keeps."""
        return cls([PictureView(s.name, s.ref.path) for s in shown])

    @property
    def labels(self) -> list[str]:
        """What each picture's caption says."""
        return [v.label for v in self.views]


class AttachmentChip(Static):
    """One picture waiting to be sent: `🖼 photo.jpg 800×600  ×`; a click takes it off."""

    DEFAULT_CSS = """
    AttachmentChip {
        width: auto;
    }
    """

    @dataclass
    class Removed(Message):
        """The chip was clicked: the picture is not to be sent."""

        sha256: str
        """Which picture."""

    def __init__(self, picture: Picture) -> None:
        """The chip for `picture`."""
        text = f"🖼 {_name(picture.name)} {size_text(picture.width, picture.height)}  ×"
        super().__init__(text, classes="attachment", markup=False)
        self.picture = picture
        self.tooltip = "click to remove (or Backspace in the empty message box)"

    def on_click(self, event: events.Click) -> None:
        """Take the picture off."""
        event.stop()
        self.post_message(self.Removed(self.picture.sha256))


class Attachments(Horizontal):
    """The pictures attached to the next message, in a row above the input; hidden while there are none."""

    DEFAULT_CSS = """
    Attachments {
        height: auto;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        """An empty row."""
        super().__init__(id=id)
        self.display = False

    async def show(self, pictures: Sequence[Picture]) -> None:
        """Show `pictures` (none: the row hides)."""
        await self.remove_children()
        if pictures:
            await self.mount_all([AttachmentChip(p) for p in pictures])
        self.display = bool(pictures)

    @property
    def labels(self) -> list[str]:
        """What each chip says."""
        return [str(chip.render()) for chip in self.query(AttachmentChip)]
