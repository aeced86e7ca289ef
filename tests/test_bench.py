"""The bench: statistics, verdict and recommendation on fixed inputs, the JSON schema, --compare, a short real run
on the tiny synthetic Qwen 3.5, and Ctrl+C. Timings on a shared machine are noise: no test asserts one.

tests/fixtures/bench_a.json and bench_b.json are hand-made results with exact token times (A: a Pi 5 at 2 and 4
threads, decode 60 and 40 ms/token; B: another board at 4 threads, 20 ms/token, plus a 2B run).
tests/fixtures/bench_v1_written.json is what `edgeassist bench --json --voice` wrote before the results were
pydantic-backed (the tiny synthetic model at 1 and 2 threads, 2 repetitions, a fake voice hook): files written by
earlier code must keep loading and comparing.
"""

from __future__ import annotations

import json
import tempfile
import threading
from pathlib import Path

import pytest

from edgeassist.bench import analysis, schema
from edgeassist.bench.analysis import recommend, verdict
from edgeassist.bench.measure import BenchPlan, BenchTarget, Progress, run_bench
from edgeassist.bench.report import render_compare, render_markdown, render_text, voice_lines
from edgeassist.bench.results import SCHEMA, ModelRun, Repetition, TurnSample
from edgeassist.bench.stats import Percentiles, Spread, gaps, histogram, percentile
from edgeassist.bench.store import from_json, load_result, save_result, to_json
from edgeassist.bench.voice import VoiceTarget, run_voice_hook
from edgeassist.cli import main
from edgeassist.config import load_settings
from edgeassist.errors import AudioUnavailableError, UsageError
from edgeassist.hub import CatalogEntry, QuantFile
from edgeassist.system import CpuCluster, physical_cores, recommended_threads, system_report

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]
ADDED_IN_2 = {"endpoint", "no_raw_reason", "server", "jitter", "cores_free", "contention"}
ADDED_IN_2 |= {"third", "resumed", "state_bytes", "resumed_ttft_s", "resumed_base_ttft_s", "resumed_ratio"}
ADDED_IN_2 |= {"resumed_evaluated_tokens", "resumed_prompt_tokens"}
TOOL_KEYS = {"tool_call", "tool_decode_ms", "tool_ratio", "tool_redraw_share", "tool_tokens", "tool_calls"}
TOOL_KEYS |= {"tool_calls_complete"}
ADDED_IN_2 |= TOOL_KEYS
IMAGE_KEYS = {"image", "image_followup", "no_image_reason", "vision_load_s", "images", "image_tokens"}
IMAGE_KEYS |= {"image_prompt_tokens", "image_encode_s", "image_prompt_eval_s", "image_ttft_s", "image_ttft_ratio"}
IMAGE_KEYS |= {"images_encoded", "image_followup_ttft_s", "image_followup_prompt_tokens"}
IMAGE_KEYS |= {"image_followup_evaluated_tokens", "image_followup_read_again"}
ADDED_IN_2 |= IMAGE_KEYS
ADDED_IN_2 |= {"repacking"}
"""The keys schema 2 added (some later, within 2), each with a default: a schema 1 file read again gains them."""


def without(data: object, keys: set[str]) -> object:
    """`data` with `keys` taken out of every object in it, however deep."""
    if isinstance(data, dict):
        return {k: without(v, keys) for k, v in data.items() if k not in keys}
    if isinstance(data, list):
        return [without(v, keys) for v in data]
    return data


# -- statistics --------------------------------------------------------------------------------------------


