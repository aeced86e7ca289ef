"""The chat history is private and safe to share between processes; chat names are never blank.

Issue 9, defects 2 (history readable by every user), 5 (two processes starting the same chat)
and the `--chat ""` / `--chat "   "` part of 8. The concurrency tests use real processes on a
real SQLite file, lined up with a barrier so they collide, over many rounds.
"""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgeassist.chat import Conversation
from edgeassist.config import load_settings
from edgeassist.errors import StoreError, UsageError
from edgeassist.store import Store


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o022, 0o000, 0o077], ids=["umask022", "umask000", "umask077"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def ask(*args: str, umask: int | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgeassist", "ask", "--max-tokens", "4", "--temperature", "0", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ.copy(),
        umask=-1 if umask is None else umask,
    )


class NamedEngine:
    """Enough of a ChatEngine for opening a conversation: only its name is read."""

    name = "fake"


# -- defect 2: private files -------------------------------------------------------------------


def test_a_new_history_is_private_whatever_the_umask(umask: int, isolated_env: Path) -> None:
    path = load_settings().store_path()
    store = Store(path)
    chat = store.create_chat("secrets")
    store.add_message(chat.id, "user", "my bank PIN is 1234")
    data_dir = isolated_env / "data" / "edgeassist"
    assert path.parent == data_dir
    assert mode(data_dir) == 0o700
    wal, shm = path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")
    assert wal.exists() and shm.exists()  # still open: SQLite's side files are there to check
    assert {p.name: mode(p) for p in (path, wal, shm)} == {p.name: 0o600 for p in (path, wal, shm)}
    store.close()


def test_an_existing_history_and_data_dir_are_tightened_when_opened(isolated_env: Path) -> None:
    data_dir = isolated_env / "data" / "edgeassist"
    data_dir.mkdir(parents=True)
    data_dir.chmod(0o755)
    path = data_dir / "history.sqlite3"
    old = sqlite3.connect(path)  # as an older edgeassist left it: world-readable, with its WAL
    old.execute("PRAGMA journal_mode=WAL")
    old.execute("CREATE TABLE t (x)")
    old.execute("INSERT INTO t VALUES (1)")
    old.commit()
    side = [path.with_name(path.name + s) for s in ("-wal", "-shm")]
    for p in (path, *side):
        p.chmod(0o644)

    store = Store(load_settings().store_path())
    assert mode(data_dir) == 0o700
    assert [mode(p) for p in (path, *side)] == [0o600, 0o600, 0o600]
    assert store.list_chats() == []
    assert old.execute("SELECT x FROM t").fetchall() == [(1,)]  # nothing else was disturbed
    old.close()
    store.close()


def test_a_folder_the_user_chose_keeps_its_mode_but_the_history_is_private(tmp_path: Path) -> None:
    mine = tmp_path / "documents"
    mine.mkdir()
    mine.chmod(0o755)
    Store(mine / "history.sqlite3").close()
    Store(mine / "new" / "deeper" / "history.sqlite3").close()
    assert mode(mine) == 0o755  # edgeassist does not change a folder it did not make
    assert mode(mine / "history.sqlite3") == 0o600
    assert mode(mine / "new") == mode(mine / "new" / "deeper") == 0o700
    assert mode(mine / "new" / "deeper" / "history.sqlite3") == 0o600


def test_a_history_that_cannot_be_made_private_is_one_line_and_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(StoreError, match="cannot open the chat history.*Not a directory") as err:
        Store(tmp_path / "file" / "history.sqlite3")
    assert "\n" not in str(err.value)
    folder = tmp_path / "folder.sqlite3"
    folder.mkdir(mode=0o755)
    with pytest.raises(StoreError, match="cannot open the chat history.*Is a directory"):
        Store(folder)
    assert mode(folder) == 0o755  # refused, not made private: it is not a history


def test_ask_saves_its_chat_privately(models_dir: Path, isolated_env: Path) -> None:
    r = ask("--chat", "private", "Say hi.", umask=0o022)
    assert r.returncode == 0, r.stderr
    data_dir = isolated_env / "data" / "edgeassist"
    assert mode(data_dir) == 0o700
    written = {p.name: mode(p) for p in data_dir.iterdir()}
    assert "history.sqlite3" in written
    wanted = {p.name: 0o700 if p.is_dir() else 0o600 for p in data_dir.iterdir()}
    assert written == wanted


# -- defect 5: several processes, one history ---------------------------------------------------

WORKERS = 4
ROUNDS = 25
APPENDS = 3


def _collide(index: int, root: str, barrier: Any, results: Any) -> None:
    """One process of the race: each round, open a new history and the same new chat as the others."""
    for rnd in range(ROUNDS):
        path = Path(root) / f"round{rnd}" / "history.sqlite3"
        try:
            barrier.wait()
            store = Store(path)  # every process creates and migrates the new database at once
            convo = Conversation.open(NamedEngine(), store, "X")  # type: ignore[arg-type]
            for n in range(APPENDS):
                store.add_message(convo.chat.id, "user", f"{index}:{n}")  # type: ignore[union-attr]
            barrier.wait()
            try:  # then all rename their own chat onto one name: exactly one may win
                mine = store.create_chat(f"mine {index}")
                store.rename_chat(mine.id, "taken")
                renamed = "renamed"
            except StoreError as e:
                renamed = "refused" if "already exists" in str(e) else f"{type(e).__name__}: {e}"
            store.close()
            results.put((index, rnd, "ok", renamed))
        except Exception as e:  # noqa: BLE001 - every failure is reported to the test, which names it
            results.put((index, rnd, f"{type(e).__name__}: {e}", ""))
            barrier.abort()  # the others stop waiting for this one
            return


def test_processes_starting_the_same_new_chat_all_continue_it(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    results = ctx.Queue()
    procs = [ctx.Process(target=_collide, args=(i, str(tmp_path), barrier, results)) for i in range(WORKERS)]
    for p in procs:
        p.start()
    got = []
    try:
        for _ in range(WORKERS * ROUNDS):
            item = results.get(timeout=120)  # only a bound on a hang; no speed is asserted
            got.append(item)
            if item[2] != "ok":
                break
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    failures = [g for g in got if g[2] != "ok"]
    assert not failures, failures[:3]
    assert len(got) == WORKERS * ROUNDS
    for rnd in range(ROUNDS):
        store = Store(tmp_path / f"round{rnd}" / "history.sqlite3")
        chats = [c for c in store.list_chats() if c.name == "X"]
        assert len(chats) == 1
        texts = [m.content for m in store.messages(chats[0].id)]
        assert sorted(texts) == sorted(f"{i}:{n}" for i in range(WORKERS) for n in range(APPENDS))
        for i in range(WORKERS):  # each process's messages stay in the order it sent them
            assert [t for t in texts if t.startswith(f"{i}:")] == [f"{i}:{n}" for n in range(APPENDS)]
        assert sorted(g[3] for g in got if g[1] == rnd) == ["refused"] * (WORKERS - 1) + ["renamed"]
        store.close()


def test_two_asks_starting_the_same_chat_are_both_answered_and_saved(models_dir: Path, isolated_env: Path) -> None:
    """The issue's probe as a person runs it; the barrier test above is the one that collides every time."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "edgeassist", "ask", "--max-tokens", "4", "--chat", "shared", question],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )
        for question in ("Say a.", "Say b.")
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    store = Store(isolated_env / "data" / "edgeassist" / "history.sqlite3")
    chat = store.find_chat("shared")
    assert chat is not None
    msgs = store.messages(chat.id)
    assert sorted(m.content for m in msgs if m.role == "user") == ["Say a.", "Say b."]
    assert [m.role for m in msgs].count("assistant") == 2
    store.close()


def test_a_message_for_a_chat_deleted_meanwhile_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    app, other = Store(path), Store(path)  # two processes' connections to one history
    chat = other.create_chat("going")
    app.delete_chat(chat.id)
    with pytest.raises(StoreError, match="deleted meanwhile"):
        other.add_message(chat.id, "assistant", "a reply that has nowhere to go")


# -- defect 8: chat names ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("", "blank"),
        ("   ", "blank"),
        ("\t\n", "blank"),
        ("a\tb", "control characters"),
        ("line\nbreak", "control characters"),
        ("bell\x07", "control characters"),
        ("esc\x1b[31m", "control characters"),
        ("para\u2029graph", "control characters"),
        ("bad\udcffbytes", "not UTF-8"),
    ],
)
def test_a_bad_chat_name_is_refused_everywhere(tmp_path: Path, name: str, needle: str) -> None:
    store = Store(tmp_path / "history.sqlite3")
    with pytest.raises(UsageError, match=needle):
        Conversation.open(NamedEngine(), store, name)  # type: ignore[arg-type]
    for attempt in (lambda: store.create_chat(name), lambda: store.open_chat(name)):
        with pytest.raises(StoreError, match=needle):
            attempt()
    ok = store.create_chat("fine")
    with pytest.raises(StoreError, match=needle):
        store.rename_chat(ok.id, name)
    assert [c.name for c in store.list_chats()] == ["fine"]


def test_a_chat_name_is_kept_without_surrounding_whitespace(tmp_path: Path) -> None:
    store = Store(tmp_path / "history.sqlite3")
    first = Conversation.open(NamedEngine(), store, "  Trip to Rome \n")  # type: ignore[arg-type]
    again = Conversation.open(NamedEngine(), store, "Trip to Rome")  # type: ignore[arg-type]
    emoji = store.create_chat("👨‍👩‍👧 family")  # joiners inside emoji are not control characters
    assert first.chat is not None and again.chat is not None and first.chat.id == again.chat.id
    assert sorted(c.name for c in store.list_chats()) == ["Trip to Rome", emoji.name]
    with pytest.raises(StoreError, match="already exists"):
        store.create_chat(" Trip to Rome ")


def test_ask_with_a_blank_chat_name_is_a_usage_error(models_dir: Path, isolated_env: Path) -> None:
    r = ask("--chat", "   ", "Say hi.")
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.splitlines() if line and "starter" not in line]
    assert len(lines) == 1 and "blank" in lines[0] and "Traceback" not in r.stderr
    store = Store(isolated_env / "data" / "edgeassist" / "history.sqlite3")
    assert store.list_chats() == []


def test_ask_with_an_empty_chat_name_is_a_usage_error(models_dir: Path) -> None:
    r = ask("--chat", "", "Say hi.")
    assert r.returncode == 2, r.stderr
    assert "blank" in r.stderr and "Traceback" not in r.stderr
