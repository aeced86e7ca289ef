"""`kill`, a closed terminal and a second Ctrl+C stop a reply the way one Ctrl+C does.

The reply is stopped, what was written is saved marked as stopped (with the earlier messages
intact and the database sound), the terminal is given back, and the exit code follows the shell
convention: 128 + the signal (130 SIGINT, 143 SIGTERM, 129 SIGHUP). The commands run as real
processes with the real starter model; the chat app also under a pseudo-terminal.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import sqlite3
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import pytest

from edgeassist.store import MessageRecord, Store

WAIT_S = 180.0
"""Longest any step waits (a failing test, never a hang); nothing here depends on how fast a step is."""
STORY = "Write a very long story about a lighthouse keeper."
EARLIER = [("user", "My name is Ada."), ("assistant", "Nice to meet you, Ada.")]


@pytest.fixture
def history(isolated_env: Path, models_dir: Path) -> Path:
    """The history database the commands use, holding the chat "story" with an earlier exchange."""
    path = isolated_env / "data" / "edgeassist" / "history.sqlite3"
    store = Store(path)
    chat = store.create_chat("story")
    store.add_message(chat.id, "user", EARLIER[0][1])
    store.add_message(chat.id, "assistant", EARLIER[1][1])
    store.close()
    return path


def saved(path: Path, chat: str = "story") -> list[MessageRecord]:
    """The chat's messages, after checking that the database is sound."""
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    store = Store(path)
    try:
        found = store.find_chat(chat)
        assert found is not None
        return store.messages(found.id)
    finally:
        store.close()


def assert_stopped_reply_saved(path: Path, question: str, printed: str | None = None) -> None:
    """The earlier exchange intact, then the question, then the partial reply marked as stopped
    (holding everything `printed` of it: the piece in hand when the signal came may be one more)."""
    msgs = saved(path)
    assert [(m.role, m.content) for m in msgs[:2]] == EARLIER
    assert [(m.role, m.status) for m in msgs[2:]] == [("user", "complete"), ("assistant", "cancelled")], msgs
    assert msgs[2].content == question
    assert msgs[3].content
    if printed is not None:
        assert printed.strip() and msgs[3].content.startswith(printed.strip()), (printed, msgs[3].content)


