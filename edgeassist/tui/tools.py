"""Tools in the chat app: the session's `Toolbox`, how a call is shown, and the consent dialog.

The call loop itself is the core's (`Conversation`); a reply's thread hands its tool events to
the reply controller (`tui.reply`), which shows each call as a `widgets.ToolBlock` and asks
with `ConsentScreen`. Everything a tool or the
model wrote (arguments, results, an MCP server's description) is shown as plain text, never as
markup: a result holding `[bold]` or `<|im_start|>` is shown as those characters.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from edgeassist.tools import BUILT_IN, ConsentRequest, Decision, Tool, Toolbox, ToolUse

if TYPE_CHECKING:
    from edgeassist.config import Settings

ARGS_SHOWN = 4000
"""Characters of a call's arguments a block shows (the rest is cut, with a note; the dialog shows them all)."""
RESULT_SHOWN = 4000
"""Characters of a result a block shows (the model got up to `tools.result_chars`; F4 exports it whole)."""
RESULT_LINES = 40
"""Lines of a result a block shows."""
DESCRIPTION_SHOWN = 600
"""Characters of a tool's description the dialog shows (an MCP server writes it: it could be long)."""
ARM_S = 0.4
"""The dialog's allowing keys (o, c, a) work only this long after it opened, so letters typed ahead into the
message box cannot allow a tool by accident; denying (d, Esc) works at once."""


def session_toolbox(
    settings: Settings,
    *,
    config_path: Path | None = None,
    allowed: Iterable[str] = (),
    tools: Sequence[Tool] | None = None,
    notify: Callable[[str], None] = lambda _: None,
) -> Toolbox:
    """The app's tools for the session, as `edgeassist ask` builds them (`cli.ask.toolbox_for`).

    "Always" saves to the user's config file (`config_path`, else the user config dir's);
    `tools`: exactly these tools instead of the configured ones (tests). Nothing starts here: the
    MCP servers start when the first reply offers tools, in that reply's thread.
    """
    from edgeassist.config import save_tool_policy, user_config_file

    save = partial(save_tool_policy, user_config_file(config_path))
    return Toolbox(settings.tools, notify=notify, allowed=allowed, save_policy=save, tools=tools)


# -- text that came from outside: shown as it is -----------------------------------------------------


_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
"""Bidirectional overrides: they could make a shown argument read differently from what runs."""


def printable(text: str) -> str:
    """`text` with control characters (escape sequences, bells, bidi overrides) written out as `\\x1b`.

    Newlines and tabs stay. What a tool or the model wrote cannot move the cursor or restyle the screen.
    """
    return "".join(_visible(c) for c in text) if not text.isprintable() else text


def _visible(c: str) -> str:
    if c in "\n\t" or (c not in _BIDI and unicodedata.category(c) not in ("Cc", "Cs")):
        return c
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


def cut(text: str, chars: int, lines: int | None = None) -> tuple[str, str]:
    """`text` cut to `chars` characters (and `lines` lines), and the note saying what was cut ("" when nothing)."""
    shown = text[:chars]
    if lines is not None:
        shown = "\n".join(shown.split("\n")[:lines])
    left = len(text) - len(shown)
    return shown, (f"… {left:,} more characters are not shown here (F4 exports them)" if left > 0 else "")


def arguments_json(arguments: dict[str, Any]) -> str:
    """A call's arguments as indented JSON (the model's own text, quoted: it moves no cursor, styles nothing)."""
    try:
        return json.dumps(arguments, ensure_ascii=False, indent=2)
    except (TypeError, ValueError):
        return repr(arguments)


def source_label(source: str) -> str:
    """A block's short word for where a tool comes from: `built-in` or `MCP server`."""
    return BUILT_IN if source == BUILT_IN else f"MCP {source}"


def block_title(use: ToolUse, *, running: bool = False) -> Content:
    """`⚙ time.get_current_time · MCP time · ok · 0.12 s`; `running…` while it runs. Plain text (no markup)."""
    parts = [f"⚙ {printable(use.name)}", source_label(printable(use.source))]
    if running:
        parts.append("running…")
    else:
        parts.append(use.outcome)
        if use.duration_s > 0:
            parts.append(f"{use.duration_s:.2f} s")
    return Content(" · ".join(parts))


