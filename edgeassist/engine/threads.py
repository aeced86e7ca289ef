"""The decode thread count: picked per reply from the free cores, then steered token by token.

llama.cpp's threads spin-wait for each other at every token, so a thread that shares its core with
another busy program holds back all of them: on 2 cores with one busy program, 2 threads decode at
about a third of their quiet speed while 1 thread keeps nearly its own (docs/BENCHMARKS.md,
Contention). So the count is chosen, not fixed:

- **per reply** (and per speculative prefill): the cores other programs and our own other work
  leave free now (`edgeassist.cores.threads_to_use`), at most `model.n_threads`; the prompt is
  evaluated with that count;
- **per token** (`ThreadGovernor`): each decode's time is what people wait for, so it decides.
  A move is a *trial* checked against the time just before it: one step down when the recent
  per-token time jumps well above the best seen at this count (another program took a core
  mid-reply), or when the load says fewer cores are free than threads run; one step up when the
  load says a core came free (without /proc: every so often; against the load: every two minutes),
  kept only if tokens come faster.
  A trial that does not pay goes back at once; a failed step up waits longer before the next
  (from 2 s, doubling to 30 s), since a probe at a contended count costs two to three times a
  token. The load is only ever a hint for what to try, because it cannot see how much a busy
  program actually slows us (a low-priority one barely does); the clock sees exactly that.

On a quiet machine the reply starts at the most threads, the per-token time stays level and the
load says nothing is free beyond them: nothing ever moves, so nothing is lost. `ReplyThreads`
binds the governor to a llama.cpp context (`llama_set_n_threads`); `ThreadGovernor` is the pure
logic, fed times, so it is tested on made-up sequences.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from edgeassist.cores import threads_to_use
from edgeassist.engine.build import physical_cores

WINDOW = 8
"""Tokens whose median per-token time stands for the count now (a stray slow token moves no median)."""
TRIAL = 4
"""Tokens a trial count is timed over (after the first one after a change, which is not counted)."""
JUMP = 1.5
"""A window this many times slower than the best seen at the count is a jump: try one thread fewer."""
GAIN = 0.9
"""A trial is kept when its tokens take at most this share of the time before it."""
HINT_EVERY = 4
"""Tokens between two readings of the free cores while decoding (each reading costs about 0.1 ms)."""
HINTS = 3
"""Readings of the free cores whose median counts, so that a passing blip moves nothing."""
BACKOFF_S = (2.0, 30.0)
"""Seconds before the first step up after a step down, and the longest wait once steps up keep failing."""
REGARDLESS_S = 120.0
"""Seconds between two steps up tried although the load says no core is free (a low-priority program
counts as busy but takes little): rare, since at a contended count such a trial costs two to three times."""


@dataclass
class _Trial:
    """A count being tried: where it came from and the per-token time there."""

    origin: int
    before: float


class ThreadGovernor:
    """Chooses the thread count for the next token from the decode time of each one (no llama.cpp here)."""

    def __init__(
        self,
        most: int,
        *,
        hint: Callable[[], int | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        window: int = WINDOW,
        trial: int = TRIAL,
        jump: float = JUMP,
        gain: float = GAIN,
        backoff_s: tuple[float, float] = BACKOFF_S,
    ) -> None:
        """Steer between 1 and `most` threads. `hint()` says how many cores are free now (None: unknown);
        without it, steps up are tried on the clock alone."""
        self.most = max(1, most)
        self.hint = hint
        self.clock = clock
        self.window, self.trial_tokens, self.jump, self.gain = window, trial, jump, gain
        self.backoff_s = backoff_s
        self.threads = self.most
        """The count the next token decodes with."""
        self.used: list[int] = []
        """The count each token of the current reply decoded with."""
        self.best: dict[int, float] = {}
        """The best median per-token time over a window seen at each count (kept across replies)."""
        self._recent: deque[float] = deque(maxlen=window)
        self._skip = 0
        self._trial: _Trial | None = None
        self._hints: deque[int] = deque(maxlen=HINTS)
        self._since_hint = 0
        self._delay = backoff_s[0]
        self._next_probe = 0.0
        self._last_probe = clock()

    def start(self, threads: int) -> None:
        """A new reply starts at `threads` (what the free cores allow): forget the last reply's tokens."""
        self.threads = max(1, min(self.most, threads))
        self.used = []
        self._recent.clear()
        self._hints.clear()
        self._since_hint = 0
        self._trial = None
        self._skip = 0

    def feed(self, seconds: float) -> int:
        """One token took `seconds` to decode at `threads`; return the count for the next token."""
        self.used.append(self.threads)
        if self._skip:  # the first decode after a change may set up threads: not a fair sample
            self._skip -= 1
            return self.threads
        self._recent.append(seconds)
        free = self._read_hint()
        if self._trial is not None:
            return self._judge(self._trial)
        if len(self._recent) < self.window:
            return self.threads
        now = statistics.median(self._recent)
        n = self.threads
        best = self.best.get(n)
        if best is None or now < best:
            self.best[n] = best = now
        clock = self.clock()
        if clock < self._next_probe:  # (a trial failed or a step down was kept not long ago)
            return n
        last = statistics.median(list(self._recent)[-self.trial_tokens :])  # what a trial is compared with
        # (the load says "fewer" only once its whole median is in: one reading taken while our own threads
        # were between running and waiting would otherwise start a trial on a quiet machine)
        settled = len(self._hints) >= HINTS
        if n > 1 and (now > self.jump * best or (settled and free is not None and free < n)):
            return self._try(n - 1, last)
        # Up when the load says a core came free; without a reading, on the clock; against the reading,
        # now and then all the same (a low-priority program counts as busy but takes little).
        if n < self.most and (free is None or free > n or clock - self._last_probe >= REGARDLESS_S):
            self._last_probe = clock
            return self._try(n + 1, last)
        return n

    def _read_hint(self) -> int | None:
        """The median of the last few free-core readings, a new one every `HINT_EVERY` tokens."""
        if self.hint is None:
            return None
        self._since_hint -= 1
        if self._since_hint <= 0:
            self._since_hint = HINT_EVERY
            value = self.hint()
            if value is not None:
                self._hints.append(value)
        return int(statistics.median_low(self._hints)) if self._hints else None

    def _try(self, threads: int, before: float) -> int:
        self._trial = _Trial(self.threads, before)
        return self._switch(threads)

    def _judge(self, trial: _Trial) -> int:
        """Keep the trial count if its tokens come faster than before it, else go back and wait longer."""
        if len(self._recent) < self.trial_tokens:
            return self.threads
        now = statistics.median(self._recent)
        self._trial = None
        n = self.threads
        if now < trial.before * self.gain:
            self.best[n] = min(self.best.get(n, now), now)
            if n > trial.origin:
                self._delay = self.backoff_s[0]
            else:  # (a step down: the first step back up waits a little)
                self._next_probe = self.clock() + self._delay
            return self._switch(n, keep_window=True)
        # Not faster: back, and no trial for a while (a jump that was not contention, a longer
        # context, a slower clock, would otherwise bring the same trial back at once).
        self._next_probe = self.clock() + self._delay
        self._delay = min(self.backoff_s[1], self._delay * 2)
        return self._switch(trial.origin)

    def _switch(self, threads: int, *, keep_window: bool = False) -> int:
        if threads != self.threads:
            self._skip = 1
        if not keep_window:
            self._recent.clear()
        self.threads = threads
        return threads


