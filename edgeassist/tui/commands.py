"""The command palette and the key list: switch to any model (on disk, on the server), pull one, run any key's action.

Everything here talks to the app through a small protocol, the little it needs of it
(`ModelSwitcher`, `KeyActions`, `Puller`), so this module does not import the app (which imports it).
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, cast
from urllib.parse import urlsplit

from textual.app import SystemCommand
from textual.binding import Binding, BindingType
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.content import Content
from textual.markup import escape

from edgeassist.errors import EdgeAssistError
from edgeassist.hub import ModelRow, list_models
from edgeassist.units import format_bytes

if TYPE_CHECKING:
    from pathlib import Path

    from edgeassist.config import Settings
    from edgeassist.engine.server import ServerModel
    from edgeassist.tui.pulls import PullRoom


class ModelSwitcher(Protocol):
    """What the model commands need of the app: its settings, the model in use, and a way to switch."""

    @property
    def settings(self) -> Settings:
        """The app's settings (the models folder, the context window for RAM estimates)."""

    @property
    def model_name(self) -> str:
        """The name of the model in use."""

    @property
    def model_file(self) -> Path | None:
        """The file of the model in use (None on a server)."""

    @property
    def server(self) -> str | None:
        """The server the app was pointed at (`model.endpoint`), kept when a model on disk is chosen."""

    async def switch_model(self, name: str, on_server: bool = False) -> None:
        """Load the model called `name` in place of the current one: a file here, or the server's model."""

    def notify(self, message: str, *, severity: Any = "information", **kwargs: Any) -> None:
        """Show a notice."""


class KeyActions(Protocol):
    """What the palette's action entries need of the app: its key bindings and a way to run an action."""

    BINDINGS: ClassVar[list[BindingType]]

    async def run_action(self, action: str) -> bool:
        """Run `action` as its key would."""


HIDDEN_KEYS = {"ctrl+@"}
"""Key names bound only because terminals send them for another key (ctrl+space sends NUL: ctrl+@)."""
KEYS_ONLY = ("quit", "stop", "cancel_edit")
"""Actions the palette leaves out (Textual's own entries include Quit; Esc alone stops or cancels an edit)."""


def key_rows(bindings: Sequence[BindingType]) -> list[tuple[str, str]]:
    """(keys, what they do) for each binding, the keys a terminal sends for another left out."""
    rows: list[tuple[str, str]] = []
    for b in bindings:
        if isinstance(b, Binding):
            keys = [k for k in b.key.split(",") if k not in HIDDEN_KEYS]
            rows.append((", ".join(keys), b.tooltip or b.description))
    return rows


def action_commands(app: KeyActions) -> Iterator[SystemCommand]:
    """A palette entry for each key's action, titled by what it does."""
    for b in app.BINDINGS:
        if isinstance(b, Binding) and b.action not in KEYS_ONLY:
            title = (b.tooltip or b.description).capitalize()
            yield SystemCommand(title, f"{b.key}", partial_action(app, b.action))


def partial_action(app: KeyActions, action: str) -> Callable[[], Any]:
    """A callback that runs `action` on `app` (for palette entries)."""

    async def run() -> None:
        await app.run_action(action)

    return run


def _size(n: int | None) -> str:
    return format_bytes(n, coarse=True) if n else "?"


def _server_models(settings: Settings, endpoint: str) -> list[ServerModel]:
    """The models the server at `endpoint` offers (blocking: run it in a thread)."""
    from edgeassist.engine.factory import server_models

    model = settings.model.model_copy(update={"endpoint": endpoint})
    return server_models(settings.model_copy(update={"model": model}))


class EntryList(Provider):
    """A palette provider whose entries are a list made on opening: all shown at first, then those matching.

    An entry's text holds names from outside (model files, a server's models and errors), so it is
    shown as text: the palette reads a plain string as markup (`[@click=…]` would be an action).
    """

    @abstractmethod
    def _hits(self) -> list[tuple[str, str, Callable[[], Any]]]:
        """(text, help, what choosing it runs) for each entry."""

    async def discover(self) -> Hits:
        """Every entry, shown when the palette opens."""
        for text, help_text, run in self._hits():
            yield DiscoveryHit(Content(text), run, text=text, help=escape(help_text))

    async def search(self, query: str) -> Hits:
        """The entries whose text matches what was typed, the matched letters marked."""
        matcher = self.matcher(query)
        for text, help_text, run in self._hits():
            score, offsets = matcher.fuzzy_search.match(matcher.query, text)
            if score > 0:
                shown = Content(text)
                for i in offsets:
                    shown = shown.stylize(matcher.match_style, i, i + 1)
                yield Hit(score, shown, run, text=text, help=escape(help_text))


