"""The hook through which `edgeassist bench --voice` times the speech stages.

The voice pipeline provides `bench_stages(settings) -> dict[str, list[float]]` in the module
`edgeassist.voice`: stage name to seconds, one sample per turn, stages in pipeline order (for
example `stt_final_s`, `llm_first_token_s`, `llm_first_sentence_s`, `tts_first_s`,
`first_audio_s`, `speech_end_to_first_audio_s`, the seconds fields of its `VoiceTurnTimings`).
It runs `settings.bench.repetitions` turns from recorded speech through the same objects voice
mode uses (`simulate_turn`). The bench only calls it, summarises and reports the stages; it
never imports the speech libraries itself.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
from collections.abc import Callable

from edgeassist.bench.results import VoiceResult, VoiceStage
from edgeassist.bench.stats import Spread
from edgeassist.config import Settings
from edgeassist.errors import AudioUnavailableError, EdgeAssistError

VoiceStages = dict[str, list[float]]
"""Stage name to seconds per repetition."""
VoiceHook = Callable[[Settings], VoiceStages]
"""What the voice pipeline provides: settings in, stage timings out."""
HOOK_MODULE = "edgeassist.voice"
"""Module that provides the hook."""
HOOK_FUNCTION = "bench_stages"
"""Name of the hook function in that module."""


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


def run_voice_hook(hook: VoiceHook, settings: Settings) -> VoiceResult:
    """Call the hook and summarise its stages; an error in it is recorded, not raised."""
    try:
        stages = hook(settings)
    except EdgeAssistError as e:
        return VoiceResult(stages=[], error=str(e))
    except Exception as e:  # noqa: BLE001 - a broken speech setup must not lose the LLM figures
        return VoiceResult(stages=[], error=f"{type(e).__name__}: {e}")
    out = []
    for name, samples in stages.items():
        clean = [float(s) for s in samples if isinstance(s, int | float) and math.isfinite(s)]
        out.append(VoiceStage(name=str(name), samples_s=clean, summary=Spread.of(clean)))
    return VoiceResult(stages=out)
