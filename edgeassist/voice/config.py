"""How the voice pipeline behaves: `VoiceConfig`, built from the `[speech]` settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

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
    settle_s: float = 0.1
    """A silence this long after speech starts a pass over the words not yet committed, and the reply's
    prompt is read from it while the key is still held (0: wait for the key or `pause_s`)."""
    draft_tokens: int = 16
    """With `prefill`, the reply to the words a `settle_s` pass heard is begun while the key is still held (or
    the hands-free turn not yet over), up to this many tokens; the reply takes it over when those were the
    words (0: only read its prompt)."""
    eager_first_clause: bool = True
    """Let the first spoken chunk end at a clause (`,` `;` `:`) or before a phrase ("in", "and"...) so the
    first audio comes sooner (`speech.text.SentenceSplitter`)."""
    first_chunk_max_words: int = 10
    """With `eager_first_clause`, the first chunk ends after this many words whatever comes (0: no limit)."""
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

    end_of_turn_s: float = 0.7
    """Hands-free: a silence this long after speech ends the turn."""
    vad_threshold: float = 0.5
    """Hands-free: Silero probability from which a frame is speech."""
    min_speech_s: float = 0.2
    """Hands-free: speech needed before a turn begins."""
    speech_floor_db: float = -60.0
    """Hands-free: frames quieter than this (dBFS) are never speech."""
    echo_tail_s: float = 0.4
    """Hands-free: the microphone stays deaf this long after a reply has played."""
    barge_in: Literal["off", "headset"] = "off"
    """Hands-free: speech louder than the echo interrupts a reply (headset), or the mic is deaf while it plays (off)."""
    barge_in_margin_db: float = 10.0
    """Hands-free barge-in: how much louder than the expected echo speech must be."""

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> VoiceConfig:
        """The config the `[speech]` settings describe, with keyword overrides."""
        s = settings.speech
        values: dict[str, Any] = {
            "speak": s.speak_replies,
            "partial_interval_s": s.partial_interval_s,
            "pause_s": s.pause_s,
            "settle_s": s.settle_s,
            "draft_tokens": s.draft_tokens,
            "eager_first_clause": s.eager_first_clause,
            "first_chunk_max_words": s.first_chunk_max_words,
            "prefill": s.prefill,
            "end_silence_s": s.end_silence_s,
            "end_of_turn_s": s.end_of_turn_s,
            "vad_threshold": s.vad_threshold,
            "min_speech_s": s.min_speech_s,
            "speech_floor_db": s.speech_floor_db,
            "echo_tail_s": s.echo_tail_s,
            "barge_in": s.barge_in,
            "barge_in_margin_db": s.barge_in_margin_db,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
