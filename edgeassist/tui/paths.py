"""Paths typed or pasted in the chat app: completing a picture's path, and telling a pasted file from text.

No Textual here: the message box and the attach dialog both use these, and they read the file
system (a folder's names, one `stat`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp"})
"""File names the completion offers: the formats edgeassist reads."""
PICTURE_SUFFIXES = IMAGE_SUFFIXES | {".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif", ".jxl", ".ico"}
"""File names a paste attaches: the formats read, and those refused with a line that says to convert them."""


def complete_path(value: str, cwd: Path | None = None) -> str | None:
    """The first completion of the path `value`: `value` with the rest of a name, or None.

    Pictures come first, then folders (with a trailing `/`); other files are not offered. `~`
    stands for the home folder and stays as typed; hidden names only when `value` starts one;
    a relative path is taken from `cwd` (default: the working folder). Reads the folder: not on the
    event loop.
    """
    if not value or any(c in value for c in "\r\n\0"):
        return None
    head, slash, prefix = value.rpartition("/")
    if not slash:
        if value.startswith("~"):
            return "~/" if value == "~" else None  # (`~user` forms are not completed)
        folder = cwd or Path.cwd()
    else:
        folder = Path(os.path.expanduser(head + "/"))
        if not folder.is_absolute():
            folder = (cwd or Path.cwd()) / folder
    pictures: list[str] = []
    folders: list[str] = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                name = entry.name
                if not name.startswith(prefix) or (name.startswith(".") and not prefix.startswith(".")):
                    continue
                try:
                    if entry.is_dir():
                        folders.append(name)
                    elif entry.is_file() and Path(name).suffix.lower() in IMAGE_SUFFIXES and name != prefix:
                        pictures.append(name)
                except OSError:
                    continue  # (a link to nowhere, a file that went)
    except OSError:
        return None
    if pictures:
        return value + min(pictures)[len(prefix) :]
    if folders:
        return value + min(folders)[len(prefix) :] + "/"
    return None


def pasted_path(text: str) -> Path | None:
    """The picture file a paste names, or None when the paste is anything else (to be inserted as text).

    Exactly one path to an existing file with a picture's extension, as terminals paste a dragged
    file: plain, in quotes, with backslash-escaped spaces, or a `file://` URI. (One `stat`: cheap.)
    """
    text = text.strip()
    if not text or any(c in text for c in "\r\n\0"):
        return None
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    candidates = [text]
    if text.startswith("file://"):
        parts = urlsplit(text)
        if parts.netloc not in ("", "localhost"):
            return None
        candidates = [unquote(parts.path)]
    elif "\\" in text:
        candidates.append(re.sub(r"\\(.)", r"\1", text))  # `/my\ photo.jpg`
    for candidate in candidates:
        path = Path(os.path.expanduser(candidate))
        if path.suffix.lower() not in PICTURE_SUFFIXES:
            continue
        try:
            if path.is_file():
                return path
        except OSError:
            continue
    return None
