"""Pull a catalog model from the chat app: progress on a small screen, Esc stops, and the app switches to it.

The download is `edgeassist pull NAME` in a child process, watched from a thread worker. Why not
`hub.pull` in a thread: a stop must be at once and leave what Ctrl+C on `edgeassist pull` leaves
(the partial file, which the next pull resumes; the lock released), and huggingface-hub's
`http_get` cannot be told to stop: a thread would run on to the end of its 10 MiB chunk, or of a
stalled read's timeout. The child runs the same command a person types, so the same one download
path (`hub.pull`: staged, locked, resumable, verified); SIGTERM stops it the way Ctrl+C does
(`cli.stop_signals`). Progress is the staged part's size (`hub.list_models`); the child's status
lines (pulling, resuming, verifying) are shown as they come, and its one-line error is the app's.

A pull's life is one state machine (`PullState`), moved only by `ChildPull.run` and announced by
one message (`PullChanged`); `PullRoom` shows it and acts on its ending.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum
from functools import partial
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol, cast

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Label, ProgressBar, Static
from textual.worker import get_current_worker

from edgeassist.errors import EdgeAssistError
from edgeassist.hub import ModelRow, list_models
from edgeassist.tui.room import Room, Session
from edgeassist.units import format_bytes

if TYPE_CHECKING:
    from textual.app import App

    from edgeassist.config import Settings

POLL_S = 0.25
"""How often the worker looks at the child and the staged part."""
STOP_WAIT_S = 15.0
"""How long a stopped child may take to release its lock before it is killed."""
ERROR_PREFIX = "edgeassist: "
"""How `edgeassist` starts its one error line on stderr."""


class PullState(Enum):
    """Where a pull is: running, then one ending, which is final."""

    PULLING = "pulling"
    """The child runs: asking the hub, downloading, resuming, or verifying."""
    DONE = "done"
    """The model is in the models folder, verified."""
    STOPPED = "stopped"
    """Stopped on request; the partial download is kept for the next pull to resume."""
    FAILED = "failed"
    """The pull failed; `error` says why in one line."""


@dataclass(frozen=True)
class PullStatus:
    """What is known of a pull now: what the screen shows and the room acts on."""

    name: str
    """The catalog name pulled, `qwen3.5-2b:q4_k_m`."""
    state: PullState = PullState.PULLING
    """Where it is."""
    done_bytes: int = 0
    """Bytes staged so far (all of them once it is in place)."""
    total_bytes: int | None = None
    """The catalog's size for it (the hub's size is what the pull checks)."""
    total_exact: bool = True
    """False when `total_bytes` is the catalog's estimate."""
    note: str = ""
    """The pull's latest status line (`pulling …`, `resuming …`, `verifying …`)."""
    path: Path | None = None
    """The model file, once done."""
    error: str | None = None
    """Why it failed, in one line."""

    @property
    def fraction(self) -> float | None:
        """How far it is, 0..1 (None when the size is unknown)."""
        if not self.total_bytes:
            return None
        return min(1.0, self.done_bytes / self.total_bytes)

    def progress_text(self) -> str:
        """`412 MB of 1.3 GB (32%)`."""
        if self.fraction is None or self.total_bytes is None:
            return format_bytes(self.done_bytes)
        total = ("" if self.total_exact else "~") + format_bytes(self.total_bytes)
        return f"{format_bytes(self.done_bytes)} of {total} ({100 * self.fraction:.0f}%)"


@dataclass
class PullChanged(Message):
    """A pull moved on; a queued progress message of the same pull is superseded by a newer one."""

    status: PullStatus
    """Where it is now."""

    def can_replace(self, message: Message) -> bool:
        """Progress replaces progress; an ending is never replaced."""
        return (
            isinstance(message, PullChanged)
            and message.status.name == self.status.name
            and message.status.state is PullState.PULLING
        )


Lines = queue.SimpleQueue[str | None]
"""The child's stderr, a line at a time (None: it has closed)."""


def _read_lines(stream: IO[str], into: Lines) -> None:
    """Copy `stream`'s lines into `into`, then None (a thread: reading blocks)."""
    for line in stream:
        into.put(line.rstrip("\r\n"))
    into.put(None)


