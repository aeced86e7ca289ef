"""The voice turn, push-to-talk or hands-free, written once for every front end (no Textual, no CLI here).

    pipeline    VoicePipeline: the controls (key down, key up, Esc) and the turn's event stream
    handsfree   HandsFree: turns begun and ended by voice activity, one state machine (HandsFreeState)
    vad         Silero VAD frame by frame, the endpointing rules, and the echo gate for barge-in
    events      what a turn yields (Heard, Speaking, TurnDone) and where its time went
    config      VoiceConfig, from the `[speech]` settings
    recording   one press of the key: capture, level, incremental transcription
    prefill     the prompt evaluated while the user speaks; TurnScheduler orders a turn's model work
    spoken      one reply, cut into sentences, synthesized and played as it is generated

The speech parts come from `edgeassist.speech` (`speech.build` makes them from the settings); the
bench's voice timings live in `edgeassist.bench.voice`, which uses this package, never the reverse.
"""

from edgeassist.voice.config import VoiceConfig
from edgeassist.voice.events import Heard, Speaking, TurnDone, TurnStatus, VoiceEvent, VoiceTurnResult, VoiceTurnTimings
from edgeassist.voice.handsfree import HandsFree, HandsFreeEvent, HandsFreeState, StateChanged
from edgeassist.voice.pipeline import (
    VoicePipeline,
    build_pipeline,
    simulate_turn,
)
from edgeassist.voice.prefill import prefill_prompt

__all__ = [
    "HandsFree",
    "HandsFreeEvent",
    "HandsFreeState",
    "Heard",
    "Speaking",
    "StateChanged",
    "TurnDone",
    "TurnStatus",
    "VoiceConfig",
    "VoiceEvent",
    "VoicePipeline",
    "VoiceTurnResult",
    "VoiceTurnTimings",
    "build_pipeline",
    "prefill_prompt",
    "simulate_turn",
]
