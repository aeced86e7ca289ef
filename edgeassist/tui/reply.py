"""The reply controller: every reply the app shows, typed or spoken, from its start to its end.

A reply's life is `edgeassist.reply.ReplyMachine` (pending → streaming → complete | stopped | cut
| failed); this module moves it and shows each move. A typed reply's thread worker iterates
`Conversation.send/regenerate/edit_last` itself (the engine runs its compute where it must); a
spoken one's events come from the push-to-talk room's worker through `forward`. Either way the
pieces travel through an `Outbox`, so the UI renders frames, not tokens, and rendering never
holds up the decode loop; everything else arrives as posted messages.

What stop means is read in one place, the last two sections of `ReplyController`: what a stop
asks of a reply being written (`stop`, for Esc, quit, a new chat, a model switch, a signal; and
`stop_and_wait`), then how each ending, stopped included, is shown (`_end`).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from textual.worker import Worker, get_current_worker

from edgeassist.engine.base import Done, Event, GenerationOptions, Notice, Stats, Text, Thinking
from edgeassist.errors import EdgeAssistError, StoreError
from edgeassist.reply import ReplyMachine, ReplyState
from edgeassist.tui import figures
from edgeassist.tui.chats import MAX_SHOWN, ChatRoom
from edgeassist.tui.messages import ReplyDone, ReplyFailed, ReplyNotice, ReplyStreamed
from edgeassist.tui.models import ModelRoom
from edgeassist.tui.room import Room, Session, while_shown
from edgeassist.tui.stream import FrameBudget, Outbox, render_duty
from edgeassist.tui.widgets import ChatView, ReplyView, StatusBar, UserMessage

if TYPE_CHECKING:
    from textual.app import App
    from textual.timer import Timer

    from edgeassist.chat import Conversation
    from edgeassist.config import Settings

Kind = Literal["send", "edit", "regenerate", "continue"]
"""What a typed reply answers: a new message, the last one edited or answered again, or the last reply continued."""


def _decode_threads_and_cpus(settings: Settings) -> tuple[int, int]:
    from edgeassist.system import physical_cores

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return settings.model.n_threads or physical_cores(), cpus


@dataclass(eq=False)
class Reply:
    """One reply on screen: its state machine, its view, and the thread writing it."""

    reply_id: int
    view: ReplyView
    outbox: Outbox
    life: ReplyMachine = field(default_factory=ReplyMachine)
    """Where the reply is (moved by the controller only)."""
    finished: threading.Event = field(default_factory=threading.Event)
    """Its thread has returned, so what it wrote is saved (or its thread will never run)."""
    worker: Worker[None] | None = None
    timer: Timer | None = None
    """Drains what a pause in decoding left waiting in the outbox."""
    prompt: UserMessage | None = None
    """A spoken reply's message (the live transcript, then what was heard); it goes if the reply never starts."""
    interrupt: Callable[[], None] | None = None
    """A spoken reply's way to stop recording, speaking and generating at once."""

    @property
    def ended(self) -> bool:
        """Whether the reply has reached one of its endings."""
        return self.life.ended

    @property
    def spoken(self) -> bool:
        """Whether it answers a push-to-talk turn."""
        return self.prompt is not None


def conversation_events(
    convo: Conversation, kind: Kind, text: str | None, cancel: threading.Event, options: GenerationOptions
) -> Generator[Event, None, None]:
    """The conversation's events for a typed reply; closing this closes the conversation's stream (it saves)."""
    if kind == "regenerate":
        yield from convo.regenerate(cancel, options)
    elif kind == "continue":
        yield from convo.continue_reply(cancel, options)
    elif kind == "edit":
        yield from convo.edit_last(text or "", cancel, options)
    else:
        yield from convo.send(text or "", cancel, options)


