"""Tools the model may call: the built-in ones and MCP servers' (`Toolbox`), each under a policy.

The chat layer runs the call loop (`Conversation`); the engine renders the offered tools into the
template and holds a call to their grammar. Consent is asked through a `ConsentRequest` event the
front end answers, so nothing here opens a dialog.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from edgeassist.config import ToolPolicy, ToolsSettings
from edgeassist.engine.base import ToolCall, ToolSpec
from edgeassist.errors import EdgeAssistError, ToolError
from edgeassist.tools.base import (
    BUILT_IN,
    ConsentRequest,
    Decision,
    Tool,
    ToolResult,
    ToolStarted,
    ToolUse,
)

__all__ = [
    "BUILT_IN",
    "ConsentRequest",
    "Decision",
    "Tool",
    "ToolEvent",
    "ToolResult",
    "ToolStarted",
    "ToolUse",
    "Toolbox",
]

ToolEvent = ConsentRequest | ToolStarted | ToolResult
"""What the call loop adds to a reply's events."""

ALWAYS_ASKS = frozenset({"run_shell"})
"""Tools that ask before every call, whatever the policy says (only `deny` is stronger)."""

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
"""A tool name the model may be offered: no spaces, quotes or markup."""


class Toolbox:
    """The tools of a session, built in and from MCP servers, with the policy that decides each call.

    A call's policy, strongest first: `deny` anywhere; allowed for this chat (the user's answer);
    `--allow-tool`; `tools.policy` for the tool, then for its server; the tool's default (`ask`
    for files, the shell and every MCP tool). `run_shell` asks before every call unless denied.
    """

    def __init__(
        self,
        settings: ToolsSettings,
        *,
        notify: Callable[[str], None] = lambda _: None,
        allowed: Iterable[str] = (),
        save_policy: Callable[[str, ToolPolicy], None] | None = None,
        tools: Iterable[Tool] | None = None,
    ) -> None:
        """Tools from `settings` (or exactly `tools`, for tests); `allowed`: tools or servers `--allow-tool` allows."""
        self.settings = settings
        self.notify = notify
        self.allowed = frozenset(allowed)
        self.save_policy = save_policy
        self._given = list(tools) if tools is not None else None
        self._tools: dict[str, Tool] = {}
        self._servers: Any = None
        self._started = False
        self._lock = threading.Lock()

    # -- the tools -------------------------------------------------------------------------------

    @property
    def configured(self) -> bool:
        """Whether the user asked for more than the quiet defaults (clock, calculator): MCP, files, shell, flags."""
        s = self.settings
        return bool(self.allowed or any(m.enabled for m in s.mcp.values()) or (s.files and s.allowed_dirs) or s.shell)

    def start(self) -> None:
        """Gather the tools (once): the built-in ones, then each MCP server's (a failing server is one notice)."""
        with self._lock:
            if self._started:
                return
            self._started = True
            if self._given is not None:
                found = list(self._given)
            elif not self.settings.enabled or self.settings.max_calls == 0:
                found = []
            else:
                from edgeassist.tools.builtin import builtin_tools

                found = builtin_tools(self.settings)
                servers = {k: v for k, v in self.settings.mcp.items() if v.enabled}
                if servers:
                    from edgeassist.tools.mcp import McpServers

                    self._servers = McpServers(servers, notify=self.notify)
                    found += self._servers.start()
            for tool in found:
                if not _NAME.fullmatch(tool.name):
                    self.notify(f"tool {tool.name[:40]!r} from {tool.source} is not offered: its name is not plain")
                elif tool.name in self._tools:
                    self.notify(f"tool `{tool.name}` from {tool.source} is not offered: the name is taken")
                elif self.policy(tool.name, tool=tool) != "deny":
                    self._tools[tool.name] = tool

    def close(self) -> None:
        """Stop the MCP servers."""
        servers, self._servers = self._servers, None
        if servers is not None:
            servers.close()

    def __enter__(self) -> Toolbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def tools(self) -> list[Tool]:
        """The tools offered (denied ones are not), once started."""
        self.start()
        return list(self._tools.values())

    def specs(self) -> tuple[ToolSpec, ...]:
        """What the model is offered."""
        return tuple(t.spec for t in self.tools)

    def get(self, name: str) -> Tool | None:
        """The offered tool called `name`."""
        self.start()
        return self._tools.get(name)

    def status(self) -> dict[str, str]:
        """Each MCP server's state, for `edgeassist tools`."""
        return dict(self._servers.status()) if self._servers is not None else {}

    # -- policy ------------------------------------------------------------------------------------

    def policy(self, name: str, *, chat_allowed: Iterable[str] = (), tool: Tool | None = None) -> ToolPolicy:
        """What a call of `name` gets now (see the class)."""
        tool = tool or self._tools.get(name)
        source = tool.source if tool is not None else ""
        configured = self.settings.policy
        named = configured.get(name)
        by_server = configured.get(source) if source and source != BUILT_IN else None
        if "deny" in (named, by_server):
            return "deny"
        if name in ALWAYS_ASKS:
            return "ask"
        if name in chat_allowed or name in self.allowed or (source and source in self.allowed):
            return "allow"
        if named is not None:
            return named
        if by_server is not None:
            return by_server
        return tool.default_policy if tool is not None else "deny"

    def choices(self, name: str) -> tuple[Decision, ...]:
        """The answers a consent request for `name` offers (a tool that always asks cannot be allowed for good)."""
        if name in ALWAYS_ASKS:
            return ("once", "deny")
        if self.save_policy is None:
            return ("once", "chat", "deny")
        return ("once", "chat", "always", "deny")

    def allow_always(self, name: str) -> None:
        """Save `allow` for `name` in the user's config file (the dialog's Always); ConfigError when it cannot."""
        if self.save_policy is None:
            raise EdgeAssistError("there is no config file to save the choice in")
        self.save_policy(name, "allow")
        self.settings = self.settings.model_copy(update={"policy": {**self.settings.policy, name: "allow"}})

    # -- calls -------------------------------------------------------------------------------------

    def request(self, call: ToolCall) -> ConsentRequest:
        """The consent request for `call` (a tool whose policy is `ask`)."""
        tool = self._tools.get(call.name)
        return ConsentRequest(
            tool=call.name,
            source=tool.source if tool is not None else "?",
            arguments=dict(call.arguments),
            description=tool.spec.description if tool is not None else "",
            choices=self.choices(call.name),
        )

    def refused(self, call: ToolCall, why: str) -> ToolUse:
        """A call that does not run: its result tells the model why, so it can answer without the tool."""
        tool = self._tools.get(call.name)
        return ToolUse(call.name, dict(call.arguments), tool.source if tool is not None else "?", why, outcome="denied")

    def run(self, call: ToolCall, cancel: threading.Event) -> ToolUse:
        """Run an allowed call; its result is capped at `tools.result_chars` (the model is told what was cut)."""
        tool = self._tools.get(call.name)
        if tool is None:
            return ToolUse(call.name, dict(call.arguments), "?", f"error: there is no tool `{call.name}`", "error")
        use = ToolUse(call.name, dict(call.arguments), tool.source)
        t0 = time.perf_counter()
        try:
            text = tool.run(call.arguments, cancel)
            use.result, use.outcome = text, "ok"
        except ToolError as e:
            use.result, use.outcome = f"error: {e}", "error"
        except Exception as e:  # noqa: BLE001 - a tool's own bug is the call's error, never the chat's end
            use.result, use.outcome = f"error: {type(e).__name__}: {e}", "error"
        use.duration_s = time.perf_counter() - t0
        if cancel.is_set():
            use.outcome = "stopped"
            use.result = "The user stopped this call before it finished."
        use.result = cap(use.result, self.settings.result_chars)
        return use


def cap(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[… {len(text) - limit} more characters were cut]"


def describe(tools: Sequence[Tool]) -> list[tuple[str, str, str]]:
    """Name, source and first line of description of each tool, for listings."""
    return [(t.name, t.source, t.spec.description.splitlines()[0] if t.spec.description else "") for t in tools]
