"""The log: llama.cpp's lines kept in a bounded ring (at load, never per token, never printed), Python's
warnings caught while the app runs, and the log screen that shows them as plain text."""

from __future__ import annotations

import logging
import time
import warnings
from collections import deque
from pathlib import Path

import pytest
from pilot import wait_until
from textual.app import App
from textual.widgets import Log

from edgeassist.engine.base import GenerationOptions
from edgeassist.engine.llama import LlamaEngine
from edgeassist.engine.log import LLAMA_LOG, LOG, LlamaLog, LogRing
from edgeassist.errors import ModelLoadError
from edgeassist.tui.logs import EMPTY, LogScreen, capture_python, format_line

DEBUG, INFO, WARN, ERROR, CONT = 1, 2, 3, 4, 5


def texts(ring: LogRing, mark: int = 0) -> list[tuple[str, str]]:
    """(level, text) of the ring's lines after `mark`."""
    return [(line.level, line.text) for line in ring.since(mark)[0]]


# -- the ring and the callback's feed ---------------------------------------------------------------------


def test_pieces_become_whole_lines_and_debug_is_dropped() -> None:
    ring, tail = LogRing(), deque[str](maxlen=20)
    feed = LlamaLog(ring, tail)
    feed.feed(INFO, b"llama_model_loader: loaded meta data\n")
    feed.feed(DEBUG, b"load_tensors: layer 0 assigned to CPU\n")
    feed.feed(CONT, b"more of the debug line\n")  # continues the DEBUG message: dropped too
    feed.feed(INFO, b"load_tensors: loading")
    feed.feed(CONT, b"....")
    feed.feed(CONT, b"... done\nsecond line\n")
    feed.feed(WARN, b"a warning without its newline")
    feed.feed(ERROR, b"error loading model: [tensor] out of bounds\n")
    feed.feed(INFO, None)  # (a NULL text from C)
    assert texts(ring) == [
        ("info", "llama_model_loader: loaded meta data"),
        ("info", "load_tensors: loading....... done"),
        ("info", "second line"),
        ("warning", "a warning without its newline"),
        ("error", "error loading model: [tensor] out of bounds"),
    ]
    assert list(tail) == ["a warning without its newline", "error loading model: [tensor] out of bounds"]
    assert feed.calls == 9


def test_the_ring_keeps_the_last_lines_and_marks_what_is_new() -> None:
    ring = LogRing(3)
    ring.add("llama.cpp", "info", "one\ntwo\n\n")
    lines, mark = ring.since(0)
    assert [line.text for line in lines] == ["one", "two"] and mark == 2
    ring.add("llama.cpp", "info", "three\nfour\nfive")
    lines, mark = ring.since(mark)
    assert [line.text for line in lines] == ["three", "four", "five"] and mark == 5
    assert [line.text for line in ring.since(0)[0]] == ["three", "four", "five"]  # bounded: the oldest went
    assert ring.since(mark) == ([], 5)


# -- real llama.cpp --------------------------------------------------------------------------------------


