"""The one thread of the process that runs llama.cpp.

llama.cpp's CPU backend parallelises with OpenMP, and GNU OpenMP keeps a team of threads for
each thread that calls into it. Once two threads that have run the model are alive at the same
time, libgomp counts more threads than cores and stops spinning at its barriers, and decoding
runs about three times slower for the rest of the process (44 against ~130 ms/token for the
0.8B on a 2-core machine). The front ends run model work from many threads (Textual's worker
pool, the voice pipeline's threads, the bench's main thread), so `LlamaEngine` sends all of it
here instead: one long-lived thread, whichever thread asks.

    MODEL_THREAD.call(fn, *args)        # run fn on the model thread, wait, return its result
    MODEL_THREAD.stream(make, stop)     # iterate make() on the model thread, items handed over here
    with MODEL_THREAD.held():           # pause streams between tokens (voice: the first audio gets the cores)
        ...
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


class Cancel(threading.Event):
    """A cancel flag that is also set when `outer` is: the caller's own flag, plus the stream's consumer leaving."""

    def __init__(self, outer: threading.Event | None = None) -> None:
        """Unset; it reads as set once `outer` (if any) is."""
        super().__init__()
        self._outer = outer

    def is_set(self) -> bool:
        """Whether either this flag or the outer one is set."""
        return super().is_set() or (self._outer is not None and self._outer.is_set())


@dataclass
class _Job:
    fn: Callable[[], Any]
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            self.error = e
        finally:
            self.done.set()


_END = object()
AHEAD = 2
"""Events a stream's producer may run ahead of its consumer: enough that a consumer keeping up
never holds the model back, few enough that a stalled one stops it (and Esc is never far behind)."""


HOLD_WAIT_S = 0.5
"""Longest `held()` waits for the token being computed to be done before its block runs."""


@dataclass
class _Raised:
    error: BaseException


class ModelThread:
    """Runs submitted work, one job at a time, on a single daemon thread started on first use."""

    def __init__(self, name: str = "edgeassist-model") -> None:
        """Start no thread yet; the first job does."""
        self.name = name
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._hold = threading.Condition()
        self._holders = 0
        self._stepwise = 0
        self._computing = False  # a stream's producer is computing its next item

    def on_it(self) -> bool:
        """Whether the calling thread is the model thread (work is then run in place)."""
        return threading.current_thread() is self._thread

    def _submit(self, job: _Job) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
        self._jobs.put(job)

    def _run(self) -> None:
        while True:
            self._jobs.get().run()

    @contextmanager
    def held(self) -> Iterator[None]:
        """While this block runs, streams wait before computing their next item.

        On a small board the model and the voice compete for the same cores; voice holds the model
        while the first sentence is synthesized, so the first audio comes sooner (the model catches
        up while it plays). A token being computed when the block is entered is finished first,
        before the block runs (for at most `HOLD_WAIT_S`): two programs that each spin-wait across
        both cores slow each other far beyond their sum (piper's first chunk took 257 ms beside
        the end of one 45 ms token, 94 ms after it).
        """
        with self._hold:
            self._holders += 1
            self._hold.wait_for(lambda: not self._computing, HOLD_WAIT_S)
        try:
            yield
        finally:
            with self._hold:
                self._holders -= 1
                self._hold.notify_all()

    @contextmanager
    def stepwise(self) -> Iterator[None]:
        """While this block runs, a stream computes its next item only once its consumer asks for it.

        A stream's producer usually runs up to `AHEAD` items ahead, so the model is already computing
        the next token when the consumer reads one. Voice reads the first tokens this way until its
        first chunk is complete: the model then computes nothing while the consumer decides whether
        that token completes the chunk, and the `held()` that follows starts at once, without waiting
        out a token in flight (about one token's time sooner to the first audio). The cost is a
        hand-over between two threads per item.
        """
        with self._hold:
            self._stepwise += 1
        try:
            yield
        finally:
            with self._hold:
                self._stepwise -= 1

    def _wait_unheld(self, stop: threading.Event, asked: Callable[[], bool], asks: queue.SimpleQueue[None]) -> None:
        """Wait, in a `stepwise` block, until the consumer has `asked` for the next item (it says so on
        `asks`), then until no hold is on."""
        while self._stepwise and not asked() and not stop.is_set():
            try:
                asks.get(timeout=0.05)  # (a stop, or the block's end, is not said here: poll them)
            except queue.Empty:
                pass
        with self._hold:
            while self._holders and not stop.is_set():
                self._hold.wait(0.05)  # (a stop from the consumer is not notified here: poll it)
            self._computing = True

    def _computed(self) -> None:
        with self._hold:
            self._computing = False
            self._hold.notify_all()

    def call(self, fn: Callable[..., T], *args: Any, stop: threading.Event | None = None) -> T:
        """Run `fn(*args)` on the model thread and return its result (or raise its exception).

        If the wait is interrupted (Ctrl+C), `stop` is set and the job is waited for before the
        interruption goes on, so nothing frees the model while the job still uses it.
        """
        if self.on_it():
            return fn(*args)
        job = _Job(lambda: fn(*args))
        self._submit(job)
        try:
            job.done.wait()
        except BaseException:
            if stop is not None:
                stop.set()
            job.done.wait()
            raise
        if job.error is not None:
            raise job.error
        result: T = job.result
        return result

    def stream(self, make: Callable[[], Iterator[T]], stop: threading.Event) -> Iterator[T]:
        """Iterate `make()` on the model thread and yield its items here, as they come.

        The producer runs at most `AHEAD` items ahead of the consumer. When the consumer leaves
        early (closes this generator, or an exception such as Ctrl+C unwinds it) `stop` is set and
        this waits until the producer has finished, so the model is free and its bookkeeping is
        done when this returns. The producer must check `stop`.
        """
        if self.on_it():
            yield from make()
            return
        out: queue.Queue[Any] = queue.Queue(maxsize=AHEAD)
        # Items the consumer has asked for, items put: each written by one thread only. The consumer
        # takes no lock to ask (it is often the main thread, and a Ctrl+C between a lock's acquire and
        # the block would leave it held); `asks` wakes a producer that waits for an ask.
        count = [0, 0]
        asks: queue.SimpleQueue[None] = queue.SimpleQueue()

        def produce() -> None:
            try:
                items = make()
                while True:
                    self._wait_unheld(stop, lambda: count[1] < count[0], asks)
                    try:
                        item = next(items)
                    except StopIteration:
                        break
                    finally:
                        self._computed()
                    count[1] += 1
                    out.put(item)
            except BaseException as e:  # noqa: BLE001 - raised again in the consumer's thread
                out.put(_Raised(e))
            finally:
                self._computed()
                out.put(_END)

        self._submit(_Job(produce))
        finished = False
        try:
            while True:
                count[0] += 1
                if self._stepwise:
                    asks.put(None)  # (a C-level put: no lock a signal could leave held)
                item = out.get()
                if item is _END:
                    finished = True
                    return
                if isinstance(item, _Raised):
                    finished = True
                    raise item.error
                yield item
        finally:
            if not finished:
                stop.set()
                while out.get() is not _END:
                    pass


MODEL_THREAD = ModelThread()
"""The process's model thread: every llama.cpp call that runs the model goes through it."""
