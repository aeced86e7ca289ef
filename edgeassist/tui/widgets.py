"""Widgets of the chat app: the message input, the conversation view, replies, the sidebar and the bars."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.cells import cell_len
from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.dom import DOMNode
from textual.markup import MarkupError, escape
from textual.message import Message
from textual.notifications import Notification
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Button, Collapsible, Footer, Label, ListItem, ListView, Markdown, Static, TextArea
from textual.widgets._footer import FooterKey  # (the footer's keys: not exported by textual.widgets)
from textual.widgets.markdown import MarkdownFence, MarkdownStream

from edgeassist.store import ChatRecord
from edgeassist.tools import ToolUse
from edgeassist.tui.figures import shorter_figures, shorter_labels
from edgeassist.tui.paths import pasted_path
from edgeassist.tui.stream import Chunk
from edgeassist.tui.tools import ARGS_SHOWN, RESULT_LINES, RESULT_SHOWN, arguments_json, block_title, cut, printable

NEWLINE_KEYS = ("ctrl+j", "shift+enter", "alt+enter")
"""Keys that put a newline in the message instead of sending it (ctrl+j works in every terminal)."""


class PromptInput(TextArea):
    """The multi-line message box: Enter sends, ctrl+j (or shift/alt+Enter) starts a new line."""

    @dataclass
    class Submitted(Message):
        """The user pressed Enter."""

        input: PromptInput
        """The input that was submitted."""
        text: str
        """Its text."""

    @dataclass
    class PicturePasted(Message):
        """The paste was one picture's path (a file dragged onto the terminal): attach it, insert no text."""

        path: Path
        """The picture file."""

    @dataclass
    class BackspaceEmpty(Message):
        """Backspace in the empty box: the last picture attached comes off."""

    def __init__(self, *, id: str | None = None, prompts: Callable[[], list[str]] | None = None) -> None:
        """A soft-wrapping input without line numbers; Tab moves the focus.

        `prompts`: the open chat's earlier messages, oldest first, for Up/Down to recall.
        """
        super().__init__(
            soft_wrap=True,
            show_line_numbers=False,
            tab_behavior="focus",
            highlight_cursor_line=False,
            placeholder="Message (Enter sends, ctrl+j new line)",
            id=id,
        )
        self.editing = False
        """Enter resends the last message in place of the one sent (ctrl+l); Esc gives the edit up."""
        self._typed: list[str] = []
        """Printable keys not inserted yet: a burst of them goes in as one edit (`_insert_typed`)."""
        self._prompts = prompts or list
        self._recalled: tuple[int, str] | None = None
        """Which earlier message the box shows (its index in `prompts`, its text), while it is unchanged."""

    def recalling(self) -> bool:
        """Whether the box shows an earlier message, as it was recalled (an edit ends the recall)."""
        return self._recalled is not None and self._recalled[1] == self.text

    def recall(self, step: int) -> bool:
        """Show the earlier (-1) or later (+1) message; False when the box is not empty nor recalling.

        Only then, so that Up and Down keep moving the cursor in a message being written. Down past
        the last one empties the box again.
        """
        if self.editing or self._typed or not (self.recalling() or not self.text):
            return False
        prompts = self._prompts()
        at = self._recalled[0] if self._recalled is not None and self.recalling() else len(prompts)
        at = max(0, min(len(prompts), at + step))
        if at == len(prompts):
            self._recalled = None
            self.clear()
            return True
        self._recalled = (at, prompts[at])
        self.text = prompts[at]
        self.move_cursor(self.document.end)
        return True

    def action_cursor_up(self, select: bool = False) -> None:
        """Up: an earlier message when the box is empty or recalling; else the cursor moves up."""
        if select or not self.recall(-1):
            super().action_cursor_up(select)

    def action_cursor_down(self, select: bool = False) -> None:
        """Down: a later message while recalling; else the cursor moves down."""
        if select or not (self.recalling() and self.recall(+1)):
            super().action_cursor_down(select)

    def set_editing(self, editing: bool) -> None:
        """Enter or leave edit mode: the border says so, and Esc's binding follows."""
        self.editing = editing
        self.border_title = "Edit last message · Enter resends · Esc cancels" if editing else None
        self.set_class(editing, "editing")
        self.app.refresh_bindings()

    async def _on_key(self, event: events.Key) -> None:
        if event.is_printable and event.character and not self.read_only:
            # A terminal without bracketed paste sends a paste as one key per character. TextArea
            # re-wraps the whole line on each edit, so 5,000 of them took seconds (quadratic): the
            # keys already queued go in as one edit, inserted once the queue has been read.
            event.stop()
            event.prevent_default()
            self._restart_blink()  # (as TextArea does for each key)
            if not self._typed:
                self.call_later(self._insert_typed)
            self._typed.append(event.character)
            return
        self._insert_typed()  # any other key acts on the text as typed so far
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            self.post_message(self.Submitted(self, self.text))
            return
        if event.key == "backspace" and not self.text:
            self.post_message(self.BackspaceEmpty())
        if event.key in NEWLINE_KEYS:
            event.stop()
            event.prevent_default()
            start, end = self.selection
            self.replace("\n", start, end)
            return
        await super()._on_key(event)

    def _insert_typed(self) -> None:
        """Insert the printable keys received so far, in one edit, over the selection (as typing does)."""
        if not self._typed:
            return
        text = "".join(self._typed)
        self._typed.clear()
        start, end = self.selection
        self.replace(text, start, end, maintain_selection_offset=False)

    async def _on_paste(self, event: events.Paste) -> None:
        # (TextArea's own handler inserts the text after this one: Textual calls each class's in turn.
        # Calling it here as well pasted everything twice.)
        self._insert_typed()
        path = pasted_path(event.text) if not self.read_only else None
        if path is not None:  # a picture's path, as a terminal pastes a file dropped on it
            event.stop()
            event.prevent_default()  # TextArea's handler does not run: no text goes in
            self.post_message(self.PicturePasted(path))

    async def _on_mouse_down(self, event: events.MouseDown) -> None:
        self._insert_typed()  # before the click moves the cursor
        await super()._on_mouse_down(event)


