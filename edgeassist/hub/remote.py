"""Talking to the hub: what it says about a file, fetching the file's bytes, and one line for every failure.

The hub is asked for a file's size and sha256 with a HEAD on `/resolve/` (the same call
`hf_hub_download` makes); the bytes are streamed with huggingface-hub's `http_get` (its progress
bar, its retries, its Range-resume). What is done with them is `edgeassist.hub.download`'s.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edgeassist.errors import DownloadError
from edgeassist.hub.confinement import delete_in_models

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


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


def _is_missing_file(e: Exception) -> bool:
    from huggingface_hub.errors import RemoteEntryNotFoundError

    return isinstance(e, RemoteEntryNotFoundError)


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


__all__ = ["RemoteFile"]
