"""Nothing outside the models folder is ever written or deleted, whatever name reaches the disk.

Issue 9, defect 1 (`rm` deleting outside the models folder) and the `pull repo/../../x.gguf`
traceback of defect 7. Every test lays out `base/models` (the models folder) with files around it
(`base/outside`, and `base` itself) and checks that everything outside the models folder is byte
for byte what it was. The probes from the issue run the CLI as a subprocess, as a user would; the
rest of the class (links placed inside the folder, staging and lock files, odd names) runs in-process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fakehub import FakeHub, sha256_file
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edgeassist import hub
from edgeassist.errors import EdgeAssistError, UsageError
from edgeassist.speech import models as speech

REPO = "unsloth/Qwen3.5-0.8B-GGUF"
FILE = "Qwen3.5-0.8B-Q4_K_M.gguf"
NAME = "qwen3.5-0.8b"
NO_SUCH_USER = "~edgeassist-no-such-user"


# -- helpers ----------------------------------------------------------------------------------------------


def touch(path: Path, data: bytes = b"keep me") -> Path:
    """A small file (and its folders)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def link(path: Path, target: Path) -> Path:
    """A symlink at `path` pointing to `target` (relative, as a user's `ln -s` would often make it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(os.path.relpath(target, path.parent))
    return path


def tree(folder: Path, *, skip: Path | None = None) -> dict[str, str | bytes]:
    """Everything under `folder` (links not followed): path -> bytes, `dir`, or `-> target`."""
    found: dict[str, str | bytes] = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            if skip is not None and (path == skip or skip in path.parents):
                continue
            key = path.relative_to(folder).as_posix()
            if path.is_symlink():
                found[key] = f"-> {os.readlink(path)}"
            elif path.is_dir():
                found[key] = "dir"
            else:
                found[key] = path.read_bytes()
    return found


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """A folder holding the models folder (`models/`) and a folder beside it (`outside/`)."""
    (tmp_path / "models").mkdir()
    (tmp_path / "outside").mkdir()
    return tmp_path


def run_cli(base: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`edgeassist ARGS` as a separate process, in `base`, with the models folder `base/models`."""
    env = {**os.environ, "EDGEASSIST_MODEL__MODELS_DIR": str(base / "models"), "PYTHONIOENCODING": "utf-8"}
    return subprocess.run(
        [sys.executable, "-m", "edgeassist", *args], cwd=base, env=env, capture_output=True, text=True, check=False
    )


def assert_one_line(code: int, err: str, expected: int) -> None:
    """The documented exit code and one line on stderr, no traceback."""
    assert "Traceback" not in err, err
    assert code == expected, err
    assert err.startswith("edgeassist: ") and err.count("\n") == 1, err


# -- the probes, through the CLI as a subprocess ---------------------------------------------------


def _voice_absolute(base: Path) -> list[str]:
    touch(base / "outside" / "notes.onnx")
    touch(base / "outside" / "notes.onnx.json")
    return ["rm", "-y", f"voice:{base / 'outside' / 'notes'}"]


def _voice_dotdot(base: Path) -> list[str]:
    (base / "models" / "voices").mkdir()
    touch(base / "x.onnx")  # models/voices/../../x.onnx
    touch(base / "x.onnx.json")
    return ["rm", "-y", "voice:../../x"]


def _whisper_dotdot(base: Path) -> list[str]:
    # models/whisper/.. is the models folder itself: with these two files in it, it looked like a
    # whisper model, and all of it (the GGUF too) was deleted.
    models = base / "models"
    touch(models / FILE)
    touch(models / "model.bin")
    touch(models / "config.json")
    (models / "whisper").mkdir()
    return ["rm", "-y", "whisper:.."]


def _whisper_absolute(base: Path) -> list[str]:
    touch(base / "outside" / "w" / "model.bin")
    touch(base / "outside" / "w" / "config.json")
    return ["rm", "-y", f"whisper:{base / 'outside' / 'w'}"]


def _voices_folder_is_a_link_out(base: Path) -> list[str]:
    touch(base / "outside" / "x.onnx")
    touch(base / "outside" / "x.onnx.json")
    link(base / "models" / "voices", base / "outside")
    return ["rm", "-y", "voice:x"]


def _pull_repo_dotdot(base: Path) -> list[str]:
    return ["pull", "repo/../../x.gguf"]


def _pull_whisper_dotdot(base: Path) -> list[str]:
    # Used to make models/.downloads/whisper-..--..--outside--w before the hub refused the name.
    return ["pull", "whisper:../../outside/w"]


