"""`edgeassist bench --voice`: the speech stages timed through the voice pipeline itself.

`bench_stages(settings, target)` runs `settings.bench.repetitions` turns of recorded speech through
the same objects voice mode uses (`edgeassist.voice.simulate_turn`), with the model and thread
count in `target`, and returns stage name to one figure per turn, stages in pipeline order (the
seconds and real-time factors of `VoiceTurnTimings`: `stt_final_s`, `stt_rtf`,
`llm_first_token_s`, ..., `speech_end_to_first_audio_s`). The bench summarises and reports them
(`run_voice_hook`); the speech libraries load only when a turn needs them.

`bench_hands_free(settings, target)` times the same pipeline hands-free (`voice.handsfree`): turns
that the VAD ends after `speech.end_of_turn_s` of silence, so its end of speech to first audio
includes that wait (`HANDS_FREE_STAGES`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeassist.bench.results import VoiceResult, VoiceStage
from edgeassist.bench.stats import Spread
from edgeassist.chat import Conversation
from edgeassist.config import Settings
from edgeassist.engine.base import GenerationOptions
from edgeassist.engine.factory import generation_options, open_local_engine
from edgeassist.engine.llama import LlamaEngine
from edgeassist.errors import EdgeAssistError
from edgeassist.speech import require_speech
from edgeassist.speech.audio import NullOut
from edgeassist.speech.build import speech_models
from edgeassist.speech.samples import WHISPER_RATE, resample
from edgeassist.speech.tts import SpeechChunk, Synthesizer
from edgeassist.voice import VoiceConfig, VoicePipeline, simulate_turn
from edgeassist.voice.handsfree import HandsFreeState, StateChanged, simulate_conversation
from edgeassist.voice.spoken import first_chunk_splitter


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
"""What times the voice turns: settings and the model in, stage timings out (`bench_stages`; a fake in tests)."""
TARGET_S = 1.0
"""The voice target: first reply audio within this many seconds of the end of speech (median)."""
HEADLINE = "speech_end_to_first_audio_s"
"""The stage the voice target is about."""
BENCH_QUESTIONS = (
    "How do I list all the files in a folder, including the hidden ones?",
    "What is the difference between a process and a thread?",
    "Can you suggest a quick dinner I could cook with rice and eggs?",
    "Why is the sky blue during the day and red at sunset?",
    "What should I pack for a weekend hiking trip in the mountains?",
)
"""Spoken questions of about three seconds each, read by the configured voice."""
BENCH_STAGES = (
    "stt_final_s",
    "stt_rtf",
    "llm_first_token_s",
    "llm_first_sentence_s",
    "tts_first_s",
    "tts_rtf",
    "first_audio_s",
    "speech_end_to_first_audio_s",
)
"""The `VoiceTurnTimings` fields `bench_stages` reports, in pipeline order."""
HANDS_FREE_STAGES = ("hands_free_end_of_turn_s", "hands_free_speech_end_to_first_audio_s")
"""What `bench_hands_free` reports: the end-of-turn wait, and end of speech to the first reply audio."""
HANDS_FREE_HEADLINE = "hands_free_speech_end_to_first_audio_s"
"""The hands-free figure to show beside push-to-talk's `HEADLINE`."""
Spoken = tuple[np.ndarray, int]
"""Speech samples and their rate."""
RANDOM_TEXT_FIRST_CHUNK_TOKENS = 8
"""With a random-weight model, the first spoken chunk is cut at this many tokens: the median first chunk
of real replies under the voice pipeline's rules (`scripts/first_chunk.py`: 7.5 tokens over 20 spoken
questions on the starter model, where a first clause alone took 11)."""
STAND_IN_SENTENCE = "To list every file in a folder, use this command."
"""What is spoken for a random-weight model's reply: an answer's first sentence of the usual length."""


