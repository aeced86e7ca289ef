"""The speech layer: resampling, levels, wav files, speakable text, model files, whisper and piper."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import json
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from audio_helpers import (
    REPO,
    SilentTranscriber,
    piper,
    speak,
    speak_16k,
    tone,
    whisper,
    word_recall,
    words,
)

from edgeassist.errors import AudioUnavailableError, DownloadError, ModelNotFoundError, UsageError
from edgeassist.speech import audio as audio_mod
from edgeassist.speech import models, require_speech
from edgeassist.speech.audio import (
    ArrayIn,
    LevelMeter,
    Resampler,
    WavIn,
    WavOut,
    find_device,
    read_wav,
    resample,
    rms_dbfs,
    write_wav,
)
from edgeassist.speech.stt import IncrementalTranscriber, compression_ratio, repeats_itself, speech_bounds
from edgeassist.speech.text import CODE_PLACEHOLDER, SentenceSplitter, markdown_to_prose, split_sentences, to_speech

# -- resampling --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("src", "dst"), [(44100, 16000), (48000, 16000), (22050, 16000), (16000, 22050), (16000, 48000), (22050, 44100)]
)
def test_resampling_a_sine_gives_the_same_sine_at_the_new_rate(src: int, dst: int) -> None:
    t = np.arange(src) / src
    x = 0.8 * np.sin(2 * np.pi * 440 * t)
    y = resample(x, src, dst)
    assert len(y) == dst  # one second in, one second out
    ref = 0.8 * np.sin(2 * np.pi * 440 * np.arange(len(y)) / dst)
    inner = slice(dst // 10, -dst // 10)  # away from the edges, where the signal starts and stops
    assert np.max(np.abs(y[inner] - ref[inner])) < 1e-3
    spectrum = np.abs(np.fft.rfft(y[inner] * np.hanning(len(y[inner]))))
    peak_hz = np.argmax(spectrum) * dst / len(y[inner])
    assert abs(peak_hz - 440) < 2


def test_resampling_chunk_by_chunk_equals_resampling_at_once() -> None:
    x = np.random.default_rng(1).standard_normal(30000).astype(np.float32) * 0.1
    r = Resampler(48000, 16000)
    parts = [r.process(x[i : i + 777]) for i in range(0, len(x), 777)]
    parts.append(r.process(np.zeros(0, np.float32), final=True))
    np.testing.assert_allclose(np.concatenate(parts), resample(x, 48000, 16000), atol=1e-6)


def test_resampling_down_removes_what_the_new_rate_cannot_hold() -> None:
    rate = 48000
    t = np.arange(rate) / rate
    passed = resample(np.sin(2 * np.pi * 3000 * t), rate, 16000)[2000:-2000]
    aliased = resample(np.sin(2 * np.pi * 12000 * t), rate, 16000)[2000:-2000]  # above 8 kHz
    assert rms_dbfs(passed) > -3.5
    assert rms_dbfs(aliased) < -60


def test_level_meter_rises_at_once_and_falls_slowly() -> None:
    meter = LevelMeter()
    assert meter.update(np.zeros(800, np.float32), 16000) == 0.0
    loud = meter.update(tone(0.05, level=0.9), 16000)
    assert loud > 0.9
    after = meter.update(np.zeros(800, np.float32), 16000)
    assert 0.8 < after < loud  # 50 ms of silence drops the needle only a little
    assert rms_dbfs(np.zeros(10)) == -120.0


# -- files -------------------------------------------------------------------------------------------


def test_wav_files_round_trip_and_wav_out_appends_each_reply(tmp_path: Path) -> None:
    x = tone(0.5, rate=22050)
    write_wav(tmp_path / "a.wav", x, 22050)
    y, rate = read_wav(tmp_path / "a.wav")
    assert rate == 22050 and np.max(np.abs(x - y)) < 1e-4

    out = WavOut(tmp_path / "out.wav")
    stop = threading.Event()
    assert out.play(x, 22050, stop)
    assert out.play(tone(0.25, rate=16000), 16000, stop)  # resampled to the file's rate
    out.close()
    y, rate = read_wav(tmp_path / "out.wav")
    assert rate == 22050 and len(y) == len(x) + 5513  # ceil(4000 * 22050 / 16000)


def test_wav_in_delivers_blocks_until_it_ends_or_is_stopped(tmp_path: Path) -> None:
    write_wav(tmp_path / "q.wav", tone(1.0), 16000)
    src = WavIn(tmp_path / "q.wav", block_s=0.1)
    got: list[np.ndarray] = []
    src.record(got.append, threading.Event())
    assert len(got) == 10 and sum(len(g) for g in got) == 16000

    stop = threading.Event()
    few: list[np.ndarray] = []

    def take(chunk: np.ndarray) -> None:
        few.append(chunk)
        if len(few) == 3:
            stop.set()

    ArrayIn(tone(1.0), 16000, block_s=0.1).record(take, stop)
    assert len(few) == 3


def test_unreadable_wav_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "bad.wav").write_bytes(b"not a wav")
    with pytest.raises(AudioUnavailableError, match="not a PCM wav"):
        read_wav(tmp_path / "bad.wav")
    with pytest.raises(AudioUnavailableError, match="no such wav file"):
        read_wav(tmp_path / "missing.wav")


# -- speakable text ------------------------------------------------------------------------------------


def stream_pieces(text: str, size: int) -> list[str]:
    splitter = SentenceSplitter()
    out: list[str] = []
    for i in range(0, len(text), size):
        out += splitter.feed(text[i : i + size])
    return out + splitter.flush()


def test_sentences_are_cut_as_the_stream_arrives() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("The capital of France is Paris") == []
    assert splitter.feed(". It has about 2.1 million people") == ["The capital of France is Paris."]
    assert splitter.feed(", e.g. in 2023! Dr. Smith agrees") == ["It has about 2.1 million people, e.g. in 2023!"]
    assert splitter.flush() == ["Dr. Smith agrees"]


@pytest.mark.parametrize("size", [1, 3, 7, 1000])
def test_cutting_does_not_depend_on_how_the_stream_is_chunked(size: int) -> None:
    text = (
        "# Answer\n\nSure, here is how. First, list the files:\n\n```bash\nls -la ~/src | grep '*.py'\n```\n\n"
        "1. Open **the** [docs](https://example.com/docs).\n2. Run `make test`. It takes 3.5 s.\n"
        "| Name | Size |\n|---|---|\n| a.py | 2 KB |\nThat's all... really?"
    )
    expected = [
        "Answer",
        "Sure, here is how.",
        "First, list the files:",
        CODE_PLACEHOLDER,
        "Open the docs.",
        "Run make test.",
        "It takes 3.5 s.",
        "Name, Size",
        "a.py, 2 KB",
        "That's all...",
        "really?",
    ]
    assert stream_pieces(text, size) == expected


def test_code_is_never_read_out_symbol_by_symbol() -> None:
    text = "Use this:\n```python\nfor i in range(10):\n    print(i ** 2)\n```\nDone."
    spoken = " ".join(split_sentences(text))
    assert "print" not in spoken and "range" not in spoken and "**" not in spoken
    assert CODE_PLACEHOLDER in spoken
    # An unfinished block at the end of a reply is dropped too.
    assert split_sentences("Here:\n```\nrm -rf /tmp/x") == ["Here:", CODE_PLACEHOLDER]


def test_markdown_becomes_prose() -> None:
    assert to_speech("## **Bold** and *italic* and __strong__ and ~~gone~~") == "Bold and italic and strong and gone"
    assert to_speech("See [the guide](http://x.y/z) or https://example.com/a?b=c.") == "See the guide or a link."
    assert to_speech("- item with `snake_case_name`") == "item with snake case name"
    assert to_speech("> quoted <b>text</b>") == "quoted text"
    assert to_speech("---") == ""
    assert to_speech("`" + "x = {k: v for k, v in d.items() if v}" + "`") == "this code"
    assert markdown_to_prose("**Hi!** How are *you*?") == "Hi! How are you?"


def test_the_first_chunk_may_end_at_a_clause_so_speech_starts_sooner() -> None:
    eager = SentenceSplitter(eager_first=True)
    assert eager.feed("The capital of France is Paris, a city of") == ["The capital of France is Paris,"]
    assert eager.feed(" light, art, and food. Also") == ["a city of light, art, and food."]
    assert SentenceSplitter(eager_first=True).feed("Yes, it is") == []  # too short to stand alone


def test_the_first_chunk_may_end_before_a_phrase_or_after_a_number_of_words() -> None:
    # Before a word that starts a phrase, once it has three words; only once that word is whole.
    eager = SentenceSplitter(eager_first=True)
    assert eager.feed("To list every file in") == []  # ("in" could still be "inside")
    assert eager.feed(" a") == ["To list every file"]
    assert eager.feed(" folder, use ls -a. Then") == ["in a folder, use ls -a."]
    # (a first sentence that has arrived whole is spoken whole: cutting it would gain nothing)
    assert SentenceSplitter(eager_first=True).feed("Rice goes well with eggs. ") == ["Rice goes well with eggs."]
    # With a limit, a first chunk without any such place ends after that many words; later ones at sentences.
    capped = SentenceSplitter(eager_first=True, first_max_words=5)
    assert capped.feed("Rice eggs make a great") == []
    assert capped.feed(" fried") == ["Rice eggs make a great"]
    assert capped.feed(" rice dish together tonight. Then") == ["fried rice dish together tonight."]
    assert SentenceSplitter().feed("To list every file in a folder ") == []  # not eager: whole sentences only


def test_cut_speaks_what_has_arrived_but_never_code() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("random words with no end") == []
    assert splitter.cut() == ["random words with no end"]
    assert splitter.feed(" more. Then") == ["more."]  # the text after the cut goes on as usual
    splitter.feed("\n```python\nx = [1, 2")
    assert splitter.cut() == []  # inside a code block: nothing to say yet


def test_very_long_sentences_are_cut_at_a_space() -> None:
    long = "word " * 100
    parts = SentenceSplitter(max_chars=100).feed(long)
    assert parts and all(len(p) <= 100 for p in parts)


# -- model files ---------------------------------------------------------------------------------------


def test_pypi_models_are_the_offline_fallback(tmp_path: Path) -> None:
    w = models.resolve_whisper("tiny.en", tmp_path)
    assert w.source == "package" and (w.path / "model.bin").is_file() and w.note is None
    v = models.resolve_voice("en_US-joe-medium", tmp_path)
    assert v.source == "package" and v.path.suffix == ".onnx" and v.note is None
    other = models.resolve_voice("en_US-lessac-medium", tmp_path)
    assert other.name == "en_US-joe-medium" and "edgeassist pull voice:en_US-lessac-medium" in (other.note or "")
    small = models.resolve_whisper("small.en", tmp_path)
    assert small.name == "tiny.en" and "edgeassist pull whisper:small.en" in (small.note or "")
    with pytest.raises(ModelNotFoundError, match="edgeassist pull whisper:small.en"):
        models.resolve_whisper("small.en", tmp_path, fallback=False)
    with pytest.raises(ModelNotFoundError, match="edgeassist pull voice:en_US-lessac-medium"):
        models.resolve_voice("en_US-lessac-medium", tmp_path, fallback=False)


def test_a_pulled_model_wins_over_the_fallback(tmp_path: Path) -> None:
    wdir = tmp_path / "whisper" / "base.en"
    wdir.mkdir(parents=True)
    (wdir / "model.bin").write_bytes(b"x")
    (wdir / "config.json").write_text("{}")
    vdir = tmp_path / "voices"
    vdir.mkdir()
    (vdir / "en_US-lessac-medium.onnx").write_bytes(b"x")
    (vdir / "en_US-lessac-medium.onnx.json").write_text("{}")
    assert models.resolve_whisper("base.en", tmp_path).path == wdir
    assert models.resolve_voice("en_US-lessac-medium", tmp_path).source == "pulled"
    listed = {(m.kind, m.name, m.source) for m in models.list_speech_models(tmp_path)}
    assert {("whisper", "base.en", "pulled"), ("voice", "en_US-lessac-medium", "pulled")} <= listed
    assert ("whisper", "tiny.en", "package") in listed


def test_speech_model_names() -> None:
    assert models.parse_spec("whisper:tiny.en") == ("whisper", "tiny.en")
    assert models.parse_spec("voice:en_US-lessac-medium") == ("voice", "en_US-lessac-medium")
    assert models.parse_spec("qwen3.5-2b:q8_0") is None
    assert models.is_speech_spec("piper:en_GB-alan-low") and not models.is_speech_spec("qwen3.5-0.8b")
    assert models.voice_files("en_US-lessac-medium") == (
        "en/en_US/lessac/medium/en_US-lessac-medium.onnx",
        "en/en_US/lessac/medium/en_US-lessac-medium.onnx.json",
    )
    with pytest.raises(ModelNotFoundError, match="language_REGION-voice-quality"):
        models.voice_files("lessac")
    with pytest.raises(ModelNotFoundError, match="unknown whisper model"):
        models.pull_whisper("huge.en", Path("/nonexistent"))
    with pytest.raises(UsageError):
        models.pull_speech_model("qwen3.5-0.8b", Path("/nonexistent"))


def test_pull_whisper_and_a_voice_through_the_hub(online: None, tmp_path: Path) -> None:
    from fakehub import FakeHub

    mnm = models.resolve_whisper("tiny.en", tmp_path).path
    joe = models.resolve_voice("en_US-joe-medium", tmp_path).path
    models_dir = tmp_path / "models"
    with FakeHub() as hub:
        for f in ("config.json", "model.bin", "tokenizer.json", "vocabulary.txt"):
            hub.add("Systran/faster-whisper-tiny.en", f, mnm / f)
        onnx, cfg = models.voice_files("en_US-joe-medium")
        hub.add(models.VOICES_REPO, onnx, joe)
        hub.add(models.VOICES_REPO, cfg, Path(f"{joe}.json"))
        said: list[str] = []
        w = models.pull_speech_model(
            "whisper:tiny.en", models_dir, endpoint=hub.endpoint, progress=False, echo=said.append
        )
        v = models.pull_speech_model("voice:en_US-joe-medium", models_dir, endpoint=hub.endpoint, progress=False)
        with pytest.raises(DownloadError, match="cannot download voice en_US-lessac-medium"):
            models.pull_speech_model("voice:en_US-lessac-medium", models_dir, endpoint=hub.endpoint, progress=False)
        gets = len(hub.file_gets())
        again = models.pull_speech_model("whisper:tiny.en", models_dir, endpoint=hub.endpoint, progress=False)
        assert len(hub.file_gets()) == gets  # already there: nothing downloaded
    assert said and "pulling whisper tiny.en" in said[0]
    assert w.path == models_dir / "whisper" / "tiny.en" == again.path
    assert (w.path / "model.bin").stat().st_size == (mnm / "model.bin").stat().st_size
    assert v.path == models_dir / "voices" / "en_US-joe-medium.onnx" and Path(f"{v.path}.json").is_file()
    assert not any((models_dir / ".downloads").glob("*/*.onnx"))
    # What was pulled is found first, and it works.
    assert models.resolve_whisper("tiny.en", models_dir).source == "pulled"
    assert models.resolve_voice("en_US-joe-medium", models_dir).source == "pulled"
    assert models.pull_speech_model("voice:en_US-joe-medium", models_dir, offline=True).path == v.path
    with pytest.raises(DownloadError, match="hub.offline"):
        models.pull_speech_model("whisper:base.en", models_dir, offline=True)


# -- missing pieces: one line saying what to install -------------------------------------------------------


def test_missing_speech_extra_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in ("piper", "faster_whisper") else real(name, *a)
    )
    with pytest.raises(AudioUnavailableError) as e:
        require_speech()
    msg = str(e.value)
    assert "faster-whisper, piper-tts" in msg and "pip install 'edgeassist[speech]'" in msg and "\n" not in msg


def test_missing_portaudio_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoPortAudio(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        """sounddevice is installed, but importing it fails the way it does without libportaudio."""

        def find_spec(self, name: str, *args: object) -> importlib.machinery.ModuleSpec | None:
            return importlib.machinery.ModuleSpec(name, self) if name == "sounddevice" else None

        def exec_module(self, module: object) -> None:
            raise OSError("PortAudio library not found")  # what sounddevice raises without it

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(audio_mod, "_sd", None)
    monkeypatch.setattr(sys, "meta_path", [NoPortAudio(), *sys.meta_path])
    with pytest.raises(AudioUnavailableError) as e:
        audio_mod.sounddevice_module()
    assert "libportaudio2" in str(e.value) and "--input-wav" in str(e.value)


def test_no_sound_device_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audio_mod, "list_devices", lambda: [])
    with pytest.raises(AudioUnavailableError, match="no microphone found.*--input-wav"):
        find_device(None, "input")
    with pytest.raises(AudioUnavailableError, match="no speaker found.*--output-wav"):
        find_device(None, "output")
    dev = audio_mod.AudioDevice(3, "USB Mic", "ALSA", 1, 0, 48000.0, default_input=True)
    monkeypatch.setattr(audio_mod, "list_devices", lambda: [dev])
    assert find_device(None, "input") is dev and find_device("usb", "input") is dev and find_device("3", "input") is dev
    with pytest.raises(AudioUnavailableError, match="audio.input_device = 7"):
        find_device("7", "input")
    with pytest.raises(AudioUnavailableError, match="no speaker found"):
        find_device(None, "output")


# -- whisper and piper (the real models) ----------------------------------------------------------------


def test_piper_speaks_and_whisper_hears_it() -> None:
    audio, rate = speak("What is the capital of France?")
    assert rate == piper().sample_rate == 22050 and 1.0 < len(audio) / rate < 4.0
    q = speak_16k("How many legs does a spider have?", lead_s=1.0, tail_s=1.5)
    fitted = whisper().transcribe(q)
    assert words(fitted.text) == ["how", "many", "legs", "does", "a", "spider", "have"]
    assert fitted.window_s == 10.0 and fitted.speech_s < 3.5  # silence trimmed before decoding
    full = type(whisper())("tiny.en", models_dir=REPO / "models", window_s=30).transcribe(q)
    assert full.window_s == 30.0 and words(full.text) == words(fitted.text)


def test_whisper_skips_silence_without_decoding() -> None:
    quiet = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 1e-4
    t = whisper().transcribe(quiet)
    assert t.text == "" and t.speech_s == 0.0
    assert speech_bounds(np.zeros(16000, np.float32)) == (0, 0)
    start, end = speech_bounds(np.concatenate([np.zeros(16000), tone(0.5), np.zeros(16000)]).astype(np.float32))
    assert 16000 - 3200 <= start <= 16000 and 24000 <= end <= 24000 + 3200


def test_a_stuck_decoder_is_recognised() -> None:
    assert repeats_itself("Hello? Hello? Hello? Hello?") and repeats_itself("thanks thanks thanks")
    assert not repeats_itself("The capital of France is Paris.")
    assert compression_ratio("Hello? " * 50) > 2.4 > compression_ratio("What is the capital of France?")


def test_transcribing_while_held_commits_at_pauses_and_leaves_nothing_after_a_final_pause() -> None:
    phrases = [speak_16k("What is the capital of France?", tail_s=0.6), speak_16k("And of Germany?", tail_s=0.6)]
    committed: list[str] = []
    commit = threading.Event()

    def on_commit(text: str) -> None:
        committed.append(text)
        commit.set()

    stream = IncrementalTranscriber(whisper(), partials=False, on_commit=on_commit)
    for phrase in phrases:
        commit.clear()
        for i in range(0, len(phrase), 800):
            stream.feed(phrase[i : i + 800])
        assert commit.wait(60), committed  # the pause committed the words while the "key" was still held
    result = stream.finish()
    assert stream.stats.tail_s == 0.0  # the final pause had already been transcribed: nothing left at release
    assert len(committed) == 2 and committed[1].startswith(committed[0])
    assert word_recall("What is the capital of France? And of Germany?", result.text) >= 0.85


def test_at_release_only_the_stretch_after_the_last_pause_is_decoded() -> None:
    fake = SilentTranscriber("hello there")
    commit = threading.Event()
    stream = IncrementalTranscriber(fake, partials=False, on_commit=lambda _text: commit.set())
    stream.feed(np.concatenate([tone(1.0), np.zeros(8000, np.float32)]))  # speech, then a pause: a commit
    assert commit.wait(30)
    stream.feed(tone(0.7))  # still speaking at release
    result = stream.finish()
    assert stream.stats.committed_s == 1.5 and stream.stats.tail_s == 0.7  # only the tone after the pause
    assert result.text == "hello there" and fake.calls == 2


def test_a_pass_that_no_speech_follows_is_the_final_text_and_a_guess_that_the_message_is_whole() -> None:
    fake = SilentTranscriber("hello there")
    guesses: list[tuple[str, bool]] = []
    settled = threading.Event()

    def on_guess(text: str, whole: bool) -> None:
        guesses.append((text, whole))
        if whole:
            settled.set()

    # A pause long enough to commit never comes: 0.2 s of silence after speech, then the key is released.
    stream = IncrementalTranscriber(fake, partials=False, pause_s=2.0, settle_s=0.1, on_guess=on_guess)
    stream.feed(np.concatenate([tone(1.0), np.zeros(3200, np.float32)]))
    assert settled.wait(30)  # decoded while the key was still held, and offered as the whole message
    stream.feed(np.zeros(1600, np.float32))
    result = stream.finish()
    assert result.text == "hello there" and guesses == [("hello there", True)]
    assert fake.calls == 1 and stream.stats.reused == 1 and stream.stats.tail_s == 0.0  # nothing left at release


def test_speech_after_a_settle_pass_is_decoded_again_at_release() -> None:
    fake = SilentTranscriber("hello there")
    guesses: list[tuple[str, bool]] = []
    first = threading.Event()
    stream = IncrementalTranscriber(
        fake, partials=False, pause_s=2.0, settle_s=0.1, on_guess=lambda t, w: (guesses.append((t, w)), first.set())
    )
    stream.feed(np.concatenate([tone(1.0), np.zeros(3200, np.float32)]))
    assert first.wait(30)
    stream.feed(tone(0.5))  # the speaker went on: that pass's text is not the whole message
    result = stream.finish()
    assert fake.calls == 2 and stream.stats.reused == 0 and stream.stats.tail_s == pytest.approx(1.7)
    assert result.text == "hello there"


def test_edgeassist_pull_dispatches_speech_models(
    online: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from fakehub import FakeHub

    from edgeassist.cli import main

    joe = models.resolve_voice("en_US-joe-medium", tmp_path).path
    models_dir = tmp_path / "models"
    monkeypatch.setenv("EDGEASSIST_MODEL__MODELS_DIR", str(models_dir))
    with FakeHub() as hub:
        onnx, cfg = models.voice_files("en_US-joe-medium")
        hub.add(models.VOICES_REPO, onnx, joe)
        hub.add(models.VOICES_REPO, cfg, Path(f"{joe}.json"))
        monkeypatch.setenv("EDGEASSIST_HUB__ENDPOINT", hub.endpoint)
        assert main(["pull", "-q", "voice:en_US-joe-medium"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == str(models_dir / "voices" / "en_US-joe-medium.onnx") and Path(out).is_file()
    # `models` lists it beside the PyPI fallbacks; `rm` deletes it, and leaves the packages alone.
    assert main(["models", "--json"]) == 0
    speech = json.loads(capsys.readouterr().out)["speech"]
    assert {(m["kind"], m["name"], m["source"]) for m in speech} == {
        ("voice", "en_US-joe-medium", "pulled"),
        ("voice", "en_US-joe-medium", "package"),
        ("whisper", "tiny.en", "package"),
    }
    pulled = next(m for m in speech if m["source"] == "pulled")
    assert pulled["default"] and pulled["size_bytes"] == Path(out).stat().st_size
    assert main(["models"]) == 0
    assert "en_US-joe-medium" in capsys.readouterr().out
    assert main(["rm", "--yes", "voice:en_US-joe-medium"]) == 0
    assert not Path(out).exists() and not Path(f"{out}.json").exists()
    assert main(["rm", "--yes", "voice:en_US-joe-medium"]) == 2  # not pulled any more: the package's is not ours
    assert "pip uninstall" in capsys.readouterr().err
    assert main(["rm", "--yes", "whisper:base.en"]) == 3
    assert "not pulled" in capsys.readouterr().err