@dataclass
class CopyClicked(Message):
    """A message or one of a reply's code blocks was clicked: the app copies `text`."""

    text: str
    """What to copy."""
    what: str
    """What it is, for the notice: `message`, `reply`, or a code block's language (empty: none given)."""
    block: bool = False
    """Whether it is a code block."""


def plain_click(widget: Widget, event: events.Click) -> bool:
    """A single click that selected nothing (a drag selects text to copy with ctrl+c; that stays as it was)."""
    return event.chain == 1 and not widget.screen.get_selected_text()


class UserMessage(Static):
    """A message the user sent (plain text, selectable); a click copies it."""

    def __init__(self, text: str, pictures: Widget | None = None) -> None:
        """Show `text` as it was typed; `pictures`: the row of its pictures, mounted just above it."""
        super().__init__(text, markup=False, classes="message user")
        self.role = "user"
        self.text = text
        self.pictures = pictures
        """The row of the message's pictures (`pictures.MessagePictures`), a sibling above it; None without."""
        self.set_class(pictures is not None, "with-pictures")

    def with_pictures(self) -> list[Widget]:
        """This message's widgets, top first: its pictures (when mounted beside it), then itself."""
        row = self.pictures
        return [row, self] if row is not None and row.parent is self.parent else [self]

    def on_click(self, event: events.Click) -> None:
        """Copy the message."""
        if plain_click(self, event):
            self.post_message(CopyClicked(self.text, "message"))


class QuietCollapsible(Collapsible):
    """A collapsible block that the app may close without scrolling the view to it."""

    _auto = False

    def collapse_quietly(self) -> None:
        """Collapse without scrolling the view up to the block (the reader is following the answer)."""
        if self.collapsed:
            return
        self._auto = True
        self.collapsed = True

    def _watch_collapsed(self, collapsed: bool) -> None:
        if self._auto:
            self._auto = False
            self._update_collapsed(collapsed)
            self.post_message(self.Collapsed(self) if collapsed else self.Expanded(self))
            return
        super()._watch_collapsed(collapsed)


class ThinkingBlock(QuietCollapsible):
    """The model's thinking, in a block that collapses when the answer starts."""

    def __init__(self, text: str = "", *, title: str = "Thinking…", collapsed: bool = False) -> None:
        """A block showing `text`, expanded while it streams."""
        self.body = Markdown(text, classes="thinking-text")
        super().__init__(self.body, title=title, collapsed=collapsed, classes="thinking")


