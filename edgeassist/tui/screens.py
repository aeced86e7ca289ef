"""Screens of the chat app: the model error screen, help, a chat's settings, and small dialogs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Checkbox, Input, Label, OptionList, Static, TextArea
from textual.widgets.option_list import Option

from edgeassist.tui.codeblocks import CodeBlock


class ModelErrorScreen(Screen[None]):
    """Shown when the model is missing or cannot be loaded: what went wrong and what to do."""

    BINDINGS = [
        Binding("q,escape", "app.quit", "Quit"),
        Binding("ctrl+p", "app.command_palette", "Pick another model"),
    ]

    def __init__(self, error: str, model_name: str) -> None:
        """Explain `error` for the model called `model_name`."""
        super().__init__()
        self.error = error
        self.model_name = model_name

    def compose(self) -> ComposeResult:
        """The error, then the commands that fix it."""
        with VerticalScroll(id="error-box"):
            yield Static("Cannot start the model", id="error-title")
            yield Static(self.error, id="error-text", markup=False)
            yield Static("What to do:", classes="error-head")
            rows = [
                ("edgeassist models", "see which models are on disk"),
                ("edgeassist -m FILE.gguf", "run a GGUF file you already have"),
                ("ctrl+p", "switch to a model on disk"),
                ("q", "quit"),
            ]
            if not self.model_name.lower().endswith(".gguf") and "/" not in self.model_name:
                rows.insert(0, (f"edgeassist pull {self.model_name}", "download the model (needs the network once)"))
            yield Static(_two_columns(rows), id="error-hints")


def _two_columns(rows: list[tuple[str, str]]) -> Table:
    """Keys (or commands) and what they do, the second column wrapping under itself."""
    table = Table(box=None, show_header=False, padding=(0, 2, 0, 0), expand=True)
    table.add_column("keys", style="bold", no_wrap=True)
    table.add_column("what", ratio=1)
    for keys, what in rows:
        table.add_row(keys, what)
    return table


HELP_BEFORE = [
    ("Enter", "send the message (or the edited one)"),
    ("ctrl+j, shift/alt+Enter", "new line in the message"),
    ("Up, Down (box empty)", "recall this chat's earlier messages"),
    ("Backspace (box empty)", "take the last attached picture off"),
]
"""Keys of the message box, listed first on the help screen."""

HELP_AFTER = [
    ("ctrl+p", "command palette: switch model, every action"),
    ("mouse drag, ctrl+c", "select text, copy it"),
    ("paste a picture's path", "attach it (so does a file dropped on the terminal)"),
    ("click an attachment", "take the picture off (the row above the box)"),
    ("click a message", "copy it (a code block: the block alone)"),
    ("click Thinking…/Thought", "open or close a thinking block"),
    ("Tab, shift+Tab", "move between chat list, conversation, input"),
    ("chat list: Enter, Delete", "open, delete the highlighted chat; F2 renames"),
]
"""Keys that are not app bindings, listed last on the help screen."""


class HelpScreen(ModalScreen[None]):
    """Every key, in one list."""

    BINDINGS = [Binding("escape,f1,q", "dismiss", "Close")]

    def __init__(self, rows: list[tuple[str, str]]) -> None:
        """Show `rows` of (keys, what they do)."""
        super().__init__()
        self.rows = rows

    def compose(self) -> ComposeResult:
        """The keys, in two columns."""
        with VerticalScroll(id="help-box") as box:
            box.border_title = "Keys"
            box.border_subtitle = "Esc closes"
            yield Static(_two_columns(self.rows), id="help-text")


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question; y or Enter on the default button answers."""

    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]

    def __init__(self, question: str, yes: str = "Delete") -> None:
        """Ask `question`; the confirming button reads `yes`."""
        super().__init__()
        self.question = question
        self.yes = yes

    def compose(self) -> ComposeResult:
        """The question and two buttons."""
        with Vertical(classes="dialog"):
            yield Static(self.question, classes="dialog-text", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.yes} (y)", variant="error", id="yes")
                yield Button("Cancel (n)", id="no")

    def on_mount(self) -> None:
        """Focus Cancel, so a stray Enter does not delete."""
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """Answer with the button pressed."""
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        """Close with the answer."""
        self.dismiss(yes)


class TextPromptScreen(ModalScreen[str | None]):
    """Ask for one line of text (a chat's name, a file path); Enter accepts, Esc cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, value: str = "") -> None:
        """Ask `title`, starting from `value`."""
        super().__init__()
        self.title_text = title
        self.value = value

    def compose(self) -> ComposeResult:
        """The question and a one-line input."""
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-text", markup=False)
            yield Input(self.value, id="prompt-input")
            yield Static("Enter accepts · Esc cancels", classes="dialog-hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter accepts the text."""
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        """Close without an answer."""
        self.dismiss(None)


