"""The bench on a remote engine: against the real test server (llama-cpp-python's, with the starter model), through
a fault proxy where the test needs a key or a silent server; `--compare` of a saved local run with a saved remote
one, and of both in one invocation; the server-reported figures on fixed inputs. No test asserts a timing value.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import LlamaServer, free_port
from remote_proxy import Fault, FaultProxy

from edgeassist.bench import analysis, schema
from edgeassist.bench.report import remote_lines, render_markdown, render_text
from edgeassist.bench.results import SCHEMA, ModelRun, Repetition, ServerFigures, TurnSample
from edgeassist.bench.store import load_result
from edgeassist.cli import main
from edgeassist.engine.base import Stats

KEY = "sekrit-bench-key-4711"
"""The API key the proxy wants: it must reach the server and appear nowhere in what the bench writes."""
SMALL = ["-p", "16", "-n", "8", "--warmup", "0"]
FIXTURES = Path(__file__).parent / "fixtures"


@dataclass(frozen=True)
class Ran:
    """One `edgeassist bench` invocation in this process."""

    rc: int
    out: str
    err: str
    json: dict[str, object]
    path: Path


def bench(*args: str, json_path: Path | None = None) -> Ran:
    """Run `edgeassist bench ARGS` in this process (as the local bench tests do), capturing its output."""
    out, err = io.StringIO(), io.StringIO()
    extra = ["--json", str(json_path)] if json_path is not None else []
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["bench", *args, *extra])
    data = json.loads(json_path.read_text()) if json_path is not None and json_path.exists() else {}
    return Ran(rc, out.getvalue(), err.getvalue(), data, json_path or Path())


@pytest.fixture(scope="module")
def quiet_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The isolated environment (tests/conftest.py's `isolated_env`) for this module's shared runs."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        for var, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_DATA_HOME", "data"), ("HF_HOME", "hf")):
            mp.setenv(var, str(home / sub))
        mp.setenv("HF_HUB_OFFLINE", "1")
        for name in list(os.environ):
            if name.startswith("EDGEASSIST_") and name != "EDGEASSIST_CACHE_DIR":
                mp.delenv(name)
        yield


@pytest.fixture(scope="module")
def keyed_proxy(llama_server: LlamaServer, quiet_home: None) -> Iterator[FaultProxy]:
    """The test server behind a proxy that answers 401 without `Authorization: Bearer KEY`; the key in the env."""
    with FaultProxy(llama_server.origin) as proxy, pytest.MonkeyPatch.context() as mp:
        proxy.set_fault(Fault(api_key=KEY))
        mp.setenv("EDGEASSIST_API_KEY", KEY)
        yield proxy


@pytest.fixture(scope="module")
def remote_run(keyed_proxy: FaultProxy, tmp_path_factory: pytest.TempPathFactory) -> Ran:
    """`edgeassist bench --endpoint URL -r 2` on the keyed proxy, saved as JSON."""
    path = tmp_path_factory.mktemp("bench-remote") / "remote.json"
    return bench("--endpoint", keyed_proxy.url, *SMALL, "-r", "2", "-q", json_path=path)


@pytest.fixture(scope="module")
def local_run(quiet_home: None, tmp_path_factory: pytest.TempPathFactory) -> Ran:
    """`edgeassist bench -m starter --threads 1`, saved as JSON: the local side of the saved comparison."""
    path = tmp_path_factory.mktemp("bench-local") / "local.json"
    return bench("-m", "starter", "--threads", "1", *SMALL, "-r", "1", "-q", json_path=path)


@pytest.fixture(scope="module")
def both_run(llama_server: LlamaServer, quiet_home: None, tmp_path_factory: pytest.TempPathFactory) -> Ran:
    """`edgeassist bench --endpoint URL --compare -m starter --threads 1,2`: local and remote in one invocation."""
    path = tmp_path_factory.mktemp("bench-both") / "both.json"
    args = ["--endpoint", llama_server.url, "--compare", "-m", "starter", "--threads", "1,2"]
    return bench(*args, *SMALL, "-r", "1", "-q", json_path=path)


# -- a remote run --------------------------------------------------------------------------------------------


def test_remote_run_reports_the_clients_figures_and_why_there_is_no_raw_baseline(
    remote_run: Ran, keyed_proxy: FaultProxy
) -> None:
    assert remote_run.rc == 0, remote_run.err
    out = remote_run.out
    assert f"smollm2-135m · remote · {keyed_proxy.url}" in out
    for part in ("time to first token", "follow-up time to first token", "decode (as received)", "network jitter",
                 "p90−p50", "gaps between streamed chunks as received", "verdict"):  # fmt: skip
        assert part in out, part
    raw = next(line for line in out.splitlines() if line.strip().startswith("raw baseline"))
    assert raw.endswith("none: a raw llama.cpp loop cannot run against a server: the model is not in this process")
    # llama-cpp-python's server sends no usage or timings: the report says the two cannot be told apart.
    assert "none sent" in next(line for line in out.splitlines() if "server's own figures" in line)
    assert "~" in next(line for line in out.splitlines() if line.strip().startswith("time to first token"))
    # What does not apply to a server is not shown as if measured: no ratio, no load, no recommendation.
    for absent in ("edgeassist / raw", "decode (raw llama.cpp)", "peak memory", "Recommendation"):
        assert absent not in out, absent
    assert not any(line.strip().startswith("load ") for line in out.splitlines())


def test_remote_json_keeps_the_samples_and_never_the_key(remote_run: Ran, keyed_proxy: FaultProxy) -> None:
    data = remote_run.json
    assert schema.validate(data) == [] and data["schema"] == SCHEMA == "edgeassist-bench/2"
    assert data["complete"] is True and data["recommendation"] is None
    assert data["config"]["raw_baseline"] is False  # type: ignore[index]
    (run,) = data["runs"]  # type: ignore[misc]
    assert (run["endpoint"], run["backend"], run["threads"], run["model"]) == (
        keyed_proxy.url,
        "remote",
        0,
        "smollm2-135m",
    )
    assert "raw llama.cpp loop cannot run against a server" in run["no_raw_reason"]
    assert run["load_s"] == [] and run["overheads"] is None
    assert len(run["repetitions"]) == 2
    gaps = 0
    for rep in run["repetitions"]:
        first = rep["first"]
        assert rep["raw"] is None and rep["peak_rss_bytes"] is None
        assert 0 < len(first["token_times"]) <= 8 and first["ttft_s"] == first["token_times"][0]
        assert first["token_times"] == sorted(first["token_times"])
        assert rep["followup"]["token_times"]
        gaps += len(first["token_times"]) - 1
    summary = run["summary"]
    assert summary["ratio"] is None and summary["raw_decode_ms"] is None and summary["bandwidth_gbs"] is None
    jitter = summary["jitter"]
    assert jitter["gaps"] == gaps == summary["decode_ms"]["n"]
    assert jitter["spread_ms"] == pytest.approx(summary["decode_ms"]["p90"] - summary["decode_ms"]["p50"])
    assert jitter["max_gap_ms"] == pytest.approx(summary["decode_ms"]["max"])
    assert summary["server"]["reported"] == 0  # this server sends no timings
    # The key went to the server with every request, and nowhere else.
    chats = keyed_proxy.chat_requests()
    assert len(chats) == 4 and all(r.headers.get("Authorization") == f"Bearer {KEY}" for r in chats)
    for text in (remote_run.out, remote_run.err, remote_run.path.read_text()):
        assert KEY not in text


def test_remote_markdown_says_why_there_is_no_raw_baseline(remote_run: Ran) -> None:
    md = render_markdown(load_result(remote_run.path))
    assert "| remote |" in md  # the threads column of the remote run
    bullet = next(line for line in md.splitlines() if line.startswith("- smollm2-135m on "))
    assert "no raw baseline (a raw llama.cpp loop cannot run" in bullet and "network jitter p90−p50" in bullet
    assert KEY not in md


# -- local and remote side by side ---------------------------------------------------------------------------


def _row(text: str, label: str) -> list[str]:
    """The cells of the table row that starts with `label`."""
    line = next(line for line in text.splitlines() if line.strip().startswith(label))
    return line.strip()[len(label) :].split()


def test_compare_with_no_files_runs_the_local_model_and_the_remote_one(
    both_run: Ran, llama_server: LlamaServer
) -> None:
    assert both_run.rc == 0, both_run.err
    runs = both_run.json["runs"]
    assert isinstance(runs, list)
    assert [(r["threads"], r["endpoint"]) for r in runs] == [(1, None), (2, None), (0, llama_server.url)]
    assert all(r["repetitions"][0]["raw"] is not None for r in runs[:2])  # the local side keeps its baseline
    # The recommendation scales from the local runs only: a server's speed says nothing about this device.
    assert both_run.json["recommendation"]["basis_model"] == "smollm2-135m"  # type: ignore[index]
    assert both_run.json["recommendation"]["basis_threads"] in (1, 2)  # type: ignore[index]
    side = both_run.out.split("Side by side: local and remote")[1]
    assert "local = smollm2-135m · " in side and "(the fastest local run)" in side
    assert f"remote = smollm2-135m on {llama_server.url} (remote)" in side
    assert _row(side, "edgeassist/raw")[1:] == ["–", "–"]  # a local ratio; none for the remote, so no B/A
    assert len(_row(side, "decode p50 ms")) >= 3  # both measured, with the ratio remote/local
    assert _row(side, "load")[-2:] == ["–", "–"] and _row(side, "peak memory")[-2:] == ["–", "–"]
    assert "jitter p90−p50 ms" in side
    assert "remote: no raw baseline, load time or memory (a raw llama.cpp loop cannot run against a server" in side
    # The summary table names the remote run's place and adds the jitter column.
    assert "jitter" in both_run.out.split("Summary")[1].splitlines()[1]


def test_compare_a_saved_local_run_with_a_saved_remote_one(
    local_run: Ran, remote_run: Ran, keyed_proxy: FaultProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    assert local_run.rc == 0, local_run.err
    assert main(["bench", "--compare", str(local_run.path), str(remote_run.path)]) == 0
    out = capsys.readouterr().out
    assert f"smollm2-135m · 1 thread (A) vs smollm2-135m on {keyed_proxy.url} (remote) (B)" in out
    assert "only in" not in out
    assert _row(out, "edgeassist/raw")[1:] == ["–", "–"]
    assert "  B: no raw baseline, load time or memory (a raw llama.cpp loop cannot run" in out
    # The other way round, the remote run is A.
    assert main(["bench", "--compare", str(remote_run.path), str(local_run.path)]) == 0
    out = capsys.readouterr().out
    assert f"smollm2-135m on {keyed_proxy.url} (remote) (A) vs smollm2-135m · 1 thread (B)" in out
    assert "  A: no raw baseline" in out and "  B: no raw baseline" not in out


def test_a_saved_remote_run_meets_the_fastest_local_run_of_a_sweep(
    remote_run: Ran, capsys: pytest.CaptureFixture[str]
) -> None:
    # bench_a.json: a Pi 5 at 2 threads (60 ms/token) and 4 threads (40 ms/token).
    assert main(["bench", "--compare", str(FIXTURES / "bench_a.json"), str(remote_run.path)]) == 0
    out = capsys.readouterr().out
    assert "synthetic-qwen3.5-0.8b:q4_k_m · 4 threads (A) vs smollm2-135m on " in out
    assert "synthetic-qwen3.5-0.8b:q4_k_m @ 2 threads\n  only in A" in out


# -- flags that do not fit, and a server that is not there ---------------------------------------------------


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--threads", "1,2"], "--threads"),
        (["--synthetic", "tiny"], "--synthetic"),
        (["-m", "starter"], "-m/--model"),
        (["--voice"], "--voice"),
    ],
)
def test_local_flags_with_an_endpoint_need_compare(
    args: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "--endpoint", "http://127.0.0.1:9/v1", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"edgeassist: {named} is for a local model") and "--compare" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_compare_takes_two_files_or_none_with_an_endpoint(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--compare"]) == 2
    assert "add --endpoint URL" in capsys.readouterr().err
    assert main(["bench", "--compare", str(FIXTURES / "bench_a.json")]) == 2
    assert "two saved results" in capsys.readouterr().err
    a, b = str(FIXTURES / "bench_a.json"), str(FIXTURES / "bench_b.json")
    assert main(["bench", "--compare", a, b, a]) == 2
    assert "not 3" in capsys.readouterr().err


def test_an_unreachable_server_fails_at_once_with_its_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    assert main(["bench", "--endpoint", f"http://127.0.0.1:{port}/v1", *SMALL, "-q"]) == 8
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "connection refused" in captured.err
    assert captured.out == ""  # nothing was measured: no report of nothing


# -- Ctrl+C while the server is silent ------------------------------------------------------------------------


def test_ctrl_c_while_the_server_is_silent_stops_at_once_and_keeps_what_was_measured(
    fault_proxy: FaultProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgeassist.bench.measure import Progress
    from edgeassist.cli import bench as cli_bench

    def interrupt_when_held() -> None:
        if fault_proxy.held.wait(120):
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl+C, while the bench waits for the next chunk

    def progress(self: object, p: Progress) -> None:
        if p.step == "repetition 2/2":  # the second repetition's first reply goes silent after 3 chunks
            fault_proxy.set_fault(Fault(hold_after=3))
            threading.Thread(target=interrupt_when_held, daemon=True).start()

    monkeypatch.setattr(cli_bench.ProgressPrinter, "__call__", progress)
    out = tmp_path / "partial.json"
    rc = main(["bench", "--endpoint", fault_proxy.url, *SMALL, "-r", "2", "--json", str(out)])
    captured = capsys.readouterr()
    assert rc == 130
    assert not fault_proxy._release.is_set()  # it stopped while the server was still silent, not at the next chunk
    assert len(fault_proxy.relayed) == 3  # the held reply's chunks: the bench never waited for a fourth
    assert "INTERRUPTED" in captured.out and "decode (as received)" in captured.out
    assert "interrupted" in captured.err
    data = json.loads(out.read_text())
    assert data["interrupted"] is True and data["complete"] is False
    (run,) = data["runs"]
    assert run["complete"] is False and len(run["repetitions"]) == 1  # the first repetition, whole
    assert run["repetitions"][0]["followup"] is not None
    assert schema.validate(data) == []


# -- the server's own figures beside the client's -------------------------------------------------------------


def test_llama_servers_own_timings_go_beside_the_clients_figures(
    llama_cpp_server: LlamaServer, quiet_home: None, tmp_path: Path
) -> None:
    ran = bench("--endpoint", llama_cpp_server.url, *SMALL, "-r", "2", "-q", json_path=tmp_path / "timed.json")
    assert ran.rc == 0, ran.err
    (run,) = ran.json["runs"]  # type: ignore[misc]
    for rep in run["repetitions"]:
        first, sv = rep["first"], rep["first"]["server"]
        # llama-server honours ignore_eos and counts what it did: prompt and decode time, tokens, its cache.
        assert sv["completion_tokens"] == sv["decoded_tokens"] == first["generated_tokens"] == 8
        assert len(first["token_times"]) == 8  # a chunk a token
        assert sv["prompt_ms"] > 0 and sv["decode_ms"] > 0 and sv["prompt_tokens"] == first["prompt_tokens"]
        assert rep["followup"]["server"]["cached_tokens"] > 0  # the follow-up reused the first turn's prompt
    summary = run["summary"]
    assert summary["server"]["reported"] == 2 and summary["jitter"]["tokens_per_chunk"] == 1.0
    for key in ("prompt_s", "prefill_tps", "decode_ms", "ttft_overhead_s", "decode_overhead_ms"):
        assert summary["server"][key]["n"] == 2, key
    assert summary["prefill_tps"] == summary["server"]["prefill_tps"]  # the server's rate, not the client's
    out = ran.out
    assert "decode" in _row(out, "server's own figures") and "ms/token" in _row(out, "server's own figures")
    assert "network, HTTP and queueing" in " ".join(_row(out, "the client saw beyond it"))
    assert "~" not in " ".join(_row(out, "time to first token"))  # the server counted the prompt
    assert "the server evaluated" in " ".join(_row(out, "follow-up time to first token"))


# -- the server's own figures beside the client's (fixed inputs) ----------------------------------------------


def _remote_turn(
    ttft: float, gap: float, chunks: int, server: dict[str, object], prompt: int = 40, evaluated: int = 40
) -> TurnSample:
    """A remote reply's sample as the engine's Stats give it (`server`: its `usage` and `timings`)."""
    stats = Stats(model="m", backend="remote", prompt_tokens=prompt, evaluated_tokens=evaluated, ttft_s=ttft)
    stats.server = server
    stats.token_times = [ttft + i * gap for i in range(chunks)]
    stats.generated_tokens = chunks
    stats.finish_reason = "length"
    return TurnSample.from_stats(stats, ttft + 0.001)


def test_server_figures_go_beside_the_clients_and_the_difference_is_the_network() -> None:
    timings = {"prompt_n": 30, "cache_n": 10, "prompt_ms": 120.0, "predicted_n": 9, "predicted_ms": 67.5}
    usage = {"prompt_tokens": 40, "completion_tokens": 9}
    turns = [_remote_turn(0.150, 0.008, 9, {"usage": usage, "timings": timings}) for _ in range(2)]
    sv = turns[0].server
    assert sv == ServerFigures(40, 9, 10, 30, 120.0, 67.5, 9)
    assert ServerFigures.from_report({}) is None and ServerFigures.from_report({"usage": "odd"}) is None
    run = ModelRun("m", "http://h:1/v1", 0, None, None, False, 0, 4096, 0, "remote", False, endpoint="http://h:1/v1")
    follow = {"timings": {"prompt_n": 23, "cache_n": 50, "prompt_ms": 40.0, "predicted_n": 8, "predicted_ms": 60.0}}
    run.repetitions = [Repetition(t, _remote_turn(0.06, 0.008, 8, follow, 73, 23), None, None) for t in turns]
    s = analysis.summarize(run, 50.0)
    assert s.server is not None and s.server.reported == 2
    assert s.server.prompt_s is not None and s.server.prompt_s.median == pytest.approx(0.120)
    assert s.server.prefill_tps is not None and s.server.prefill_tps.median == pytest.approx(250.0)  # 30 in 120 ms
    assert s.server.decode_ms is not None and s.server.decode_ms.median == pytest.approx(7.5)
    assert s.server.ttft_overhead_s is not None and s.server.ttft_overhead_s.median == pytest.approx(0.030)
    assert s.server.decode_overhead_ms is not None and s.server.decode_overhead_ms.median == pytest.approx(0.5)
    assert s.prefill_tps == s.server.prefill_tps  # the client's TTFT holds the network: not a prefill rate
    assert s.jitter is not None and s.jitter.tokens_per_chunk == pytest.approx(1.0)
    text = "\n".join(remote_lines(run, s))
    assert "prompt 120 ms (250 tok/s) · decode 7.5 ms/token" in text
    assert "+30 ms before the first token, +0.50 ms/token: network, HTTP and queueing" in text
    assert "40-token prompt" in text and "~40" not in text  # the server counted it
    assert "the server evaluated 23 of 73 tokens · 0.40x the first" in text  # its cache held the rest


def test_jitter_is_the_spread_of_the_gaps_and_says_when_chunks_carry_several_tokens() -> None:
    # Gaps 10, 10, 10, 40 ms: p50 10, p90 31 (interpolated); the server counted 10 tokens in 5 chunks.
    times = [0.1, 0.11, 0.12, 0.13, 0.17]
    turn = TurnSample(40, 0, 40, 0.0, 0.1, 0.1, times, 10, "length", ServerFigures(completion_tokens=10))
    j = analysis.jitter([turn])
    assert j is not None
    assert (j.gaps, j.max_gap_ms, j.tokens_per_chunk) == (4, pytest.approx(40.0), pytest.approx(2.0))
    assert j.spread_ms == pytest.approx(21.0) and j.stdev_ms == pytest.approx(15.0)
    run = ModelRun("m", "u", 0, None, None, False, 0, 4096, 0, "remote", False, endpoint="http://h:1/v1")
    run.repetitions = [Repetition(turn, None, None, None)]
    run.summary = analysis.summarize(run, 50.0)
    assert "2.0 tokens a chunk" in render_text_of(run)
    assert analysis.jitter([]) is None


def render_text_of(run: ModelRun) -> str:
    """The report's lines for one run."""
    assert run.summary is not None
    return "\n".join(remote_lines(run, run.summary))


def test_a_remote_only_result_has_no_recommendation_and_a_mixed_one_scales_from_the_local_run() -> None:
    remote = ModelRun("m", "u", 0, None, None, False, 0, 4096, 0, "remote", False, endpoint="http://h:1/v1")
    remote.repetitions = [Repetition(_remote_turn(0.1, 0.001, 9, {}), None, None, None)]
    remote.summary = analysis.summarize(remote, 50.0)
    assert analysis.recommend([remote], 50.0, 16_000_000_000, 4096) is None
    local = load_result(FIXTURES / "bench_a.json").runs[0]
    assert analysis.basis_run([remote, local]) is local
    assert "no raw baseline" not in render_text(load_result(FIXTURES / "bench_a.json"))