class ReplyController(Room):
    """Starts, streams, stops and ends the app's replies; `busy` while one is being written."""

    def __init__(
        self,
        app: App[Any],
        session: Session,
        models: ModelRoom,
        chats: ChatRoom,
        on_busy: Callable[[bool], None],
    ) -> None:
        """`on_busy` hears whether a reply is being written each time that may have changed."""
        super().__init__(app, session)
        self.models, self.chats = models, chats
        self._on_busy = on_busy
        self.active: dict[int, Reply] = {}
        """The replies on screen that have not been shown as ended yet, by id."""
        self._ids = itertools.count(1)
        self._frames = FrameBudget(duty=render_duty(*_decode_threads_and_cpus(session.settings)))

    @property
    def busy(self) -> bool:
        """Whether a reply is being written."""
        return any(not r.ended for r in self.active.values())

    @property
    def busy_typing(self) -> bool:
        """Whether a reply to a typed message is being written."""
        return any(not r.ended and not r.spoken for r in self.active.values())

    def _new(
        self,
        prompt: UserMessage | None = None,
        interrupt: Callable[[], None] | None = None,
        *,
        shown: tuple[str, str] = ("", ""),
    ) -> Reply:
        self._frames.reset()
        outbox = Outbox(interval_s=self._frames.interval)
        view = ReplyView(*shown, streaming=True)
        return Reply(next(self._ids), view, outbox, prompt=prompt, interrupt=interrupt)

    def _track(self, reply: Reply) -> None:
        self.active[reply.reply_id] = reply
        self._on_busy(True)

    # -- starting ---------------------------------------------------------------------------------

    async def send(self, kind: Kind, text: str | None, *, shown: tuple[str, str] = ("", "")) -> None:
        """Write the reply to a typed message (`kind`) under the chat's last message: pending until drawn.

        `shown`: the answer and thinking the reply starts with (a continued reply's text so far).
        """
        convo = self.chats.conversation
        assert convo is not None
        chat_view = self.app.query_one(ChatView)
        reply = self._new(shown=shown)
        await chat_view.mount(reply.view)
        chat_view.anchor()
        self._track(reply)
        ready = self.models.ready
        self.app.query_one(StatusBar).set_figures("reading the prompt…" if ready else "waiting for the model…")
        # Start the model once the frame showing the message is drawn, so that frame costs it nothing.
        self.app.call_after_refresh(self._launch, reply, kind, text, self.models.options(), convo)

    async def _launch(
        self, reply: Reply, kind: Kind, text: str | None, options: GenerationOptions, convo: Conversation
    ) -> None:
        if reply.life.stop_requested and not reply.ended:
            await self._end(reply, reply.life.stop())
        if reply.ended:
            # Stopped before it started: nothing reached the conversation, so show what it holds.
            if not self.session.quitting:
                await self.chats.render()
            return
        reply.life.start()
        write = partial(self._write, reply, kind, text, options, convo)
        reply.worker = self.app.run_worker(write, name="reply", group="reply", exclusive=True, thread=True)

    def _write(
        self, reply: Reply, kind: Kind, text: str | None, options: GenerationOptions, convo: Conversation
    ) -> None:
        """Stream one typed reply (blocking, in its thread worker); `stop` cancels the worker, which stops it."""
        cancel = get_current_worker().cancelled_event
        try:
            events = conversation_events(convo, kind, text, cancel, options)
            try:
                for event in events:
                    self.forward(reply, event)
            finally:
                events.close()  # a reply left early is saved as stopped, here in its thread
        except EdgeAssistError as e:
            self.app.post_message(ReplyFailed(reply.reply_id, str(e), unsaved=isinstance(e, StoreError)))
        except Exception as e:  # noqa: BLE001 - an engine bug must not take the app (and unsaved text) down
            self.app.post_message(ReplyFailed(reply.reply_id, f"unexpected error: {e!r}"))
        finally:
            reply.finished.set()

    def spoken(self, prompt: UserMessage, interrupt: Callable[[], None]) -> Reply:
        """A pending reply for a push-to-talk turn whose recording has started; shown once the words are heard."""
        reply = self._new(prompt, interrupt)
        self._track(reply)
        return reply

    async def start_spoken(self, reply: Reply) -> None:
        """The words were heard: the spoken reply starts, under its message."""
        reply.life.start()
        chat_view = self.app.query_one(ChatView)
        await chat_view.mount(reply.view, after=reply.prompt)
        chat_view.anchor()
        self.app.query_one(StatusBar).set_figures("reading the prompt…")

    # -- streaming --------------------------------------------------------------------------------

    def forward(self, reply: Reply, event: object) -> None:
        """A reply's event to the UI (from its thread): pieces into the outbox, the rest as messages."""
        if isinstance(event, Text | Thinking):
            if reply.outbox.put(isinstance(event, Thinking), event.text):
                self.app.post_message(ReplyStreamed(reply.reply_id))
        elif isinstance(event, Done):
            self.app.post_message(ReplyDone(reply.reply_id, event.stats))
        elif isinstance(event, Notice):
            self.app.post_message(ReplyNotice(reply.reply_id, event.text))

    async def _drain(self, reply: Reply) -> None:
        reply.outbox.interval_s = interval = self._frames.sample()
        if reply.timer is not None:
            reply.timer.stop()
        # Notifications ride on new pieces; if the model pauses, this shows what came before the pause.
        reply.timer = None if reply.ended else self.app.set_timer(interval * 1.5, partial(self._drain_later, reply))
        chunk = reply.outbox.take()
        if chunk.pieces == 0:
            return
        await reply.view.add(chunk)
        n_ctx = self.models.engine.n_ctx if self.models.engine is not None else None
        live = figures.live_figures(chunk, self.session.settings.bench.target_ms, n_ctx)
        self.app.query_one(StatusBar).set_figures(live, layout=False)

    @while_shown
    async def _drain_later(self, reply: Reply) -> None:
        if not reply.ended and reply.outbox.pending():
            await self._drain(reply)

    @while_shown
    async def on_streamed(self, message: ReplyStreamed) -> None:
        """Render what arrived since the last frame."""
        reply = self.active.get(message.reply_id)
        if reply is not None and not reply.ended:
            await self._drain(reply)

    def on_notice(self, message: ReplyNotice) -> None:
        """Show a note from the pipeline."""
        self.app.notify(message.text, severity="warning", timeout=10)

    # -- stopping ---------------------------------------------------------------------------------

    def stop(self) -> bool:
        """Stop every reply being written; False if none was.

        A stop is asked, not done: the reply's thread stops the engine within one token, saves
        what was written marked as stopped, and its Done (cancelled) ends it here. A reply whose
        thread has not started never starts. A spoken one also stops recording and speaking.
        """
        stopped = False
        for reply in self.active.values():
            if not reply.life.request_stop():
                continue  # already ended
            if reply.interrupt is not None:
                reply.interrupt()
            if reply.worker is not None:
                reply.worker.cancel()  # sets the cancel event the engine checks each token
            else:
                reply.finished.set()  # its thread will never run
            reply.view.set_note("■ stopping…", "stopped")
            stopped = True
        return stopped

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every reply thread has finished (and saved); False on timeout. Not on the UI thread."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for reply in list(self.active.values()):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not reply.finished.wait(left):
                return False
        return True

    async def stop_and_wait(self, timeout: float = 30.0) -> None:
        """Stop every reply, wait for its thread to save it, and end it here, stopped.

        Called from handlers: a reply's own Done waits in the queue behind this one, so it is
        ended here and that message is ignored when it arrives.
        """
        live = [r for r in self.active.values() if not r.ended]
        if not live:
            return
        self.stop()
        await asyncio.to_thread(self.wait_idle, timeout)
        for reply in live:
            await self.settle(reply)

    async def settle(self, reply: Reply) -> None:
        """A reply whose thread ended without a Done (nothing heard, stopped before it started) ends stopped."""
        if not reply.ended:
            await self._end(reply, reply.life.stop())

    # -- ending -----------------------------------------------------------------------------------

    @while_shown
    async def on_done(self, message: ReplyDone) -> None:
        """The reply's Done: complete, cut by the token limit, or stopped, as its stats say."""
        reply = self.active.get(message.reply_id)
        if reply is None or reply.ended:
            return  # already settled here (stopped and waited for)
        await self._end(reply, reply.life.finish(Done(message.stats)), stats=message.stats)

    @while_shown
    async def on_failed(self, message: ReplyFailed) -> None:
        """The reply's thread failed: keep what arrived, say what went wrong."""
        reply = self.active.get(message.reply_id)
        if reply is None or reply.ended:
            return
        await self._end(reply, reply.life.fail(), error=message.error, unsaved=message.unsaved)

    async def _end(
        self,
        reply: Reply,
        state: ReplyState,
        *,
        stats: Stats | None = None,
        error: str | None = None,
        unsaved: bool = False,
    ) -> None:
        """Show how a reply ended (its machine has just moved to `state`), then stop counting it."""
        view, written = reply.view, False
        if view.is_mounted:
            await self._drain(reply)  # the last pieces (no timer: it has ended)
            written = bool(view.content.strip() or view.thinking.strip())
            if state is ReplyState.COMPLETE:
                await view.finish("complete")
            elif state is ReplyState.CUT:
                await view.finish("cut", cut_at=stats.generated_tokens if stats is not None else None)
            elif not written:
                await view.remove()  # nothing was written, so nothing was saved
            elif state is ReplyState.STOPPED:
                await view.finish("cancelled")
            else:
                note = "not saved: the history could not be written" if unsaved else "stopped by an error"
                await view.finish("error", note=note)
        if not reply.life.started and reply.prompt is not None and reply.prompt.is_mounted:
            await reply.prompt.remove()  # a spoken turn stopped before anything was heard leaves no message
        if stats is not None:
            final = figures.final_figures(stats, self.session.settings.bench.target_ms)
            self.app.query_one(StatusBar).set_figures(final)
        elif state is ReplyState.FAILED:
            self.app.query_one(StatusBar).set_figures("the last reply failed")
        if state is ReplyState.STOPPED and stats is not None and not written:
            self.app.notify("Stopped before the first token.")
        if error is not None:
            self.app.notify(error, title="Error", severity="error", timeout=15)
        self.active.pop(reply.reply_id, None)
        self._on_busy(self.busy)
        if not self.session.quitting:
            await self.chats.show_memory()
            self.app.call_later(self.chats.refresh_list)
            self.app.call_later(self.app.query_one(ChatView).trim, MAX_SHOWN)
