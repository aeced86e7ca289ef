"""Pilot tests of the chat app's chats: each chat's own model, prompt recall, moving between chats, clearing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_tui import _isolated, make_settings, ready, replies, send, wait_until  # noqa: F401 - _isolated: autouse

from edgeassist.config import Settings
from edgeassist.errors import ModelNotFoundError
from edgeassist.store import Store
from edgeassist.tui import create_app
from edgeassist.tui.widgets import ChatList


class Shelf:
    """An `open_model` over fake engines by model name: the models "on disk"; any other name is not found."""

    def __init__(self, fake_engine: Any, *names: str) -> None:
        self.engines = {n: fake_engine(answer=f"from {n}", name=n) for n in names}
        self.opened: list[str] = []

    def __call__(self, settings: Settings, explicit: bool) -> Any:
        name = settings.model.name
        if name not in self.engines:
            raise ModelNotFoundError(f"{name} is not downloaded (run `edgeassist pull {name}`)")
        self.opened.append(name)
        return self.engines[name].opener()(settings, explicit)


def held_chat(tmp_path: Path, name: str, model: str | None) -> None:
    """A saved chat of one exchange, held with `model`."""
    store = Store(tmp_path / "history.sqlite3")
    chat = store.create_chat(name, model=model)
    store.add_message(chat.id, "user", f"hello {name}")
    store.add_message(chat.id, "assistant", f"reply in {name}")
    store.close()


def notices_text(app: Any) -> str:
    """What the notices above the message box say."""
    return str(app.query_one("#notice").render())


# -- 5: a chat's model comes back with it -------------------------------------------------------------------


async def test_a_resumed_chat_reopens_on_its_own_model(tmp_path: Path, fake_engine: Any) -> None:
    held_chat(tmp_path, "qwen talk", "model-b")
    shelf = Shelf(fake_engine, "model-a", "model-b")
    app = create_app(make_settings(tmp_path, "model-a"), open_model=shelf)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        assert app.chat is not None and app.chat.name == "qwen talk"
        assert app.model_name == "model-b" and shelf.opened == ["model-b"]  # loaded once, not the starter first
        await send(pilot, "more")
        await wait_until(pilot, lambda: not app.generating and len(replies(app)) == 2)
        assert replies(app)[-1].content == "from model-b"


async def test_a_chat_whose_model_is_gone_keeps_the_model_in_use_and_says_why(tmp_path: Path, fake_engine: Any) -> None:
    held_chat(tmp_path, "old", "qwen3.5-9b")
    shelf = Shelf(fake_engine, "model-a")
    app = create_app(make_settings(tmp_path, "model-a"), open_model=shelf)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        assert app.model_name == "model-a"
        await wait_until(pilot, lambda: "qwen3.5-9b, which is not on disk: keeping model-a" in notices_text(app))
        assert not app.query_one("#sticky").display  # one notice line, no error screen


async def test_opening_a_chat_from_the_list_switches_to_its_model(tmp_path: Path, fake_engine: Any) -> None:
    held_chat(tmp_path, "on b", "model-b")
    held_chat(tmp_path, "on starter", "smollm2-135m")
    shelf = Shelf(fake_engine, "model-a", "model-b")
    app = create_app(make_settings(tmp_path, "model-a"), open_model=shelf, new_chat=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        assert app.model_name == "model-a"
        chats = {c.name: c for c in app.store.list_chats()}
        await app.open_chat(chats["on starter"])  # the starter only stood in: the model in use stays
        assert app.model_name == "model-a" and shelf.opened == ["model-a"]
        await app.open_chat(chats["on b"])
        await ready(pilot)
        assert app.model_name == "model-b"
        assert app.conversation is not None and app.conversation.engine is shelf.engines["model-b"]
        assert not shelf.engines["model-a"].loaded  # closed before the other loaded
        assert len(app.query_one(ChatList).children) == 2


# -- Up/Down recall the chat's earlier messages --------------------------------------------------------------


async def test_up_in_an_empty_box_recalls_the_chats_messages_and_survives_a_restart(
    tmp_path: Path, fake_engine: Any
) -> None:
    from edgeassist.tui.screens import HelpScreen
    from edgeassist.tui.widgets import PromptInput

    settings = make_settings(tmp_path, "model-a")
    shelf = Shelf(fake_engine, "model-a")
    app = create_app(settings, open_model=shelf, new_chat=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        for text in ("first question", "second\non two lines"):
            await send(pilot, text)
            await wait_until(pilot, lambda: not app.generating)
    app = create_app(settings, open_model=shelf)  # a restart: the chat resumes
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        box = app.query_one(PromptInput)
        box.focus()
        await pilot.press("up")
        assert box.text == "second\non two lines"
        await pilot.press("up")
        assert box.text == "first question"
        await pilot.press("up")  # the oldest stays
        assert box.text == "first question"
        await pilot.press("down")
        assert box.text == "second\non two lines"
        await pilot.press("x")  # an edit: the arrows move the cursor again
        await pilot.pause()
        await pilot.press("up")
        assert box.text == "second\non two linesx" and box.cursor_location[0] == 0
        box.clear()
        await pilot.press("up", "down")  # down past the newest: the box is empty again
        assert box.text == ""
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        assert any("earlier messages" in what for _, what in app.screen.rows)


# -- next and previous chat ------------------------------------------------------------------------------------


async def test_alt_down_and_alt_up_step_through_the_chats(tmp_path: Path, fake_engine: Any) -> None:
    for name in ("oldest", "middle", "newest"):
        held_chat(tmp_path, name, "model-a")
    shelf = Shelf(fake_engine, "model-a")
    app = create_app(make_settings(tmp_path, "model-a"), open_model=shelf)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)

        def open_name() -> str | None:
            return app.chat.name if app.chat is not None else None

        assert open_name() == "newest"
        await pilot.press("alt+down")
        await wait_until(pilot, lambda: open_name() == "middle")
        assert [str(m.render()) for m in app.query("UserMessage")] == ["hello middle"]
        await pilot.press("ctrl+pagedown")
        await wait_until(pilot, lambda: open_name() == "oldest")
        await pilot.press("alt+down")  # the last one: it stays, and says so
        await wait_until(pilot, lambda: "No older chat." in notices_text(app))
        assert open_name() == "oldest"
        await pilot.press("alt+up", "ctrl+pageup")
        await wait_until(pilot, lambda: open_name() == "newest")
        await app.open_chat(None)  # a new chat sits above the newest
        await pilot.press("alt+down")
        await wait_until(pilot, lambda: open_name() == "newest")


# -- clear a chat, keep its settings -----------------------------------------------------------------------------


async def test_f10_clears_the_chat_after_asking_and_keeps_its_settings(tmp_path: Path, fake_engine: Any) -> None:
    from edgeassist.tui.screens import ConfirmScreen
    from edgeassist.tui.widgets import UserMessage, Welcome

    held_chat(tmp_path, "keep me", "model-a")
    store = Store(tmp_path / "history.sqlite3")
    chat = store.find_chat("keep me")
    assert chat is not None
    store.set_system_prompt(chat.id, "Answer in French.")
    store.close()
    shelf = Shelf(fake_engine, "model-a")
    app = create_app(make_settings(tmp_path, "model-a"), open_model=shelf)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("f10")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")  # Cancel: nothing changes
        await wait_until(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
        assert len(app.store.messages(chat.id)) == 2 and app.query(UserMessage)
        await pilot.press("f10")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_until(pilot, lambda: not app.query(UserMessage) and app.query(Welcome))
        assert app.store.messages(chat.id) == []
        again = app.store.get_chat(chat.id)
        assert again is not None and again.system_prompt == "Answer in French." and again.model == "model-a"
        await send(pilot, "bonjour")
        await wait_until(pilot, lambda: not app.generating and replies(app))
        system = shelf.engines["model-a"].calls[-1][0][0]
        assert system == {"role": "system", "content": "Answer in French."}
        assert [m.role for m in app.store.messages(chat.id)] == ["user", "assistant"]


# -- click a message or a code block to copy it -----------------------------------------------------------------


async def test_a_click_copies_the_message_the_reply_or_the_code_block(tmp_path: Path, fake_engine: Any) -> None:
    from textual.widgets.markdown import MarkdownFence

    from edgeassist.tui.widgets import UserMessage

    answer = "Run this:\n\n```python\nprint('hi')\n```\n\nThen you are done."
    engine = fake_engine(answer=answer, name="model-a")
    app = create_app(make_settings(tmp_path, "model-a"), open_model=engine.opener(), new_chat=True)
    async with app.run_test(size=(80, 30)) as pilot:
        await ready(pilot)
        await send(pilot, "how do I greet?")
        await wait_until(pilot, lambda: not app.generating and replies(app) and replies(app)[-1].query(MarkdownFence))
        await pilot.click(UserMessage)
        assert app.clipboard == "how do I greet?"
        await wait_until(pilot, lambda: "Copied the message" in notices_text(app))
        await pilot.click(MarkdownFence)
        assert app.clipboard == "print('hi')"
        await wait_until(pilot, lambda: "Copied the python block (1 line)" in notices_text(app))
        await pilot.click(replies(app)[-1].answer, offset=(2, 0))  # "Run this:", outside the block
        assert app.clipboard == answer


# -- a chat switched back to starts from its kept state ----------------------------------------------------------


async def test_switching_back_to_a_chat_starts_from_its_kept_state(tmp_path: Path, tiny_qwen35: Path) -> None:
    settings = make_settings(tmp_path, str(tiny_qwen35), max_tokens=8, think=False)
    app = create_app(settings, new_chat=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)

        async def ask(text: str) -> Any:
            await send(pilot, text)
            await wait_until(pilot, lambda: not app.generating and app.conversation.turns[-1].role == "assistant")
            return app.conversation.turns[-1].stats

        await ask("Name a grey cat.")
        first = app.chat
        await ask("Why that name?")
        await app.open_chat(None)  # another chat takes the model's context
        await ask("Something else entirely.")
        await app.open_chat(first)
        stats = await ask("Give one more.")
        assert app.chat is not None and app.chat.name == first.name
        # Only the last reply and the new message are read: the rest comes from the chat's kept state.
        assert stats.reused_tokens > stats.prompt_tokens // 2
        assert stats.evaluated_tokens < stats.prompt_tokens // 2
        assert Store(tmp_path / "history.sqlite3").state_path(first).exists()
