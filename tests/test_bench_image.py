"""`edgeassist bench --image`: a picture in a new conversation's first message, through the real mtmd path.

The tiny synthetic Qwen 3.5 and its projector run the vision encoder for real; the starter model
cannot see. Timings on a shared machine are noise: the tests check counts and how the figures relate
(the encoder's time is part of the prompt's), never a threshold.
"""

from __future__ import annotations

import argparse
import json
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from edgeassist.bench import analysis, schema
from edgeassist.bench.measure import BenchPlan, BenchTarget, run_bench
from edgeassist.bench.picture import GENERATED, TEST_PICTURE_SIZE, bench_picture, copy_of, generate_picture
from edgeassist.bench.report import render_compare, render_markdown, render_text
from edgeassist.bench.results import ImageSample, ModelRun, Repetition, TurnSample
from edgeassist.bench.store import from_json, to_json
from edgeassist.cli import main
from edgeassist.config import load_settings
from edgeassist.images import rgb_pixels

SHORT = ["-r", "2", "-p", "32", "-n", "4", "--warmup", "0", "--threads", "1", "--n-ctx", "1024", "-q"]
"""The smallest bench that still has medians over more than one repetition."""


def jpeg(path: Path) -> Path:
    """A small JPEG with a few shapes."""
    im = Image.new("RGB", (320, 240), (200, 40, 40))
    draw = ImageDraw.Draw(im)
    draw.ellipse((80, 60, 160, 120), fill=(20, 200, 90))
    draw.rectangle((160, 120, 310, 230), fill=(30, 30, 220))
    im.save(path, quality=92)
    return path


# -- the picture -------------------------------------------------------------------------------------------


def test_the_generated_picture_is_the_same_every_time_and_not_flat() -> None:
    data = generate_picture()
    assert data == generate_picture()
    picture = bench_picture(GENERATED)
    assert (picture.width, picture.height) == TEST_PICTURE_SIZE and picture.format == "PNG"
    w, h = TEST_PICTURE_SIZE
    assert len(data) > w * h // 2  # about as hard to compress as a photo, not a flat colour


def test_a_copy_has_other_bytes_and_the_same_pixels(tmp_path: Path) -> None:
    for picture in (bench_picture(GENERATED), bench_picture(jpeg(tmp_path / "p.jpg"))):
        copy = copy_of(picture, "Run 1.")
        assert copy.sha256 != picture.sha256 and copy.sha256 != copy_of(picture, "Run 2.").sha256
        assert (copy.format, copy.width, copy.height) == (picture.format, picture.width, picture.height)
        assert rgb_pixels(copy, 1 << 16) == rgb_pixels(picture, 1 << 16)


# -- a real run with the tiny model and its projector --------------------------------------------------------


