"""Every bad setting or prompt is one line and exit code 2, whatever the source or the type.

The CLI runs as a real process for the bad-input corpus (exit code, exactly one line on stderr,
no traceback); the property tests feed every setting a value of the wrong type from every source.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import subprocess
import sys
import tempfile
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeassist.cli import build_parser, main, settings_flags
from edgeassist.cli.ask import read_prompt
from edgeassist.config import Section, Settings, load_settings
from edgeassist.engine.factory import generation_options
from edgeassist.errors import ConfigError, UsageError

# -- the CLI as a person runs it ------------------------------------------------------------------


def edgeassist(
    *args: str | bytes, env: Mapping[str, str | bytes] | None = None, stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    """Run `python -m edgeassist ARGS` in the test's isolated environment plus `env` (bytes: not UTF-8)."""
    extra = {k.encode(): v if isinstance(v, bytes) else v.encode() for k, v in (env or {}).items()}
    return subprocess.run(
        [sys.executable, "-m", "edgeassist", *args],
        input=stdin,
        capture_output=True,
        env={**os.environb, **extra},
        timeout=120,
    )


def one_line_error(r: subprocess.CompletedProcess[bytes], code: int = 2) -> str:
    """The single stderr line of a run that failed with `code`, checked to be just that."""
    err = r.stderr.decode("utf-8", "backslashreplace")
    assert "Traceback" not in err, err
    assert r.returncode == code, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("edgeassist: "), err
    return lines[0]


