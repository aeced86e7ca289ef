"""How the voice pipeline behaves: `VoiceConfig`, built from the `[speech]` settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgeassist.config import Settings


@dataclass(frozen=True)
class VoiceConfig:
    """How the voice pipeline behaves (built from `[speech]` settings by `from_settings`)."""

    speak: bool = True
    """Speak the reply (False: transcribe and answer in text only)."""
    partial_interval_s: float = 1.0
    """While recording, show a partial transcript every this many seconds of speech; 0: only at pauses."""
    pause_s: float = 0.3
    """A silence this long while recording commits the words before it."""
    eager_first_clause: bool = True
    """Let the first spoken chunk end at a clause (`,` `;` `:`) so the first audio comes sooner."""
    prefill: bool = True
    """Evaluate the conversation's prompt in the model while the user is still speaking."""
    end_silence_s: float | None = None
    """Stop recording by itself after this much silence following speech (None: only the key stops it)."""
    max_record_s: float = 120.0
    """Stop recording by itself after this many seconds."""
    first_chunk_tokens: int | None = None
    """Speak the first chunk after this many answer tokens even if no sentence has ended (None: wait
    for one). For models whose text is random (the bench's synthetic Qwen 3.5), where it stands in
    for a first sentence."""

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> VoiceConfig:
        """The config the `[speech]` settings describe, with keyword overrides."""
        s = settings.speech
        values: dict[str, Any] = {
            "speak": s.speak_replies,
            "partial_interval_s": s.partial_interval_s,
            "pause_s": s.pause_s,
            "eager_first_clause": s.eager_first_clause,
            "prefill": s.prefill,
            "end_silence_s": s.end_silence_s,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
