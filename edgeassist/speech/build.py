"""The speech parts the settings describe: whisper, piper, the microphone and the speaker (or wav files).

Nothing here loads a model or touches the network: the transcriber and the synthesizer load on
first use, from the models folder or the offline fallbacks (see `edgeassist.speech.models`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgeassist.config import Settings
    from edgeassist.speech.audio import AudioIn, AudioOut
    from edgeassist.speech.stt import Transcriber
    from edgeassist.speech.tts import Synthesizer


def speech_models(
    settings: Settings, *, speak: bool = True, window_s: float | None = None
) -> tuple[Transcriber, Synthesizer | None, list[str]]:
    """Whisper and (when `speak`) piper as the `[speech]` settings describe them, and one-line notes
    about offline fallbacks in use. Nothing is loaded yet; nothing touches the network."""
    from edgeassist.speech.stt import WhisperTranscriber
    from edgeassist.speech.tts import PiperSynthesizer

    s = settings.speech
    models_dir = settings.models_dir()
    transcriber = WhisperTranscriber(
        s.whisper_model,
        models_dir=models_dir,
        language=s.language,
        compute_type=s.compute_type,
        beam_size=s.beam_size,
        window_s=window_s or s.whisper_window_s,
    )
    notes = [n for n in (transcriber.resolved.note,) if n]
    synthesizer = None
    if speak:
        synthesizer = PiperSynthesizer(s.voice, models_dir=models_dir, length_scale=s.length_scale)
        if synthesizer.resolved.note:
            notes.append(synthesizer.resolved.note)
    return transcriber, synthesizer, notes


def audio_input(settings: Settings, input_wav: Path | None = None, *, realtime: bool = False) -> AudioIn:
    """The wav file `input_wav` (at real-time pace when `realtime`), else the `[audio]` microphone.

    Raises `AudioUnavailableError` when PortAudio or the device is missing.
    """
    from edgeassist.speech.audio import MicrophoneIn, WavIn

    if input_wav is not None:
        return WavIn(input_wav, realtime=realtime)
    return MicrophoneIn(settings.audio.input_device)


def audio_output(settings: Settings, output_wav: Path | None = None) -> AudioOut:
    """The wav file `output_wav`, else the `[audio]` speaker.

    Raises `AudioUnavailableError` when PortAudio or the device is missing.
    """
    from edgeassist.speech.audio import SpeakerOut, WavOut

    return WavOut(output_wav) if output_wav is not None else SpeakerOut(settings.audio.output_device)