@pytest.fixture(scope="module")
def image_run(
    tiny_qwen35: Path, tiny_qwen35_vision: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[int, str, dict[str, Any]]:
    """`edgeassist bench --image` (the generated picture) on the tiny model, its projector beside it."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("bench-image") / "image.json"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["bench", "-m", str(tiny_qwen35), *SHORT, "--image", "--json", str(out)])
    return rc, buf.getvalue(), json.loads(out.read_text())


def test_the_report_has_the_image_line_beside_the_text_figures(image_run: tuple[int, str, dict[str, Any]]) -> None:
    rc, text, _ = image_run
    assert rc == 0
    for part in ("time to first token", "follow-up time to first token", "decode (edgeassist)",
                 "image time to first token", "follow-up after the picture", "first picture after load",
                 "image turns with the generated test picture (1024x768 PNG)"):  # fmt: skip
        assert part in text, part
    line = next(row for row in text.splitlines() if "image time to first token" in row)
    assert "1 picture, " in line and " tokens of a " in line and "encode " in line and "text-only " in line
    assert "read the picture again: no" in text


def test_the_picture_is_encoded_once_per_conversation_and_reused_after(
    image_run: tuple[int, str, dict[str, Any]],
) -> None:
    _, _, data = image_run
    assert schema.validate(data) == []
    config = data["config"]
    assert config["image"]["source"] == GENERATED and config["image"]["format"] == "PNG"
    (run,) = data["runs"]
    assert run["complete"] and run["no_image_reason"] is None and run["vision_load_s"] > 0
    reps = run["repetitions"]
    assert len(reps) == 2
    for rep in reps:
        image, after = rep["image"], rep["image_followup"]
        # Each repetition's conversation brings a copy of its own: the encoder reads it, once.
        assert image["images"] == 1 and image["images_encoded"] == 1
        assert 0 < image["image_tokens"] < image["prompt_tokens"]
        assert 0 < image["image_encode_s"] <= image["prompt_eval_s"]
        assert image["reused_tokens"] == 0  # nothing of the text turns (another system prompt nonce)
        assert image["image_tokens"] < image["picture_end"] <= image["prompt_tokens"]
        assert image["generated_tokens"] == 4 and image["ttft_s"] >= image["prompt_eval_s"]
        # The text first turn of the repetition had the same message without the picture.
        assert image["prompt_tokens"] > rep["first"]["prompt_tokens"] + image["image_tokens"] - 8
        # The follow-up keeps the picture in the reused state: no encoder, nothing before its end read again.
        assert after["images"] == 1 and after["image_tokens"] == image["image_tokens"]
        assert after["images_encoded"] == 0 and after["image_encode_s"] == 0
        assert after["picture_end"] == image["picture_end"] <= after["reused_tokens"]
        assert after["evaluated_tokens"] < after["prompt_tokens"] - after["image_tokens"]
    summary = run["summary"]
    assert summary["images"] == 1 and summary["images_encoded"] == 2
    assert summary["image_tokens"] == reps[0]["image"]["image_tokens"]
    assert summary["image_encode_s"]["n"] == summary["image_ttft_s"]["n"] == 2
    assert summary["image_encode_s"]["median"] <= summary["image_prompt_eval_s"]["median"]
    assert summary["image_followup_read_again"] is False and summary["image_ttft_ratio"] > 0


def test_the_markdown_and_a_comparison_carry_the_image_figures(image_run: tuple[int, str, dict[str, Any]]) -> None:
    _, _, data = image_run
    result = from_json(data)
    md = render_markdown(result)
    assert "image TTFT" in md  # the sweep table's column
    bullet = next(line for line in md.splitlines() if ": image " in line)
    assert "1 picture" in bullet and "encode" in bullet and "follow-up read it again: no" in bullet
    text = render_compare(result, result)
    assert "image TTFT" in text and "image encode" in text


def test_a_model_that_cannot_see_says_so_in_one_line_and_runs_the_text_figures(
    starter_gguf: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "starter.json"
    rc = main(["bench", "-m", "starter", *SHORT, "--no-raw", "--image", "--json", str(out)])
    captured = capsys.readouterr()
    assert rc == 0
    said = [line for line in captured.out.splitlines() if "cannot see" in line]
    assert len(said) == 1 and said[0].split()[0] == "image" and "edgeassist pull" in said[0]
    assert "image time to first token" not in captured.out
    assert "time to first token" in captured.out and "decode (edgeassist)" in captured.out
    data = json.loads(out.read_text())
    (run,) = data["runs"]
    assert run["complete"] and "cannot see" in run["no_image_reason"] and run["vision_load_s"] is None
    assert all(rep["image"] is None and rep["first"]["generated_tokens"] == 4 for rep in run["repetitions"])
    assert run["summary"]["ttft_s"]["n"] == 2 and run["summary"]["image_ttft_s"] is None


def test_a_bad_image_is_one_line_and_exit_12_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def nothing_runs(*args: object, **kwargs: object) -> None:
        raise AssertionError("the bench started before the picture was checked")

    monkeypatch.setattr("edgeassist.cli.bench.resolve_targets", nothing_runs)
    monkeypatch.setattr("edgeassist.bench.measure.run_bench", nothing_runs)
    text = tmp_path / "notes.png"
    text.write_text("not a picture at all\n")
    half = tmp_path / "half.jpg"
    half.write_bytes(jpeg(tmp_path / "whole.jpg").read_bytes()[:400])
    for bad in (text, half, tmp_path / "missing.jpg", tmp_path):
        assert main(["bench", "--synthetic", "tiny", "-q", "--image", str(bad)]) == 12
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("edgeassist: ") and bad.name in err


def test_with_synthetic_the_projector_is_built_beside_the_model(
    tiny_qwen35: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgeassist.cli.bench import resolve_targets
    from edgeassist.synthetic import default_path, projector_path

    models = tmp_path / "models"
    model = default_path("tiny", "Q4_K_M", models)
    model.parent.mkdir()
    shutil.copy(tiny_qwen35, model)  # (the model is reused as it is: only the projector is new)
    monkeypatch.setenv("EDGEASSIST_MODEL__MODELS_DIR", str(models))
    args = argparse.Namespace(synthetic=["tiny"], quant="Q4_K_M", models=None, image=None)
    said: list[str] = []
    resolve_targets(args, load_settings(), said.append)
    assert not projector_path(model).exists()  # without --image nothing more is built
    args.image = GENERATED
    (target,) = resolve_targets(args, load_settings(), said.append)
    assert target.path == model and projector_path(model).is_file()
    assert any("vision projector" in line for line in said)


# -- stopping ------------------------------------------------------------------------------------------------


def test_a_stop_during_the_image_turn_keeps_what_was_measured(
    tiny_qwen35: Path, tiny_qwen35_vision: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgeassist.bench import measure

    cancel = threading.Event()

    def stop_as_it_starts(picture: object, tag: str) -> object:
        copy = copy_of(picture, tag)  # type: ignore[arg-type]
        if tag == "Run 2.":
            cancel.set()  # (Ctrl+C sets the same event while the model thread works)
        return copy

    monkeypatch.setattr(measure, "copy_of", stop_as_it_starts)
    settings = load_settings(flags={"model": {"n_ctx": 1024}})
    picture = bench_picture(jpeg(tmp_path / "p.jpg"))
    target = BenchTarget("tiny", tiny_qwen35, "q4_k_m", "tiny")
    plan = BenchPlan([target], [1], 2, 32, 4, 50.0, warmup=0, raw_baseline=False, image=picture, image_source="p.jpg")
    result = run_bench(settings, plan, cancel=cancel)
    assert result.interrupted and not result.complete
    (run,) = result.runs
    first, second = run.repetitions
    assert first.image is not None and first.image_followup is not None
    assert second.first is not None and second.image is None  # stopped in its image turn
    assert run.summary is not None and run.summary.image_ttft_s is not None and run.summary.image_ttft_s.n == 1
    text = render_text(result)
    assert "INTERRUPTED" in text and "image time to first token" in text and "p.jpg (320x240 JPEG)" in text
    assert schema.validate(to_json(result)) == []


# -- the figures from fixed samples ---------------------------------------------------------------------------


def _image_sample(encoded: int, reused: int, evaluated: int, prompt: int, ttft: float) -> ImageSample:
    return ImageSample(prompt, reused, evaluated, ttft - 0.01, ttft, ttft, [ttft, ttft + 0.02], 2, "length",
                       images=1, image_tokens=252, images_encoded=encoded, image_encode_s=0.5 * encoded,
                       picture_end=270)  # fmt: skip


def test_a_follow_up_that_read_the_picture_again_is_called_out() -> None:
    first = TurnSample(128, 0, 128, 0.19, 0.2, 0.2, [0.2, 0.22, 0.24], 3, "length")
    run = ModelRun("m", "m.gguf", 1, "q4_k_m", None, False, 2, 4096, 512, "cpu", True, complete=True)
    run.repetitions = [
        Repetition(first, None, None, None, image=_image_sample(1, 0, 400, 400, 1.0),
                   image_followup=_image_sample(0, 380, 40, 420, 0.1)),
        Repetition(first, None, None, None, image=_image_sample(1, 0, 400, 400, 3.0),
                   image_followup=_image_sample(0, 100, 320, 420, 0.9)),  # reuse stopped before the picture's end
    ]  # fmt: skip
    s = analysis.summarize(run, 50.0)
    assert s.image_ttft_s is not None and s.image_ttft_s.median == pytest.approx(2.0)
    assert s.image_ttft_ratio == pytest.approx(10.0) and s.images_encoded == 2 and s.image_tokens == 252
    assert s.image_encode_s is not None and s.image_encode_s.median == pytest.approx(0.5)
    assert s.image_followup_read_again is True
    run.repetitions[1].image_followup = _image_sample(1, 380, 40, 420, 0.1)  # the encoder ran again
    assert analysis.summarize(run, 50.0).image_followup_read_again is True
    run.repetitions[1].image_followup = _image_sample(0, 380, 40, 420, 0.1)
    assert analysis.summarize(run, 50.0).image_followup_read_again is False
