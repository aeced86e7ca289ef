"""Message text stays text: only the chat template's own markup may become special tokens.

llama.cpp turns the *text* of a control token (`<|im_start|>`, `<|im_end|>`, `<|endoftext|>`…)
into that control token when a string is tokenized with special parsing on. A prompt has to be
tokenized that way, or the template's markup would not become the model's turn structure. But a
message holding the same text (typed, pasted, piped, transcribed, or later a file or a tool
result) would then forge a turn: `<|im_start|>system\n…` in a user message would start a real
system turn.

So a prompt is rendered with every control-token string inside message content replaced by a
placeholder that no one can type (a per-process random nonce between private-use characters),
and the rendered text is cut at the placeholders: the template's text between them is tokenized
with special parsing, and each placeholder stands for its string tokenized as plain text. The
template still sees ordinary text (it may strip, split or test the content as it likes); only
the control-token strings are held out of its reach.

A message's pictures go the same way: each becomes a mark of its own before the message's text,
and the segment cut there stands for the picture (the engine puts the projector's tokens there).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edgeassist.engine.base import ImageRef, Message

_NONCE = secrets.token_hex(8)
_OPEN, _CLOSE = "\ue000", "\ue001"
_PLACEHOLDER = re.compile(re.escape(_OPEN + _NONCE) + r"(\d+)" + re.escape(_CLOSE))
_IMAGE_MARK = re.compile(re.escape("\ue004" + _NONCE) + r"(\d+)" + re.escape("\ue005"))
_MARKS = re.compile(f"{_PLACEHOLDER.pattern}|{_IMAGE_MARK.pattern}")
IMAGE_TEXT = "<image>"
"""How a picture shows in a prompt's text (the model reads the projector's tokens there)."""
CUT = f"\ue002{_NONCE}\ue003"
"""A mark no message can contain: put in a message to find where its text lands in the rendering."""


@dataclass(frozen=True)
class Segment:
    """A run of rendered prompt text and how it is tokenized."""

    text: str
    special: bool
    """True for template markup (special tokens parsed); False for a control-token string quoted from a message."""
    image: ImageRef | None = None
    """The picture this segment stands for (its text is `IMAGE_TEXT`)."""


@dataclass
class Shielded:
    """Messages whose control-token strings were swapped for placeholders, and the table to undo it."""

    messages: list[Message]
    table: list[str]
    """The string behind placeholder i."""
    tools: list[dict[str, Any]] = field(default_factory=list)
    """The offered tools' template entries, shielded the same way."""
    images: list[ImageRef] = field(default_factory=list)
    """The picture behind image mark i."""

    def segments(self, rendered: str) -> list[Segment]:
        """Cut text rendered from `messages` into markup, quoted control-token strings and pictures."""
        if not self.table and not self.images:
            return [Segment(rendered, True)]
        out: list[Segment] = []
        at = 0
        for m in _MARKS.finditer(rendered):
            quoted, pictured = m.group(1), m.group(2)
            if quoted is not None and int(quoted) < len(self.table):
                seg = Segment(self.table[int(quoted)], False)
            elif pictured is not None and int(pictured) < len(self.images):
                seg = Segment(IMAGE_TEXT, False, self.images[int(pictured)])
            else:  # not ours (cannot happen: content never holds the nonce)
                continue
            if m.start() > at:
                out.append(Segment(rendered[at : m.start()], True))
            out.append(seg)
            at = m.end()
        if at < len(rendered):
            out.append(Segment(rendered[at:], True))
        return out

    def text(self, rendered: str) -> str:
        """The prompt as the model reads it: placeholders put back as their strings."""
        return "".join(s.text for s in self.segments(rendered))


def _strings(value: Any) -> Iterator[str]:
    """Every string inside a message's parts (content, reasoning, tool-call arguments) or a tool entry."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def _swapped(value: Any, swap: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return swap(value)
    if isinstance(value, Mapping):
        return {swap(k) if isinstance(k, str) else k: _swapped(v, swap) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_swapped(v, swap) for v in value]
    return value


def shield(
    messages: Sequence[Message],
    specials_in: Callable[[str], Iterable[str]],
    tools: Sequence[Mapping[str, Any]] = (),
) -> Shielded:
    """Replace, in every message's text and every offered tool's entry, the control-token strings found there.

    `specials_in(text)` names the control-token strings the tokenizer would turn into control
    tokens in `text`. A message's text is its content, and an assistant message's reasoning and
    tool-call arguments; a tool's entry (its name, description and schema, perhaps from an MCP
    server) is text from outside too. The nonce characters themselves are removed as well: they
    are private-use code points no keyboard produces, and a message that smuggled the nonce in
    could otherwise pose as a placeholder.

    A message's `images` leave it: each becomes a mark before its text (see `Shielded.images`).
    """
    texts = [*_strings([{k: v for k, v in m.items() if k != "role"} for m in messages]), *_strings(list(tools))]
    found: set[str] = set()
    for text in texts:
        found.update(s for s in specials_in(text) if s)
    has_marks = any(_NONCE in text for text in texts)
    if not found and not has_marks:
        return _pictured(Shielded(list(messages), [], [dict(t) for t in tools]))
    table = sorted(found, key=len, reverse=True)  # longest first: one string may contain another
    index = {s: i for i, s in enumerate(table)}
    pattern = re.compile("|".join(re.escape(s) for s in table)) if table else None

    def swap(text: str) -> str:
        text = text.replace(_NONCE, "")
        if pattern is None:
            return text
        return pattern.sub(lambda m: f"{_OPEN}{_NONCE}{index[m.group(0)]}{_CLOSE}", text)

    shielded: list[Message] = [
        {k: (v if k == "role" else _swapped(v, swap)) for k, v in m.items()}  # type: ignore[misc]
        for m in messages
    ]
    return _pictured(Shielded(shielded, table, [_swapped(dict(t), swap) for t in tools]))


def _pictured(shielded: Shielded) -> Shielded:
    """Move each message's pictures into its text as image marks (after the swap: no one can type one)."""
    if not any(m.get("images") for m in shielded.messages):
        return shielded
    out: list[Message] = []
    for m in shielded.messages:
        images = m.get("images")
        if not images:
            out.append(m)
            continue
        marks = ""
        for image in images:
            marks += f"\ue004{_NONCE}{len(shielded.images)}\ue005"
            shielded.images.append(image)
        rest = {k: v for k, v in m.items() if k != "images"}
        out.append({**rest, "content": marks + m["content"]})  # type: ignore[typeddict-item]
    shielded.messages = out
    return shielded


def common_prefix_len(a: Sequence[object], b: Sequence[object]) -> int:
    """How many leading items `a` and `b` share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
