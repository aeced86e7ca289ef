"""Model states kept on disk between processes: a chat's checkpoint, and a system prompt's.

A resumed chat (`ask --chat`, the chat app after a restart or a switch of chats) would read its
whole history again; with the state the previous turn left on disk it evaluates only what a
follow-up in the same process does. A state is only ever restored into a context exactly like
the one that saved it: the file carries a fingerprint (the model file's identity, the context
size, the chat template, llama.cpp's version and the context's settings) and the tokens it
holds, and the engine restores it only where the fingerprint is the same and those tokens begin
the new prompt.

A file is `MAGIC`, a 4-byte little-endian header length, the header (JSON: format version,
fingerprint, tokens, the state's length and CRC-32) and llama.cpp's sequence state. Files are
private (0600, in a 0700 folder), written whole to a temporary name and renamed, by one writer
thread so that a reply never waits for the disk, and the folder is kept under a size cap,
least recently used first out. The names are made here (a hash, never a user's text), and a
path from elsewhere is used only when it names a file of this folder.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import hashlib
import json
import os
import re
import struct
import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgeassist.errors import EdgeAssistError
from edgeassist.private import FILE_MODE, private_dir

MAGIC = b"EDGEASSIST-STATE"
VERSION = 1
SUFFIX = ".state"
_NAME = re.compile(r"(chat|prompt)-[0-9a-f]{16,64}\.state")
"""The names this folder holds: a chat's state (named by the store) or a system prompt's (named here)."""
_TMP = re.compile(r"\.(chat|prompt)-[0-9a-f]{16,64}\.state\.\d+\.\d+\.tmp")
"""A write in progress, or one a killed process left behind."""
_TMP_STALE_S = 3600.0
"""A temporary file this old is a killed write's: removed when the folder is next tidied."""
_HEADER_MAX = 4 << 20
"""The longest header read (its tokens: 4 MiB is a million-token context)."""
_SAMPLES = 8
"""Pieces of a model file hashed beside its start, so files that share a header (random weights) differ."""
_SAMPLE_BYTES = 64 << 10
_HEAD_BYTES = 1 << 20
FLUSH_TIMEOUT_S = 30.0
"""Longest wait for the writer at exit (a state is tens of MB: well under a second on any disk)."""


class StateFileError(EdgeAssistError):
    """A state file that cannot be used: truncated, corrupt, or not one of ours."""


