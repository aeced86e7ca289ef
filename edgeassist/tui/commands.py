"""Command palette providers: switch to any model on disk.

The providers talk to the app through `ModelSwitcher`, the little they need of it, so this module does not
import the app (which imports it).
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import TYPE_CHECKING, Protocol, cast

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
