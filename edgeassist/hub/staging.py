"""The staging area: where downloads in progress keep their parts and locks, inside the models folder.

Layout of the models folder:

    models/Qwen3.5-0.8B-Q4_K_M.gguf                       complete, verified files only
    models/.downloads/<owner>--<repo>/<file>.<etag>.part  a pull in progress (resumable)
    models/.downloads/<owner>--<repo>/<file>.lock         held while a pull writes the part
    models/.downloads/whisper/<name>/<file>.<etag>.part   a speech model's files in progress (`pull_files`),
    models/.downloads/whisper/<name>.lock                 under one lock for the whole set
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
from pathlib import Path

from edgeassist.hub.confinement import _entry_inside, delete_in_models

STAGING_DIR = ".downloads"
"""Hidden folder under the models folder where pulls in progress are staged."""


def _staged_parts(models_dir: Path, filename: str) -> list[Path]:
    """Staged partial downloads of `filename` (any repo, any hub version).

    Only parts really inside the models folder: a staging area that leads elsewhere is not ours
    to resume, list or delete (a pull refuses to use it).
    """
    staging = models_dir / STAGING_DIR
    if not staging.is_dir():
        return []
    found = staging.glob(f"*/{glob.escape(filename)}.*.part")
    return sorted(p for p in found if p.is_file() and _entry_inside(p, models_dir))


def _lock_name(part: Path) -> str:
    # <file>.<etag16>.part -> <file>.lock
    return part.name.rsplit(".", 2)[0] + ".lock"


def _prune_empty(folder: Path, models_dir: Path) -> None:
    """Remove empty staging folders from `folder` up to (not including) the models folder."""
    current = folder
    while models_dir in current.parents:
        # A folder already gone (a speech pull deletes its own) is passed over, not a reason to stop.
        if os.path.lexists(current) and not delete_in_models(current, models_dir, only_if_empty=True):
            return
        current = current.parent


def _repo_folder(repo: str) -> str:
    # One folder name per repo id: ids are checked to hold no "--", so the mapping is one to one.
    return repo.replace("/", "--")


def _etag_tag(etag: str) -> str:
    """16 safe characters naming the hub version of a file in its staged part's name."""
    # The ETag is whatever the hub (or a configured endpoint) sent: only a plain alphanumeric one
    # may appear in a file name as it is; anything else is hashed.
    head = etag[:16]
    return head if re.fullmatch(r"[0-9A-Za-z]{16}", head) else hashlib.sha256(etag.encode()).hexdigest()[:16]


__all__ = ["STAGING_DIR"]
