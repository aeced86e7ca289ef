"""Split a stream of generated text into thinking and answer, on `<think>` / `</think>` tags."""

from __future__ import annotations

from collections.abc import Iterator

from edgeassist.engine.base import Text, Thinking

OPEN = "<think>"
CLOSE = "</think>"


def partial_tag(text: str, tag: str) -> int:
    """How many characters at the end of `text` could be the start of `tag` (held back until the next piece)."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-n:]):
            return n
    return 0


class ThinkSplitter:
    """Turns text pieces into `Thinking` and `Text` events; tags split across pieces are handled."""

    def __init__(self, thinking: bool = False) -> None:
        """Start inside a think block when the prompt already opened one."""
        self.thinking = thinking
        self._buf = ""
        self._strip_lead = True  # drop the newlines right after a tag

    def feed(self, piece: str) -> Iterator[Thinking | Text]:
        """Consume one piece of text; yield what can be decided so far."""
        self._buf += piece
        while self._buf:
            tag = CLOSE if self.thinking else OPEN
            idx = self._buf.find(tag)
            if idx >= 0:
                yield from self._emit(self._buf[:idx])
                self._buf = self._buf[idx + len(tag) :]
                self.thinking = not self.thinking
                self._strip_lead = True
                continue
            keep = partial_tag(self._buf, tag)  # (a tail that could be the start of the tag waits)
            out, self._buf = self._buf[: len(self._buf) - keep], self._buf[len(self._buf) - keep :]
            yield from self._emit(out)
            break

    def flush(self) -> Iterator[Thinking | Text]:
        """Emit whatever is held back at the end of the stream."""
        out, self._buf = self._buf, ""
        yield from self._emit(out)

    def _emit(self, text: str) -> Iterator[Thinking | Text]:
        if self._strip_lead:
            text = text.lstrip("\n")
            if not text:
                return
            self._strip_lead = False
        if not text:
            return
        if self.thinking:
            yield Thinking(text)
        else:
            yield Text(text)