def staged_bytes(name: str, models_dir: Path) -> tuple[int, bool]:
    """Bytes of `name` staged in the models folder so far, and whether it is in place (complete)."""
    row = next((r for r in list_models(models_dir) if r.name == name), None)
    if row is None:
        return 0, False
    if row.on_disk:
        return row.size_bytes or 0, True
    return row.partial_bytes or 0, False


class ChildPull:
    """One pull, as `edgeassist pull NAME` in a child process; `run` watches it to its end, `stop` ends it early."""

    def __init__(self, row: ModelRow, settings: Settings) -> None:
        """Pull the catalog model of `row` with the hub settings and models folder of `settings`."""
        self.models_dir = settings.models_dir()
        self.hub_endpoint = settings.hub.endpoint
        self.hub_offline = settings.hub.offline
        self.status = PullStatus(
            row.name, done_bytes=row.partial_bytes or 0, total_bytes=row.size_bytes, total_exact=row.size_is_exact
        )
        self.returncode: int | None = None
        """The child's exit status once it has ended (143: stopped by SIGTERM, as `edgeassist pull` reports it)."""
        self._stop = threading.Event()

    def stop(self) -> None:
        """Ask the pull to stop (any thread): the child is sent SIGTERM within `POLL_S`."""
        self._stop.set()

    def command(self) -> list[str]:
        """The child's command line: the `edgeassist` of this interpreter."""
        return [sys.executable, "-m", "edgeassist", "pull", self.status.name]

    def environment(self) -> dict[str, str]:
        """The child's environment: this one, with the app's models folder and hub settings, and no progress bar."""
        env = dict(os.environ)
        env["EDGEASSIST_MODEL__MODELS_DIR"] = str(self.models_dir)
        env["EDGEASSIST_HUB__OFFLINE"] = "true" if self.hub_offline else "false"
        if self.hub_endpoint:
            env["EDGEASSIST_HUB__ENDPOINT"] = self.hub_endpoint
        env["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # its bar would only fill our pipe; progress is the part's size
        env["PYTHONIOENCODING"] = "utf-8"
        return env

    def run(self, report: Callable[[PullStatus], None], cancelled: Callable[[], bool]) -> PullStatus:
        """Run the pull to its end (blocking: a thread worker's job); `report` each change, the ending last.

        `cancelled` is polled with `stop`: either one stops the child (the app quitting cancels its workers).
        """
        try:
            child = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self.environment(),
                text=True,
                encoding="utf-8",
                errors="replace",
            )
        except OSError as e:
            return self._end(report, PullState.FAILED, error=f"cannot start `edgeassist pull`: {e.strerror or e}")
        try:
            return self._watch(child, report, cancelled)
        except Exception as e:  # noqa: BLE001 - a bug here must not leave a download running, or end the app
            _stop_child(child)
            self.returncode = child.returncode
            if self.status.state is not PullState.PULLING:
                return self.status
            return self._end(report, PullState.FAILED, error=f"unexpected error while pulling {self.status.name}: {e}")

    def _watch(
        self, child: subprocess.Popen[str], report: Callable[[PullStatus], None], cancelled: Callable[[], bool]
    ) -> PullStatus:
        """Follow the child to its end, reporting progress; stop it when asked; then say how it ended."""
        assert child.stdout is not None and child.stderr is not None
        lines: Lines = queue.SimpleQueue()
        reader = threading.Thread(target=_read_lines, args=(child.stderr, lines), name="pull-stderr", daemon=True)
        reader.start()
        said: list[str] = []
        while child.poll() is None:
            if self._stop.wait(POLL_S) or cancelled():
                self._stop.set()
                _stop_child(child)
                break
            self._progress(report, lines, said)
        self.returncode = child.wait()
        reader.join()
        self._drain(lines, said)
        out = child.stdout.read().strip().splitlines()
        if self.returncode == 0:  # (done even when a stop came as it finished: the model is in place)
            path = Path(out[-1]) if out else None
            return self._end(report, PullState.DONE, path=path, done_bytes=self.status.total_bytes or 0)
        if self._stop.is_set():
            try:
                kept, _ = staged_bytes(self.status.name, self.models_dir)
            except (OSError, EdgeAssistError):
                kept = self.status.done_bytes
            return self._end(report, PullState.STOPPED, done_bytes=kept)
        return self._end(report, PullState.FAILED, error=_error_line(said, self.returncode))

    def _progress(self, report: Callable[[PullStatus], None], lines: Lines, said: list[str]) -> None:
        """Report the part's size and the child's latest status line when either changed."""
        self._drain(lines, said)
        note = next((s for s in reversed(said) if not s.startswith(ERROR_PREFIX)), self.status.note)
        try:
            done, _ = staged_bytes(self.status.name, self.models_dir)
        except (OSError, EdgeAssistError):  # the folder changing under us: keep the last figure
            done = self.status.done_bytes
        if (done, note) != (self.status.done_bytes, self.status.note):
            self.status = replace(self.status, done_bytes=done, note=note)
            report(self.status)

    @staticmethod
    def _drain(lines: Lines, said: list[str]) -> None:
        while True:
            try:
                line = lines.get_nowait()
            except queue.Empty:
                return
            if line:
                said.append(line.strip())

    def _end(self, report: Callable[[PullStatus], None], state: PullState, **changes: Any) -> PullStatus:
        """The one place a pull leaves `PULLING`; the ending is reported like any change."""
        assert self.status.state is PullState.PULLING, f"a pull cannot go from {self.status.state} to {state}"
        self.status = replace(self.status, state=state, **changes)
        report(self.status)
        return self.status