@pytest.mark.parametrize(
    "setup",
    [
        _voice_absolute,
        _voice_dotdot,
        _whisper_dotdot,
        _whisper_absolute,
        _voices_folder_is_a_link_out,
        _pull_repo_dotdot,
        _pull_whisper_dotdot,
    ],
)
def test_cli_probes_exit_2_in_one_line_and_touch_nothing(base: Path, setup: Callable[[Path], list[str]]) -> None:
    args = setup(base)
    before = tree(base)
    result = run_cli(base, *args)
    assert_one_line(result.returncode, result.stderr, 2)
    assert result.stdout == ""
    assert tree(base) == before


def test_cli_models_lists_past_a_dangling_link(base: Path) -> None:
    link(base / "models" / "gone.gguf", base / "outside" / "gone.gguf")
    touch(base / "models" / "Mine-Q8_0.gguf")
    result = run_cli(base, "models")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert "Mine-Q8_0.gguf" in result.stdout and "gone.gguf" not in result.stdout


# -- the rest of the class, in-process ---------------------------------------------------------------------


@pytest.fixture
def cli(base: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., int]:
    """Run `edgeassist ARGS` in-process in `base` (models folder `base/models`); returns the exit code."""
    from edgeassist.cli import main

    monkeypatch.setenv("EDGEASSIST_MODEL__MODELS_DIR", str(base / "models"))
    monkeypatch.chdir(base)
    capsys.readouterr()
    return lambda *args: main(list(args))


def _long(n: int) -> str:
    return "a" * n


BAD_NAMES: list[tuple[str, list[str], Callable[[Path], None] | None, int]] = [
    # (id, argv, setup, exit code)
    ("whisper-dotdot-path", ["rm", "-y", "whisper:../../outside/w"], None, 2),
    ("whisper-three-parts", ["rm", "-y", "whisper:a/b/c"], None, 2),
    ("whisper-repo-dotdot", ["rm", "-y", "whisper:a/.."], None, 2),
    ("voice-newline", ["rm", "-y", "voice:a\nb"], None, 2),
    ("voice-nul", ["rm", "-y", "voice:a\0b"], None, 2),
    ("voice-backslash", ["rm", "-y", "voice:..\\..\\x"], None, 2),
    ("voice-hidden", ["rm", "-y", "voice:.x"], None, 2),
    ("voice-bidi", ["rm", "-y", "voice:x\u202egpj"], None, 2),
    ("voice-long", ["rm", "-y", f"voice:{_long(300)}"], None, 2),
    ("gguf-long", ["rm", "-y", _long(300)], None, 2),
    ("gguf-long-path", ["rm", "-y", f"sub/{_long(300)}.gguf"], None, 2),
    ("gguf-not-utf8", ["rm", "-y", "\udcff.gguf"], None, 2),
    ("gguf-nul", ["rm", "-y", "x\0.gguf"], None, 2),
    ("gguf-unknown-home", ["rm", "-y", f"{NO_SUCH_USER}/x.gguf"], None, 3),
    ("pull-repo-file-dotdot", ["pull", "owner/repo/../x.gguf"], None, 2),
    ("pull-repo-dashes", ["pull", "a--b/c/x.gguf"], None, 2),
    ("pull-hidden-file", ["pull", "owner/repo/.x.gguf"], None, 2),
    ("pull-long-file", ["pull", f"owner/repo/{_long(230)}.gguf"], None, 2),
    ("pull-whisper-dotdot", ["pull", "whisper:.."], None, 2),
    ("pull-whisper-absolute", ["pull", "whisper:/etc"], None, 2),
    ("pull-voice-dotdot", ["pull", "voice:../x"], None, 2),
    ("pull-voice-dot-part", ["pull", "voice:en_US-..-medium"], None, 3),
    ("models-unknown-home", ["models", "--model", f"{NO_SUCH_USER}/x.gguf"], None, 0),
]


@pytest.mark.parametrize(("argv", "setup", "code"), [c[1:] for c in BAD_NAMES], ids=[c[0] for c in BAD_NAMES])
def test_bad_names_are_one_line_and_touch_nothing(
    base: Path,
    cli: Callable[..., int],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    setup: Callable[[Path], None] | None,
    code: int,
) -> None:
    (base / "models" / "voices").mkdir()
    (base / "models" / "whisper").mkdir()
    touch(base / "outside" / "w" / "model.bin")
    touch(base / "outside" / "w" / "config.json")
    touch(base / "x.onnx")
    touch(base / "x.onnx.json")
    before = tree(base)
    got = cli(*argv)
    err = capsys.readouterr().err
    if code == 0:
        assert got == 0 and "Traceback" not in err
    else:
        assert_one_line(got, err, code)
    assert tree(base) == before


