"""Thread counts under contention: the free cores (`edgeassist.cores`), the claims of our own other work, the
per-token governor on made-up sequences (`edgeassist.engine.threads`), the engine setting its counts in llama.cpp,
the setting and its flag, speech to text's claim and the system report's line. No test asserts a timing."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from edgeassist import cores
from edgeassist.config import load_settings
from edgeassist.engine import threads as engine_threads
from edgeassist.engine.base import Done, GenerationOptions
from edgeassist.engine.llama import LlamaEngine
from edgeassist.engine.threads import ReplyThreads, ThreadGovernor
from edgeassist.errors import ConfigError

# -- free cores --------------------------------------------------------------------------------------------

STAT = """cpu  3293323 9 245106 2162328 21253 0 7004 28971 0 0
cpu0 1454431 5 101999 1300791 3982 0 2615 14945 0 0
intr 123 0 0
ctxt 456
btime 1700000000
processes 16100
procs_running {running}
procs_blocked 0
"""


def _task(state: str, name: str = "python") -> str:
    return f"1234 ({name}) {state} 1 1234 1234 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 3 0\n"


def _fake_proc(tmp_path: Path, running: int, own_states: list[str]) -> tuple[Path, Path]:
    stat = tmp_path / "stat"
    stat.write_text(STAT.format(running=running))
    tasks = tmp_path / "task"
    for i, state in enumerate(own_states):
        (tasks / str(100 + i)).mkdir(parents=True)
        (tasks / str(100 + i) / "stat").write_text(_task(state, name=") R weird (name"))
    return stat, tasks


def test_procs_running_and_task_states_are_read_from_proc_text() -> None:
    assert cores.procs_running(STAT.format(running=3)) == 3
    assert cores.procs_running("cpu 1 2 3\n") is None
    assert cores.task_running(_task("R"))
    assert not cores.task_running(_task("S"))
    assert not cores.task_running(_task("S", name="a) R (b"))  # the state follows the last ')'


def test_others_running_subtracts_our_own_running_threads(tmp_path: Path) -> None:
    stat, tasks = _fake_proc(tmp_path, running=4, own_states=["R", "R", "S", "D"])
    assert cores.others_running(3, stat=stat, tasks=tasks, sleep=lambda _s: None) == 2.0
    missing = tmp_path / "nothing"
    assert cores.others_running(1, stat=missing, tasks=tasks, sleep=lambda _s: None) is None


def test_others_running_takes_the_median_of_its_readings(tmp_path: Path) -> None:
    stat, tasks = _fake_proc(tmp_path, running=1, own_states=["R"])
    readings = iter([1, 5, 1, 1, 9])  # two passing blips among five readings

    def sleep(_s: float) -> None:
        stat.write_text(STAT.format(running=next(readings)))

    assert cores.others_running(5, stat=stat, tasks=tasks, sleep=sleep) == 0.0


def test_free_cores_clamps_and_scales_to_the_cpus_we_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cores, "_cpus_here", lambda: 4)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    for others, free in ((0.0, 4), (1.0, 3), (3.0, 1), (7.0, 0)):
        monkeypatch.setattr(cores, "others_running", lambda _n=5, o=others: o)
        assert cores.free_cores(4) == free
    assert cores.free_cores(2) == 0  # (7 others)
    monkeypatch.setattr(cores, "others_running", lambda _n=5: 4.0)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)  # we may use 4 of 16 CPUs: a quarter of the others run here
    assert cores.free_cores(4) == 3
    monkeypatch.setattr(cores, "others_running", lambda _n=5: None)
    monkeypatch.setattr(cores, "_loadavg_others", lambda: None)
    assert cores.free_cores(4) == 4  # no way to tell: all of them


def test_free_cores_on_this_machine_is_within_bounds() -> None:
    assert 0 <= cores.free_cores(2) <= 2


# -- claims ----------------------------------------------------------------------------------------------


def test_claims_add_up_and_are_released_even_on_error() -> None:
    claims = cores.CoreClaims()
    with claims.claim(2, "speech to text"):
        assert claims.total() == 2
        with pytest.raises(RuntimeError), claims.claim(1, "other"):
            assert claims.total() == 3 and claims.held() == [("speech to text", 2), ("other", 1)]
            raise RuntimeError
        assert claims.held() == [("speech to text", 2)]
    assert claims.total() == 0


def test_the_model_takes_what_other_programs_and_our_claims_leave(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cores, "free_cores", lambda total, samples=5: 3)
    assert cores.threads_to_use(4, 4) == 3
    assert cores.threads_to_use(2, 4) == 2  # never above the most
    with cores.claim(2, "speech to text"):
        assert cores.claimed() == 2
        assert cores.threads_to_use(4, 4) == 1
        with cores.claim(2, "more"):
            assert cores.threads_to_use(4, 4) == 1  # at least one
    assert cores.claimed() == 0


# -- the governor ----------------------------------------------------------------------------------------

QUIET = {1: 0.062, 2: 0.042}
"""Seconds per token by thread count on a quiet 2-core machine (measured, rounded)."""
BUSY = {1: 0.059, 2: 0.110}
"""With one busy program beside it: 2 threads wait on the thread that shares its core."""


class Machine:
    """A made-up machine: per-token times by thread count and load, a clock, and the free cores it reports."""

    def __init__(self, *, hint: bool = True) -> None:
        self.now = 0.0
        self.busy = False
        self.spikes: set[int] = set()
        self.governor = ThreadGovernor(2, hint=self.free if hint else None, clock=lambda: self.now)

    def free(self) -> int:
        return 1 if self.busy else 2

    def run(self, tokens: int, start: int | None = None) -> list[int]:
        g = self.governor
        if start is not None:
            g.start(start)
        for i in range(tokens):
            seconds = (BUSY if self.busy else QUIET)[g.threads] * (1 + 0.02 * (i % 3))
            if len(g.used) in self.spikes:
                seconds *= 3  # a stray slow token (the page cache, an interrupt)
            self.now += seconds
            g.feed(seconds)
        return list(g.used)


def test_a_steady_quiet_machine_never_changes_the_count() -> None:
    m = Machine()
    m.spikes = {3, 10, 11, 40, 90}
    used = m.run(200, start=2)
    assert set(used) == {2}
    assert set(Machine(hint=False).run(200, start=2)) == {2}


def test_a_jump_mid_reply_steps_down_and_the_count_comes_back_when_the_load_goes() -> None:
    m = Machine(hint=False)  # the time alone decides (no load readings)
    m.run(40, start=2)
    m.busy = True
    used = m.run(60)
    assert used[-1] == 1 and used[:40] == [2] * 40
    down = used.index(1, 40)
    assert down < 40 + 2 * engine_threads.WINDOW  # it reacted within a couple of windows
    m.busy = False
    m.now += 60.0  # past any backoff
    used = m.run(200)[100:]
    assert used[-1] == 2 and 1 in used  # stepped back up once a trial showed 2 threads faster


def test_the_load_reading_starts_a_step_down_and_a_step_up() -> None:
    m = Machine()
    m.run(16, start=2)
    m.governor.best.clear()  # no earlier window to compare with: only the load reading can tell
    m.busy = True
    used = m.run(60, start=2)
    assert used[-1] == 1
    m.busy = False
    m.now += engine_threads.BACKOFF_S[0]
    used = m.run(60)
    assert used[-1] == 2


def test_a_trial_that_does_not_pay_goes_back_and_waits() -> None:
    # Every count equally slow (a slower clock, not contention): a step down does not help.
    now = 0.0
    g = ThreadGovernor(2, clock=lambda: now)
    g.start(2)
    for i in range(400):
        seconds = 0.04 if i < 10 else 0.08
        now += seconds
        g.feed(seconds)
    text = "".join(map(str, g.used))
    trials = [run for run in text.split("2") if run]
    assert trials and all(len(run) <= 1 + engine_threads.TRIAL for run in trials)  # each went back at once
    starts = [i for i in range(1, len(text)) if text[i] == "1" and text[i - 1] == "2"]
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert len(gaps) >= 2 and gaps[-1] > gaps[0]  # and each failure waits longer before the next
    assert text.endswith("2" * 20)


def test_without_readings_a_step_up_is_tried_on_the_clock_and_backs_off() -> None:
    now = 0.0
    g = ThreadGovernor(2, clock=lambda: now)
    g.start(1)
    for _ in range(300):  # 2 threads are slower here: every trial fails
        now += 0.1
        g.feed(0.2 if g.threads == 2 else 0.1)
    starts = [i for i in range(1, len(g.used)) if g.used[i] == 2 and g.used[i - 1] == 1]
    assert len(starts) >= 2 and g.used[-1] == 1
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert gaps == sorted(gaps) and gaps[-1] > gaps[0]  # each failure waits longer


def test_start_keeps_within_the_most() -> None:
    g = ThreadGovernor(4)
    g.start(9)
    assert g.threads == 4
    g.start(0)
    assert g.threads == 1


# -- the engine -------------------------------------------------------------------------------------------


def _reply(engine: LlamaEngine, text: str, tokens: int = 12) -> Done:
    opts = GenerationOptions(max_tokens=tokens, ignore_eos=True, seed=1)
    done = [e for e in engine.stream([{"role": "user", "content": text}], opts) if isinstance(e, Done)]
    return done[0]


def test_the_engine_sets_its_counts_in_llama_cpp(tiny_qwen35: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import llama_cpp

    calls: list[tuple[int, int]] = []
    real = llama_cpp.llama_set_n_threads

    def record(ctx: object, n: int, n_batch: int) -> None:
        calls.append((n, n_batch))
        real(ctx, n, n_batch)

    monkeypatch.setattr(llama_cpp, "llama_set_n_threads", record)
    monkeypatch.setattr(engine_threads, "threads_to_use", lambda most, total, samples=5: 1)
    engine = LlamaEngine(tiny_qwen35, n_ctx=512, n_threads=2)
    try:
        assert _reply(engine, "hello").stats.generated_tokens == 12
        assert calls[0] == (1, 1) and engine.reply_threads.picked == 1  # the pick, for the prompt and decoding
        assert engine.reply_threads.used and set(engine.reply_threads.used) <= {1, 2}

        class StepUp(ThreadGovernor):
            def feed(self, seconds: float) -> int:
                self.used.append(self.threads)
                self.threads = 2 if len(self.used) == 3 else self.threads
                return self.threads

        engine.reply_threads.governor = StepUp(2)
        calls.clear()
        _reply(engine, "again")
        assert calls == [(1, 1), (2, 1)]  # the governor's count for decoding; the prompt's stays
        assert engine.reply_threads.used[:4] == [1, 1, 1, 2]
    finally:
        engine.close()


def test_a_fixed_engine_never_touches_its_counts(tiny_qwen35: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import llama_cpp

    calls: list[int] = []
    monkeypatch.setattr(llama_cpp, "llama_set_n_threads", lambda ctx, n, nb: calls.append(n))
    engine = LlamaEngine(tiny_qwen35, n_ctx=512, n_threads=2, adapt_threads=False)
    try:
        _reply(engine, "hello")
        assert calls == [] and engine.reply_threads.picked == 2 and engine.reply_threads.used == []
    finally:
        engine.close()


def test_reply_threads_fixed_and_adaptive() -> None:
    assert ReplyThreads(3, adapt=False).governor is None
    assert ReplyThreads(3).governor is not None


def test_the_bench_sweep_opens_fixed_engines(tiny_qwen35: Path) -> None:
    from edgeassist.bench.measure import BenchPlan, BenchTarget, _Runner

    settings = load_settings(flags={"model": {"n_ctx": 512}})
    plan = BenchPlan([BenchTarget("tiny", tiny_qwen35)], [2], 1, 32, 4, 50.0)
    engine = _Runner(settings, plan, None, None).open(plan.targets[0], 2)
    assert engine.reply_threads.governor is None and engine.n_threads == 2


# -- the setting, the flag, speech to text, the report ------------------------------------------------------


def test_adapt_threads_setting_and_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeassist.cli import build_parser, settings_flags

    assert load_settings().model.adapt_threads is True
    monkeypatch.setenv("EDGEASSIST_MODEL__ADAPT_THREADS", "false")
    assert load_settings().model.adapt_threads is False
    monkeypatch.setenv("EDGEASSIST_MODEL__ADAPT_THREADS", "sometimes")
    with pytest.raises(ConfigError, match="model.adapt_threads"):
        load_settings()
    monkeypatch.delenv("EDGEASSIST_MODEL__ADAPT_THREADS")
    args = build_parser().parse_args(["ask", "--adapt-threads", "off", "hi"])
    assert load_settings(flags=settings_flags(args)).model.adapt_threads is False


def test_the_factory_passes_the_setting(tiny_qwen35: Path) -> None:
    from edgeassist.engine.factory import open_local_engine

    settings = load_settings(flags={"model": {"name": str(tiny_qwen35), "adapt_threads": False}})
    assert open_local_engine(settings, explicit=True).reply_threads.governor is None
    settings = load_settings(flags={"model": {"name": str(tiny_qwen35)}})
    assert open_local_engine(settings, explicit=True).reply_threads.governor is not None


def test_speech_to_text_claims_its_threads_while_it_transcribes(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeassist.speech.stt import CT2_DEFAULT_THREADS, Transcript, WhisperTranscriber

    stt = WhisperTranscriber("tiny.en", cpu_threads=0)
    assert stt.threads == min(CT2_DEFAULT_THREADS, os.cpu_count() or 1)
    seen: list[list[tuple[str, int]]] = []

    def fake(clip: np.ndarray, audio_s: float, prompt: str | None, t0: float) -> Transcript:
        seen.append(cores.CLAIMS.held())
        return Transcript("words", audio_s, 0.0)

    monkeypatch.setattr(stt, "load", lambda: 0.0)
    monkeypatch.setattr(stt, "_transcribe", fake)
    t = np.arange(16000) / 16000
    audio = np.concatenate([np.zeros(4000), 0.5 * np.sin(2 * np.pi * 220 * t), np.zeros(4000)]).astype(np.float32)
    assert stt.transcribe(audio).text == "words"
    assert seen == [[("speech to text", stt.threads)]]
    assert cores.claimed() == 0


def test_the_system_report_says_how_many_cores_were_free(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeassist import system
    from edgeassist.bench.report import system_lines

    monkeypatch.setattr(system, "free_cores", lambda total: total - 1)
    report = system.system_report(with_llama=False)
    assert report.cores_free == report.physical_cores - 1
    rows = dict(system_lines(report))
    assert rows["cores free"].startswith(f"{report.physical_cores - 1} of {report.physical_cores}")