class ReplyThreads:
    """The thread counts of one engine's context: the per-reply pick and, with `adapt`, the governor."""

    def __init__(self, most: int, *, adapt: bool = True) -> None:
        """At most `most` threads; `adapt=False` keeps `most` for every reply and token (the bench's fixed runs)."""
        self.most = most
        self.adapt = adapt
        self.governor = ThreadGovernor(most, hint=self._free) if adapt else None
        """The per-token steering (None when fixed)."""
        self.picked = most
        """The count the last reply started with (and evaluated its prompt with)."""
        self._ctx: object = None

    def _free(self) -> int:
        """Cores free for the model now, from one reading (the governor takes the median of several)."""
        return threads_to_use(self.most, physical_cores(), samples=1)

    def begin(self, ctx: object, offloaded: bool = False) -> int:
        """Before a reply or a prefill on `ctx`: pick the count from the free cores and set it; return it.

        Fixed, or with the model on a GPU (where the CPU threads matter little), it is `most`.
        """
        import llama_cpp

        adaptive = self.governor is not None and not offloaded
        self.picked = threads_to_use(self.most, physical_cores()) if adaptive else self.most
        self._ctx = ctx if adaptive else None
        if self.governor is not None:
            self.governor.start(self.picked)
        if self.adapt:
            llama_cpp.llama_set_n_threads(ctx, self.picked, self.picked)
        return self.picked

    def decode(self, ctx: object, batch: object) -> int:
        """`llama_decode` one token's batch, timed for the governor, which may change the count; its return code."""
        import llama_cpp

        governor = self.governor
        if governor is None or self._ctx is None:
            return int(llama_cpp.llama_decode(ctx, batch))
        t0 = time.perf_counter()
        rc = int(llama_cpp.llama_decode(ctx, batch))
        before = governor.threads
        if governor.feed(time.perf_counter() - t0) != before:
            llama_cpp.llama_set_n_threads(ctx, governor.threads, self.picked)
        return rc

    @property
    def used(self) -> list[int]:
        """The count each token of the last reply decoded with (empty when fixed)."""
        return list(self.governor.used) if self.governor is not None and self._ctx is not None else []
