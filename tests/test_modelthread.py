"""The model thread: every llama.cpp call on one thread, streams that behave like generators."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edgeassist.engine.base import Done, GenerationOptions
from edgeassist.engine.llama import LlamaEngine
from edgeassist.engine.modelthread import AHEAD, MODEL_THREAD, Cancel, ModelThread


def test_calls_run_on_one_thread_whichever_thread_asks() -> None:
    mt = ModelThread("test-model")
    seen: list[threading.Thread] = []
    callers = [threading.Thread(target=lambda: seen.append(mt.call(threading.current_thread))) for _ in range(3)]
    for t in callers:
        t.start()
    for t in callers:
        t.join()
    seen.append(mt.call(threading.current_thread))
    assert len(set(seen)) == 1 and seen[0].name == "test-model" and seen[0] is not threading.current_thread()
    assert mt.call(lambda: mt.call(lambda: 7)) == 7  # a call from the model thread runs in place
    with pytest.raises(ValueError, match="bad"):
        mt.call(lambda: (_ for _ in ()).throw(ValueError("bad")))


def counting(n: int, made: list[int], stop: threading.Event | None = None) -> Callable[[], Iterator[int]]:
    """A producer of 0 to n-1 that notes each item in `made` as it makes it, and ends once `stop` is set."""

    def produce() -> Iterator[int]:
        for i in range(n):
            if stop is not None and stop.is_set():
                return
            made.append(i)
            yield i

    return produce


def test_a_stream_runs_at_most_ahead_items_in_front_of_its_consumer() -> None:
    mt = ModelThread()
    made: list[int] = []
    stop = Cancel()
    got = []
    for item in mt.stream(counting(100, made, stop), stop):
        got.append(item)
        assert len(made) <= len(got) + AHEAD + 1  # (the one being put waits for room)
        if item == 4:
            break  # the consumer leaves: the producer is told to stop, and has stopped when this returns
    assert stop.is_set() and made[:5] == [0, 1, 2, 3, 4] and len(made) <= 5 + AHEAD + 1


def test_holding_pauses_streams_between_items() -> None:
    mt = ModelThread()
    made: list[int] = []
    stream = mt.stream(counting(50, made), Cancel())
    assert next(stream) == 0
    got: list[int] = []
    with mt.held():
        before = len(made)  # the items made (or being made) before the hold
        waiter = threading.Thread(target=lambda: got.extend(next(stream) for _ in range(before + 3)))
        waiter.start()
        waiter.join(timeout=0.5)  # it takes what was made, then waits: nothing new is made while held
        assert waiter.is_alive() and len(made) <= before + 1
    waiter.join()
    assert got == list(range(1, before + 4)) and list(stream) == list(range(before + 4, 50))


def test_a_hold_begins_once_the_item_being_made_is_done() -> None:
    mt = ModelThread()
    making, finish, made = threading.Event(), threading.Event(), threading.Event()

    def produce() -> Iterator[int]:
        yield 0
        making.set()
        finish.wait(10)  # a token being computed when the hold is asked for
        made.set()
        yield 1

    stream = mt.stream(produce, Cancel())
    assert next(stream) == 0
    assert making.wait(5)
    entered: list[bool] = []

    def hold() -> None:
        with mt.held():
            entered.append(made.is_set())

    holder = threading.Thread(target=hold)
    holder.start()
    holder.join(0.2)  # (without the wait, the block would have run by now, before the token was done)
    finish.set()
    holder.join(10)
    # The block ran only once that token was done: what it starts (the first sentence's speech) does
    # not run beside it.
    assert entered == [True]
    assert list(stream) == [1]


def test_a_stepwise_stream_makes_an_item_only_when_its_consumer_asks() -> None:
    mt = ModelThread()
    made: list[int] = []
    with mt.stepwise():
        stream = mt.stream(counting(8, made), Cancel())
        for i in range(3):
            assert next(stream) == i
            # Nothing is being made while the consumer holds what it asked for (a hold begins at
            # once), and nothing was made ahead of it.
            with mt.held():
                assert made == list(range(i + 1))
    # Out of the block the producer runs ahead again, and the stream goes on where it was.
    assert next(stream) == 3
    assert list(stream) == [4, 5, 6, 7] and made == list(range(8))


def test_a_stepwise_stream_still_stops_when_its_consumer_leaves() -> None:
    mt = ModelThread()
    stop = Cancel()
    made: list[int] = []
    with mt.stepwise():
        for item in mt.stream(counting(100, made, stop), stop):
            if item == 2:
                break  # the producer waits for an ask that never comes: the stop ends it
    assert stop.is_set() and made == [0, 1, 2]


def test_a_stream_raises_the_producers_error_in_the_consumer() -> None:
    def produce() -> Iterator[int]:
        yield 1
        raise RuntimeError("llama.cpp failed")

    with pytest.raises(RuntimeError, match="llama.cpp failed"):
        list(ModelThread().stream(produce, Cancel()))


def test_cancel_reads_the_outer_flag_too() -> None:
    outer = threading.Event()
    cancel = Cancel(outer)
    assert not cancel.is_set()
    outer.set()
    assert cancel.is_set()


def test_the_engine_decodes_on_the_model_thread_and_stops_when_its_consumer_leaves(starter_gguf: Path) -> None:
    engine = LlamaEngine(starter_gguf, n_ctx=512)
    engine.load()
    assert engine._state is not None
    options = GenerationOptions(max_tokens=64, temperature=0, ignore_eos=True)
    decoded_on: set[str] = set()
    real = engine._state.decode

    def spy(tokens: list[int], cancel: threading.Event | None = None, *, last: int = 1) -> bool:
        decoded_on.add(threading.current_thread().name)
        return real(tokens, cancel, last=last)

    engine._state.decode = spy  # type: ignore[method-assign]
    messages = [{"role": "user", "content": "Count to one hundred."}]
    stream = engine.stream(messages, options)
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()  # returns once the model thread has stopped and finished its bookkeeping
    held = len(engine._state.tokens)
    done = [e for e in engine.stream(messages, options) if isinstance(e, Done)][0]
    assert decoded_on == {MODEL_THREAD.name}
    assert held < done.stats.prompt_tokens + 8  # the first reply stopped within a token or so of the break
    assert done.stats.reused_tokens > 0 and done.stats.generated_tokens == 64
    engine.close()
