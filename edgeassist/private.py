"""Private folders and files: what edgeassist keeps about a person is readable by that person alone.

The data dir is 0700 and the chat history (with SQLite's `-wal`, `-shm` and `-journal` files)
is 0600, whatever the umask. Nothing is created wider and narrowed afterwards: folders and files
are made with the private mode from the start (the umask can only remove bits from it), then set
to exactly that mode, so a umask that removes the owner's own bits cannot lock the user out.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

DIR_MODE = 0o700
"""Folders edgeassist keeps personal data in: the user alone may list, read and enter them."""
FILE_MODE = 0o600
"""Files with personal data: the user alone may read and write them."""
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")
"""Files SQLite keeps beside a database; they hold the same text as the database itself."""


def private_dir(path: Path, *, tighten: bool = True) -> Path:
    """Create `path` and any missing parents as 0700; with `tighten`, an existing `path` is set to 0700 too.

    `tighten=False` is for a folder the user chose (a custom `store.path`): edgeassist must not
    change the mode of, say, `~/Documents`, but folders it creates there are still private.
    Raises OSError, like `os.makedirs`.
    """
    path = Path(path)
    missing: list[Path] = []
    for p in (path, *path.parents):
        if p.exists():
            break
        missing.append(p)
    for p in reversed(missing):
        try:
            os.mkdir(p, DIR_MODE)
        except FileExistsError:
            continue  # another process made it first; judged below like any existing folder
        _set_mode(p, DIR_MODE)
    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path))
    if tighten and stat.S_IMODE(st.st_mode) != DIR_MODE:
        os.chmod(path, DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Create `path` empty as 0600 if it is missing, else set it to 0600; the folder must exist. Raises OSError."""
    path = Path(path)
    try:
        # O_EXCL: never open someone else's file (or follow a link) when we mean to create one.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
    except FileExistsError:
        _tighten_file(path)
    else:
        try:
            if stat.S_IMODE(os.fstat(fd).st_mode) != FILE_MODE:
                os.fchmod(fd, FILE_MODE)  # the umask took away the owner's own bits
        finally:
            os.close(fd)
    return path


def private_database(path: Path) -> Path:
    """Make the SQLite file at `path` private before SQLite opens it: 0600, as are its side files. Raises OSError.

    SQLite creates `-wal`, `-shm` and `-journal` with the database file's own mode, so a 0600
    database keeps new side files private; side files left by an older version are tightened here.
    """
    private_file(path)
    for suffix in SQLITE_SIDE_FILES:
        try:
            _tighten_file(path.with_name(path.name + suffix))
        except FileNotFoundError:
            continue  # absent, or removed by another process closing the database just now
    return path


def _tighten_file(path: Path) -> None:
    """Set an existing file to 0600; a folder or other non-file is refused rather than changed."""
    st = os.stat(path)
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if not stat.S_ISREG(st.st_mode):
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    if stat.S_IMODE(st.st_mode) != FILE_MODE:
        os.chmod(path, FILE_MODE)


def _set_mode(path: Path, mode: int) -> None:
    if stat.S_IMODE(os.stat(path).st_mode) != mode:
        os.chmod(path, mode)
