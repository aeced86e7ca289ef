"""`edgeassist bench --contention`: how the thread choice holds up when another program keeps cores busy.

The same model is opened once per fixed thread count (1 to the most) and once adaptive (the
engine's own choice, up to the most: `edgeassist.engine.threads`), all through the same engine and
`Conversation` as the front ends. Each repetition is one new conversation's first turn on every
engine in turn (the order rotating, so drift in the machine's speed hits each alike): first with
`busy` synthetic competitors running (`BusyLoad`: a process spinning one core each), then on the
quiet machine. The result holds every reply's time to first token and tokens/s, which counts the
adaptive engine chose for each token, and the ratios adaptive / best fixed count
(`analysis.contention_summary`).

The competing processes are killed on the way out however it goes (Ctrl+C included), and each
one also ends by itself once this process is gone. They stay in this process's session, like
`yes > /dev/null &` typed in the same shell: the kernel then shares the cores thread by thread.
A program in another session (another terminal) gets a scheduling group of its own (Linux's
autogroup), and fixed 2 threads on 2 cores fare far worse beside it (docs/BENCHMARKS.md,
Contention); the adaptive engine does not, but the fixed runs would take minutes per reply.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType

from edgeassist import __version__
from edgeassist.bench.analysis import conclude
from edgeassist.bench.measure import BenchTarget, Progress, ProgressCallback, fit_prompt
from edgeassist.bench.raw import Stopped
from edgeassist.bench.results import SCHEMA, BenchConfig, BenchResult, ContentionResult, ContentionRun
from edgeassist.chat import Conversation
from edgeassist.config import Settings
from edgeassist.cores import free_cores
from edgeassist.engine.base import Done
from edgeassist.engine.build import physical_cores
from edgeassist.engine.factory import generation_options, open_local_engine
from edgeassist.engine.llama import LlamaEngine
from edgeassist.errors import EdgeAssistError
from edgeassist.system import system_report

SPIN = (
    "import os, sys\n"
    "parent = os.getppid()\n"
    "sys.stdout.write('spinning\\n')\n"
    "sys.stdout.flush()\n"
    "sys.stdout.close()\n"
    "while os.getppid() == parent:\n"  # (an orphan stops by itself)
    "    for _ in range(200000):\n"
    "        pass\n"
)
"""A competing program: one core kept busy until it is killed or its parent is gone; it says when it starts."""


class BusyLoad:
    """`n` processes that each keep one core busy while the `with` block runs; killed for sure at its end."""

    def __init__(self, n: int) -> None:
        """Nothing starts before the block is entered."""
        self.n = n
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> BusyLoad:
        """Start the competitors; return once each says it is spinning."""
        try:
            for _ in range(self.n):
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-I", "-c", SPIN],
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.DEVNULL,
                    )
                )
            for p in self.procs:  # nothing is measured before every competitor spins
                assert p.stdout is not None
                said = p.stdout.readline()
                p.stdout.close()
                if said != b"spinning\n":
                    raise EdgeAssistError(f"a competing process did not start (exit code {p.poll()})")
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        """Kill the competitors (whatever ended the block)."""
        self.stop()

    def stop(self) -> None:
        """Kill every competitor and wait for it."""
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            p.wait()

    @property
    def pids(self) -> list[int]:
        """The competitors' process ids."""
        return [p.pid for p in self.procs]


@dataclass(frozen=True)
class ContentionPlan:
    """What `bench --contention` runs."""

    target: BenchTarget
    """The model."""
    threads: list[int]
    """The fixed thread counts (the most of them is the adaptive engine's ceiling)."""
    busy: int
    """Competing busy processes in the loaded half."""
    repetitions: int
    """Measured replies per engine and half."""
    warmup: int
    """Untimed replies per engine and half first."""
    prompt_tokens: int
    """Prompt length of each reply."""
    gen_tokens: int
    """Tokens generated per reply."""
    target_ms: float
    """The per-token target (recorded, as the other bench runs do)."""
    command: str = "edgeassist bench --contention"
    """The command line, recorded in the result."""


def _open(settings: Settings, plan: ContentionPlan, threads: int, adapt: bool) -> LlamaEngine:
    """The engine as the front ends open it, at `threads` (fixed, or the adaptive engine's most)."""
    model = settings.model.model_copy(
        update={
            "name": str(plan.target.path),
            "n_threads": threads,
            "starter_fallback": False,
            "adapt_threads": adapt,
        }
    )
    return open_local_engine(settings.model_copy(update={"model": model}), explicit=True, keep_states=False)