def test_percentiles_interpolate_like_numpy() -> None:
    xs = [float(x) for x in range(1, 11)]  # 1..10, shuffled order must not matter
    shuffled = xs[5:] + xs[:5]
    assert percentile(shuffled, 0) == 1.0
    assert percentile(shuffled, 100) == 10.0
    assert percentile(shuffled, 50) == pytest.approx(5.5)
    assert percentile(shuffled, 90) == pytest.approx(9.1)
    assert percentile(shuffled, 99) == pytest.approx(9.91)
    assert percentile([7.0], 99) == 7.0
    p = Percentiles.of(shuffled)
    assert p is not None
    assert (p.p50, p.min, p.max, p.n, p.mean) == (pytest.approx(5.5), 1.0, 10.0, 10, pytest.approx(5.5))
    assert p.scaled(1000).p90 == pytest.approx(9100)
    assert Percentiles.of([]) is None
    with pytest.raises(ValueError):
        percentile([], 50)


def test_spread_gaps_and_histogram() -> None:
    assert Spread.of([3.0, 1.0, 2.0]) == Spread(2.0, 1.0, 3.0, 3)
    assert Spread.of([]) is None
    assert gaps([0.5, 0.6, 0.8]) == pytest.approx([0.1, 0.2])
    samples = [10.0] * 50 + [20.0] * 30 + [1000.0]
    bins, above = histogram(samples, bins=5, upper=30.0)
    assert sum(b.count for b in bins) + above == len(samples)
    assert above == 1  # the stall is counted, not drawn
    assert bins[0].count == 50 and bins[-1].hi == pytest.approx(30.0)


# -- verdict and recommendation ----------------------------------------------------------------------------


def test_verdict_on_fixed_inputs() -> None:
    assert verdict(40.0, 48.0, 50.0).status == "meets"
    v = verdict(40.0, 60.0, 50.0)
    assert (v.status, v.meets_p50, v.meets_p90) == ("p50-only", True, False)
    assert verdict(55.0, 70.0, 50.0).status == "misses"
    assert verdict(None, None, 50.0).status == "unknown"
    assert verdict(50.0, 50.0, 50.0).status == "meets"  # at the target counts


def _run_with_gaps(file_bytes: int, gap_s: float, tail_s: float, threads: int = 4) -> ModelRun:
    """A run whose pooled decode gaps are nine of `gap_s` and one of `tail_s` per repetition."""
    times = [0.5]
    for g in [gap_s] * 9 + [tail_s]:
        times.append(times[-1] + g)
    first = TurnSample(128, 0, 128, 0.49, 0.5, 0.5, times, len(times), "length")
    run = ModelRun("m", "m.gguf", file_bytes, "q4_k_m", None, False, threads, 4096, 512, "cpu", True)
    run.repetitions = [Repetition(first, None, None, None)]
    run.complete = True
    run.summary = analysis.summarize(run, 50.0)
    return run


def _catalog() -> dict[str, CatalogEntry]:
    def entry(name: str, params: float, q4: int, q8: int) -> CatalogEntry:
        return CatalogEntry(
            name,
            f"x/{name}",
            params,
            {"q4_k_m": QuantFile("Q4_K_M", "a.gguf", q4, q4), "q8_0": QuantFile("Q8_0", "b.gguf", None, q8)},
        )

    return {"s": entry("s", 0.8, 500_000_000, 850_000_000), "l": entry("l", 2.0, 1_250_000_000, 2_100_000_000)}


def test_recommendation_scales_measured_bandwidth_by_file_size() -> None:
    # 500 MB at 20 ms/token: 25 GB/s. Gaps 9 x 20 ms and 1 x 30 ms: p90 interpolates to 21 ms, a 1.05 tail.
    run = _run_with_gaps(500_000_000, 0.020, 0.030)
    assert run.summary is not None and run.summary.decode_ms is not None
    assert run.summary.decode_ms.p50 == pytest.approx(20.0)
    assert run.summary.bandwidth_gbs == pytest.approx(25.0)
    tail = run.summary.decode_ms.p90 / run.summary.decode_ms.p50
    rec = recommend([run], 52.0, 16_000_000_000, 4096, _catalog())
    assert rec is not None
    assert rec.bandwidth_gbs == pytest.approx(25.0) and tail == pytest.approx(1.05)
    by_name = {c.model: c for c in rec.candidates}
    assert by_name["l:q4_k_m"].predicted_p50_ms == pytest.approx(50.0)  # 1.25 GB / 25 GB/s
    assert by_name["l:q4_k_m"].predicted_p90_ms == pytest.approx(50.0 * tail)
    # l:q4_k_m meets 52 ms at p50 but not at p90 (52.5 ms); s:q8_0 (34 ms) is the largest that meets p90.
    assert rec.model == "s:q8_0"
    assert rec.model_p50 == "l:q4_k_m"
    assert [c.model for c in rec.candidates] == ["s:q4_k_m", "s:q8_0", "l:q4_k_m", "l:q8_0"]
    assert "estimate" in rec.note


