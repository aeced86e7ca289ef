"""Pilot tests of a chat's own settings (F3): what is saved, what the next reply gets, what comes back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_tui import _isolated, make_settings, ready, replies, send, wait_until  # noqa: F401 - _isolated: autouse
from test_tui_chats import Shelf, held_chat

from edgeassist.config import Settings
from edgeassist.store import ChatSettings, Store
from edgeassist.tui import create_app
from edgeassist.tui.screens import ChatSettingsScreen


async def open_settings(pilot: Any) -> ChatSettingsScreen:
    """Press F3 and wait for the chat settings screen."""
    await pilot.press("f3")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, ChatSettingsScreen), what="the settings screen")
    screen = pilot.app.screen
    assert isinstance(screen, ChatSettingsScreen)
    return screen


def fill(screen: ChatSettingsScreen, **fields: str) -> None:
    """Type `fields` (temperature="0.3", model="m") into the screen's inputs."""
    from textual.widgets import Input

    for name, value in fields.items():
        screen.query_one(f"#set-{name}", Input).value = value


def error_line(screen: ChatSettingsScreen) -> str:
    """What the screen's error line says."""
    return str(screen.query_one("#settings-error").render())


class Sizes:
    """An `open_model` over one fake engine that records the context size of every build."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.n_ctx: list[int] = []

    def __call__(self, settings: Settings, explicit: bool) -> Any:
        self.n_ctx.append(settings.model.n_ctx)
        return self.engine.opener()(settings, explicit)


async def test_saved_settings_reach_the_next_reply_and_come_back_with_the_chat(
    tmp_path: Path, fake_engine: Any
) -> None:
    engine = fake_engine("Fine.")
    app = create_app(make_settings(tmp_path), open_model=engine.opener(), chat_name="tuned")
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        screen = await open_settings(pilot)
        assert screen.query_one("#settings-box").border_title == "Chat settings"
        fill(screen, temperature="0.3", max_tokens="77", top_p="0.5")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: not isinstance(app.screen, ChatSettingsScreen))
        await send(pilot, "Hello")
        await wait_until(pilot, lambda: not app.generating and replies(app))
        options = engine.calls[-1][1]
        assert (options.temperature, options.top_p, options.max_tokens) == (0.3, 0.5, 77)
        assert app.chat is not None
        saved = app.store.get_chat(app.chat.id)
        assert saved is not None and saved.settings == ChatSettings(temperature=0.3, top_p=0.5, max_tokens=77)

    again = fake_engine("Again.")
    app2 = create_app(make_settings(tmp_path), open_model=again.opener())
    async with app2.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        assert app2.chat is not None and app2.chat.name == "tuned"
        screen = await open_settings(pilot)  # the screen shows them again
        assert screen.edited().temperature == "0.3" and screen.edited().max_tokens == "77"
        await pilot.press("escape")
        await send(pilot, "More")
        await wait_until(pilot, lambda: not app2.generating and len(replies(app2)) == 2)
        options = again.calls[-1][1]
        assert (options.temperature, options.top_p, options.max_tokens) == (0.3, 0.5, 77)

        await pilot.press("ctrl+n")  # a new chat has the configured settings (make_settings: 0.0, 24 tokens)
        await wait_until(pilot, lambda: app2.chat is None)
        await send(pilot, "Fresh")
        await wait_until(pilot, lambda: not app2.generating and len(again.calls) == 2)
        options = again.calls[-1][1]
        assert (options.temperature, options.top_p, options.max_tokens) == (0.0, None, 24)


async def test_a_refused_value_is_one_line_and_nothing_is_saved(tmp_path: Path, fake_engine: Any) -> None:
    shelf = Shelf(fake_engine, "model-a")
    app = create_app(make_settings(tmp_path, "model-a"), open_model=shelf, chat_name="strict")
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        screen = await open_settings(pilot)
        bad = [
            ({"temperature": "-1"}, "generation.temperature = '-1'"),
            ({"max_tokens": "0"}, "generation.max_tokens = '0'"),
            ({"top_p": "warm"}, "generation.top_p = 'warm'"),
            ({"n_ctx": "10"}, "model.n_ctx = '10'"),
            ({"model": "no-such-model"}, "no-such-model is not downloaded"),
            ({"model": ""}, "the model cannot be empty"),
        ]
        for fields, named in bad:
            fill(screen, temperature="", max_tokens="", top_p="", n_ctx="", model=app.model_name)
            fill(screen, **fields)
            await pilot.press("ctrl+s")
            await pilot.pause()
            line = error_line(screen)
            assert app.screen is screen and named in line and "\n" not in line.strip()
        assert app.chat is not None and app.store.get_chat(app.chat.id).settings == ChatSettings()  # type: ignore[union-attr]
        fill(screen, model=app.model_name, temperature="0.9")  # fixed: it saves, the line goes
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: not isinstance(app.screen, ChatSettingsScreen))
        assert app.store.get_chat(app.chat.id).settings == ChatSettings(temperature=0.9)  # type: ignore[union-attr]


async def test_a_chats_thinking_wins_when_it_opens_and_ctrl_t_does_not_save_it(
    tmp_path: Path, fake_engine: Any
) -> None:
    from textual.widgets import Checkbox

    held_chat(tmp_path, "thinker", None)
    held_chat(tmp_path, "plain", None)  # the newest: the app resumes it
    store = Store(tmp_path / "history.sqlite3")
    thinker = store.find_chat("thinker")
    assert thinker is not None
    store.set_settings(thinker.id, ChatSettings(think=True))
    store.close()
    engine = fake_engine("Hm.", "let me think")
    app = create_app(make_settings(tmp_path), open_model=engine.opener())
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        assert app.chat is not None and app.chat.name == "plain" and not app.think
        await pilot.press("alt+down")  # to "thinker"
        await wait_until(pilot, lambda: app.chat is not None and app.chat.name == "thinker")
        assert app.think
        await send(pilot, "why?")
        await wait_until(pilot, lambda: not app.generating and len(replies(app)) == 2)
        assert engine.calls[-1][1].think is True
        await pilot.press("ctrl+t")  # off for the session, not saved
        assert not app.think
        assert app.store.get_chat(app.chat.id).settings.think is True  # type: ignore[union-attr]
        await pilot.press("alt+down")  # back to "plain" (now the older one): the switch's value (off)
        await wait_until(pilot, lambda: app.chat is not None and app.chat.name == "plain")
        assert not app.think

        screen = await open_settings(pilot)  # saving the box on: "plain" thinks from now on
        screen.query_one("#set-think", Checkbox).value = True
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: not isinstance(app.screen, ChatSettingsScreen))
        assert app.think and app.store.get_chat(app.chat.id).settings.think is True  # type: ignore[union-attr]


async def test_a_context_size_change_reloads_the_model_and_comes_back_with_the_chat(
    tmp_path: Path, fake_engine: Any
) -> None:
    sizes = Sizes(fake_engine("Fine."))
    app = create_app(make_settings(tmp_path), open_model=sizes, chat_name="long")
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        assert sizes.n_ctx == [1024]  # make_settings' n_ctx
        screen = await open_settings(pilot)
        fill(screen, n_ctx="2048")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: len(sizes.n_ctx) == 2 and app.model_ready, what="the reload")
        assert sizes.n_ctx == [1024, 2048]
        screen = await open_settings(pilot)  # saving again without a change does not reload
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: not isinstance(app.screen, ChatSettingsScreen))
        await send(pilot, "hi")
        await wait_until(pilot, lambda: not app.generating and replies(app))
        assert sizes.n_ctx == [1024, 2048]
        await pilot.press("ctrl+n")  # a new chat asks for the configured size: reloaded with it
        await wait_until(pilot, lambda: len(sizes.n_ctx) == 3 and app.model_ready, what="the reload")
        assert sizes.n_ctx[-1] == 1024

    sizes2 = Sizes(fake_engine("Again."))
    app2 = create_app(make_settings(tmp_path), open_model=sizes2, chat_name="long")
    async with app2.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        assert sizes2.n_ctx == [2048]  # loaded once, at the chat's size


async def test_the_model_field_switches_the_chats_model(tmp_path: Path, fake_engine: Any) -> None:
    held_chat(tmp_path, "switcher", "model-a")
    shelf = Shelf(fake_engine, "model-a", "model-b")
    app = create_app(make_settings(tmp_path, "model-a"), open_model=shelf)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        screen = await open_settings(pilot)
        fill(screen, model="model-b")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: app.model_name == "model-b" and app.model_ready, what="the switch")
        assert app.chat is not None and app.store.get_chat(app.chat.id).model == "model-b"  # type: ignore[union-attr]
        await send(pilot, "hi")
        await wait_until(pilot, lambda: not app.generating and len(replies(app)) == 2)
        assert replies(app)[-1].content == "from model-b"


async def test_settings_of_a_new_chat_are_saved_with_its_first_message(tmp_path: Path, fake_engine: Any) -> None:
    engine = fake_engine("Fine.")
    app = create_app(make_settings(tmp_path), open_model=engine.opener(), new_chat=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        screen = await open_settings(pilot)
        fill(screen, max_tokens="5")
        screen.query_one("#set-max_tokens").focus()
        await pilot.press("enter")  # Enter in a field saves too
        await wait_until(pilot, lambda: not isinstance(app.screen, ChatSettingsScreen))
        assert app.chat is None
        await send(pilot, "first")
        await wait_until(pilot, lambda: not app.generating and replies(app))
        assert engine.calls[-1][1].max_tokens == 5
        assert app.chat is not None and app.store.get_chat(app.chat.id).settings == ChatSettings(max_tokens=5)  # type: ignore[union-attr]


async def test_tab_and_shift_tab_move_between_the_fields(tmp_path: Path, fake_engine: Any) -> None:
    """The app's Tab bindings reach a dialog (they were refused on every screen but the chat's)."""
    app = create_app(make_settings(tmp_path), open_model=fake_engine().opener(), new_chat=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await open_settings(pilot)
        assert app.focused is not None and app.focused.id == "system-text"
        await pilot.press("shift+tab")
        assert app.focused is not None and app.focused.id == "set-n_ctx"
        await pilot.press("tab", "tab")
        assert app.focused is not None and app.focused.id == "save"
