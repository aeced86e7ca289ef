"""Render chat messages with the Jinja chat template embedded in the GGUF."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from edgeassist.engine.base import Message
from edgeassist.errors import ModelLoadError

# Used only when a GGUF carries no template at all (ChatML, the most common one).
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _raise(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None, **kw: Any) -> str:
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, sort_keys=kw.get("sort_keys", False))


class ChatTemplate:
    """A compiled chat template; `render` gives the prompt text for a list of messages."""

    def __init__(self, source: str | None, bos_token: str = "", eos_token: str = "") -> None:
        """Compile `source` (the GGUF's `tokenizer.chat_template`), or ChatML when there is none."""
        self.source = source or CHATML
        self.bos_token = bos_token
        self.eos_token = eos_token
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        try:
            self._template = env.from_string(self.source)
        except jinja2.TemplateError as e:
            raise ModelLoadError(f"the model's chat template does not compile: {e}") from None
        self.supports_thinking = "enable_thinking" in self.source

    def render(self, messages: Sequence[Message], *, think: bool = False, add_generation_prompt: bool = True) -> str:
        """The prompt text for `messages`, with the assistant's turn opened when asked."""
        return self._template.render(
            messages=[dict(m) for m in messages],
            add_generation_prompt=add_generation_prompt,
            enable_thinking=think,
            bos_token=self.bos_token,
            eos_token=self.eos_token,
        )

    def reply_start(self, messages: Sequence[Message], *, think: bool = False) -> int:
        """Length of the prompt text shared with the history rendering of this turn's reply.

        The generation prompt may open the reply differently from how a finished reply is
        rendered later (Qwen 3.5 adds `<think>` now and drops it from history). The state at
        this point is what the next turn can resume from.
        """
        prompt = self.render(messages, think=think)
        # Render the reply as it will look in the *next* prompt, i.e. followed by a user message:
        # Qwen 3.5 keeps an empty think block on a reply that ends the history, and drops it otherwise.
        reply: Message = {"role": "assistant", "content": "\x00"}
        follow: Message = {"role": "user", "content": "\x00"}
        history = self.render([*messages, reply, follow], think=think, add_generation_prompt=False)
        n = 0
        for a, b in zip(prompt, history, strict=False):
            if a != b:
                break
            n += 1
        return n