class ToolBlock(QuietCollapsible):
    """One tool call of a reply, titled with its tool, source, outcome and time: `⚙ clock · built-in · ok · 0.01 s`.

    Open while the call runs (its arguments say what is running), closed once it has ended. The
    body is the arguments and the result as plain text (never markup), a long result cut with a note.
    """

    def __init__(self, use: ToolUse, *, running: bool = False) -> None:
        """The block for `use`; `running`: it has started and not ended yet."""
        self.use = use
        self.running = running
        self.role = "tool"
        self.body = Static(self._body_text(), classes="tool-body", markup=False)
        super().__init__(self.body, title="", collapsed=not running, classes="message tool")
        self.title = block_title(use, running=running)  # type: ignore[assignment] # (Content: never read as markup)
        self.set_class(not running and use.outcome != "ok", "refused")

    @property
    def shown_text(self) -> str:
        """The body as shown: the arguments and the result."""
        return self._body_text().plain

    def _body_text(self) -> Text:
        args, args_note = cut(printable(arguments_json(self.use.arguments)), ARGS_SHOWN)
        text = Text()
        text.append("Arguments\n", style="bold")
        text.append(args)
        if args_note:
            text.append("\n" + args_note, style="italic")
        text.append("\n\nResult\n", style="bold")
        if self.running:
            text.append("running…", style="italic")
            return text
        result, note = cut(printable(self.use.result), RESULT_SHOWN, RESULT_LINES)
        text.append(result or "(empty)")
        if note:
            text.append("\n" + note, style="italic")
        return text

    def finish(self, use: ToolUse) -> None:
        """The call ended: say how, and close the block (quietly: the reader follows the reply below it)."""
        self.use, self.running = use, False
        self.title = block_title(use)  # type: ignore[assignment]
        self.body.update(self._body_text())
        self.set_class(use.outcome != "ok", "refused")
        self.collapse_quietly()

    def stopped(self) -> None:
        """The reply ended while the call ran, and its end never came here: show it stopped."""
        if self.running:
            self.finish(ToolUse(self.use.name, self.use.arguments, self.use.source, "", outcome="stopped"))


def thought_title(seconds: float | None, *, done: bool, suffix: str = "") -> str:
    """`Thinking… 2.1 s` while it streams, `Thought for 3.4 s` after (plus `suffix`)."""
    if seconds is None:
        return "Thought" if done else "Thinking…"
    if not done:
        return f"Thinking… {seconds:.1f} s"
    return f"Thought for {seconds:.1f} s{suffix}"


_NO_ANSWER = {"cancelled": " (stopped)", "cut": " (cut before the answer)"}
"""What a thinking block's title adds when its reply has no answer, by how the reply ended."""