def one_line(err: str) -> str:
    """The one line stderr holds besides the note that the starter model is in use; no traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip() and "starter model" not in line]
    assert len(lines) == 1, err
    return lines[0]


def edgeassist(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgeassist", *args]


def read_until(stream: IO[bytes], predicate: Any, deadline: float) -> bytes:
    """Read `stream` until `predicate(everything read)` holds."""
    got = b""
    while not predicate(got):
        assert time.monotonic() < deadline, f"timed out; read so far: {got!r}"
        chunk = stream.read1(256)  # type: ignore[attr-defined]
        assert chunk, f"the stream ended; read so far: {got!r}"
        got += chunk
    return got


# -- a pseudo-terminal, for the chat app and for a terminal that hangs up ------------------------------


class Terminal:
    """A process on a pseudo-terminal of its own (its controlling terminal, as in an SSH session)."""

    def __init__(self, args: Sequence[str], env: dict[str, str], stderr: int | None = None) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        self.proc = subprocess.Popen(
            list(args),
            stdin=slave,
            stdout=slave,
            stderr=slave if stderr is None else stderr,
            env=env,
            start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),  # the pty becomes its terminal
        )
        os.close(slave)
        self.output = bytearray()
        self._lock = threading.Lock()
        self._more = threading.Condition(self._lock)  # notified on new output and when the output ends
        self._ended = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            self._read_until_closed()
        finally:
            with self._more:
                self._ended = True
                self._more.notify_all()

    def _read_until_closed(self) -> None:
        fd = self.master
        while True:
            try:
                ready, _, _ = select.select([fd], [], [], 0.05)
            except OSError:  # closed by `hang_up`
                return
            with self._lock:  # never read a number `hang_up` has closed: it may belong to another file by now
                if self.master < 0:
                    return
                if not ready:
                    continue
                try:
                    data = os.read(fd, 65536)
                except OSError:  # the process and its terminal have gone
                    return
                if not data:
                    return
                self.output += data
                self._more.notify_all()

    def wait_until(self, predicate: Any, what: str) -> Any:
        """Wait until `predicate(output so far)` is true-ish; return it."""
        deadline = time.monotonic() + WAIT_S
        with self._more:
            while True:
                result = predicate(bytes(self.output))
                if result:
                    return result
                assert not self._ended, f"the output ended ({self.proc.poll()}): {bytes(self.output)!r}"
                left = deadline - time.monotonic()
                assert left > 0, f"timed out waiting for {what}: {bytes(self.output[-2000:])!r}"
                self._more.wait(left)

    def wait_for(self, needle: bytes, start: int = 0) -> int:
        """Wait until `needle` appears in the output after `start`; where it ends."""
        at = self.wait_until(lambda out: out.find(needle, start) + 1, repr(needle))
        return int(at) - 1 + len(needle)

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def hang_up(self) -> None:
        """Close the terminal, as a dropped SSH connection does: the process gets SIGHUP."""
        with self._lock:
            if self.master >= 0:
                os.close(self.master)
                self.master = -1  # once only: the number may soon belong to another file

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.hang_up()


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    """Terminals opened by a test, closed (and their processes killed) after it."""
    opened: list[Terminal] = []
    yield opened
    for t in opened:
        t.close()


# -- ask ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("sig", "word"), [(signal.SIGTERM, "terminated"), (signal.SIGHUP, "hung up")])
def test_ask_stopped_by_a_signal_mid_reply_saves_it_as_stopped(history: Path, sig: int, word: str) -> None:
    proc = subprocess.Popen(
        edgeassist("ask", "--chat", "story", "--max-tokens", "2000", STORY),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )
    try:
        assert proc.stdout is not None
        shown = read_until(proc.stdout, lambda got: len(got.strip()) >= 20, time.monotonic() + WAIT_S)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig, err
    assert one_line(err.decode()) == f"edgeassist: {word}"
    assert_stopped_reply_saved(history, STORY, (shown + out).decode())


def test_ask_whose_terminal_hangs_up_saves_the_reply_and_exits_129(history: Path, terminals: list[Terminal]) -> None:
    # The SSH case: the process's own terminal goes away; writing to it fails from then on.
    term = Terminal(edgeassist("ask", "--chat", "story", "--max-tokens", "2000", STORY), os.environ.copy())
    terminals.append(term)
    start = term.wait_for(b"\r\n", term.wait_for(b"starter model"))  # the reply follows the note
    term.wait_until(lambda out: len(out[start:].strip()) >= 20, "the reply")
    term.hang_up()
    assert term.proc.wait(timeout=WAIT_S) == 129
    assert_stopped_reply_saved(history, STORY)


# -- the save, and a second signal, are never cut short ----------------------------------------------


def test_sigterm_landing_in_the_save_of_a_finished_reply_saves_it_once_as_complete(
    tmp_path: Path, fake_engine: Any
) -> None:
    from edgeassist.chat import Conversation
    from edgeassist.cli import Terminated, stop_signals

    store = Store(tmp_path / "history.sqlite3")
    chat = store.create_chat("story")
    convo = Conversation(fake_engine("alpha beta gamma"), store=store, chat=chat)
    write = store.add_message

    def signalled_write(chat_id: int, role: Any, content: str, **kw: Any) -> Any:
        if role == "assistant":  # SIGTERM arrives in the main thread just as the reply is written
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGTERM)
        return write(chat_id, role, content, **kw)

    store.add_message = signalled_write  # type: ignore[method-assign]
    with pytest.raises(Terminated), stop_signals():
        for _ in convo.send("go"):
            pass
    store.add_message = write  # type: ignore[method-assign]
    msgs = store.messages(chat.id)
    assert [(m.role, m.content, m.status) for m in msgs] == [
        ("user", "go", "complete"),
        ("assistant", "alpha beta gamma", "complete"),
    ]


def test_a_second_interrupt_does_not_cut_the_first_ones_cleanup_short() -> None:
    # Ctrl+C twice: the first stops the model; the second used to land while the caller waited for
    # the model to stop, so Python shut down with llama.cpp still running (a crash at exit).
    from edgeassist.cli import stop_signals
    from edgeassist.engine.modelthread import MODEL_THREAD

    main = threading.main_thread().ident or 0
    stop = threading.Event()
    finished = threading.Event()
    second_handled = threading.Event()
    raised: list[BaseException | None] = []

    def make() -> Iterator[int]:
        i = 0
        while not stop.is_set():
            i += 1
            yield i
        signal.pthread_kill(main, signal.SIGINT)  # the second Ctrl+C, while the caller waits for this
        assert second_handled.wait(WAIT_S), "the second Ctrl+C never reached its handler"
        finished.set()  # the model finishes its token only after the second Ctrl+C was handled

    with pytest.raises(KeyboardInterrupt), stop_signals():
        handler = signal.getsignal(signal.SIGINT)
        assert callable(handler)

        def counted(signum: int, frame: Any) -> None:
            # The handler stop_signals installed, watched: what it does with each Ctrl+C is recorded.
            try:
                handler(signum, frame)
                raised.append(None)
            except BaseException as e:
                raised.append(e)
                raise
            finally:
                if len(raised) == 2:
                    second_handled.set()

        signal.signal(signal.SIGINT, counted)
        for i in MODEL_THREAD.stream(make, stop):
            if i == 3:
                signal.pthread_kill(main, signal.SIGINT)  # the first Ctrl+C
    assert finished.is_set(), "the interrupt reached the caller while the model was still running"
    assert isinstance(raised[0], KeyboardInterrupt) and raised[1] is None  # the second one is ignored


# -- voice ------------------------------------------------------------------------------------------------


def test_voice_stopped_by_sigterm_mid_reply_saves_it(tmp_path: Path, history: Path) -> None:
    from audio_helpers import speak

    from edgeassist.speech.audio import write_wav

    question = "Tell me a very long story about a lighthouse keeper."
    audio, rate = speak(question)
    write_wav(tmp_path / "q.wav", audio, rate)
    proc = subprocess.Popen(
        edgeassist(
            "voice",
            "--input-wav",
            str(tmp_path / "q.wav"),
            "--output-wav",
            str(tmp_path / "a.wav"),
            "--chat",
            "story",
            "--max-tokens",
            "2000",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )
    try:
        assert proc.stdout is not None
        shown = read_until(
            proc.stdout,
            lambda got: b"assistant: " in got and len(got.split(b"assistant: ", 1)[1].strip()) >= 10,
            time.monotonic() + WAIT_S,
        )
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert one_line(err.decode()) == "edgeassist: terminated"
    heard = saved(history)[2].content
    assert_stopped_reply_saved(history, heard, (shown + out).decode().split("assistant: ", 1)[1])


# -- the chat app -----------------------------------------------------------------------------------------


def chat_app(history: Path) -> Terminal:
    env = os.environ.copy()
    env.update(TERM="xterm-256color", EDGEASSIST_GENERATION__MAX_TOKENS="2000")
    term = Terminal(edgeassist("chat", "--chat", "story"), env)
    term.wait_for(b"loaded in")  # the status bar: the model is ready
    term.type(STORY + "\r")
    term.wait_for(b"TTFT")  # the status bar's live figures: the reply is streaming
    return term


def test_chat_app_stopped_by_sigterm_saves_the_reply_and_restores_the_terminal(
    history: Path, terminals: list[Terminal]
) -> None:
    term = chat_app(history)
    terminals.append(term)
    mark = len(term.output)
    term.proc.send_signal(signal.SIGTERM)
    assert term.proc.wait(timeout=WAIT_S) == 143
    term.wait_for(b"edgeassist: terminated", mark)
    after = bytes(term.output[mark:])
    assert b"\x1b[?1049l" in after and b"\x1b[?25h" in after  # left the alternate screen, cursor shown
    assert b"Traceback" not in term.output
    assert_stopped_reply_saved(history, STORY)


def test_chat_app_whose_terminal_hangs_up_saves_the_reply_and_exits_129(
    history: Path, terminals: list[Terminal]
) -> None:
    term = chat_app(history)
    terminals.append(term)
    term.hang_up()
    assert term.proc.wait(timeout=WAIT_S) == 129
    assert_stopped_reply_saved(history, STORY)


async def test_chat_app_signal_path_stops_and_saves_the_reply(tmp_path: Path, fake_engine: Any) -> None:
    from test_tui import make_settings, ready, send, wait_until

    from edgeassist.tui import create_app

    gate = threading.Event()
    engine = fake_engine("alpha beta gamma delta epsilon", gate=gate, pause_at=2)
    app = create_app(make_settings(tmp_path), open_model=engine.opener(), new_chat=True)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await send(pilot, "go")
        await wait_until(pilot, engine.paused.is_set)
        app.quit_on_signal(signal.SIGTERM)
        await wait_until(pilot, lambda: app.return_code is not None, what="the app to exit")
    assert app.return_code == 143
    assert app.wait_idle(10) and app.chat is not None
    msgs = app.store.messages(app.chat.id)
    assert [(m.role, m.content, m.status) for m in msgs] == [
        ("user", "go", "complete"),
        ("assistant", "alpha beta", "cancelled"),
    ]
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers  # put back once the app is gone


def test_textual_output_survives_a_terminal_that_hangs_up() -> None:
    # Textual's output thread dies on the first failed write; the app then blocks on its full queue.
    import errno
    import io

    from textual.drivers._writer_thread import MAX_QUEUED_WRITES, WriterThread

    from edgeassist.tui.terminal import LostTerminalSafe

    class HungUp(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(errno.EIO, "Input/output error")

    safe = LostTerminalSafe(HungUp())
    writer = WriterThread(safe)  # type: ignore[arg-type]
    writer.start()
    done = threading.Event()

    def frames() -> None:
        for _ in range(MAX_QUEUED_WRITES * 4):
            writer.write("frame")
        writer.stop()
        done.set()

    threading.Thread(target=frames, daemon=True).start()
    assert done.wait(WAIT_S), "the app would block on Textual's output queue"
    assert safe.lost
