"""Pilot tests of pictures in the chat app: attach (the key's dialog, a pasted path), send, see, keep, reopen.

The model that sees is the tiny random-weight Qwen 3.5 with its random-weight projector, so a
picture goes the whole real way: read and checked, kept in the store's private folder, encoded by
llama.cpp's mtmd, its tokens counted in the reply's figures. The pictures are drawn with Pillow.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw
from test_tui import _isolated, ready, replies, send, wait_until  # noqa: F401 - _isolated: autouse
from textual import events
from textual.app import App, ComposeResult

from edgeassist.config import Settings, load_settings
from edgeassist.engine.base import Stats
from edgeassist.errors import ImageError
from edgeassist.images import read_image
from edgeassist.store import KeptImage
from edgeassist.tui import EdgeAssistApp, create_app, figures, pictures
from edgeassist.tui.attach import AttachScreen, PathInput
from edgeassist.tui.paths import complete_path, pasted_path
from edgeassist.tui.pictures import AttachmentChip, Attachments, MessagePictures, PictureView
from edgeassist.tui.widgets import Notices, PromptInput, StatusBar, UserMessage

WIDE = (160, 40)
"""Wide enough for every figure of a reply with a picture."""


def photo(path: Path, size: tuple[int, int] = (320, 240), colour: tuple[int, int, int] = (200, 40, 40)) -> Path:
    """A JPEG with a few shapes, written to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGB", size, colour)
    draw = ImageDraw.Draw(im)
    draw.ellipse((size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2), fill=(20, 200, 90))
    draw.rectangle((size[0] // 2, size[1] // 2, size[0] - 10, size[1] - 10), fill=(30, 30, 220))
    im.save(path, format="PNG" if path.suffix == ".png" else "JPEG", quality=90)
    return path


def settings_for(tmp_path: Path, model: Path) -> Settings:
    """Settings over the GGUF `model` (its projector found beside it), a temp history, a few greedy tokens."""
    return load_settings(
        None,
        {
            "store": {"path": tmp_path / "history.sqlite3"},
            "model": {
                "name": str(model),
                "n_ctx": 2048,
                "n_threads": 2,
                "starter_fallback": False,
                "models_dir": tmp_path / "models",
            },
            "generation": {"max_tokens": 4, "temperature": 0.0, "seed": 1, "think": False},
            "tools": {"enabled": False},
        },
    )


@pytest.fixture
def seeing(tiny_qwen35: Path, tiny_qwen35_vision: Path) -> Path:
    """The tiny Qwen 3.5, with its projector beside it (under the name the engine looks for)."""
    assert tiny_qwen35_vision.parent == tiny_qwen35.parent
    return tiny_qwen35


@pytest.fixture
def blind(tiny_qwen35: Path, tmp_path: Path) -> Path:
    """The tiny Qwen 3.5 alone in a folder: no projector beside it."""
    folder = tmp_path / "blind"
    folder.mkdir()
    target = folder / tiny_qwen35.name
    try:
        os.link(tiny_qwen35, target)
    except OSError:
        shutil.copyfile(tiny_qwen35, target)
    return target


def notices(app: EdgeAssistApp) -> list[str]:
    """The notices shown above the message box now."""
    return [n.message for n in app.query_one(Notices).live]


def pending(app: EdgeAssistApp) -> list[str]:
    """The chips of the pictures waiting to be sent."""
    row = app.query_one(Attachments)
    return row.labels if row.display else []


def shown_pictures(app: EdgeAssistApp) -> list[list[str]]:
    """What each message's row of pictures says, in order."""
    return [row.labels for row in app.query(MessagePictures)]


async def paste(pilot: Any, text: str) -> None:
    """Paste `text` into the message box, as a terminal's bracketed paste does (the app hands it to the focus)."""
    pilot.app.query_one(PromptInput).focus()
    pilot.app.post_message(events.Paste(text))
    await pilot.pause()


async def open_dialog(pilot: Any) -> PathInput:
    """Press the attach key; the dialog's path input."""
    await pilot.press("ctrl+f")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, AttachScreen), what="the attach dialog")
    return pilot.app.screen.query_one(PathInput)


async def complete(pilot: Any, field: PathInput, typed: str, wanted: str) -> None:
    """Type `typed` after what the field holds, wait for the completion `wanted`, take it with Tab."""
    await pilot.press(*typed)
    await wait_until(pilot, lambda: field._suggestion == wanted, what=f"the completion {wanted}")
    await pilot.press("tab")
    assert field.value == wanted