class ReplyView(Vertical):
    """One reply: an optional thinking block, the Markdown answer, and a status line (waiting, stopped, error)."""

    def __init__(
        self, content: str = "", thinking: str = "", *, status: str = "complete", streaming: bool = False
    ) -> None:
        """A finished reply (from the history) or, with `streaming`, an empty one about to stream.

        `status` is complete, cut, cancelled or error; a streaming reply's is `streaming` until it ends.
        """
        super().__init__(classes="message reply")
        self.role = "assistant"
        self.streaming = streaming
        self.content = content
        self.thinking = thinking
        self.status = "streaming" if streaming else status
        self.answer = Markdown(content, classes="answer")
        self.think_block: ThinkingBlock | None = (
            ThinkingBlock(thinking, title="Thought", collapsed=True) if thinking else None
        )
        self.note = Static("", classes="reply-note", markup=False)
        self.more = Button("Continue ▸ F9", classes="continue", compact=True)
        """Shown under a reply cut by the token limit: goes on with it (the app's continue_reply)."""
        self.more.display = False
        self._answer_stream: MarkdownStream | None = None
        self._think_stream: MarkdownStream | None = None
        self._thought_s: float | None = None
        self.cut_at: int | None = None
        """Generated tokens when the limit cut the reply (known for a reply of this session)."""

    def compose(self) -> ComposeResult:
        """Thinking block (if any), answer, note."""
        if self.think_block is not None:
            yield self.think_block
        yield self.answer
        yield self.note
        yield self.more

    def on_click(self, event: events.Click) -> None:
        """Copy the code block clicked, else the whole reply (not a click on the thinking block or a button)."""
        if self.streaming or not plain_click(self, event):
            return
        node: DOMNode | None = event.widget
        while node is not None and node is not self:
            if isinstance(node, ThinkingBlock | Button):
                return
            if isinstance(node, MarkdownFence):
                self.post_message(CopyClicked(node.code.rstrip("\n"), (node.lexer or "").split(" ")[0], block=True))
                return
            node = node.parent
        if self.content.strip():
            self.post_message(CopyClicked(self.content.strip(), "reply"))

    async def on_button_pressed(self, event: Button.Pressed) -> None:
        """Continue: the app goes on with the last reply."""
        event.stop()
        await self.app.run_action("continue_reply")

    def on_mount(self) -> None:
        """Show the waiting note, or a saved reply's status."""
        if self.streaming:
            self.set_note("…", "waiting")
        else:
            self._show_status(self.status)

    def set_note(self, text: str, kind: str = "") -> None:
        """Show a one-line note under the answer (empty hides it)."""
        self.note.update(text)
        self.note.set_classes(f"reply-note {kind}".strip())
        self.note.display = bool(text)

    async def add(self, chunk: Chunk) -> None:
        """Stream new pieces in: thinking into its block, the answer into the Markdown."""
        if chunk.thinking:
            if self.think_block is None:
                # Made in the state it will show: a title changed right after mounting could be laid out
                # at its old width (seen as "▶ Thought" when the first chunk already holds the answer).
                done = chunk.answering
                title = thought_title(chunk.thinking_s, done=done)
                self.think_block = ThinkingBlock(title=title, collapsed=done)
                await self.mount(self.think_block, before=self.answer)
            if self._think_stream is None:
                self._think_stream = Markdown.get_stream(self.think_block.body)
            self.thinking += chunk.thinking
            await self._think_stream.write(chunk.thinking)
        if self.think_block is not None and chunk.thinking_s is not None:
            self._thought_s = chunk.thinking_s
            if chunk.answering and not self.think_block.collapsed:
                self.think_block.title = thought_title(chunk.thinking_s, done=True)
                self.think_block.collapse_quietly()
            elif not chunk.answering:
                self.think_block.title = thought_title(chunk.thinking_s, done=False)
        if chunk.text:
            if self._answer_stream is None:
                self._answer_stream = Markdown.get_stream(self.answer)
            self.content += chunk.text
            await self._answer_stream.write(chunk.text)
        if chunk.pieces and self.note.display and self.note.has_class("waiting"):
            self.set_note("")

    async def finish(
        self, status: str, note: str | None = None, *, cut_at: int | None = None, calls: bool = False
    ) -> None:
        """End the stream: stop the Markdown streams, render the full text once, show the status (or `note`).

        `cut_at`: for a reply cut by the token limit, the tokens it had generated. `calls`: a step
        of the reply that ended calling tools (the answer follows them).
        """
        self.cut_at = cut_at
        self.streaming = False
        for stream in (self._think_stream, self._answer_stream):
            if stream is not None:
                await stream.stop()
        self._think_stream = self._answer_stream = None
        # One final render: a stream appends block by block, so an unclosed fence or table may be stale.
        self.content = self.content.strip()
        await self.answer.update(self.content)
        if self.think_block is not None:
            await self.think_block.body.update(self.thinking.strip())
            suffix = "" if self.content or calls else _NO_ANSWER.get(status, " (no answer)")
            self.think_block.title = thought_title(self._thought_s, done=True, suffix=suffix)
            if (self.content or calls) and not self.think_block.collapsed:
                self.think_block.collapse_quietly()
        self.status = status
        self._show_status(status, note)

    def _show_status(self, status: str, note: str | None = None) -> None:
        self.more.display = status == "cut"
        if note is not None:
            self.set_note(f"■ {note}", "error")
        elif status == "cancelled":
            self.set_note("■ stopped", "stopped")
        elif status == "cut":
            at = f"{self.cut_at:,} tokens" if self.cut_at else "the token limit"
            self.set_note(f"■ cut at {at} (generation.max_tokens)", "stopped")
        elif status == "error":
            self.set_note("■ error", "error")
        else:
            self.set_note("")


class EarlierNote(Static):
    """The line above the conversation when older messages are not mounted."""

    def __init__(self) -> None:
        """An empty note; `set_hidden` fills it in."""
        super().__init__("", classes="earlier", markup=False)
        self.hidden = 0

    def set_hidden(self, count: int) -> None:
        """Say that `count` earlier messages are not shown."""
        self.hidden = count
        self.update(f"… {count} earlier messages are not shown here (F4 exports the whole chat)")


