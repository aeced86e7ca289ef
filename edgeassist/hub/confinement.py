"""Confinement: which names may reach the models folder, and the one way to make folders and delete there.

edgeassist writes and deletes only inside the models folder, for GGUFs and speech models alike
(`edgeassist.speech.models` uses the same functions). A name that is not a path (a catalog name,
`owner/repo/file.gguf`, `whisper:NAME`, `voice:NAME`) is checked by `check_name`, `check_relative`
or `check_repo_id` before it is joined onto the folder; every folder it creates comes from
`models_subdir`, and every deletion goes through `delete_in_models`. Both compare real paths: a
link placed in the models folder may be read through (that is how a user adds a model kept on
another disk), but nothing is written or deleted through it, and removing it removes the link, not
what it points to. `--model` may still name any GGUF file on disk for loading.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import unicodedata
from pathlib import Path, PurePosixPath

from edgeassist.errors import DownloadError, EdgeAssistError, UsageError

# A hub repo id part, as the hub accepts it: word characters, dots and dashes, starting and ending
# with a word character, at most 96 long ("--" and ".." are refused separately, as the hub does).
_REPO_ID_PART = re.compile(r"\w(?:[\w.-]{0,94}\w)?", re.ASCII)

MAX_NAME_BYTES = 200
"""Longest file or folder name edgeassist creates from a name: room for `.<etag>.part` within 255 bytes."""
_MAX_COMPONENT_BYTES = 255  # what common file systems allow for one name
_MAX_PATH_BYTES = 4096  # PATH_MAX on Linux


def _shown(text: str) -> str:
    """`text` quoted for a one-line message: control characters escaped, a long name cut short."""
    return repr(text if len(text) <= 80 else text[:77] + "...")


def _text_problem(text: str) -> str | None:
    """Why `text` cannot reach the file system at all, or None."""
    # Control, format (bidi overrides, zero-width) and line-separator characters: never in a model
    # name, and they would break or disguise the one-line messages that echo the name.
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in text):
        return "contains a control character"
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError:  # bytes in argv that were not UTF-8 arrive as lone surrogates
        return "is not valid UTF-8"
    if len(encoded) > _MAX_PATH_BYTES or any(len(p) > _MAX_COMPONENT_BYTES for p in re.split(rb"[/\\]", encoded)):
        return "is too long"
    return None


def _name_problem(name: str) -> str | None:
    """Why `name` is not safe as one file or folder name made in the models folder, or None."""
    if problem := _text_problem(name):
        return problem
    if not name:
        return "is empty"
    if "/" in name or "\\" in name:
        return "must be a name, not a path (no / or \\)"
    if name in (".", ".."):
        return "is not a name (. and .. lead out of the folder)"
    if name.startswith("."):
        return "may not start with a dot"
    if len(name.encode()) > MAX_NAME_BYTES:
        return f"is too long (at most {MAX_NAME_BYTES} bytes)"
    return None


def _relative_problem(path: str) -> str | None:
    """Why `path` is not a clean relative path of safe names (`sub/file.gguf`), or None."""
    if problem := _text_problem(path):
        return problem
    if path.startswith("/") or "\\" in path:
        return "must be a relative path with / between its parts"
    parts = path.split("/")
    if any(p in (".", "..") for p in parts):
        return "may not contain . or .. parts"
    for part in parts:
        if problem := _name_problem(part):
            return f"has a part that {problem}" if part else "has an empty part"
    return None


def check_text(name: str, what: str) -> str:
    """`name` unchanged if it can be used on the file system at all; else `UsageError`.

    Refused: control and format characters, text that is not valid UTF-8, and anything longer than
    a file system takes (a name part over 255 bytes, a whole over 4096).
    """
    if problem := _text_problem(name):
        raise UsageError(f"{what} {_shown(name)} {problem}")
    return name


def check_name(name: str, what: str) -> str:
    """`name` unchanged if it is safe as one file or folder name in the models folder; else `UsageError`.

    Besides what `check_text` refuses: empty, `.` and `..`, a leading dot (hidden; the staging folder
    is `.downloads`), `/` and `\\` (one part on every platform), and over MAX_NAME_BYTES bytes.
    """
    if problem := _name_problem(name):
        raise UsageError(f"{what} {_shown(name)} {problem}")
    return name


def check_relative(path: str, what: str) -> PurePosixPath:
    """`path` if it is a relative path whose every part passes `check_name`; else `UsageError`."""
    if problem := _relative_problem(path):
        raise UsageError(f"{what} {_shown(path)} {problem}")
    return PurePosixPath(path)


def check_repo_id(repo: str, what: str = "hub repo id") -> str:
    """`repo` if it is a well-formed hub repo id (`owner/name`); else `UsageError`."""
    parts = repo.split("/")
    if len(parts) != 2 or not all(_REPO_ID_PART.fullmatch(p) for p in parts) or "--" in repo or ".." in repo:
        raise UsageError(
            f"{what} {_shown(repo)} is not owner/name (letters, digits, '-', '_' and '.', without '--' or '..')"
        )
    return repo


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _within(path: Path, folder: Path) -> bool:
    """Whether `path` really is `folder` or inside it: real paths compared, every link followed."""
    real, top = _real(path), _real(folder)
    return real == top or top in real.parents


def _entry_inside(path: Path, models_dir: Path) -> bool:
    """Whether `path` is an entry of a folder that really is inside `models_dir` (the entry may be a link)."""
    return path.name not in ("", ".", "..") and _within(path.parent, models_dir)


def in_models(path: Path, models_dir: Path, action: str) -> Path:
    """`path` if edgeassist may `action` (write, delete) it: `_entry_inside` the models folder; else `UsageError`."""
    if not _entry_inside(path, models_dir):
        raise UsageError(f"refusing to {action} {path}: it is outside the models folder {models_dir}")
    return path


def models_subdir(models_dir: Path, *parts: str) -> Path:
    """The folder `models_dir/part/...`, made where missing; `UsageError` if any of it leads out of the models folder.

    The only way edgeassist makes folders in the models folder: a link placed there (to another
    disk, or planted) is never written through.
    """
    folder = models_dir
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        for part in parts:
            folder = in_models(folder / part, models_dir, "write to")
            if not folder.is_symlink():
                folder.mkdir(exist_ok=True)
            if not _within(folder, models_dir):
                raise UsageError(f"refusing to write to {folder}: it is outside the models folder {models_dir}")
            if not folder.is_dir():
                raise DownloadError(f"cannot make the folder {folder}: something else is in the way")
    except OSError as e:
        raise DownloadError(f"cannot make the folder {folder}: {e.strerror or e}") from None
    return folder


def delete_in_models(path: Path, models_dir: Path, *, only_if_empty: bool = False) -> bool:
    """Delete `path` from the models folder: every deletion edgeassist makes goes through here.

    `path` must pass `in_models` (else `UsageError`, and nothing is deleted). A link is removed
    itself, never what it points to; a real folder goes with everything in it (`shutil.rmtree`
    removes links inside without following them), or with `only_if_empty` only when it is empty.
    Returns whether something was deleted.
    """
    in_models(path, models_dir, "delete")
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    try:
        if stat.S_ISDIR(mode):
            if only_if_empty:
                try:
                    path.rmdir()
                except OSError:  # not empty: keep it
                    return False
            else:
                shutil.rmtree(path)
        elif only_if_empty:
            return False
        else:
            path.unlink(missing_ok=True)
    except OSError as e:
        raise EdgeAssistError(f"cannot delete {path}: {e.strerror or e}") from None
    return True


__all__ = [
    "MAX_NAME_BYTES",
    "check_name",
    "check_relative",
    "check_repo_id",
    "check_text",
    "delete_in_models",
    "in_models",
    "models_subdir",
]
