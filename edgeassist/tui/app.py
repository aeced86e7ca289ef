"""The chat app: a Textual front end over `Conversation`, the engine and the store.

Everything that talks to the model runs in thread workers: loading the model, and each reply
(iterating `Conversation.send/regenerate/edit_last`). The workers reach the UI only through
posted messages; pieces of a reply travel through an `Outbox` so the UI renders frames, not
tokens, and rendering never holds up the decode loop. Prompting, streaming, history and saving
all live in the core (`edgeassist.chat`), the same code `edgeassist ask` runs.

Push-to-talk (ctrl+space or F5) drives the same `edgeassist.voice.VoicePipeline` as `edgeassist
voice`: the first press builds it (whisper, piper, the devices) in a worker and starts recording;
each turn's `respond()` runs in a thread worker, and its events take the same path as a typed
reply's, plus the transcript and the sentence being spoken.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import signal
import sys
import threading
import time
import unicodedata
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial, wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.reactive import reactive
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, ListView, Static
from textual.worker import Worker, get_current_worker

from edgeassist.chat import Conversation
from edgeassist.config import Settings
from edgeassist.engine.base import ChatEngine, Done, GenerationOptions, Notice, Text, Thinking
from edgeassist.engine.modelthread import MODEL_THREAD
from edgeassist.errors import EdgeAssistError, StoreError
from edgeassist.store import ChatRecord, Store
from edgeassist.tui import figures
from edgeassist.tui.codeblocks import CodeBlock, code_blocks
from edgeassist.tui.commands import ModelCommands
from edgeassist.tui.messages import (
    ModelFailed,
    ModelLoading,
    ModelReady,
    ReplyDone,
    ReplyFailed,
    ReplyNotice,
    ReplyStreamed,
    VoiceHeard,
    VoiceLevel,
    VoicePartial,
    VoiceReady,
    VoiceSpeaking,
    VoiceTurnDone,
    VoiceUnavailable,
)
from edgeassist.tui.screens import (
    HELP_AFTER,
    HELP_BEFORE,
    CodeBlockScreen,
    ConfirmScreen,
    HelpScreen,
    ModelErrorScreen,
    SystemPromptScreen,
    TextPromptScreen,
)
from edgeassist.tui.stream import FrameBudget, Outbox, render_duty
from edgeassist.tui.widgets import (
    ChatItem,
    ChatList,
    ChatView,
    PromptInput,
    ReplyView,
    Sidebar,
    StatusBar,
    TopBar,
    UserMessage,
    VoiceBar,
)

if TYPE_CHECKING:
    from edgeassist.engine.factory import OpenedModel
    from edgeassist.hub import ResolvedModel


OpenModel = Callable[[Settings, bool], "OpenedModel"]
"""Builds the (not yet loaded) engine for the settings; the flag says the model was named explicitly."""
MakeVoice = Callable[[Settings, Conversation, Callable[[float], None], Callable[[str, bool], None]], Any]
"""Builds the voice pipeline (settings, conversation, on_level, on_transcript); default `voice.build_pipeline`."""


def _decode_threads_and_cpus(settings: Settings) -> tuple[int, int]:
    from edgeassist.system import physical_cores

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return settings.model.n_threads or physical_cores(), cpus


def _default_open_model(settings: Settings, explicit: bool) -> OpenedModel:
    from edgeassist.engine.factory import open_engine

    return open_engine(settings, explicit=explicit)


def _default_make_voice(
    settings: Settings,
    conversation: Conversation,
    on_level: Callable[[float], None],
    on_transcript: Callable[[str, bool], None],
) -> Any:
    from edgeassist.voice import build_pipeline  # the speech libraries load only when voice is used

    return build_pipeline(settings, conversation, on_level=on_level, on_transcript=on_transcript)


@dataclass
class _Run:
    """One reply being written."""

    reply_id: int
    view: ReplyView
    outbox: Outbox
    finished: threading.Event = field(default_factory=threading.Event)
    worker: Worker[None] | None = None
    ended: bool = False  # the UI has handled its Done / failure
    cancel_requested: bool = False  # stopped before its worker started
    timer: Timer | None = None  # drains what a pause in decoding left waiting
    pipeline: Any = None  # a voice turn's VoicePipeline (None for a typed message)
    user_view: UserMessage | None = None  # a voice turn's message: the live transcript, then what was heard
    heard: bool = False  # a voice turn's recording has been transcribed


def _while_shown(handler: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Skip a reply handler once the app's widgets are gone (a reply ending while the app shuts down)."""

    @wraps(handler)
    async def guarded(self: EdgeAssistApp, *args: Any) -> None:
        try:
            await handler(self, *args)
        except NoMatches:
            if self.is_running and not self._quitting and self.screen_stack:
                raise

    return guarded


HIDDEN_KEYS = {"ctrl+@"}
"""Key names bound only because terminals send them for another key (ctrl+space sends NUL: ctrl+@)."""
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
MAX_SHOWN = 40
"""Messages kept on screen; older ones stay in the history (and the export). Bounds the cost of a frame."""
GIL_SWITCH_S = 0.0005
"""GIL switch interval while the app runs (Python's default is 5 ms)."""
SIDEBAR_MIN_WIDTH = 70
"""Narrower terminals start with the chats sidebar hidden (ctrl+b shows it)."""
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
"""`kill`, a closed terminal (SSH session) and `kill -INT` quit the app the way ctrl+q does."""