def test_recommendation_respects_ram_and_can_be_none() -> None:
    run = _run_with_gaps(500_000_000, 0.010, 0.010)  # fast: 50 GB/s, everything meets the target by speed
    rec = recommend([run], 50.0, 1_500_000_000, 4096, _catalog())  # 1.5 GB of RAM: only the smallest fits
    assert rec is not None
    assert [c.model for c in rec.candidates if c.fits_ram] == ["s:q4_k_m"]
    assert rec.model == "s:q4_k_m"
    slow = _run_with_gaps(500_000_000, 0.200, 0.200)
    rec = recommend([slow], 50.0, 16_000_000_000, 4096, _catalog())
    assert rec is not None and rec.model is None and rec.model_p50 is None
    assert "no catalog model" in rec.note
    assert "--endpoint" in rec.note  # and where to go instead: a server
    assert recommend([], 50.0, None, 4096, _catalog()) is None


def test_recommendation_uses_the_largest_model_at_its_fastest_threads() -> None:
    small = _run_with_gaps(100_000_000, 0.005, 0.005)
    big_slow = _run_with_gaps(500_000_000, 0.040, 0.040, threads=1)
    big_fast = _run_with_gaps(500_000_000, 0.025, 0.025, threads=4)
    base = analysis.basis_run([small, big_slow, big_fast])
    assert base is big_fast


# -- system report -----------------------------------------------------------------------------------------


def test_system_report_and_big_little_threads() -> None:
    report = system_report(with_llama=False)
    assert report.physical_cores == physical_cores()
    assert report.logical_cores >= 1 and report.cpu_model and report.python
    assert report.llama is None
    big = CpuCluster([4, 5, 6, 7], "Cortex-A76", 2400.0, 1024)
    little = CpuCluster([0, 1, 2, 3], "Cortex-A55", 1800.0, 400)
    assert recommended_threads([big, little], 8) == 4
    assert recommended_threads([big], 4) == 4
    from dataclasses import replace

    bl = replace(report, clusters=[big, little], physical_cores=8, recommended_threads=4)
    assert bl.thread_note() is not None and "--threads 4,8" in (bl.thread_note() or "")
    assert replace(report, clusters=[]).thread_note() is None


# -- JSON schema and fixtures ------------------------------------------------------------------------------


def test_schema_file_is_current() -> None:
    """docs/bench-schema.json is generated: `python -m edgeassist.bench.schema > docs/bench-schema.json`."""
    on_disk = json.loads((REPO / "docs" / "bench-schema.json").read_text())
    assert on_disk == schema.json_schema()


def test_fixtures_match_schema_and_round_trip() -> None:
    for name in ("bench_a.json", "bench_b.json"):
        data = json.loads((FIXTURES / name).read_text())
        assert schema.validate(data) == []
        assert data["schema"] == "edgeassist-bench/1"
        written = to_json(from_json(data))
        assert without(written, ADDED_IN_2) == data  # nothing lost or changed, only schema 2's keys added
        for run in written["runs"]:
            assert run["endpoint"] is None and run["no_raw_reason"] is None  # a schema 1 run is a local one
            assert all(rep["first"]["server"] is None for rep in run["repetitions"])


