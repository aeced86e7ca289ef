"""Chat history in SQLite (WAL): every message is written as soon as it exists.

A user message is saved when it is sent, a reply when it completes; a stopped reply is
saved with status `cancelled`. Writes are single statements in autocommit transactions,
so a crash loses at most the reply being generated.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edgeassist.errors import StoreError

Status = Literal["complete", "cancelled", "error"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS chats (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    system_prompt TEXT,
    model TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    chat_id INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
    content TEXT NOT NULL,
    thinking TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'complete',
    stats TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_chat ON messages(chat_id, id);
"""


@dataclass(frozen=True)
class ChatRecord:
    """A saved conversation."""

    id: int
    """Row id."""
    name: str
    """Unique, user-visible name."""
    system_prompt: str | None
    """Per-chat system prompt; None means the configured default."""
    model: str | None
    """Model the chat was last used with."""
    created_at: float
    """Unix time of creation."""
    updated_at: float
    """Unix time of the last message or change."""


@dataclass(frozen=True)
class MessageRecord:
    """A saved message."""

    id: int
    """Row id."""
    chat_id: int
    """The chat it belongs to."""
    role: Literal["system", "user", "assistant"]
    """Who said it."""
    content: str
    """The text (for a reply: the answer, without thinking)."""
    thinking: str
    """The model's thinking before the answer, if any."""
    status: Status
    """complete, cancelled (stopped part-way) or error."""
    stats: dict[str, Any] | None
    """The reply's timing figures, as JSON."""
    created_at: float
    """Unix time it was saved."""


class Store:
    """The SQLite history; safe to share between the UI thread and worker threads."""

    def __init__(self, path: Path) -> None:
        """Open (creating if needed) the database at `path`."""
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(SCHEMA)
        except (sqlite3.Error, OSError) as e:
            raise StoreError(f"cannot open the chat history at {self.path}: {e}") from None

    @contextmanager
    def _cursor(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            try:
                yield self._db.cursor()
            except sqlite3.IntegrityError:
                raise
            except sqlite3.Error as e:
                raise StoreError(f"chat history error ({self.path}): {e}") from None

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    # -- chats ---------------------------------------------------------------------------------

    def create_chat(
        self, name: str | None = None, *, system_prompt: str | None = None, model: str | None = None
    ) -> ChatRecord:
        """Create a chat; without a name it gets a unique one from the date and time."""
        now = time.time()
        base = name or time.strftime("Chat %Y-%m-%d %H:%M", time.localtime(now))
        candidate, n = base, 1
        while True:
            try:
                with self._cursor() as c:
                    c.execute(
                        "INSERT INTO chats (name, system_prompt, model, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                        (candidate, system_prompt, model, now, now),
                    )
                    chat_id = c.lastrowid
                break
            except sqlite3.IntegrityError:
                if name is not None:
                    raise StoreError(f"a chat named {name!r} already exists") from None
                n += 1
                candidate = f"{base} ({n})"
        assert chat_id is not None
        return ChatRecord(chat_id, candidate, system_prompt, model, now, now)

    def _chat(self, where: str, arg: object) -> ChatRecord | None:
        with self._cursor() as c:
            row = c.execute(
                f"SELECT id, name, system_prompt, model, created_at, updated_at FROM chats WHERE {where}",
                (arg,),
            ).fetchone()
        return ChatRecord(*row) if row else None

    def get_chat(self, chat_id: int) -> ChatRecord | None:
        """The chat with this id, if any."""
        return self._chat("id = ?", chat_id)

    def find_chat(self, name: str) -> ChatRecord | None:
        """The chat with this name, if any."""
        return self._chat("name = ?", name)

    def list_chats(self) -> list[ChatRecord]:
        """All chats, most recently used first."""
        with self._cursor() as c:
            rows = c.execute(
                "SELECT id, name, system_prompt, model, created_at, updated_at FROM chats "
                "ORDER BY updated_at DESC, id DESC"
            ).fetchall()
        return [ChatRecord(*r) for r in rows]

    def last_chat(self) -> ChatRecord | None:
        """The most recently used chat."""
        chats = self.list_chats()
        return chats[0] if chats else None

    def rename_chat(self, chat_id: int, name: str) -> None:
        """Rename a chat; names are unique."""
        if not name.strip():
            raise StoreError("a chat name cannot be empty")
        try:
            with self._cursor() as c:
                c.execute(
                    "UPDATE chats SET name = ?, updated_at = ? WHERE id = ?",
                    (name.strip(), time.time(), chat_id),
                )
        except sqlite3.IntegrityError:
            raise StoreError(f"a chat named {name!r} already exists") from None

    def set_system_prompt(self, chat_id: int, system_prompt: str | None) -> None:
        """Set the chat's own system prompt (None: the configured default)."""
        with self._cursor() as c:
            c.execute("UPDATE chats SET system_prompt = ? WHERE id = ?", (system_prompt, chat_id))

    def set_model(self, chat_id: int, model: str) -> None:
        """Remember which model the chat used last."""
        with self._cursor() as c:
            c.execute("UPDATE chats SET model = ? WHERE id = ?", (model, chat_id))

    def delete_chat(self, chat_id: int) -> None:
        """Delete a chat and its messages."""
        with self._cursor() as c:
            c.execute("DELETE FROM chats WHERE id = ?", (chat_id,))

    # -- messages ------------------------------------------------------------------------------

    def add_message(
        self,
        chat_id: int,
        role: Literal["system", "user", "assistant"],
        content: str,
        *,
        thinking: str = "",
        status: Status = "complete",
        stats: dict[str, Any] | None = None,
    ) -> MessageRecord:
        """Append a message to a chat and commit it."""
        now = time.time()
        blob = json.dumps(stats) if stats is not None else None
        with self._cursor() as c:
            c.execute(
                "INSERT INTO messages (chat_id, role, content, thinking, status, stats, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (chat_id, role, content, thinking, status, blob, now),
            )
            msg_id = c.lastrowid
            c.execute("UPDATE chats SET updated_at = ? WHERE id = ?", (now, chat_id))
        assert msg_id is not None
        return MessageRecord(msg_id, chat_id, role, content, thinking, status, stats, now)

    def messages(self, chat_id: int) -> list[MessageRecord]:
        """A chat's messages in order."""
        with self._cursor() as c:
            rows = c.execute(
                "SELECT id, chat_id, role, content, thinking, status, stats, created_at FROM messages "
                "WHERE chat_id = ? ORDER BY id",
                (chat_id,),
            ).fetchall()
        return [
            MessageRecord(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]) if r[6] else None, r[7]) for r in rows
        ]

    def delete_message(self, message_id: int) -> None:
        """Delete one message (regenerate and edit replace the last turn)."""
        with self._cursor() as c:
            c.execute("DELETE FROM messages WHERE id = ?", (message_id,))

    def export_markdown(self, chat_id: int) -> str:
        """The chat as a Markdown document."""
        chat = self.get_chat(chat_id)
        if chat is None:
            raise StoreError(f"no chat with id {chat_id}")
        lines = [f"# {chat.name}", ""]
        if chat.system_prompt:
            lines += [f"> System: {chat.system_prompt}", ""]
        for m in self.messages(chat_id):
            who = "You" if m.role == "user" else "Assistant"
            mark = " (stopped)" if m.status == "cancelled" else ""
            lines += [f"## {who}{mark}", ""]
            if m.thinking:
                lines += ["<details><summary>Thinking</summary>", "", m.thinking, "", "</details>", ""]
            lines += [m.content, ""]
        return "\n".join(lines)
