"""What the Pilot tests share: waiting on the app, and choosing an entry of the command palette (and
waiting on a condition outside any app)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


async def wait_until(pilot: Any, predicate: Callable[[], object], timeout: float = 120.0, what: str = "") -> None:
    """Let the app run until `predicate()` holds; fail after `timeout` seconds (a safety net, not a measure)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await pilot.pause(0.02)


def eventually(predicate: Callable[[], bool], within: float = 15.0) -> bool:
    """Poll until `predicate()` holds (True) or `within` seconds pass (False): for what no event announces,
    such as a killed process being gone."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def palette_prompts(app: Any) -> list[str]:
    """The first line of each entry the command palette shows."""
    from textual.command import CommandList

    return [str(option.prompt).splitlines()[0] for option in app.screen.query_one(CommandList).options]


async def choose(pilot: Any, typed: str, wanted: str) -> list[str]:
    """Open the palette, type `typed`, wait for an entry holding `wanted`, choose it; the entries seen."""
    from textual.command import CommandList, CommandPalette

    app = pilot.app
    await pilot.press("ctrl+p")
    await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette), what="the palette")
    await pilot.press(*typed)
    await wait_until(pilot, lambda: any(wanted in p for p in palette_prompts(app)), what=f"an entry for {wanted}")
    prompts = palette_prompts(app)
    app.screen.query_one(CommandList).highlighted = prompts.index(next(p for p in prompts if wanted in p))
    await pilot.press("enter")
    return prompts