class MemoryDivider(Static):
    """The line where the model's memory of the chat starts: the messages above it no longer fit its context."""

    def __init__(self) -> None:
        """The divider, with its one sentence."""
        super().__init__(
            "── the model no longer sees the messages above: they outgrew its context window ──",
            classes="memory",
            markup=False,
        )


class ChatView(VerticalScroll):
    """The conversation; follows the bottom while a reply streams unless the user scrolled up."""

    can_focus = True

    def messages(self) -> list[UserMessage | ReplyView | ToolBlock]:
        """The message widgets in order (a reply's tool calls among them)."""
        return [w for w in self.children if isinstance(w, UserMessage | ReplyView | ToolBlock)]

    async def trim(self, keep: int) -> None:
        """Keep only the last `keep` messages mounted, with a line saying how many earlier ones are hidden."""
        msgs = self.messages()
        extra = len(msgs) - keep
        if extra <= 0:
            return
        notes = self.query(EarlierNote)
        note = notes.first() if notes else None
        hidden = extra + (note.hidden if note is not None else 0)
        await self.remove_children(_with_pictures(msgs[:extra]))
        if note is None:
            note = EarlierNote()
            await self.mount(note, before=0)
        note.set_hidden(hidden)

    async def mark_memory(self, forgotten: int, turns: int) -> None:
        """Put the memory divider before the first of `turns` messages that the model still sees.

        The mounted messages are the last ones of the chat's `turns`; with nothing forgotten, no divider.
        """
        await self.query(MemoryDivider).remove()
        msgs = self.messages()
        if forgotten <= 0 or not msgs:
            return
        first_seen = forgotten - (turns - len(msgs))  # (its index among the mounted messages)
        if first_seen >= len(msgs):
            return
        await self.mount(MemoryDivider(), before=_with_pictures([msgs[max(first_seen, 0)]])[0])

    async def remove_reply(self) -> None:
        """Remove the last reply: every step and tool call after the last message from the user."""
        msgs = self.messages()
        users = [i for i, w in enumerate(msgs) if isinstance(w, UserMessage)]
        after = msgs[users[-1] + 1 :] if users else msgs
        if after:
            await self.remove_children(after)

    async def remove_last(self, role: str) -> bool:
        """Remove the last message widget if it has `role`; True if one was removed."""
        msgs = self.messages()
        if msgs and msgs[-1].role == role:
            await self.remove_children(_with_pictures(msgs[-1:]))
            return True
        return False


def _with_pictures(msgs: list[UserMessage | ReplyView | ToolBlock]) -> list[Widget]:
    """`msgs` with the rows of their pictures, in order on screen."""
    return [w for m in msgs for w in (m.with_pictures() if isinstance(m, UserMessage) else [m])]


class ChatItem(ListItem):
    """One saved chat in the sidebar."""

    def __init__(self, chat: ChatRecord) -> None:
        """A row for `chat`."""
        super().__init__(Label(chat.name, markup=False))
        self.chat = chat


class ChatList(ListView):
    """The saved chats, most recent first. Enter opens, Delete deletes; typing goes to the message box."""

    BINDINGS = [Binding("delete", "app.delete_chat", "Delete", show=False)]

    def on_focus(self) -> None:
        """Highlight the first chat if none is, so Enter opens one."""
        if self.index is None and self.children:
            self.index = 0  # so Enter opens something

    def on_key(self, event: events.Key) -> None:
        # Someone typing here means to write a message: letters must not act as commands.
        """Send typing to the message box."""
        if event.is_printable and event.character:
            event.stop()
            box = self.screen.query_one(PromptInput)
            box.focus()
            box.insert(event.character)

    async def show(self, chats: list[ChatRecord], current: int | None) -> None:
        """Replace the rows with `chats`, highlighting the one with id `current`."""
        await self.clear()
        await self.extend([ChatItem(c) for c in chats])
        for i, c in enumerate(chats):
            if c.id == current:
                self.index = i
                break
        else:
            self.index = None


class Sidebar(Vertical):
    """The chats sidebar."""

    def compose(self) -> ComposeResult:
        """A title and the chat list."""
        yield Label("Chats", id="sidebar-title")
        yield ChatList(id="chat-list")


