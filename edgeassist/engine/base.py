"""The engine protocol and the events every front end consumes."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Protocol, TypedDict, runtime_checkable


class FunctionCall(TypedDict):
    """A tool call's function: its name and arguments (parsed, as the template renders them)."""

    name: str
    arguments: dict[str, Any]


class ToolCallPart(TypedDict):
    """One tool call of an assistant message, in the shape chat templates (and OpenAI) take."""

    type: Literal["function"]
    function: FunctionCall


@dataclass(frozen=True)
class ImageRef:
    """A picture a message carries: a file kept with the chat, named by its content."""

    sha256: str
    """Hex sha256 of the file's bytes: the picture's identity (the same picture is read once)."""
    path: Path
    """The file (JPEG, PNG or WebP) the engine reads the pixels from."""


class _MessageBase(TypedDict):
    role: Literal["system", "user", "assistant", "tool"]
    content: str


class Message(_MessageBase, total=False):
    """One chat message as the chat template sees it.

    A `tool` message is a tool's result (text from outside: it is quoted, never markup). An
    assistant message may carry the `tool_calls` it made, and, inside a tool loop, the
    `reasoning_content` it thought before them.
    """

    tool_calls: list[ToolCallPart]
    reasoning_content: str
    images: tuple[ImageRef, ...]
    """Pictures shown with a user message (only where `Capabilities.images`), placed before its text."""