def shown_turns(roles: Sequence[str], empty: Sequence[bool]) -> list[bool]:
    """Which turns (by role, and whether each is an empty reply) the conversation shows.

    Every turn is shown but a reply step with no text (nor thinking) whose only work was to call
    tools: its calls follow it as blocks. The live view leaves out the same steps, so the memory
    divider counts the same widgets either way.
    """
    return [
        not (role == "assistant" and blank and i + 1 < len(roles) and roles[i + 1] == "tool")
        for i, (role, blank) in enumerate(zip(roles, empty, strict=True))
    ]


# -- asking ----------------------------------------------------------------------------------------------


_BUTTONS: dict[Decision, tuple[str, str]] = {
    "once": ("Once (o)", "primary"),
    "chat": ("In this chat (c)", "default"),
    "always": ("Always (a)", "warning"),
    "deny": ("Deny (d)", "error"),
}
"""Each answer's button: its label (with its key) and variant."""


class ConsentScreen(ModalScreen[Decision]):
    """The model wants to run a tool that asks first: which tool, from where, what it does, with what arguments.

    o, c, a and d (or Tab and Enter) answer; Esc denies. The focus starts on Deny: the dialog can
    open while the user is typing their next message, and an Enter meant for the message box must
    never run a tool (the same reason the allowing keys wait `ARM_S` before they work).
    """

    BINDINGS = [
        Binding("o", "answer('once')", "Allow once"),
        Binding("c", "answer('chat')", "Allow for this chat"),
        Binding("a", "answer('always')", "Always"),
        Binding("d,escape", "answer('deny')", "Deny"),
    ]

    def __init__(self, request: ConsentRequest) -> None:
        """Ask about `request`."""
        super().__init__()
        self.request = request
        self.armed = False
        """Whether the allowing keys work yet (see `ARM_S`)."""

    def compose(self) -> ComposeResult:
        """The question, the description, the arguments, and a button per offered answer."""
        r = self.request
        where = "built-in" if r.source == BUILT_IN else f"MCP server {printable(r.source)}"
        with Vertical(classes="dialog wide", id="consent-box") as box:
            box.border_title = "Run a tool?"
            box.border_subtitle = "Esc denies"
            question = Text("The model wants to run ")
            question.append(printable(r.tool), style="bold")
            question.append(f" ({where}). Allow it?")
            yield Static(question, id="consent-question", classes="dialog-text", markup=False)
            # What it does and all its arguments, however long, in one area that scrolls: the user
            # consents to what will run, and the buttons stay in view on a small terminal.
            with VerticalScroll(id="consent-body"):
                description, _ = cut(printable(r.description.strip()), DESCRIPTION_SHOWN)
                if description:
                    yield Static(Text(description), id="consent-description", markup=False)
                yield Static(Text("Arguments:", style="bold"), classes="consent-head", markup=False)
                yield Static(Text(printable(arguments_json(r.arguments))), id="consent-args-text", markup=False)
            with Horizontal(classes="dialog-buttons"):
                for decision, (label, variant) in _BUTTONS.items():
                    if decision in r.choices or decision == "deny":
                        yield Button(label, variant=variant, id=f"consent-{decision}", compact=True)  # type: ignore[arg-type]
            if "always" in r.choices:
                yield Static("Always: from now on, saved in your config file.", classes="dialog-hint")

    def on_mount(self) -> None:
        """Focus Deny (see the class); arm the allowing keys in a moment."""
        self.query_one("#consent-deny", Button).focus()
        self.set_timer(ARM_S, self._arm)

    def _arm(self) -> None:
        self.armed = True

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """A click (or Enter on a focused button) answers at once: it was aimed."""
        event.stop()
        self.dismiss(next((d for d in _BUTTONS if event.button.id == f"consent-{d}"), "deny"))

    def action_answer(self, decision: Decision) -> None:
        """A key answers: deny at once; an allowing key once the dialog is armed, if it is offered."""
        if decision == "deny":
            self.dismiss("deny")
        elif self.armed and decision in self.request.choices:
            self.dismiss(decision)
