"""The chats room: which chat is open and its `Conversation`, the sidebar's list, and what can be done to a chat.

Open, new, rename, delete, export, a chat's own settings (model, thinking, sampling, context, system prompt), and
copying its last reply. Opening or deleting the chat
being written to stops its reply first (through `stop_replies`, which the app hands in).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeassist.chat import Conversation, Shown, Turn
from edgeassist.engine.base import ImageRef, Stats
from edgeassist.errors import EdgeAssistError, StoreError
from edgeassist.store import ChatRecord, ChatSettings, KeptImage, Store
from edgeassist.tools import ToolUse
from edgeassist.tui import figures
from edgeassist.tui.codeblocks import CodeBlock, code_blocks
from edgeassist.tui.models import CHAT_SOURCE, ModelRoom, checked_chat_settings
from edgeassist.tui.pictures import MessagePictures
from edgeassist.tui.room import Room, Session
from edgeassist.tui.screens import (
    NUMBER_FIELDS,
    ChatSettingsForm,
    ChatSettingsScreen,
    CodeBlockScreen,
    ConfirmScreen,
    TextPromptScreen,
)
from edgeassist.tui.tools import shown_turns
from edgeassist.tui.widgets import (
    ChatItem,
    ChatList,
    ChatView,
    CopyClicked,
    PromptInput,
    ReplyView,
    StatusBar,
    ToolBlock,
    TopBar,
    UserMessage,
    Welcome,
)

if TYPE_CHECKING:
    from textual.app import App


MAX_SHOWN = 40
"""Messages kept on screen; older ones stay in the history (and the export). Bounds the cost of a frame."""


class ChatRoom(Room):
    """The open chat (None: a new one, saved when its first message is sent) and the chats sidebar."""

    def __init__(
        self, app: App[Any], session: Session, models: ModelRoom, stop_replies: Callable[[], Awaitable[None]]
    ) -> None:
        """`stop_replies` stops every reply and waits until each has been saved."""
        super().__init__(app, session)
        self.models = models
        self._stop_replies = stop_replies
        self.chat: ChatRecord | None = None
        self.conversation: Conversation | None = None

    def resume(self, name: str | None, new: bool) -> None:
        """At start-up: open the chat called `name` (created if need be), else a new one or the last one."""
        store = self.session.store
        try:
            if name is not None:
                self.chat = store.open_chat(name)  # one transaction: two apps may open one new name
            elif not new and self.session.settings.tui.resume_last_chat:
                self.chat = store.last_chat()
        except StoreError as e:
            self.chat = None
            self.app.notify(str(e), severity="error", timeout=10)
        # Before the model is built: the chat's context size is the one it loads with.
        self.models.adopt(self.chat.settings if self.chat is not None else ChatSettings())

    def reconnect(self) -> None:
        """A new Conversation for the open chat over the engine in use (after the engine changed)."""
        engine = self.models.engine
        self.conversation = None
        if engine is not None:
            self.conversation = Conversation(
                engine,
                system_prompt=self.session.settings.generation.system_prompt,
                options=self.models.options(),
                store=self.session.store,
                chat=self.chat,
                tools=self.session.tools,
            )

    async def render(self) -> None:
        """Show the open chat's messages (its last `MAX_SHOWN`) and its name."""
        view = self.app.query_one(ChatView)
        await view.remove_children()
        if self.conversation is None and self.chat is not None:
            # No engine (the model failed): still show the saved messages.
            saved = [m for m in self.session.store.messages(self.chat.id) if m.role in ("user", "assistant", "tool")]
            store = self.session.store
            turns = [
                Turn(
                    m.role,
                    m.content,
                    m.thinking,
                    m.status,
                    call=_call(m.tool, m.content),
                    images=tuple(p for p in (_kept(store, k) for k in m.images) if p is not None),
                )
                for m in saved
            ]
        else:
            turns = self.conversation.turns if self.conversation is not None else []
        widgets = [w for t, shown in zip(turns, _shown(turns), strict=True) if shown for w in _widgets(t)]
        if widgets:
            await view.mount_all(widgets)
        else:
            await view.mount(Welcome(*self._welcome()))  # (hidden by the CSS once a message follows it)
        await view.trim(MAX_SHOWN)
        view.anchor()
        title = self.chat.name if self.chat is not None else "New chat"
        self.app.query_one(TopBar).set_title(title)
        self.app.sub_title = title
        self._show_figures()
        await self.show_memory(fit=True)

    def last_user_pictures(self) -> tuple[Shown, ...]:
        """The pictures of the open chat's last message from the user (an edit of it keeps them)."""
        convo = self.conversation
        users = [t for t in convo.turns if t.role == "user"] if convo is not None else []
        return users[-1].images if users else ()

    def prompts(self) -> list[str]:
        """The open chat's messages from the user, oldest first (Up recalls them: the history is the store's)."""
        if self.conversation is not None:
            return [t.content for t in self.conversation.turns if t.role == "user"]
        if self.chat is None:
            return []
        try:
            return [m.content for m in self.session.store.messages(self.chat.id) if m.role == "user"]
        except StoreError:
            return []

    def _welcome(self) -> tuple[str, bool]:
        """The model's label for the welcome (where it runs once it has loaded), and whether it has."""
        models = self.models
        quant = models.resolved.quant if models.resolved is not None else None
        backend = models.engine.backend if models.ready and models.engine is not None else ""
        return figures.model_label(models.name, quant, backend), models.ready

    def show_welcome(self) -> None:
        """Bring an empty chat's welcome up to date with the model (loading, loaded, switched)."""
        label, ready = self._welcome()
        for welcome in self.app.query_one(ChatView).query(Welcome):
            welcome.show(label, ready=ready)

    async def show_memory(self, *, fit: bool = False) -> None:
        """Mark where the model's memory of the open chat starts (when old turns no longer fit its window).

        `fit`: first trim as the next turn would (a chat just opened); after a turn it is known.
        """
        convo = self.conversation
        if fit and convo is not None and convo.turns and self.models.ready and self._tools_counted(convo):
            convo.fit_to_window(self.models.options())  # (a chat just opened has not been fitted yet)
        # The divider counts message widgets: a reply step that only called tools has none.
        shown = _shown(convo.turns) if convo is not None else []
        forgotten = sum(shown[: convo.forgotten]) if convo is not None else 0
        await self.app.query_one(ChatView).mark_memory(forgotten, sum(shown))

    def _tools_counted(self, convo: Conversation) -> bool:
        """Whether fitting `convo` here starts nothing: no tools offered, or a reply's thread has started them.

        (Counting the prompt counts the offered tools, and gathering them starts the MCP servers:
        that is a reply thread's work, never the UI thread's. Until then the divider waits for a reply.)
        """
        if convo.toolbox is None or not convo.engine.capabilities.tools:
            return True
        return self.session.tools_started.is_set()

    def _show_figures(self) -> None:
        """The status bar's figures are the chat in view's: its last reply's, or none for a new chat.

        (While the model loads, the bar says so instead.)
        """
        if not self.models.ready:
            return
        saved: dict[str, Any] | None = None
        if self.chat is not None:
            try:
                replies = [m for m in self.session.store.messages(self.chat.id) if m.role == "assistant"]
            except StoreError:
                replies = []
            saved = replies[-1].stats if replies else None
        target = self.session.settings.bench.target_ms
        shown = figures.final_figures(Stats.from_dict(saved), target) if saved else ""
        self.app.query_one(StatusBar).set_figures(shown)

    async def refresh_list(self) -> None:
        """List the saved chats in the sidebar, the open one marked."""
        if self.session.quitting:
            return
        try:
            chats = self.session.store.list_chats()
        except StoreError as e:
            self.app.notify(str(e), severity="error")
            return
        await self.app.query_one(ChatList).show(chats, self.chat.id if self.chat else None)

    async def open(self, chat: ChatRecord | None) -> None:
        """Show `chat` (None: a new, not yet saved chat), stopping any reply first."""
        await self._stop_replies()
        box = self.app.query_one(PromptInput)
        box.set_editing(False)
        self.chat = chat
        self.models.adopt(chat.settings if chat is not None else ChatSettings())
        # The chat's own model when it is on disk; the one in use reloaded when the chat's context size differs.
        await self.models.restore(chat.model if chat is not None else None)
        self.reconnect()
        await self.render()
        await self.refresh_list()
        box.focus()

    async def step(self, step: int) -> None:
        """Open the chat `step` places down the list (most recent first); a new chat sits above the first."""
        try:
            chats = self.session.store.list_chats()
        except StoreError as e:
            self.app.notify(str(e), severity="error")
            return
        ids = [c.id for c in chats]
        here = ids.index(self.chat.id) if self.chat is not None and self.chat.id in ids else -1
        there = here + step
        if not 0 <= there < len(chats):
            self.app.notify("No older chat." if step > 0 else "No newer chat.", timeout=2)
            return
        await self.open(chats[there])

    async def open_selected(self, item: object) -> None:
        """Open the chat picked in the sidebar (unless it is the open one)."""
        if isinstance(item, ChatItem) and (self.chat is None or item.chat.id != self.chat.id):
            chat = self.session.store.get_chat(item.chat.id)
            if chat is not None:
                await self.open(chat)

    def ensure(self, first_message: str) -> None:
        """Save the chat when its first message is sent, named after that message."""
        if self.chat is not None or self.conversation is None:
            return
        store, settings = self.session.store, self.session.settings
        words = re.sub(r"\s+", " ", first_message).strip()
        # A pasted escape sequence or other control character must not stop the chat being saved.
        words = "".join(ch for ch in words if unicodedata.category(ch)[0] != "C").strip() or "Chat"
        base = words if len(words) <= 40 else words[:39].rstrip() + "…"
        system = self.conversation.system_prompt
        custom = system if system != settings.generation.system_prompt else None
        for n in range(1, 100):
            name = base if n == 1 else f"{base} ({n})"
            try:
                self.chat = store.create_chat(name, system_prompt=custom, model=self.models.name)
                break
            except StoreError:
                if store.find_chat(name) is None:
                    raise
        self.conversation.chat = self.chat
        own = self.models.chat_settings
        if self.chat is not None and own != ChatSettings():  # set on the screen before the chat was saved
            store.set_settings(self.chat.id, own)
        self.app.query_one(TopBar).set_title(self.chat.name if self.chat else "New chat")

    def ensure_quietly(self, first_message: str) -> None:
        """`ensure`, and when the history cannot be written, say so and carry on unsaved."""
        try:
            self.ensure(first_message)
        except StoreError as e:
            self.app.notify(f"{e}; this chat is not being saved", severity="error", timeout=10)

    def _target(self) -> ChatRecord | None:
        """The chat highlighted in the sidebar when it has the focus, else the open one."""
        chat_list = self.app.query_one(ChatList)
        if self.app.focused is chat_list and isinstance(chat_list.highlighted_child, ChatItem):
            return chat_list.highlighted_child.chat
        return self.chat

    def rename(self) -> None:
        """Rename the chat (the one highlighted in the sidebar, else the open one)."""
        chat = self._target()
        current = chat.name if chat is not None else ""
        store = self.session.store

        async def done(name: str | None) -> None:
            if not name or not name.strip() or name.strip() == current:
                return
            try:
                if chat is None:
                    self.chat = store.create_chat(name.strip(), model=self.models.name)
                    if self.conversation is not None:
                        self.conversation.chat = self.chat
                else:
                    store.rename_chat(chat.id, name.strip())
                    if self.chat is not None and self.chat.id == chat.id:
                        self.chat = store.get_chat(chat.id)
            except StoreError as e:
                self.app.notify(str(e), severity="error")
                return
            if self.chat is not None:
                self.app.query_one(TopBar).set_title(self.chat.name)
            await self.refresh_list()
            self.app.notify(f"Renamed to {name.strip()!r}.", timeout=3)

        self.app.push_screen(TextPromptScreen("Name of the chat:", current), done)

    def delete(self) -> None:
        """Delete a chat after asking (the highlighted one in the sidebar, else the open one)."""
        chat = self._target()
        if chat is None:
            self.app.notify("This chat is not saved yet: nothing to delete.", severity="warning")
            return
        store = self.session.store

        async def done(yes: bool | None) -> None:
            if not yes:
                return
            is_open = self.chat is not None and self.chat.id == chat.id
            if is_open:
                await self._stop_replies()
            try:
                store.delete_chat(chat.id)
            except StoreError as e:
                self.app.notify(str(e), severity="error")
                return
            if is_open:
                await self.open(None)
            else:
                await self.refresh_list()
            self.app.notify(f"Deleted {chat.name!r}.", timeout=3)

        n = len(store.messages(chat.id))
        self.app.push_screen(ConfirmScreen(f"Delete the chat {chat.name!r} and its {n} messages?"), done)

    def clear(self) -> None:
        """Clear a chat's messages after asking (the highlighted one in the sidebar, else the open one).

        The chat keeps its name, model and settings: a fresh start on the same setup.
        """
        chat = self._target()
        n = len(self.session.store.messages(chat.id)) if chat is not None else 0
        if chat is None or n == 0:
            self.app.notify("This chat has no messages to clear.", severity="warning")
            return
        store = self.session.store

        async def done(yes: bool | None) -> None:
            if not yes:
                return
            is_open = self.chat is not None and self.chat.id == chat.id
            if is_open:
                await self._stop_replies()
            try:
                store.clear_chat(chat.id)
            except StoreError as e:
                self.app.notify(str(e), severity="error")
                return
            if is_open:
                self.reconnect()
                await self.render()
            await self.refresh_list()
            self.app.notify(f"Cleared {chat.name!r}; its settings stay.", timeout=3)

        question = f"Clear the {n} messages of {chat.name!r}? Its name and settings stay."
        self.app.push_screen(ConfirmScreen(question, yes="Clear"), done)

    def edit_settings(self) -> None:
        """Edit the open chat's settings (F3): model, thinking, sampling, reply length, context size, system prompt."""
        if self.conversation is None:
            return
        default = self.session.settings.generation.system_prompt
        own = self.models.chat_settings
        form = ChatSettingsForm(
            model=self.models.name,
            think=self.session.think,
            temperature=_text(own.temperature),
            top_p=_text(own.top_p),
            max_tokens=_text(own.max_tokens),
            n_ctx=_text(own.n_ctx),
            system_prompt=self.conversation.system_prompt or default,
        )
        self.app.push_screen(ChatSettingsScreen(form, self._defaults(), self._refusal), self._save_settings)

    def _defaults(self) -> dict[str, str]:
        """What each empty number field means: the configured value, or the model card's."""
        g, m = self.session.settings.generation, self.session.settings.model
        card = "the model's own"  # Qwen 3.5's card, or general values for other models: `GenerationOptions.sampling`
        return {
            "temperature": f"default: {g.temperature if g.temperature is not None else card}",
            "top_p": f"default: {g.top_p if g.top_p is not None else card}",
            "max_tokens": f"default: {g.max_tokens}",
            "n_ctx": f"default: {m.n_ctx} (a change reloads the model)",
        }

    def _checked(self, form: ChatSettingsForm) -> ChatSettings:
        """The form's settings, checked as the configuration is; ConfigError when one is refused."""
        values: dict[str, object] = {name: getattr(form, name) for name, _ in NUMBER_FIELDS}
        # Thinking is the chat's own once it had one or the box differs from the app's switch.
        if self.models.chat_settings.think is not None or form.think != self.models.toggled:
            values["think"] = form.think
        return checked_chat_settings(self.session.settings, values)

    def _refusal(self, form: ChatSettingsForm) -> str | None:
        """Why the screen cannot save `form` (one line), or None."""
        if not form.model:
            return "the model cannot be empty: give a catalog name or a GGUF file"
        try:
            self._checked(form)
        except EdgeAssistError as e:
            # On the screen itself, where the value came from goes without saying: the line stays short.
            return str(e).removeprefix("config error: ").removesuffix(f" (from {CHAT_SOURCE})")
        return self.models.check_model(form.model)

    async def _save_settings(self, form: ChatSettingsForm | None) -> None:
        """Store the chat's settings and apply them: options now, a model switch or a context reload at once."""
        if form is None or self.conversation is None:
            return
        own = self._checked(form)
        default = self.session.settings.generation.system_prompt
        custom = form.system_prompt if form.system_prompt and form.system_prompt != default else None
        if self.chat is not None:
            try:
                self.session.store.set_settings(self.chat.id, own)
                self.session.store.set_system_prompt(self.chat.id, custom)
                if form.model != self.models.name:
                    self.session.store.set_model(self.chat.id, form.model)
                self.chat = self.session.store.get_chat(self.chat.id) or self.chat
            except StoreError as e:
                self.app.notify(str(e), severity="error")
                return
        self.conversation.system_prompt = custom or default
        self.conversation.chat = self.chat
        self.models.adopt(own)
        if form.model != self.models.name:
            await self._stop_replies()
            on_server = self.models.engine is not None and not self.models.engine.capabilities.local
            if await self.models.switch(form.model, on_server):
                self.reconnect()
            self.app.notify(f"Chat settings saved; loading {form.model}…")
            return
        await self._stop_replies()
        if await self.models.reload_for_context():
            self.reconnect()
        self.app.notify("Chat settings saved.", timeout=3)

    def export(self) -> None:
        """Export the open chat to a Markdown file."""
        if self.chat is None:
            self.app.notify("This chat is not saved yet: send a message first.", severity="warning")
            return
        chat = self.chat
        slug = re.sub(r"[^\w.-]+", "-", chat.name).strip("-.") or "chat"
        default = str(Path.cwd() / f"{slug}.md")

        def done(path_text: str | None) -> None:
            if not path_text:
                return
            path = Path(path_text.strip()).expanduser()
            try:
                text = self.session.store.export_markdown(chat.id)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
            except (OSError, StoreError) as e:
                self.app.notify(f"cannot export to {path}: {e}", severity="error")
                return
            self.app.notify(f"Exported to {path}", timeout=5)

        self.app.push_screen(TextPromptScreen("Export the chat to the Markdown file:", default), done)

    def _last_reply(self) -> ReplyView | None:
        replies = [w for w in self.app.query_one(ChatView).messages() if isinstance(w, ReplyView)]
        return replies[-1] if replies else None

    def copy_reply(self) -> None:
        """Copy the last reply's Markdown to the clipboard (OSC 52 works over SSH)."""
        reply = self._last_reply()
        if reply is None or not reply.content.strip():
            self.app.notify("There is no reply to copy.", severity="warning")
            return
        self.app.copy_to_clipboard(reply.content.strip())
        self.app.notify(f"Copied the reply ({len(reply.content.strip())} characters).", timeout=3)

    def copy_code(self) -> None:
        """Copy a code block of the last reply (asks which when there are several)."""
        reply = self._last_reply()
        blocks = code_blocks(reply.content) if reply is not None else []
        if not blocks:
            self.app.notify("The last reply has no code block.", severity="warning")
        elif len(blocks) == 1:
            self._copy_block(blocks[0])
        else:
            self.app.push_screen(CodeBlockScreen(blocks), self._copy_block)

    def copy_clicked(self, clicked: CopyClicked) -> None:
        """Copy the message, reply or code block that was clicked."""
        if clicked.block:
            self._copy_block(CodeBlock(clicked.text, clicked.what))
            return
        self.app.copy_to_clipboard(clicked.text)
        self.app.notify(f"Copied the {clicked.what} ({len(clicked.text)} characters).", timeout=3)

    def _copy_block(self, block: CodeBlock | None) -> None:
        if block is None:
            return
        self.app.copy_to_clipboard(block.code)
        lines = len(block.code.splitlines())
        plural = "s" if lines != 1 else ""
        self.app.notify(f"Copied the {block.language or 'code'} block ({lines} line{plural}).", timeout=3)