class StandInSynthesizer:
    """Speaks `STAND_IN_SENTENCE` for the chunks it is given: its first chunk first, as the voice
    pipeline would cut it (`first_chunk_splitter`), then the whole sentence for each later one.

    A random-weight model's text is noise (long runs of rare tokens, other scripts), which piper
    would take far longer to speak than an answer's words; the bench times the model on that text
    and piper on an ordinary sentence in its place. Call `new_reply()` before each reply.
    """

    def __init__(self, inner: Synthesizer, config: VoiceConfig, sentence: str = STAND_IN_SENTENCE) -> None:
        """Wrap the real synthesizer; `config` says how a reply's first chunk is cut."""
        self.inner = inner
        self.sentence = sentence
        splitter = first_chunk_splitter(config)
        chunks = [c for word in sentence.split(" ") for c in splitter.feed(word + " ")] + splitter.flush()
        self.first_chunk = chunks[0]
        """What is spoken for a reply's first chunk."""
        self._first = True

    @property
    def sample_rate(self) -> int:
        """The wrapped voice's rate."""
        return self.inner.sample_rate

    def new_reply(self) -> None:
        """The next chunk is a reply's first."""
        self._first = True

    def synthesize(self, text: str) -> Iterator[SpeechChunk]:
        """The stand-in's first chunk or whole sentence, spoken by the wrapped voice."""
        spoken, self._first = (self.first_chunk if self._first else self.sentence), False
        return self.inner.synthesize(spoken)


def simulation_pipeline(
    settings: Settings,
    conversation: Conversation,
    *,
    options: GenerationOptions | None = None,
    config: VoiceConfig | None = None,
    window_s: float | None = None,
) -> VoicePipeline:
    """The pipeline without sound devices, for the bench and `scripts/voice_latency.py`: whisper and
    piper from the settings, replies played to a paced null speaker; feed it turns with `simulate_turn`."""
    require_speech("faster_whisper", "piper")
    transcriber, synthesizer, notes = speech_models(settings, window_s=window_s)
    return VoicePipeline(
        conversation, transcriber, synthesizer, None, NullOut(), options=options, config=config, notes=notes
    )


def open_target(settings: Settings, target: VoiceTarget) -> LlamaEngine:
    """The engine for `target`, opened as the front ends open it (no starter in its place, the user's kept
    states left alone), named as the report names it."""
    model = settings.model.model_copy(
        update={"name": str(target.path), "n_threads": target.threads, "starter_fallback": False}
    )
    engine = open_local_engine(settings.model_copy(update={"model": model}), explicit=True, keep_states=False)
    engine.name = target.name
    return engine


def speak_questions(synthesizer: Synthesizer) -> list[Spoken]:
    """`BENCH_QUESTIONS` spoken by `synthesizer`: samples and rate for each."""
    spoken = []
    for question in BENCH_QUESTIONS:
        chunks = list(synthesizer.synthesize(question))
        spoken.append((np.concatenate([c.samples for c in chunks]), chunks[0].sample_rate))
    return spoken


@contextmanager
def _bench_pipeline(settings: Settings, target: VoiceTarget) -> Iterator[tuple[VoicePipeline, list[Spoken]]]:
    """The voice pipeline the bench times on `target`, warmed up, and `BENCH_QUESTIONS` spoken by its voice.

    The engine is opened as the front ends open it; replies are greedy and short (the first audio
    does not depend on how long the reply goes on). With a random-weight model (`target.random_text`)
    the first chunk is cut at a fixed token count and piper speaks an ordinary sentence in place of
    each chunk (`StandInSynthesizer`).
    """
    engine = open_target(settings, target)
    # Greedy, and short: the first audio does not depend on how long the reply goes on.
    options = generation_options(settings, temperature=0.0, max_tokens=48)
    first_chunk = RANDOM_TEXT_FIRST_CHUNK_TOKENS if target.random_text else None
    config = VoiceConfig.from_settings(settings, speak=True, first_chunk_tokens=first_chunk)
    convo = Conversation(engine, system_prompt=settings.generation.system_prompt, options=options)
    pipeline = simulation_pipeline(settings, convo, options=options, config=config)
    tts = pipeline.synthesizer
    assert tts is not None
    if target.random_text:
        pipeline.synthesizer = StandInSynthesizer(tts, config)
    try:
        pipeline.warm_up()
        yield pipeline, speak_questions(tts)
    finally:
        pipeline.close()
        engine.close()


