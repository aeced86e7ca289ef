"""Settings: sources in order of strength, and errors that name the key and where it came from."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeassist.cli import main
from edgeassist.config import REPO_CONFIG, load_settings, render_config_toml
from edgeassist.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_repo_config_toml_documents_every_key_with_its_default() -> None:
    assert REPO_CONFIG.read_text() == render_config_toml(), "config.toml is stale: run scripts/gen_config_toml.py"
    s = load_settings()
    assert s.model.name == "qwen3.5-0.8b"
    assert s.model.n_ctx == 4096
    assert s.bench.target_ms == 50.0


def test_sources_in_order_flags_env_user_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user = write(tmp_path / "user.toml", "[model]\nn_ctx = 2048\nn_batch = 64\n[generation]\nmax_tokens = 10\n")
    s = load_settings(user)
    assert (s.model.n_ctx, s.model.n_batch, s.generation.max_tokens) == (2048, 64, 10)

    monkeypatch.setenv("EDGEASSIST_MODEL__N_CTX", "8192")
    s = load_settings(user)
    assert s.model.n_ctx == 8192  # environment beats the user's file
    assert s.model.n_batch == 64  # which still supplies what the environment leaves alone

    s = load_settings(user, {"model": {"n_ctx": 1024}})
    assert s.model.n_ctx == 1024  # flags beat everything


def test_user_config_dir_is_read_without_flag(isolated_env: Path) -> None:
    write(isolated_env / "config" / "edgeassist" / "config.toml", '[model]\nname = "qwen3.5-2b:q8_0"\n')
    assert load_settings().model.name == "qwen3.5-2b:q8_0"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[model]\nn_ctx = "lots"\n', "model.n_ctx = 'lots'"),
        ("[model]\nnctx = 10\n", "unknown key 'model.nctx'"),
        ("[modle]\nname = 'x'\n", "unknown key 'modle'"),
        ("[bench]\ntarget_ms = -5\n", "bench.target_ms"),
    ],
)
def test_bad_value_in_file_names_key_and_file(tmp_path: Path, text: str, expected: str) -> None:
    user = write(tmp_path / "user.toml", text)
    with pytest.raises(ConfigError) as e:
        load_settings(user)
    msg = str(e.value)
    assert expected in msg
    assert str(user) in msg
    assert "\n" not in msg


def test_bad_env_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEASSIST_GENERATION__MAX_TOKENS", "many")
    with pytest.raises(ConfigError, match="generation.max_tokens.*EDGEASSIST_GENERATION__MAX_TOKENS"):
        load_settings()


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path / "broken.toml", "[model\nname=1"))
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(tmp_path / "absent.toml")


def test_cli_bad_config_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    user = write(tmp_path / "user.toml", "[model]\nn_ctx = 'big'\n")
    assert main(["ask", "--config", str(user), "hello"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.n_ctx" in err and str(user) in err
    assert "Traceback" not in err


def test_the_chat_apps_flags_work_without_naming_the_command() -> None:
    from edgeassist.cli import parse_args

    assert (parse_args(["--new"]).command, parse_args(["--new"]).new) == ("chat", True)
    assert parse_args(["--chat", "trip"]).chat == "trip"
    assert parse_args([]).command == "chat"
    assert parse_args(["ask", "hi"]).command == "ask"
    assert parse_args(["--config", "my.toml", "ask", "hi"]).command == "ask"  # common flags before a command
    with pytest.raises(SystemExit):
        parse_args(["--no-such-flag"])