class ModelCommands(EntryList):
    """`Model: <name>` for every model file on disk and, with a server, every model the server offers.

    A model on disk runs here (the server stays known, to switch back to); a server's model runs there.
    """

    rows: list[ModelRow]
    served: list[ServerModel]
    server_error: str | None

    async def startup(self) -> None:
        """List the models folder, and ask the server for its models, once per palette opening, off the event loop."""
        app = cast(ModelSwitcher, self.app)
        try:
            rows = await asyncio.to_thread(list_models, app.settings.models_dir(), app.settings.model.n_ctx)
        except OSError:
            rows = []
        self.rows = [r for r in rows if r.on_disk]
        self.served, self.server_error = [], None
        if app.server is not None:
            try:
                self.served = await asyncio.to_thread(_server_models, app.settings, app.server)
            except EdgeAssistError as e:
                self.server_error = str(e)

    def _hits(self) -> list[tuple[str, str, Callable[[], Any]]]:
        app = cast(ModelSwitcher, self.app)
        current, remote = app.model_name, app.settings.model.endpoint is not None
        out: list[tuple[str, str, Callable[[], Any]]] = []
        for model in self.served:
            host = urlsplit(app.server or "").netloc
            mark = " (current)" if remote and model.id == current else ""
            out.append(
                (
                    f"Model: {model.id} on {host}{mark}",
                    f"switch to {model.id}, run by the server at {host}",
                    partial(app.switch_model, model.id, True),
                )
            )
        if self.server_error is not None:
            error = self.server_error
            out.append(("Models on the server: not listed", error, partial(app.notify, error, severity="error")))
        for row in self.rows:
            mark = " (current)" if not remote and row.path is not None and row.path == app.model_file else ""
            where = " here" if app.server is not None else ""
            text = f"Model: {row.name}{where}{mark}"
            help_text = f"switch to {row.name}: {_size(row.size_bytes)} on disk, ~{row.ram_gb or 0:.1f} GB RAM"
            out.append((text, help_text, partial(app.switch_model, row.name)))
        return out


class Puller(Protocol):
    """What the pull commands need of the app: its settings and its pulls (`tui.pulls.PullRoom`)."""

    @property
    def settings(self) -> Settings:
        """The app's settings (the models folder)."""

    @property
    def pulls(self) -> PullRoom:
        """The app's pull, running or not."""


class PullCommands(EntryList):
    """`Pull: <name> (<size>)` for every catalog model not on disk: download it, then switch to it.

    The model being pulled reads `Pull: <name>: 45%, show the progress` instead.
    """

    rows: list[ModelRow]

    async def startup(self) -> None:
        """List the catalog's models not on disk, once per palette opening, off the event loop."""
        app = cast(Puller, self.app)
        try:
            rows = await asyncio.to_thread(list_models, app.settings.models_dir(), app.settings.model.n_ctx)
        except (OSError, EdgeAssistError):
            rows = []
        self.rows = [r for r in rows if r.kind == "catalog" and not r.on_disk]

    def _hits(self) -> list[tuple[str, str, Callable[[], Any]]]:
        pulls = cast(Puller, self.app).pulls
        running = pulls.job.status if pulls.job is not None else None
        out: list[tuple[str, str, Callable[[], Any]]] = []
        for row in self.rows:
            run = partial(pulls.start, row)
            if running is not None and running.name == row.name:
                out.append((f"Pull: {row.name}: {running.progress_text()}, show the progress", "being pulled", run))
                continue
            about = "" if row.size_is_exact else "~"
            text = f"Pull: {row.name} ({about}{_size(row.size_bytes)})"
            help_text = f"download it from the hub (~{row.ram_gb or 0:.1f} GB RAM to run), then switch to it"
            if row.partial_bytes and row.size_bytes:
                share = min(99, int(100 * row.partial_bytes / row.size_bytes))
                help_text = f"{share}% already downloaded: the pull resumes; then switch to it"
            out.append((text, help_text, run))
        return out
