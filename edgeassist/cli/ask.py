"""`edgeassist ask`: one question from the shell, the answer streamed to stdout."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edgeassist.cli import setting_flag, tool_flags
from edgeassist.config import Settings
from edgeassist.errors import UsageError

if TYPE_CHECKING:
    from edgeassist.images import Picture
    from edgeassist.tools import ConsentRequest, Decision, Toolbox


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Add the `ask` subcommand."""
    p = sub.add_parser(
        "ask",
        parents=[common],
        help="ask one question; the answer streams to stdout",
        description="Ask one question. The answer streams to stdout; thinking (with --show-thinking) "
        "and notes go to stderr.",
    )
    p.add_argument("prompt", help="the question, or - to read it from stdin")
    p.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="FILE",
        help="a picture to ask about (JPEG, PNG or WebP; repeatable; - reads one from stdin); "
        "the model needs its vision projector",
    )
    p.add_argument("--think", action=argparse.BooleanOptionalAction, default=None, help="let Qwen 3.5 think first")
    p.add_argument("--show-thinking", action="store_true", help="print the thinking to stderr")
    # Settings flags: checked like the config file, and they reach `run` through `settings.generation`
    # (their own attributes stay None, so the per-call overrides below change nothing).
    gen = setting_flag("generation")
    p.add_argument(
        "--system", action=setting_flag("generation", "system_prompt"), help="system prompt for this question"
    )
    p.add_argument("--max-tokens", action=gen, help="most tokens to generate")
    p.add_argument("--temperature", action=gen, help="sampling temperature (0: greedy)")
    p.add_argument("--seed", action=gen, help="sampling seed")
    p.add_argument("--json", action="store_true", help="print the answer and its stats as one JSON object")
    p.add_argument("--chat", metavar="NAME", help="continue (or start) the saved chat NAME")
    tool_flags(p)
    p.add_argument(
        "--tool-choice",
        action=setting_flag("tools", "choice"),
        help="auto: the model decides whether to call a tool; required: the reply starts with a call",
    )
    p.set_defaults(handler=run)


def read_prompt(arg: str) -> str:
    """The prompt from the argument, or from stdin for `-`; empty, binary or non-UTF-8 text is a UsageError."""
    where = "on stdin" if arg == "-" else "argument"
    if arg == "-":
        if sys.stdin is None:  # started with stdin closed (`<&-`)
            raise UsageError("the prompt is `-` but there is no stdin to read it from")
        try:
            text = sys.stdin.read()
        except UnicodeDecodeError as e:  # a UTF-8 locale reads stdin strictly
            raise UsageError(
                f"the prompt on stdin is not UTF-8 text (byte 0x{e.object[e.start]:02x}): convert it, e.g. with iconv"
            ) from None
        except OSError as e:
            raise UsageError(f"cannot read the prompt from stdin: {e.strerror or e}") from None
    else:
        text = arg
    # Bytes that are not UTF-8 arrive from argv (and from stdin under the C locale) as lone surrogates
    # (PEP 383); the model, the terminal and the history database would each fail on them later.
    bad = next((c for c in text if "\ud800" <= c <= "\udfff"), None)
    if bad is not None:
        byte = f"byte 0x{ord(bad) - 0xDC00:02x}" if "\udc80" <= bad <= "\udcff" else f"U+{ord(bad):04X}"
        raise UsageError(f"the prompt {where} is not UTF-8 text ({byte}): convert it, e.g. with iconv")
    if "\x00" in text:
        raise UsageError(f"the prompt {where} contains a NUL byte: is it a binary file?")
    if not text.strip():
        raise UsageError("the prompt is empty: pass a question, or pipe one in with `-`")
    return text.strip()


def read_pictures(names: list[str], prompt_arg: str) -> list[Picture]:
    """The pictures `--image` names, each read and checked (`-`: from stdin); ImageError or UsageError."""
    from edgeassist.images import MAX_FILE_BYTES, picture_from_bytes, read_image

    if names.count("-") > 1 or ("-" in names and prompt_arg == "-"):
        raise UsageError("stdin can give one thing: the prompt or one --image, not both")
    pictures = []
    for name in names:
        if name == "-":
            if sys.stdin is None:
                raise UsageError("--image is `-` but there is no stdin to read it from")
            data = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
            pictures.append(picture_from_bytes(data, "stdin"))
        else:
            pictures.append(read_image(name))
    return pictures


def consent_on_terminal(request: ConsentRequest) -> Decision:
    """Ask on the terminal whether a tool may run; without a terminal the answer is no.

    The question goes to the terminal itself (`/dev/tty`), so it works when the prompt is piped
    in, and it never reads a piped stdin as an answer. The arguments are shown as JSON, so text
    the model wrote cannot move the cursor or fake a prompt.
    """
    try:
        fd = os.open("/dev/tty", os.O_RDWR | getattr(os, "O_NOCTTY", 0))
    except OSError:
        return "deny"
    with open(fd, "rb", buffering=0) as tty:
        where = "built in" if request.source == "built-in" else f"MCP server {json.dumps(request.source)}"
        args = json.dumps(request.arguments, ensure_ascii=False)
        if len(args) > 2000:
            args = args[:2000] + f"… ({len(args) - 2000} more characters)"
        always = "always" in request.choices
        keys = "[y]es once / [a]lways / [N]o" if always else "[y]es once / [N]o"
        question = f"edgeassist: the model wants to run `{request.tool}` ({where}) with {args}\n"
        question += f"edgeassist: allow it? {keys} "
        try:
            os.write(fd, question.encode("utf-8", "replace"))
            answer = tty.readline().decode("utf-8", "replace").strip().lower()
        except OSError:
            return "deny"
    if answer in ("y", "yes"):
        return "once"
    if always and answer in ("a", "always"):
        return "always"
    return "deny"