def model_identity(path: Path) -> str:
    """The model file's size and a hash of its start and of pieces spread through it (reads about 1.5 MB)."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with path.open("rb") as f:
        h.update(f.read(_HEAD_BYTES))
        for i in range(1, _SAMPLES + 1):
            f.seek(max(0, size * i // (_SAMPLES + 1) - _SAMPLE_BYTES // 2))
            h.update(f.read(_SAMPLE_BYTES))
    return f"{size}:{h.hexdigest()[:32]}"


def fingerprint_difference(saved: Mapping[str, object], current: Mapping[str, object]) -> str | None:
    """What makes a saved fingerprint differ from the current one, in words; None when they agree."""
    if saved == current:
        return None
    for key, words in (
        ("model", "another model file"),
        ("n_ctx", "another context size"),
        ("template", "another chat template"),
        ("llama", "another llama.cpp"),
    ):
        if saved.get(key) != current.get(key):
            return words
    return "other model settings"


@dataclass(frozen=True)
class StateHeader:
    """What a state file says of itself: the context it came from and the tokens it holds."""

    fingerprint: dict[str, object]
    tokens: list[int]
    size: int
    crc: int


@dataclass
class _Job:
    fingerprint: dict[str, object]
    tokens: list[int]
    data: ctypes.Array[ctypes.c_uint8]


class StateFiles:
    """One folder of saved states, with its size cap and its writer thread."""

    def __init__(self, folder: Path, cap_bytes: int, *, create: bool = True) -> None:
        """Keep states in `folder` (made 0700 on the first write), at most `cap_bytes` of them.

        `create=False`: the folder exists already and is never made again (a temporary one, once
        removed, stays removed: a write that comes late fails instead).
        """
        self.folder = Path(folder)
        self.cap_bytes = cap_bytes
        self.create = create
        self._cond = threading.Condition()
        self._jobs: dict[Path, _Job] = {}  # the newest state per file: an older one still queued is dropped
        self._busy = False
        self._thread: threading.Thread | None = None
        self.failures: list[str] = []
        """Writes that failed (a full disk, a folder made read-only), as one line each."""

    # -- names ---------------------------------------------------------------------------------

    def prompt_path(self, fingerprint: Mapping[str, object], tokens: Sequence[int]) -> Path:
        """Where the state after exactly `tokens` (a system prompt) lives for this fingerprint."""
        h = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode())
        h.update(struct.pack(f"<{len(tokens)}i", *tokens))
        return self.folder / f"prompt-{h.hexdigest()[:32]}{SUFFIX}"

    def owns(self, path: Path) -> bool:
        """Whether `path` names a state file of this folder (nothing else is read or written)."""
        path = Path(path)
        return path.parent == self.folder and _NAME.fullmatch(path.name) is not None

    # -- reading -------------------------------------------------------------------------------

    def header(self, path: Path) -> StateHeader | None:
        """The header of the state at `path`; None when there is none. Raises StateFileError."""
        try:
            with path.open("rb") as f:
                return self._read_header(f)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StateFileError(f"cannot read {path.name}: {e.strerror or e}") from None

    def _read_header(self, f: object) -> StateHeader:
        read = f.read  # type: ignore[attr-defined]
        head = read(len(MAGIC) + 4)
        if len(head) < len(MAGIC) + 4 or not head.startswith(MAGIC):
            raise StateFileError("not a saved model state")
        (n,) = struct.unpack("<I", head[len(MAGIC) :])
        if n > _HEADER_MAX:
            raise StateFileError("its header is corrupt")
        raw = read(n)
        try:
            meta = json.loads(raw)
            if meta["version"] != VERSION:
                raise StateFileError(f"it is of format {meta['version']}, not {VERSION}")
            tokens = meta["tokens"]
            if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
                raise ValueError("tokens")
            return StateHeader(dict(meta["fingerprint"]), tokens, int(meta["size"]), int(meta["crc"]))
        except (ValueError, KeyError, TypeError) as e:
            raise StateFileError(f"its header is corrupt ({type(e).__name__})") from None

    def read(self, path: Path) -> tuple[StateHeader, ctypes.Array[ctypes.c_uint8]]:
        """The header and the state of `path`, checked whole (length and CRC). Raises StateFileError."""
        try:
            with path.open("rb") as f:
                header = self._read_header(f)
                data = bytearray(header.size)
                got = f.readinto(data)
                extra = f.read(1)
        except FileNotFoundError:
            raise StateFileError("it was removed meanwhile") from None
        except OSError as e:
            raise StateFileError(f"cannot read {path.name}: {e.strerror or e}") from None
        if got != header.size or extra:
            raise StateFileError("it is truncated" if got != header.size else "it has trailing bytes")
        if zlib.crc32(data) != header.crc:
            raise StateFileError("it is corrupt (checksum mismatch)")
        try:
            os.utime(path)  # used now: the last to be evicted
        except OSError:
            pass  # (a read-only folder still serves its states)
        return header, (ctypes.c_uint8 * header.size).from_buffer(data)

    def remove(self, path: Path) -> None:
        """Delete the state at `path` if it is ours (an unusable one, so it is not tried again)."""
        if self.owns(path):
            try:
                path.unlink()
            except OSError:
                pass  # (gone already, or a read-only folder: it will be refused again, with a note)

    # -- writing -------------------------------------------------------------------------------

    def save(
        self, path: Path, fingerprint: Mapping[str, object], tokens: Sequence[int], data: ctypes.Array[ctypes.c_uint8]
    ) -> None:
        """Queue the state for `path`; the writer thread writes it. `data` must not change afterwards."""
        if self.cap_bytes <= 0 or not self.owns(path):
            return
        with self._cond:
            self._jobs[path] = _Job(dict(fingerprint), list(tokens), data)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="edgeassist-states", daemon=True)
                self._thread.start()
                atexit.register(self.flush)
            self._cond.notify_all()

    def flush(self, timeout: float = FLUSH_TIMEOUT_S) -> bool:
        """Wait until every queued state is written; False if `timeout` ran out first."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._jobs and not self._busy, timeout)

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._jobs))
                path, job = next(iter(self._jobs.items()))
                del self._jobs[path]
                self._busy = True
            try:
                self.write(path, job.fingerprint, job.tokens, job.data)
            except OSError as e:
                self.failures.append(f"could not save the model state {path.name}: {e.strerror or e}")
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def write(
        self, path: Path, fingerprint: Mapping[str, object], tokens: Sequence[int], data: ctypes.Array[ctypes.c_uint8]
    ) -> None:
        """Write one state now, whole or not at all, then keep the folder under its cap. Raises OSError."""
        view = memoryview(data).cast("B")
        header = json.dumps(
            {
                "version": VERSION,
                "fingerprint": dict(fingerprint),
                "tokens": list(tokens),
                "size": len(view),
                "crc": zlib.crc32(view),
            },
            separators=(",", ":"),
        ).encode()
        if self.create:
            private_dir(self.folder)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(MAGIC + struct.pack("<I", len(header)) + header)
                f.write(view)
            os.replace(tmp, path)
        except BaseException:
            try:
                tmp.unlink()
            except OSError:
                pass  # (never created past the open, or already gone)
            raise
        self.evict(keep=path)

    def evict(self, keep: Path | None = None) -> None:
        """Delete the least recently used states until the folder is under its cap (`keep` goes last)."""
        entries = []
        try:
            names = os.listdir(self.folder)
        except OSError:
            return
        now = time.time()
        for name in names:
            if _TMP.fullmatch(name) is not None:
                with contextlib.suppress(OSError):
                    if now - os.stat(self.folder / name).st_mtime > _TMP_STALE_S:
                        os.unlink(self.folder / name)
                continue
            if _NAME.fullmatch(name) is None:
                continue
            try:
                st = os.stat(self.folder / name)
            except OSError:
                continue  # (removed meanwhile by another process)
            entries.append((self.folder / name == keep, st.st_mtime, st.st_size, name))
        total = sum(e[2] for e in entries)
        for _, _, size, name in sorted(entries):
            if total <= self.cap_bytes:
                break
            try:
                os.unlink(self.folder / name)
            except OSError:
                continue
            total -= size

    def usage(self) -> int:
        """Bytes the folder's states take."""
        try:
            names = os.listdir(self.folder)
        except OSError:
            return 0
        total = 0
        for name in names:
            if _NAME.fullmatch(name) is not None:
                try:
                    total += os.stat(self.folder / name).st_size
                except OSError:
                    continue
        return total
