"""`PromptEncoder`: a chat as the model reads it, through the vocabulary and the chat template.

Message text is never parsed for control tokens (see `engine.prompt`): only the template's own
markup is. The encoder also finds where a reply starts (a hybrid model's checkpoint goes there)
and cuts a prompt whose last message is still being written (voice's prefill).
"""

from __future__ import annotations

import ctypes
import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edgeassist.engine.base import ImageRef, Message, ToolSpec
from edgeassist.engine.prompt import CUT, Segment, Shielded, common_prefix_len, shield
from edgeassist.engine.template import ChatTemplate
from edgeassist.errors import EdgeAssistError, VisionUnavailableError

_SPECIAL_CACHE_MAX = 512
"""Message texts whose control-token scan is remembered (a chat's history is re-scanned each turn)."""
_CUT_PROBES = ("x", " x", "X", "?", "\n")
"""Continuations tried on a cut prompt: tokens they all agree on are safe to evaluate early."""
_SYSTEM_PROBES = ("a", "b")
"""First user messages rendered after a system prompt: the tokens the renderings share begin every such chat."""
_SYSTEM_CACHE_MAX = 64


@functools.cache
def _special_attrs() -> int:
    """Token attributes whose text tokenizes as the token itself: control, unknown, user-defined."""
    import llama_cpp

    control, unknown = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL, llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN
    return int(control | unknown | llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED)


@dataclass
class Prompt:
    """A turn's prompt: the text as the model reads it, its tokens, and where the reply starts."""

    text: str
    tokens: list[int]
    split: int
    """Token index where the reply starts as the next turn's history will render it."""
    system_end: int = 0
    """Tokens every chat with this system prompt begins with (the system prompt's state is kept there); 0: none."""


