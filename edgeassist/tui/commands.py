"""Command palette providers: switch to any model on disk."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

from edgeassist.hub import ModelRow, list_models

if TYPE_CHECKING:
    from edgeassist.tui.app import EdgeAssistApp


def _size(n: int | None) -> str:
    if not n:
        return "?"
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


class ModelCommands(Provider):
    """`Model: <name>` for every model file on disk (catalog pulls, other GGUFs, the starter)."""

    rows: list[ModelRow]

    async def startup(self) -> None:
        """List the models folder once per palette opening, off the event loop."""
        app = cast("EdgeAssistApp", self.app)
        try:
            rows = await asyncio.to_thread(list_models, app.settings.models_dir(), app.settings.model.n_ctx)
        except OSError:
            rows = []
        self.rows = [r for r in rows if r.on_disk]

    def _hits(self) -> list[tuple[str, str, ModelRow]]:
        app = cast("EdgeAssistApp", self.app)
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
        app = cast("EdgeAssistApp", self.app)
        for text, help_text, row in self._hits():
            yield DiscoveryHit(text, partial(app.switch_model, row.name), help=help_text)

    async def search(self, query: str) -> Hits:
        """Models whose name matches what was typed."""
        app = cast("EdgeAssistApp", self.app)
        matcher = self.matcher(query)
        for text, help_text, row in self._hits():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), partial(app.switch_model, row.name), help=help_text)