class _Contention:
    """One `--contention` invocation: the engines, the result being filled, progress."""

    def __init__(
        self,
        settings: Settings,
        plan: ContentionPlan,
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
    ) -> None:
        self.settings = settings
        self.plan = plan
        self.progress = progress
        self.cancel = cancel or threading.Event()
        self.options = generation_options(settings, max_tokens=plan.gen_tokens, ignore_eos=True, think=False)
        self.most = max(plan.threads)
        self.kinds: list[int | None] = [*plan.threads, None]  # None: adaptive
        self.steps = 2 * (plan.warmup + plan.repetitions) * len(self.kinds)
        self.done = 0

    def say(self, threads: int | None, step: str) -> None:
        """Report a step (`threads` None: the adaptive engine, shown at its most)."""
        if self.progress is not None:
            self.progress(
                Progress(
                    run=min(self.done + 1, self.steps),
                    runs=self.steps,
                    model=self.plan.target.name,
                    threads=threads or self.most,
                    step=step,
                    fraction=self.done / self.steps,
                )
            )

    def reply(self, engine: LlamaEngine, nonce: str, run: ContentionRun | None) -> None:
        """One new conversation's first turn, drained as a front end would; kept in `run` unless warming up."""
        system = f"{nonce} {self.settings.generation.system_prompt}".strip()
        user = fit_prompt(engine, system, self.plan.prompt_tokens, self.options)
        convo = Conversation(engine, system_prompt=system, options=self.options)
        done: Done | None = None
        for event in convo.send(user, self.cancel, self.options):
            if isinstance(event, Done):
                done = event
        if done is None:  # pragma: no cover - the engine always ends with Done
            raise EdgeAssistError("the engine ended a reply without its stats")
        stats = done.stats
        if stats.finish_reason == "cancelled":
            raise Stopped
        if run is None:
            return
        times = stats.token_times
        if stats.ttft_s is not None:
            run.ttft_s.append(stats.ttft_s)
        if len(times) > 1 and times[-1] > times[0]:
            run.decode_tps.append((len(times) - 1) / (times[-1] - times[0]))
        run.start_threads.append(engine.reply_threads.picked)
        if run.threads is None:
            run.threads_used.append(engine.reply_threads.used)

    def half(self, busy: int, result: ContentionResult) -> None:
        """Every engine, `warmup` then `repetitions` replies each, in rotating order, with `busy` competitors."""
        plan = self.plan
        label = f"{busy} busy" if busy else "quiet"
        runs = {kind: ContentionRun(busy=busy, threads=kind) for kind in self.kinds}
        result.runs += runs.values()
        engines: dict[int | None, LlamaEngine] = {}
        try:
            for kind in self.kinds:
                self.say(kind, f"{label} · loading")
                engine = engines[kind] = _open(self.settings, plan, kind or self.most, kind is None)
                engine.load()
            with BusyLoad(busy):
                seen = free_cores(physical_cores())
                if busy:
                    result.free_cores_busy = seen
                else:
                    result.free_cores_quiet = seen
                rounds = plan.warmup + plan.repetitions
                for r in range(rounds):
                    order = self.kinds[r % len(self.kinds) :] + self.kinds[: r % len(self.kinds)]
                    warm = r < plan.warmup
                    for kind in order:
                        what = "adaptive" if kind is None else f"{kind} fixed"
                        step = f"warm-up {r + 1}" if warm else f"repetition {r - plan.warmup + 1}/{plan.repetitions}"
                        self.say(kind, f"{label} · {what} · {step}")
                        self.reply(engines[kind], f"{label} {what} {r}.", None if warm else runs[kind])
                        self.done += 1
        finally:
            for engine in engines.values():
                engine.close()

    def run(self) -> BenchResult:
        """The loaded half, then the quiet one; the result holds what was measured however it ended."""
        plan = self.plan
        result = BenchResult(
            schema=SCHEMA,
            edgeassist_version=__version__,
            created=datetime.now().astimezone().isoformat(timespec="seconds"),
            command=plan.command,
            complete=False,
            interrupted=False,
            config=BenchConfig(
                target_ms=plan.target_ms,
                repetitions=plan.repetitions,
                warmup=plan.warmup,
                prompt_tokens=plan.prompt_tokens,
                gen_tokens=plan.gen_tokens,
                followup_tokens=0,
                followup_text="",
                think=False,
                sampling=self.options.sampling(),
                raw_baseline=False,
                ignore_eos="option",
            ),
            system=system_report(),
        )
        result.contention = ContentionResult(
            model=plan.target.name,
            max_threads=self.most,
            busy=plan.busy,
            free_cores_busy=None,
            free_cores_quiet=None,
        )
        try:
            self.half(plan.busy, result.contention)
            self.half(0, result.contention)
            result.complete = True
        except (KeyboardInterrupt, Stopped):
            result.interrupted = True
        finally:
            conclude(result)
        return result


def run_contention(
    settings: Settings,
    plan: ContentionPlan,
    *,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> BenchResult:
    """Run `plan`: fixed counts and the adaptive engine, loaded then quiet; interrupted, what was measured."""
    return _Contention(settings, plan, progress, cancel).run()
