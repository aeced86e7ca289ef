"""The chat app: a Textual front end over `Conversation`, the engine and the store.

This module holds the layout, the keys and start-up (signals included); the work is done by
its rooms, each in its own module, which the app builds and wires together:

- `tui.models.ModelRoom`: opens the engine, loads it in a worker, switches models;
- `tui.chats.ChatRoom`: the open chat and its `Conversation`, the sidebar, new/open/rename/
  delete/export, a chat's own settings, copying the last reply;
- `tui.reply.ReplyController`: every reply, typed or spoken, as one state machine
  (`edgeassist.reply`): started, streamed through an outbox, stopped, ended; its tool calls
  shown as blocks, and asked about in a dialog (`tui.tools`);
- `tui.talk.TalkRoom`: push-to-talk over `edgeassist.voice.VoicePipeline`;
- `tui.handsfree.HandsFreeRoom`: hands-free (F7) over the same pipeline, `edgeassist.voice.HandsFree`;
- `tui.attach.AttachRoom`: the pictures attached to the next message (the attach key's dialog, a
  pasted path), shown in a row above the input until the message takes them.

Blocking work runs in thread workers that reach the UI only through posted messages; the app
hands each message to its room. Prompting, streaming, history and saving live in the core
(`edgeassist.chat`), the same code `edgeassist ask` runs.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from textual import events, on
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.notifications import Notify
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import ListView, Static

from edgeassist.config import Settings
from edgeassist.store import Store
from edgeassist.tui import pictures
from edgeassist.tui.attach import AttachRoom
from edgeassist.tui.chats import ChatRoom
from edgeassist.tui.commands import ModelCommands, PullCommands, action_commands, key_rows
from edgeassist.tui.handsfree import HandsFreeRoom
from edgeassist.tui.logs import LogScreen, capture_python, record_notice
from edgeassist.tui.messages import (
    HandsFreeChanged,
    HandsFreeEnded,
    HandsFreeFailed,
    HandsFreeSpeaking,
    HandsFreeTurnDone,
    ModelFailed,
    ModelLoading,
    ModelReady,
    PictureAttached,
    PictureRefused,
    ReplyDone,
    ReplyFailed,
    ReplyNotice,
    ReplyStreamed,
    ToolAsked,
    ToolCalled,
    VoiceHeard,
    VoiceLevel,
    VoicePartial,
    VoiceReady,
    VoiceSpeaking,
    VoiceTurnDone,
    VoiceUnavailable,
)
from edgeassist.tui.models import ModelRoom, OpenModel
from edgeassist.tui.pictures import AttachmentChip, Attachments, MessagePictures
from edgeassist.tui.pulls import PullChanged, PullRoom
from edgeassist.tui.reply import Kind, ReplyController
from edgeassist.tui.room import Session
from edgeassist.tui.screens import HELP_AFTER, HELP_BEFORE, HelpScreen
from edgeassist.tui.talk import MakeVoice, TalkRoom
from edgeassist.tui.terminal import StopSignals
from edgeassist.tui.tools import session_toolbox
from edgeassist.tui.widgets import (
    ChatList,
    ChatView,
    CopyClicked,
    KeyFooter,
    Notices,
    PromptInput,
    Sidebar,
    StatusBar,
    TopBar,
    UserMessage,
    VoiceBar,
)

if TYPE_CHECKING:
    from pathlib import Path

    from edgeassist.chat import Conversation
    from edgeassist.engine.base import ChatEngine
    from edgeassist.store import ChatRecord
    from edgeassist.tools import Tool, Toolbox


GIL_SWITCH_S = 0.0005
"""GIL switch interval while the app runs (Python's default is 5 ms)."""
SIDEBAR_MIN_WIDTH = 100
"""Below this width the chats sidebar hides itself (the conversation keeps 76 columns or more above it);
ctrl+b shows or hides it either way, until the terminal's width next crosses this line."""


class EdgeAssistApp(App[None]):
    """Chat with a local model: streaming Markdown replies, thinking, stop/edit/regenerate, saved chats."""

    CSS_PATH = "app.tcss"
    TITLE = "edgeassist"
    COMMANDS = App.COMMANDS | {ModelCommands, PullCommands}
    BINDINGS = [
        Binding("escape", "stop", "Stop", tooltip="stop the reply or voice turn (text is kept)"),
        Binding("escape", "cancel_edit", "Cancel edit", tooltip="give up editing the last message"),
        Binding("ctrl+space,ctrl+@,f5", "talk", "Talk", tooltip="push to talk; press again to send"),
        Binding(  # priority: over the message box's own F7 (select all), as F6 is over its select line
            "f7",
            "hands_free",
            "Hands-free",
            priority=True,
            tooltip="hands-free voice on or off: just speak, no key to hold",
        ),
        Binding("ctrl+t", "toggle_thinking", "Think", tooltip="thinking on/off for the next message"),
        Binding("ctrl+r", "regenerate", "Regen", tooltip="write the last reply again"),
        Binding("ctrl+l", "edit_last", "Edit", tooltip="edit and resend your last message"),
        Binding("ctrl+f,f12", "attach_image", "Image", tooltip="attach a picture to the next message"),
        Binding("f9", "continue_reply", "Continue", show=False, tooltip="go on with a reply the token limit cut"),
        Binding("ctrl+o", "copy_reply", "Copy", tooltip="copy the last reply to the clipboard"),
        Binding("ctrl+g", "copy_code", "Code", show=False, tooltip="copy a code block of the last reply"),
        Binding("ctrl+n", "new_chat", "New", tooltip="start a new chat"),
        Binding(
            "alt+down,ctrl+pagedown", "step_chat(1)", "Next chat", show=False, tooltip="open the next (older) chat"
        ),
        Binding(
            "alt+up,ctrl+pageup", "step_chat(-1)", "Prev chat", show=False, tooltip="open the previous (newer) chat"
        ),
        Binding("ctrl+b", "toggle_sidebar", "Chats", show=False, tooltip="show or hide the chats sidebar"),
        Binding("f2", "rename_chat", "Rename", show=False, tooltip="rename the chat"),
        Binding("f8", "delete_chat", "Delete", show=False, tooltip="delete the chat (asks first)"),
        Binding(
            "f10",
            "clear_chat",
            "Clear",
            show=False,
            tooltip="clear the chat's messages, keep its settings (asks first)",
        ),
        Binding(
            "f3",
            "chat_settings",
            "Settings",
            show=False,
            tooltip="this chat's settings: model, thinking, sampling, context, system prompt",
        ),
        Binding("f4", "export_chat", "Export", show=False, tooltip="export the chat to a Markdown file"),
        Binding(
            "f6", "show_log", "Log", show=False, priority=True, tooltip="show llama.cpp's log and the app's warnings"
        ),
        Binding("f1", "help", "Help", tooltip="list every key"),
        Binding("pageup", "scroll_chat(-1)", "Up", show=False, priority=True, tooltip="scroll the chat up a page"),
        Binding("pagedown", "scroll_chat(1)", "Down", show=False, priority=True, tooltip="scroll the chat down a page"),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True, tooltip="quit (a reply being written is saved)"),
    ]

    generating: reactive[bool] = reactive(False, bindings=True)
    """Whether a reply is being written."""

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
        config_path: Path | None = None,
        allow_tools: Iterable[str] = (),
        tools: Sequence[Tool] | None = None,
    ) -> None:
        """Use `create_app`; this takes the parts already built."""
        super().__init__()
        self.session = Session(settings, store, think=settings.generation.think)
        # One toolbox for the session (every chat offers it); nothing starts until a reply offers tools.
        self.session.tools = session_toolbox(
            settings, config_path=config_path, allowed=allow_tools, tools=tools, notify=self._tool_notice
        )
        self.models = ModelRoom(self, self.session, open_model)
        self.chats = ChatRoom(self, self.session, self.models, stop_replies=self.stop_and_wait)
        self.replies = ReplyController(self, self.session, self.models, self.chats, on_busy=self._set_generating)
        self.talk = TalkRoom(self, self.session, self.models, self.chats, self.replies, make_voice)
        self.handsfree = HandsFreeRoom(self, self.session, self.models, self.chats, self.replies, self.talk)
        self.pulls = PullRoom(self, self.session)
        self.attach = AttachRoom(self, self.session, self.models)
        self._uncapture: Callable[[], None] = lambda: None  # ends the capture of Python's warnings
        self._explicit_model = explicit_model
        self._chat_name = chat_name
        self._new_chat = new_chat
        self._switch_interval = sys.getswitchinterval()
        self._exit_code = 0  # 128 + the signal's number once a stop signal has come
        self._signals = StopSignals(self.quit_on_signal)
        self._wide: bool | None = None  # whether the width last called for the sidebar

    # -- layout ----------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        """Top bar; sidebar, conversation, loading line and input; status bar; footer."""
        yield TopBar(id="topbar")
        with Horizontal(id="body"):
            yield Sidebar(id="sidebar")
            with Vertical(id="main"):
                yield ChatView(id="chat")
                yield Static("", id="loading", markup=False)
                yield Notices(id="notices")
                yield VoiceBar(id="voice")
                yield Attachments(id="attachments")
                yield PromptInput(id="input", prompts=self.chats.prompts)
        yield StatusBar(id="status")
        yield KeyFooter(compact=True)

    # -- start-up and the way out ----------------------------------------------------------------

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Run the app in the terminal; first ask the terminal how it draws pictures (`pictures.probe_terminal`).

        (It cannot be asked once Textual reads the keys: the answer would arrive as keys.)
        """
        if not kwargs.get("headless"):
            pictures.probe_terminal()
        return super().run(*args, **kwargs)

    def on_load(self) -> None:
        """Catch the stop signals from the start (`terminal.StopSignals`), and Python's warnings for the log screen."""
        self._signals.install()
        self._uncapture = capture_python()

    def quit_on_signal(self, signum: int) -> None:
        """A stop signal came: quit as ctrl+q does (the reply is stopped and saved), exit code 128 + signum."""
        if self._exit_code:
            return
        self._exit_code = 128 + signum
        self.call_later(self.action_quit)

    async def on_mount(self) -> None:
        """Apply the theme, open the chat to resume, and start loading the model."""
        # The decode thread takes the GIL back after every llama.cpp call; a short switch interval
        # bounds how long it waits behind a frame being rendered (5 ms by default, per call).
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(self._switch_interval, GIL_SWITCH_S))
        theme = self.settings.tui.theme
        if theme in self.available_themes:
            self.theme = theme
        else:
            self.notify(f"unknown theme {theme!r} (tui.theme); using the default", severity="warning")
        self._fit_sidebar(self.size.width)
        self.query_one(ChatView).anchor()
        self.query_one(PromptInput).focus()
        self.chats.resume(self._chat_name, self._new_chat)
        held_with = self.chat.model if self.chat is not None else None
        if self.models.open(self._explicit_model, chat_model=held_with):
            self.chats.reconnect()
        await self.chats.render()
        await self.chats.refresh_list()

    def on_resize(self, event: events.Resize) -> None:
        """Hide the sidebar on a narrow terminal, show it on a wide one."""
        self._fit_sidebar(event.size.width)

    def _chat_screen(self) -> Screen[Any] | None:
        """The chat screen (under any dialog), or None once it is gone (shutting down)."""
        return self.screen_stack[0] if self.screen_stack else None

    def _fit_sidebar(self, width: int) -> None:
        """Show or hide the sidebar when `width` crosses `SIDEBAR_MIN_WIDTH` (ctrl+b's choice holds till then)."""
        wide = width >= SIDEBAR_MIN_WIDTH
        screen = self._chat_screen()
        if wide == self._wide or screen is None or not screen.query(Sidebar):
            return
        self._wide = wide
        sidebar = screen.query_one(Sidebar)
        sidebar.display = wide
        if not wide and sidebar.has_focus_within:
            screen.query_one(PromptInput).focus()

    def _notices(self) -> Notices | None:
        """The notices above the message box (None while the chat screen is not there)."""
        screen = self._chat_screen()
        try:
            return screen.query_one(Notices) if screen is not None else None
        except NoMatches:
            return None

    def on_notify(self, event: Notify) -> None:
        """Show a notice above the message box (after Textual has recorded it; its toasts are not shown)."""
        record_notice(event.notification)  # warnings and errors go to the log screen too
        notices = self._notices()
        if notices is not None:
            notices.add(event.notification)

    def clear_notifications(self) -> None:
        """Drop the notices (the starter's line stays)."""
        super().clear_notifications()
        notices = self._notices()
        if notices is not None:
            notices.clear()

    async def action_quit(self) -> None:
        """Quit; a reply being written is stopped and its part saved first."""
        self.session.quitting = True
        await self.stop_and_wait(timeout=10)  # (hands-free too: nothing listens once the devices go)
        await self.talk.close()  # releases the microphone and the speaker
        await asyncio.to_thread(self.toolbox.close)  # the MCP servers (after the replies: none is calling them)
        self.exit(return_code=self._exit_code)

    def on_unmount(self) -> None:
        """Put back the GIL switch interval and the signal handlers (those stay once a signal has come); stop MCP."""
        sys.setswitchinterval(self._switch_interval)
        self._signals.restore()
        self._uncapture()
        self.handsfree.abandon()  # (stopped already when the app quit by ctrl+q)
        self.toolbox.close()  # (done already when the app quit by ctrl+q; the other ways out end here)

    def _tool_notice(self, text: str) -> None:
        """A notice from the tools (an MCP server that did not start); from any thread."""
        self.notify(text, title="Tools", severity="warning", timeout=15)

    # -- what the app offers its callers (the CLI, the palette, tests) ---------------------------

    @property
    def settings(self) -> Settings:
        """The settings (after a model switch, with the new model's name)."""
        return self.session.settings

    @property
    def store(self) -> Store:
        """The chat history."""
        return self.session.store

    @property
    def toolbox(self) -> Toolbox:
        """The session's tools and their policies."""
        assert self.session.tools is not None
        return self.session.tools

    @property
    def think(self) -> bool:
        """Whether the next message asks the model to think."""
        return self.session.think

    @property
    def engine(self) -> ChatEngine | None:
        """The engine in use (None when none could be built)."""
        return self.models.engine

    @property
    def model_ready(self) -> bool:
        """Whether the model has loaded."""
        return self.models.ready

    @property
    def model_error(self) -> str | None:
        """Why the model could not be loaded (None while it loads or once it has)."""
        return self.models.error

    @property
    def model_name(self) -> str:
        """The name of the model in use (or asked for)."""
        return self.models.name

    @property
    def model_file(self) -> Path | None:
        """The file of the model in use (None on a server)."""
        return getattr(self.models.resolved, "path", None)

    @property
    def server(self) -> str | None:
        """The server the app was pointed at (`model.endpoint`), kept when a model on disk is chosen."""
        return self.models.server

    @property
    def chat(self) -> ChatRecord | None:
        """The open chat (None: a new one, not saved yet)."""
        return self.chats.chat

    @property
    def conversation(self) -> Conversation | None:
        """The open chat's conversation with the engine in use."""
        return self.chats.conversation

    @property
    def editing(self) -> bool:
        """Whether the input holds the last message being edited."""
        return any(box.editing for box in self.query(PromptInput))

    async def switch_model(self, name: str, on_server: bool = False) -> None:
        """Load the model called `name` instead (from the command palette); the chat carries on.

        `on_server`: the model of that name on the server (`server`), else a model here.
        """
        await self.stop_and_wait()
        if await self.models.switch(name, on_server):
            self.chats.reconnect()
        self.notify(f"Loading {name}…")

    def stop_reply(self) -> bool:
        """Stop the reply being written (the engine stops within one token); False if none was."""
        return self.replies.stop()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every reply thread has finished (and saved); False on timeout. Not on the UI thread."""
        return self.replies.wait_idle(timeout)

    async def stop_and_wait(self, timeout: float = 30.0) -> None:
        """Stop the voice turn, hands-free and every reply, and wait until each reply is saved and shown as stopped.

        Everything that changes the chat or the model comes here first; hands-free, which answers
        into one conversation, turns off (F7 turns it on again in the chat then in view).
        """
        self.talk.interrupt()  # a reply that is done being written may still be speaking
        await self.handsfree.stop(notice="Hands-free is off for the change of chat: F7 turns it on again.")
        await self.replies.stop_and_wait(timeout)

    def _set_generating(self, busy: bool) -> None:
        self.generating = busy

    def watch_generating(self, generating: bool) -> None:
        """No cursor blinking while the model writes (a blinking cursor is a repaint twice a second)."""
        self.query_one(PromptInput).cursor_blink = not generating

    # -- messages from the workers, each to its room ---------------------------------------------

    def on_model_loading(self, message: ModelLoading) -> None:
        """To the model room; an empty chat's welcome says where it runs."""
        self.models.on_loading(message)
        self.chats.show_welcome()

    def on_model_ready(self, message: ModelReady) -> None:
        """To the model room; an empty chat's welcome says it has loaded."""
        self.models.on_ready(message)
        self.chats.show_welcome()

    def on_model_failed(self, message: ModelFailed) -> None:
        """To the model room."""
        self.models.on_failed(message)

    async def on_reply_streamed(self, message: ReplyStreamed) -> None:
        """To the reply controller."""
        await self.replies.on_streamed(message)

    def on_reply_notice(self, message: ReplyNotice) -> None:
        """To the reply controller."""
        self.replies.on_notice(message)

    async def on_reply_done(self, message: ReplyDone) -> None:
        """To the reply controller."""
        await self.replies.on_done(message)

    async def on_reply_failed(self, message: ReplyFailed) -> None:
        """To the reply controller."""
        await self.replies.on_failed(message)

    async def on_tool_asked(self, message: ToolAsked) -> None:
        """To the reply controller (it opens the dialog)."""
        await self.replies.on_tool_asked(message)

    async def on_tool_called(self, message: ToolCalled) -> None:
        """To the reply controller."""
        await self.replies.on_tool_called(message)

    async def on_voice_ready(self, message: VoiceReady) -> None:
        """To the push-to-talk room (it keeps the pipeline); to the hands-free room when its key asked."""
        await self.talk.on_ready(message)
        if message.hands_free:
            await self.handsfree.on_ready()

    def on_voice_unavailable(self, message: VoiceUnavailable) -> None:
        """To the push-to-talk room (it says why) and the hands-free room."""
        self.talk.on_unavailable(message)
        self.handsfree.on_unavailable()

    def on_voice_level(self, message: VoiceLevel) -> None:
        """To the push-to-talk room."""
        self.talk.on_level(message)

    def on_voice_partial(self, message: VoicePartial) -> None:
        """To the push-to-talk room and the hands-free room (each shows its own turn's)."""
        self.talk.on_partial(message)
        self.handsfree.on_partial(message)

    async def on_voice_heard(self, message: VoiceHeard) -> None:
        """To the push-to-talk room."""
        await self.talk.on_heard(message)

    def on_voice_speaking(self, message: VoiceSpeaking) -> None:
        """To the push-to-talk room."""
        self.talk.on_speaking(message)

    async def on_voice_turn_done(self, message: VoiceTurnDone) -> None:
        """To the push-to-talk room."""
        await self.talk.on_turn_done(message)

    async def on_hands_free_changed(self, message: HandsFreeChanged) -> None:
        """To the hands-free room."""
        await self.handsfree.on_changed(message)

    def on_hands_free_speaking(self, message: HandsFreeSpeaking) -> None:
        """To the hands-free room."""
        self.handsfree.on_speaking(message)

    async def on_hands_free_turn_done(self, message: HandsFreeTurnDone) -> None:
        """To the hands-free room."""
        await self.handsfree.on_turn_done(message)

    def on_hands_free_failed(self, message: HandsFreeFailed) -> None:
        """To the hands-free room."""
        self.handsfree.on_failed(message)

    def on_hands_free_ended(self, message: HandsFreeEnded) -> None:
        """To the hands-free room."""
        self.handsfree.on_ended(message)

    def on_copy_clicked(self, message: CopyClicked) -> None:
        """A message or a code block was clicked: copy it (OSC 52 works over SSH)."""
        self.chats.copy_clicked(message)

    @on(ListView.Selected, "#chat-list")
    async def _chat_selected(self, event: ListView.Selected) -> None:
        await self.chats.open_selected(event.item)

    # -- the input -------------------------------------------------------------------------------

    @on(PromptInput.Submitted)
    async def _submitted(self, event: PromptInput.Submitted) -> None:
        text = event.text.strip()
        kind: Kind = "edit" if event.input.editing else "send"
        attached = kind == "send" and bool(self.attach.pending)
        if not text:
            if attached:
                self.notify("Type a question about the picture.", severity="warning")
            return
        if self.generating:
            self.notify("A reply is still being written: Esc stops it.", severity="warning")
            return
        if self.conversation is None:
            self.notify("No model is loaded: ctrl+p to pick one.", severity="error")
            return
        if attached and (why := self.attach.refusal()) is not None:
            self.notify(why, title="Pictures", severity="error", timeout=15)  # (the model changed since)
            return
        event.input.clear()
        self.talk.interrupt()  # typing over a spoken reply stops it, like talking over it
        self.handsfree.interrupt()  # (hands-free's too; it listens on)
        event.input.set_editing(False)
        self.chats.ensure_quietly(text)
        chat_view = self.query_one(ChatView)
        row: MessagePictures | None = None
        if kind == "edit":
            await chat_view.remove_reply()  # (its steps and tool calls)
            await chat_view.remove_last("user")
            kept = self.chats.last_user_pictures()  # an edit keeps the message's pictures
            row = MessagePictures.kept(kept) if kept else None
            if self.attach.pending:
                self.notify("An edit keeps its message's pictures: the ones attached wait for the next message.")
        sent = await self.attach.take() if attached else ()
        if sent:
            row = MessagePictures.sent(sent)
        if row is not None:
            await chat_view.mount(row)
        await chat_view.mount(UserMessage(text, pictures=row))
        # A new chat joins the sidebar when its first reply ends: rebuilding the list now would
        # cost a frame while the model writes its first tokens.
        await self.replies.send(kind, text, images=sent)

    @on(PromptInput.PicturePasted)
    def _picture_pasted(self, event: PromptInput.PicturePasted) -> None:
        self.attach.attach_path(event.path)

    @on(PromptInput.BackspaceEmpty)
    async def _backspace_empty(self) -> None:
        await self.attach.remove_last()

    @on(AttachmentChip.Removed)
    async def _chip_removed(self, event: AttachmentChip.Removed) -> None:
        await self.attach.remove(event.sha256)

    async def on_picture_attached(self, message: PictureAttached) -> None:
        """To the attach room."""
        await self.attach.add(message.picture)

    def on_picture_refused(self, message: PictureRefused) -> None:
        """A pasted picture cannot be used: its one line."""
        self.notify(message.error, title="Pictures", severity="error", timeout=15)

    # -- actions ---------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Chat actions only on the chat screen; Esc's two actions only when they can act (so the footer says which)."""
        if action in ("quit", "help", "command_palette", "show_log", "focus_next", "focus_previous"):
            return True  # (Tab and shift+Tab are the app's bindings: they move between a dialog's fields too)
        if self.screen is not self.screen_stack[0]:
            return False  # a dialog or the model error screen is up
        running = self.generating or bool(self.talk.turns) or self.handsfree.busy
        if action == "stop":
            return running
        if action == "cancel_edit":
            return self.editing and not running  # a reply being written is stopped first
        return True

    def action_stop(self) -> None:
        """Esc: stop the reply (or the voice turn: recording, speaking; hands-free listens on)."""
        if self.talk.interrupt() or self.handsfree.interrupt():
            self.replies.stop()
            return
        if not self.replies.stop():
            self.action_cancel_edit()  # (the reply ended as Esc came)

    def action_cancel_edit(self) -> None:
        """Esc while editing the last message: give the edit up (the message box empties)."""
        box = self.query_one(PromptInput)
        if box.editing:
            box.set_editing(False)
            box.clear()

    async def action_talk(self) -> None:
        """Push to talk: start recording; again: send what was said; while a reply speaks: talk over it.

        While hands-free is on, it says so instead: both would read the one microphone.
        """
        if self.handsfree.on:
            self.notify("Hands-free is on: just speak, or F7 turns it off for push-to-talk.", severity="warning")
            return
        await self.talk.press()

    async def action_hands_free(self) -> None:
        """Hands-free voice on or off: each turn begins when you speak and ends when you stop."""
        await self.handsfree.toggle()

    def action_attach_image(self) -> None:
        """Attach a picture to the next message: a dialog asks for its path (a model that cannot see says so)."""
        self.attach.ask()

    def action_toggle_thinking(self) -> None:
        """Thinking on or off for the next message."""
        self.models.toggle_thinking()

    async def action_regenerate(self) -> None:
        """Write the last reply again."""
        if self.generating or self.conversation is None:
            return
        if not self.conversation.turns:
            self.notify("There is no message to answer again.", severity="warning")
            return
        if self.conversation.turns[-1].role != "user":
            await self.query_one(ChatView).remove_reply()  # the reply, with its steps and tool calls
        await self.replies.send("regenerate", None)

    async def action_continue_reply(self) -> None:
        """Go on with the last reply from where the token limit cut it (the history is not read again)."""
        convo = self.conversation
        if self.generating or convo is None:
            return
        last = convo.turns[-1] if convo.turns else None
        if last is None or last.role != "assistant" or last.status != "cut":
            self.notify("Only the last reply, when the token limit cut it, can be continued.", severity="warning")
            return
        await self.query_one(ChatView).remove_last("assistant")
        await self.replies.send("continue", None, shown=(last.content, last.thinking))

    def action_edit_last(self) -> None:
        """Put the last message back in the input; Enter resends it (replacing it and its reply)."""
        if self.generating or self.conversation is None:
            return
        if self.handsfree.on:  # a turn heard meanwhile would become the last message, the one replaced
            self.notify("Hands-free is on: F7 turns it off to edit your last message.", severity="warning")
            return
        text = self.conversation.last_user_text()
        if text is None:
            self.notify("There is no message to edit.", severity="warning")
            return
        box = self.query_one(PromptInput)
        box.text = text
        box.move_cursor(box.document.end)
        box.focus()
        box.set_editing(True)

    def action_copy_reply(self) -> None:
        """Copy the last reply's Markdown to the clipboard (OSC 52 works over SSH)."""
        self.chats.copy_reply()

    def action_copy_code(self) -> None:
        """Copy a code block of the last reply (asks which when there are several)."""
        self.chats.copy_code()

    def action_scroll_chat(self, pages: int) -> None:
        """PageUp/PageDown scroll the conversation a page, wherever the focus is (the message box too)."""
        view = self.query_one(ChatView)
        if pages < 0:
            view.scroll_page_up()
        else:
            view.scroll_page_down()

    async def open_chat(self, chat: ChatRecord | None) -> None:
        """Show `chat`, or a new one (saved when its first message is sent) for None."""
        await self.chats.open(chat)

    async def action_new_chat(self) -> None:
        """Start a new chat (saved when its first message is sent)."""
        await self.open_chat(None)

    async def action_step_chat(self, step: int) -> None:
        """Open the chat after (1) or before (-1) the open one in the list (most recent first)."""
        await self.chats.step(step)

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
        self.chats.rename()

    def action_delete_chat(self) -> None:
        """Delete a chat after asking (the highlighted one in the sidebar, else the open one)."""
        self.chats.delete()

    def action_clear_chat(self) -> None:
        """Clear a chat's messages after asking; its name, model and settings stay."""
        self.chats.clear()

    def action_chat_settings(self) -> None:
        """Edit the open chat's settings (model, thinking, sampling, context size, system prompt)."""
        self.chats.edit_settings()

    def action_export_chat(self) -> None:
        """Export the open chat to a Markdown file."""
        self.chats.export()

    def help_rows(self) -> list[tuple[str, str]]:
        """(keys, what they do) for every key, app bindings first."""
        return HELP_BEFORE + key_rows(self.BINDINGS) + HELP_AFTER

    def action_show_log(self) -> None:
        """Show llama.cpp's log and the app's warnings."""
        if not isinstance(self.screen, LogScreen):
            self.push_screen(LogScreen())

    async def on_pull_changed(self, message: PullChanged) -> None:
        """A palette pull moved on: to the pull room."""
        await self.pulls.on_changed(message)

    def action_help(self) -> None:
        """Show every key."""
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.help_rows()))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """The palette's actions, besides the model switcher."""
        yield from super().get_system_commands(screen)
        yield from action_commands(self)


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    open_model: OpenModel | None = None,
    explicit_model: bool = False,
    chat_name: str | None = None,
    new_chat: bool = False,
    make_voice: MakeVoice | None = None,
    config_path: Path | None = None,
    allow_tools: Iterable[str] = (),
    tools: Sequence[Tool] | None = None,
) -> EdgeAssistApp:
    """Build the chat app for `settings`.

    `store` defaults to the history at `settings.store_path()`; `open_model` (settings, explicit)
    builds the engine and defaults to `engine.factory.open_engine` (tests pass a fake engine);
    `chat_name` opens or creates that chat, `new_chat` starts a fresh one instead of resuming;
    `make_voice` builds the push-to-talk pipeline (default `voice.build_pipeline` on the configured
    devices; tests pass one on wav files). Tools: `config_path` is the `--config` file (where a
    tool allowed "Always" is saved; default the user config dir's), `allow_tools` the tools or MCP
    servers allowed without asking (`--allow-tool`), `tools` exactly these tools instead of the
    configured ones (tests).
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
        config_path=config_path,
        allow_tools=allow_tools,
        tools=tools,
    )