def _width(markup: str) -> int:
    """Cells that content markup takes on screen."""
    try:
        return Content.from_markup(markup).cell_length
    except MarkupError:
        return cell_len(markup)


class TopBar(Horizontal):
    """One line at the top: the chat's name, and the thinking mode for the next message.

    The mode says it in words where there is room and shortly where there is not, so the chat's
    name keeps `TITLE_MIN` cells (or all it needs).
    """

    TITLE_MIN = 24

    def __init__(self, *, id: str | None = None) -> None:
        """An empty bar; the app sets the title and the mode."""
        super().__init__(id=id)
        self._title = "edgeassist"
        self._modes = ("", "")

    def compose(self) -> ComposeResult:
        """The chat's name on the left, the thinking mode on the right."""
        yield Static(self._title, id="chat-title", markup=False)
        yield Static("", id="mode")

    def set_title(self, title: str) -> None:
        """Show the chat's name."""
        self._title = title
        self.query_one("#chat-title", Static).update(title)
        self._fit()

    def set_mode(self, think: bool, supported: bool | None) -> None:
        """Show whether the next message will think (`supported` None: not known until the model loads)."""
        if supported is False:
            self._modes = ("thinking: n/a for this model (ctrl+t)", "think: n/a")
        elif think:
            self._modes = ("[b]thinking: on[/b] (ctrl+t)", "[b]think: on[/b] ^t")
        else:
            self._modes = ("thinking: off (ctrl+t)", "think: off ^t")
        self._fit()

    def on_resize(self) -> None:
        """Choose the mode's words for the new width, once this layout is done (a change made during it is lost)."""
        self.call_after_refresh(self._fit)

    def _fit(self) -> None:
        room = self.content_region.width
        if not room or not self._modes[0]:
            return
        long, short = self._modes
        title = min(cell_len(self._title), self.TITLE_MIN)
        fits = room - _width(long) - 2 >= title  # (2: the gap before the mode)
        self.query_one("#mode", Static).update(long if fits else short)


class StatusBar(Horizontal):
    """The live figures (speed against the target, TTFT, context) and the model, quant and backend.

    Both shorten to the width, giving up in turn: the quant, the tok/s rate (the ms/tok says the
    same), the backend, then TTFT; the model's name stays whole as long as anything does. The label
    is fitted to the width with room for a typical line of figures, not to each frame's figures, so
    it stays put while a reply streams; the figures then take the longest form that fits what is left.
    """

    FIGURES_FULL = 56
    """Cells for a typical whole line of figures: `50.0 tok/s │ 20.0 ms/tok ≤50 │ TTFT 500 ms │ ctx 52/4096`."""
    FIGURES_SHORT = 44
    """The same without the tok/s rate."""

    def __init__(self, *, id: str | None = None) -> None:
        """An empty bar; the rooms set the figures and the model."""
        super().__init__(id=id)
        self._figures = ""
        self._label = ""
        self._shown_label = ""

    def compose(self) -> ComposeResult:
        """The figures on the left, the model on the right."""
        yield Static("", id="figures")
        yield Static("", id="model", markup=False)

    def set_figures(self, markup: str, *, layout: bool = True) -> None:
        """Show figures (content markup); `layout=False` while streaming, as the width is fixed."""
        self._figures = markup
        self._show_figures(layout=layout)

    def set_model(self, label: str) -> None:
        """Show the model label (as much of it as fits)."""
        self._label = label
        self._fit()

    def on_resize(self) -> None:
        """Fit both to the new width, once this layout is done (a change made during it is lost)."""
        self.call_after_refresh(self._fit)

    def _choose_label(self, room: int) -> str:
        forms = shorter_labels(self._label)  # whole; without the quant; the name alone
        whole, name = forms[0], forms[-1]
        middle = forms[1] if len(forms) > 2 else whole
        choices = ((whole, self.FIGURES_FULL), (middle, self.FIGURES_FULL), (middle, self.FIGURES_SHORT))
        for label, figures in choices:
            if not room or cell_len(label) + 1 + figures <= room:
                return label
        return name

    def _fit(self) -> None:
        label = self._choose_label(self.content_region.width) if self._label else ""
        model = self.query_one("#model", Static)
        if label != self._shown_label or model.display != bool(label):
            self._shown_label = label
            model.display = bool(label)
            model.update(label)
        self._show_figures(layout=True)

    def _show_figures(self, *, layout: bool) -> None:
        label = cell_len(self._shown_label) + 1 if self._shown_label else 0  # (1: the label's padding)
        room = self.content_region.width - label
        forms = shorter_figures(self._figures)
        shown = next((f for f in forms if _width(f) <= room), forms[-1]) if room > 0 else forms[0]
        self.query_one("#figures", Static).update(shown, layout=layout)


