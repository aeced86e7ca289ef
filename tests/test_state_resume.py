"""Chats resume at once: the model state a turn leaves is kept on disk and restored by the next process.

Real llama.cpp on real GGUFs: the tiny synthetic Qwen 3.5 (hybrid, whose state cannot be cut
back) and the starter SmolLM2 (a transformer). A "new process" is a new engine over the same
files, with nothing in memory; `ask` runs as real processes too. No timing is asserted: what is
checked is how many tokens each turn reuses and evaluates, and that the replies are the same.
"""

from __future__ import annotations

import ctypes
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from edgeassist.chat import Conversation
from edgeassist.engine import Done, GenerationOptions, Notice, Text
from edgeassist.engine.llama import LlamaEngine
from edgeassist.engine.statefile import MAGIC, StateFileError, StateFiles
from edgeassist.store import Store

SYSTEM = (
    "You are a careful assistant on a small device. Answer in one short sentence, plainly, "
    "without lists, and say so when you do not know."
)
GREEDY = GenerationOptions(temperature=0, max_tokens=12, seed=1)
QUESTIONS = ["Name a grey cat.", "Why that name?", "Give one more.", "Which is shortest?"]


def engine(path: Path, files: StateFiles | None, n_ctx: int = 1024) -> LlamaEngine:
    return LlamaEngine(path, n_ctx=n_ctx, n_threads=2, state_files=files)


def turn(convo: Conversation, text: str) -> tuple[str, Done, list[str]]:
    answer, notes, done = [], [], None
    for event in convo.send(text, options=GREEDY):
        if isinstance(event, Text):
            answer.append(event.text)
        elif isinstance(event, Notice):
            notes.append(event.text)
        elif isinstance(event, Done):
            done = event
    assert done is not None
    return "".join(answer), done, notes


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "data" / "history.sqlite3")


@pytest.fixture
def files(store: Store) -> StateFiles:
    return StateFiles(store.states_dir, 1 << 30)


def system_prompt_end(eng: LlamaEngine) -> int:
    """Tokens every chat under SYSTEM begins with (where its system prompt's state is kept)."""
    return eng.encode([{"role": "system", "content": SYSTEM}, {"role": "user", "content": "x"}], False).system_end


def chat(eng: LlamaEngine, store: Store, name: str = "cats") -> Conversation:
    return Conversation.open(eng, store, name, system_prompt=SYSTEM, options=GREEDY)


def talk(path: Path, store: Store, files: StateFiles | None, questions: list[str], name: str = "cats") -> list[Done]:
    """One process: open the chat, ask `questions`, close (the writer finishes)."""
    eng = engine(path, files)
    try:
        convo = chat(eng, store, name)
        return [turn(convo, q)[1] for q in questions]
    finally:
        eng.close()


# -- resuming -----------------------------------------------------------------------------------


def test_a_resumed_chat_evaluates_what_a_follow_up_in_the_same_process_does(
    tiny_qwen35: Path, store: Store, files: StateFiles
) -> None:
    talk(tiny_qwen35, store, files, QUESTIONS[:2])
    assert any(p.name.startswith("chat-") for p in store.states_dir.iterdir())

    # The same chat in one process, for comparison: turn 3 is an in-process follow-up there.
    same = talk(tiny_qwen35, Store(store.path.with_name("other.sqlite3")), None, QUESTIONS[:3])[-1]

    eng = engine(tiny_qwen35, files)
    try:
        convo = chat(eng, store)
        answer, done, notes = turn(convo, QUESTIONS[2])
    finally:
        eng.close()
    s = done.stats
    assert notes == []
    assert s.prompt_tokens == same.stats.prompt_tokens
    assert s.reused_tokens == same.stats.reused_tokens > s.prompt_tokens // 2
    assert s.evaluated_tokens == same.stats.evaluated_tokens
    # Restored, not merely counted: the reply is the one a full evaluation gives.
    cold = engine(tiny_qwen35, None)
    try:
        full = Conversation(cold, system_prompt=SYSTEM, options=GREEDY, store=store, chat=store.find_chat("cats"))
        full.turns = full.turns[:-2]  # (the history as it was before turn 3)
        events = list(cold.stream(full.context() + [{"role": "user", "content": QUESTIONS[2]}], GREEDY))
    finally:
        cold.close()
    assert events[-1].stats.reused_tokens == 0  # type: ignore[attr-defined]
    assert "".join(e.text for e in events if isinstance(e, Text)) == answer


