"""Pulling a catalog model from the chat app's palette: progress, Esc to stop (the partial kept), the switch, errors.

Against the local fake hub (tests/fakehub.py) through real huggingface-hub, in a real child
`edgeassist pull`, and the real llama.cpp loading what was pulled (the starter model's file, served
under the 0.8B catalog name).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakehub import FakeHub, sha256_file
from pilot import choose, wait_until
from textual.widgets import Log

from edgeassist.config import Settings, load_settings
from edgeassist.engine.log import LOG
from edgeassist.hub import ModelRow, list_models
from edgeassist.store import Store
from edgeassist.tui import EdgeAssistApp
from edgeassist.tui.logs import LogScreen
from edgeassist.tui.pulls import ChildPull, PullChanged, PullScreen, PullState, PullStatus
from edgeassist.tui.screens import ModelErrorScreen

REPO = "unsloth/Qwen3.5-0.8B-GGUF"
FILE = "Qwen3.5-0.8B-Q4_K_M.gguf"
LABEL = "qwen3.5-0.8b:q4_k_m"


# -- helpers ----------------------------------------------------------------------------------------------


def settings_for(tmp_path: Path, endpoint: str) -> Settings:
    """The 0.8B catalog model (not on disk: the app opens on its error screen), the hub at `endpoint`."""
    return load_settings(
        None,
        {
            "store": {"path": tmp_path / "history.sqlite3"},
            "model": {
                "name": "qwen3.5-0.8b",
                "n_ctx": 512,
                "starter_fallback": False,
                "models_dir": tmp_path / "models",
            },
            "hub": {"endpoint": endpoint},
        },
    )


def pull_app(tmp_path: Path, endpoint: str) -> EdgeAssistApp:
    settings = settings_for(tmp_path, endpoint)
    settings.models_dir().mkdir(parents=True, exist_ok=True)
    return EdgeAssistApp(settings, store=Store(settings.store_path()), new_chat=True)


def notices(app: Any) -> list[str]:
    return [str(n.message) for n in app._notifications]


def screen_text(app: Any, widget_id: str) -> str:
    return str(app.screen.query_one(widget_id).render())


def staging(models_dir: Path) -> Path:
    return models_dir / ".downloads" / "unsloth--Qwen3.5-0.8B-GGUF"


@pytest.fixture
def hub(gguf: Path, online: None) -> Iterator[FakeHub]:
    """The fake hub serving the starter GGUF as the 0.8B catalog file."""
    with FakeHub() as fh:
        fh.add(REPO, FILE, gguf)
        yield fh


# -- the palette, the progress, the switch ------------------------------------------------------------------


async def test_pull_from_the_palette_shows_progress_then_switches_to_the_model(
    tmp_path: Path, hub: FakeHub, gguf: Path
) -> None:
    app = pull_app(tmp_path, hub.endpoint)
    models = app.settings.models_dir()
    (models / "Qwen3.5-2B-Q4_K_M.gguf").symlink_to(gguf)  # on disk: nothing to pull
    pause = hub.pause_next_get()
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, ModelErrorScreen), what="the missing model's screen")
        seen = await choose(pilot, "pull", f"Pull: {LABEL}")
        assert f"Pull: {LABEL} (533 MB)" in seen  # the catalog's size
        assert "Pull: qwen3.5-0.8b:q8_0 (~850 MB)" in seen  # an estimate says so
        assert not [p for p in seen if p.startswith("Pull: qwen3.5-2b:q4_k_m")]
        await wait_until(pilot, lambda: isinstance(app.screen, PullScreen), what="the progress")
        await asyncio.to_thread(pause.reached.wait, 60)  # the child is inside its download
        await wait_until(pilot, lambda: "pulling" in screen_text(app, "#pull-note"), what="the pull's first line")
        note = screen_text(app, "#pull-note")
        assert note.startswith(f"pulling {LABEL} (98.4 MB) from {REPO} on {hub.endpoint}")
        # While it runs, the palette offers its progress rather than a second pull.
        app.pop_screen()
        await choose(pilot, "0.8b:q4", f"Pull: {LABEL}: ")
        await wait_until(pilot, lambda: isinstance(app.screen, PullScreen), what="the progress, shown again")
        pause.go.set()
        await wait_until(pilot, lambda: app.model_ready, what="the pulled model to load")
        assert app.model_file == models / FILE
        assert sha256_file(models / FILE) == sha256_file(gguf)
        await wait_until(pilot, lambda: f"{LABEL} is downloaded: switching to it." in notices(app), what="the notice")
        assert not isinstance(app.screen, PullScreen | ModelErrorScreen)
        assert app.pulls.status is not None and app.pulls.status.state is PullState.DONE
        assert app.pulls.status.path == models / FILE
        assert not (models / ".downloads").exists()


async def test_esc_stops_the_pull_keeping_the_partial_and_the_next_pull_resumes_it(
    tmp_path: Path, hub: FakeHub, gguf: Path
) -> None:
    app = pull_app(tmp_path, hub.endpoint)
    models = app.settings.models_dir()
    sha = sha256_file(gguf)
    staged = 10_000_000
    part = staging(models) / f"{FILE}.{sha[:16]}.part"  # what an earlier, interrupted pull left
    part.parent.mkdir(parents=True)
    part.write_bytes(gguf.read_bytes()[:staged])
    pause = hub.pause_next_get()
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, ModelErrorScreen), what="the missing model's screen")
        await choose(pilot, "pull 0.8b:q4", f"Pull: {LABEL}")
        await asyncio.to_thread(pause.reached.wait, 60)
        await wait_until(pilot, lambda: "resuming" in screen_text(app, "#pull-note"), what="the resume line")
        assert screen_text(app, "#pull-bytes") == "10.0 MB of 532.5 MB (2%)"  # the part's size, shown
        job = app.pulls.job
        assert job is not None
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, PullScreen), what="the pull to stop")
        assert job.returncode == 143  # `edgeassist pull` stopped by SIGTERM, as by Ctrl+C: not killed
        assert app.pulls.status is not None and app.pulls.status.state is PullState.STOPPED
        said = f"Pull of {LABEL} stopped (10.0 MB kept); pull it again from ctrl+p to resume."
        await wait_until(pilot, lambda: said in notices(app), what="the notice")
        assert part.stat().st_size == staged  # kept for the next pull
        assert not (staging(models) / f"{FILE}.lock").exists()  # and its lock released
        assert not (models / FILE).exists()
        assert isinstance(app.screen, ModelErrorScreen)  # still no model

        pause.go.set()
        seen = await choose(pilot, "pull 0.8b:q4", f"Pull: {LABEL}")
        assert f"Pull: {LABEL} (533 MB)" in seen
        await wait_until(pilot, lambda: app.model_ready, what="the pulled model to load")
        assert hub.file_gets()[-1].range == f"bytes={staged}-"  # it resumed where the stop left it
        assert sha256_file(models / FILE) == sha
        assert app.model_file == models / FILE


async def test_pull_errors_are_one_line_in_the_app(tmp_path: Path, online: None, gguf: Path) -> None:
    wrong = "deadbeef" * 8
    with FakeHub() as fh:
        fh.add(REPO, FILE, gguf, served_sha256=wrong)
        app = pull_app(tmp_path, fh.endpoint)
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_until(pilot, lambda: isinstance(app.screen, ModelErrorScreen), what="the error screen")
            await choose(pilot, "pull 0.8b:q4", f"Pull: {LABEL}")
            await wait_until(pilot, lambda: app.pulls.status.state is PullState.FAILED, what="the failure")  # type: ignore[union-attr]
            await wait_until(pilot, lambda: not isinstance(app.screen, PullScreen), what="the progress to close")
            expected = (
                f"checksum mismatch for {LABEL}: expected sha256 {wrong}, got {sha256_file(gguf)}; "
                "nothing was kept, run the pull again"
            )
            await wait_until(pilot, lambda: expected in notices(app), what="the error")
            assert not any("Traceback" in n or "\n" in n for n in notices(app))
            assert not (app.settings.models_dir() / FILE).exists()

    with socket.socket() as s:  # a port nobody listens on: no network
        s.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{s.getsockname()[1]}"
    app = pull_app(tmp_path / "offline", endpoint)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, ModelErrorScreen), what="the error screen")
        await choose(pilot, "pull 0.8b:q4", f"Pull: {LABEL}")
        await wait_until(pilot, lambda: app.pulls.status.state is PullState.FAILED, what="the failure")  # type: ignore[union-attr]
        await wait_until(pilot, lambda: any(n.title == "Pull failed" for n in app._notifications), what="the error")
        [error] = [n for n in app._notifications if n.severity == "error" and n.title == "Pull failed"]
        assert str(error.message).startswith(f"cannot reach the model hub at {endpoint}: ")
        assert "\n" not in str(error.message) and "Traceback" not in str(error.message)


async def test_quitting_during_a_pull_stops_the_child(tmp_path: Path, hub: FakeHub) -> None:
    app = pull_app(tmp_path, hub.endpoint)
    pause = hub.pause_next_get()
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, ModelErrorScreen), what="the error screen")
        await choose(pilot, "pull 0.8b:q4", f"Pull: {LABEL}")
        await asyncio.to_thread(pause.reached.wait, 60)
        job = app.pulls.job
        assert job is not None
        await app.action_quit()
    deadline = time.monotonic() + 60
    while job.returncode is None and time.monotonic() < deadline:  # the worker stops the child as the app ends
        await asyncio.sleep(0.05)
    pause.go.set()
    assert job.returncode == 143
    assert not (staging(app.settings.models_dir()) / f"{FILE}.lock").exists()


# -- the log screen, wired in -------------------------------------------------------------------------------


async def test_f6_shows_why_the_model_failed_in_llama_cpps_words_and_the_apps_warnings(
    tmp_path: Path, starter_gguf: Path
) -> None:
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(starter_gguf.read_bytes()[:5_000_000])
    settings = load_settings(
        None, {"store": {"path": tmp_path / "h.sqlite3"}, "model": {"name": str(truncated), "starter_fallback": False}}
    )
    app = EdgeAssistApp(settings, store=Store(settings.store_path()), new_chat=True)
    mark = LOG.count  # (the log is the process's: earlier tests' lines are in it too)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, ModelErrorScreen), what="the error screen")
        app.notify("the [b]theme[/b] is unknown", severity="warning")
        await pilot.press("f6")  # from the error screen: where the log is wanted
        await wait_until(pilot, lambda: isinstance(app.screen, LogScreen), what="the log")
        log = app.screen.query_one(Log)
        await wait_until(pilot, lambda: log.lines[-1].endswith("the [b]theme[/b] is unknown"), what="the notice")
        new = list(log.lines)[-(LOG.count - mark) :]  # this test's lines, newest last
        assert new[-1].endswith(" edgeassist warning the [b]theme[/b] is unknown")
        errors = [line for line in new if " llama.cpp error " in line]
        assert errors[0].endswith("data is not within the file bounds, model is corrupted or incomplete")
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, ModelErrorScreen), what="back to the error")
        prompts = await choose(pilot, "log", "Show llama.cpp's log")  # and from the palette
        assert "Show llama.cpp's log and the app's warnings" in prompts
        await wait_until(pilot, lambda: isinstance(app.screen, LogScreen), what="the log again")


# -- the parts, without the app -----------------------------------------------------------------------------


def test_a_pull_status_shows_its_progress() -> None:
    status = PullStatus(LABEL, done_bytes=412_000_000, total_bytes=1_280_835_840)
    assert status.progress_text() == "412.0 MB of 1.3 GB (32%)"
    assert PullStatus(LABEL, done_bytes=5, total_bytes=None).progress_text() == "5 B"
    estimate = PullStatus(LABEL, done_bytes=2 * 10**9, total_bytes=10**9, total_exact=False)
    assert estimate.fraction == 1.0 and estimate.progress_text() == "2.0 GB of ~1.0 GB (100%)"


def test_progress_messages_merge_but_an_ending_is_never_replaced() -> None:
    progress = PullChanged(PullStatus(LABEL, done_bytes=1))
    later = PullChanged(PullStatus(LABEL, done_bytes=2))
    ended = PullChanged(PullStatus(LABEL, state=PullState.DONE))
    assert later.can_replace(progress)
    assert not later.can_replace(ended)
    assert not later.can_replace(PullChanged(PullStatus("qwen3.5-2b:q4_k_m")))


def test_the_child_is_edgeassist_pull_with_the_apps_hub_and_models_folder(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "http://hub.example:8080")
    row = next(r for r in list_models(settings.models_dir()) if r.name == LABEL)
    assert isinstance(row, ModelRow)
    job = ChildPull(row, settings)
    assert job.command()[1:] == ["-m", "edgeassist", "pull", LABEL]
    env = job.environment()
    assert env["EDGEASSIST_MODEL__MODELS_DIR"] == str(tmp_path / "models")
    assert env["EDGEASSIST_HUB__ENDPOINT"] == "http://hub.example:8080"
    assert env["EDGEASSIST_HUB__OFFLINE"] == "false"
    assert env["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