# -- links placed in the models folder: removed themselves, never followed out ----------------------------


def test_rm_of_a_linked_gguf_removes_the_link_not_the_file(base: Path, cli: Callable[..., int]) -> None:
    target = touch(base / "outside" / "real.gguf")
    model = link(base / "models" / "mine.gguf", target)
    assert hub.files_to_remove("mine.gguf", base / "models") == [model]
    assert cli("rm", "-y", "mine.gguf") == 0
    assert not model.is_symlink() and target.read_bytes() == b"keep me"


def test_rm_of_a_linked_whisper_folder_removes_the_link(base: Path, cli: Callable[..., int]) -> None:
    outside = base / "outside" / "w"
    touch(outside / "model.bin")
    touch(outside / "config.json")
    linked = link(base / "models" / "whisper" / "w", outside)
    before = tree(base / "outside")
    assert cli("rm", "-y", "whisper:w") == 0  # used to crash: rmtree refuses a link
    assert not linked.is_symlink() and tree(base / "outside") == before


def test_rm_refuses_to_go_through_a_linked_speech_folder(
    base: Path, cli: Callable[..., int], capsys: pytest.CaptureFixture[str]
) -> None:
    touch(base / "outside" / "w" / "model.bin")
    touch(base / "outside" / "w" / "config.json")
    link(base / "models" / "whisper", base / "outside")
    before = tree(base)
    got = cli("rm", "-y", "whisper:w")
    assert_one_line(got, capsys.readouterr().err, 2)
    assert tree(base) == before


def test_rm_leaves_a_staging_area_that_leads_outside_alone(base: Path, cli: Callable[..., int]) -> None:
    staged = base / "outside" / "dl" / "unsloth--Qwen3.5-0.8B-GGUF"
    touch(staged / f"{FILE}.abcdef0123456789.part")
    touch(staged / f"{FILE}.lock")
    link(base / "models" / hub.STAGING_DIR, base / "outside" / "dl")
    model = touch(base / "models" / FILE)
    before = tree(base / "outside")
    assert hub.files_to_remove(NAME, base / "models") == [model]
    assert cli("rm", "-y", NAME) == 0
    assert not model.exists() and tree(base / "outside") == before


def test_rm_of_a_path_outside_is_refused(
    base: Path, cli: Callable[..., int], capsys: pytest.CaptureFixture[str]
) -> None:
    touch(base / "outside" / "x.gguf")
    before = tree(base)
    got = cli("rm", "-y", "outside/x.gguf")
    err = capsys.readouterr().err
    assert_one_line(got, err, 2)
    assert "outside the models folder" in err and tree(base) == before


def test_delete_in_models_never_follows_a_link(base: Path) -> None:
    models = base / "models"
    outside = base / "outside"
    touch(outside / "a" / "keep.bin")
    touch(outside / "b.bin")
    # A real folder holding links out: the folder and its links go, what they point to stays.
    folder = models / "whisper" / "w"
    touch(folder / "model.bin")
    link(folder / "escape", outside / "a")
    link(folder / "file", outside / "b.bin")
    before = tree(outside)
    assert hub.delete_in_models(folder, models)
    assert not folder.exists() and tree(outside) == before
    # Through a linked folder, or the models folder itself, or `..`: refused, nothing deleted.
    link(models / "sub", outside)
    for path in (models / "sub" / "b.bin", models / "whisper" / "..", models, base / "outside"):
        with pytest.raises(UsageError, match="outside the models folder"):
            hub.delete_in_models(path, models)
    assert tree(outside) == before
    assert hub.delete_in_models(models / "sub", models) and not (models / "sub").is_symlink()
    assert tree(outside) == before
    # only_if_empty keeps a folder that holds something, and never removes a file.
    touch(models / "x" / "y.bin")
    assert not hub.delete_in_models(models / "x", models, only_if_empty=True)
    assert not hub.delete_in_models(models / "x" / "y.bin", models, only_if_empty=True)
    assert (models / "x" / "y.bin").exists()
    assert not hub.delete_in_models(models / "nothing", models)


# -- resolve: names joined onto the models folder do not leave it ------------------------------------------


