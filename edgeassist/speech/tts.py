"""Text to speech: `Synthesizer` over piper (GPL-3.0, in the optional `speech` extra)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from edgeassist.errors import ModelLoadError
from edgeassist.speech import require_speech
from edgeassist.speech.models import SpeechModel, resolve_voice


@dataclass(frozen=True)
class SpeechChunk:
    """A stretch of synthesized speech."""

    samples: np.ndarray
    """Mono float32 samples in [-1, 1]."""
    sample_rate: int
    """Their rate (the voice's)."""
    text: str
    """The text they were synthesized from."""
    elapsed_s: float
    """Seconds it took to synthesize them."""

    @property
    def duration_s(self) -> float:
        """How long they last when played."""
        return len(self.samples) / self.sample_rate


@runtime_checkable
class Synthesizer(Protocol):
    """Text to speech, one sentence (or a few) at a time."""

    @property
    def sample_rate(self) -> int:
        """The rate the voice speaks at."""
        ...

    def synthesize(self, text: str) -> Iterator[SpeechChunk]:
        """Speak `text` as one or more chunks, each yielded as soon as it is ready."""
        ...


_voice_lock = threading.Lock()
_voices: dict[tuple[str, bool], Any] = {}


def _load_piper(path: Path, use_cuda: bool) -> Any:
    """One PiperVoice per (file, device) in the process, loaded once."""
    key = (str(path), use_cuda)
    with _voice_lock:
        voice = _voices.get(key)
        if voice is None:
            require_speech("piper", purpose="text to speech")
            from piper import PiperVoice

            try:
                voice = PiperVoice.load(path, use_cuda=use_cuda)
            except Exception as e:  # noqa: BLE001 - onnxruntime raises its own types for a bad file
                raise ModelLoadError(f"cannot load the piper voice {path}: {e}") from None
            _voices[key] = voice
        return voice


class PiperSynthesizer:
    """A piper voice (onnxruntime on CPU); loads on first use."""

    def __init__(
        self,
        voice: str = "en_US-joe-medium",
        *,
        models_dir: Path | None = None,
        length_scale: float | None = None,
        noise_scale: float | None = None,
        noise_w: float | None = None,
        use_cuda: bool = False,
        fallback: bool = True,
    ) -> None:
        """Find the voice now (no network); load it on first use.

        `length_scale` > 1 speaks slower. `noise_scale` and `noise_w` (the voice's own when None)
        vary the voice and its rhythm randomly from run to run; 0 for both makes it repeatable.
        """
        self.resolved: SpeechModel = resolve_voice(voice, models_dir or Path("models"), fallback=fallback)
        """The voice file in use, and a note when it is an offline fallback."""
        self.length_scale = length_scale
        self.noise_scale = noise_scale
        self.noise_w = noise_w
        self.use_cuda = use_cuda
        self._lock = threading.Lock()
        self._voice: Any = None
        self._config: Any = None
        self._rate: int | None = None
        self.load_s = 0.0
        """Seconds the last load took."""

    @property
    def sample_rate(self) -> int:
        """The voice's rate, read from its config without loading the model."""
        if self._rate is None:
            import json

            with open(f"{self.resolved.path}.json", encoding="utf-8") as f:
                self._rate = int(json.load(f)["audio"]["sample_rate"])
        return self._rate

    def load(self) -> float:
        """Load the voice (once); return seconds taken."""
        with self._lock:
            if self._voice is not None:
                return self.load_s
            t0 = time.perf_counter()
            voice = _load_piper(self.resolved.path, self.use_cuda)
            from piper import SynthesisConfig

            self._config = SynthesisConfig(
                length_scale=self.length_scale, noise_scale=self.noise_scale, noise_w_scale=self.noise_w
            )
            self._voice = voice
            self._rate = int(voice.config.sample_rate)
            self.load_s = time.perf_counter() - t0
            return self.load_s

    def synthesize(self, text: str) -> Iterator[SpeechChunk]:
        """Speak `text`; piper yields one chunk per sentence it finds."""
        self.load()
        t0 = time.perf_counter()
        for chunk in self._voice.synthesize(text, syn_config=self._config):
            now = time.perf_counter()
            yield SpeechChunk(
                np.asarray(chunk.audio_float_array, dtype=np.float32).reshape(-1),
                int(chunk.sample_rate),
                text,
                now - t0,
            )
            t0 = time.perf_counter()