def refusal(path: Path) -> str:
    """The one line `read_image` refuses the file at `path` with."""
    with pytest.raises(ImageError) as refused:
        read_image(path)
    return str(refused.value)


# -- attach, send, keep, reopen (the real model) --------------------------------------------------------


async def test_a_picture_attached_with_the_key_is_sent_seen_kept_and_shown_again(tmp_path: Path, seeing: Path) -> None:
    folder = tmp_path / "pics"
    picture = photo(folder / "holiday photo.jpg")
    (folder / "holiday notes.txt").write_text("not a picture")
    (folder / "holidays").mkdir()  # a folder that the name begins too: the picture comes first
    sha = hashlib.sha256(picture.read_bytes()).hexdigest()
    settings = settings_for(tmp_path, seeing)

    app = create_app(settings, new_chat=True)
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        assert app.engine is not None and app.engine.capabilities.images
        field = await open_dialog(pilot)
        field.value = str(tmp_path) + "/p"
        await complete(pilot, field, "i", f"{tmp_path}/pics/")  # a folder, with its slash
        await complete(pilot, field, "ho", f"{folder}/holiday photo.jpg")  # the picture before the text file
        await pilot.press("enter")
        await wait_until(pilot, lambda: not isinstance(app.screen, AttachScreen), what="the dialog to close")
        assert pending(app) == ["🖼 holiday photo.jpg 320×240  ×"]

        await send(pilot, "What is in this picture?")
        await wait_until(pilot, lambda: replies(app) and replies(app)[-1].status != "streaming", what="the reply")
        assert replies(app)[-1].status in ("complete", "cut")  # (a random model: the token limit may end it)
        assert pending(app) == []  # the message took it
        assert shown_pictures(app) == [["[picture: holiday photo.jpg, 320×240]"]]
        message = app.query_one(UserMessage)
        assert message.pictures is not None and message.with_pictures() == [message.pictures, message]

        assert app.conversation is not None
        stats = app.conversation.turns[-1].stats
        assert stats is not None and stats.images == 1 and stats.image_tokens > 0 and stats.images_encoded == 1
        shown = str(app.query_one("#figures").render())
        assert f"img {stats.image_tokens} tok · " in shown and "ms/tok" in shown

        assert app.chat is not None
        saved = app.store.messages(app.chat.id)
        assert [(m.role, m.content) for m in saved][0] == ("user", "What is in this picture?")
        assert saved[0].images == (KeptImage(sha, "JPEG", "holiday photo.jpg"),)
        kept = app.store.images.folder / f"{sha}.jpg"
        assert hashlib.sha256(kept.read_bytes()).hexdigest() == sha  # content-addressed
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600
        assert stat.S_IMODE(kept.parent.stat().st_mode) == 0o700

        await pilot.press("ctrl+l")  # edit the message: its picture stays with it
        box = app.query_one(PromptInput)
        box.text = "What colours are in this picture?"
        await pilot.press("enter")
        await wait_until(pilot, lambda: len(app.store.messages(app.chat.id)) == 2 and not app.generating)
        assert shown_pictures(app) == [["[picture: holiday photo.jpg, 320×240]"]]  # shown once, above the new text
        edited = app.store.messages(app.chat.id)[0]
        assert edited.content == "What colours are in this picture?" and edited.images == saved[0].images
        name = app.chat.name
        await pilot.press("ctrl+q")
    app.store.close()

    picture.unlink()  # the chat shows its own copy, not the user's file
    again = create_app(settings, chat_name=name)
    async with again.run_test(size=WIDE) as pilot:
        await wait_until(
            pilot,
            lambda: shown_pictures(again) == [["[picture: holiday photo.jpg, 320×240]"]],
            what="the kept picture, read again",
        )
        assert again.query_one(UserMessage).text == "What colours are in this picture?"
        assert again.conversation is not None and [s.name for s in again.conversation.turns[0].images] == [
            "holiday photo.jpg"
        ]
        await ready(pilot)
        await send(pilot, "And the colours?")  # the picture is in the history the model reads
        await wait_until(pilot, lambda: len(replies(again)) == 2 and not again.generating, what="the second reply")
        later = again.conversation.turns[-1].stats
        assert later is not None and later.images == 1
        assert "img " in str(again.query_one(StatusBar).query_one("#figures").render())
        await pilot.press("ctrl+q")
    again.store.close()


