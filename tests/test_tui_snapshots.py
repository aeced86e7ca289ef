"""Snapshots of the chat app's main states, from a scripted engine with fixed output and stats.

Most are at 80x24; one chat is taken at 60x20, 80x24 and 120x40, where the sidebar, the bars and
the footer fit themselves to the width.

Update after a deliberate change with `pytest tests/test_tui_snapshots.py --snapshot-update`
and look at the SVGs in `tests/__snapshots__/` before committing them.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from edgeassist.config import Settings, load_settings
from edgeassist.store import Store
from edgeassist.tui import EdgeAssistApp, create_app
from edgeassist.tui.screens import ChatSettingsScreen, HelpScreen, ModelErrorScreen
from edgeassist.tui.widgets import PromptInput, ReplyView

SIZE = (80, 24)
ANSWER = """Rayleigh scattering: air molecules scatter short (blue) wavelengths far more than long ones.

```python
print("blue")
```"""


@pytest.fixture(autouse=True)
def _deterministic(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No user config, and a stream clock that ticks 0.1 s per reading."""
    import edgeassist.tui.stream as stream

    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    ticks = itertools.count()
    monkeypatch.setattr(stream, "clock", lambda: next(ticks) * 0.1)


def settings_for(tmp_path: Path, **generation: Any) -> Settings:
    """Settings with a temp history."""
    return load_settings(
        None,
        {
            "store": {"path": tmp_path / "history.sqlite3"},
            "model": {"starter_fallback": False, "models_dir": tmp_path / "models"},
            "generation": generation,
        },
    )


async def settle(pilot: Any, predicate: Any) -> None:
    """Wait for `predicate`, then stop the cursor blinking so frames are identical."""
    import time

    deadline = time.monotonic() + 30
    while not predicate():
        assert time.monotonic() < deadline, "the app did not reach the state to snapshot"
        await pilot.pause(0.02)
    for box in pilot.app.query(PromptInput):
        box.cursor_blink = False
    pilot.app.clear_notifications()
    await pilot.pause()


def test_empty_chat(snap_compare: Any, tmp_path: Path, fake_engine: Any) -> None:
    app = create_app(settings_for(tmp_path), open_model=fake_engine().opener(), new_chat=True)

    async def run_before(pilot: Any) -> None:
        await settle(pilot, lambda: app.model_ready)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_finished_reply_with_collapsed_thinking(snap_compare: Any, tmp_path: Path, fake_engine: Any) -> None:
    engine = fake_engine(ANSWER, "The user asks about the sky colour. Scattering depends on wavelength.")
    settings = settings_for(tmp_path, think=True)
    store = Store(settings.store_path())
    app: EdgeAssistApp = create_app(settings, store=store, open_model=engine.opener(), new_chat=True)

    async def run_before(pilot: Any) -> None:
        await settle(pilot, lambda: app.model_ready)
        box = app.query_one(PromptInput)
        box.text = "Why is the sky blue?"
        await pilot.press("enter")
        await settle(
            pilot,
            lambda: not app.generating and app.query(ReplyView) and app.query(ReplyView).last().status == "complete",
        )

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_model_error_screen(snap_compare: Any, tmp_path: Path, fake_engine: Any) -> None:
    engine = fake_engine(
        load_error="cannot load Qwen3.5-0.8B-Q4_K_M.gguf: the file is truncated, corrupt or of an unsupported "
        "architecture; delete it and re-run `edgeassist pull`"
    )
    app = create_app(settings_for(tmp_path), open_model=engine.opener(), new_chat=True)

    async def run_before(pilot: Any) -> None:
        await settle(pilot, lambda: isinstance(app.screen, ModelErrorScreen) and app.screen.query("#error-hints"))

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_help_screen(snap_compare: Any, tmp_path: Path, fake_engine: Any) -> None:
    app = create_app(settings_for(tmp_path), open_model=fake_engine().opener(), new_chat=True)

    async def run_before(pilot: Any) -> None:
        await settle(pilot, lambda: app.model_ready)
        await pilot.press("f1")
        await settle(pilot, lambda: isinstance(app.screen, HelpScreen))

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_chat_settings_screen(snap_compare: Any, tmp_path: Path, fake_engine: Any) -> None:
    """F3 on a chat with its own temperature and context size: the rest show their defaults."""
    from edgeassist.store import ChatSettings

    settings = settings_for(tmp_path)
    store = Store(settings.store_path())
    chat = store.create_chat("Tuned", system_prompt="Answer in French.", model="fake-qwen3.5")
    store.set_settings(chat.id, ChatSettings(temperature=0.3, n_ctx=8192))
    app = create_app(settings, store=store, open_model=fake_engine().opener(), chat_name="Tuned")

    async def run_before(pilot: Any) -> None:
        await settle(pilot, lambda: app.model_ready)
        await pilot.press("f3")
        await settle(pilot, lambda: isinstance(app.screen, ChatSettingsScreen))
        app.screen.query_one("#system-text").cursor_blink = False  # type: ignore[attr-defined]
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


STARTER_NOTE = (
    "qwen3.5-0.8b is not downloaded (run `edgeassist pull qwen3.5-0.8b`); using the offline starter model SmolLM2-135M"
)


@pytest.mark.parametrize("size", [(60, 20), (80, 24), (120, 40)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_a_chat_on_the_starter_at_each_size(
    snap_compare: Any, tmp_path: Path, fake_engine: Any, size: tuple[int, int]
) -> None:
    """A reply, a notice and the starter's note: the sidebar only on the wide terminal, nothing covered."""
    from types import SimpleNamespace

    engine = fake_engine("Hello! Ask me anything; I am a small model that runs offline.", name="smollm2-135m")
    resolved = SimpleNamespace(name="smollm2-135m", quant="q4_1", is_starter=True, note=STARTER_NOTE)
    settings = settings_for(tmp_path)
    store = Store(settings.store_path())
    for name in ("Plan a trip to Lisbon", "Soup recipe"):
        store.create_chat(name)
    app = create_app(
        settings,
        store=store,
        open_model=lambda s, explicit: SimpleNamespace(engine=engine, resolved=resolved),
        new_chat=True,
    )

    async def run_before(pilot: Any) -> None:
        await settle(pilot, lambda: app.model_ready)
        app.query_one(PromptInput).text = "Say hello"
        await pilot.press("enter")
        await settle(pilot, lambda: not app.generating and app.query(ReplyView) and len(app.query("ChatItem")) == 3)
        app.notify("Copied the reply (62 characters).", timeout=600)
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=run_before)
