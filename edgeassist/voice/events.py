"""What a voice turn tells its front end: the events `VoicePipeline.respond()` yields and the turn's timings."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

from edgeassist.engine.base import Done, Notice, Stats, Text, Thinking


@dataclass(frozen=True)
class Heard:
    """What the user said: `final` once the recording has ended and been fully transcribed."""

    text: str
    """The transcript (empty when nothing was heard)."""
    final: bool = True
    """False for a partial transcript shown while recording."""


@dataclass(frozen=True)
class Speaking:
    """A sentence of the reply has started to play."""

    text: str
    """The sentence, as spoken (prose, not Markdown)."""
    index: int
    """0 for the reply's first sentence."""


@dataclass
class VoiceTurnTimings:
    """Where the time of one voice turn went; seconds, None where a stage did not happen."""

    record_s: float = 0.0
    """Audio recorded (the whole press of the key)."""
    release_lag_s: float | None = None
    """From the end of speech to the key's release (how long the key was held after the last word)."""
    stt_passes: int = 0
    """Whisper passes run while the key was held."""
    stt_busy_s: float = 0.0
    """All the time spent in whisper for this turn, the passes while recording included."""
    stt_rtf: float | None = None
    """Real-time factor of speech to text: `stt_busy_s / record_s`."""
    stt_tail_audio_s: float = 0.0
    """Audio left to decode at release (0 when the speaker paused before releasing)."""
    stt_final_s: float = 0.0
    """From release to the final transcript."""
    stt_window_s: float = 0.0
    """Whisper's encoder window for the final pass (30 is whisper's own)."""
    prefill_tokens: int = 0
    """Prompt tokens evaluated while the user was still speaking."""
    prompt_tokens: int = 0
    """Tokens in the reply's prompt."""
    evaluated_tokens: int = 0
    """Prompt tokens evaluated after release."""
    llm_first_token_s: float | None = None
    """From the final transcript to the first answer token."""
    llm_first_sentence_s: float | None = None
    """From the final transcript to the first complete sentence (or clause) of the answer."""
    tts_first_s: float | None = None
    """Synthesis time of the first spoken chunk."""
    tts_rtf: float | None = None
    """Real-time factor of text to speech: synthesis time / audio produced."""
    first_audio_s: float | None = None
    """From release to the first reply sample handed to the speaker."""
    speech_end_to_first_audio_s: float | None = None
    """From the end of the user's speech to the first reply sample handed to the speaker."""
    reply_audio_s: float = 0.0
    """Seconds of reply audio played."""
    total_s: float = 0.0
    """From release to the end of the turn."""
    stats: Stats | None = None
    """The engine's figures for the reply."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (the engine stats nested)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "stats"}
        d["stats"] = self.stats.to_dict() if self.stats is not None else None
        return d


TurnStatus = Literal["complete", "cancelled", "empty"]


@dataclass(frozen=True)
class TurnDone:
    """The turn is over (replied, interrupted, or nothing was heard); always the last event."""

    transcript: str
    """What the user said."""
    reply: str
    """The answer's text (without thinking)."""
    status: TurnStatus
    """complete, cancelled (barge-in, Esc), or empty (nothing heard)."""
    timings: VoiceTurnTimings
    """Where the time went."""


VoiceEvent = Heard | Thinking | Text | Notice | Speaking | Done | TurnDone


@dataclass
class VoiceTurnResult:
    """A whole turn, collected (`run_turn`, `simulate_turn`)."""

    transcript: str
    """What the user said."""
    reply: str
    """The answer's text."""
    spoken: list[str]
    """The sentences spoken, in order."""
    status: TurnStatus
    """How the turn ended."""
    timings: VoiceTurnTimings
    """Where the time went."""
    events: list[VoiceEvent] = field(default_factory=list)
    """Every event, in order."""