@dataclass(frozen=True)
class ChatSettingsForm:
    """What the chat settings screen edits, as typed: an empty number is the default."""

    model: str
    """The chat's model."""
    think: bool
    """Thinking on or off."""
    temperature: str
    """Sampling temperature."""
    top_p: str
    """Nucleus sampling threshold."""
    max_tokens: str
    """Most tokens of one reply."""
    n_ctx: str
    """Context window, tokens."""
    system_prompt: str
    """The chat's system prompt (empty: the default)."""


NUMBER_FIELDS = [
    ("temperature", "Temperature"),
    ("top_p", "Top-p"),
    ("max_tokens", "Max tokens"),
    ("n_ctx", "Context size"),
]
"""The settings screen's number fields: the form's attribute, and the label."""


class ChatSettingsScreen(ModalScreen[ChatSettingsForm | None]):
    """A chat's own settings: model, thinking, sampling, reply length, context size and system prompt.

    Save asks `check` first: a value it refuses is its one line under the fields, and the screen
    stays open with nothing saved, so a typo costs nothing but the fix.
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "save", "Save")]

    def __init__(
        self, form: ChatSettingsForm, defaults: dict[str, str], check: Callable[[ChatSettingsForm], str | None]
    ) -> None:
        """Edit `form`; `defaults` (field: text) shows what an empty field means; `check` says why a form is refused."""
        super().__init__()
        self.form = form
        self.defaults = defaults
        self.check = check

    def compose(self) -> ComposeResult:
        """One row per setting, the system prompt, the error line, and Save / Cancel."""
        with Vertical(classes="dialog wide", id="settings-box") as box:
            box.border_title = "Chat settings"
            with Horizontal(classes="setting"):
                yield Label("Model", classes="setting-label")
                yield Input(self.form.model, id="set-model", compact=True)
            with Horizontal(classes="setting"):
                yield Label("Thinking", classes="setting-label")
                yield Checkbox(_on_off(self.form.think), self.form.think, id="set-think", compact=True)
            for name, label in NUMBER_FIELDS:
                with Horizontal(classes="setting"):
                    yield Label(label, classes="setting-label")
                    value = getattr(self.form, name)
                    yield Input(value, placeholder=self.defaults.get(name, ""), id=f"set-{name}", compact=True)
            yield Label("System prompt (empty: the default)", classes="setting-head")
            yield TextArea(self.form.system_prompt, id="system-text", soft_wrap=True, tab_behavior="focus")
            yield Static("", id="settings-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Save (ctrl+s)", variant="primary", id="save", compact=True)
                yield Button("Cancel (Esc)", id="cancel", compact=True)

    def on_mount(self) -> None:
        """The cursor at the end of the system prompt, where one goes on writing (as F3 always did)."""
        area = self.query_one("#system-text", TextArea)
        area.focus()
        area.move_cursor(area.document.end)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """Answer with the button pressed."""
        if event.button.id == "save":
            self.action_save()
        else:
            self.action_cancel()

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        """Say on or off in words: the box's own mark is only a colour, which NO_COLOR takes away."""
        event.checkbox.label = _on_off(event.value)

    def on_input_submitted(self) -> None:
        """Enter in a field saves, as in the app's other dialogs."""
        self.action_save()

    def edited(self) -> ChatSettingsForm:
        """The form as it stands on the screen."""
        numbers = {name: self.query_one(f"#set-{name}", Input).value.strip() for name, _ in NUMBER_FIELDS}
        return ChatSettingsForm(
            model=self.query_one("#set-model", Input).value.strip(),
            think=self.query_one("#set-think", Checkbox).value,
            system_prompt=self.query_one("#system-text", TextArea).text.strip(),
            **numbers,
        )

    def action_save(self) -> None:
        """Close with the edited settings, unless `check` refuses them: then say why, and keep the screen."""
        form = self.edited()
        error = self.check(form)
        self.query_one("#settings-error", Static).update(error or "")
        if error is None:
            self.dismiss(form)

    def action_cancel(self) -> None:
        """Close without changing anything."""
        self.dismiss(None)


def _on_off(value: bool) -> str:
    """The thinking box's words."""
    return "on: thinks before answering" if value else "off"


class CodeBlockScreen(ModalScreen[CodeBlock | None]):
    """Pick one of the last reply's code blocks to copy."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, blocks: list[CodeBlock]) -> None:
        """Offer `blocks`."""
        super().__init__()
        self.blocks = blocks

    def compose(self) -> ComposeResult:
        """One option per code block."""
        with Vertical(classes="dialog wide"):
            yield Label("Copy which code block? (Enter copies, Esc cancels)", classes="dialog-text")
            yield OptionList(*[Option(b.label(i + 1), id=str(i)) for i, b in enumerate(self.blocks)])

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        """Copy the chosen block."""
        self.dismiss(self.blocks[int(event.option.id or 0)])

    def action_cancel(self) -> None:
        """Close without copying."""
        self.dismiss(None)
