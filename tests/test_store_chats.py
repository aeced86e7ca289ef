"""The store's per-chat operations: clearing a chat keeps the chat; a chat's own settings, and their migration."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from edgeassist.store import SCHEMA_VERSION, ChatSettings, Store


def test_clearing_a_chat_deletes_only_its_messages_and_keeps_its_settings(tmp_path: Path) -> None:
    store = Store(tmp_path / "h.sqlite3")
    kept = store.create_chat("kept", system_prompt="be brief", model="qwen3.5-2b:q4_k_m")
    other = store.create_chat("other")
    for chat in (kept, other):
        store.add_message(chat.id, "user", "hi")
        store.add_message(chat.id, "assistant", "hello")
    assert store.clear_chat(kept.id) == 2
    assert store.messages(kept.id) == []
    assert len(store.messages(other.id)) == 2
    again = store.get_chat(kept.id)
    assert again is not None and (again.name, again.system_prompt, again.model) == (
        "kept",
        "be brief",
        "qwen3.5-2b:q4_k_m",
    )
    assert store.clear_chat(kept.id) == 0


# -- a chat's own settings, and the version 2 schema that holds them ------------------------------------

V1_SCHEMA = """
CREATE TABLE chats (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    system_prompt TEXT,
    model TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    chat_id INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
    content TEXT NOT NULL,
    thinking TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'complete',
    stats TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX messages_chat ON messages(chat_id, id);
PRAGMA user_version = 1;
"""
"""The schema as version 1 of the store wrote it (edgeassist before per-chat settings)."""


def version_1_history(path: Path) -> None:
    """A history file as version 1 left it: one chat of one exchange, WAL on."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(V1_SCHEMA)
    db.execute(
        "INSERT INTO chats (name, system_prompt, model, created_at, updated_at) VALUES ('old', 'be brief', 'm', 1, 2)"
    )
    db.execute("INSERT INTO messages (chat_id, role, content, created_at) VALUES (1, 'user', 'hi', 1)")
    db.execute("INSERT INTO messages (chat_id, role, content, created_at) VALUES (1, 'assistant', 'hello', 2)")
    db.commit()
    db.close()


def user_version(path: Path) -> int:
    """The file's `PRAGMA user_version`."""
    db = sqlite3.connect(path)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


def test_a_version_1_history_opens_reads_and_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    version_1_history(path)
    store = Store(path)
    chat = store.find_chat("old")
    assert chat is not None and (chat.system_prompt, chat.model) == ("be brief", "m")
    assert chat.settings == ChatSettings()
    assert [(m.role, m.content) for m in store.messages(chat.id)] == [("user", "hi"), ("assistant", "hello")]
    store.set_settings(chat.id, ChatSettings(temperature=0.2, max_tokens=64))
    store.close()
    assert user_version(path) == SCHEMA_VERSION == 4
    again = Store(path)  # a second open finds the migration done
    chat = again.find_chat("old")
    assert chat is not None and chat.settings == ChatSettings(temperature=0.2, max_tokens=64)
    assert len(again.messages(chat.id)) == 2


def test_a_newer_history_opens_as_it_is(tmp_path: Path) -> None:
    """A version this code does not know yet keeps its version and its extra columns (they are never named)."""
    path = tmp_path / "h.sqlite3"
    Store(path).create_chat("new", model="m")
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE chats ADD COLUMN colour TEXT")
    db.execute("UPDATE chats SET colour = 'blue', settings = '{\"top_p\": 0.5, \"later\": 1}'")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    store = Store(path)
    chat = store.find_chat("new")
    assert chat is not None and chat.settings == ChatSettings(top_p=0.5)  # its unknown key is left out
    store.add_message(chat.id, "user", "still writable")
    store.close()
    assert user_version(path) == SCHEMA_VERSION + 1


def test_a_chats_settings_are_saved_listed_and_kept_by_clearing(tmp_path: Path) -> None:
    store = Store(tmp_path / "h.sqlite3")
    chat = store.create_chat("tuned")
    assert chat.settings == ChatSettings() and store.get_chat(chat.id).settings == ChatSettings()  # type: ignore[union-attr]
    own = ChatSettings(think=False, temperature=0.0, top_p=0.9, max_tokens=128, n_ctx=8192)
    store.set_settings(chat.id, own)
    store.add_message(chat.id, "user", "hi")
    assert store.list_chats()[0].settings == own
    assert store.open_chat("tuned").settings == own
    store.clear_chat(chat.id)
    assert store.get_chat(chat.id).settings == own  # type: ignore[union-attr]
    store.set_settings(chat.id, ChatSettings())
    assert store.get_chat(chat.id).settings == ChatSettings()  # type: ignore[union-attr]


def test_settings_column_that_is_not_a_json_object_reads_as_none_set(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    chat = Store(path).create_chat("odd")
    for junk in ("not json", "[1, 2]", "7"):
        db = sqlite3.connect(path)
        db.execute("UPDATE chats SET settings = ? WHERE id = ?", (junk, chat.id))
        db.commit()
        db.close()
        assert Store(path).get_chat(chat.id).settings == ChatSettings()  # type: ignore[union-attr]