class PromptEncoder:
    """Tokens and prompts for one loaded model's vocabulary and chat template."""

    def __init__(self, vocab: object, template: ChatTemplate, *, add_bos: bool, bos_text: str, recurrent: bool) -> None:
        """Wrap a llama.cpp vocabulary and the model's compiled template."""
        self.vocab = vocab
        self.template = template
        self.add_bos = add_bos
        self.bos_text = bos_text
        self.recurrent = recurrent
        self._specials: dict[str, tuple[str, ...]] = {}
        self._tails: dict[bool, str] = {}  # the generation prompt's text after the reply start, per think mode
        self._last: tuple[tuple[object, ...], Prompt] | None = None  # the last prompt encoded, for its turn
        self._systems: dict[tuple[str, bool, str], list[int]] = {}  # a system prompt's shared start, per think mode
        self.media: Callable[[ImageRef], list[int]] | None = None
        """The tokens a picture takes in a prompt (the engine's, once it can see); None: pictures are refused."""

    # -- tokens --------------------------------------------------------------------------------

    def tokenize(self, text: str, *, special: bool = False, add_bos: bool = False) -> list[int]:
        """Tokens for `text`; control-token strings in it stay plain text unless `special`."""
        import llama_cpp

        raw = text.encode("utf-8", "replace")  # a lone surrogate must not stop a reply
        n_max = len(raw) + 8
        buf = (llama_cpp.llama_token * n_max)()
        n = llama_cpp.llama_tokenize(self.vocab, raw, len(raw), buf, n_max, add_bos, special)
        if n < 0:
            n_max = -n
            buf = (llama_cpp.llama_token * n_max)()
            n = llama_cpp.llama_tokenize(self.vocab, raw, len(raw), buf, n_max, add_bos, special)
        return list(buf[:n])

    def piece_bytes(self, token: int) -> bytes:
        """The raw bytes of one token (special tokens spelled out); may be part of a UTF-8 character."""
        import llama_cpp

        buf = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, 64, 0, True)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, -n, 0, True)
        return buf.raw[:n]

    def control_strings(self, text: str) -> tuple[str, ...]:
        """The control-token strings (`<|im_start|>`, `</tool_response>`…) that special parsing would find in `text`.

        User-defined tokens count too: llama.cpp matches those even without special parsing, so a
        tool result holding `</tool_response>` would otherwise close the template's own block.
        """
        import llama_cpp

        found = self._specials.get(text)
        if found is None:
            attr, vocab, special = llama_cpp.llama_vocab_get_attr, self.vocab, _special_attrs()
            tokens = self.tokenize(text, special=True) if text else []
            found = tuple(
                sorted({self.piece_bytes(t).decode("utf-8", "replace") for t in tokens if attr(vocab, t) & special})
            )
            if len(self._specials) >= _SPECIAL_CACHE_MAX:
                self._specials.clear()
            self._specials[text] = found
        return found

    def literal(self, text: str) -> list[int]:
        """Tokens that spell `text` as plain characters: no control or user-defined token among them.

        A user-defined token's text tokenizes as that token even without special parsing, so the
        text is split until no piece does (the model reads the characters, not the token).
        """
        import llama_cpp

        tokens = self.tokenize(text)
        attr, vocab = llama_cpp.llama_vocab_get_attr, self.vocab
        if len(text) < 2 or not any(attr(vocab, t) & _special_attrs() for t in tokens):
            return tokens
        half = len(text) // 2
        return self.literal(text[:half]) + self.literal(text[half:])

    def _prompt_tokens(
        self, shielded: Shielded, rendered: str, known: list[tuple[Segment, list[int]]] | None = None
    ) -> tuple[list[int], list[tuple[Segment, list[int]]]]:
        """Tokens of a prompt rendered from `shielded`: markup with special parsing, quoted strings without.

        Also returns each segment with its tokens; pass them back as `known` to tokenize a prefix of
        the same rendering (the reply's head) without tokenizing its segments again.
        """
        out: list[int] = []
        parts: list[tuple[Segment, list[int]]] = []
        for i, seg in enumerate(shielded.segments(rendered)):
            if known is not None and i < len(known) and known[i][0] == seg:
                tokens = known[i][1]
            elif seg.image is not None:
                if self.media is None:
                    raise VisionUnavailableError("this model cannot see images")
                tokens = self.media(seg.image)
            else:
                bos = i == 0 and self.add_bos and not (self.bos_text and seg.text.startswith(self.bos_text))
                if seg.special:
                    tokens = self.tokenize(seg.text, special=True, add_bos=bos)
                else:
                    tokens = (self.tokenize("", add_bos=True) if bos else []) + self.literal(seg.text)
            parts.append((seg, tokens))
            out += tokens
        return out, parts

    # -- prompts -------------------------------------------------------------------------------

    def encode(self, messages: Sequence[Message], think: bool, tools: Sequence[ToolSpec] = ()) -> Prompt:
        """The prompt for `messages` with `tools` offered: its text, its tokens (message text never
        special), the reply's start.

        A turn asks twice (the conversation's fit to the context, then the stream): the last
        encoding is kept, so the template is rendered and the prompt tokenized once per turn.
        """
        key = (think, tuple(tools), *(tuple(sorted(m.items())) for m in messages))
        last = self._last
        if last is not None and last[0] == key:
            return last[1]
        if messages and messages[-1]["role"] == "assistant":
            prompt = self._continuation(messages, think, tools)
            self._last = (key, prompt)
            return prompt
        shielded = shield(messages, self.control_strings, [t.for_template() for t in tools])
        offered = shielded.tools
        rendered = self.template.render(shielded.messages, think=think, tools=offered)
        tokens, parts = self._prompt_tokens(shielded, rendered)
        split = len(tokens) - 1
        if self.recurrent:  # (only a hybrid model's checkpoint needs the reply's start)
            tail = self._tails.get(think)
            if tail is not None and len(rendered) > len(tail) and rendered.endswith(tail):
                start = len(rendered) - len(tail)  # the same opening as before: no second rendering
            else:
                start = self.template.reply_start(shielded.messages, think=think, prompt=rendered, tools=offered)
                self._tails[think] = rendered[start:]
            head_tokens, _ = self._prompt_tokens(shielded, rendered[:start], parts)
            split = min(common_prefix_len(head_tokens, tokens), split)
        prompt = Prompt(shielded.text(rendered), tokens, split, self._system_end(messages, tokens, think, tools))
        self._last = (key, prompt)
        return prompt

    def _system_end(
        self, messages: Sequence[Message], tokens: list[int], think: bool, tools: Sequence[ToolSpec]
    ) -> int:
        """How many of `tokens` any chat under the same system prompt begins with; 0 without one.

        Found by rendering the system prompt with two different first messages: what the two share
        (up to where the message text goes) is the same in every chat that starts with it.
        """
        if len(messages) < 2 or messages[0]["role"] != "system":
            return 0
        entries = [t.for_template() for t in tools]
        key = (messages[0]["content"], think, json.dumps(entries, sort_keys=True))
        shared = self._systems.get(key)
        if shared is None:
            renderings = []
            for probe in _SYSTEM_PROBES:
                probe_msgs: list[Message] = [messages[0], {"role": "user", "content": probe}]
                shielded = shield(probe_msgs, self.control_strings, entries)
                try:
                    rendered = self.template.render(shielded.messages, think=think, tools=shielded.tools)
                except EdgeAssistError:
                    return 0  # (a template that wants more than this; the system prompt's state is not kept)
                renderings.append(self._prompt_tokens(shielded, rendered)[0])
            shared = renderings[0][: common_prefix_len(*renderings)]
            if len(self._systems) >= _SYSTEM_CACHE_MAX:
                self._systems.clear()
            self._systems[key] = shared
        n = common_prefix_len(shared, tokens)
        return n if n == len(shared) and n < len(tokens) else 0

    def _continuation(self, messages: Sequence[Message], think: bool, tools: Sequence[ToolSpec]) -> Prompt:
        """The prompt that goes on with the last message, the assistant's reply so far (one cut short).

        The reply is rendered as history renders it and cut where its text ends; its start is where
        the reply of the turn before began, so a hybrid model resumes from that turn's checkpoint
        when the context no longer holds the reply as generated (the history is not read again).
        """
        shielded = shield(messages, self.control_strings, [t.for_template() for t in tools])
        last = shielded.messages[-1]
        shielded.messages[-1] = {**last, "content": last["content"] + CUT}
        rendered = self.template.render(
            shielded.messages, think=think, add_generation_prompt=False, tools=shielded.tools
        )
        cut = rendered.find(CUT)
        if cut <= 0:
            raise EdgeAssistError("the model's chat template cannot continue a reply")
        text = rendered[:cut]
        tokens, _ = self._prompt_tokens(shielded, text)
        split = len(tokens) - 1
        if self.recurrent and len(messages) > 1:
            before = self.encode(messages[:-1], think, tools)
            split = min(common_prefix_len(before.tokens[: before.split], tokens), split)
        return Prompt(shielded.text(text), tokens, split)

    def reply_tail_depth(self, most: int) -> int:
        """Tokens a generation prompt adds after the reply's start (the most over both modes), else 0.

        The next turn's history renders the reply from that start (Qwen 3.5 drops the empty think
        block), so a hybrid model's state must be taken there. 0 for a template that adds more
        than `most` tokens or fails to render a sample chat.
        """
        sample: list[Message] = [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"},
        ]
        try:
            depth = max(len(p.tokens) - p.split for p in (self.encode(sample, t) for t in (False, True)))
        except EdgeAssistError:
            return 0
        finally:
            self._last = None
        return depth if depth <= most else 0

    def cut(self, messages: Sequence[Message], think: bool, tools: Sequence[ToolSpec] = ()) -> list[int]:
        """The tokens of the prompt for `messages` up to where the last message's text ends.

        The last message is still being written: only the tokens that no continuation could
        tokenize differently are kept, so they are a prefix of whatever the final prompt will be.
        """
        if not messages:
            return []
        shielded = shield(messages, self.control_strings, [t.for_template() for t in tools])
        last = shielded.messages[-1]
        shielded.messages[-1] = {**last, "content": last["content"] + CUT}
        rendered = self.template.render(shielded.messages, think=think, tools=shielded.tools)
        cut = rendered.find(CUT)
        if cut <= 0:
            return []
        text = rendered[:cut]
        tokens, parts = self._prompt_tokens(shielded, text)
        for tail in _CUT_PROBES:  # keep only tokens that stay the same whatever follows
            probe, _ = self._prompt_tokens(shielded, text + tail, parts)
            tokens = tokens[: common_prefix_len(tokens, probe)]
        return tokens