class Welcome(Static):
    """What an empty chat shows: the model in use and where it runs, and the five keys that matter."""

    KEYS = [
        ("Enter", "send the message"),
        ("ctrl+j", "new line"),
        ("Esc", "stop the reply"),
        ("ctrl+p", "switch model, every command"),
        ("F1", "every key"),
    ]

    def __init__(self, model: str = "", ready: bool = False) -> None:
        """Say what `model` is (its label) and whether it has loaded."""
        super().__init__(classes="welcome")
        self.show(model, ready=ready)

    def show(self, model: str, *, ready: bool = False) -> None:
        """The model's label, and whether it has loaded."""
        keys = Table(box=None, show_header=False, padding=(0, 2, 0, 0))
        keys.add_column("key", style="bold", no_wrap=True)
        keys.add_column("what")
        for key, what in self.KEYS:
            keys.add_row(key, what)
        head = Text.assemble(("Model: ", "dim"), (model or "…", "bold"), "" if ready else " (loading)")
        self.headline = head.plain
        """The first line, as text."""
        self.update(Group(head, Text(""), keys))


class Notices(Vertical):
    """Notices above the message box, where they hide nothing (Textual's toasts covered the input).

    The starter-model line stays as long as the starter is in use; the others (`notify`) last their
    timeout, the newest `SHOWN` at a time, each marked by its severity for terminals without colour.
    """

    SHOWN = 2
    MARKS = {"information": "•", "warning": "⚠", "error": "✖"}

    def __init__(self, *, id: str | None = None) -> None:
        """Nothing to say yet."""
        super().__init__(id=id)
        self.live: list[Notification] = []
        """The notices shown now, oldest first."""
        self.sticky = ""
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        """The sticky line (the starter model), then the notices."""
        yield Static("", id="sticky", markup=False)
        yield Static("", id="notice")

    def on_mount(self) -> None:
        """Nothing shown yet."""
        self._refresh_notices()

    def set_sticky(self, text: str | None) -> None:
        """The line that stays (None: none)."""
        self.sticky = f"⚠ {text}" if text else ""
        self.query_one("#sticky", Static).update(self.sticky)
        self._refresh_notices()

    def add(self, notice: Notification) -> None:
        """Show `notice` for its timeout (a repeat of the sticky line is left out)."""
        if self.sticky and notice.message in self.sticky:
            return
        self.live = [n for n in self.live if not n.has_expired][-(self.SHOWN - 1) :] + [notice]
        self._refresh_notices()

    def clear(self) -> None:
        """Drop the notices (the sticky line stays)."""
        self.live = []
        self._refresh_notices()

    def _refresh_notices(self) -> None:
        self.live = [n for n in self.live if not n.has_expired]
        lines = [self._line(n) for n in self.live]
        notice = self.query_one("#notice", Static)
        notice.update(Content("\n").join(lines))
        notice.display = bool(lines)
        self.query_one("#sticky", Static).display = bool(self.sticky)
        self.display = bool(lines or self.sticky)
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if self.live:
            wait = min(n.time_left for n in self.live)
            self._timer = self.set_timer(max(wait, 0.05), self._refresh_notices)

    def _line(self, notice: Notification) -> Content:
        """The severity's mark, the title, the message as plain text.

        (Plain even where Textual would read markup: the messages carry the core's errors, where
        `'.[speech]'` or `[Errno 2]` are words to show, not styles.)
        """
        mark = self.MARKS.get(notice.severity, "•")
        style = {"warning": "$text-warning", "error": "$text-error"}.get(notice.severity, "$text-success")
        head = f"[{style}]{mark}[/] " + (f"[b]{escape(notice.title)}:[/b] " if notice.title else "")
        return Content.from_markup(head) + Content(notice.message)