def bench_stages(settings: Settings, target: VoiceTarget) -> VoiceStages:
    """Time `settings.bench.repetitions` push-to-talk voice turns for `edgeassist bench --voice`.

    Each turn is a question spoken by the configured piper voice, fed to the pipeline at real-time
    pace like a microphone, with the key released as the speech ends; the reply plays to a paced
    null speaker. `target` names the model and threads. Whisper, piper and the model are warmed up,
    and one unmeasured turn runs first.
    """
    with _bench_pipeline(settings, target) as (pipeline, spoken):
        return _push_to_talk_turns(pipeline, spoken, max(1, settings.bench.repetitions))


def bench_hands_free(settings: Settings, target: VoiceTarget) -> VoiceStages:
    """Time `settings.bench.repetitions` hands-free turns for `edgeassist bench --voice`.

    One conversation through `HandsFree` on the same pipeline as `bench_stages`: each question is
    said (at real-time pace, like a microphone) once the assistant is listening again, and the
    Silero VAD ends the turn after `speech.end_of_turn_s` of silence. Returns `HANDS_FREE_STAGES`:
    the end-of-turn wait (end of speech to the turn's end, the configured silence plus up to a
    frame) and end of speech to the first reply audio, which includes it. One unmeasured turn first.
    """
    with _bench_pipeline(settings, target) as (pipeline, spoken):
        return _hands_free_turns(pipeline, spoken, max(1, settings.bench.repetitions))


def bench_voice_both(settings: Settings, target: VoiceTarget) -> VoiceStages:
    """`bench_stages` then `bench_hands_free` on one pipeline (one model load and warm-up): the
    push-to-talk stages followed by `HANDS_FREE_STAGES`, for a hook that reports both."""
    with _bench_pipeline(settings, target) as (pipeline, spoken):
        n = max(1, settings.bench.repetitions)
        return {**_push_to_talk_turns(pipeline, spoken, n), **_hands_free_turns(pipeline, spoken, n)}


def _push_to_talk_turns(pipeline: VoicePipeline, spoken: list[Spoken], n: int) -> VoiceStages:
    """One unmeasured push-to-talk turn, then `n` measured ones: `BENCH_STAGES`."""
    simulate_turn(pipeline, *spoken[-1], realtime=False)  # unmeasured
    out: VoiceStages = {name: [] for name in BENCH_STAGES}
    for i in range(n):
        samples, rate = spoken[i % len(spoken)]
        _new_reply(pipeline)
        timings = simulate_turn(pipeline, samples, rate).timings
        for name in BENCH_STAGES:
            value = getattr(timings, name)
            if value is not None:
                out[name].append(float(value))
    return out


def _hands_free_turns(pipeline: VoicePipeline, spoken: list[Spoken], n: int) -> VoiceStages:
    """A hands-free conversation of one unmeasured question, then `n` measured ones: `HANDS_FREE_STAGES`."""
    questions = [resample(samples, rate, WHISPER_RATE) for samples, rate in spoken]
    asked = [questions[-1], *(questions[i % len(questions)] for i in range(n))]

    def on_event(event: object) -> None:
        if isinstance(event, StateChanged) and event.state is HandsFreeState.HEARING:
            _new_reply(pipeline)

    turns = simulate_conversation(pipeline, asked, on_event=on_event)
    out: VoiceStages = {name: [] for name in HANDS_FREE_STAGES}
    for done in turns[1:]:
        t = done.timings
        if done.status != "empty" and t.release_lag_s is not None and t.speech_end_to_first_audio_s is not None:
            out["hands_free_end_of_turn_s"].append(float(t.release_lag_s))
            out["hands_free_speech_end_to_first_audio_s"].append(float(t.speech_end_to_first_audio_s))
    return out


def _new_reply(pipeline: VoicePipeline) -> None:
    """A stand-in voice's next chunk is a reply's first (a new turn is starting)."""
    if isinstance(pipeline.synthesizer, StandInSynthesizer):
        pipeline.synthesizer.new_reply()


def find_voice_hook() -> VoiceHook:
    """What `edgeassist bench --voice` runs to time the voice turns: push-to-talk's stages, then hands-free's
    (`bench_voice_both`; the tests put a fake here)."""
    return bench_voice_both


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
