"""Speech in and out: audio devices and files, whisper transcription, piper synthesis, speakable text.

This package imports nothing heavy at import time: faster-whisper, piper and sounddevice are the
optional `speech` extra, loaded inside the functions that need them, so typed chat keeps working
without them and voice says in one line what to install.
"""

from __future__ import annotations

import importlib.util

from edgeassist.errors import AudioUnavailableError

# Import name -> the distribution a person installs.
SPEECH_PACKAGES = {
    "faster_whisper": "faster-whisper",
    "piper": "piper-tts",
    "sounddevice": "sounddevice",
}
INSTALL_HINT = "pip install 'edgeassist[speech]'"
PORTAUDIO_HINT = "install PortAudio (Debian/Ubuntu: `sudo apt install libportaudio2`; macOS: `brew install portaudio`)"


def missing_speech_packages(*modules: str) -> list[str]:
    """Distribution names of the speech-extra packages (all, or just `modules`) that are not installed."""
    wanted = modules or tuple(SPEECH_PACKAGES)
    return [SPEECH_PACKAGES.get(m, m) for m in wanted if importlib.util.find_spec(m) is None]


def require_speech(*modules: str, purpose: str = "voice") -> None:
    """Raise `AudioUnavailableError` naming what to install when any of `modules` is missing."""
    missing = missing_speech_packages(*modules)
    if missing:
        raise AudioUnavailableError(
            f"{purpose} needs the speech extra (missing: {', '.join(missing)}): {INSTALL_HINT}; "
            "typed chat works without it"
        )
