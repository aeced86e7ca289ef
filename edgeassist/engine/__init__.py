"""Chat engines: the protocol, its events, and the llama.cpp implementation."""

from edgeassist.engine.base import (
    ChatEngine,
    Done,
    Event,
    GenerationOptions,
    Message,
    Notice,
    Stats,
    Text,
    Thinking,
)

__all__ = [
    "ChatEngine",
    "Done",
    "Event",
    "GenerationOptions",
    "Message",
    "Notice",
    "Stats",
    "Text",
    "Thinking",
]
