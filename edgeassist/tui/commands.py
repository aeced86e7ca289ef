"""The command palette and the key list: switch to any model on disk, run any key's action, list every key.

Everything here talks to the app through a small protocol, the little it needs of it
(`ModelSwitcher`, `KeyActions`), so this module does not import the app (which imports it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, cast

from textual.app import SystemCommand
from textual.binding import Binding, BindingType
from textual.command import DiscoveryHit, Hit, Hits, Provider

from edgeassist.hub import ModelRow, list_models
from edgeassist.units import format_bytes

if TYPE_CHECKING:
    from edgeassist.config import Settings


class ModelSwitcher(Protocol):
    """What the model commands need of the app: its settings, the model in use, and a way to switch."""

    @property
    def settings(self) -> Settings:
        """The app's settings (the models folder, the context window for RAM estimates)."""

    @property
    def model_name(self) -> str:
        """The name of the model in use."""

    async def switch_model(self, name: str) -> None:
        """Load the model called `name` in place of the current one."""


class KeyActions(Protocol):
    """What the palette's action entries need of the app: its key bindings and a way to run an action."""

    BINDINGS: ClassVar[list[BindingType]]

    async def run_action(self, action: str) -> bool:
        """Run `action` as its key would."""


HIDDEN_KEYS = {"ctrl+@"}
"""Key names bound only because terminals send them for another key (ctrl+space sends NUL: ctrl+@)."""
KEYS_ONLY = ("quit", "stop")
"""Actions the palette leaves out (Textual's own entries include Quit; stopping is Esc's alone)."""


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


class ModelCommands(Provider):
    """`Model: <name>` for every model file on disk (catalog pulls, other GGUFs, the starter)."""

    rows: list[ModelRow]

    async def startup(self) -> None:
        """List the models folder once per palette opening, off the event loop."""
        app = cast(ModelSwitcher, self.app)
        try:
            rows = await asyncio.to_thread(list_models, app.settings.models_dir(), app.settings.model.n_ctx)
        except OSError:
            rows = []
        self.rows = [r for r in rows if r.on_disk]

    def _hits(self) -> list[tuple[str, str, ModelRow]]:
        app = cast(ModelSwitcher, self.app)
        current = app.model_name
        out = []
        for row in self.rows:
            mark = " (current)" if row.name == current else ""
            text = f"Model: {row.name}{mark}"
            help_text = f"switch to {row.name}: {_size(row.size_bytes)} on disk, ~{row.ram_gb or 0:.1f} GB RAM"
            out.append((text, help_text, row))
        return out

    async def discover(self) -> Hits:
        """Every model on disk, shown when the palette opens."""
        app = cast(ModelSwitcher, self.app)
        for text, help_text, row in self._hits():
            yield DiscoveryHit(text, partial(app.switch_model, row.name), help=help_text)

    async def search(self, query: str) -> Hits:
        """Models whose name matches what was typed."""
        app = cast(ModelSwitcher, self.app)
        matcher = self.matcher(query)
        for text, help_text, row in self._hits():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), partial(app.switch_model, row.name), help=help_text)
