"""Find the code blocks of a Markdown reply, for copying them."""

from __future__ import annotations

from dataclasses import dataclass

from markdown_it import MarkdownIt


@dataclass(frozen=True)
class CodeBlock:
    """One fenced or indented code block."""

    code: str
    """The code, without the fence."""
    language: str
    """The fence's info string (may be empty)."""

    def label(self, number: int) -> str:
        """`1. python · 3 lines · def main():` for a picker."""
        lines = self.code.splitlines() or [""]
        first = lines[0].strip()
        if len(first) > 40:
            first = first[:39] + "…"
        kind = self.language or "code"
        return f"{number}. {kind} · {len(lines)} line{'s' if len(lines) != 1 else ''} · {first}"


def code_blocks(markdown: str) -> list[CodeBlock]:
    """The code blocks of `markdown`, in order (an unclosed fence at the end counts)."""
    tokens = MarkdownIt("commonmark").parse(markdown)
    return [
        CodeBlock(t.content.rstrip("\n"), (t.info or "").strip().split(" ")[0])
        for t in tokens
        if t.type in ("fence", "code_block") and t.content.strip()
    ]