def _stop_child(child: subprocess.Popen[str]) -> None:
    """SIGTERM (as Ctrl+C: the part is kept, the lock released), then a kill if it does not end in time."""
    try:
        child.terminate()
        child.wait(STOP_WAIT_S)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
    except OSError:  # it had already gone
        pass


def _error_line(said: list[str], code: int) -> str:
    """The child's one error line, else its last line, else its exit status: never a traceback."""
    for line in reversed(said):
        if line.startswith(ERROR_PREFIX):
            return line.removeprefix(ERROR_PREFIX)
    last = said[-1] if said else ""
    return f"`edgeassist pull` failed (exit status {code}){': ' + last if last else ''}"


class PullHost(Protocol):
    """What a pull's ending needs of the app: whether a reply is being written, and a way to switch models."""

    @property
    def generating(self) -> bool:
        """Whether a reply is being written (switching would stop it)."""

    async def switch_model(self, name: str, on_server: bool = False) -> None:
        """Load the model called `name` in place of the current one."""


class PullRoom(Room):
    """The app's pull (one at a time): started from the palette, shown on `PullScreen`, switched to when in.

    Wire it into the app with `self.pulls = PullRoom(self, self.session)` and hand it `PullChanged`.
    """

    def __init__(self, app: App[Any], session: Session) -> None:
        """A room of `app`."""
        super().__init__(app, session)
        self.job: ChildPull | None = None
        """The pull running, if any."""
        self.status: PullStatus | None = None
        """The latest pull's status (kept after it ends)."""

    @property
    def running(self) -> bool:
        """Whether a pull is running."""
        return self.job is not None

    def start(self, row: ModelRow) -> None:
        """Pull the catalog model of `row` and show its progress; a second pull waits for the first to end."""
        if self.job is not None:
            if self.job.status.name == row.name:
                self.show()
            else:
                self.app.notify(
                    f"{self.job.status.name} is being pulled; one pull at a time (Esc on its progress stops it).",
                    severity="warning",
                )
            return
        try:
            job = ChildPull(row, self.session.settings)
        except EdgeAssistError as e:  # the models folder cannot be made
            self.app.notify(str(e), severity="error")
            return
        self.job, self.status = job, job.status
        self.app.run_worker(partial(self._run, job), name=f"pull {row.name}", group="pull", thread=True)
        self.show()

    def _run(self, job: ChildPull) -> None:
        """The worker: run the pull, posting each change to the app."""
        worker = get_current_worker()

        def report(status: PullStatus) -> None:
            try:
                self.app.post_message(PullChanged(status))
            except RuntimeError:  # the app has closed its loop: nobody is left to tell
                pass

        job.run(report, lambda: worker.is_cancelled)

    def _screen(self) -> PullScreen | None:
        """The progress screen, if it is up (maybe under the palette)."""
        return next((s for s in self.app.screen_stack if isinstance(s, PullScreen)), None)

    def show(self) -> None:
        """Show the running pull's progress (again)."""
        if self.job is not None and self._screen() is None:
            self.app.push_screen(PullScreen(self.job.status, stop=self.stop))

    def stop(self) -> None:
        """Stop the running pull (its partial download stays, to resume)."""
        if self.job is not None:
            self.job.stop()

    async def on_changed(self, message: PullChanged) -> None:
        """Show the change; on an ending, close the progress and switch to the model or say why not."""
        status = message.status
        if self.job is None or status.name != self.job.status.name:
            return  # (a message from a pull already ended)
        self.status = status
        screen = self._screen()
        if screen is not None:
            screen.show(status)  # (an ending closes it)
        if status.state is PullState.PULLING:
            return
        self.job = None
        if self.session.quitting:
            return
        await self._ended(status)

    async def _ended(self, status: PullStatus) -> None:
        host = cast(PullHost, self.app)
        if status.state is PullState.DONE:
            if host.generating:
                self.app.notify(f"{status.name} is downloaded: ctrl+p, Model: {status.name} switches to it.")
                return
            self.app.notify(f"{status.name} is downloaded: switching to it.")
            await host.switch_model(status.name)
        elif status.state is PullState.STOPPED:
            kept = f"{format_bytes(status.done_bytes)} kept" if status.done_bytes else "nothing was downloaded yet"
            self.app.notify(
                f"Pull of {status.name} stopped ({kept}); pull it again from ctrl+p to resume.", severity="warning"
            )
        else:
            self.app.notify(status.error or f"the pull of {status.name} failed", title="Pull failed", severity="error")


