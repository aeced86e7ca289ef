"""The one download path: every file edgeassist fetches (GGUFs, whisper models, voices) goes through here.

A pull asks the hub for the file's size and sha256 (HEAD on `/resolve/`, the same call
`hf_hub_download` makes), streams the bytes into the staged `.part` with huggingface-hub's
`http_get` (its progress bar, its retries, its Range-resume), checks size and sha256, and only
then moves the file into place with `os.replace`. So anything `resolve` finds is complete.

There is one such path (`_download`), for every file edgeassist fetches: `pull` sends a GGUF
through it, `pull_files` a speech model's set of files (`edgeassist.speech.models`), which then
appears whole: a whisper model's folder is gathered in staging and renamed into place, a voice's
`.onnx.json` lands before the `.onnx` that makes it visible.

Why not `hf_hub_download(local_dir=...)`: in huggingface-hub 2.x it downloads into a
process-unique temporary file that is deleted when the download fails, so an interrupted
multi-gigabyte pull starts from zero every time (`http_get` only resumes within one call, after a
dropped connection); it also writes `.cache/huggingface/` metadata next to the models and, with
`hf_xet` installed, takes the Xet path instead of plain HTTP. Keeping our own staged file is what
makes "resume on the next pull" true, and nothing is duplicated into the huggingface-hub cache.

The hub is the authority at pull time: the size and sha256 checked are the ones the hub reports
for the file now. The catalog's sizes are for display (`edgeassist models`) and RAM estimates.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from edgeassist.errors import DownloadError, EdgeAssistError
from edgeassist.hub.confinement import _entry_inside, delete_in_models, in_models, models_subdir
from edgeassist.hub.remote import _Job, _Remote, _transfer
from edgeassist.hub.staging import _etag_tag, _prune_empty
from edgeassist.units import format_bytes

if TYPE_CHECKING:
    from filelock import BaseFileLock

_HASH_CHUNK = 8 * 1024 * 1024


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _part_path(staging: Path, remote: _Remote) -> Path:
    # Named after the hub's ETag: a part staged for another version of the file is never resumed into.
    return staging / f"{remote.file.name}.{_etag_tag(remote.etag)}.part"


def _download(
    remotes: list[_Remote],
    job: _Job,
    *,
    staging: Path,
    lock_path: Path,
    place: Callable[[list[tuple[_Remote, Path]]], None],
    stale: list[Path] | None = None,
    fresh: bool = False,
    present: Callable[[], bool] | None = None,
) -> bool:
    """Fetch `remotes` into `.part` files in `staging`, check each, then `place` them; all under one lock.

    Each part resumes where an earlier pull stopped (unless `fresh`), is appended to with Range
    requests, and must match the size and (where the hub gives one) sha256 the hub reported; any
    mismatch deletes every part of the set. `place` gets the verified parts while the lock is still
    held. `stale`: parts of the same files staged elsewhere, deleted once the lock is held.
    `present`: checked once the lock is held; when true (another pull finished it meanwhile)
    nothing is fetched and False is returned.
    """
    models_dir = job.models_dir
    # filelock opens its file with O_TRUNC, following links: a link there would truncate its target.
    if lock_path.is_symlink():
        delete_in_models(lock_path, models_dir)

    import filelock

    lock = filelock.FileLock(str(lock_path), timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise DownloadError(f"another pull of {job.display} is already running") from None
    except OSError as e:
        raise DownloadError(f"cannot write to {staging}: {e.strerror or e}") from None
    try:
        if present is not None and present():
            return False
        parts = [_part_path(staging, r) for r in remotes]
        _drop_stale(remotes, parts, staging, stale or [], models_dir, fresh=fresh)
        have = [p.stat().st_size if p.is_file() else 0 for p in parts]
        sizes = [r.size for r in remotes]
        total = sum(s for s in sizes if s is not None) if None not in sizes else None
        needed = sum(s - h for s, h in zip(sizes, have, strict=True) if s is not None)
        free = shutil.disk_usage(staging).free
        if free < needed:
            raise DownloadError(
                f"not enough disk space for {job.display}: it needs {format_bytes(needed)} more, "
                f"{format_bytes(free)} is free in {models_dir}"
            )
        size_text = format_bytes(total) if total is not None else "unknown size"
        if sum(have):
            pct = f" ({100 * sum(have) / total:.0f}%)" if total else ""
            job.say(f"resuming {job.display} from {format_bytes(sum(have))}{pct} of {size_text}")
        else:
            job.say(f"pulling {job.display} ({size_text}) from {remotes[0].file.repo} on {job.hub}")
        for remote, part, already in zip(remotes, parts, have, strict=True):
            _transfer(remote, part, already, job)
            _verify(remote, part, job, drop=parts, what=job.display if len(remotes) == 1 else None)
        place(list(zip(remotes, parts, strict=True)))
    finally:
        _unlock(lock, lock_path, models_dir)
        _prune_empty(staging, models_dir)
    return True


def _drop_stale(
    remotes: list[_Remote], parts: list[Path], staging: Path, stale: list[Path], models_dir: Path, *, fresh: bool
) -> None:
    """Delete parts that cannot be resumed into: other versions, links, anything but a plain file, too long."""
    for remote, part in zip(remotes, parts, strict=True):
        # <name>.<16-character ETag tag>.part: this file's parts, whatever hub version they were for.
        mine = staging.glob(f"{glob.escape(remote.file.name)}.{'?' * 16}.part")
        for old in [*mine, *stale]:
            if (old != part or fresh) and _entry_inside(old, models_dir):
                delete_in_models(old, models_dir)
        # Bytes are appended to the part: a link there (or anything but a plain file) starts over.
        if part.is_symlink() or (part.exists() and not part.is_file()):
            delete_in_models(part, models_dir)
        if remote.size is not None and part.is_file() and part.stat().st_size > remote.size:
            delete_in_models(part, models_dir)


def _verify(remote: _Remote, part: Path, job: _Job, *, drop: list[Path], what: str | None) -> None:
    """Check a finished part's size and sha256 against the hub's; on a mismatch delete `drop` and raise."""
    what = what or f"{job.display} ({remote.file.name})"
    got = part.stat().st_size
    if remote.size is not None and got != remote.size:
        _delete_all(drop, job.models_dir)
        raise DownloadError(
            f"size mismatch for {what}: expected {remote.size} bytes, got {got}; nothing was kept, run the pull again"
        )
    expected = remote.sha256
    if expected is None:
        job.say(f"the hub gave no sha256 for {remote.file.name}; only its size was checked")
        return
    job.say(f"verifying the sha256 of {remote.file.name}")
    actual = _sha256_of(part)
    if actual != expected:
        _delete_all(drop, job.models_dir)
        raise DownloadError(
            f"checksum mismatch for {what}: expected sha256 {expected}, got {actual}; "
            "nothing was kept, run the pull again"
        )


def _delete_all(paths: list[Path], models_dir: Path) -> None:
    for path in paths:
        delete_in_models(path, models_dir)


def _unlock(lock: BaseFileLock, lock_path: Path, models_dir: Path) -> None:
    """Release a pull's lock and remove its file.

    The file goes first, while the lock is still held: removed after release, it could be the
    file a second pull has just locked, and a third would then lock a new one beside it.
    """
    try:
        delete_in_models(lock_path, models_dir)
        deleted = True
    except EdgeAssistError:  # a platform that cannot delete an open file: after release, then
        deleted = False
    lock.release()
    if not deleted:
        delete_in_models(lock_path, models_dir)


def _place_files(staged: list[tuple[_Remote, Path]], target: Path, job: _Job) -> None:
    """Move verified parts beside `target`, in order (`target`, the last, is what makes the set visible)."""
    models_dir = job.models_dir
    folder = models_subdir(models_dir, *target.parent.relative_to(models_dir).parts)
    for remote, part in staged:
        final = in_models(folder / remote.file.name, models_dir, "write")
        try:
            os.replace(part, final)  # a link at `final` is replaced, not written through
        except OSError as e:
            raise DownloadError(f"cannot move {job.display} into place at {final}: {e.strerror or e}") from None


def _place_folder(staged: list[tuple[_Remote, Path]], target: Path, staging: Path, job: _Job) -> None:
    """Gather verified parts into one folder in `staging`, then rename it to `target`: it appears whole or not at all.

    Something already at `target` (an older copy, an incomplete one, a link) is first renamed into
    `staging` (a link is moved, not followed) and goes with it; put back if the rename fails.
    """
    models_dir = job.models_dir
    models_subdir(models_dir, *target.parent.relative_to(models_dir).parts)
    in_models(target, models_dir, "write")
    complete, replaced = staging / "complete", staging / "replaced"  # never a part's name (<name>.<tag>.part)
    for leftover in (complete, replaced):  # from a pull killed while placing
        delete_in_models(leftover, models_dir)
    try:
        models_subdir(models_dir, *complete.relative_to(models_dir).parts)
        for remote, part in staged:
            os.replace(part, complete / remote.file.name)
        had = os.path.lexists(target)
        if had:
            os.replace(target, replaced)
        try:
            os.replace(complete, target)
        except OSError:
            if had:
                os.replace(replaced, target)
            raise
    except OSError as e:
        raise DownloadError(f"cannot move {job.display} into place at {target}: {e.strerror or e}") from None
