"""The push-to-talk voice turn (see `edgeassist.voice.pipeline`)."""

from edgeassist.voice.config import VoiceConfig
from edgeassist.voice.events import Heard, Speaking, TurnDone, TurnStatus, VoiceEvent, VoiceTurnResult, VoiceTurnTimings
from edgeassist.voice.pipeline import (
    BENCH_QUESTIONS,
    BENCH_STAGES,
    RANDOM_TEXT_FIRST_CHUNK_TOKENS,
    STAND_IN_SENTENCE,
    StandInSynthesizer,
    VoicePipeline,
    bench_stages,
    build_pipeline,
    simulate_turn,
    simulation_pipeline,
)
from edgeassist.voice.prefill import prefill_prompt

__all__ = [
    "BENCH_QUESTIONS",
    "BENCH_STAGES",
    "RANDOM_TEXT_FIRST_CHUNK_TOKENS",
    "STAND_IN_SENTENCE",
    "Heard",
    "Speaking",
    "StandInSynthesizer",
    "TurnDone",
    "TurnStatus",
    "VoiceConfig",
    "VoiceEvent",
    "VoicePipeline",
    "VoiceTurnResult",
    "VoiceTurnTimings",
    "bench_stages",
    "build_pipeline",
    "prefill_prompt",
    "simulate_turn",
    "simulation_pipeline",
]
