#!/usr/bin/env python3
"""Word error rate of speech to text, on a clip set in more than one voice: piper's and espeak-ng's.

Builds (once, into --clips) 240 spoken questions of the kind people ask an assistant, each in one
of four voices in turn: piper's `en_US-joe-medium` at its own pace and 15 % slower, and
espeak-ng's `en-us` and `en-gb-x-rp` (a formant synthesizer, nothing like piper: a second, harder
voice). Then transcribes every clip with the whisper model the settings name (as voice mode does,
through `WhisperTranscriber`) and prints the word error rate per voice and overall: substitutions,
deletions and insertions over the reference words, after lower-casing and dropping punctuation.

    scripts/speech_wer.py                      # build the clips if needed, then measure
    scripts/speech_wer.py --whisper base.en    # another whisper model (pulled: edgeassist pull whisper:base.en)
    scripts/speech_wer.py --streamed           # as push-to-talk hears them: each clip fed block by block

With `--streamed`, each clip goes through voice mode's `IncrementalTranscriber` with the `[speech]`
settings, 50 ms at a time, and the key is released `--release-after` seconds after the clip ends:
the partial, settle and pause passes happen where the audio calls for them (as if whisper took no
time), and the text is what `finish()` returns, a settle pass's when no speech followed it.

Needs the `speech` and `starter` extras, and `espeak-ng` (`sudo apt-get install espeak-ng`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeassist.config import load_settings  # noqa: E402
from edgeassist.speech.samples import WHISPER_RATE  # noqa: E402
from edgeassist.speech.wav import read_wav, write_wav  # noqa: E402
from edgeassist.synthetic.tokenizer import cache_dir  # noqa: E402

SUBJECTS = [
    "the weather in Lisbon",
    "the capital of Australia",
    "a good name for a grey cat",
    "the distance to the moon",
    "the best way to cook rice",
    "the meaning of the word serendipity",
    "the population of Canada",
    "a quick dinner with eggs",
    "the tallest mountain in Africa",
    "how a rainbow forms",
    "the rules of chess",
    "the history of the printing press",
    "a polite way to decline an invitation",
    "the difference between a virus and a bacterium",
    "the time in Tokyo right now",
    "a short poem about autumn",
    "the boiling point of water on a mountain",
    "the author of Pride and Prejudice",
    "a stretch for a sore back",
    "the fastest land animal",
]
FRAMES = [
    "What can you tell me about {}?",
    "Please explain {} in two sentences.",
    "I would like to know about {}.",
    "Could you look up {} for me?",
    "Tell me something interesting about {}.",
    "Give me a summary of {}.",
    "Do you know anything about {}?",
    "Remind me about {} tomorrow morning.",
    "Why should I care about {}?",
    "Write a note about {}.",
    "How would you describe {} to a child?",
    "Is there a simple answer about {}?",
]
VOICES = ["piper joe", "piper joe slow", "espeak-ng en-us", "espeak-ng en-gb"]


def sentences(n: int) -> list[str]:
    """`n` distinct questions, each frame with each subject in turn (deterministic)."""
    pairs = itertools.product(range(len(SUBJECTS)), range(len(FRAMES)))
    out = [FRAMES[(f + s) % len(FRAMES)].format(SUBJECTS[s]) for s, f in pairs]
    return out[:n]


def words(text: str) -> list[str]:
    """The words of `text`, lower case, without punctuation (hyphens split words)."""
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split()


def edits(ref: list[str], hyp: list[str]) -> int:
    """Word-level Levenshtein distance."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def to_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    """`samples` at whisper's 16 kHz (linear interpolation)."""
    if rate == WHISPER_RATE:
        return samples.astype(np.float32)
    t = np.arange(round(len(samples) * WHISPER_RATE / rate)) * (rate / WHISPER_RATE)
    return np.interp(t, np.arange(len(samples)), samples).astype(np.float32)


