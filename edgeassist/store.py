"""Chat history in SQLite (WAL): every message is written as soon as it exists.

A user message is saved when it is sent, a reply when it completes; a stopped reply is
saved with status `cancelled`. Each write is one short transaction, so a crash loses at most
the reply being generated.

Several processes may use one history at once (`ask --chat X` twice, the chat app beside
`voice`): every write that reads before it writes takes the write lock first (`BEGIN
IMMEDIATE`), waits for another writer up to the busy timeout, and finding-or-creating a chat
is one transaction. The database and its side files are 0600 (see `edgeassist.private`).

Beside the database, `states/` holds the model states the engine keeps so that a chat resumes
without reading its history again (see `edgeassist.engine.statefile`). The store names each
chat's file (a hash of the chat's id and creation time, never its name) and deletes it with the
chat, or when the chat is cleared.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import random
import re
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from edgeassist.errors import ImageError, StoreError
from edgeassist.images import ImageStore
from edgeassist.private import private_database, private_dir

Status = Literal["complete", "cut", "cancelled", "error"]
Role = Literal["system", "user", "assistant", "tool"]


def _json(text: str | None) -> dict[str, Any] | None:
    """A JSON object column back; NULL, or anything that is not an object, is None."""
    try:
        value = json.loads(text) if text else None
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _fenced(text: str, lang: str = "") -> list[str]:
    """`text` as a Markdown code block whose fence no run of backticks inside it can close."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + lang, text, fence]


BUSY_TIMEOUT_S = 10.0
"""How long a write waits for another process's write before it gives up ("database is locked")."""

SCHEMA_VERSION = 4
"""`PRAGMA user_version` of a database with the current schema; a lower one is migrated on open.

1: chats and messages. 2: `chats.settings`, a chat's own generation settings (JSON; NULL: none).
3: `tool` messages (a tool call and its result) and `messages.tool`, the call (JSON).
4: `messages.images`, a user message's pictures (JSON: sha256, format, name; the files are in `images/`).
A newer version opens as it is: every statement names its columns, so columns added later are left alone.
"""

SCHEMA = """
CREATE TABLE IF NOT EXISTS chats (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    system_prompt TEXT,
    model TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    settings TEXT
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    chat_id INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant', 'tool')),
    content TEXT NOT NULL,
    thinking TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'complete',
    stats TEXT,
    created_at REAL NOT NULL,
    tool TEXT,
    images TEXT
);
CREATE INDEX IF NOT EXISTS messages_chat ON messages(chat_id, id);
"""


@dataclass(frozen=True)
class ChatSettings:
    """A chat's own generation settings; None leaves a value to the configuration (or to the app's switch).

    The store keeps them as given: the front end checks them against the configuration's bounds
    before it saves them, and again when it applies them.
    """

    think: bool | None = None
    """Thinking on or off for this chat."""
    temperature: float | None = None
    """Sampling temperature."""
    top_p: float | None = None
    """Nucleus sampling threshold."""
    max_tokens: int | None = None
    """Most tokens of one reply."""
    n_ctx: int | None = None
    """Context window the model is loaded with for this chat."""

    def to_json(self) -> str | None:
        """The set values as a JSON object; None when nothing is set (the column stays NULL)."""
        values = {k: v for k, v in asdict(self).items() if v is not None}
        return json.dumps(values) if values else None

    @classmethod
    def from_json(cls, text: str | None) -> ChatSettings:
        """Read the column back; keys this version does not know (a newer one wrote them) are ignored."""
        try:
            data = json.loads(text) if text else {}
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            return cls()
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


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
    settings: ChatSettings = field(default_factory=ChatSettings)
    """The chat's own generation settings."""


_CHAT_COLUMNS = "id, name, system_prompt, model, created_at, updated_at, settings"


def _chat_record(row: tuple[Any, ...]) -> ChatRecord:
    """A `chats` row (in `_CHAT_COLUMNS` order) as a record."""
    chat_id, name, system_prompt, model, created_at, updated_at, settings = row
    return ChatRecord(chat_id, name, system_prompt, model, created_at, updated_at, ChatSettings.from_json(settings))


