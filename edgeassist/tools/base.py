"""What a tool is, what one call of it leaves behind, and the events the call loop adds to a reply."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from edgeassist.config import ToolPolicy
from edgeassist.engine.base import ToolSpec

BUILT_IN = "built-in"
"""The `source` of edgeassist's own tools (an MCP tool's is its server's name)."""

Outcome = Literal["ok", "error", "denied", "stopped"]
"""How a call ended: it ran; it ran and failed; the policy or the user refused it; Esc stopped it."""

Decision = Literal["once", "chat", "always", "deny"]
"""The user's answer to a consent request: allow this call, allow the tool for this chat, allow it
from now on (saved to the config file), or refuse."""


@dataclass(frozen=True)
class Tool:
    """A tool the model may call: what it is offered as, where it comes from, and how it runs."""

    spec: ToolSpec
    """The name, description and argument schema the model sees."""
    source: str
    """`built-in`, or the MCP server it comes from."""
    default_policy: ToolPolicy
    """What happens when the config names no policy for it."""
    run: Callable[[Mapping[str, Any], threading.Event], str] = field(repr=False, compare=False)
    """Run one call: its text, or `ToolError` (the message goes to the model); stops soon after the event is set."""

    @property
    def name(self) -> str:
        """The name the model calls it by (an MCP tool's carries its server's: `time.get_current_time`)."""
        return self.spec.name


@dataclass
class ToolUse:
    """One tool call of a reply and what came of it: shown, saved in the history, exported, in `ask --json`."""

    name: str
    """The tool called."""
    arguments: dict[str, Any]
    """The arguments the model gave."""
    source: str = BUILT_IN
    """`built-in`, or the MCP server."""
    result: str = ""
    """What went back to the model: the tool's text (capped), its error, or why it did not run."""
    outcome: Outcome = "ok"
    """How the call ended."""
    duration_s: float = 0.0
    """How long the tool ran (0 when it did not)."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (the history keeps it; `ask --json` shows it)."""
        return {
            "name": self.name,
            "arguments": self.arguments,
            "source": self.source,
            "result": self.result,
            "outcome": self.outcome,
            "duration_s": round(self.duration_s, 4),
        }

    @classmethod
    def from_dict(cls, saved: Mapping[str, Any]) -> ToolUse:
        """Back from `to_dict()`; anything unreadable becomes a plain value, never an error."""
        args = saved.get("arguments")
        outcome = saved.get("outcome")
        return cls(
            name=str(saved.get("name", "")),
            arguments=dict(args) if isinstance(args, dict) else {},
            source=str(saved.get("source", BUILT_IN)),
            result=str(saved.get("result", "")),
            outcome=outcome if outcome in ("ok", "error", "denied", "stopped") else "error",
            duration_s=float(saved.get("duration_s", 0.0) or 0.0),
        )


@dataclass
class ConsentRequest:
    """The model wants to run a tool whose policy is `ask`: the front end answers with `answer()`.

    The call loop yields this event and, when the front end asks for the next event, reads the
    decision: one never given (a front end that does not ask) is a refusal.
    """

    tool: str
    """The tool's name."""
    source: str
    """`built-in` or the MCP server."""
    arguments: dict[str, Any]
    """The arguments it would run with."""
    description: str = ""
    """What the tool says it does."""
    choices: tuple[Decision, ...] = ("once", "chat", "always", "deny")
    """The answers to offer (a tool that always asks offers only once and deny)."""
    decision: Decision | None = None
    """The answer, once given."""

    def answer(self, decision: Decision) -> None:
        """Give the user's answer (one not offered counts as a refusal)."""
        self.decision = decision if decision in self.choices else "deny"


@dataclass(frozen=True)
class ToolStarted:
    """A tool call is about to run (allowed); the front end may show it as running."""

    use: ToolUse


@dataclass(frozen=True)
class ToolResult:
    """A tool call ended (ran, failed, was refused or stopped); its result goes back to the model."""

    use: ToolUse