def test_resolve_does_not_join_an_escaping_name_onto_the_models_folder(
    base: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgeassist.errors import ModelNotFoundError

    models = base / "models"
    touch(base / "outside" / "x.gguf")
    touch(base / "x.onnx")
    touch(base / "x.onnx.json")
    touch(base / "outside" / "w" / "model.bin")
    touch(base / "outside" / "w" / "config.json")
    (models / "voices").mkdir()
    (models / "whisper").mkdir()
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    # Relative to the current folder these are nothing; joined onto models/ they reached outside it.
    with pytest.raises(ModelNotFoundError, match="no model file"):
        hub.resolve("../outside/x.gguf", models, fallback=False)
    with pytest.raises(ModelNotFoundError, match="no such voice file"):
        speech.resolve_voice("../../x", models, fallback=False)
    with pytest.raises(ModelNotFoundError, match="no such folder"):
        speech.resolve_whisper("../../outside/w", models, fallback=False)
    # A path the user names is still loaded from wherever it is (README: `--model` takes any GGUF).
    assert hub.resolve(str(base / "outside" / "x.gguf"), models, fallback=False).path == base / "outside" / "x.gguf"
    assert speech.resolve_whisper(str(base / "outside" / "w"), models).source == "path"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text())
@example(name="..")
@example(name="../../outside/x")
@example(name="/etc/passwd")
@example(name="a" * 300)
@example(name="\udcff")
@example(name="a\0b")
@example(name="..\\x")
@example(name="whisper/..")
def test_any_name_stays_inside_or_is_refused(base: Path, name: str) -> None:
    models = base / "models"
    root = os.path.realpath(models)
    for kind in ("whisper", "voice"):
        try:
            path = speech.pulled_path(kind, name, models)  # type: ignore[arg-type]
        except UsageError as e:
            assert "\n" not in str(e)
            continue
        real = os.path.realpath(path)
        assert real.startswith(root + os.sep) and Path(real).parent.parent == Path(root)
    for call in (
        lambda: hub.files_to_remove(name, models),
        lambda: speech.speech_files_to_remove(f"voice:{name}", models),
        lambda: speech.speech_files_to_remove(f"whisper:{name}", models),
        lambda: hub.resolve(name, models, fallback=False),
    ):
        try:
            call()
        except EdgeAssistError as e:  # anything else would be a traceback
            assert "\n" not in str(e)


# -- pull: never written through a link out of the models folder -------------------------------------------


@pytest.fixture
def fake_hub(gguf: Path, online: None) -> Iterator[FakeHub]:
    """A running fake hub serving the GGUF as the 0.8B catalog file."""
    with FakeHub() as fh:
        fh.add(REPO, FILE, gguf)
        yield fh


def test_pull_refuses_a_staging_area_that_leads_outside(fake_hub: FakeHub, base: Path) -> None:
    link(base / "models" / hub.STAGING_DIR, base / "outside")
    with pytest.raises(UsageError, match="outside the models folder"):
        hub.pull(NAME, base / "models", endpoint=fake_hub.endpoint, progress=False)
    assert tree(base / "outside") == {} and not (base / "models" / FILE).exists()
    assert fake_hub.file_gets() == []


def test_pull_never_appends_through_a_planted_part(fake_hub: FakeHub, base: Path, gguf: Path) -> None:
    # The part pull would resume is a link to a file of the user's: the download used to be
    # appended to that file (and the pull then failed its checksum).
    victim = touch(base / "outside" / "notes.txt", b"my notes")
    staging = base / "models" / hub.STAGING_DIR / "unsloth--Qwen3.5-0.8B-GGUF"
    link(staging / f"{FILE}.{sha256_file(gguf)[:16]}.part", victim)
    path = hub.pull(NAME, base / "models", endpoint=fake_hub.endpoint, progress=False)
    assert sha256_file(path) == sha256_file(gguf)
    assert victim.read_bytes() == b"my notes" and tree(base / "outside") == {"notes.txt": b"my notes"}


def test_pull_never_truncates_through_a_planted_lock(fake_hub: FakeHub, base: Path, gguf: Path) -> None:
    victim = touch(base / "outside" / "notes.txt", b"my notes")
    link(base / "models" / hub.STAGING_DIR / "unsloth--Qwen3.5-0.8B-GGUF" / f"{FILE}.lock", victim)
    path = hub.pull(NAME, base / "models", endpoint=fake_hub.endpoint, progress=False)
    assert sha256_file(path) == sha256_file(gguf)
    assert victim.read_bytes() == b"my notes"