def test_llama_cpp_logs_at_load_and_never_per_token_and_prints_nothing(
    tiny_qwen35: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    mark = LOG.count
    # Fixed threads: an adaptive engine's thread change (llama.cpp logs each, at DEBUG) is not per token,
    # but a trial near a reply's end would make one reply's count differ from the other's.
    engine = LlamaEngine(tiny_qwen35, n_ctx=512, n_threads=2, adapt_threads=False)
    engine.load()
    loaded = texts(LOG, mark)
    assert any(text.startswith("llama_model_loader: loaded meta data") for _, text in loaded)
    assert {level for level, _ in loaded} <= {"info", "warning", "error"}
    assert not any("assigned to device" in text for _, text in loaded)  # DEBUG (one per layer): dropped
    messages = [{"role": "user", "content": "Tell me a long story."}]

    def callback_calls(tokens: int) -> tuple[int, int]:
        """llama.cpp's log calls and new ring lines during one reply of `tokens` tokens."""
        calls, lines = LLAMA_LOG.calls, LOG.count
        options = GenerationOptions(max_tokens=tokens, temperature=0.0, ignore_eos=True)
        done = [e for e in engine.stream(messages, options) if type(e).__name__ == "Done"]
        assert done[0].stats.generated_tokens == tokens
        return LLAMA_LOG.calls - calls, LOG.count - lines

    callback_calls(4)  # the first reply (the next ones restore its state: the same work each)
    short, long = callback_calls(8), callback_calls(24)
    assert short == long  # 16 more tokens, not one more call: nothing per token
    assert long[1] == 0  # and what a reply logs (a DEBUG line) is not kept
    engine.close()
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # nothing reached the terminal


def test_a_failed_load_says_llama_cpps_own_reason(starter_gguf: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(starter_gguf.read_bytes()[:5_000_000])
    mark = LOG.count
    with pytest.raises(ModelLoadError) as err:
        LlamaEngine(truncated).load()
    errors = [text for level, text in texts(LOG, mark) if level == "error"]
    assert errors[0].startswith("llama_model_load: error loading model: ")
    assert errors[0].endswith("data is not within the file bounds, model is corrupted or incomplete")
    assert f"({errors[0]})" in str(err.value)  # its own reason (it said "unknown error")
    assert "\n" not in str(err.value)


# -- Python's warnings, while the app runs ---------------------------------------------------------------


def test_python_warnings_and_log_records_go_to_the_ring_while_captured(capfd: pytest.CaptureFixture[str]) -> None:
    ring = LogRing()
    undo = capture_python(ring)
    try:
        warnings.warn("a [bold]deprecated[/bold] thing", UserWarning, stacklevel=1)
        logging.getLogger("edgeassist.test").error("the disk is [red]full[/red]")
        logging.getLogger("edgeassist.test").info("not kept: below WARNING")
    finally:
        undo()
    got = texts(ring)
    assert ("error", "the disk is [red]full[/red]") in got
    assert any(level == "warning" and "UserWarning: a [bold]deprecated[/bold] thing" in text for level, text in got)
    assert not any("not kept" in text for _, text in got)
    with warnings.catch_warnings(record=True):
        warnings.warn("after the undo", UserWarning, stacklevel=1)
    logging.getLogger("edgeassist.test").error("after the undo")
    assert not any("after the undo" in text for _, text in texts(ring))
    out, err = capfd.readouterr()
    assert "deprecated" not in out + err and "full" not in out + err  # captured, not printed


# -- the screen -------------------------------------------------------------------------------------------


class LogApp(App[None]):
    """Just the log screen, over the given ring."""

    def __init__(self, ring: LogRing) -> None:
        super().__init__()
        self.ring = ring

    def on_mount(self) -> None:
        self.push_screen(LogScreen(self.ring))


async def test_the_log_screen_shows_lines_as_text_newest_last_and_follows() -> None:
    ring = LogRing()
    app = LogApp(ring)
    async with app.run_test(size=(100, 20)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, LogScreen), what="the screen")
        log = app.screen.query_one(Log)
        assert list(log.lines) == [EMPTY]
        ring.add("llama.cpp", "info", 'llama_model_loader: kv 8: general.languages arr[str,1] = ["en"]')
        ring.add("llama.cpp", "error", "a [bold]markup-looking[/] line")
        await wait_until(pilot, lambda: len(log.lines) == 2, what="the new lines")
        first, last = log.lines
        assert first.endswith('llama.cpp info    llama_model_loader: kv 8: general.languages arr[str,1] = ["en"]')
        assert last.endswith("llama.cpp error   a [bold]markup-looking[/] line")  # newest last, as written
        assert "a [bold]markup-looking[/] line" in log.render_line(1).text  # shown as text, not interpreted
        await pilot.press("c")
        assert app.clipboard == "\n".join(log.lines)
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, LogScreen), what="the screen to close")


def test_a_line_shows_its_time_source_and_level() -> None:
    ring = LogRing()
    ring.add("py.warnings", "warning", "x.py:1: UserWarning:\tsomething")
    [line] = ring.since(0)[0]
    stamp = time.strftime("%H:%M:%S", time.localtime(line.time))
    assert format_line(line) == f"{stamp} py.warnings warning x.py:1: UserWarning:    something"  # (a tab: a TUI cell)


def test_a_log_line_written_while_one_is_being_kept_does_not_deadlock() -> None:
    """A finalizer (an engine collected mid-`add`) whose llama.cpp call logs re-enters the log on the same thread."""
    import threading

    from edgeassist.engine.log import LlamaLog, LogRing

    class Reentering(LogRing):
        def add(self, source: str, level: str, text: str) -> None:
            super().add(source, level, text)
            if text == "first":
                log.feed(2, b"from a finalizer\n")  # (level 2: an error line)

    ring = Reentering()
    log = LlamaLog(ring)
    worker = threading.Thread(target=lambda: (log.feed(2, b"first\n"), log.feed(2, b"second\n")), daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "the log deadlocked on itself"
    assert [line.text for line in ring.since(0)[0]] == ["first", "from a finalizer", "second"]
