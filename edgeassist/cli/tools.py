"""`edgeassist tools`: the tools the model may call, where each comes from, and its policy."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from edgeassist.cli import tool_flags
from edgeassist.config import Settings, ToolsSettings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Add the `tools` subcommand."""
    p = sub.add_parser(
        "tools",
        parents=[common],
        help="list the tools the model may call, and their policies",
        description="List the built-in tools (with those switched off) and the tools of each configured MCP "
        "server (started to ask them), each with its policy: allow (runs), ask (asks first), deny. "
        "Tools are offered only to models that can call them (Qwen 3.5).",
    )
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    tool_flags(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """List the tools."""
    from edgeassist.cli.ask import toolbox_for
    from edgeassist.tools.builtin import BUILT_IN_NAMES

    notes: list[str] = []
    rows: list[dict[str, Any]] = []
    with toolbox_for(settings, args, notes.append) as box:
        offered = {t.name: t for t in box.tools}
        for name in BUILT_IN_NAMES:
            if name not in offered:
                why = _off(name, box.settings)
                rows.append({"name": name, "source": "built-in", "policy": "off", "description": why})
        for tool in offered.values():
            first = tool.spec.description.splitlines()[0] if tool.spec.description else ""
            rows.append(
                {"name": tool.name, "source": tool.source, "policy": box.policy(tool.name), "description": first}
            )
        servers = box.status()
    rows.sort(key=lambda r: (r["source"] != "built-in", r["source"], r["name"]))
    if args.json:
        json.dump({"tools": rows, "servers": servers, "notes": notes}, sys.stdout)
        sys.stdout.write("\n")
        return 0
    width = max((len(r["name"]) for r in rows), default=4)
    for r in rows:
        print(f"{r['name']:<{width}}  {r['source']:<10}  {r['policy']:<5}  {r['description'][:80]}")
    for name, state in servers.items():
        print(f"MCP server {name}: {state}")
    for note in notes:
        print(f"edgeassist: {note}", file=sys.stderr)
    if not box.settings.enabled:
        print("edgeassist: tools are switched off (tools.enabled = false)", file=sys.stderr)
    return 0


def _off(name: str, t: ToolsSettings) -> str:
    """Why a built-in tool is not offered, and how to turn it on."""
    if not t.enabled:
        return "off: tools.enabled = false (or --no-tools)"
    if name in ("read_file", "list_folder"):
        return "off: set tools.allowed_dirs (and tools.files = true)" if t.files else "off: tools.files = false"
    if name == "run_shell":
        return "off: set tools.shell = true (it asks before every command)"
    if t.policy.get(name) == "deny":
        return "off: tools.policy denies it"
    switch = {"current_time": "clock", "calculate": "calculator"}.get(name, name)
    return f"off: tools.{switch} = false"