@dataclass(frozen=True)
class MessageRecord:
    """A saved message."""

    id: int
    """Row id."""
    chat_id: int
    """The chat it belongs to."""
    role: Role
    """Who said it (`tool`: a tool call of the reply, and its result)."""
    content: str
    """The text (for a reply: the answer, without thinking; for a tool call: its result)."""
    thinking: str
    """The model's thinking before the answer, if any."""
    status: Status
    """complete, cut (ended by the token limit or a full context), cancelled (stopped part-way) or error."""
    stats: dict[str, Any] | None
    """The reply's timing figures, as JSON."""
    created_at: float
    """Unix time it was saved."""
    tool: dict[str, Any] | None = None
    """A tool message's call: name, arguments, source, outcome, duration (as `ToolUse.to_dict()` keeps it)."""
    images: tuple[KeptImage, ...] = ()
    """A user message's pictures, in order (their files are in `Store.images`)."""


@dataclass(frozen=True)
class KeptImage:
    """A picture of a saved message: which file of the image store, and the name it came with."""

    sha256: str
    """Its content hash: the file's name in the image store."""
    format: str
    """JPEG, PNG or WEBP."""
    name: str = ""
    """The file name it was attached as (for the chat app and the export)."""

    def to_dict(self) -> dict[str, str]:
        """As the database keeps it."""
        return {"sha256": self.sha256, "format": self.format, "name": self.name}

    @classmethod
    def from_json(cls, text: str | None) -> tuple[KeptImage, ...]:
        """A message's pictures from the database; entries that are not well formed are left out."""
        try:
            entries = json.loads(text) if text else []
        except (ValueError, RecursionError):
            return ()
        out: list[KeptImage] = []
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict):
                continue
            if isinstance(entry.get("sha256"), str) and isinstance(entry.get("format"), str):
                out.append(cls(entry["sha256"], entry["format"], str(entry.get("name", ""))))
        return tuple(out)


# Characters a chat name may not hold: controls (tab, newline, escape: they break the one-line
# list and the terminal), line and paragraph separators, and lone surrogates, which is what
# bytes that are not UTF-8 become in argv and which SQLite cannot store.
_NAME_FORBIDDEN = frozenset({"Cc", "Cs", "Zl", "Zp"})


def states_dir(store_path: Path) -> Path:
    """The folder of kept model states for the history at `store_path`."""
    return Path(store_path).parent / "states"


def chat_name(name: str) -> str:
    """The name as it is stored: surrounding whitespace removed; ValueError if blank or holding control characters."""
    clean = name.strip()
    if not clean:
        raise ValueError("a chat name cannot be blank: give it at least one visible character")
    bad = next((ch for ch in clean if unicodedata.category(ch) in _NAME_FORBIDDEN), None)
    if bad is not None:
        what = "bytes that are not UTF-8" if unicodedata.category(bad) == "Cs" else "control characters"
        raise ValueError(f"a chat name cannot contain {what}: {clean!r}")
    return clean