def test_validator_catches_problems() -> None:
    data = json.loads((FIXTURES / "bench_a.json").read_text())
    data["runs"][0]["threads"] = "two"
    del data["runs"][0]["repetitions"][0]["first"]["token_times"]
    data["extra"] = 1
    errors = schema.validate(data)
    assert any("threads" in e for e in errors)
    assert any("token_times" in e for e in errors)
    assert any("extra" in e for e in errors)


def test_a_file_written_by_earlier_code_loads_the_same(tmp_path: Path) -> None:
    path = FIXTURES / "bench_v1_written.json"
    data = json.loads(path.read_text())
    result = load_result(path)
    assert schema.validate(data) == []
    assert len(result.runs) == 2 and result.system.llama is not None and result.voice is not None
    assert result.recommendation is not None
    # The summaries recomputed from the samples are the ones the earlier code wrote, and saving writes the same
    # keys and values (the recommendation also depends on the catalog, so it is left out of the comparison).
    # Schema 2's keys are added, and the jitter is derived anew for every run.
    again = tmp_path / "again.json"
    save_result(result, again)
    written = json.loads(again.read_text())
    assert without({k: v for k, v in written.items() if k != "recommendation"}, ADDED_IN_2) == {
        k: v for k, v in data.items() if k != "recommendation"
    }
    for run in written["runs"]:
        jitter, decode = run["summary"]["jitter"], run["summary"]["decode_ms"]
        assert jitter["gaps"] == decode["n"] and jitter["spread_ms"] == pytest.approx(decode["p90"] - decode["p50"])
        assert run["summary"]["server"] is None  # local