def test_without_kept_states_a_resumed_chat_reads_its_whole_history(tiny_qwen35: Path, store: Store) -> None:
    talk(tiny_qwen35, store, None, QUESTIONS[:2])
    done = talk(tiny_qwen35, store, None, QUESTIONS[2:3])[0]
    assert done.stats.reused_tokens == 0 and done.stats.evaluated_tokens == done.stats.prompt_tokens
    assert not store.states_dir.exists()


def test_a_new_chat_starts_from_the_system_prompts_kept_state(
    tiny_qwen35: Path, store: Store, files: StateFiles
) -> None:
    talk(tiny_qwen35, store, files, QUESTIONS[:1], name="first")
    assert any(p.name.startswith("prompt-") for p in store.states_dir.iterdir())
    eng = engine(tiny_qwen35, files)
    try:
        system_end = system_prompt_end(eng)
        convo = chat(eng, store, "second")
        _, done, notes = turn(convo, "Hello?")
    finally:
        eng.close()
    assert notes == [] and system_end >= 16
    assert done.stats.reused_tokens == system_end


def test_a_transformers_chat_resumes_too(starter_gguf: Path, store: Store, files: StateFiles) -> None:
    talk(starter_gguf, store, files, QUESTIONS[:2])
    done = talk(starter_gguf, store, files, QUESTIONS[2:3])[0]
    s = done.stats
    assert s.reused_tokens > s.prompt_tokens // 2 and s.evaluated_tokens < s.prompt_tokens // 2


# -- a state that must not be restored ----------------------------------------------------------


def test_a_state_from_another_model_is_never_restored(
    tiny_qwen35: Path, starter_gguf: Path, store: Store, files: StateFiles
) -> None:
    talk(starter_gguf, store, files, QUESTIONS[:2])
    eng = engine(tiny_qwen35, files)
    try:
        _, done, notes = turn(chat(eng, store), QUESTIONS[2])
    finally:
        eng.close()
    assert len(notes) == 1 and "another model file" in notes[0] and "reading the prompt again" in notes[0]
    assert done.stats.reused_tokens == 0  # (nor is the system prompt's: no state of this model exists yet)
    # The chat goes on, saved, and its state is now this model's: the next process resumes it.
    assert [m.role for m in store.messages(store.find_chat("cats").id)][-2:] == ["user", "assistant"]
    again = talk(tiny_qwen35, store, files, QUESTIONS[3:4])[0]
    assert again.stats.reused_tokens > again.stats.prompt_tokens // 2


def test_a_state_for_another_context_size_is_never_restored(tiny_qwen35: Path, store: Store, files: StateFiles) -> None:
    talk(tiny_qwen35, store, files, QUESTIONS[:2])
    eng = engine(tiny_qwen35, files, n_ctx=2048)
    try:
        _, done, notes = turn(chat(eng, store), QUESTIONS[2])
    finally:
        eng.close()
    assert any("another context size" in n for n in notes)
    assert done.stats.reused_tokens == 0


def test_an_edited_history_is_read_again_with_a_note(tiny_qwen35: Path, store: Store, files: StateFiles) -> None:
    talk(tiny_qwen35, store, files, QUESTIONS[:2])
    cats = store.find_chat("cats")
    first_reply = store.messages(cats.id)[1]
    store.update_message(first_reply.id, "Smoky, the grey one.", thinking="", status="complete", stats=None)
    eng = engine(tiny_qwen35, files)
    try:
        system_end = system_prompt_end(eng)
        _, done, notes = turn(chat(eng, store), QUESTIONS[2])
    finally:
        eng.close()
    assert len(notes) == 1 and "no longer matches its history" in notes[0]
    assert done.stats.reused_tokens == system_end  # only the system prompt's state still holds


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        ("flip", "checksum"),
        ("truncate", "truncated"),
        ("garbage", "not a saved model state"),
        ("empty", "not a saved model state"),
    ],
)
def test_a_damaged_state_file_is_read_again_with_a_note_and_nothing_is_lost(
    tiny_qwen35: Path, store: Store, files: StateFiles, damage: str, said: str
) -> None:
    talk(tiny_qwen35, store, files, QUESTIONS[:2])
    path = store.state_path(store.find_chat("cats"))
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[-1000] ^= 0xFF
    elif damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data = bytearray(b"not a state at all" * 10)
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    before = len(store.messages(store.find_chat("cats").id))
    eng = engine(tiny_qwen35, files)
    try:
        system_end = system_prompt_end(eng)
        answer, done, notes = turn(chat(eng, store), QUESTIONS[2])
    finally:
        eng.close()
    assert len(notes) == 1 and said in notes[0] and "\n" not in notes[0]
    assert done.stats.reused_tokens == system_end and done.stats.generated_tokens > 0
    assert len(store.messages(store.find_chat("cats").id)) == before + 2
    # The damaged file was replaced by this turn's state: the next process resumes again.
    again = talk(tiny_qwen35, store, files, QUESTIONS[3:4])[0]
    assert again.stats.reused_tokens > again.stats.prompt_tokens // 2