class Store:
    """The SQLite history; safe to share between the UI thread and worker threads, and between processes."""

    def __init__(self, path: Path) -> None:
        """Open (creating if needed) the database at `path`, private to the user (0600)."""
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            # A folder the user named in `store.path` keeps its mode; the default data dir was already
            # made 0700 by `user_data_dir()`. Folders created here are private either way.
            private_dir(self.path.parent, tighten=False)
            private_database(self.path)  # before SQLite opens it, so no file is ever readable by others
            # `timeout` is SQLite's busy timeout, set before the first statement, which may have to wait too.
            self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, check_same_thread=False, isolation_level=None)
            self._enable_wal()
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except (sqlite3.Error, OSError) as e:
            raise StoreError(f"cannot open the chat history at {self.path}: {e}") from None

    def _enable_wal(self) -> None:
        """Switch to WAL; on a new database several processes may race to do it first.

        Leaving the rollback journal needs an exclusive lock, and SQLite answers SQLITE_BUSY at
        once, without its busy handler, when waiting could deadlock (two openers both holding a
        read lock). Retrying the statement is SQLite's documented answer, so retry until the
        busy timeout is spent.
        """
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as e:
                busy = "locked" in str(e) or "busy" in str(e)
                if not busy or time.monotonic() > deadline:
                    raise
            time.sleep(random.uniform(0.001, 0.02))  # jitter, so racing openers do not retry in step

    def _migrate(self) -> None:
        """Bring the schema up to SCHEMA_VERSION, once, even when several processes open a new database at once."""
        if self._db.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
            return
        self._db.execute("BEGIN IMMEDIATE")  # one migrator at a time; the others wait, then see it done
        try:
            if self._db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                # Version 1 made `chats` without `settings` (CREATE ... IF NOT EXISTS leaves it so): add it.
                columns = {row[1] for row in self._db.execute("PRAGMA table_info(chats)")}
                if "settings" not in columns:
                    self._db.execute("ALTER TABLE chats ADD COLUMN settings TEXT")
                # Before 3, `messages` allowed no `tool` role: a CHECK cannot be altered, so the table is rebuilt.
                if "tool" not in {row[1] for row in self._db.execute("PRAGMA table_info(messages)")}:
                    self._rebuild_messages()
                if "images" not in {row[1] for row in self._db.execute("PRAGMA table_info(messages)")}:
                    self._db.execute("ALTER TABLE messages ADD COLUMN images TEXT")
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._db.execute("COMMIT")
        finally:
            self._rollback()

    def _rebuild_messages(self) -> None:
        """Copy `messages` into a table of the current schema (inside the migration's transaction)."""
        create = SCHEMA[SCHEMA.index("CREATE TABLE IF NOT EXISTS messages") :].split(";")[0]
        columns = "id, chat_id, role, content, thinking, status, stats, created_at"
        self._db.execute(create.replace("IF NOT EXISTS messages", "messages_new"))
        self._db.execute(f"INSERT INTO messages_new ({columns}) SELECT {columns} FROM messages")
        self._db.execute("DROP TABLE messages")
        self._db.execute("ALTER TABLE messages_new RENAME TO messages")
        self._db.execute("CREATE INDEX IF NOT EXISTS messages_chat ON messages(chat_id, id)")

    @contextmanager
    def _cursor(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            try:
                yield self._db.cursor()
            except sqlite3.IntegrityError:
                raise
            except sqlite3.Error as e:
                raise StoreError(f"chat history error ({self.path}): {e}") from None

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Cursor]:
        """One transaction that holds the write lock from its start, for writes that read first.

        A deferred transaction that reads and then writes can fail at once with SQLITE_BUSY when
        another process wrote in between; taking the lock up front makes it wait its turn instead.
        """
        with self._cursor() as c:
            c.execute("BEGIN IMMEDIATE")
            try:
                yield c
                c.execute("COMMIT")
            finally:
                self._rollback()

    def _rollback(self) -> None:
        """End a transaction that did not commit; SQLite may already have rolled it back itself (disk full)."""
        if self._db.in_transaction:
            with suppress(sqlite3.Error):  # the error that got us here is the one worth reporting
                self._db.execute("ROLLBACK")

    @property
    def images(self) -> ImageStore:
        """The pictures of the chats' messages (`images/` beside the database, private), by content."""
        return ImageStore(self.path.parent / "images")

    def prune_images(self) -> None:
        """Delete the kept pictures no saved message shows any more (a chat deleted or cleared)."""
        with self._cursor() as c:
            rows = c.execute("SELECT images FROM messages WHERE images IS NOT NULL").fetchall()
        wanted = {kept.sha256 for (text,) in rows for kept in KeptImage.from_json(text)}
        folder = self.images.folder
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return
        except OSError as e:
            raise StoreError(f"cannot read the kept pictures in {folder}: {e.strerror or e}") from None
        for name in names:
            stem = name.split(".", 1)[0]
            if len(stem) == 64 and stem not in wanted:
                with suppress(FileNotFoundError):
                    os.unlink(folder / name)

    @property
    def states_dir(self) -> Path:
        """The folder of the chats' kept model states (`states/` beside the database)."""
        return states_dir(self.path)

    def state_path(self, chat: ChatRecord) -> Path:
        """Where `chat`'s model state is kept between processes."""
        key = hashlib.sha256(f"{chat.id}:{chat.created_at!r}".encode()).hexdigest()[:32]
        return self.states_dir / f"chat-{key}.state"

    def _forget_state(self, chat_id: int) -> None:
        """Delete a chat's kept model state (it holds the chat, as numbers)."""
        chat = self.get_chat(chat_id)
        if chat is None:
            return
        path = self.state_path(chat)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        except OSError as e:  # (the chat is not deleted: nothing of it is left behind unsaid)
            raise StoreError(f"cannot delete the chat's kept model state {path}: {e.strerror or e}") from None

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    # -- chats ---------------------------------------------------------------------------------

    def create_chat(
        self, name: str | None = None, *, system_prompt: str | None = None, model: str | None = None
    ) -> ChatRecord:
        """Create a chat; without a name it gets a unique one from the date and time.

        A name that is taken is a StoreError; use `open_chat` to continue a chat that may exist.
        """
        now = time.time()
        base = self._name(name) if name is not None else time.strftime("Chat %Y-%m-%d %H:%M", time.localtime(now))
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
                    raise StoreError(f"a chat named {base!r} already exists") from None
                n += 1
                candidate = f"{base} ({n})"
        assert chat_id is not None
        return ChatRecord(chat_id, candidate, system_prompt, model, now, now)

    def open_chat(self, name: str, *, system_prompt: str | None = None, model: str | None = None) -> ChatRecord:
        """The chat called `name`, created (with `system_prompt` and `model`) if there is none.

        One transaction: when two processes open the same new name at once, one creates the
        chat and both continue it, instead of the second failing with "already exists".
        """
        clean = self._name(name)
        now = time.time()
        with self._write() as c:
            c.execute(
                "INSERT INTO chats (name, system_prompt, model, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (name) DO NOTHING",
                (clean, system_prompt, model, now, now),
            )
            row = c.execute(f"SELECT {_CHAT_COLUMNS} FROM chats WHERE name = ?", (clean,)).fetchone()
        return _chat_record(row)

    @staticmethod
    def _name(name: str) -> str:
        try:
            return chat_name(name)
        except ValueError as e:
            raise StoreError(str(e)) from None

    def _chat(self, where: str, arg: object) -> ChatRecord | None:
        with self._cursor() as c:
            row = c.execute(f"SELECT {_CHAT_COLUMNS} FROM chats WHERE {where}", (arg,)).fetchone()
        return _chat_record(row) if row else None

    def get_chat(self, chat_id: int) -> ChatRecord | None:
        """The chat with this id, if any."""
        return self._chat("id = ?", chat_id)

    def find_chat(self, name: str) -> ChatRecord | None:
        """The chat with this name, if any."""
        return self._chat("name = ?", name)

    def list_chats(self) -> list[ChatRecord]:
        """All chats, most recently used first."""
        with self._cursor() as c:
            rows = c.execute(f"SELECT {_CHAT_COLUMNS} FROM chats ORDER BY updated_at DESC, id DESC").fetchall()
        return [_chat_record(r) for r in rows]

    def last_chat(self) -> ChatRecord | None:
        """The most recently used chat."""
        chats = self.list_chats()
        return chats[0] if chats else None

    def rename_chat(self, chat_id: int, name: str) -> None:
        """Rename a chat; names are unique, so renaming onto a taken name is a StoreError."""
        clean = self._name(name)
        try:
            with self._cursor() as c:
                c.execute("UPDATE chats SET name = ?, updated_at = ? WHERE id = ?", (clean, time.time(), chat_id))
        except sqlite3.IntegrityError:
            raise StoreError(f"a chat named {clean!r} already exists") from None

    def set_system_prompt(self, chat_id: int, system_prompt: str | None) -> None:
        """Set the chat's own system prompt (None: the configured default)."""
        with self._cursor() as c:
            c.execute("UPDATE chats SET system_prompt = ? WHERE id = ?", (system_prompt, chat_id))

    def set_settings(self, chat_id: int, settings: ChatSettings) -> None:
        """Set the chat's own generation settings (all None: the configuration's)."""
        with self._cursor() as c:
            c.execute("UPDATE chats SET settings = ? WHERE id = ?", (settings.to_json(), chat_id))

    def set_model(self, chat_id: int, model: str) -> None:
        """Remember which model the chat used last."""
        with self._cursor() as c:
            c.execute("UPDATE chats SET model = ? WHERE id = ?", (model, chat_id))

    def delete_chat(self, chat_id: int) -> None:
        """Delete a chat, its messages, its kept model state and the pictures no other chat shows."""
        self._forget_state(chat_id)
        with self._cursor() as c:
            c.execute("DELETE FROM chats WHERE id = ?", (chat_id,))
        self.prune_images()

    def clear_chat(self, chat_id: int) -> int:
        """Delete a chat's messages (and its kept model state), keeping the chat, its name and its settings.

        Returns how many messages went.
        """
        self._forget_state(chat_id)
        with self._write() as c:
            gone = c.execute("DELETE FROM messages WHERE chat_id = ?", (chat_id,)).rowcount
            c.execute("UPDATE chats SET updated_at = ? WHERE id = ?", (time.time(), chat_id))
        self.prune_images()
        return int(gone)

    # -- messages ------------------------------------------------------------------------------

    def add_message(
        self,
        chat_id: int,
        role: Role,
        content: str,
        *,
        thinking: str = "",
        status: Status = "complete",
        stats: dict[str, Any] | None = None,
        tool: dict[str, Any] | None = None,
        images: Sequence[KeptImage] = (),
    ) -> MessageRecord:
        """Append a message to a chat and commit it, with the chat's last-used time, as one transaction.

        `images` must be in `images` (the store's image folder) already: the row only names them.
        """
        now = time.time()
        blob = json.dumps(stats) if stats is not None else None
        call = json.dumps(tool) if tool is not None else None
        pictures = json.dumps([kept.to_dict() for kept in images]) if images else None
        try:
            with self._write() as c:
                c.execute(
                    "INSERT INTO messages (chat_id, role, content, thinking, status, stats, created_at, tool, images) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (chat_id, role, content, thinking, status, blob, now, call, pictures),
                )
                msg_id = c.lastrowid
                c.execute("UPDATE chats SET updated_at = ? WHERE id = ?", (now, chat_id))
        except sqlite3.IntegrityError as e:
            if "FOREIGN KEY" not in str(e):
                raise StoreError(f"chat history error ({self.path}): {e}") from None
            # The chat's row is gone: deleted (in the app, or by another process) while this one wrote to it.
            raise StoreError("the chat was deleted meanwhile, so this message was not saved") from None
        assert msg_id is not None
        return MessageRecord(msg_id, chat_id, role, content, thinking, status, stats, now, tool, tuple(images))

    def update_message(
        self,
        msg_id: int,
        content: str,
        *,
        thinking: str = "",
        status: Status = "complete",
        stats: dict[str, Any] | None = None,
    ) -> None:
        """Replace a message's text, status and figures (a continued reply), as one transaction."""
        blob = json.dumps(stats) if stats is not None else None
        with self._write() as c:
            cur = c.execute(
                "UPDATE messages SET content = ?, thinking = ?, status = ?, stats = ? WHERE id = ?",
                (content, thinking, status, blob, msg_id),
            )
            if cur.rowcount == 0:
                raise StoreError("the message was deleted meanwhile, so the continued reply was not saved")

    def messages(self, chat_id: int) -> list[MessageRecord]:
        """A chat's messages in order."""
        with self._cursor() as c:
            rows = c.execute(
                "SELECT id, chat_id, role, content, thinking, status, stats, created_at, tool, images FROM messages "
                "WHERE chat_id = ? ORDER BY id",
                (chat_id,),
            ).fetchall()
        return [
            MessageRecord(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                _json(r[6]),
                r[7],
                _json(r[8]) if r[2] == "tool" else None,
                KeptImage.from_json(r[9]) if r[2] == "user" else (),
            )
            for r in rows
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
            if m.role == "tool":
                lines += [*_tool_markdown(m), ""]
                continue
            if m.role == "assistant" and not m.content and not m.thinking:
                continue  # (a step that only called tools: its calls follow)
            who = "You" if m.role == "user" else "Assistant"
            mark = {"cancelled": " (stopped)", "cut": " (cut at the token limit)"}.get(m.status, "")
            lines += [f"## {who}{mark}", ""]
            if m.thinking:
                lines += ["<details><summary>Thinking</summary>", "", m.thinking, "", "</details>", ""]
            for kept in m.images:
                lines += [self._image_markdown(kept), ""]
            lines += [m.content, ""]
        return "\n".join(lines)

    def _image_markdown(self, kept: KeptImage) -> str:
        """A picture in an export: a link to the kept file (its name, as attached, is the alt text)."""
        try:
            path = self.images.path_for(kept.sha256, kept.format)
        except ImageError:
            return "*(a picture that could not be kept)*"
        alt = re.sub(r"[\[\]\\`*_<>\n\r]", " ", Path(kept.name).name or "picture").strip() or "picture"
        return f"![{alt}](<{path.resolve().as_uri()}>)"


def _tool_markdown(m: MessageRecord) -> list[str]:
    """A tool call in an export: a collapsed block with its arguments and result, both quoted as code."""
    call = m.tool or {}
    name = str(call.get("name", "?")).replace("`", "'")
    source = str(call.get("source", "")).replace("`", "'")
    outcome = str(call.get("outcome", ""))
    took = call.get("duration_s")
    took_text = f", {float(took):.2f} s" if isinstance(took, int | float) and took else ""
    args = json.dumps(call.get("arguments", {}), ensure_ascii=False, indent=2)
    return [
        f"<details><summary>Tool call: <code>{html.escape(name)}</code> ({html.escape(source)}): "
        f"{html.escape(outcome)}{took_text}</summary>",
        "",
        "Arguments:",
        "",
        *_fenced(args, "json"),
        "",
        "Result:",
        "",
        *_fenced(m.content, "text"),
        "",
        "</details>",
    ]