def config_file(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "user.toml"
    path.write_bytes(content)
    return path


# Each case: what the user did, the run, and what the one line must say (all exit 2).
FILE_CASES = [
    ("not UTF-8", b"[model]\nn_ctx = 2048  # caf\xe9\n", ["not UTF-8", "byte 0xe9", "line 2"]),
    ("TOML syntax error", b"[model]\nn_ctx = 2048\n[generation\n", ["not valid TOML", "line 3"]),
    ("NUL in the file", b"[model]\nname = 'a\x00b'\n", ["not valid TOML", "line 2"]),
    ("a list where a number goes", b"[model]\nn_ctx = [1, 2]\n", ["model.n_ctx = [1, 2]"]),
    ("a huge int", b"[model]\nn_ctx = 99999999999999999999\n", ["model.n_ctx = 99999999999999999999"]),
    ("an int past Python's digit limit", b"[model]\nn_ctx = " + b"9" * 5000 + b"\n", ["not valid TOML", "digits"]),
    ("nested too deeply", b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n", ["not valid TOML", "nested"]),
    ("nan", b"[generation]\ntemperature = nan\n", ["generation.temperature = nan", "finite"]),
    ("inf", b"[generation]\npresence_penalty = inf\n", ["generation.presence_penalty = inf", "finite"]),
    ("a bool where a number goes", b"[generation]\ntop_k = true\n", ["generation.top_k = True"]),
    ("a number where a bool goes", b"[generation]\nthink = 1\n", ["generation.think = 1"]),
    ("an empty model name", b"[model]\nname = ''\n", ["model.name = ''"]),
    ("a section that is not a table", b"model = 5\n", ["model = 5", "[model] table"]),
    ("a misspelt key", b"[model]\nnctx = 10\n", ["unknown key 'model.nctx'", "did you mean 'model.n_ctx'"]),
    # BaseSettings takes `_env_file=` as an option: from a file it must stay an unknown key, never read.
    ("pydantic-settings' own option", b'_env_file = "/etc/passwd"\n', ["unknown key '_env_file'"]),
]


@pytest.mark.parametrize(("what", "content", "needles"), FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_bad_config_file_is_one_line_naming_it(tmp_path: Path, what: str, content: bytes, needles: list[str]) -> None:
    path = config_file(tmp_path, content)
    line = one_line_error(edgeassist("ask", "--config", str(path), "hi"))
    assert str(path) in line
    for needle in needles:
        assert needle in line


def test_config_path_that_is_a_directory_or_missing(tmp_path: Path) -> None:
    line = one_line_error(edgeassist("ask", "--config", str(tmp_path), "hi"))
    assert str(tmp_path) in line and "is a directory" in line
    line = one_line_error(edgeassist("ask", "--config", str(tmp_path / "absent.toml"), "hi"))
    assert "absent.toml" in line and "no such file" in line


def test_user_config_toml_that_is_a_directory_is_reported_not_ignored(isolated_env: Path) -> None:
    (isolated_env / "config" / "edgeassist" / "config.toml").mkdir(parents=True)
    line = one_line_error(edgeassist("ask", "hi"))
    assert "config.toml" in line and "is a directory" in line


ENV_CASES: list[tuple[str, dict[str, str | bytes], list[str]]] = [
    ("section not JSON", {"EDGEASSIST_MODEL": "notjson"}, ["EDGEASSIST_MODEL", "'notjson'", "not JSON"]),
    ("section empty", {"EDGEASSIST_MODEL": ""}, ["EDGEASSIST_MODEL", "not JSON"]),
    ("section JSON not an object", {"EDGEASSIST_MODEL": "[1]"}, ["EDGEASSIST_MODEL", "not a JSON object"]),
    (
        "bad value in section JSON",
        {"EDGEASSIST_GENERATION": '{"temperature": "hot"}'},
        ["generation.temperature = 'hot'", "environment variable EDGEASSIST_GENERATION)"],
    ),
    (
        "out of range in section JSON",
        {"EDGEASSIST_MODEL": '{"n_ctx": -5}'},
        ["model.n_ctx = -5", "environment variable EDGEASSIST_MODEL)"],
    ),
    (
        "unknown section",
        {"EDGEASSIST_MODLE__N_CTX": "1"},
        ["unknown key 'modle.n_ctx'", "EDGEASSIST_MODLE__N_CTX", "did you mean 'model.n_ctx'"],
    ),
    ("unknown key", {"EDGEASSIST_MODEL__NCTX": "1"}, ["unknown key 'model.nctx'", "EDGEASSIST_MODEL__NCTX"]),
    ("single underscore", {"EDGEASSIST_MODEL_N_CTX": "1"}, ["unknown key 'model_n_ctx'", "EDGEASSIST_MODEL_N_CTX"]),
    ("too deep", {"EDGEASSIST_MODEL__N_CTX__X": "1"}, ["unknown key 'model.n_ctx.x'"]),
    (
        "system prompt not UTF-8",
        {"EDGEASSIST_GENERATION__SYSTEM_PROMPT": b"caf\xe9"},
        ["generation.system_prompt", "not valid UTF-8", "EDGEASSIST_GENERATION__SYSTEM_PROMPT"],
    ),
    ("nan", {"EDGEASSIST_GENERATION__TEMPERATURE": "nan"}, ["generation.temperature = 'nan'", "finite"]),
]


@pytest.mark.parametrize(("what", "env", "needles"), ENV_CASES, ids=[c[0] for c in ENV_CASES])
def test_bad_environment_variable_is_one_line_naming_it(
    what: str, env: dict[str, str | bytes], needles: list[str]
) -> None:
    line = one_line_error(edgeassist("ask", "hi", env=env))
    for needle in needles:
        assert needle in line


FLAG_CASES: list[tuple[list[str | bytes], list[str]]] = [
    (["--temperature", "-1"], ["generation.temperature = '-1'", "--temperature"]),
    (["--temperature", "nan"], ["generation.temperature = 'nan'", "finite", "--temperature"]),
    (["--temperature", "inf"], ["generation.temperature = 'inf'", "--temperature"]),
    (["--temperature", "warm"], ["generation.temperature = 'warm'", "--temperature"]),
    (["--max-tokens", "0"], ["generation.max_tokens = '0'", "--max-tokens"]),
    (["--seed", "junk"], ["generation.seed = 'junk'", "--seed"]),
    (["--n-ctx", "0"], ["model.n_ctx = '0'", "--n-ctx"]),
    (["--threads", "-3"], ["model.n_threads = '-3'", "--threads"]),
    (["--gpu-layers", "99999999999"], ["model.n_gpu_layers", "--gpu-layers"]),
    (["--model", ""], ["model.name = ''", "--model"]),
    (["--system", b"\xff"], ["generation.system_prompt", "not valid UTF-8", "--system"]),
]


@pytest.mark.parametrize(("flags", "needles"), FLAG_CASES, ids=[" ".join(str(a) for a in c[0]) for c in FLAG_CASES])
def test_bad_flag_is_checked_like_the_config_file(flags: list[str | bytes], needles: list[str]) -> None:
    line = one_line_error(edgeassist("ask", *flags, "hi"))
    for needle in needles:
        assert needle in line


def test_bench_flags_are_checked_like_the_config_file(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    line = one_line_error(edgeassist("bench", "--target-ms", "nan", "--compare", str(a), str(b)))
    assert "bench.target_ms = 'nan'" in line and "--target-ms" in line
    line = one_line_error(edgeassist("bench", "-r", "many", "--compare", str(a), str(b)))
    assert "bench.repetitions = 'many'" in line and "-r" in line


PROMPT_CASES: list[tuple[str, list[str | bytes], bytes, dict[str, str | bytes], list[str]]] = [
    ("argv not UTF-8", [b"caf\xe9"], b"", {}, ["argument", "not UTF-8", "0xe9"]),
    ("argv not UTF-8, saved chat", ["--chat", "c", b"\xff\xfe"], b"", {}, ["not UTF-8", "0xff"]),
    ("stdin not UTF-8", ["-"], b"caf\xe9?", {}, ["stdin", "not UTF-8", "0xe9"]),
    # A UTF-8 locale reads stdin strictly: the decoding itself fails.
    ("stdin not UTF-8, strict", ["-"], b"caf\xe9?", {"PYTHONIOENCODING": "utf-8:strict"}, ["stdin", "0xe9"]),
    ("NUL on stdin", ["-"], b"hello\x00world", {}, ["stdin", "NUL"]),
]


@pytest.mark.parametrize(("what", "args", "stdin", "env", "needles"), PROMPT_CASES, ids=[c[0] for c in PROMPT_CASES])
def test_bad_prompt_is_one_line_and_exit_2(
    isolated_env: Path,
    what: str,
    args: list[str | bytes],
    stdin: bytes,
    env: dict[str, str | bytes],
    needles: list[str],
) -> None:
    line = one_line_error(edgeassist("ask", *args, stdin=stdin, env=env))
    for needle in needles:
        assert needle in line
    assert not (isolated_env / "data" / "edgeassist" / "history.sqlite3").exists()  # nothing half-saved


# -- the rules, in process ------------------------------------------------------------------------


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_a_bom_at_the_start_of_the_file_is_fine(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path / "bom.toml", b"\xef\xbb\xbf[model]\nn_ctx = 2048\n")).model.n_ctx == 2048


def test_unreadable_file_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "user.toml", "[model]\n")
    real = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    with pytest.raises(ConfigError, match="cannot read .*user.toml: Permission denied$"):
        load_settings(path)


def test_a_fifo_is_refused_without_reading_it(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)  # reading it would block forever
    with pytest.raises(ConfigError, match="not a regular file"):
        load_settings(fifo)


def test_empty_value_leaves_an_optional_setting_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEASSIST_MODEL__N_THREADS", "")
    monkeypatch.setenv("EDGEASSIST_STORE__PATH", "")
    s = load_settings(write(tmp_path / "u.toml", '[hub]\nendpoint = ""\n[model]\nmodels_dir = ""\n'))
    assert s.model.n_threads is None and s.store.path is None and s.hub.endpoint is None
    assert s.model.models_dir is None  # not Path(""), which is the current directory


def test_env_key_beats_section_json_and_names_stay_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEASSIST_MODEL", '{"n_ctx": 300, "n_batch": 64}')
    monkeypatch.setenv("edgeassist_model__n_ctx", "512")
    s = load_settings()
    assert (s.model.n_ctx, s.model.n_batch) == (512, 64)


def test_variables_that_are_not_settings_keep_working(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeassist import synthetic

    monkeypatch.setenv(synthetic.CACHE_ENV, "/tmp/somewhere")
    assert load_settings().model.n_ctx == 4096


def test_common_flags_before_the_subcommand_are_kept() -> None:
    args = build_parser().parse_args(["--threads", "2", "ask", "--temperature", "0", "--n-ctx", "512", "hi"])
    s = load_settings(None, settings_flags(args))
    assert (s.model.n_threads, s.model.n_ctx, s.generation.temperature) == (2, 512, 0.0)


def test_ask_flags_reach_the_generation_options() -> None:
    args = build_parser().parse_args(
        ["ask", "--temperature", "0.25", "--max-tokens", "7", "--seed", "3", "--system", "Be brief.", "hi"]
    )
    s = load_settings(None, settings_flags(args))
    options = generation_options(s, think=args.think, max_tokens=args.max_tokens, temperature=args.temperature)
    assert (options.temperature, options.max_tokens, options.seed) == (0.25, 7, 3)
    assert s.generation.system_prompt == "Be brief."


@pytest.mark.parametrize("override", [{"max_tokens": 0}, {"temperature": math.nan}, {"seed": -1}])
def test_generation_overrides_are_checked_like_settings(override: dict[str, Any]) -> None:
    (key,) = override
    with pytest.raises(ConfigError, match=f"generation.{key} = "):
        generation_options(load_settings(), **override)


def test_cli_reports_flag_errors_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ask", "--temperature", "nan", "hi"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--temperature" in err


# -- properties -----------------------------------------------------------------------------------


def kind(annotation: Any) -> tuple[Any, bool]:
    """The base type of a settings field (`Literal` for a choice) and whether it is optional."""
    args = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,)
    base = next(a for a in args if a is not type(None))
    return base, type(None) in args


SECTIONS: dict[str, type[Section]] = {name: f.annotation for name, f in Settings.model_fields.items()}  # type: ignore[misc]
FIELDS = [
    (section, key, *kind(f.annotation)) for section, cls in SECTIONS.items() for key, f in cls.model_fields.items()
]
BOOL_WORDS = {"0", "1", "f", "false", "n", "no", "off", "on", "t", "true", "y", "yes"}

no_surrogates = st.characters(codec="utf-8")
lone_surrogate = st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF)  # an undecodable byte (PEP 383)


def _json_of(kind: type, text: str) -> bool:
    """Whether `text` is JSON for a value of `kind` (list or dict)."""
    try:
        return isinstance(json.loads(text), kind)
    except (ValueError, RecursionError):
        return False


def wrong_text(base: Any, optional: bool, *, nul: bool = True, surrogates: bool = True) -> st.SearchStrategy[str]:
    """Text that is not a valid value for a field of type `base`, such as a flag can hold; `nul=False`
    for the environment (which cannot hold NUL), `surrogates=False` for a UTF-8 file."""
    chars = st.characters(codec="utf-8", exclude_characters="" if nul else "\x00")
    if get_origin(base) in (list, dict):  # a list or table as text is JSON: text that is not JSON of its kind
        return st.text(chars).filter(lambda s: not _json_of(get_origin(base), s))
    if base in (int, float):  # no digits: not a number, or nan/inf, which are not finite
        return st.text(chars).filter(lambda s: not any(c.isdigit() for c in s) and (bool(s.strip()) or not optional))
    if base is bool:
        return st.text(chars).filter(lambda s: not any(c.isdigit() for c in s) and s.strip().lower() not in BOOL_WORDS)
    if get_origin(base) is Literal:
        return st.text(chars).filter(lambda s: s not in get_args(base))
    if base is Path:
        bad: st.SearchStrategy[str] = st.just("~no-such-user-edgeassist/")
    else:
        bad = lone_surrogate if surrogates else st.nothing()
    if nul:
        bad |= st.just("\x00")
    return st.tuples(bad, st.text(chars)).map("".join)


def wrong_typed(base: Any, optional: bool) -> st.SearchStrategy[Any]:
    """A value of the wrong type for the field, as a TOML file or a JSON variable can hold it."""
    scalars = st.integers() | st.floats() | st.booleans() | st.text(no_surrogates)
    containers = st.lists(scalars, max_size=3) | st.dictionaries(st.from_regex(r"[a-z]{1,5}", fullmatch=True), scalars)
    if get_origin(base) is list:
        return (
            st.integers()
            | st.floats()
            | st.booleans()
            | st.dictionaries(st.from_regex(r"[a-z]{1,5}", fullmatch=True), scalars)
        )
    if get_origin(base) is dict:  # (a table of the wrong values is wrong too, but an empty one is fine)
        return st.integers() | st.floats() | st.booleans() | st.lists(scalars, max_size=3)
    if base is int:
        typed = st.booleans() | st.floats().filter(lambda f: not f.is_integer()) | st.integers(min_value=2**31)
    elif base is float:
        typed = st.booleans() | st.sampled_from([math.nan, math.inf, -math.inf]) | st.integers(min_value=2**1024)
    elif base is bool:
        typed = st.integers() | st.floats()
    else:  # text, a path or a choice
        typed = st.integers() | st.floats() | st.booleans()
    return typed | containers


def toml(value: Any) -> str:
    """`value` as a TOML literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return (
            '"'
            + "".join(
                "\\\\"
                if c == "\\"
                else '\\"'
                if c == '"'
                else f"\\u{ord(c):04x}"
                if ord(c) < 0x20 or c == "\x7f"
                else c
                for c in value
            )
            + '"'
        )
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    raise TypeError(value)


def assert_one_line_naming(e: pytest.ExceptionInfo[ConfigError], key: str, source: str) -> None:
    msg = str(e.value)
    assert len(msg.splitlines()) == 1 and msg.isprintable(), msg
    assert key in msg and source in msg, msg
    assert e.value.exit_code == 2


field = st.sampled_from(FIELDS)
PROPERTY = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


@PROPERTY
@given(data=st.data(), f=field)
def test_any_wrong_value_in_the_file_is_one_line_naming_key_and_file(data: st.DataObject, f: tuple[Any, ...]) -> None:
    section, key, base, optional = f
    dates = st.datetimes() | st.dates() | st.times()
    text = wrong_text(base, optional, surrogates=False)
    value = data.draw(wrong_typed(base, optional) | dates | text, label="value")
    with tempfile.TemporaryDirectory() as d:
        path = write(Path(d) / "user.toml", f"[{section}]\n{key} = {toml(value)}\n")
        with pytest.raises(ConfigError) as e:
            load_settings(path)
        assert_one_line_naming(e, f"{section}.{key}", str(path))


@PROPERTY
@given(data=st.data(), f=field)
def test_any_wrong_value_in_a_variable_is_one_line_naming_key_and_variable(
    data: st.DataObject, f: tuple[Any, ...]
) -> None:
    section, key, base, optional = f
    if data.draw(st.booleans(), label="as section JSON"):
        name = f"EDGEASSIST_{section.upper()}"
        value = data.draw(wrong_typed(base, optional) | wrong_text(base, optional), label="value")
        text = json.dumps({key: value})
    else:
        name = f"EDGEASSIST_{section.upper()}__{key.upper()}"
        text = data.draw(wrong_text(base, optional, nul=False), label="value")
    with mock.patch.dict(os.environ, {name: text}), pytest.raises(ConfigError) as e:
        load_settings()
    assert_one_line_naming(e, f"{section}.{key}", f"environment variable {name}")


@PROPERTY
@given(data=st.data(), f=field)
def test_any_wrong_value_in_a_flag_is_one_line_naming_key(data: st.DataObject, f: tuple[Any, ...]) -> None:
    section, key, base, optional = f
    text = data.draw(wrong_text(base, optional), label="value")  # flags arrive as text
    with pytest.raises(ConfigError) as e:
        load_settings(None, {section: {key: text}})
    assert_one_line_naming(e, f"{section}.{key}", "command-line flag")


@PROPERTY
@given(suffix=st.from_regex(r"[A-Za-z0-9_]{1,30}", fullmatch=True))
def test_any_unknown_variable_is_reported(suffix: str) -> None:
    parts = suffix.lower().split("__")
    known = parts[0] in SECTIONS and (
        len(parts) == 1 or (len(parts) == 2 and parts[1] in SECTIONS[parts[0]].model_fields)
    )
    name = f"EDGEASSIST_{suffix}"
    if known or name.upper() == "EDGEASSIST_CACHE_DIR":
        return
    with mock.patch.dict(os.environ, {name: "1"}), pytest.raises(ConfigError) as e:
        load_settings()
    assert_one_line_naming(e, "unknown key", f"environment variable {name}")


@PROPERTY
@given(text=st.text())
def test_any_prompt_is_clean_text_or_one_line(text: str) -> None:
    try:
        prompt = read_prompt(text)
    except UsageError as e:
        assert len(str(e).splitlines()) == 1 and e.exit_code == 2
    else:
        assert "\x00" not in prompt and prompt.encode("utf-8")
