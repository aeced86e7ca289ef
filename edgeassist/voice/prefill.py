"""Speculative prefill: the conversation's prompt evaluated while the user is still speaking.

`TurnScheduler` is the thread that orders one turn's work in the model: a prefill each time the
transcriber commits words while the key is held, then the reply, after the last prefill and never
beside it. It only orders the work: where the engine computes it is the engine's business (a
`LlamaEngine` runs it on the process's model thread, whichever thread asks).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from edgeassist.chat import Conversation
from edgeassist.engine.base import ChatEngine, GenerationOptions, Message, ToolSpec


def prefill_prompt(
    engine: ChatEngine,
    messages: Sequence[Message],
    options: GenerationOptions,
    user_prefix: str = "",
    cancel: threading.Event | None = None,
    state_path: Path | None = None,
    tools: Sequence[ToolSpec] = (),
    complete: bool = False,
) -> int:
    """Evaluate the next turn's prompt ahead of time, up to the user's words so far; return tokens evaluated.

    The engine renders the conversation with a user message that starts with `user_prefix`, cut
    where the rest of the message would begin, and evaluates the part of it that no continuation
    can change, which the reply then reuses; with `complete`, `user_prefix` is guessed to be the
    whole message and the reply's whole prompt is read. It starts from the chat's kept state at
    `state_path` when there is one. Engines that cannot start early return 0.
    """
    think = options.think and engine.capabilities.thinking
    message: Message = {"role": "user", "content": user_prefix}
    return engine.prefill([*messages, message], think, cancel, state_path=state_path, tools=tools, complete=complete)


class TurnScheduler:
    """The thread that orders a turn's model work: prefills while the user speaks, then the reply.

    A newer prefill request replaces one still waiting, a guess that the message is complete
    included (see `prefill_prompt`; with `draft_tokens`, the reply to the guess is begun, and
    stopped by a newer request or the reply), and the reply (its whole loop, from sending
    the message to the last event) runs on this thread after the last prefill, never beside it. It
    starts after the previous turn's has exited and exits itself when the turn is over.
    """

    def __init__(
        self,
        conversation: Conversation,
        options: GenerationOptions,
        previous: TurnScheduler | None,
        *,
        draft_tokens: int = 0,
    ) -> None:
        """Start the thread; it waits for `previous` (the last turn's scheduler) to exit before any work.
        `draft_tokens`: at a guess that the message is whole, begin the reply, up to that many tokens."""
        self.conversation = conversation
        self.options = options
        self.draft_tokens = draft_tokens
        self.tokens = 0
        """Prompt tokens evaluated ahead by this thread."""
        self.drafted = 0
        """Reply tokens written ahead by this thread (on guesses, right or wrong)."""
        self._previous = previous
        self._cond = threading.Condition()
        self._want: tuple[str, bool] | None = None  # (user prefix, complete)
        self._job: Callable[[], None] | None = None
        self._busy = False
        self._done = False
        self._stop = threading.Event()  # stops the reply begun ahead, once a newer request or the reply comes
        self._running: tuple[str, bool] | None = None  # the request being worked on
        self._thread = threading.Thread(target=self._run, name="voice-turn", daemon=True)
        self._thread.start()

    def prefill(self, user_prefix: str, *, complete: bool = False) -> None:
        """Evaluate the prompt up to `user_prefix` of the coming message, or with `complete` the whole prompt
        of a reply to it (a newer request replaces a waiting one)."""
        with self._cond:
            if self._done or self._job is not None:
                return
            ahead = self._want or self._running
            if not complete and ahead is not None and ahead[1] and ahead[0].startswith(user_prefix):
                return  # (the whole message is guessed already: these words add nothing to it)
            self._want = (user_prefix, complete)
            self._stop.set()
            self._cond.notify_all()

    def discard(self) -> None:
        """Forget a prefill request that has not started."""
        with self._cond:
            self._want = None

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no prefill is waiting or running."""
        with self._cond:
            return self._cond.wait_for(lambda: self._want is None and not self._busy, timeout)

    def run(self, job: Callable[[], None]) -> None:
        """Run `job` (the reply) on this thread next; the thread exits after it."""
        with self._cond:
            self._want = None
            self._job = job
            self._stop.set()  # (the reply goes on from what was begun, when it was for these words)
            self._cond.notify_all()

    def finish(self) -> None:
        """Exit without a reply (nothing was heard, or the turn was abandoned)."""
        with self._cond:
            self._want = None
            self._done = True
            self._stop.set()
            self._cond.notify_all()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to exit."""
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        if self._previous is not None:
            self._previous.join()
            self._previous = None
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._want is not None or self._job is not None or self._done)
                if self._job is not None or self._done:
                    job, self._done = self._job, True
                    break
                want, self._want = self._want, None
                assert want is not None  # (the wait above)
                prefix, complete = want
                self._busy = True
                self._running = want
                stop = self._stop = threading.Event()
            try:
                engine, context = self.conversation.engine, self.conversation.context()
                convo = self.conversation
                kept, tools = convo.state_path, convo.offered_tools(self.options)
                if complete and self.draft_tokens and not tools:
                    # The speaker may have finished: begin the reply itself, which the reply to these
                    # very words takes over (`ChatEngine.draft`); a newer request stops it.
                    messages, options = convo.request(prefix, self.options)
                    drafted = engine.draft(messages, options, stop, tokens=self.draft_tokens)
                    with self._cond:
                        self.drafted += drafted
                    n = 0
                else:
                    n = prefill_prompt(
                        engine, context, self.options, prefix, state_path=kept, tools=tools, complete=complete
                    )
            except Exception:  # noqa: BLE001 - prefill is only a head start; the reply does the work anyway
                n = 0
            with self._cond:
                self.tokens += n
                self._busy = False
                self._running = None
                self._cond.notify_all()
        if job is not None:
            job()