def build(folder: Path, n: int) -> list[dict[str, str]]:
    """Speak the clip set into `folder` (16 kHz wav files and a manifest); return the manifest."""
    from edgeassist.speech.tts import PiperSynthesizer

    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise SystemExit("espeak-ng is not installed: sudo apt-get install espeak-ng")
    settings = load_settings()
    piper = {
        "piper joe": PiperSynthesizer(settings.speech.voice, models_dir=settings.models_dir()),
        "piper joe slow": PiperSynthesizer(settings.speech.voice, models_dir=settings.models_dir(), length_scale=1.15),
    }
    folder.mkdir(parents=True, exist_ok=True)
    manifest = []
    for i, text in enumerate(sentences(n)):
        voice = VOICES[i % len(VOICES)]
        path = folder / f"{i:03d}.wav"
        if voice in piper:
            chunks = list(piper[voice].synthesize(text))
            audio = np.concatenate([c.samples for c in chunks])
            rate = chunks[0].sample_rate
        else:
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "clip.wav"
                lang = voice.split()[-1].replace("en-gb", "en-gb-x-rp")
                subprocess.run([espeak, "-v", lang, "-s", "160", "-w", str(out), text], check=True)
                audio, rate = read_wav(out)
        write_wav(path, to_16k(audio, rate), WHISPER_RATE)
        manifest.append({"file": path.name, "voice": voice, "text": text})
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def streamed(whisper: object, audio: np.ndarray, settings: object, release_after_s: float) -> str:
    """The clip's transcript as push-to-talk makes it: fed 50 ms at a time to an `IncrementalTranscriber`."""
    from edgeassist.speech.stt import IncrementalTranscriber

    s = settings.speech  # type: ignore[attr-defined]
    stream = IncrementalTranscriber(
        whisper,  # type: ignore[arg-type]
        interval_s=s.partial_interval_s if s.partial_interval_s > 0 else 1e9,
        pause_s=s.pause_s,
        settle_s=s.settle_s,
        partials=s.partial_interval_s > 0,
    )
    fed = np.concatenate([audio.astype(np.float32), np.zeros(int(release_after_s * WHISPER_RATE), np.float32)])
    block = WHISPER_RATE // 20
    for i in range(0, len(fed), block):
        stream.feed(fed[i : i + block])
        stream.wait_idle(120)
    return stream.finish().text


def main() -> int:
    """Build the clips if needed, transcribe them, print the word error rates."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=Path, default=cache_dir() / "wer-clips", help="where the clip set is kept")
    ap.add_argument("--count", type=int, default=240, help="clips to build (at least 200)")
    ap.add_argument("--rebuild", action="store_true", help="speak the clips again")
    ap.add_argument("--whisper", default=None, help="whisper model (default: speech.whisper_model)")
    ap.add_argument("--json", type=Path, help="also write each clip's transcript and errors here")
    ap.add_argument("--streamed", action="store_true", help="transcribe as push-to-talk does, while the clip is fed")
    ap.add_argument(
        "--release-after", type=float, default=0.15, help="with --streamed: key up this long after the clip"
    )
    args = ap.parse_args()

    from edgeassist.speech.stt import WhisperTranscriber

    manifest_path = args.clips / "manifest.json"
    if args.rebuild or not manifest_path.exists():
        manifest = build(args.clips, args.count)
    else:
        manifest = json.loads(manifest_path.read_text())
    settings = load_settings()
    s = settings.speech
    whisper = WhisperTranscriber(
        args.whisper or s.whisper_model,
        models_dir=settings.models_dir(),
        language=s.language,
        compute_type=s.compute_type,
        beam_size=s.beam_size,
        window_s=s.whisper_window_s,
    )
    whisper.load()
    totals: dict[str, list[int]] = {v: [0, 0, 0] for v in VOICES}  # errors, reference words, clips
    rows = []
    for clip in manifest:
        audio, _ = read_wav(args.clips / clip["file"])
        heard = (
            streamed(whisper, audio, settings, args.release_after) if args.streamed else whisper.transcribe(audio).text
        )
        ref, hyp = words(clip["text"]), words(heard)
        n = edits(ref, hyp)
        t = totals[clip["voice"]]
        t[0], t[1], t[2] = t[0] + n, t[1] + len(ref), t[2] + 1
        rows.append({**clip, "heard": heard, "errors": n, "words": len(ref)})
    how = f"streamed (key up {args.release_after:.2f} s after the clip)" if args.streamed else "whole clips"
    print(f"whisper {args.whisper or s.whisper_model}, {len(manifest)} clips ({args.clips}), {how}")
    for voice, (errs, ref_words, clips) in totals.items():
        if clips:
            print(f"  {voice:<16} {clips:>4} clips  WER {100 * errs / ref_words:5.1f} %")
    errs = sum(t[0] for t in totals.values())
    ref_words = sum(t[1] for t in totals.values())
    print(f"  {'all':<16} {len(manifest):>4} clips  WER {100 * errs / ref_words:5.1f} %  ({errs} / {ref_words} words)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
