"""Conversation and Store: history, saving, stopping, trimming, on the real starter model."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from edgeassist.chat import Conversation
from edgeassist.engine import Done, GenerationOptions, Notice, Text
from edgeassist.engine.llama import LlamaEngine
from edgeassist.errors import ContextOverflowError, StoreError, UsageError
from edgeassist.store import Store

OPTS = GenerationOptions(temperature=0, max_tokens=16)
SYSTEM = "You are a helpful assistant."


@pytest.fixture(scope="module")
def engine(starter_gguf: Path) -> LlamaEngine:
    e = LlamaEngine(starter_gguf, name="smollm2", n_ctx=1024)
    e.load()
    return e


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "history.sqlite3")
    yield s
    s.close()


def drain(events) -> tuple[str, list[object]]:
    out = list(events)
    return "".join(e.text for e in out if isinstance(e, Text)), out


def test_reply_and_question_are_saved(engine: LlamaEngine, store: Store) -> None:
    whole = GenerationOptions(temperature=0, max_tokens=200)  # a reply that ends by itself, not cut
    convo = Conversation.open(engine, store, "geo", system_prompt=SYSTEM, options=whole)
    answer, events = drain(convo.send("What is the capital of France?"))
    assert isinstance(events[-1], Done) and answer
    saved = store.messages(convo.chat.id)
    assert [(m.role, m.status) for m in saved] == [("user", "complete"), ("assistant", "complete")]
    assert saved[1].content == answer.strip()
    assert saved[1].stats["generated_tokens"] > 0
    assert store.find_chat("geo").model == "smollm2"


def test_saved_chat_continues_with_its_history(engine: LlamaEngine, store: Store) -> None:
    first = Conversation.open(engine, store, "c", system_prompt=SYSTEM, options=OPTS)
    drain(first.send("My name is Ada."))
    again = Conversation.open(engine, store, "c", system_prompt=SYSTEM, options=OPTS)
    assert [m["role"] for m in again.context()] == ["system", "user", "assistant"]
    assert again.context()[1]["content"] == "My name is Ada."
    drain(again.send("What is my name?"))
    assert len(store.messages(again.chat.id)) == 4


LONG = GenerationOptions(max_tokens=200, seed=1)
"""A reply to be stopped: sampled, seeded (an unseeded draw may end the reply before the stop)."""


def test_cancelled_reply_is_saved_marked_cancelled(engine: LlamaEngine, store: Store) -> None:
    convo = Conversation.open(engine, store, "stop", system_prompt=SYSTEM, options=LONG)
    cancel = threading.Event()
    seen = 0
    for ev in convo.send("Tell me a long story about a dragon.", cancel):
        if isinstance(ev, Text):
            seen += 1
            if seen == 4:
                cancel.set()
        if isinstance(ev, Done):
            assert ev.stats.finish_reason == "cancelled"
    reply = store.messages(convo.chat.id)[-1]
    assert reply.role == "assistant" and reply.status == "cancelled" and reply.content


def test_abandoned_stream_keeps_the_partial_reply(engine: LlamaEngine, store: Store) -> None:
    """What Ctrl+C does: the stream stops mid-reply; the partial reply is saved, not as complete."""
    convo = Conversation.open(engine, store, "ctrlc", system_prompt=SYSTEM, options=LONG)
    stream = convo.send("Describe the sea in detail.")
    texts = 0
    for ev in stream:
        if isinstance(ev, Text):
            texts += 1
            if texts == 3:
                break
    stream.close()
    saved = store.messages(convo.chat.id)
    assert [m.role for m in saved] == ["user", "assistant"]
    assert saved[-1].status == "cancelled" and saved[-1].content


def test_regenerate_and_edit_replace_the_last_turn(engine: LlamaEngine, store: Store) -> None:
    convo = Conversation.open(engine, store, "edit", system_prompt=SYSTEM, options=OPTS)
    drain(convo.send("Name a fruit."))
    drain(convo.regenerate(options=GenerationOptions(temperature=1.0, max_tokens=16, seed=7)))
    saved = store.messages(convo.chat.id)
    assert [m.role for m in saved] == ["user", "assistant"]
    drain(convo.edit_last("Name a vegetable."))
    saved = store.messages(convo.chat.id)
    assert [(m.role, m.content) for m in saved][0] == ("user", "Name a vegetable.")
    assert len(saved) == 2 and convo.last_user_text() == "Name a vegetable."


def test_empty_message_is_refused(engine: LlamaEngine) -> None:
    with pytest.raises(UsageError, match="empty"):
        list(Conversation(engine).send("   "))


def test_trimming_keeps_system_prompt_tells_once_and_loses_nothing(starter_gguf: Path, store: Store) -> None:
    small = LlamaEngine(starter_gguf, n_ctx=512)
    convo = Conversation.open(small, store, "long", system_prompt=SYSTEM, options=GenerationOptions(max_tokens=8))
    notices = []
    for i in range(8):
        _, events = drain(convo.send(f"Message {i}: " + "tell me about the weather in the mountains. " * 6))
        notices += [e for e in events if isinstance(e, Notice)]
    assert len(notices) == 1 and "context" in notices[0].text
    ctx = convo.context()
    assert ctx[0] == {"role": "system", "content": SYSTEM}
    assert ctx[1]["role"] == "user" and not ctx[1]["content"].startswith("Message 0:")
    assert small.count_tokens(ctx, GenerationOptions()) <= 512
    assert len(store.messages(convo.chat.id)) == 16  # the store keeps everything


def test_message_longer_than_context_is_refused_and_not_saved(starter_gguf: Path, store: Store) -> None:
    small = LlamaEngine(starter_gguf, n_ctx=256)
    convo = Conversation.open(small, store, "huge", system_prompt=SYSTEM, options=OPTS)
    with pytest.raises(ContextOverflowError, match="too long"):
        list(convo.send("word " * 600))
    assert store.messages(convo.chat.id) == [] and convo.turns == []


# -- Store ---------------------------------------------------------------------------------------


def test_store_chats_crud_and_unique_names(store: Store) -> None:
    a = store.create_chat()
    b = store.create_chat()
    assert a.name != b.name
    store.rename_chat(a.id, "Holiday plans")
    with pytest.raises(StoreError, match="already exists"):
        store.rename_chat(b.id, "Holiday plans")
    store.add_message(b.id, "user", "hi")
    assert store.last_chat().id == b.id
    store.delete_chat(b.id)
    assert [c.name for c in store.list_chats()] == ["Holiday plans"]
    assert store.messages(b.id) == []


def test_store_survives_reopen_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    s = Store(path)
    chat = s.create_chat("x", system_prompt="Be brief.")
    s.add_message(chat.id, "user", "q")
    s.add_message(chat.id, "assistant", "a", thinking="hmm", status="cancelled", stats={"ttft_s": 0.1})
    s.close()
    again = Store(path)
    msgs = again.messages(again.find_chat("x").id)
    assert [(m.role, m.content, m.thinking, m.status) for m in msgs] == [
        ("user", "q", "", "complete"),
        ("assistant", "a", "hmm", "cancelled"),
    ]
    assert msgs[1].stats == {"ttft_s": 0.1}
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    md = again.export_markdown(again.find_chat("x").id)
    assert md.startswith("# x") and "Be brief." in md and "(stopped)" in md and "hmm" in md


def test_store_that_cannot_be_opened_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "dir.sqlite3").mkdir()
    with pytest.raises(StoreError, match="cannot open the chat history"):
        Store(tmp_path / "dir.sqlite3")


def test_a_reply_cut_by_the_token_limit_is_kept_as_cut(engine: LlamaEngine, store: Store) -> None:
    cut = GenerationOptions(temperature=0, max_tokens=3, ignore_eos=True)
    convo = Conversation.open(engine, store, "story", system_prompt=SYSTEM, options=cut)
    _, events = drain(convo.send("Tell me a long story about a dragon."))
    done = events[-1]
    assert isinstance(done, Done) and done.stats.finish_reason == "length"
    assert convo.turns[-1].status == "cut"
    saved = store.messages(convo.chat.id)
    assert [(m.role, m.status) for m in saved] == [("user", "complete"), ("assistant", "cut")]
    assert "## Assistant (cut at the token limit)" in store.export_markdown(convo.chat.id)
    roomy = GenerationOptions(temperature=0, max_tokens=200)
    again = Conversation.open(engine, store, "story", system_prompt=SYSTEM, options=roomy)
    assert again.turns[-1].status == "cut"
    drain(again.send("What is the capital of France?"))
    assert store.messages(again.chat.id)[-1].status == "complete"


def test_continue_goes_on_from_the_cut_without_reading_the_history_again(engine: LlamaEngine, store: Store) -> None:
    cut = GenerationOptions(temperature=0, max_tokens=6, ignore_eos=True)
    convo = Conversation.open(engine, store, "more", system_prompt=SYSTEM, options=cut)
    _, events = drain(convo.send("Count from one to twenty, in words."))
    first = events[-1]
    assert isinstance(first, Done) and convo.turns[-1].status == "cut"
    before = convo.turns[-1].content
    more, events = drain(convo.continue_reply(options=GenerationOptions(temperature=0, max_tokens=6)))
    done = events[-1]
    assert isinstance(done, Done) and more
    assert done.stats.reused_tokens >= first.stats.prompt_tokens  # the history was not evaluated again
    assert done.stats.evaluated_tokens <= 2
    reply = convo.turns[-1]
    assert len(convo.turns) == 2 and reply.content.startswith(before) and len(reply.content) > len(before)
    saved = store.messages(convo.chat.id)
    assert [(m.role, m.status) for m in saved] == [("user", "complete"), ("assistant", reply.status)]
    assert saved[1].content == reply.content
    assert reply.status in ("complete", "cut")
    if reply.status == "complete":
        with pytest.raises(UsageError):
            list(convo.continue_reply())


def test_only_a_cut_reply_can_be_continued(engine: LlamaEngine) -> None:
    convo = Conversation(engine, system_prompt=SYSTEM, options=GenerationOptions(temperature=0, max_tokens=200))
    with pytest.raises(UsageError):
        list(convo.continue_reply())
    drain(convo.send("What is the capital of France?"))
    assert convo.turns[-1].status == "complete"
    with pytest.raises(UsageError):
        list(convo.continue_reply())