@dataclass(frozen=True)
class ToolSpec:
    """A tool as offered to the model: its name, what it does, and its arguments' JSON schema."""

    name: str
    description: str
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    """A JSON schema of type object: `properties`, and the `required` ones."""

    def for_template(self) -> dict[str, Any]:
        """The OpenAI-style entry chat templates render into their tools list."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": dict(self.parameters)},
        }


@dataclass(frozen=True)
class GenerationOptions:
    """Per-request options; `None` sampling values take the Qwen 3.5 model-card default for the mode."""

    think: bool = False
    """Ask the model to think first (`enable_thinking` in the template)."""
    max_tokens: int = 1024
    """Most tokens to generate, thinking included."""
    temperature: float | None = None
    """Sampling temperature."""
    top_p: float | None = None
    """Nucleus sampling threshold."""
    top_k: int | None = None
    """Top-k cut."""
    min_p: float | None = None
    """Min-p cut."""
    presence_penalty: float | None = None
    """Penalty for tokens already present."""
    repeat_penalty: float | None = None
    """Multiplicative repetition penalty."""
    seed: int | None = None
    """Sampling seed; None is random."""
    ignore_eos: bool = False
    """Never end at an end-of-generation token: always generate `max_tokens` (the bench's fixed-length runs)."""
    state_path: Path | None = None
    """Where the conversation's model state is kept between processes (the store names it); None keeps none."""
    tools: tuple[ToolSpec, ...] = ()
    """Tools offered to the model (only where `Capabilities.tools`); its calls come as `ToolCall` events."""
    tool_choice: Literal["auto", "required", "none"] = "auto"
    """auto: the model may call a tool; required: the reply must be a call; none: it may not (the limit is reached)."""
    tool_calls_left: int | None = None
    """Most calls one reply may make (the rest of the conversation's budget); None: no bound."""

    def sampling(self, family: str = "qwen3.5") -> dict[str, float]:
        """The effective sampling values: explicit ones, else the defaults of the model's family.

        Qwen 3.5 models follow their model card for the mode (thinking or not). Other models
        (the SmolLM2 starter, any GGUF the user brings) get conservative general defaults: Qwen's
        presence penalty of 1.5 derails a 135M model.
        """
        if family == "qwen3.5":
            defaults = {
                "temperature": 1.0 if self.think else 0.7,
                "top_p": 0.95 if self.think else 0.8,
                "top_k": 20,
                "min_p": 0.0,
                "presence_penalty": 1.5,
                "repeat_penalty": 1.0,
            }
        else:
            defaults = {
                "temperature": 0.2,
                "top_p": 0.9,
                "top_k": 40,
                "min_p": 0.05,
                "presence_penalty": 0.0,
                "repeat_penalty": 1.1,
            }
        return {
            "temperature": _pick(self.temperature, defaults["temperature"]),
            "top_p": _pick(self.top_p, defaults["top_p"]),
            "top_k": _pick(self.top_k, defaults["top_k"]),
            "min_p": _pick(self.min_p, defaults["min_p"]),
            "presence_penalty": _pick(self.presence_penalty, defaults["presence_penalty"]),
            "repeat_penalty": _pick(self.repeat_penalty, defaults["repeat_penalty"]),
        }


def _pick(value: float | None, default: float) -> float:
    return default if value is None else value


@dataclass
class Stats:
    """Timings and counts of one reply; times are seconds from the request's start (perf_counter)."""

    model: str = ""
    """Model name shown to people."""
    backend: str = "cpu"
    """Where llama.cpp ran: cpu, metal, cuda."""
    load_s: float = 0.0
    """Model load time (0 when it was already loaded)."""
    prompt_tokens: int = 0
    """Tokens in the whole rendered prompt."""
    reused_tokens: int = 0
    """Prompt tokens whose state came from the previous turn and were not evaluated again."""
    evaluated_tokens: int = 0
    """Prompt tokens actually evaluated for this request."""
    prompt_eval_s: float = 0.0
    """Time spent evaluating the prompt."""
    ttft_s: float | None = None
    """Time to the first generated token (thinking or text)."""
    token_times: list[float] = field(default_factory=list)
    """When each generated token was ready, seconds from the request's start."""
    generated_tokens: int = 0
    """Tokens generated."""
    finish_reason: Literal["stop", "length", "cancelled", "error"] = "stop"
    """Why generation ended."""
    n_ctx: int = 0
    """The context window."""
    context_used: int = 0
    """Tokens in the context when the reply ended."""
    trimmed_messages: int = 0
    """Old messages dropped to fit the context window."""
    grammar_tokens: int = 0
    """Tokens generated while a tool call's grammar held the reply (0 without tools)."""
    grammar_redraws: int = 0
    """Of those, tokens the grammar refused and that were drawn again through it (the slow path)."""
    images: int = 0
    """Pictures in the prompt."""
    image_tokens: int = 0
    """Prompt tokens the pictures take."""
    images_encoded: int = 0
    """Pictures the vision encoder read for this reply (one already read, in the history, is not read again)."""
    image_encode_s: float = 0.0
    """Time the vision encoder took for them (part of `prompt_eval_s`)."""
    server: dict[str, object] = field(default_factory=dict)
    """What a remote server reported about the reply, as it sent it: `usage`, and llama-server's `timings`."""

    def decode_ms_per_token(self) -> float | None:
        """The headline figure: milliseconds per generated token over the whole decode, stalls included.

        It is `1000 / tokens_per_s()`, so the two figures every front end shows never disagree, and
        a reply that stalled cannot look fast. (The bench keeps the median gap and percentiles.)
        """
        rate = self.tokens_per_s()
        return 1000.0 / rate if rate else None

    def tokens_per_s(self) -> float | None:
        """Decode rate over the whole reply after the first token."""
        if len(self.token_times) < 2:
            return None
        span = self.token_times[-1] - self.token_times[0]
        return (len(self.token_times) - 1) / span if span > 0 else None

    @classmethod
    def from_dict(cls, saved: Mapping[str, object]) -> Stats:
        """Stats back from `to_dict()` (as the history keeps them); derived and unknown keys are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in names})  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view, with the derived figures added."""
        d = dict(self.__dict__)
        d["decode_ms_per_token"] = self.decode_ms_per_token()
        d["tokens_per_s"] = self.tokens_per_s()
        return d


@dataclass(frozen=True)
class Thinking:
    """A piece of the model's thinking; never shown as the answer, never spoken."""

    text: str
    tokens: int = 1
    """Generated tokens this piece completes (a token that is part of a character, or a split tag, makes none)."""


@dataclass(frozen=True)
class Text:
    """A piece of the answer."""

    text: str
    tokens: int = 1
    """Generated tokens this piece completes (a token that is part of a character, or a split tag, makes none)."""


@dataclass(frozen=True)
class Notice:
    """A one-line message for the user from the pipeline (old turns trimmed, starter model in use)."""

    text: str


@dataclass(frozen=True)
class ToolCall:
    """The model called a tool (parsed from its reply; with a grammar, always well formed)."""

    name: str
    arguments: dict[str, Any]
    """The arguments, typed by the tool's schema (strings, numbers, booleans, lists, objects)."""

    def part(self) -> ToolCallPart:
        """The call as an assistant message's `tool_calls` entry."""
        return {"type": "function", "function": {"name": self.name, "arguments": dict(self.arguments)}}


@dataclass(frozen=True)
class Done:
    """The reply has ended (finished, hit the limit, or was cancelled)."""

    stats: Stats


Event = Thinking | Text | Notice | ToolCall | Done


@dataclass(frozen=True)
class Capabilities:
    """What an engine can do. Front ends read this instead of probing the engine."""

    thinking: bool = False
    """The model's template can switch thinking on and off (`GenerationOptions.think`)."""
    tools: bool = False
    """Tools can be offered to the model (`GenerationOptions.tools`) and its calls come as `ToolCall` events."""
    images: bool = False
    """Messages may carry images."""
    local: bool = True
    """The model runs in this process; False for a server elsewhere."""


@runtime_checkable
class ChatEngine(Protocol):
    """Everything a front end may ask of an engine: the TUI, `ask`, voice and the bench use only this.

    Any thread may call any method; how an engine schedules its own work (a local one runs all
    model compute on one thread of its own) is its business. One reply at a time: a second
    `stream()` waits for the first to end.
    """

    name: str
    """Model name shown to people."""

    @property
    def backend(self) -> str:
        """Where the model runs: cpu, metal, cuda, or remote; before `load()`, where it will."""
        ...

    @property
    def n_ctx(self) -> int:
        """The context window in tokens (final once loaded)."""
        ...

    @property
    def loaded(self) -> bool:
        """Whether `load()` has finished and the model is ready."""
        ...

    @property
    def capabilities(self) -> Capabilities:
        """What the engine can do; final once loaded."""
        ...

    def load(self) -> float:
        """Get the model ready (once); return the seconds it took, 0 when it already was."""
        ...

    def close(self) -> None:
        """Release the model; a later call loads it again."""
        ...

    def stream(
        self,
        messages: Sequence[Message],
        options: GenerationOptions,
        cancel: threading.Event | None = None,
    ) -> Iterator[Event]:
        """Yield Thinking/Text events, then exactly one Done; stop within one token of `cancel`.

        When the last message is the assistant's (a reply the token limit cut), the reply goes on
        from its end instead of starting anew. Closing the iterator early cancels the reply and
        returns once the engine is free again.
        """
        ...

    def count_tokens(self, messages: Sequence[Message], options: GenerationOptions) -> int:
        """Tokens the rendered prompt for `messages` takes."""
        ...

    def prefill(
        self,
        messages: Sequence[Message],
        think: bool,
        cancel: threading.Event | None = None,
        *,
        state_path: Path | None = None,
        tools: Sequence[ToolSpec] = (),
        complete: bool = False,
    ) -> int:
        """Start on a coming prompt while its last message is still being written; return tokens evaluated.

        Speculative: the next `stream()` reuses the work when its prompt begins the same way, and
        nothing is lost when it does not. `state_path` is the conversation's kept state and
        `tools` the tools the reply will offer (as in `GenerationOptions`). With `complete`, the
        last message is guessed finished and the whole prompt of a reply to it is read, so such a
        reply starts at its first token. Engines that cannot start early return 0.
        """
        ...

    def draft(
        self,
        messages: Sequence[Message],
        options: GenerationOptions,
        cancel: threading.Event | None = None,
        *,
        tokens: int = 16,
    ) -> int:
        """Begin the reply to `messages` (whose last is a guess) ahead of time, up to `tokens` tokens; return
        how many were written.

        Speculative, like `prefill`: the next `stream()` of exactly these messages and options
        goes on from the reply begun (its first events come at once); anything else drops it.
        `cancel` stops the drafting. Engines that cannot begin early return 0.
        """
        ...

    def held(self) -> AbstractContextManager[None]:
        """While this block runs, a reply in progress computes no further tokens.

        Voice lends the cores to the first sentence's synthesis this way; an engine whose model
        runs elsewhere has nothing to lend and runs on.
        """
        ...

    def stepwise(self) -> AbstractContextManager[None]:
        """While this block runs, a reply in progress computes its next token only once its reader asks.

        Voice reads a reply's first tokens this way, so that a `held()` at the end of its first
        chunk finds no token in flight; an engine whose model runs elsewhere runs on.
        """
        ...
