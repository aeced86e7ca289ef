"""The hook through which `edgeassist bench --voice` times the speech stages.

The voice pipeline provides `bench_stages(settings, target) -> dict[str, list[float]]` in the
module `edgeassist.voice`: stage name to one figure per turn, stages in pipeline order (the
seconds and real-time factors of its `VoiceTurnTimings`: `stt_final_s`, `stt_rtf`,
`llm_first_token_s`, ..., `speech_end_to_first_audio_s`). It runs `settings.bench.repetitions`
turns of recorded speech through the same objects voice mode uses (`simulate_turn`), with the
model and thread count in `target`. The bench only calls it, summarises and reports the stages;
it never imports the speech libraries itself.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgeassist.bench.results import VoiceResult, VoiceStage
from edgeassist.bench.stats import Spread
from edgeassist.config import Settings
from edgeassist.errors import AudioUnavailableError, EdgeAssistError


@dataclass(frozen=True)
class VoiceTarget:
    """The model the voice turns run on: the bench's first model at its first thread count."""

    name: str
    """The model's name in the report."""
    path: Path
    """Its GGUF file."""
    threads: int
    """Decode threads."""
    random_text: bool = False
    """A random-weight model (synthetic): its first spoken chunk is cut at a fixed token count."""


VoiceStages = dict[str, list[float]]
"""Stage name to seconds (or a ratio, for names ending in `_rtf`) per turn."""
VoiceHook = Callable[[Settings, VoiceTarget], VoiceStages]
"""What the voice pipeline provides: settings and the model in, stage timings out."""
HOOK_MODULE = "edgeassist.voice"
"""Module that provides the hook."""
HOOK_FUNCTION = "bench_stages"
"""Name of the hook function in that module."""
TARGET_S = 1.0
"""The voice target: first reply audio within this many seconds of the end of speech (median)."""
HEADLINE = "speech_end_to_first_audio_s"
"""The stage the voice target is about."""


def find_voice_hook() -> VoiceHook | None:
    """The voice pipeline's `bench_stages`, or None when this build has no voice pipeline or no hook in it.

    Raises `AudioUnavailableError` when the voice pipeline is there but its speech libraries are not.
    """
    try:
        if importlib.util.find_spec(HOOK_MODULE) is None:
            return None
    except ModuleNotFoundError:
        return None
    try:
        module = importlib.import_module(HOOK_MODULE)
    except ImportError as e:
        raise AudioUnavailableError(f"voice timings need the speech extra ({e}): pip install -e '.[speech]'") from None
    hook = getattr(module, HOOK_FUNCTION, None)
    return hook if callable(hook) else None


def run_voice_hook(hook: VoiceHook, settings: Settings, target: VoiceTarget) -> VoiceResult:
    """Call the hook and summarise its stages; an error in it is recorded, not raised."""
    result = VoiceResult(stages=[], model=target.name, threads=target.threads, target_s=TARGET_S)
    try:
        stages = hook(settings, target)
    except EdgeAssistError as e:
        result.error = str(e)
        return result
    except Exception as e:  # noqa: BLE001 - a broken speech setup must not lose the LLM figures
        result.error = f"{type(e).__name__}: {e}"
        return result
    for name, samples in stages.items():
        clean = [float(s) for s in samples if isinstance(s, int | float) and math.isfinite(s)]
        result.stages.append(VoiceStage(name=str(name), samples_s=clean, summary=Spread.of(clean)))
    return result
