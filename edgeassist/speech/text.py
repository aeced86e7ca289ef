"""Speakable text: a reply streamed as Markdown, cut into sentences and turned into plain prose.

The splitter works on the stream as it arrives, so the first sentence can be synthesized while
the model is still writing the second. Code blocks are never read out symbol by symbol: each one
is replaced by a short spoken note, and inline Markdown (emphasis, links, headings, list markers,
table pipes) is reduced to the words a person would say.
"""

from __future__ import annotations

import re

CODE_PLACEHOLDER = "The code is on the screen."
"""What is spoken in place of a fenced code block."""

LINK_PLACEHOLDER = "a link"
"""What is spoken in place of a bare URL."""

# Words that end in a period without ending a sentence (compared lower-case, without the period).
ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st vs etc e.g i.e eg ie cf approx no fig inc ltd co corp dept est min max "
    "mt jan feb mar apr jun jul aug sep sept oct nov dec u.s u.k a.m p.m ph.d".split()
)

_TERMINATOR = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*(?=\s)")
_CLAUSE = re.compile(r"[,;:\u2014](?=\s)")
_WORD = re.compile(r"\S+(?=\s)")
PHRASE_WORDS = frozenset(
    "about after and as at because before but by for from if in into like of on or since so than that "
    "then to until when where which while who with without".split()
)
"""Words a phrase starts with: the first chunk may end before one (`SentenceSplitter`), where a
speaker could pause."""
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_LIST_MARKER = re.compile(r"^\s*(?:[-*+\u2022]|\d{1,3}[.)])\s+")
_PARTIAL_MARKER = re.compile(r"^\s*(?:[-*+\u2022#>]|\d{1,3}[.)]?|#{1,6})?$")
_HEADING = re.compile(r"^\s*#{1,6}\s+")
_QUOTE = re.compile(r"^\s*(?:>\s*)+")
_RULE = re.compile(r"^\s*(?:[-*_]\s*){3,}$")
_TABLE_SEP = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(?:\|\s*:?-{2,}:?\s*)*\|?\s*$")
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_AUTOLINK = re.compile(r"<(?:https?|ftp|mailto):[^>]+>")
_URL = re.compile(r"\b(?:https?://|www\.)\S+[^\s.,;:!?)\]'\"]")
_INLINE_CODE = re.compile(r"`+([^`]+)`+")
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_ITALIC_STAR = re.compile(r"(?<![\w*])\*(?=\S)([^*]+?)(?<=\S)\*(?![\w*])")
_ITALIC_UNDER = re.compile(r"(?<![\w_])_(?=\S)([^_]+?)(?<=\S)_(?![\w_])")
_STRIKE = re.compile(r"~~(.+?)~~")
_HTML_TAG = re.compile(r"</?[a-zA-Z][^>]*>")
_SNAKE = re.compile(r"(?<=[A-Za-z0-9])_(?=[A-Za-z0-9])")
_SPACES = re.compile(r"\s+")
_SPOKEN = re.compile(r"[A-Za-z0-9\u00C0-\uFFFF]")


def _inline_code(match: re.Match[str]) -> str:
    code = match.group(1).strip()
    # Short identifiers and commands are worth saying; long snippets are not.
    if len(code) <= 32 and len(re.findall(r"[^\w\s.\-/]", code)) <= 2:
        return code
    return "this code"


def to_speech(text: str) -> str:
    """One line or sentence of Markdown as plain words for a voice: no markup, links, or table pipes."""
    s = text.strip()
    if _RULE.match(s) or _TABLE_SEP.match(s):
        return ""
    s = _HEADING.sub("", s)
    s = _QUOTE.sub("", s)
    s = _LIST_MARKER.sub("", s)
    s = _IMAGE.sub(r"\1", s)
    s = _LINK.sub(r"\1", s)
    s = _AUTOLINK.sub(LINK_PLACEHOLDER, s)
    s = _URL.sub(LINK_PLACEHOLDER, s)
    s = _INLINE_CODE.sub(_inline_code, s)
    s = _BOLD.sub(r"\2", s)
    s = _ITALIC_STAR.sub(r"\1", s)
    s = _ITALIC_UNDER.sub(r"\1", s)
    s = _STRIKE.sub(r"\1", s)
    s = _HTML_TAG.sub(" ", s)
    if s.count("|") >= 2:  # a table row: cells become a spoken list
        s = ", ".join(cell.strip() for cell in s.strip().strip("|").split("|") if cell.strip())
    s = _SNAKE.sub(" ", s)
    s = s.replace("**", "").replace("__", "")
    s = _SPACES.sub(" ", s).strip()
    return s if _SPOKEN.search(s) else ""


def _ends_with_abbreviation(text: str) -> bool:
    """Whether the period that ends `text` belongs to an abbreviation, an initial or a number."""
    words = text.rstrip(".").split()
    if not words:
        return True
    last = words[-1].lower().strip("(\"'")
    if last in ABBREVIATIONS:
        return True
    if len(last) == 1 and last.isalpha():  # an initial: "J. R. R. Tolkien"
        return True
    return bool(re.fullmatch(r"\d{1,3}", last)) and len(words) == 1  # "1." opening a line