# -- the files ----------------------------------------------------------------------------------


def test_state_files_are_private_whole_and_named_by_the_store(
    tiny_qwen35: Path, store: Store, files: StateFiles
) -> None:
    talk(tiny_qwen35, store, files, QUESTIONS[:1])
    folder = store.states_dir
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 2 and all(n.endswith(".state") and "cats" not in n for n in names)
    for p in folder.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
        assert p.read_bytes().startswith(MAGIC)
    # Deleting or clearing a chat deletes its state (it holds the chat, as numbers).
    cats = store.find_chat("cats")
    assert store.state_path(cats).exists()
    store.clear_chat(cats.id)
    assert not store.state_path(cats).exists()


def test_deleting_a_chat_deletes_its_state(store: Store, files: StateFiles) -> None:
    chat_rec = store.create_chat("gone")
    path = store.state_path(chat_rec)
    files.write(path, {"model": "m"}, [1, 2, 3], (ctypes.c_uint8 * 8)())
    assert path.exists()
    store.delete_chat(chat_rec.id)
    assert not path.exists()
    # A chat made later with the same row id gets another file.
    again = store.create_chat("gone")
    assert store.state_path(again) != path or again.id != chat_rec.id


def test_only_names_of_its_own_folder_are_written(tmp_path: Path, files: StateFiles) -> None:
    data = (ctypes.c_uint8 * 4)(1, 2, 3, 4)
    outside = tmp_path / "chat-0123456789abcdef0123.state"
    files.save(outside, {}, [1], data)
    files.save(files.folder / "../chat-0123456789abcdef0123.state", {}, [1], data)
    files.save(files.folder / "notes.txt", {}, [1], data)
    assert files.flush()
    assert not outside.exists() and not (files.folder / "notes.txt").exists()


def test_the_folder_is_kept_under_its_cap_least_recently_used_first(tmp_path: Path) -> None:
    files = StateFiles(tmp_path / "states", cap_bytes=4 * 1200)  # (a file is about 1,100 bytes: four fit)
    data = (ctypes.c_uint8 * 1000)()
    paths = [files.folder / f"chat-{i:032x}.state" for i in range(4)]
    for i, p in enumerate(paths):
        files.write(p, {"n": i}, [i], data)
        os.utime(p, (1000 + i, 1000 + i))
    files.read(paths[0])  # used: now the newest
    files.write(files.folder / f"chat-{9:032x}.state", {}, [9], data)
    kept = {p.name for p in files.folder.iterdir()}
    assert paths[0].name in kept and f"chat-{9:032x}.state" in kept
    assert paths[1].name not in kept and paths[2].name in kept  # the least recently used went, alone
    assert files.usage() <= files.cap_bytes
    assert not [n for n in os.listdir(files.folder) if n.endswith(".tmp")]
    # A write a killed process left half done is removed once it is old (a running one is left alone).
    stale, running = (files.folder / f".chat-{i:032x}.state.99.{i}.tmp" for i in (1, 2))
    stale.write_bytes(b"half")
    running.write_bytes(b"half")
    os.utime(stale, (1000, 1000))
    files.evict()
    assert not stale.exists() and running.exists()


