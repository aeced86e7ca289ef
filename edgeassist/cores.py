"""How many CPU cores are free for edgeassist's compute: what other programs leave, less our own other work.

llama.cpp's threads (and CTranslate2's, for whisper) spin-wait for each other at every step, so
one thread that shares its core with a busy program holds all the others back: on 2 cores, one
busy program cuts 2-thread decoding to about a third, while 1 thread keeps nearly its quiet speed.

`free_cores` counts the cores other programs leave free now. On Linux it reads the kernel's
count of running threads (`procs_running` in /proc/stat) a few times within about a millisecond,
takes the median, and subtracts this process's own running threads (/proc/self/task): what is left
is other programs' work. Elsewhere it falls back to the one-minute load average less this
process's own recent CPU use, which is slower to follow a change.

`claim` is the other half: this process's own other CPU work (speech to text while it
transcribes) declares the threads it runs on, and the model's thread count (`claimed()`)
leaves them out. Speech to text goes first because CTranslate2 fixes its thread count when the
model loads; the model, which can change its count per reply and per token, takes what is left.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

SAMPLES = 5
"""Readings of the running-thread count per `free_cores` call (their median counts)."""
SAMPLE_GAP_S = 0.0002
"""Pause between two readings: the five span about a millisecond, enough to miss a passing blip."""
STAT = Path("/proc/stat")
TASKS = Path("/proc/self/task")


def procs_running(stat_text: str) -> int | None:
    """The kernel's count of runnable threads (`procs_running`) in /proc/stat's text; None when absent."""
    for line in stat_text.splitlines():
        if line.startswith("procs_running"):
            parts = line.split()
            return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
    return None


def task_running(task_stat: str) -> bool:
    """Whether one /proc/.../task/TID/stat line says the thread is running (state R)."""
    end = task_stat.rfind(")")  # the thread's name, in parentheses, may hold spaces and ')'
    return end >= 0 and task_stat[end + 2 : end + 3] == "R"


def own_running(tasks: Path = TASKS) -> int:
    """This process's threads that are running or runnable now (the reading thread among them)."""
    n = 0
    try:
        names = os.listdir(tasks)
    except OSError:
        return 0
    for name in names:
        try:
            n += task_running((tasks / name / "stat").read_text(errors="replace"))
        except OSError:  # (the thread ended meanwhile)
            continue
    return n


def others_running(
    samples: int = SAMPLES,
    *,
    stat: Path = STAT,
    tasks: Path = TASKS,
    sleep: Callable[[float], None] = time.sleep,
) -> float | None:
    """The median count of other programs' running threads over `samples` readings; None without /proc."""
    counts: list[int] = []
    for i in range(max(1, samples)):
        if i:
            sleep(SAMPLE_GAP_S)
        try:
            total = procs_running(stat.read_text(errors="replace"))
        except OSError:
            return None
        if total is None:
            return None
        counts.append(max(0, total - own_running(tasks)))
    return float(statistics.median(counts))


class _OwnUse:
    """This process's CPU use (cores' worth) since the previous reading: the load average counts it too."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wall = time.monotonic()
        self._cpu = time.process_time()
        self._rate = 0.0

    def rate(self) -> float:
        """Cores this process kept busy on average since the last call (the last estimate within a second)."""
        with self._lock:
            wall, cpu = time.monotonic(), time.process_time()
            if wall - self._wall >= 1.0:
                self._rate = (cpu - self._cpu) / (wall - self._wall)
                self._wall, self._cpu = wall, cpu
            return self._rate


_OWN_USE = _OwnUse()


def _loadavg_others() -> float | None:
    """Other programs' load where there is no /proc: the one-minute load average less our own use."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
    return max(0.0, load - _OWN_USE.rate())


def _cpus_here() -> int:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def free_cores(total: int, samples: int = SAMPLES) -> int:
    """Of `total` cores (the physical cores, say), how many other programs leave free now (0 to `total`).

    With no way to tell (no /proc, no load average), all of them. Where this process may run on
    only some of the machine's CPUs, the others' count is scaled to that share (the kernel counts
    running threads machine-wide).
    """
    others = others_running(samples)
    if others is None:
        others = _loadavg_others()
    if others is None:
        return total
    machine, here = os.cpu_count() or 1, _cpus_here()
    if here < machine:
        others *= here / machine
    return max(0, min(total, int(total - others + 0.5)))


# -- our own other work ---------------------------------------------------------------------------------


class CoreClaims:
    """The threads this process's own other CPU work runs on now, declared by that work while it runs."""

    def __init__(self) -> None:
        """No claims."""
        self._lock = threading.Lock()
        self._held: dict[int, tuple[str, int]] = {}
        self._next = 0

    @contextmanager
    def claim(self, threads: int, who: str) -> Iterator[None]:
        """Hold `threads` cores for `who` (`speech to text`) while the block runs."""
        with self._lock:
            key = self._next
            self._next += 1
            self._held[key] = (who, max(0, threads))
        try:
            yield
        finally:
            with self._lock:
                del self._held[key]

    def total(self) -> int:
        """Threads claimed now, all claims together."""
        with self._lock:
            return sum(n for _, n in self._held.values())

    def held(self) -> list[tuple[str, int]]:
        """The claims now, as (who, threads), oldest first."""
        with self._lock:
            return list(self._held.values())


CLAIMS = CoreClaims()
"""The process's claims: speech to text declares its threads here, the model's thread count leaves them out."""


def claim(threads: int, who: str) -> AbstractContextManager[None]:
    """Hold `threads` cores in the process's claims while the `with` block runs."""
    return CLAIMS.claim(threads, who)


def claimed() -> int:
    """Threads the process's own other work holds now."""
    return CLAIMS.total()


def threads_to_use(most: int, total: int, samples: int = SAMPLES) -> int:
    """Threads for the model now: the cores of `total` that other programs and our own other work leave, 1 to `most`."""
    return max(1, min(most, free_cores(total, samples) - claimed()))