def test_compare_a_file_written_by_earlier_code(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["bench", "--compare", str(FIXTURES / "bench_a.json"), str(FIXTURES / "bench_v1_written.json")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "synthetic-qwen3.5-tiny-Q4_K_M @ 2 threads" in out and "only in B" in out


def test_load_result_ignores_unknown_keys_and_names_a_wrong_one(tmp_path: Path) -> None:
    data = json.loads((FIXTURES / "bench_a.json").read_text())
    data["from_a_newer_edgeassist"] = 1
    data["runs"][0]["repetitions"][0]["first"]["also_new"] = [1, 2]
    path = tmp_path / "newer.json"
    path.write_text(json.dumps(data))
    assert load_result(path).runs[0].repetitions[0].first.token_times
    data["runs"][0]["threads"] = "two"
    path.write_text(json.dumps(data))
    with pytest.raises(UsageError, match=r"does not match the bench schema: \$\.runs\[0\]\.threads"):
        load_result(path)


def test_load_result_rejects_foreign_files(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text('{"hello": 1}')
    with pytest.raises(UsageError, match="not an edgeassist bench result"):
        load_result(bad)
    bad.write_text("{nope")
    with pytest.raises(UsageError, match="not JSON"):
        load_result(bad)


def test_compare_two_fixture_files(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["bench", "--compare", str(FIXTURES / "bench_a.json"), str(FIXTURES / "bench_b.json")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "Raspberry Pi 5" in out and "8x Cortex-A78" in out
    block = out.split("synthetic-qwen3.5-0.8b:q4_k_m @ 4 threads")[1].split("\n\n")[0]
    decode = next(line for line in block.splitlines() if "decode p50 ms" in line)
    assert "40.0" in decode and "20.0" in decode and "0.50x" in decode and "B better" in decode
    assert "only in A" in out  # the 2-thread run
    assert "synthetic-qwen3.5-2b:q4_k_m @ 4 threads" in out and "only in B" in out


def test_compare_renders_from_loaded_results() -> None:
    a, b = load_result(FIXTURES / "bench_a.json"), load_result(FIXTURES / "bench_b.json")
    text = render_compare(a, b)
    assert text.count("B/A") == 1  # one matched run
    assert a.runs[0].summary is not None and a.runs[0].summary.ratio is not None


def test_reports_from_fixture() -> None:
    result = load_result(FIXTURES / "bench_a.json")
    text = render_text(result)
    for part in ("System", "Raspberry Pi 5", "time to first token", "follow-up time to first token",
                 "decode (edgeassist)", "decode (raw llama.cpp)", "edgeassist / raw", "excess per token",
                 "peak memory", "verdict", "per-token latency", "Summary", "Recommendation (an estimate)"):  # fmt: skip
        assert part in text, part
    md = render_markdown(result)
    assert md.startswith("### edgeassist bench") and "| model | threads |" in md and "<details>" in md


def test_voice_hook_results_are_summarised() -> None:
    settings = load_settings()
    target = VoiceTarget("tiny", Path("tiny.gguf"), 2)
    result = run_voice_hook(lambda s, t: {"stt_final_s": [0.4, 0.2, 0.3], t.name: [1.0]}, settings, target)
    assert [s.name for s in result.stages] == ["stt_final_s", "tiny"]
    assert result.stages[0].summary == Spread(0.3, 0.2, 0.4, 3)
    assert result.error is None and result.model == "tiny" and result.threads == 2


def test_voice_report_names_stages_and_gives_the_verdict() -> None:
    settings = load_settings()
    stages = {"stt_rtf": [0.15, 0.25], "speech_end_to_first_audio_s": [0.7, 0.9, 1.6]}
    result = load_result(FIXTURES / "bench_a.json")
    target = VoiceTarget("m", Path("m.gguf"), 1)
    result.voice = run_voice_hook(lambda s, t: stages, settings, target)
    text = "\n".join(voice_lines(result))
    assert "speech to text: real-time factor" in text and "0.20" in text  # a ratio, not seconds
    assert "end of speech → first audio" in text and "900 ms" in text
    assert "meets the 1.0 s target" in text
    result.voice = run_voice_hook(lambda s, t: {"speech_end_to_first_audio_s": [1.2]}, settings, target)
    assert "misses the 1.0 s target" in "\n".join(voice_lines(result))


def test_a_failing_voice_hook_is_recorded_not_raised() -> None:
    def broken(settings: object, target: object) -> dict[str, list[float]]:
        raise AudioUnavailableError("no piper voice")

    result = run_voice_hook(broken, load_settings(), VoiceTarget("m", Path("m.gguf"), 1))
    assert result.stages == [] and result.error == "no piper voice"


# -- real runs on the tiny synthetic Qwen 3.5 --------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tiny_qwen35: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, dict[str, object]]:
    """`edgeassist bench --voice` on the tiny model (1 repetition, 8 tokens, 1 and 2 threads; a fake voice hook)."""
    out = tmp_path_factory.mktemp("bench") / "tiny.json"
    import contextlib
    import io

    def fake_voice(settings: object, target: VoiceTarget) -> dict[str, list[float]]:
        assert target.path == tiny_qwen35 and target.threads == 1 and not target.random_text
        return {"transcribe": [0.25], "first_audio": [0.9]}

    buf = io.StringIO()
    earlier = set(Path(tempfile.gettempdir()).glob("edgeassist-bench-states-*"))  # (other processes' are not ours)
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(buf):
        mp.setattr("edgeassist.bench.voice.find_voice_hook", lambda: fake_voice)
        rc = main(
            ["bench", "-m", str(tiny_qwen35), "-r", "1", "-p", "48", "-n", "8", "--warmup", "0"]
            + ["--threads", "1,2", "--n-ctx", "512", "--json", str(out), "-q", "--voice"]
        )
    # The bench's kept states went to a folder of its own, now gone.
    assert set(Path(tempfile.gettempdir()).glob("edgeassist-bench-states-*")) <= earlier
    return rc, buf.getvalue(), json.loads(out.read_text())


def test_real_run_prints_every_section(tiny_run: tuple[int, str, dict[str, object]]) -> None:
    rc, text, _ = tiny_run
    assert rc == 0
    for part in ("System", "llama.cpp", "time to first token", "follow-up time to first token",
                 "decode (edgeassist)", "decode (raw llama.cpp)", "edgeassist / raw", "excess per token",
                 "peak memory", "verdict", "per-token latency", "Summary", "Recommendation (an estimate)",
                 "Voice pipeline", "transcribe", "resumed chat time to first token",
                 "tool call (grammar held)"):  # fmt: skip
        assert part in text, part


def test_real_run_json_holds_raw_samples(tiny_run: tuple[int, str, dict[str, object]]) -> None:
    _, _, data = tiny_run
    assert schema.validate(data) == []
    assert data["schema"] == SCHEMA and data["complete"] is True and data["interrupted"] is False
    runs = data["runs"]
    assert isinstance(runs, list) and [r["threads"] for r in runs] == [1, 2]
    for run in runs:
        assert run["complete"] and run["recurrent"] and len(run["load_s"]) == 1
        (rep,) = run["repetitions"]
        first, follow, raw = rep["first"], rep["followup"], rep["raw"]
        # End-of-generation is suppressed: exactly gen_tokens every time, so repetitions compare.
        assert len(first["token_times"]) == first["generated_tokens"] == 8
        assert 40 <= first["prompt_tokens"] <= 48  # the filler is fitted to the requested prompt length
        assert first["evaluated_tokens"] > 0
        assert len(raw["token_times"]) == 8 and raw["prompt_tokens"] == first["prompt_tokens"]
        # The follow-up reuses the first turn's state: it evaluates only the new tokens.
        assert follow["reused_tokens"] > 0 and follow["evaluated_tokens"] < follow["prompt_tokens"]
        assert len(run["overheads"]["sample_s"]) == 8
        assert run["summary"]["decode_ms"]["n"] == 7 and run["summary"]["ratio"] > 0
        # The resumed chat's turn starts from the follow-up's state on disk, nothing in memory: it
        # evaluates exactly what the same turn did in the same process, and the state was restored.
        third, resumed = rep["third"], rep["resumed"]
        assert resumed["prompt_tokens"] == third["prompt_tokens"]
        assert resumed["evaluated_tokens"] == third["evaluated_tokens"] < third["prompt_tokens"] // 2
        assert rep["state_bytes"] > 0 and run["summary"]["resumed_ratio"] > 0
        # A forced tool call (the model can call tools): every token held to the grammar, at most 2 x 8 of them.
        call, summary = rep["tool_call"], run["summary"]
        assert 0 < call["generated_tokens"] == len(call["token_times"]) <= 16 and call["first_event_s"] is None
        assert call["grammar_tokens"] - call["generated_tokens"] in (0, 1)  # (+1: the end of a complete call)
        assert 0 <= call["grammar_redraws"] <= call["grammar_tokens"]
        assert (call["call_s"] is not None) == (call["finish_reason"] == "stop")
        assert summary["tool_decode_ms"]["p50"] > 0 and summary["tool_ratio"] > 0
        assert 0 <= summary["tool_redraw_share"] <= 1 and summary["tool_calls"] == 1
    assert data["recommendation"]["candidates"]
    assert [st["name"] for st in data["voice"]["stages"]] == ["transcribe", "first_audio"]


def test_a_result_without_tool_calls_loads_and_compares(
    tiny_run: tuple[int, str, dict[str, object]], tmp_path: Path
) -> None:
    _, _, data = tiny_run
    older = tmp_path / "older.json"
    older.write_text(json.dumps(without(data, TOOL_KEYS)))  # as written before the tool call was measured
    result = load_result(older)
    assert all(rep.tool_call is None for run in result.runs for rep in run.repetitions)
    assert all(run.summary is not None and run.summary.tool_decode_ms is None for run in result.runs)
    assert "tool call" not in render_text(result) and "tool call" not in render_markdown(result)
    rows = [line for line in render_compare(result, from_json(data)).splitlines() if "tool call p50 ms" in line]
    assert len(rows) == 2 and all(" – " in row for row in rows)  # per run: only B has it


def test_a_model_without_tools_has_no_tool_call(starter_gguf: Path, tmp_path: Path) -> None:
    out = tmp_path / "starter.json"
    settings = load_settings(flags={"model": {"n_ctx": 512}})
    plan = BenchPlan([BenchTarget("starter", starter_gguf, starter=True)], [1], 1, 32, 4, 50.0, 0, raw_baseline=False)
    result = run_bench(settings, plan)
    save_result(result, out)
    (run,) = result.runs
    assert run.complete and run.repetitions[0].tool_call is None and run.summary is not None
    assert run.summary.tool_decode_ms is None and run.summary.tool_calls is None
    assert "tool call" not in render_text(result) and "tool call" not in render_markdown(result)
    assert json.loads(out.read_text())["runs"][0]["repetitions"][0]["tool_call"] is None


def test_ctrl_c_returns_what_was_measured(tiny_qwen35: Path) -> None:
    settings = load_settings(flags={"model": {"n_ctx": 512}})
    plan = BenchPlan(
        targets=[BenchTarget("tiny", tiny_qwen35, "q4_k_m", "tiny")],
        threads=[1],
        repetitions=2,
        prompt_tokens=32,
        gen_tokens=4,
        target_ms=50.0,
        warmup=0,
    )
    steps: list[str] = []

    def progress(p: Progress) -> None:
        steps.append(p.step)
        if p.step == "repetition 2/2":
            raise KeyboardInterrupt  # what Ctrl+C does, landing in the middle of the bench

    result = run_bench(settings, plan, progress=progress)
    assert result.interrupted and not result.complete
    (run,) = result.runs
    assert not run.complete and len(run.repetitions) == 1 and run.repetitions[0].raw is not None
    assert run.summary is not None and run.summary.decode_ms is not None  # the first repetition counts
    assert "INTERRUPTED" in render_text(result)
    assert schema.validate(to_json(result)) == []


def test_cancel_event_stops_cleanly(tiny_qwen35: Path, isolated_env: Path) -> None:
    settings = load_settings(flags={"model": {"n_ctx": 512}})
    cancel = threading.Event()
    plan = BenchPlan([BenchTarget("tiny", tiny_qwen35)], [1, 2], 1, 32, 4, 50.0, warmup=0)

    def progress(p: Progress) -> None:
        if p.step.startswith("timing"):
            cancel.set()

    result = run_bench(settings, plan, progress=progress, cancel=cancel)
    assert result.interrupted
    assert len(result.runs) == 1 and len(result.runs[0].repetitions) == 1  # the 2-thread run never started
    rep = result.runs[0].repetitions[0]
    assert rep.resumed is not None and rep.third is not None  # (a kept state was written and read back)
    # The bench keeps its states in a folder of its own, gone now: the user's are neither read nor evicted.
    assert not (isolated_env / "data").exists()


def test_cli_ctrl_c_prints_partial_report_and_json(
    tiny_qwen35: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgeassist.cli import bench as cli_bench

    def interrupt(self: object, p: Progress) -> None:
        if p.step.startswith("timing"):
            raise KeyboardInterrupt

    monkeypatch.setattr(cli_bench.ProgressPrinter, "__call__", interrupt)
    out = tmp_path / "partial.json"
    rc = main(["bench", "-m", str(tiny_qwen35), "-r", "1", "-p", "32", "-n", "4", "--warmup", "0", "--threads", "1"]
              + ["--n-ctx", "512", "--json", str(out)])  # fmt: skip
    captured = capsys.readouterr()
    assert rc == 130
    assert "INTERRUPTED" in captured.out and "decode (edgeassist)" in captured.out
    assert "interrupted" in captured.err
    data = json.loads(out.read_text())
    assert data["interrupted"] is True and len(data["runs"][0]["repetitions"]) == 1


def test_bad_flags_are_one_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--target-ms", "0", "--compare", "a", "b"]) == 2
    assert "bench.target_ms" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--threads", "0,2"])
    assert main(["bench", "-p", "4000", "-n", "200"]) == 2
    assert "context" in capsys.readouterr().err