def test_a_state_written_and_read_back_is_the_same(tmp_path: Path) -> None:
    files = StateFiles(tmp_path / "states", 1 << 20)
    data = (ctypes.c_uint8 * 300)(*range(256), *range(44))
    path = files.folder / f"prompt-{0:032x}.state"
    files.save(path, {"model": "x", "n_ctx": 8}, [5, 6, 7], data)
    assert files.flush()
    header, back = files.read(path)
    assert header.tokens == [5, 6, 7] and header.fingerprint == {"model": "x", "n_ctx": 8}
    assert bytes(back) == bytes(data)
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(StateFileError, match="trailing"):
        files.read(path)


# -- across real processes ----------------------------------------------------------------------


def test_ask_resumes_a_chat_in_a_new_process(tiny_qwen35: Path) -> None:
    def ask(question: str) -> dict[str, object]:
        r = subprocess.run(
            [sys.executable, "-m", "edgeassist", "ask", "--json", "-m", str(tiny_qwen35), "--chat", "resume"]
            + ["--temperature", "0", "--max-tokens", "8", question],
            capture_output=True,
            text=True,
            timeout=300,
            env=os.environ.copy(),
        )
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)["stats"]  # type: ignore[no-any-return]

    first = ask("Name a grey cat.")
    assert first["reused_tokens"] == 0
    second = ask("Why that name?")
    assert second["reused_tokens"] > first["prompt_tokens"] // 2  # type: ignore[operator]
    assert second["evaluated_tokens"] < second["prompt_tokens"] // 2  # type: ignore[operator]


def test_a_folder_made_elsewhere_is_never_made_again(tmp_path: Path) -> None:
    folder = tmp_path / "bench-states"
    folder.mkdir()
    files = StateFiles(folder, 1 << 20, create=False)  # (the bench's temporary folder)
    path = folder / f"chat-{1:032x}.state"
    files.write(path, {}, [1], (ctypes.c_uint8 * 4)())
    folder.joinpath(path.name).unlink()
    folder.rmdir()
    files.save(path, {}, [2], (ctypes.c_uint8 * 4)())  # a write that comes after the folder went
    assert files.flush()
    assert not folder.exists() and len(files.failures) == 1


def test_a_state_that_cannot_be_deleted_keeps_the_chat_and_says_so(store: Store) -> None:
    from edgeassist.errors import StoreError

    chat_rec = store.create_chat("stuck")
    path = store.state_path(chat_rec)
    path.mkdir(parents=True)  # (not a file: unlink fails)
    with pytest.raises(StoreError, match="cannot delete the chat's kept model state"):
        store.delete_chat(chat_rec.id)
    assert store.find_chat("stuck") is not None  # nothing deleted half-way


def test_hostile_files_in_the_folder_are_refused_and_links_never_written_through(tmp_path: Path) -> None:
    import struct

    files = StateFiles(tmp_path / "states", 1 << 20)
    files.folder.mkdir()
    path = files.folder / f"chat-{7:032x}.state"
    # A header that is not UTF-8, one that claims to be huge, tokens that are not numbers: one-line refusals.
    for raw in (b"\xff\xfe<|im_start|>", b"x" * 10):
        path.write_bytes(MAGIC + struct.pack("<I", len(raw)) + raw)
        with pytest.raises(StateFileError, match="header is corrupt"):
            files.header(path)
    path.write_bytes(MAGIC + struct.pack("<I", 1 << 30))
    with pytest.raises(StateFileError, match="header is corrupt"):
        files.header(path)
    bad = json.dumps({"version": 1, "fingerprint": {}, "tokens": ["</tool_response>"], "size": 0, "crc": 0}).encode()
    path.write_bytes(MAGIC + struct.pack("<I", len(bad)) + bad)
    with pytest.raises(StateFileError, match="header is corrupt"):
        files.header(path)
    # A link planted under a state's name, pointing out of the folder: read, it is not a state; written, the
    # link itself is replaced and the file it pointed to is untouched.
    outside = tmp_path / "precious.txt"
    outside.write_text("mine")
    path.unlink()
    path.symlink_to(outside)
    with pytest.raises(StateFileError, match="not a saved model state"):
        files.read(path)
    files.write(path, {}, [1], (ctypes.c_uint8 * 4)())
    assert outside.read_text() == "mine" and not path.is_symlink() and files.header(path) is not None
