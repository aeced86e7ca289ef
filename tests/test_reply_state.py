"""The reply state machine: each ending is reached from the right event, and nothing else moves it."""

from __future__ import annotations

import pytest

from edgeassist.engine.base import Done, Stats
from edgeassist.reply import TRANSITIONS, IllegalTransition, ReplyMachine, ReplyState, ending

ENDINGS = {ReplyState.COMPLETE, ReplyState.STOPPED, ReplyState.CUT, ReplyState.FAILED}


def done(reason: str) -> Done:
    return Done(Stats(finish_reason=reason))  # type: ignore[arg-type]


def streaming() -> ReplyMachine:
    reply = ReplyMachine()
    reply.start()
    return reply


def test_a_new_reply_is_pending_and_starts_streaming() -> None:
    reply = ReplyMachine()
    assert reply.state is ReplyState.PENDING and not reply.ended and not reply.started
    reply.start()
    assert reply.state is ReplyState.STREAMING and not reply.ended and reply.started


@pytest.mark.parametrize(
    ("reason", "state"),
    [
        ("stop", ReplyState.COMPLETE),
        ("length", ReplyState.CUT),
        ("cancelled", ReplyState.STOPPED),
        ("error", ReplyState.FAILED),
    ],
)
def test_done_ends_a_streaming_reply_as_its_finish_reason_says(reason: str, state: ReplyState) -> None:
    assert ending(done(reason)) is state
    reply = streaming()
    assert reply.finish(done(reason)) is state
    assert reply.state is state and reply.ended and reply.started


def test_the_token_limit_is_cut_not_complete() -> None:
    assert streaming().finish(done("length")) is ReplyState.CUT


def test_an_error_fails_a_reply_pending_or_streaming() -> None:
    assert ReplyMachine().fail() is ReplyState.FAILED
    assert streaming().fail() is ReplyState.FAILED


def test_stop_ends_a_reply_pending_or_streaming() -> None:
    pending = ReplyMachine()
    assert pending.stop() is ReplyState.STOPPED and not pending.started
    assert streaming().stop() is ReplyState.STOPPED


def test_a_stop_request_moves_nothing_until_the_reply_answers() -> None:
    reply = streaming()
    assert reply.request_stop()
    assert reply.state is ReplyState.STREAMING and reply.stop_requested
    # The model may have ended before it saw the request: what its Done says wins.
    assert reply.finish(done("stop")) is ReplyState.COMPLETE
    assert not reply.request_stop()  # nothing left to stop


def test_a_pending_reply_cannot_finish_without_starting() -> None:
    reply = ReplyMachine()
    with pytest.raises(IllegalTransition, match="pending to complete"):
        reply.finish(done("stop"))
    assert reply.state is ReplyState.PENDING


def test_a_reply_starts_once() -> None:
    reply = streaming()
    with pytest.raises(IllegalTransition, match="streaming to streaming"):
        reply.start()


@pytest.mark.parametrize("reason", ["stop", "length", "cancelled", "error"])
def test_an_ended_reply_never_moves_again(reason: str) -> None:
    reply = streaming()
    final = reply.finish(done(reason))
    for move in (reply.start, reply.stop, reply.fail, lambda: reply.finish(done("stop"))):
        with pytest.raises(IllegalTransition):
            move()
    assert reply.state is final


def test_the_table_has_the_documented_shape() -> None:
    assert set(TRANSITIONS) == set(ReplyState)
    assert {s for s in ReplyState if s.ended} == ENDINGS
    assert TRANSITIONS[ReplyState.PENDING] == {ReplyState.STREAMING, ReplyState.STOPPED, ReplyState.FAILED}
    assert TRANSITIONS[ReplyState.STREAMING] == ENDINGS
