"""The model room: build the engine, load it in a worker while the app is already usable, switch models.

Everything here goes through the engine contract (`ChatEngine`): `load()` in a thread worker,
`backend` for where it runs, `capabilities.thinking` for the thinking switch, `close()` on a switch.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from textual.widgets import Static

from edgeassist.config import Settings, section_with
from edgeassist.engine.base import ChatEngine, GenerationOptions
from edgeassist.errors import EdgeAssistError
from edgeassist.hub import STARTER_NAME
from edgeassist.store import ChatSettings
from edgeassist.tui import figures
from edgeassist.tui.messages import ModelFailed, ModelLoading, ModelReady
from edgeassist.tui.room import Room, Session
from edgeassist.tui.screens import ModelErrorScreen
from edgeassist.tui.widgets import Notices, StatusBar, TopBar

if TYPE_CHECKING:
    from textual.app import App
    from textual.timer import Timer

    from edgeassist.engine.factory import OpenedModel
    from edgeassist.engine.remote import RemoteModel
    from edgeassist.hub import ResolvedModel


OpenModel = Callable[[Settings, bool], "OpenedModel"]
"""Builds the (not yet loaded) engine for the settings; the flag says the model was named explicitly."""
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
CHAT_SOURCE = "the chat settings"
"""Where a refused per-chat value came from, in its one-line error."""


def checked_chat_settings(settings: Settings, values: dict[str, object]) -> ChatSettings:
    """A chat's own settings from `values` (text as typed, or stored values), checked as the configuration checks them.

    An empty or None value is not set. A value out of bounds, or not a number, is a ConfigError
    naming the key: the same rule, and the same bounds, as `config.toml` and the command line.
    """
    given = {k: v.strip() if isinstance(v, str) else v for k, v in values.items()}
    given = {k: v for k, v in given.items() if v is not None and v != ""}
    sampling = {k: v for k, v in given.items() if k in ("temperature", "top_p", "max_tokens")}
    g = section_with(settings.generation, sampling, CHAT_SOURCE)
    n_ctx = section_with(settings.model, {"n_ctx": given["n_ctx"]}, CHAT_SOURCE).n_ctx if "n_ctx" in given else None
    think = given.get("think")
    return ChatSettings(
        think=bool(think) if think is not None else None,
        temperature=g.temperature if "temperature" in sampling else None,
        top_p=g.top_p if "top_p" in sampling else None,
        max_tokens=g.max_tokens if "max_tokens" in sampling else None,
        n_ctx=n_ctx,
    )


def default_open_model(settings: Settings, explicit: bool) -> OpenedModel:
    """`engine.factory.open_engine`: the configured model through llama.cpp, or on the server `model.endpoint` names."""
    from edgeassist.engine.factory import open_engine

    return open_engine(settings, explicit=explicit)


class ModelRoom(Room):
    """The engine in use: opening it, loading it off the event loop, the loading line, the model label."""

    def __init__(self, app: App[Any], session: Session, open_model: OpenModel | None = None) -> None:
        """`open_model` builds the engine (default: `default_open_model`; tests pass a fake)."""
        super().__init__(app, session)
        self._open_model = open_model or default_open_model
        self.server = session.settings.model.endpoint
        """The server the app was pointed at (`model.endpoint`), kept when a model on disk is chosen."""
        self.engine: ChatEngine | None = None
        self.resolved: ResolvedModel | RemoteModel | None = None
        self.ready = False
        """The model has loaded: replies can start."""
        self.error: str | None = None
        """Why the model could not be opened or loaded."""
        self._generation = 0  # which load is current (a switch makes the earlier one's messages stale)
        self._load_started = 0.0
        self._spinner = itertools.cycle(SPINNER)
        self._backend = ""  # where the loading model will run, once its worker has asked the engine
        self._timer: Timer | None = None
        self.chat_settings = ChatSettings()
        """The open chat's own settings, applied over the configuration's."""
        self.toggled = session.think
        """Thinking as the app's switch (ctrl+t) last left it: a chat without its own value follows it."""
        self._explicit = False  # whether the model in use was named (`-m`, the palette): a reload keeps it so
        self._built_ctx = 0  # the context size the engine in use was built with

    @property
    def name(self) -> str:
        """The name of the model in use (or asked for)."""
        return self.resolved.name if self.resolved is not None else self.session.settings.model.name

    def options(self) -> GenerationOptions:
        """The options for the next reply: the settings, the open chat's own over them, thinking as switched."""
        from edgeassist.engine.factory import generation_options

        own = self.chat_settings
        return generation_options(
            self.session.settings,
            think=self.session.think,
            temperature=own.temperature,
            top_p=own.top_p,
            max_tokens=own.max_tokens,
        )

    def adopt(self, own: ChatSettings) -> None:
        """Take a chat's own settings (the chat opened, or they were saved); its thinking replaces the switch's.

        Values that no longer pass the configuration's checks (a hand-edited history) are dropped
        with one notice line, so a reply never fails on them.
        """
        try:
            own = checked_chat_settings(self.session.settings, {k: getattr(own, k) for k in own.__dataclass_fields__})
        except EdgeAssistError as e:
            self.app.notify(f"{e}; this chat uses the configured settings", severity="warning", timeout=8)
            own = ChatSettings()
        self.chat_settings = own
        self.session.think = own.think if own.think is not None else self.toggled
        supports = self.engine.capabilities.thinking if self.ready and self.engine is not None else None
        if supports is False:
            self.session.think = False
        self.app.query_one(TopBar).set_mode(self.session.think, supports)

    def context_size(self) -> int:
        """The context window the open chat asks for: its own, else the configured one."""
        return self.chat_settings.n_ctx or self.session.settings.model.n_ctx

    def context_stale(self) -> bool:
        """Whether the model in use was loaded with another context size than the open chat asks for.

        (A server sets its own context: only a model loaded here is reloaded for it.)
        """
        engine = self.engine
        return engine is not None and engine.capabilities.local and self._built_ctx != self.context_size()

    def _sized(self, settings: Settings) -> Settings:
        """`settings` with the open chat's context size."""
        self._built_ctx = self.context_size()
        if self._built_ctx == settings.model.n_ctx:
            return settings
        model = settings.model.model_copy(update={"n_ctx": self._built_ctx})
        return settings.model_copy(update={"model": model})

    def open(self, explicit: bool, chat_model: str | None = None) -> bool:
        """Build the engine now (fast: no file is read) and load it in a worker; False if it cannot be built.

        `chat_model`: the model the chat being resumed was held with, used instead of the settings'
        when it can be built (`restorable`); else a notice says why not and the settings' model opens.
        """
        if self._timer is None:
            self._timer = self.app.set_interval(0.1, self._tick, pause=True)
        self._explicit = explicit
        if chat_model is not None and not explicit and self.restorable(chat_model):
            built = self._build_for_chat(chat_model)
            if built is not None:
                self.session.settings, opened = built
                self._start(opened)
                return True
        try:
            opened = self._open_model(self._sized(self.session.settings), explicit)
        except EdgeAssistError as e:
            self._generation += 1
            self._failed(str(e))
            return False
        self._start(opened)
        return True

    def restorable(self, chat_model: str | None) -> bool:
        """Whether a chat held with `chat_model` should bring it back: a different model, and not the starter.

        (The starter only ever stands in for a model not downloaded: a chat held with it keeps the model in use.)
        """
        return bool(chat_model) and chat_model != self.name and chat_model != STARTER_NAME

    def _build_for_chat(self, chat_model: str) -> tuple[Settings, OpenedModel] | None:
        """The settings and engine for a chat's own model, or None (and one notice line) when it cannot be built."""
        model = self.session.settings.model.model_copy(update={"name": chat_model, "endpoint": None})
        settings = self.session.settings.model_copy(update={"model": model})
        try:
            return settings, self._open_model(self._sized(settings), True)  # explicit: no starter standing in
        except EdgeAssistError:
            # (A server's model is not brought back by itself: which server holds it is not kept.)
            elsewhere = " (a server's model? ctrl+p lists the server's)" if self.server is not None else ""
            self.app.notify(
                f"This chat was held with {chat_model}, which is not on disk: keeping {self.name}{elsewhere}.",
                severity="warning",
                timeout=8,
            )
            return None

    def _start(self, opened: OpenedModel) -> None:
        """Adopt the built engine and load it in a worker, the loading line running meanwhile."""
        self._generation += 1
        self.ready = False
        self.error = None
        self.engine, self.resolved = opened.engine, opened.resolved
        self._load_started = time.monotonic()
        self._backend = ""
        self._show_label()
        self._tick()
        self.app.query_one("#loading").display = True
        assert self._timer is not None
        self._timer.resume()
        self.app.query_one(StatusBar).set_figures("loading the model…")
        self.app.query_one(TopBar).set_mode(self.session.think, None)
        self._show_starter()
        load = partial(self._load, self._generation, opened.engine)
        self.app.run_worker(load, name="load", group="load", exclusive=True, thread=True)

    def _show_starter(self) -> None:
        """Keep the starter model's note (and its `pull` command) in view while the starter stands in."""
        resolved = self.resolved if self.error is None else None
        note = resolved.note if resolved is not None and resolved.is_starter else None
        screen = self.app.screen_stack[0] if self.app.screen_stack else None
        for notices in screen.query(Notices) if screen is not None else []:
            notices.set_sticky(note)

    def _load(self, generation: int, engine: ChatEngine) -> None:
        """Load the model (blocking, in a thread worker); say where it runs, then ready or failed."""
        try:
            # Where it will run may take asking llama.cpp (an import and a backend probe): not on the UI thread.
            self.app.post_message(ModelLoading(generation, engine.backend))
            load_s = engine.load()
        except EdgeAssistError as e:
            self.app.post_message(ModelFailed(generation, str(e)))
        except Exception as e:  # noqa: BLE001 - a broken model must not end the app with a traceback
            self.app.post_message(ModelFailed(generation, f"unexpected error while loading the model: {e}"))
        else:
            self.app.post_message(ModelReady(generation, load_s))

    def on_loading(self, message: ModelLoading) -> None:
        """Show the backend the model is loading on."""
        if message.generation == self._generation:
            self._backend = message.backend
            self._show_label()

    def on_ready(self, message: ModelReady) -> None:
        """The model is loaded: take messages, show its figures and thinking mode."""
        if message.generation != self._generation or self.engine is None:
            return
        self.ready = True
        self._stop_loading_line()
        self._show_label()
        supports = self.engine.capabilities.thinking
        if self.session.think and not supports:
            self.session.think = False
        self.app.query_one(TopBar).set_mode(self.session.think, supports)
        self.app.query_one(StatusBar).set_figures(f"ready · loaded in {message.load_s:.1f} s")

    def on_failed(self, message: ModelFailed) -> None:
        """The model could not be loaded: show the screen that says what to do."""
        if message.generation == self._generation:
            self._failed(message.error)

    def _failed(self, error: str) -> None:
        self.ready = False
        self.error = error
        self._stop_loading_line()
        self._show_starter()
        self.app.query_one(StatusBar).set_figures("no model")
        while isinstance(self.app.screen, ModelErrorScreen):
            self.app.pop_screen()
        self.app.push_screen(ModelErrorScreen(error, self.session.settings.model.name))

    def _stop_loading_line(self) -> None:
        if self._timer is not None:
            self._timer.pause()
        self.app.query_one("#loading").display = False

    def _tick(self) -> None:
        if self.ready or self.error is not None or self.engine is None:
            return
        backend = self._backend
        where = f" on {figures.BACKENDS.get(backend, backend)}" if backend else ""
        quant = f" ({self.resolved.quant.upper()})" if self.resolved and self.resolved.quant else ""
        elapsed = time.monotonic() - self._load_started
        self.app.query_one("#loading", Static).update(
            f"{next(self._spinner)} Loading {self.name}{quant}{where}… {elapsed:.1f} s · you can type meanwhile"
        )

    def _show_label(self) -> None:
        if self.engine is None:
            return
        backend = self.engine.backend if self.ready else self._backend
        quant = self.resolved.quant if self.resolved else None
        self.app.query_one(StatusBar).set_model(figures.model_label(self.name, quant, backend))

    def toggle_thinking(self) -> None:
        """Thinking on or off for the next message (when the model has a thinking mode)."""
        supports = self.engine.capabilities.thinking if self.ready and self.engine is not None else None
        if supports is False:
            self.app.notify(f"{self.name} has no thinking mode.", severity="warning")
            return
        self.session.think = not self.session.think
        self.toggled = self.session.think  # for the session; the chat settings screen saves a chat's own
        self.app.query_one(TopBar).set_mode(self.session.think, supports)
        self.app.notify(f"Thinking {'on' if self.session.think else 'off'} for the next message.", timeout=2)

    async def switch(self, name: str, on_server: bool = False) -> bool:
        """Close the engine in use and open the model called `name` (stop the replies first); False if it cannot.

        `on_server`: the server's model of that name (`model.remote_model` on `server`), else a model here.
        """
        update = {"remote_model": name, "endpoint": self.server} if on_server else {"name": name, "endpoint": None}
        model = self.session.settings.model.model_copy(update=update)
        self.session.settings = self.session.settings.model_copy(update={"model": model})
        await self._close()
        return self.open(explicit=True)

    async def restore(self, chat_model: str | None) -> bool:
        """Open the model a chat was held with, when it differs from the one in use (stop the replies first).

        True when it is loading; False when the chat keeps the model in use (the same one, the starter,
        or one no longer on disk: then a notice line says so).
        """
        if chat_model is None or not self.restorable(chat_model):
            return await self.reload_for_context()
        built = self._build_for_chat(chat_model)
        if built is None:
            return await self.reload_for_context()
        await self._close()
        self.session.settings, opened = built
        self._start(opened)
        self.app.notify(f"Loading {chat_model}, the model of this chat…", timeout=4)
        return True

    def check_model(self, name: str) -> str | None:
        """Why the model called `name` cannot be opened here (not on disk, a bad path), or None when it can.

        Building an engine reads no file, so this is cheap; on a server the server answers at the switch.
        """
        if name == self.name or (self.engine is not None and not self.engine.capabilities.local):
            return None
        model = self.session.settings.model.model_copy(update={"name": name, "endpoint": None})
        try:
            self._open_model(self.session.settings.model_copy(update={"model": model}), True)
        except EdgeAssistError as e:
            return str(e)
        return None

    async def reload_for_context(self) -> bool:
        """Load the model in use again when the open chat asks for another context size (stop the replies first).

        True when it is loading; False when the loaded one already fits.
        """
        if not self.context_stale():
            return False
        await self._close()
        self.app.notify(f"Reloading {self.name} with a {self.context_size()}-token context…", timeout=4)
        return self.open(self._explicit)

    async def _close(self) -> None:
        """Close the engine in use (its memory is freed before the next one loads) and any model error screen."""
        old, self.engine = self.engine, None
        while isinstance(self.app.screen, ModelErrorScreen):
            self.app.pop_screen()
        if old is not None:
            await asyncio.to_thread(old.close)
