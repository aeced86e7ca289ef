"""The `edgeassist` command: subcommands, settings from flags, and errors as one line + exit code.

Each subcommand lives in its own module here with `register(subparsers, common)` and a
`run(args, settings) -> int`; heavy modules (llama.cpp, Textual, whisper) are imported
inside `run`, so `edgeassist --help` and error paths stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeassist import __version__
from edgeassist.errors import EdgeAssistError

if TYPE_CHECKING:
    from edgeassist.config import FlagSettings

# Subcommand name -> module under edgeassist.cli (imported when the parser is built; keep them light).
SUBCOMMANDS = {
    "chat": "chat",
    "ask": "ask",
    "pull": "models",
    "models": "models",
    "rm": "models",
    "voice": "voice",
    "bench": "bench",
    "tools": "tools",
}


SETTING_ATTR = "setting flag "
"""Namespace attributes that hold setting flags start with this, one attribute per key: a subcommand's
parser copies its attributes over the main parser's, so one shared dict would lose `edgeassist --threads 2
voice --voice x`'s `--threads`."""

MODEL_FLAGS = (("model", "name", "--model"),)
"""Plain attributes that stand for `[model]` settings: `--model` (also read as such: a model named on the
command line is never swapped for the starter)."""


def setting_flag(section: str, key: str | None = None) -> type[argparse.Action]:
    """An argparse action that stores the flag as the `[section] key` settings override (key: the flag's
    dest), so that its value is validated, and named in errors, like the config file's.

    The flag's text goes to the settings model unconverted (a `type=` is dropped), to be parsed and
    checked exactly as an environment variable is: argparse's own conversion would let through what
    the config file may not hold (`nan`) and report the rest as a multi-line usage message. The
    flag's dest is left alone (its default, if any, stays): read the value from the settings.
    """

    class SettingFlag(argparse.Action):
        def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
            kwargs.pop("type", None)
            super().__init__(option_strings, dest, **kwargs)

        def __call__(
            self,
            parser: argparse.ArgumentParser,
            namespace: argparse.Namespace,
            values: Any,
            option_string: str | None = None,
        ) -> None:
            setattr(namespace, f"{SETTING_ATTR}{section}.{key or self.dest}", (option_string or self.dest, values))

    return SettingFlag


def settings_group(parser: argparse.ArgumentParser, *, model_and_threads: bool = True) -> None:
    """Add the settings flags (`--config`, `--model`, `--n-ctx`, `--threads`, `--gpu-layers`, `--endpoint`,
    `--remote-model`) to `parser`.

    `model_and_threads=False` leaves out `--model` and `--threads`, for the bench, where they take
    comma lists (a sweep) and are its own.
    """
    g = parser.add_argument_group("settings (override config.toml and EDGEASSIST_* variables)")
    g.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="user config file (TOML)")
    if model_and_threads:
        g.add_argument(
            "-m",
            "--model",
            default=argparse.SUPPRESS,
            help="catalog name (qwen3.5-2b:q8_0), repo/file.gguf or path",
        )
    flags = [("--n-ctx", "n_ctx", "context window in tokens")]
    if model_and_threads:
        flags.append(("--threads", "n_threads", "CPU threads (default: physical cores)"))
    flags.append(("--gpu-layers", "n_gpu_layers", "layers to offload (-1: all)"))
    for flag, key, text in flags:
        g.add_argument(flag, action=setting_flag("model", key), default=argparse.SUPPRESS, help=text)
    if model_and_threads:
        g.add_argument(
            "--adapt-threads",
            choices=("on", "off"),
            action=setting_flag("model", "adapt_threads"),
            default=argparse.SUPPRESS,
            help="on: fewer threads while other programs keep cores busy (default); off: always --threads",
        )
    g.add_argument(
        "--endpoint",
        metavar="URL",
        action=setting_flag("model", "endpoint"),
        default=argparse.SUPPRESS,
        help="an OpenAI-compatible server's base URL (http://HOST:PORT/v1): the model runs there; "
        "its API key is read from $EDGEASSIST_API_KEY (model.api_key_env); `none`: here, whatever the config says",
    )
    g.add_argument(
        "--remote-model",
        metavar="NAME",
        action=setting_flag("model", "remote_model"),
        default=argparse.SUPPRESS,
        help="the model's name on that server (default: its only model)",
    )


def tool_flags(parser: argparse.ArgumentParser, note: str = "") -> None:
    """Add `--allow-tool NAME` (repeatable) and `--no-tools`, the tool flags of every front end."""
    parser.add_argument(
        "--allow-tool",
        metavar="NAME",
        action="append",
        default=[],
        help="let the model run this tool (or every tool of this MCP server) without asking; repeatable" + note,
    )
    parser.add_argument("--no-tools", action="store_true", help="offer the model no tools")


def common_options() -> argparse.ArgumentParser:
    """Options every subcommand takes; they become the strongest settings source."""
    p = argparse.ArgumentParser(add_help=False)
    settings_group(p)
    return p


def settings_flags(args: argparse.Namespace) -> FlagSettings:
    """The nested settings dict that the common flags (and subcommand flags) stand for, each key
    remembering its option for error messages."""
    from edgeassist.config import FlagSettings

    flags = FlagSettings()
    for attr, key, option in MODEL_FLAGS:
        if hasattr(args, attr):
            flags.set("model", key, getattr(args, attr), option)
    for attr in sorted(vars(args)):
        if attr.startswith(SETTING_ATTR):
            section, key = attr.removeprefix(SETTING_ATTR).split(".", 1)
            option, value = getattr(args, attr)
            flags.set(section, key, value, option)
    return flags


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every subcommand registered."""
    common = common_options()
    parser = argparse.ArgumentParser(
        prog="edgeassist",
        description="An on-device assistant for the terminal: Qwen 3.5 through llama.cpp, offline.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"edgeassist {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    seen: set[str] = set()
    for module in SUBCOMMANDS.values():
        if module in seen:
            continue
        seen.add(module)
        importlib.import_module(f"edgeassist.cli.{module}").register(sub, common)
    return parser


STOP_SIGNALS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated", signal.SIGHUP: "hung up"}
"""The signals that stop a command the way Ctrl+C does (`kill`, a closed SSH session), and how each
is reported; the exit code is 128 + the signal's number (130, 143, 129)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where Ctrl+C raises KeyboardInterrupt.

    A KeyboardInterrupt, so that every path that stops the model and saves the partial reply on
    Ctrl+C does the same for these; `main` reports it and exits with 128 + `signum`.
    """

    def __init__(self, signum: int) -> None:
        """The exception for signal `signum`."""
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def stop_signals() -> Iterator[list[int]]:
    """While the block runs, SIGINT, SIGTERM and SIGHUP stop it the way Ctrl+C does.

    The first one raises KeyboardInterrupt (SIGINT) or `Terminated` in the main thread; any later
    one is ignored, so that stopping the model and saving the reply finish instead of being cut
    short (a second Ctrl+C used to leave llama.cpp running while Python shut down). Yields the list
    the first signal's number is added to. A signal ignored when this starts (`nohup`, a background
    job's SIGINT) stays ignored; the previous handlers come back at the end. Off the main thread
    nothing changes.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def stop(signum: int, frame: object) -> None:
        if received:
            return  # already stopping: let the model stop and the reply be saved
        received.append(signum)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated(signum)

    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    for sig, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(sig, stop)
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _settle_output(line: str | None = None) -> None:
    """Flush stdout, then print `line` to stderr; a stream that can no longer be written (a closed
    pipe, or the terminal of a closed SSH session) is pointed at /dev/null instead, so that Python's
    own flush at exit cannot fail too (a warning on stderr, and exit code 120)."""
    for stream, text in ((sys.stdout, None), (sys.stderr, line)):
        try:
            if text is not None:
                stream.write(text + "\n")
            stream.flush()
        except (OSError, ValueError):
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, stream.fileno())
                os.close(devnull)
            except (OSError, ValueError):
                pass


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; with no command it is the chat app's (`edgeassist --new` is `edgeassist chat --new`)."""
    parser = build_parser()
    words = list(argv if argv is not None else sys.argv[1:])
    named = any(w in SUBCOMMANDS for w in words)
    if not words or (not named and words[0].startswith("-") and words[0] not in ("-h", "--help", "--version")):
        words = ["chat", *words]  # flags and no command: the chat app's flags
    return parser.parse_args(words)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, load settings, run the subcommand; errors become one line and an exit code.

    Ctrl+C, SIGTERM and SIGHUP stop the command (a reply being written is stopped and saved as
    stopped) and exit with 128 + the signal's number; `ask | head -1` exits 141 (SIGPIPE's).
    """
    args = parse_args(argv)
    with stop_signals() as received:
        try:
            from edgeassist.config import load_settings

            settings = load_settings(getattr(args, "config", None), settings_flags(args))
            code = int(args.handler(args, settings) or 0)
        except EdgeAssistError as e:
            print(f"edgeassist: {e}", file=sys.stderr)
            return e.exit_code
        except KeyboardInterrupt as e:
            signum = e.signum if isinstance(e, Terminated) else signal.SIGINT
            _settle_output(f"\nedgeassist: {STOP_SIGNALS[signal.Signals(signum)]}")
            return 128 + signum
        except BrokenPipeError:
            _settle_output()
            return 141
    # A command that stopped for SIGTERM or SIGHUP and returned (voice and bench clean up; the chat
    # app catches them itself and returns 128 + the signal) exits the same way.
    signum = received[0] if received else code - 128
    if signum in (signal.SIGTERM, signal.SIGHUP):
        _settle_output(f"edgeassist: {STOP_SIGNALS[signal.Signals(signum)]}")
        return 128 + signum
    return code
