"""Render chat messages with the Jinja chat template embedded in the GGUF."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from edgeassist.engine.base import Message
from edgeassist.engine.prompt import common_prefix_len
from edgeassist.errors import ModelLoadError

# Used only when a GGUF carries no template at all (ChatML, the most common one).
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


RENDER_STEPS = 2_000_000
"""Attribute reads, calls and operators one render may take: a long chat needs thousands."""
RENDER_SECONDS = 5.0
"""Wall-clock backstop for one render (a loop inside a loop can run long between two steps)."""
RENDER_CHARS = 8_000_000
"""Longest string (and prompt) a render may build: far beyond any context window."""


class _TooLong(Exception):
    """A render went over its budget."""


class _BudgetedSandbox(ImmutableSandboxedEnvironment):
    """The sandbox, plus a budget: a template that loops forever, or builds a huge string, stops.

    Every attribute read, call and `+`/`*`/`**` goes through a hook here, and any loop that runs
    long does at least one of them per pass (`range()` is a call), so counting them bounds a render
    without a trace function's cost.
    """

    intercepted_binops = frozenset(["+", "*", "**"])

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._budget = threading.local()

    def start(self) -> None:
        self._budget.steps = 0
        self._budget.deadline = time.monotonic() + RENDER_SECONDS

    def _step(self, value: Any = None) -> Any:
        b = self._budget
        b.steps = getattr(b, "steps", 0) + 1
        if b.steps > RENDER_STEPS or time.monotonic() > getattr(b, "deadline", 0.0):
            raise _TooLong("it ran too long (a loop that does not end?)")
        if isinstance(value, str | list | tuple | dict) and len(value) > RENDER_CHARS:
            raise _TooLong("it built a value too large for any prompt")
        return value

    def getattr(self, obj: Any, attribute: str) -> Any:
        return self._step(super().getattr(obj, attribute))

    def getitem(self, obj: Any, argument: Any) -> Any:
        return self._step(super().getitem(obj, argument))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - jinja's signature
        __self._step()
        return __self._step(super().call(__context, __obj, *args, **kwargs))

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        self._step()
        if operator == "**" and isinstance(right, int) and abs(right) > 64:
            raise _TooLong("it raised a number to a huge power")
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(n, int) and len(seq) * n > RENDER_CHARS:
                    raise _TooLong("it built a value too large for any prompt")
        return self._step(super().call_binop(context, operator, left, right))


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
        env = _BudgetedSandbox(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
        self._env = env
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        try:
            self._template = env.from_string(self.source)
        except jinja2.TemplateError as e:
            raise ModelLoadError(f"the model's chat template does not compile: {e}") from None
        self.supports_thinking = "enable_thinking" in self.source
        # A template that renders a tools list and reads calls back from the history (Qwen 3.5's does).
        self.supports_tools = "tools" in self.source and "tool_calls" in self.source

    def render(
        self,
        messages: Sequence[Message],
        *,
        think: bool = False,
        add_generation_prompt: bool = True,
        tools: Sequence[dict[str, Any]] = (),
    ) -> str:
        """The prompt text for `messages`, with the assistant's turn opened when asked, and `tools` offered.

        The template runs in Jinja's sandbox with a budget (`RENDER_STEPS`, `RENDER_SECONDS`,
        `RENDER_CHARS`); a template that breaks out of either fails with one ModelLoadError line.
        """
        self._env.start()
        out: list[str] = []
        size = 0
        extra: dict[str, Any] = {"tools": [dict(t) for t in tools]} if tools else {}
        try:
            for piece in self._template.generate(
                messages=[dict(m) for m in messages],
                add_generation_prompt=add_generation_prompt,
                enable_thinking=think,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                **extra,
            ):
                size += len(piece)
                if size > RENDER_CHARS:
                    raise _TooLong("its output grew too large for any prompt")
                self._env._step()
                out.append(piece)
        except SecurityError as e:
            raise ModelLoadError(f"the model's chat template tried something the sandbox forbids ({e})") from None
        except _TooLong as e:
            raise ModelLoadError(f"the model's chat template was stopped: {e}") from None
        except RecursionError:
            raise ModelLoadError("the model's chat template was stopped: it recursed without end") from None
        except jinja2.TemplateError as e:
            raise ModelLoadError(f"the model's chat template failed: {e}") from None
        except (TypeError, ValueError, AttributeError, KeyError, IndexError, ZeroDivisionError, OverflowError) as e:
            raise ModelLoadError(f"the model's chat template failed: {type(e).__name__}: {e}") from None
        return "".join(out)

    def reply_start(
        self,
        messages: Sequence[Message],
        *,
        think: bool = False,
        prompt: str | None = None,
        tools: Sequence[dict[str, Any]] = (),
    ) -> int:
        """Length of the prompt text shared with the history rendering of this turn's reply.

        The generation prompt may open the reply differently from how a finished reply is
        rendered later (Qwen 3.5 adds `<think>` now and drops it from history). The state at
        this point is what the next turn can resume from.
        """
        if prompt is None:
            prompt = self.render(messages, think=think, tools=tools)
        # Render the reply as it will look in the *next* prompt, i.e. followed by a user message:
        # Qwen 3.5 keeps an empty think block on a reply that ends the history, and drops it otherwise.
        reply: Message = {"role": "assistant", "content": "\x00"}
        follow: Message = {"role": "user", "content": "\x00"}
        history = self.render([*messages, reply, follow], think=think, add_generation_prompt=False, tools=tools)
        return common_prefix_len(prompt, history)