async def test_pasting_a_pictures_path_attaches_it_and_other_pastes_are_text(tmp_path: Path, seeing: Path) -> None:
    first = photo(tmp_path / "drop here" / "cat picture.png", (64, 48))
    second = photo(tmp_path / "dog.jpg", (80, 60), colour=(10, 120, 200))
    app = create_app(settings_for(tmp_path, seeing), new_chat=True)
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        box = app.query_one(PromptInput)
        await paste(pilot, f"'{first}' ")  # as GNOME's terminal pastes a dropped file
        await wait_until(pilot, lambda: pending(app) == ["🖼 cat picture.png 64×48  ×"], what="the pasted picture")
        assert box.text == ""  # the path was not inserted
        await paste(pilot, second.as_uri())  # a file:// URI
        await wait_until(pilot, lambda: len(pending(app)) == 2, what="the second picture")
        assert pending(app)[1] == "🖼 dog.jpg 80×60  ×"

        await paste(pilot, str(tmp_path / "no such picture.jpg"))  # not a file: text, as before
        await paste(pilot, " and more")
        assert box.text == f"{tmp_path / 'no such picture.jpg'} and more"
        assert len(pending(app)) == 2

        box.clear()
        await pilot.press("backspace")  # in the empty box: the last picture comes off
        await wait_until(pilot, lambda: pending(app) == ["🖼 cat picture.png 64×48  ×"], what="the dog to go")
        await pilot.click(AttachmentChip)  # a click takes one off too
        await wait_until(pilot, lambda: pending(app) == [], what="the cat to go")
        assert not app.query_one(Attachments).display
        await pilot.press("ctrl+q")
    app.store.close()


async def test_a_bad_file_is_one_line_and_attaches_nothing(tmp_path: Path, seeing: Path) -> None:
    text = tmp_path / "notes.jpg"
    text.write_text("this is text, not a picture\n")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    whole = photo(tmp_path / "whole.jpg").read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(whole[: len(whole) // 2])
    app = create_app(settings_for(tmp_path, seeing), new_chat=True)
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        field = await open_dialog(pilot)
        dialog = app.screen
        assert isinstance(dialog, AttachScreen)
        for bad in (text, empty, truncated):
            field.value = str(bad)
            await pilot.press("enter")
            expected = refusal(bad)
            await wait_until(pilot, lambda e=expected: dialog.error == e, what=f"the error for {bad.name}")
            assert "\n" not in dialog.error
            assert app.screen is dialog  # the dialog stays, to fix the path
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, AttachScreen), what="the dialog to close")
        assert pending(app) == [] and app.attach.pending == []

        await paste(pilot, str(truncated))  # a pasted bad picture: its line as a notice
        expected = refusal(truncated)
        await wait_until(pilot, lambda: expected in notices(app), what="the notice")
        assert pending(app) == [] and app.query_one(PromptInput).text == ""
        await pilot.press("ctrl+q")
    app.store.close()


@pytest.mark.parametrize("which", ["starter", "tiny without projector"])
async def test_a_model_that_cannot_see_refuses_with_the_hint(
    which: str, tmp_path: Path, starter_gguf: Path, blind: Path
) -> None:
    from edgeassist.engine.factory import vision_refusal

    model = starter_gguf if which == "starter" else blind
    picture = photo(tmp_path / "photo.jpg")
    app = create_app(settings_for(tmp_path, model), new_chat=True)
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        assert app.engine is not None and not app.engine.capabilities.images
        hint = str(vision_refusal(app.engine, app.models.resolved))
        assert "cannot see images" in hint
        if which == "tiny without projector":
            assert "mmproj" in hint  # where a projector goes
        await pilot.press("ctrl+f")
        await wait_until(pilot, lambda: hint in notices(app), what="the refusal")
        assert not isinstance(app.screen, AttachScreen)
        await paste(pilot, str(picture))
        await pilot.pause()
        assert pending(app) == [] and app.attach.pending == []
        assert app.query_one(PromptInput).text == ""  # refused, not pasted as text
        await pilot.press("ctrl+q")
    app.store.close()


# -- the parts ---------------------------------------------------------------------------------------