class SentenceSplitter:
    """Cuts a streamed Markdown reply into speakable sentences as the pieces arrive.

    `feed` returns the sentences completed by a piece; `flush` returns the rest at the end. A
    sentence ends at `.`, `!`, `?` or `…` followed by white space (so `3.14` and `e.g.` do not end
    one), or at the end of a line. With `eager_first`, the first chunk is short, so the first
    audio starts sooner: once it has `first_min_words` words it ends at a clause (`,` `;` `:`) or
    before a word that starts a phrase (`PHRASE_WORDS`: "in", "and", "because"...), and with
    `first_max_words` it ends after that many words whatever comes (0: no such limit). The rest of
    the reply is cut at sentences.
    """

    def __init__(
        self,
        *,
        eager_first: bool = False,
        first_min_words: int = 3,
        first_max_words: int = 0,
        max_chars: int = 280,
        code_placeholder: str = CODE_PLACEHOLDER,
    ) -> None:
        """Start with an empty buffer at the start of a line, outside any code block."""
        self.eager_first = eager_first
        self.first_min_words = first_min_words
        self.first_max_words = first_max_words
        self.max_chars = max_chars
        self.code_placeholder = code_placeholder
        self._buf = ""
        self._line_start = True
        self._fence: str | None = None  # the opening fence while inside a code block
        self._emitted = 0

    def feed(self, text: str) -> list[str]:
        """Add a piece of the reply; return the sentences it completed, as speakable prose."""
        self._buf += text
        return self._drain(final=False)

    def flush(self) -> list[str]:
        """The reply has ended: return whatever is left as sentences."""
        out = self._drain(final=True)
        self._buf, self._line_start, self._fence = "", True, None
        return out

    def cut(self) -> list[str]:
        """Speak what has arrived so far as a chunk now, sentence or not (outside code blocks).

        The bench uses it to stand in for a first sentence when the model's text is random.
        """
        if self._fence is not None:
            return []
        out: list[str] = []
        self._emit(self._buf, out)
        self._buf = ""
        return out

    def _emit(self, raw: str, out: list[str]) -> None:
        spoken = to_speech(raw)
        if spoken:
            out.append(spoken)
            self._emitted += 1

    def _drain(self, final: bool) -> list[str]:
        out: list[str] = []
        while self._buf:
            if self._fence is not None:
                nl = self._buf.find("\n")
                if nl < 0:
                    if final:
                        self._buf = ""
                    break
                line, self._buf = self._buf[:nl], self._buf[nl + 1 :]
                if line.strip().startswith(self._fence):
                    self._fence = None
                continue
            if self._line_start:
                head = self._buf.split("\n", 1)[0]
                if "\n" not in self._buf and not final:
                    # Wait until the start of the line says what it is (a fence, a list marker).
                    stripped = head.lstrip(" ")
                    if "```".startswith(stripped) or "~~~".startswith(stripped) or _PARTIAL_MARKER.match(head):
                        break
                fence = _FENCE.match(head)
                if fence:
                    if "\n" not in self._buf and not final:
                        break  # the info string (```python) is still arriving
                    self._fence = fence.group(1)
                    self._buf = self._buf[len(head) + 1 :] if "\n" in self._buf else ""
                    out.append(self.code_placeholder)
                    self._emitted += 1
                    continue
                # Strip block markers now, so "1." in "1. First" is not taken for a sentence end.
                for pattern in (_HEADING, _QUOTE, _LIST_MARKER):
                    m = pattern.match(self._buf)
                    if m and m.end() <= len(head):
                        self._buf = self._buf[m.end() :]
                        head = head[m.end() :]
                self._line_start = False
            if not self._take_sentence(out, final):
                break
        return out

    def _take_sentence(self, out: list[str], final: bool) -> bool:
        """Emit one sentence from the start of the buffer if one is complete; False to wait for more."""
        nl = self._buf.find("\n")
        line = self._buf if nl < 0 else self._buf[:nl]
        for m in _TERMINATOR.finditer(line + ("\n" if nl >= 0 else "")):
            end = m.end()
            if line[: m.start() + 1].endswith(".") and _ends_with_abbreviation(line[: m.start() + 1]):
                continue
            self._cut(end, out)
            return True
        if self.eager_first and self._emitted == 0 and self._take_first(line, out):
            return True
        if len(line) > self.max_chars:
            cut = line.rfind(" ", 0, self.max_chars)
            self._cut(cut if cut > 0 else self.max_chars, out)
            return True
        if nl >= 0:
            self._emit(line, out)
            self._buf = self._buf[nl + 1 :]
            self._line_start = True
            return True
        if final:
            self._emit(line, out)
            self._buf = ""
            return True
        return False

    def _take_first(self, line: str, out: list[str]) -> bool:
        """Emit a short first chunk from the start of `line` if one is complete (see the class); False to wait."""
        for m in _CLAUSE.finditer(line):
            if len(line[: m.start()].split()) >= self.first_min_words:
                self._cut(m.end(), out)
                return True
        words = list(_WORD.finditer(line))  # (words followed by a space: complete)
        for i, word in enumerate(words):
            if i >= self.first_min_words and word.group().lower() in PHRASE_WORDS:
                self._cut(words[i - 1].end(), out)
                return True
            if self.first_max_words and i + 1 >= self.first_max_words:
                self._cut(word.end(), out)
                return True
        return False

    def _cut(self, end: int, out: list[str]) -> None:
        self._emit(self._buf[:end], out)
        rest = self._buf[end:]
        stripped = rest.lstrip(" \t")
        if stripped.startswith("\n"):
            stripped = stripped[1:]
            self._line_start = True
        self._buf = stripped


def markdown_to_prose(text: str) -> str:
    """A whole Markdown text as the prose a voice would read (code blocks replaced by a note)."""
    splitter = SentenceSplitter()
    return " ".join([*splitter.feed(text), *splitter.flush()])


def split_sentences(text: str) -> list[str]:
    """A whole Markdown text cut into speakable sentences."""
    splitter = SentenceSplitter()
    return [*splitter.feed(text), *splitter.flush()]