def toolbox_for(settings: Settings, args: argparse.Namespace, notify: Callable[[str], None]) -> Toolbox:
    """The session's tools from the settings, with the tools `--allow-tool` names allowed (none with `--no-tools`)."""
    from functools import partial

    from edgeassist.config import save_tool_policy, user_config_file
    from edgeassist.tools import Toolbox

    save = partial(save_tool_policy, user_config_file(getattr(args, "config", None)))
    chosen = settings.tools
    if getattr(args, "no_tools", False):
        chosen = chosen.model_copy(update={"enabled": False})
    return Toolbox(chosen, notify=notify, allowed=getattr(args, "allow_tool", []) or [], save_policy=save)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Answer the question, streaming."""
    from edgeassist.engine.factory import generation_options, open_engine, vision_refusal

    prompt = read_prompt(args.prompt)
    pictures = read_pictures(args.image, args.prompt)  # (a bad picture fails before the model loads)
    opened = open_engine(settings, explicit=hasattr(args, "model"))
    if opened.resolved.note:
        print(f"edgeassist: {opened.resolved.note}", file=sys.stderr)
    engine = opened.engine
    if pictures and not engine.capabilities.images:
        raise vision_refusal(engine, opened.resolved)
    engine.load()
    # --max-tokens, --temperature, --seed and --system are setting flags: they arrive in `settings`.
    options = generation_options(settings, think=args.think)
    if options.think and not engine.capabilities.thinking:
        print(f"edgeassist: {engine.name} has no thinking mode; answering directly", file=sys.stderr)
    system = settings.generation.system_prompt

    def note(text: str) -> None:
        print(f"edgeassist: {text}", file=sys.stderr)

    tools = None if args.no_tools else toolbox_for(settings, args, note)
    try:
        return _answer(args, prompt, pictures, opened, engine, options, system, settings, tools)
    finally:
        if tools is not None:
            tools.close()


def _answer(
    args: argparse.Namespace,
    prompt: str,
    pictures: list[Picture],
    opened: Any,
    engine: Any,
    options: Any,
    system: str,
    settings: Settings,
    tools: Toolbox | None,
) -> int:
    from edgeassist.chat import Conversation
    from edgeassist.engine import Done, Notice, Text, Thinking
    from edgeassist.store import Store
    from edgeassist.tools import ConsentRequest, ToolResult, ToolStarted

    if args.chat is not None:  # an empty name is refused by Conversation.open, never silently unsaved
        store = Store(settings.store_path())
        convo = Conversation.open(engine, store, args.chat, system_prompt=system, options=options, tools=tools)
    else:
        convo = Conversation(engine, system_prompt=system, options=options, tools=tools)

    answer: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    stats: dict[str, Any] = {}
    out = sys.stdout
    for event in convo.send(prompt, images=pictures):
        if isinstance(event, Text):
            answer.append(event.text)
            if not args.json:
                out.write(event.text)
                out.flush()
        elif isinstance(event, Thinking):
            thinking.append(event.text)
            if args.show_thinking and not args.json:
                sys.stderr.write(event.text)
                sys.stderr.flush()
        elif isinstance(event, Notice):
            print(f"edgeassist: {event.text}", file=sys.stderr)
        elif isinstance(event, Done):
            stats = event.stats.to_dict()
        elif isinstance(event, ConsentRequest):
            event.answer(consent_on_terminal(event))
        elif isinstance(event, ToolStarted):
            if answer and not args.json:
                out.write("\n")
                out.flush()
        elif isinstance(event, ToolResult):
            use = event.use
            calls.append(use.to_dict())
            args_text = json.dumps(use.arguments, ensure_ascii=False)
            args_text = args_text if len(args_text) <= 200 else args_text[:200] + "…"
            print(f"edgeassist: tool `{use.name}` {args_text}: {use.outcome} ({use.duration_s:.2f} s)", file=sys.stderr)
    if args.json:
        json.dump(
            {
                "model": engine.name,
                "starter": opened.resolved.is_starter,
                "answer": "".join(answer).strip(),
                "thinking": "".join(thinking).strip(),
                "tool_calls": calls,
                "images": [
                    {"name": p.name, "sha256": p.sha256, "format": p.format, "width": p.width, "height": p.height}
                    for p in pictures
                ],
                "stats": stats,
            },
            out,
        )
        out.write("\n")
    elif answer:
        out.write("\n")
    if stats.get("finish_reason") == "length":
        where = "before the answer" if not "".join(answer).strip() else "mid-reply"
        print(
            f"edgeassist: the reply was cut {where} at {stats.get('generated_tokens', 0):,} tokens "
            "(generation.max_tokens, or the context window): raise --max-tokens",
            file=sys.stderr,
        )
    return 0
