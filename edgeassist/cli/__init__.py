"""The `edgeassist` command: subcommands, settings from flags, and errors as one line + exit code.

Each subcommand lives in its own module here with `register(subparsers, common)` and a
`run(args, settings) -> int`; heavy modules (llama.cpp, Textual, whisper) are imported
inside `run`, so `edgeassist --help` and error paths stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeassist import __version__
from edgeassist.errors import EdgeAssistError

# Subcommand name -> module under edgeassist.cli (imported when the parser is built; keep them light).
SUBCOMMANDS = {
    "chat": "chat",
    "ask": "ask",
    "pull": "models",
    "models": "models",
    "rm": "models",
    "voice": "voice",
    "bench": "bench",
}


def setting_flag(section: str, key: str | None = None) -> type[argparse.Action]:
    """An argparse action that stores the flag as the `[section] key` settings override (key: the flag's
    dest), so that its value is validated, and named in errors, like the config file's."""

    class SettingFlag(argparse.Action):
        def __call__(
            self,
            parser: argparse.ArgumentParser,
            namespace: argparse.Namespace,
            values: Any,
            option_string: str | None = None,
        ) -> None:
            overrides = getattr(namespace, "settings_overrides", None) or {}
            overrides.setdefault(section, {})[key or self.dest] = values
            namespace.settings_overrides = overrides

    return SettingFlag


def common_options() -> argparse.ArgumentParser:
    """Options every subcommand takes; they become the strongest settings source."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("settings (override config.toml and EDGEASSIST_* variables)")
    g.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="user config file (TOML)")
    g.add_argument(
        "-m",
        "--model",
        default=argparse.SUPPRESS,
        help="catalog name (qwen3.5-2b:q8_0), repo/file.gguf or path",
    )
    g.add_argument("--n-ctx", type=int, default=argparse.SUPPRESS, help="context window in tokens")
    g.add_argument("--threads", type=int, default=argparse.SUPPRESS, help="CPU threads (default: physical cores)")
    g.add_argument("--gpu-layers", type=int, default=argparse.SUPPRESS, help="layers to offload (-1: all)")
    return p


def settings_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The nested settings dict that the common flags (and subcommand flags) stand for."""
    model: dict[str, Any] = {}
    for flag, key in (
        ("model", "name"),
        ("n_ctx", "n_ctx"),
        ("threads", "n_threads"),
        ("gpu_layers", "n_gpu_layers"),
    ):
        if hasattr(args, flag):
            model[key] = getattr(args, flag)
    flags: dict[str, Any] = {"model": model} if model else {}
    for section, values in getattr(args, "settings_overrides", {}).items():
        flags.setdefault(section, {}).update(values)
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, load settings, run the subcommand; errors become one line and an exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args([*(argv if argv is not None else sys.argv[1:]), "chat"])
    try:
        from edgeassist.config import load_settings

        settings = load_settings(getattr(args, "config", None), settings_flags(args))
        return int(args.handler(args, settings) or 0)
    except EdgeAssistError as e:
        print(f"edgeassist: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("\nedgeassist: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 141