def test_completion_offers_pictures_then_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    photo(tmp_path / "beach.jpg")
    photo(tmp_path / "Beach.PNG")
    (tmp_path / "beach.txt").write_text("text")
    (tmp_path / "beaches").mkdir()
    (tmp_path / ".hidden.jpg").write_bytes(b"")
    base = str(tmp_path)
    assert complete_path(base + "/bea") == base + "/beach.jpg"  # a picture before the folder; no text file
    assert complete_path(base + "/Bea") == base + "/Beach.PNG"  # case kept
    assert complete_path(base + "/beache") == base + "/beaches/"
    assert complete_path(base + "/beach.jpg") is None  # whole already
    assert complete_path(base + "/.h") == base + "/.hidden.jpg"
    assert complete_path(base + "/") in (base + "/beach.jpg", base + "/Beach.PNG")  # (hidden names left out)
    assert complete_path(base + "/zzz") is None
    assert complete_path(base + "/beach.jpg/x") is None  # not a folder
    assert complete_path("bea", cwd=tmp_path) == "beach.jpg"
    monkeypatch.setenv("HOME", base)
    assert complete_path("~") == "~/"
    assert complete_path("~/beac") == "~/beach.jpg"


def test_a_paste_is_a_picture_only_when_it_names_one_picture_file(tmp_path: Path) -> None:
    spaced = photo(tmp_path / "my photo.jpg")
    notes = tmp_path / "notes.txt"
    notes.write_text("text")
    heic = tmp_path / "phone.heic"
    heic.write_bytes(b"\0\0\0\x18ftypheic")
    assert pasted_path(str(spaced)) == spaced
    assert pasted_path(f"  '{spaced}'\n") == spaced
    assert pasted_path(f'"{spaced}"') == spaced
    assert pasted_path(str(spaced).replace(" ", "\\ ")) == spaced
    assert pasted_path(spaced.as_uri()) == spaced
    assert pasted_path(heic.as_uri()) == heic  # attached, to be refused with its line (convert it)
    assert pasted_path(str(notes)) is None
    assert pasted_path(f"{spaced}\n{spaced}") is None
    assert pasted_path(f"'{spaced}' '{spaced}'") is None
    assert pasted_path(str(tmp_path / "gone.jpg")) is None
    assert pasted_path("file://elsewhere" + str(spaced)) is None
    assert pasted_path("look at this") is None


def test_the_figures_of_a_reply_with_pictures() -> None:
    plain = Stats(token_times=[0.5, 0.6], ttft_s=0.5, context_used=300, n_ctx=2048)
    assert "img" not in figures.final_figures(plain, 50)
    seen = Stats(
        token_times=[0.5, 0.6], ttft_s=0.5, context_used=300, n_ctx=2048, images=1, image_tokens=64,
        images_encoded=1, image_encode_s=0.41,
    )  # fmt: skip
    line = figures.final_figures(seen, 50)
    assert "img 64 tok · 410 ms" in line
    again = Stats(images=2, image_tokens=128, images_encoded=0, n_ctx=2048)
    assert "img ×2 128 tok · cached" in figures.final_figures(again, 50)
    forms = figures.shorter_figures(line)
    assert "img" in forms[1] and all("img" not in f for f in forms[2:])  # after tok/s, before TTFT


class PictureApp(App[None]):
    """A message's pictures alone."""

    def __init__(self, row: MessagePictures) -> None:
        super().__init__()
        self.row = row

    def compose(self) -> ComposeResult:
        yield self.row


@pytest.mark.filterwarnings("ignore:Image.Image.getdata:DeprecationWarning")  # (textual-image's, on Pillow 12)
async def test_a_thumbnail_where_the_terminal_draws_and_a_placeholder_elsewhere(tmp_path: Path) -> None:
    picture = read_image(photo(tmp_path / "photo.jpg"))
    app = PictureApp(MessagePictures.sent([picture]))
    async with app.run_test() as pilot:
        await pilot.pause()
        view = app.query_one(PictureView)
        assert not view.drawn and view.label == "[picture: photo.jpg, 320×240]"
    stdout = __import__("sys").__stdout__
    if stdout is not None and stdout.isatty():
        pytest.skip("textual-image would query this terminal (run without -s)")
    pictures.use_halfcells()
    try:
        from textual_image.widget import HalfcellImage

        app = PictureApp(MessagePictures.sent([picture]))
        async with app.run_test() as pilot:
            view = app.query_one(PictureView)
            await wait_until(
                pilot, lambda: view.drawn and view.query_one(HalfcellImage).size.height, what="a thumbnail"
            )
            thumb = view.query_one(HalfcellImage)
            assert thumb.size.height == pictures.THUMB_ROWS and 0 < thumb.size.width < 40  # a few lines, its shape
            assert view.label == "photo.jpg 320×240"
    finally:
        pictures.use_placeholders()