class KeyFooter(Footer):
    """The footer, keeping to one line: on a narrow terminal the keys of `DROP_ORDER` go first.

    (Textual's footer lets its keys run under the palette key, which left a stray letter.)
    F1 and Esc stay: F1 lists them all, and the palette runs them.
    """

    DROP_ORDER = (
        "copy_reply",
        "attach_image",
        "edit_last",
        "hands_free",
        "regenerate",
        "new_chat",
        "toggle_thinking",
        "talk",
    )

    async def recompose(self) -> None:
        """Build the keys, then fit them."""
        await super().recompose()
        self._fit()

    def on_resize(self) -> None:
        """Fit the keys to the new width, once this layout is done (a change made during it is lost)."""
        self.call_after_refresh(self._fit)

    @staticmethod
    def _cells(key: FooterKey) -> int:
        # Compact footer: "key description" and one cell after it (the palette key: a border before it).
        text = f"{key.key_display} {key.description}" if key.description else key.key_display
        return cell_len(text) + 1

    def _fit(self) -> None:
        room = self.size.width
        keys = list(self.query_children(FooterKey))
        if not room or not keys:
            return
        need = sum(self._cells(k) for k in keys)
        dropped: set[FooterKey] = set()
        for action in self.DROP_ORDER:
            if need <= room:
                break
            for key in keys:
                if key.action == action and not key.has_class("-command-palette"):
                    dropped.add(key)
                    need -= self._cells(key)
        for key in keys:
            key.display = key not in dropped


class VoiceBar(Static):
    """Voice's line above the input: push-to-talk's level while recording, then what voice is doing;
    hands-free's state while it is on."""

    METER_WIDTH = 16
    _BLOCKS = " ▁▂▃▄▅▆▇█"

    def __init__(self, *, id: str | None = None) -> None:
        """Hidden until voice is used."""
        super().__init__("", id=id, markup=False)
        self.display = False
        self.mode = "off"
        """off, loading, recording, transcribing, replying, speaking, or hands-free."""
        self.level = 0.0
        self.keys = "ctrl+space"
        self.hands_free_key = "F7"
        self.hands_free = "off"
        """Hands-free's state as shown (a `HandsFreeState` label, or starting, stopping); off in the other modes."""

    @classmethod
    def meter(cls, level: float, width: int = METER_WIDTH) -> str:
        """A level of 0..1 as a bar of `width` cells, the last one partly filled."""
        cells = max(0.0, min(1.0, level)) * width
        full = int(cells)
        part = cls._BLOCKS[int((cells - full) * (len(cls._BLOCKS) - 1))] if full < width else ""
        return ("█" * full + part).ljust(width, " ")[:width]

    def show(self, mode: str, text: str = "") -> None:
        """Switch to `mode` with an optional text (the sentence being spoken, an error)."""
        self.mode = mode
        self.hands_free = "off"
        self.display = mode != "off"
        if mode == "recording":
            self._recording()
            return
        lines = {
            "loading": "🎙 loading the speech models (once)…",
            "transcribing": "🎙 transcribing…",
            "replying": f"🔊 thinking of the answer… ({self.keys} to talk again, Esc to stop)",
            "speaking": f"🔊 {text} ({self.keys} to talk again, Esc to stop)",
        }
        self.update(lines.get(mode, text))

    def show_hands_free(self, state: str, text: str = "") -> None:
        """Hands-free's line: its state (`HandsFreeState.label`, or starting, stopping) and, while it hears
        you or speaks, what it heard so far or the sentence it is saying."""
        self.mode = "hands-free"
        self.hands_free = state
        self.display = True
        self.update(self.hands_free_line(state, text))

    def hands_free_line(self, state: str, text: str = "") -> str:
        """`🎧 hands-free · listening (F7 to stop)`, `… · speaking: <sentence> (Esc to stop it, F7 to end)`."""
        said = f": {text}" if text and state in ("hearing you", "speaking") else ""
        if state in ("thinking", "speaking"):
            keys = f"Esc to stop it, {self.hands_free_key} to end"
        elif state in ("starting", "stopping"):
            keys = ""
        else:
            keys = f"{self.hands_free_key} to stop"
        ending = f" ({keys})" if keys else "…"
        return f"🎧 hands-free · {state}{said}{ending}"

    def set_level(self, level: float) -> None:
        """Update the meter (only while recording)."""
        self.level = level
        if self.mode == "recording":
            self._recording()

    def _recording(self) -> None:
        self.update(f"🎙 {self.meter(self.level)} listening: {self.keys} to send, Esc to cancel")