def _text(value: float | int | None) -> str:
    """A number as its field shows it; empty for None."""
    return "" if value is None else str(value)


def _shown(turns: list[Turn]) -> list[bool]:
    """Which of `turns` have a widget (`tools.shown_turns`)."""
    return shown_turns([t.role for t in turns], [not t.content and not t.thinking for t in turns])


def _widgets(turn: Turn) -> list[MessagePictures | UserMessage | ReplyView | ToolBlock]:
    """The widgets that show a saved turn: a user message's pictures go above its text."""
    if turn.role == "user":
        row = MessagePictures.kept(turn.images) if turn.images else None
        message = UserMessage(turn.content, pictures=row)
        return [row, message] if row is not None else [message]
    if turn.role == "tool":
        return [ToolBlock(turn.call or ToolUse("?", {}, result=turn.content, outcome="error"))]
    return [ReplyView(turn.content, turn.thinking, status=turn.status)]


def _kept(store: Store, kept: KeptImage) -> Shown | None:
    """A saved message's picture where the store keeps it (read later, off the event loop, to be shown)."""
    try:
        return Shown(ImageRef(kept.sha256, store.images.path_for(kept.sha256, kept.format)), kept.format, kept.name)
    except EdgeAssistError:
        return None  # (a hand-edited history: not a picture's hash)


def _call(saved: dict[str, Any] | None, result: str) -> ToolUse | None:
    """A saved tool message's call (its result is the message's text); None for other messages."""
    if saved is None:
        return None
    use = ToolUse.from_dict(saved)
    use.result = result
    return use