class EdgeAssistApp(App[None]):
    """Chat with a local model: streaming Markdown replies, thinking, stop/edit/regenerate, saved chats."""

    CSS_PATH = "app.tcss"
    TITLE = "edgeassist"
    COMMANDS = App.COMMANDS | {ModelCommands}
    BINDINGS = [
        Binding("escape", "stop", "Stop", tooltip="stop the reply or voice turn (text is kept)"),
        Binding("ctrl+space,ctrl+@,f5", "talk", "Talk", tooltip="push to talk; press again to send"),
        Binding("ctrl+t", "toggle_thinking", "Think", tooltip="thinking on/off for the next message"),
        Binding("ctrl+r", "regenerate", "Regen", tooltip="write the last reply again"),
        Binding("ctrl+l", "edit_last", "Edit", tooltip="edit and resend your last message"),
        Binding("ctrl+o", "copy_reply", "Copy", tooltip="copy the last reply to the clipboard"),
        Binding("ctrl+g", "copy_code", "Code", show=False, tooltip="copy a code block of the last reply"),
        Binding("ctrl+n", "new_chat", "New", tooltip="start a new chat"),
        Binding("ctrl+b", "toggle_sidebar", "Chats", show=False, tooltip="show or hide the chats sidebar"),
        Binding("f2", "rename_chat", "Rename", show=False, tooltip="rename the chat"),
        Binding("f8", "delete_chat", "Delete", show=False, tooltip="delete the chat (asks first)"),
        Binding("f3", "system_prompt", "System", show=False, tooltip="edit this chat's system prompt"),
        Binding("f4", "export_chat", "Export", show=False, tooltip="export the chat to a Markdown file"),
        Binding("f1", "help", "Help", tooltip="list every key"),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True, tooltip="quit (a reply being written is saved)"),
    ]

    generating: reactive[bool] = reactive(False, bindings=True)
    """Whether a reply is being written."""
    think: reactive[bool] = reactive(False)
    """Whether the next message asks the model to think."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store,
        open_model: OpenModel | None = None,
        explicit_model: bool = False,
        chat_name: str | None = None,
        new_chat: bool = False,
        make_voice: MakeVoice | None = None,
    ) -> None:
        """Use `create_app`; this takes the parts already built."""
        super().__init__()
        self.settings = settings
        self.store = store
        self._open_model_fn = open_model or _default_open_model
        self._explicit_model = explicit_model
        self._chat_name = chat_name
        self._new_chat = new_chat
        self.engine: ChatEngine | None = None
        self.resolved: ResolvedModel | None = None
        self.conversation: Conversation | None = None
        self.chat: ChatRecord | None = None
        self.model_ready = False
        self.model_error: str | None = None
        self.editing = False
        self._model_gen = 0
        self._load_started = 0.0
        self._spinner = itertools.cycle(SPINNER)
        self._reply_ids = itertools.count(1)
        self._runs: dict[int, _Run] = {}
        self._backend_hint = ""
        self._frames = FrameBudget(duty=render_duty(*_decode_threads_and_cpus(settings)))
        self._quitting = False
        self._switch_interval = sys.getswitchinterval()
        self.set_reactive(EdgeAssistApp.think, settings.generation.think)
        self._make_voice = make_voice or _default_make_voice
        self._voice: Any = None  # the VoicePipeline, built on the first press of the talk key
        self._voice_loading = False
        self._talks: dict[int, _Run] = {}  # voice turns whose audio may still be playing
        self._exit_code = 0  # 128 + the signal's number once a stop signal has come
        self._signal_handlers: dict[int, Any] = {}  # the handlers ours replaced
        self._signalled = False  # a stop signal has come from outside
        self._tty_fds: list[int] = []

    # -- layout ----------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        """Top bar; sidebar, conversation, loading line and input; status bar; footer."""
        yield TopBar(id="topbar")
        with Horizontal(id="body"):
            yield Sidebar(id="sidebar")
            with Vertical(id="main"):
                yield ChatView(id="chat")
                yield Static("", id="loading", markup=False)
                yield VoiceBar(id="voice")
                yield PromptInput(id="input")
        yield StatusBar(id="status")
        yield Footer(compact=True)

    def on_load(self) -> None:
        """Catch the stop signals from the start: Textual leaves SIGTERM and SIGHUP fatal, which
        would lose the reply being written and leave the terminal in the app's modes."""
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        self._tty_fds = [fd for fd in (0, 1, 2) if os.isatty(fd)]

        def handler(signum: int, frame: object) -> None:
            if self._signalled:
                return  # already quitting: let the reply be saved
            self._signalled = True
            if signum == signal.SIGHUP:
                self._drop_lost_terminal()
            loop.call_soon_threadsafe(self.quit_on_signal, signum)

        for sig in STOP_SIGNALS:
            if signal.getsignal(sig) is not signal.SIG_IGN:  # nohup's SIGHUP stays ignored
                self._signal_handlers[sig] = signal.signal(sig, handler)

    def _drop_lost_terminal(self) -> None:
        """After a hang-up the terminal is gone and every write to it fails: send them to /dev/null."""
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            for fd in self._tty_fds:
                if not os.isatty(fd):
                    os.dup2(devnull, fd)
        finally:
            os.close(devnull)

    def quit_on_signal(self, signum: int) -> None:
        """A stop signal came: quit as ctrl+q does (the reply is stopped and saved), exit code 128 + signum."""
        if self._exit_code:
            return
        self._exit_code = 128 + signum
        self.call_later(self.action_quit)

    async def on_mount(self) -> None:
        # The decode thread takes the GIL back after every llama.cpp call; a short switch interval
        # bounds how long it waits behind a frame being rendered (5 ms by default, per call).
        """Apply the theme, open the chat to resume, and start loading the model."""
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(self._switch_interval, GIL_SWITCH_S))
        theme = self.settings.tui.theme
        if theme in self.available_themes:
            self.theme = theme
        else:
            self.notify(f"unknown theme {theme!r} (tui.theme); using the default", severity="warning")
        self.query_one("#sidebar").display = self.size.width >= SIDEBAR_MIN_WIDTH
        chat_view = self.query_one(ChatView)
        chat_view.anchor()
        self.query_one(PromptInput).focus()
        self._loading_timer = self.set_interval(0.1, self._tick_loading, pause=True)
        try:
            chat = self._initial_chat()
        except StoreError as e:
            chat = None
            self.notify(str(e), severity="error", timeout=10)
        self.chat = chat
        self._open_model(self.settings, self._explicit_model)
        await self._render_chat()
        await self._refresh_chat_list()

    def _initial_chat(self) -> ChatRecord | None:
        if self._chat_name is not None:
            return self.store.open_chat(self._chat_name)  # one transaction: two apps may open one new name
        if self._new_chat or not self.settings.tui.resume_last_chat:
            return None
        return self.store.last_chat()

    # -- the model -------------------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        """The name of the model in use (or asked for)."""
        return self.resolved.name if self.resolved is not None else self.settings.model.name

    def _open_model(self, settings: Settings, explicit: bool) -> None:
        """Build the engine now (fast: no file is read) and load it in a worker."""
        self._model_gen += 1
        self.model_ready = False
        self.model_error = None
        try:
            opened = self._open_model_fn(settings, explicit)
        except EdgeAssistError as e:
            self._model_failed(str(e))
            return
        self.engine, self.resolved = opened.engine, opened.resolved
        self.conversation = self._make_conversation(self.chat)
        self._load_started = time.monotonic()
        self._backend_hint = ""
        self._update_model_label()
        self._tick_loading()
        self.query_one("#loading").display = True
        self._loading_timer.resume()
        self.query_one(StatusBar).set_figures("loading the model…")
        self.query_one(TopBar).set_mode(self.think, None)
        if opened.resolved.note:
            self.notify(opened.resolved.note, title="Starter model", severity="warning", timeout=15)
        self._load_model(self._model_gen, opened.engine, settings)

    @work(thread=True, exclusive=True, group="load")
    def _load_model(self, generation: int, engine: ChatEngine, settings: Settings) -> None:
        """Load the model (blocking, in a thread); report ready or failed."""
        t0 = time.perf_counter()
        load_s: float | None = None
        try:
            load = getattr(engine, "load", None)
            if load is not None:
                backend = "cpu"
                if settings.model.n_gpu_layers != 0:
                    from edgeassist.engine.llama import llama_backend_name

                    backend = llama_backend_name()
                self.post_message(ModelLoading(generation, backend))
                result = load()  # a LlamaEngine runs it on its model thread
                if isinstance(result, int | float):
                    load_s = float(result)  # the engine's own figure
        except EdgeAssistError as e:
            self.post_message(ModelFailed(generation, str(e)))
            return
        except Exception as e:  # noqa: BLE001 - a broken model must not end the app with a traceback
            self.post_message(ModelFailed(generation, f"unexpected error while loading the model: {e}"))
            return
        self.post_message(ModelReady(generation, load_s if load_s is not None else time.perf_counter() - t0))

    def on_model_loading(self, message: ModelLoading) -> None:
        """Show the backend the model is loading on."""
        if message.generation == self._model_gen:
            self._backend_hint = message.backend
            self._update_model_label()

    def on_model_ready(self, message: ModelReady) -> None:
        """The model is loaded: take messages, show its figures and thinking mode."""
        if message.generation != self._model_gen or self.engine is None:
            return
        self.model_ready = True
        self._loading_timer.pause()
        self.query_one("#loading").display = False
        self._update_model_label()
        supports = bool(getattr(self.engine, "supports_thinking", False))
        if self.think and not supports:
            self.think = False
        self.query_one(TopBar).set_mode(self.think, supports)
        self.query_one(StatusBar).set_figures(f"ready · loaded in {message.load_s:.1f} s")

    def on_model_failed(self, message: ModelFailed) -> None:
        """The model could not be loaded: show the screen that says what to do."""
        if message.generation != self._model_gen:
            return
        self._model_failed(message.error)

    def _model_failed(self, error: str) -> None:
        self.model_ready = False
        self.model_error = error
        self._loading_timer.pause()
        self.query_one("#loading").display = False
        self.query_one(StatusBar).set_figures("no model")
        while isinstance(self.screen, ModelErrorScreen):
            self.pop_screen()
        self.push_screen(ModelErrorScreen(error, self.settings.model.name))

    def _tick_loading(self) -> None:
        if self.model_ready or self.model_error is not None or self.engine is None:
            return
        backend = self._backend_hint
        where = f" on {figures.BACKENDS.get(backend, backend)}" if backend else ""
        quant = f" ({self.resolved.quant.upper()})" if self.resolved and self.resolved.quant else ""
        elapsed = time.monotonic() - self._load_started
        self.query_one("#loading", Static).update(
            f"{next(self._spinner)} Loading {self.model_name}{quant}{where}… {elapsed:.1f} s · you can type meanwhile"
        )

    def _update_model_label(self) -> None:
        if self.engine is None:
            return
        backend = self.engine.backend if self.model_ready else (self._backend_hint or self.engine.backend)
        quant = self.resolved.quant if self.resolved else None
        self.query_one(StatusBar).set_model(figures.model_label(self.model_name, quant, backend))

    async def switch_model(self, name: str) -> None:
        """Load the model called `name` instead (from the command palette); the chat carries on."""
        await self._stop_and_wait()
        old = self.engine
        model = self.settings.model.model_copy(update={"name": name})
        self.settings = self.settings.model_copy(update={"model": model})
        while isinstance(self.screen, ModelErrorScreen):
            self.pop_screen()
        self.engine = None
        if old is not None and hasattr(old, "close"):
            await asyncio.to_thread(old.close)  # free its memory first
        self._open_model(self.settings, True)
        self.notify(f"Loading {name}…")

    # -- chats -----------------------------------------------------------------------------------

    def _options(self) -> GenerationOptions:
        from edgeassist.engine.factory import generation_options

        return generation_options(self.settings, think=self.think)

    def _make_conversation(self, chat: ChatRecord | None) -> Conversation | None:
        if self.engine is None:
            return None
        return Conversation(
            self.engine,
            system_prompt=self.settings.generation.system_prompt,
            options=self._options(),
            store=self.store,
            chat=chat,
        )

    async def _render_chat(self) -> None:
        view = self.query_one(ChatView)
        await view.remove_children()
        turns = self.conversation.turns if self.conversation is not None else []
        if self.conversation is None and self.chat is not None:
            # No engine (the model failed): still show the saved messages.
            msgs = self.store.messages(self.chat.id)
            widgets: list[UserMessage | ReplyView] = [
                UserMessage(m.content) if m.role == "user" else ReplyView(m.content, m.thinking, status=m.status)
                for m in msgs
                if m.role in ("user", "assistant")
            ]
        else:
            widgets = [
                UserMessage(t.content) if t.role == "user" else ReplyView(t.content, t.thinking, status=t.status)
                for t in turns
            ]
        if widgets:
            await view.mount_all(widgets)
        await view.trim(MAX_SHOWN)
        view.anchor()
        title = self.chat.name if self.chat is not None else "New chat"
        self.query_one(TopBar).set_title(title)
        self.sub_title = title

    async def _refresh_chat_list(self) -> None:
        if self._quitting:
            return
        try:
            chats = self.store.list_chats()
        except StoreError as e:
            self.notify(str(e), severity="error")
            return
        await self.query_one(ChatList).show(chats, self.chat.id if self.chat else None)

    async def open_chat(self, chat: ChatRecord | None) -> None:
        """Show `chat` (None: a new, not yet saved chat), stopping any reply first."""
        await self._stop_and_wait()
        self._set_editing(False)
        self.chat = chat
        self.conversation = self._make_conversation(chat)
        await self._render_chat()
        await self._refresh_chat_list()
        self.query_one(PromptInput).focus()

    def _ensure_chat(self, first_message: str) -> None:
        """Save the chat when its first message is sent, named after that message."""
        if self.chat is not None or self.conversation is None:
            return
        words = re.sub(r"\s+", " ", first_message).strip()
        # A pasted escape sequence or other control character must not stop the chat being saved.
        words = "".join(ch for ch in words if unicodedata.category(ch)[0] != "C").strip() or "Chat"
        base = words if len(words) <= 40 else words[:39].rstrip() + "…"
        system = self.conversation.system_prompt
        custom = system if system != self.settings.generation.system_prompt else None
        for n in range(1, 100):
            name = base if n == 1 else f"{base} ({n})"
            try:
                self.chat = self.store.create_chat(name, system_prompt=custom, model=self.model_name)
                break
            except StoreError:
                if self.store.find_chat(name) is None:
                    raise
        self.conversation.chat = self.chat
        self.query_one(TopBar).set_title(self.chat.name if self.chat else "New chat")

    @on(ListView.Selected, "#chat-list")
    async def _chat_selected(self, event: ListView.Selected) -> None:
        if isinstance(event.item, ChatItem) and (self.chat is None or event.item.chat.id != self.chat.id):
            chat = self.store.get_chat(event.item.chat.id)
            if chat is not None:
                await self.open_chat(chat)

    def _target_chat(self) -> ChatRecord | None:
        """The chat highlighted in the sidebar when it has the focus, else the open one."""
        chat_list = self.query_one(ChatList)
        if self.focused is chat_list and isinstance(chat_list.highlighted_child, ChatItem):
            return chat_list.highlighted_child.chat
        return self.chat

    # -- replies ---------------------------------------------------------------------------------

    @on(PromptInput.Submitted)
    async def _submitted(self, event: PromptInput.Submitted) -> None:
        text = event.text.strip()
        if not text:
            return
        if self.generating:
            self.notify("A reply is still being written: Esc stops it.", severity="warning")
            return
        if self.conversation is None:
            self.notify("No model is loaded: ctrl+p to pick one.", severity="error")
            return
        event.input.clear()
        if self._voice is not None and self._talks:
            self._voice.interrupt()  # typing over a spoken reply stops it, like talking over it
        kind = "edit" if self.editing else "send"
        self._set_editing(False)
        try:
            self._ensure_chat(text)
        except StoreError as e:
            self.notify(f"{e}; this chat is not being saved", severity="error", timeout=10)
        chat_view = self.query_one(ChatView)
        if kind == "edit":
            await chat_view.remove_last("assistant")
            await chat_view.remove_last("user")
        await chat_view.mount(UserMessage(text))
        # A new chat joins the sidebar when its first reply ends: rebuilding the list now would
        # cost a frame while the model writes its first tokens.
        await self._start_reply(kind, text)

    async def _start_reply(self, kind: str, text: str | None) -> None:
        assert self.conversation is not None
        chat_view = self.query_one(ChatView)
        view = ReplyView(streaming=True)
        await chat_view.mount(view)
        chat_view.anchor()
        self._frames.reset()
        run = _Run(next(self._reply_ids), view, Outbox(interval_s=self._frames.interval))
        self._runs[run.reply_id] = run
        self.generating = True
        self.query_one(StatusBar).set_figures("reading the prompt…" if self.model_ready else "waiting for the model…")
        options, convo = self._options(), self.conversation

        async def start() -> None:
            if run.cancel_requested or run.ended:
                # Stopped before it started: nothing reached the conversation, so show what it holds.
                if not run.ended:
                    run.ended = True
                    self._end_run(run)
                if not self._quitting:
                    await self._render_chat()
                return
            run.worker = self._reply(run, kind, text, options, convo)

        # Start the model once the frame showing the message is drawn, so that frame costs it nothing.
        self.call_after_refresh(start)

    @work(thread=True, exclusive=True, group="reply")
    def _reply(self, run: _Run, kind: str, text: str | None, options: GenerationOptions, convo: Conversation) -> None:
        """Stream one reply (blocking, in a thread worker); Esc and quit cancel the worker, which stops it."""
        cancel = get_current_worker().cancelled_event
        try:
            # On the model thread itself: the decode loop and this consumer take turns on one thread,
            # with no hand-off between threads for each token.
            MODEL_THREAD.call(self._stream_reply, run, kind, text, options, convo, cancel, stop=cancel)
        except EdgeAssistError as e:
            self.post_message(ReplyFailed(run.reply_id, str(e), unsaved=isinstance(e, StoreError)))
        except Exception as e:  # noqa: BLE001 - an engine bug must not take the app (and unsaved text) down
            self.post_message(ReplyFailed(run.reply_id, f"unexpected error: {e!r}"))
        finally:
            run.finished.set()

    def _stream_reply(
        self,
        run: _Run,
        kind: str,
        text: str | None,
        options: GenerationOptions,
        convo: Conversation,
        cancel: threading.Event,
    ) -> None:
        """The decode loop's consumer: pieces into the outbox, the rest as messages. Runs on the model thread."""
        events: Iterator[Any]
        if kind == "regenerate":
            events = convo.regenerate(cancel, options)
        elif kind == "edit":
            events = convo.edit_last(text or "", cancel, options)
        else:
            events = convo.send(text or "", cancel, options)
        try:
            for event in events:
                self._forward(run, event)
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()

    def _forward(self, run: _Run, event: object) -> None:
        """A reply's event to the UI (from a worker thread): pieces into the outbox, the rest as messages."""
        if isinstance(event, Text | Thinking):
            if run.outbox.put(isinstance(event, Thinking), event.text):
                self.post_message(ReplyStreamed(run.reply_id))
        elif isinstance(event, Done):
            self.post_message(ReplyDone(run.reply_id, event.stats))
        elif isinstance(event, Notice):
            self.post_message(ReplyNotice(run.reply_id, event.text))

    async def _drain(self, run: _Run) -> None:
        run.outbox.interval_s = interval = self._frames.sample()
        if run.timer is not None:
            run.timer.stop()
        # Notifications ride on new pieces; if the model pauses, this shows what came before the pause.
        run.timer = None if run.ended else self.set_timer(interval * 1.5, partial(self._drain_if_pending, run))
        chunk = run.outbox.take()
        if chunk.pieces == 0:
            return
        await run.view.add(chunk)
        n_ctx = self.engine.n_ctx if self.engine is not None else None
        live = figures.live_figures(chunk, self.settings.bench.target_ms, n_ctx)
        self.query_one(StatusBar).set_figures(live, layout=False)

    @_while_shown
    async def _drain_if_pending(self, run: _Run) -> None:
        if not run.ended and run.outbox.pending():
            await self._drain(run)

    @_while_shown
    async def on_reply_streamed(self, message: ReplyStreamed) -> None:
        """Render what arrived since the last frame."""
        run = self._runs.get(message.reply_id)
        if run is not None and not run.ended:
            await self._drain(run)

    def on_reply_notice(self, message: ReplyNotice) -> None:
        """Show a note from the pipeline."""
        self.notify(message.text, severity="warning", timeout=10)

    @_while_shown
    async def on_reply_done(self, message: ReplyDone) -> None:
        """The reply ended: final render, status, figures from its stats."""
        run = self._runs.get(message.reply_id)
        if run is None or run.ended:
            return
        run.ended = True
        await self._drain(run)
        stats = message.stats
        status = "cancelled" if stats.finish_reason == "cancelled" else "complete"
        if status == "cancelled" and not run.view.content.strip() and not run.view.thinking.strip():
            await run.view.remove()  # nothing was written, so nothing was saved
            self.notify("Stopped before the first token.")
        else:
            await run.view.finish(status)
        self.query_one(StatusBar).set_figures(figures.final_figures(stats, self.settings.bench.target_ms))
        if stats.finish_reason == "length":
            self.notify(
                f"The reply reached the {stats.generated_tokens}-token limit (generation.max_tokens).",
                severity="warning",
            )
        self._end_run(run)

    @_while_shown
    async def on_reply_failed(self, message: ReplyFailed) -> None:
        """The reply failed: keep what arrived, say what went wrong."""
        run = self._runs.get(message.reply_id)
        if run is None or run.ended:
            return
        run.ended = True
        await self._drain(run)
        if run.view.content.strip() or run.view.thinking.strip():
            note = "not saved: the history could not be written" if message.unsaved else "stopped by an error"
            await run.view.finish("error", note=note)
        else:
            await run.view.remove()
        self.query_one(StatusBar).set_figures("the last reply failed")
        self.notify(message.error, title="Error", severity="error", timeout=15)
        self._end_run(run)

    def _end_run(self, run: _Run) -> None:
        self._runs.pop(run.reply_id, None)
        self.generating = any(not r.ended for r in self._runs.values())
        if not self._quitting:
            self.call_later(self._refresh_chat_list)
            self.call_later(self.query_one(ChatView).trim, MAX_SHOWN)

    def stop_reply(self) -> bool:
        """Stop the reply being written (the engine stops within one token); False if none was."""
        stopped = False
        for run in self._runs.values():
            if run.ended:
                continue
            if run.pipeline is not None:
                run.pipeline.interrupt()  # stops recording, speaking and generating at once
            if run.worker is not None:
                run.worker.cancel()
            else:
                run.cancel_requested = True
                run.finished.set()  # its thread will never run
            run.view.set_note("■ stopping…", "stopped")
            stopped = True
        return stopped

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every reply thread has finished (and saved); False on timeout. Not on the UI thread."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for run in list(self._runs.values()):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not run.finished.wait(left):
                return False
        return True

    async def _stop_and_wait(self, timeout: float = 30.0) -> None:
        """Stop any reply, wait for its thread to save it, and settle its view here.

        Called from handlers: the reply's own Done message waits in the queue behind this one,
        so the view is finished here and that message is ignored when it arrives.
        """
        if self._voice is not None and self._talks:
            self._voice.interrupt()  # a reply that is done being written may still be speaking
        runs = [r for r in self._runs.values() if not r.ended]
        if not runs:
            return
        self.stop_reply()
        await asyncio.to_thread(self.wait_idle, timeout)
        for run in runs:
            if run.ended:
                continue
            heard_nothing = not run.view.is_mounted  # a voice turn stopped before anything was heard
            await self._settle_stopped(run)
            if heard_nothing:
                await self._drop_voice_message(run)
            self._end_run(run)

    async def _settle_stopped(self, run: _Run) -> None:
        """A reply stopped with no Done to settle it: what was written stays, marked stopped; else its view goes."""
        run.ended = True
        if not run.view.is_mounted:
            return
        await self._drain(run)
        if run.view.content.strip() or run.view.thinking.strip():
            await run.view.finish("cancelled")
        else:
            await run.view.remove()

    # -- push-to-talk ----------------------------------------------------------------------------

    async def action_talk(self) -> None:
        """The talk key: start recording; again: send what was said; while a reply speaks: talk over it."""
        if self.conversation is None or not self.model_ready:
            self.notify("Voice starts once the model has loaded.", severity="warning")
            return
        if self.editing:
            self.notify("Finish or cancel (Esc) the edit first.", severity="warning")
            return
        if self._voice_loading:
            return
        if self._voice is None:
            self._voice_loading = True
            self.query_one(VoiceBar).show("loading")
            self._setup_voice(self.settings, self.conversation)
            return
        if self._voice.state == "recording":
            self._voice.stop_recording()
            self.query_one(VoiceBar).show("transcribing")
            return
        await self._talk_start()

    @work(thread=True, exclusive=True, group="voice-setup")
    def _setup_voice(self, settings: Settings, conversation: Conversation) -> None:
        """Build the voice pipeline and load whisper and piper (blocking, in a thread), then start recording."""
        try:
            pipeline = self._make_voice(
                settings,
                conversation,
                lambda level: self.post_message(VoiceLevel(level)),
                lambda text, final: None if final else self.post_message(VoicePartial(text)),
            )
            pipeline.warm_up()
        except EdgeAssistError as e:
            self.post_message(VoiceUnavailable(str(e)))
            return
        except Exception as e:  # noqa: BLE001 - a broken speech setup must not take the chat down
            self.post_message(VoiceUnavailable(f"voice could not start: {e}"))
            return
        self.post_message(VoiceReady(pipeline))

    async def on_voice_ready(self, message: VoiceReady) -> None:
        """Speech models loaded: start the recording the key asked for."""
        self._voice_loading = False
        self._voice = message.pipeline
        for note in getattr(message.pipeline, "notes", []):
            self.notify(note, title="Voice", severity="warning", timeout=10)
        if self._quitting:
            return
        await self._talk_start()

    def on_voice_unavailable(self, message: VoiceUnavailable) -> None:
        """Voice cannot run here: say what to install; typing works as before."""
        self._voice_loading = False
        self.query_one(VoiceBar).show("off")
        self.notify(message.error, title="Voice unavailable", severity="error", timeout=15)

    async def _talk_start(self) -> None:
        """Start recording a voice turn (barge-in when a voice reply is playing)."""
        pipeline, convo = self._voice, self.conversation
        if pipeline is None or convo is None:
            return
        if any(not r.ended and r.pipeline is None for r in self._runs.values()):
            await self._stop_and_wait()  # a typed message's reply: the user is talking now
        pipeline.conversation = convo  # the chat open now (it may have changed since the last turn)
        pipeline.options = self._options()
        chat_view = self.query_one(ChatView)
        user_view = UserMessage("🎙 …")
        await chat_view.mount(user_view)
        chat_view.anchor()
        self._frames.reset()
        run = _Run(next(self._reply_ids), ReplyView(streaming=True), Outbox(interval_s=self._frames.interval))
        run.pipeline, run.user_view = pipeline, user_view
        try:
            pipeline.start_recording()  # stops a reply that is speaking, at once
        except EdgeAssistError as e:
            await user_view.remove()
            self.notify(str(e), title="Voice", severity="error", timeout=15)
            return
        self._runs[run.reply_id] = run
        self._talks[run.reply_id] = run
        self.generating = True
        self.refresh_bindings()
        bar = self.query_one(VoiceBar)
        bar.level = 0.0
        bar.show("recording")
        run.worker = self._voice_reply(run, pipeline)

    @work(thread=True, group="voice")
    def _voice_reply(self, run: _Run, pipeline: Any) -> None:
        """One voice turn's events (blocking, in a thread): what was heard, the reply, what is spoken."""
        from edgeassist.voice import Heard, Speaking, TurnDone

        status = "error"
        try:
            for event in pipeline.respond():
                if isinstance(event, Heard):
                    if event.final:
                        if event.text:
                            self.call_from_thread(self._ensure_chat_quietly, event.text)  # before it is saved
                        self.post_message(VoiceHeard(run.reply_id, event.text))
                elif isinstance(event, Speaking):
                    self.post_message(VoiceSpeaking(run.reply_id, event.text))
                elif isinstance(event, TurnDone):
                    status = event.status
                else:
                    self._forward(run, event)
        except EdgeAssistError as e:
            self.post_message(ReplyFailed(run.reply_id, str(e), unsaved=isinstance(e, StoreError)))
        except Exception as e:  # noqa: BLE001 - a device or engine failure must not take the app down
            self.post_message(ReplyFailed(run.reply_id, f"unexpected error in the voice turn: {e!r}"))
        finally:
            run.finished.set()
            self.post_message(VoiceTurnDone(run.reply_id, status))

    def _ensure_chat_quietly(self, first_message: str) -> None:
        try:
            self._ensure_chat(first_message)
        except StoreError as e:
            self.notify(f"{e}; this chat is not being saved", severity="error", timeout=10)

    def on_voice_level(self, message: VoiceLevel) -> None:
        """Move the meter."""
        self.query_one(VoiceBar).set_level(message.level)

    def on_voice_partial(self, message: VoicePartial) -> None:
        """Show what has been heard so far in the message being recorded."""
        for run in self._talks.values():
            if not run.heard and run.user_view is not None and run.pipeline.state == "recording":
                run.user_view.update(f"🎙 {message.text} …")

    @_while_shown
    async def on_voice_heard(self, message: VoiceHeard) -> None:
        """The transcript is final: it becomes the user's message, and the reply starts under it."""
        run = self._talks.get(message.reply_id)
        if run is None or run.ended:
            return
        run.heard = True
        if not message.text:
            return  # nothing heard: the turn ends without a reply (VoiceTurnDone)
        assert run.user_view is not None
        run.user_view.update(message.text)
        await self.query_one(ChatView).mount(run.view, after=run.user_view)
        self.query_one(ChatView).anchor()
        bar = self.query_one(VoiceBar)
        if bar.mode in ("recording", "transcribing") and run.pipeline.state != "recording":
            bar.show("replying")  # (a new recording, talking over this turn, keeps its meter)
        self.query_one(StatusBar).set_figures("reading the prompt…")

    def on_voice_speaking(self, message: VoiceSpeaking) -> None:
        """Show the sentence being spoken."""
        if message.reply_id in self._talks and len(self._talks) == 1:
            self.query_one(VoiceBar).show("speaking", message.text)

    @_while_shown
    async def on_voice_turn_done(self, message: VoiceTurnDone) -> None:
        """The voice turn is over, audio included: settle what the reply path did not."""
        run = self._talks.pop(message.reply_id, None)
        if run is None:
            return
        if not run.ended:  # no Done came: nothing heard, or stopped before the reply
            await self._settle_stopped(run)
            if not run.heard or message.status == "empty":
                await self._drop_voice_message(run)
            self._end_run(run)
        if message.status == "empty":
            self.notify("Nothing was heard: press the talk key, speak, then press it again.", severity="warning")
        if not self._talks:
            self.query_one(VoiceBar).show("off")
        self.refresh_bindings()  # Esc stops nothing now

    async def _drop_voice_message(self, run: _Run) -> None:
        if run.user_view is not None and run.user_view.is_mounted and not (run.heard and run.view.is_mounted):
            await run.user_view.remove()

    # -- actions ---------------------------------------------------------------------------------

    def watch_generating(self, generating: bool) -> None:
        # A blinking cursor is a repaint twice a second: none while the model writes.
        """No cursor blinking while the model writes."""
        self.query_one(PromptInput).cursor_blink = not generating

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Chat actions only on the chat screen; Stop only while something can be stopped."""
        if action in ("quit", "help", "command_palette"):
            return True
        if self.screen is not self.screen_stack[0]:
            return False  # a dialog or the model error screen is up
        if action == "stop":
            return self.generating or self.editing or bool(self._talks)
        return True

    def action_stop(self) -> None:
        """Esc: stop the reply (or the voice turn: recording, speaking); when editing, give up the edit."""
        if self._voice is not None and self._talks:
            self._voice.interrupt()
            self.stop_reply()
            return
        if self.stop_reply():
            return
        if self.editing:
            self._set_editing(False)
            self.query_one(PromptInput).clear()

    def action_toggle_thinking(self) -> None:
        """Thinking on or off for the next message."""
        supports = getattr(self.engine, "supports_thinking", None) if self.model_ready else None
        if supports is False:
            self.notify(f"{self.model_name} has no thinking mode.", severity="warning")
            return
        self.think = not self.think
        self.query_one(TopBar).set_mode(self.think, supports)
        self.notify(f"Thinking {'on' if self.think else 'off'} for the next message.", timeout=2)

    async def action_regenerate(self) -> None:
        """Write the last reply again."""
        if self.generating or self.conversation is None:
            return
        if not self.conversation.turns:
            self.notify("There is no message to answer again.", severity="warning")
            return
        if self.conversation.turns[-1].role == "assistant":
            await self.query_one(ChatView).remove_last("assistant")
        await self._start_reply("regenerate", None)

    def action_edit_last(self) -> None:
        """Put the last message back in the input; Enter resends it (replacing it and its reply)."""
        if self.generating or self.conversation is None:
            return
        text = self.conversation.last_user_text()
        if text is None:
            self.notify("There is no message to edit.", severity="warning")
            return
        box = self.query_one(PromptInput)
        box.text = text
        box.move_cursor(box.document.end)
        box.focus()
        self._set_editing(True)

    def _set_editing(self, editing: bool) -> None:
        self.editing = editing
        box = self.query_one(PromptInput)
        box.border_title = "Edit last message · Enter resends · Esc cancels" if editing else None
        box.set_class(editing, "editing")
        self.refresh_bindings()

    def _last_reply(self) -> ReplyView | None:
        replies = [w for w in self.query_one(ChatView).messages() if isinstance(w, ReplyView)]
        return replies[-1] if replies else None

    def action_copy_reply(self) -> None:
        """Copy the last reply's Markdown to the clipboard (OSC 52 works over SSH)."""
        reply = self._last_reply()
        if reply is None or not reply.content.strip():
            self.notify("There is no reply to copy.", severity="warning")
            return
        self.copy_to_clipboard(reply.content.strip())
        self.notify(f"Copied the reply ({len(reply.content.strip())} characters).", timeout=3)

    def action_copy_code(self) -> None:
        """Copy a code block of the last reply (asks which when there are several)."""
        reply = self._last_reply()
        blocks = code_blocks(reply.content) if reply is not None else []
        if not blocks:
            self.notify("The last reply has no code block.", severity="warning")
        elif len(blocks) == 1:
            self._copy_block(blocks[0])
        else:
            self.push_screen(CodeBlockScreen(blocks), self._copy_block)

    def _copy_block(self, block: CodeBlock | None) -> None:
        if block is None:
            return
        self.copy_to_clipboard(block.code)
        lines = len(block.code.splitlines())
        self.notify(f"Copied the {block.language or 'code'} block ({lines} lines).", timeout=3)

    async def action_new_chat(self) -> None:
        """Start a new chat (saved when its first message is sent)."""
        await self.open_chat(None)

    def action_toggle_sidebar(self) -> None:
        """Show or hide the chats sidebar."""
        sidebar = self.query_one(Sidebar)
        sidebar.display = not sidebar.display
        if sidebar.display:
            self.query_one(ChatList).focus()
        else:
            self.query_one(PromptInput).focus()

    def action_rename_chat(self) -> None:
        """Rename the chat (the one highlighted in the sidebar, else the open one)."""
        chat = self._target_chat()
        current = chat.name if chat is not None else ""

        async def done(name: str | None) -> None:
            if not name or not name.strip() or name.strip() == current:
                return
            try:
                if chat is None:
                    self.chat = self.store.create_chat(name.strip(), model=self.model_name)
                    if self.conversation is not None:
                        self.conversation.chat = self.chat
                else:
                    self.store.rename_chat(chat.id, name.strip())
                    if self.chat is not None and self.chat.id == chat.id:
                        self.chat = self.store.get_chat(chat.id)
            except StoreError as e:
                self.notify(str(e), severity="error")
                return
            if self.chat is not None:
                self.query_one(TopBar).set_title(self.chat.name)
            await self._refresh_chat_list()
            self.notify(f"Renamed to {name.strip()!r}.", timeout=3)

        self.push_screen(TextPromptScreen("Name of the chat:", current), done)

    def action_delete_chat(self) -> None:
        """Delete a chat after asking (the highlighted one in the sidebar, else the open one)."""
        chat = self._target_chat()
        if chat is None:
            self.notify("This chat is not saved yet: nothing to delete.", severity="warning")
            return

        async def done(yes: bool | None) -> None:
            if not yes:
                return
            if self.chat is not None and self.chat.id == chat.id:
                await self._stop_and_wait()
            try:
                self.store.delete_chat(chat.id)
            except StoreError as e:
                self.notify(str(e), severity="error")
                return
            if self.chat is not None and self.chat.id == chat.id:
                await self.open_chat(None)
            else:
                await self._refresh_chat_list()
            self.notify(f"Deleted {chat.name!r}.", timeout=3)

        n = len(self.store.messages(chat.id))
        self.push_screen(ConfirmScreen(f"Delete the chat {chat.name!r} and its {n} messages?"), done)

    def action_system_prompt(self) -> None:
        """Edit the open chat's system prompt."""
        if self.conversation is None:
            return
        default = self.settings.generation.system_prompt
        current = self.conversation.system_prompt or default

        def done(text: str | None) -> None:
            if text is None or self.conversation is None:
                return
            custom = text if text and text != default else None
            self.conversation.system_prompt = custom or default
            if self.chat is not None:
                try:
                    self.store.set_system_prompt(self.chat.id, custom)
                except StoreError as e:
                    self.notify(str(e), severity="error")
                    return
            self.notify("System prompt saved for this chat." if custom else "Using the default system prompt.")

        self.push_screen(SystemPromptScreen(current, default), done)

    def action_export_chat(self) -> None:
        """Export the open chat to a Markdown file."""
        if self.chat is None:
            self.notify("This chat is not saved yet: send a message first.", severity="warning")
            return
        chat = self.chat
        slug = re.sub(r"[^\w.-]+", "-", chat.name).strip("-.") or "chat"
        default = str(Path.cwd() / f"{slug}.md")

        def done(path_text: str | None) -> None:
            if not path_text:
                return
            path = Path(path_text.strip()).expanduser()
            try:
                text = self.store.export_markdown(chat.id)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
            except (OSError, StoreError) as e:
                self.notify(f"cannot export to {path}: {e}", severity="error")
                return
            self.notify(f"Exported to {path}", timeout=5)

        self.push_screen(TextPromptScreen("Export the chat to the Markdown file:", default), done)

    def help_rows(self) -> list[tuple[str, str]]:
        """(keys, what they do) for every key, app bindings first."""
        rows: list[tuple[str, str]] = []
        for b in self.BINDINGS:
            if isinstance(b, Binding):
                keys = [k for k in b.key.split(",") if k not in HIDDEN_KEYS]
                rows.append((", ".join(keys), b.tooltip or b.description))
        return HELP_BEFORE + rows + HELP_AFTER

    def action_help(self) -> None:
        """Show every key."""
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.help_rows()))

    async def action_quit(self) -> None:
        """Quit; a reply being written is stopped and its part saved first."""
        self._quitting = True
        await self._stop_and_wait(timeout=10)
        if self._voice is not None:
            await asyncio.to_thread(self._voice.close)  # releases the microphone and the speaker
        self.exit(return_code=self._exit_code)

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """The palette's actions, besides the model switcher."""
        yield from super().get_system_commands(screen)
        for b in self.BINDINGS:
            if isinstance(b, Binding) and b.action not in ("quit", "stop"):
                title = (b.tooltip or b.description).capitalize()
                yield SystemCommand(title, f"{b.key}", partial_action(self, b.action))

    def on_unmount(self) -> None:
        """Put the GIL switch interval and the signal handlers back (once a signal has come, ours stay
        and ignore the next ones, so that the reply's save is not cut short)."""
        sys.setswitchinterval(self._switch_interval)
        if not self._signalled:
            for sig, previous in self._signal_handlers.items():
                signal.signal(sig, previous)


def partial_action(app: App[Any], action: str) -> Callable[[], Any]:
    """A callback that runs `action` on `app` (for palette entries)."""

    async def run() -> None:
        await app.run_action(action)

    return run


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    open_model: OpenModel | None = None,
    explicit_model: bool = False,
    chat_name: str | None = None,
    new_chat: bool = False,
    make_voice: MakeVoice | None = None,
) -> EdgeAssistApp:
    """Build the chat app for `settings`.

    `store` defaults to the history at `settings.store_path()`; `open_model` (settings, explicit)
    builds the engine and defaults to `engine.factory.open_engine` (tests pass a fake engine);
    `chat_name` opens or creates that chat, `new_chat` starts a fresh one instead of resuming;
    `make_voice` builds the push-to-talk pipeline (default `voice.build_pipeline` on the configured
    devices; tests pass one on wav files).
    """
    if store is None:
        store = Store(settings.store_path())
    return EdgeAssistApp(
        settings,
        store=store,
        open_model=open_model,
        explicit_model=explicit_model,
        chat_name=chat_name,
        new_chat=new_chat,
        make_voice=make_voice,
    )
