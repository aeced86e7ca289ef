"""`edgeassist chat` (also `edgeassist` alone): the Textual chat app."""

from __future__ import annotations

import argparse

from edgeassist.cli import tool_flags
from edgeassist.config import Settings
from edgeassist.errors import UsageError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Add the `chat` subcommand."""
    p = sub.add_parser(
        "chat",
        parents=[common],
        help="chat in the terminal app (the default command)",
        description="Chat with the model in a terminal app: streaming replies, thinking, saved chats. "
        "F1 in the app lists every key.",
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument("--chat", metavar="NAME", help="open (or create) the saved chat NAME")
    group.add_argument("--new", action="store_true", help="start a new chat instead of resuming the last one")
    tool_flags(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the app until the user quits; a reply being written is stopped and saved first."""
    from edgeassist.store import chat_name
    from edgeassist.tui import create_app  # Textual loads only for this command

    name = getattr(args, "chat", None)
    if name is not None:
        try:  # before the app takes the screen: a blank or control-character name is a usage error
            name = chat_name(name)
        except ValueError as e:
            raise UsageError(str(e)) from None
    if getattr(args, "no_tools", False):
        settings = settings.model_copy(update={"tools": settings.tools.model_copy(update={"enabled": False})})
    app = create_app(
        settings,
        explicit_model=hasattr(args, "model"),
        chat_name=name,
        new_chat=bool(getattr(args, "new", False)),
        config_path=getattr(args, "config", None),
        allow_tools=getattr(args, "allow_tool", None) or (),
    )
    from edgeassist.tui.terminal import lost_terminal_safe

    try:
        with lost_terminal_safe():  # a hung-up terminal must not block the app before it saves the reply
            app.run()
    finally:
        # However the app ended, let a reply thread finish saving its part before the process exits.
        app.stop_reply()
        app.wait_idle(timeout=15)
        app.store.close()
    return app.return_code or 0