@pytest.fixture
def speech_hub(online: None, tmp_path: Path) -> Iterator[FakeHub]:
    """A fake hub serving tiny stand-ins for whisper tiny.en and the voice en_US-joe-medium."""
    files = tmp_path / "served"
    with FakeHub() as fh:
        for name in speech.WHISPER_FILES:
            fh.add(speech.WHISPER_REPOS["tiny.en"], name, touch(files / name, name.encode()))
        onnx, cfg = speech.voice_files("en_US-joe-medium")
        fh.add(speech.VOICES_REPO, onnx, touch(files / "voice.onnx", b"onnx"))
        fh.add(speech.VOICES_REPO, cfg, touch(files / "voice.onnx.json", b"{}"))
        yield fh


@pytest.mark.parametrize(("spec", "folder"), [("whisper:tiny.en", "whisper"), ("voice:en_US-joe-medium", "voices")])
def test_speech_pull_refuses_a_folder_that_leads_outside(
    speech_hub: FakeHub, base: Path, spec: str, folder: str
) -> None:
    link(base / "models" / folder, base / "outside")
    with pytest.raises(UsageError, match="outside the models folder"):
        speech.pull_speech_model(spec, base / "models", endpoint=speech_hub.endpoint, progress=False)
    assert tree(base / "outside") == {}


@pytest.mark.parametrize(
    ("spec", "planted"),
    [("whisper:tiny.en", "whisper-tiny.en/.cache"), ("voice:en_US-joe-medium", "voice-en_US-joe-medium/en")],
)
def test_speech_pull_never_writes_through_a_link_in_its_staging_folder(
    speech_hub: FakeHub, base: Path, spec: str, planted: str
) -> None:
    # huggingface-hub writes into the staging folder by path: its metadata under .cache/, a voice
    # under en/en_US/...; a link left there would take those writes outside the models folder.
    link(base / "models" / hub.STAGING_DIR / planted, base / "outside")
    got = speech.pull_speech_model(spec, base / "models", endpoint=speech_hub.endpoint, progress=False)
    assert got.source == "pulled" and base / "models" in got.path.parents
    assert tree(base / "outside") == {}


def test_forced_whisper_pull_replaces_a_link_without_following_it(speech_hub: FakeHub, base: Path) -> None:
    outside = base / "outside" / "w"
    touch(outside / "model.bin", b"mine")
    touch(outside / "config.json", b"{}")
    linked = link(base / "models" / "whisper" / "tiny.en", outside)
    before = tree(base / "outside")
    got = speech.pull_whisper("tiny.en", base / "models", endpoint=speech_hub.endpoint, progress=False, force=True)
    assert got.path == linked and not linked.is_symlink() and (linked / "model.bin").read_bytes() == b"model.bin"
    assert tree(base / "outside") == before
    assert not (base / "models" / hub.STAGING_DIR).exists() or tree(base / "models" / hub.STAGING_DIR) == {}


# -- the name checks themselves ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", ".hidden", "a/b", "a\\b", "a\0b", "a\nb", "a\x7fb", "x\u202egpj", "\udcff", "a" * 201],
)
def test_check_name_refuses(name: str) -> None:
    with pytest.raises(UsageError) as err:
        hub.check_name(name, "name")
    assert "\n" not in str(err.value) and err.value.exit_code == 2


@pytest.mark.parametrize("name", ["tiny.en", "en_US-lessac-medium", FILE, "modèle-Q4_K_M.gguf", "a" * 200])
def test_check_name_accepts(name: str) -> None:
    assert hub.check_name(name, "name") == name


def test_check_relative_and_repo_id() -> None:
    assert str(hub.check_relative("quants/Tiny-Q4_1.gguf", "file")) == "quants/Tiny-Q4_1.gguf"
    for bad in ("/abs/x.gguf", "a/../x.gguf", "./x.gguf", "a//x.gguf", "a\\x.gguf", "a/"):
        with pytest.raises(UsageError):
            hub.check_relative(bad, "file")
    for good in (REPO, "Systran/faster-whisper-tiny.en", "mobiuslabsgmbh/faster-whisper-large-v3-turbo", "a/b"):
        assert hub.check_repo_id(good) == good
    for bad in ("repo/..", "../x", "a/b/c", "a--b/c", "-a/b", "a/b.", "a/.b", "a", "ä/b", "a/" + "b" * 97):
        with pytest.raises(UsageError):
            hub.check_repo_id(bad)