class PullScreen(ModalScreen[None]):
    """A pull's progress: the bytes, the pull's latest line; Esc stops it, h hides this (the pull goes on)."""

    BINDINGS = [Binding("escape", "stop", "Stop"), Binding("h", "hide", "Hide")]
    DEFAULT_CSS = """
    PullScreen #pull-bar { width: 100%; margin: 1 0 0 0; }
    PullScreen #pull-bar Bar { width: 1fr; }
    PullScreen #pull-bytes, PullScreen #pull-note { height: auto; }
    PullScreen #pull-note { color: $text-muted; }
    """

    def __init__(self, status: PullStatus, *, stop: Callable[[], None]) -> None:
        """Show `status`; `stop` stops the pull."""
        super().__init__()
        self.status = status
        self._stop = stop
        self.stopping = False

    def compose(self) -> ComposeResult:
        """Title, bar, bytes, the latest line, and the two buttons."""
        with Vertical(classes="dialog wide"):
            yield Label(f"Pulling {self.status.name}", classes="dialog-text", markup=False)
            yield ProgressBar(total=None, show_eta=False, id="pull-bar")
            yield Static("", id="pull-bytes", markup=False)
            yield Static("", id="pull-note", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Stop (Esc)", variant="error", id="stop")
                yield Button("Hide (h)", id="hide")
            yield Static("Hidden, it goes on; ctrl+p shows it again.", classes="dialog-hint", markup=False)

    def on_mount(self) -> None:
        """Show where the pull is."""
        self.show(self.status)
        self.query_one("#hide", Button).focus()  # a stray Enter hides rather than stops

    def on_screen_resume(self) -> None:
        """Back on top (the palette closed): close if the pull ended meanwhile."""
        if self.status.state is not PullState.PULLING:
            self.dismiss()

    def show(self, status: PullStatus) -> None:
        """Show `status`: the bar, the bytes, the pull's latest line; an ending closes the screen."""
        self.status = status
        if status.state is not PullState.PULLING:
            if self.app.screen is self:
                self.dismiss()
            return  # (under another screen: when it is back on top)
        if not self.is_mounted:
            return  # (on_mount shows it)
        bar = self.query_one(ProgressBar)
        if status.fraction is not None:
            bar.update(total=100, progress=100 * status.fraction)
        self.query_one("#pull-bytes", Static).update(status.progress_text())
        self.query_one("#pull-note", Static).update("stopping…" if self.stopping else status.note)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """Stop or hide."""
        if event.button.id == "stop":
            self.action_stop()
        else:
            self.action_hide()

    def action_stop(self) -> None:
        """Stop the pull (the screen closes when it has stopped)."""
        self.stopping = True
        self._stop()
        self.query_one("#pull-note", Static).update("stopping…")

    def action_hide(self) -> None:
        """Close this; the pull goes on."""
        self.dismiss()
