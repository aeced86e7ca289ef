"""`edgeassist bench --contention` end to end on the tiny synthetic Qwen 3.5 (tiny sizes), its competing load
gone afterwards (Ctrl+C included), and the summary on fixed inputs. No test asserts a timing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from edgeassist.bench import schema
from edgeassist.bench.analysis import contention_summary
from edgeassist.bench.contention import BusyLoad, ContentionPlan, run_contention
from edgeassist.bench.measure import BenchTarget, Progress
from edgeassist.bench.report import render_contention
from edgeassist.bench.results import ContentionResult, ContentionRun
from edgeassist.bench.store import to_json
from edgeassist.cli import main
from edgeassist.config import load_settings


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture
def load_pids(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The pids of every competing process the bench starts."""
    pids: list[int] = []
    enter = BusyLoad.__enter__

    def spy(self: BusyLoad) -> BusyLoad:
        out = enter(self)
        pids.extend(self.pids)
        return out

    monkeypatch.setattr(BusyLoad, "__enter__", spy)
    return pids


def test_busy_load_runs_and_is_killed_even_on_error() -> None:
    with pytest.raises(RuntimeError), BusyLoad(2) as load:
        pids = load.pids
        assert len(pids) == 2 and not any(_gone(p) for p in pids)
        # Entered only once each competitor spins: runnable (R), not still starting or asleep.
        assert all(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0] == "R" for p in pids)
        raise RuntimeError
    assert all(_gone(p) for p in pids)


def test_contention_bench_end_to_end(tiny_qwen35: Path, tmp_path: Path, load_pids: list[int],
                                     capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    out = tmp_path / "contention.json"
    rc = main(["bench", "--contention", "-m", str(tiny_qwen35), "-r", "2", "-p", "32", "-n", "8", "--warmup", "0"]
              + ["--threads", "1,2", "--n-ctx", "512", "--json", str(out), "-q"])  # fmt: skip
    text = capsys.readouterr().out
    assert rc == 0
    assert load_pids and all(_gone(p) for p in load_pids)  # the competing load is gone
    for part in ("Contention", "1 busy", "quiet", "adaptive (≤2)", "vs best fixed", "adaptive / best fixed",
                 "cores free:"):  # fmt: skip
        assert part in text, part
    data = json.loads(out.read_text())
    assert schema.validate(data) == []
    c = data["contention"]
    assert data["runs"] == [] and c["busy"] == 1 and c["max_threads"] == 2
    assert [(r["busy"], r["threads"]) for r in c["runs"]] == [(1, 1), (1, 2), (1, None), (0, 1), (0, 2), (0, None)]
    for run in c["runs"]:
        assert len(run["ttft_s"]) == len(run["decode_tps"]) == len(run["start_threads"]) == 2
        if run["threads"] is None:
            assert [len(used) for used in run["threads_used"]] == [8, 8]  # every token decoded
            assert all(1 <= n <= 2 for used in run["threads_used"] for n in used)
        else:
            assert run["threads_used"] == [] and run["start_threads"] == [run["threads"]] * 2
    s = c["summary"]
    assert s["busy_best_fixed"] in (1, 2) and s["busy_ratio"] > 0 and s["quiet_ratio"] > 0


def test_ctrl_c_in_the_loaded_half_kills_the_load(tiny_qwen35: Path, load_pids: list[int]) -> None:
    settings = load_settings(flags={"model": {"n_ctx": 512}})
    plan = ContentionPlan(BenchTarget("tiny", tiny_qwen35), [1, 2], 1, 1, 0, 32, 4, 50.0)

    def progress(p: Progress) -> None:
        if "adaptive" in p.step:
            raise KeyboardInterrupt

    result = run_contention(settings, plan, progress=progress)
    assert result.interrupted and not result.complete
    assert load_pids and all(_gone(p) for p in load_pids)
    assert result.contention is not None and len(result.contention.runs[0].decode_tps) == 1
    assert "INTERRUPTED" in render_contention(result)
    assert schema.validate(to_json(result)) == []


def test_contention_summary_on_fixed_inputs() -> None:
    c = ContentionResult("m", 2, 1, 1, 2)
    c.runs = [
        ContentionRun(1, 1, [1.2, 1.4, 1.3], [16.0, 17.0, 15.0]),
        ContentionRun(1, 2, [2.0, 1.8, 1.9], [7.0, 8.0, 6.0]),
        ContentionRun(1, None, [1.3, 1.3, 1.3], [14.0, 16.0, 12.0], [[1, 1, 2]]),
        ContentionRun(0, 1, [1.2], [15.0]),
        ContentionRun(0, 2, [0.8], [24.0]),
        ContentionRun(0, None, [0.8], [24.0]),
    ]
    s = contention_summary(c)
    assert s.busy_best_fixed == 1 and s.busy_ratio == pytest.approx(14 / 16)
    assert s.busy_ttft_ratio == pytest.approx(1.3 / 1.3)
    assert s.quiet_best_fixed == 2 and s.quiet_ratio == pytest.approx(1.0)
