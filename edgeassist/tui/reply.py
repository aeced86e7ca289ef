"""The reply controller: every reply the app shows, typed or spoken, from its start to its end.

A reply's life is `edgeassist.reply.ReplyMachine` (pending → streaming → complete | stopped | cut
| failed); this module moves it and shows each move. A typed reply's thread worker iterates
`Conversation.send/regenerate/edit_last` itself (the engine runs its compute where it must); a
spoken one's events come from the push-to-talk room's worker through `forward`. Either way the
pieces travel through an `Outbox`, so the UI renders frames, not tokens, and rendering never
holds up the decode loop; everything else arrives as posted messages.

A reply that calls tools is several steps of the model with the calls between them (the core's
loop, `Conversation`). On screen each call is a block (`widgets.ToolBlock`) mounted above the
reply's view, in order: a step that wrote something before calling ends there as a finished view,
and what the model writes after the calls streams into a fresh view below their blocks. A step
that wrote nothing keeps its (empty) view for the next one, so no empty bubble is left behind. The
reply's thread hands each tool event over and waits until the UI has shown it (or the reply is
stopped): the pieces written after a call can then never land above its block. A call that asks
first opens `tools.ConsentScreen`; the thread waits for the answer, or for a stop, which answers no.

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
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from textual.app import ScreenError
from textual.worker import Worker, get_current_worker

from edgeassist.engine.base import Done, GenerationOptions, Notice, Stats, Text, Thinking
from edgeassist.errors import EdgeAssistError, StoreError
from edgeassist.reply import ReplyMachine, ReplyState
from edgeassist.tools import ConsentRequest, Decision, ToolResult, ToolStarted
from edgeassist.tui import figures
from edgeassist.tui.chats import MAX_SHOWN, ChatRoom
from edgeassist.tui.messages import ReplyDone, ReplyFailed, ReplyNotice, ReplyStreamed, ToolAsked, ToolCalled
from edgeassist.tui.models import ModelRoom
from edgeassist.tui.room import Room, Session, while_shown
from edgeassist.tui.stream import FrameBudget, Outbox, render_duty
from edgeassist.tui.tools import ConsentScreen
from edgeassist.tui.widgets import ChatView, ReplyView, StatusBar, ToolBlock, UserMessage

if TYPE_CHECKING:
    from textual.app import App
    from textual.timer import Timer

    from edgeassist.chat import Conversation, ReplyEvent
    from edgeassist.config import Settings
    from edgeassist.images import Picture

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
    """Its view on screen: the step being written (after tool calls, a new one below their blocks)."""
    outbox: Outbox
    """The pieces of the step being written, on their way to `view`."""
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
    call: ToolBlock | None = None
    """The block of the tool call running now."""
    consent: ConsentScreen | None = None
    """The dialog asking whether a call may run, while it is open."""
    waiting: threading.Event | None = None
    """What its thread waits on while the UI shows a tool event or asks (a stop sets it)."""

    @property
    def ended(self) -> bool:
        """Whether the reply has reached one of its endings."""
        return self.life.ended

    @property
    def spoken(self) -> bool:
        """Whether it answers a push-to-talk turn."""
        return self.prompt is not None


def conversation_events(
    convo: Conversation,
    kind: Kind,
    text: str | None,
    cancel: threading.Event,
    options: GenerationOptions,
    images: Sequence[Picture] = (),
) -> Generator[ReplyEvent, None, None]:
    """The conversation's events for a typed reply; closing this closes the conversation's stream (it saves).

    `images`: a new message's pictures (an edited message keeps its own).
    """
    if kind == "regenerate":
        yield from convo.regenerate(cancel, options)
    elif kind == "continue":
        yield from convo.continue_reply(cancel, options)
    elif kind == "edit":
        yield from convo.edit_last(text or "", cancel, options)
    else:
        yield from convo.send(text or "", cancel, options, images=images)


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

    async def send(
        self,
        kind: Kind,
        text: str | None,
        *,
        shown: tuple[str, str] = ("", ""),
        images: Sequence[Picture] = (),
    ) -> None:
        """Write the reply to a typed message (`kind`) under the chat's last message: pending until drawn.

        `shown`: the answer and thinking the reply starts with (a continued reply's text so far);
        `images`: a new message's pictures, kept with the chat and sent to the model.
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
        self.app.call_after_refresh(self._launch, reply, kind, text, self.models.options(), convo, tuple(images))

    async def _launch(
        self,
        reply: Reply,
        kind: Kind,
        text: str | None,
        options: GenerationOptions,
        convo: Conversation,
        images: tuple[Picture, ...] = (),
    ) -> None:
        if reply.life.stop_requested and not reply.ended:
            await self._end(reply, reply.life.stop())
        if reply.ended:
            # Stopped before it started: nothing reached the conversation, so show what it holds.
            if not self.session.quitting:
                await self.chats.render()
            return
        reply.life.start()
        write = partial(self._write, reply, kind, text, options, convo, images)
        reply.worker = self.app.run_worker(write, name="reply", group="reply", exclusive=True, thread=True)

    def _write(
        self,
        reply: Reply,
        kind: Kind,
        text: str | None,
        options: GenerationOptions,
        convo: Conversation,
        images: tuple[Picture, ...] = (),
    ) -> None:
        """Stream one typed reply (blocking, in its thread worker); `stop` cancels the worker, which stops it."""
        cancel = get_current_worker().cancelled_event
        try:
            if convo.toolbox is not None:
                # A message sent while the model loads: whether it can call tools is known once it has.
                convo.engine.load()
                if convo.engine.capabilities.tools:
                    convo.toolbox.start()  # here, off the UI thread: MCP servers take a while (once a session)
                    self.session.tools_started.set()
            events = conversation_events(convo, kind, text, cancel, options, images)
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
        elif isinstance(event, ConsentRequest):
            answered = threading.Event()
            self._hand_over(reply, ToolAsked(reply.reply_id, event, answered), answered)
            if event.decision is None:
                event.answer("deny")  # stopped before an answer (the loop then sees the stop: the call is `stopped`)
        elif isinstance(event, ToolStarted | ToolResult):
            shown = threading.Event()
            self._hand_over(reply, ToolCalled(reply.reply_id, event, shown), shown)

    def _hand_over(self, reply: Reply, message: ToolAsked | ToolCalled, done: threading.Event) -> None:
        """Post `message` and wait (in the reply's thread) until the UI is done with it or the reply is stopped."""
        reply.waiting = done
        try:
            self.app.post_message(message)
            # `stop` sets `done` (after the cancel event): the timeout only notices an app that has gone.
            while not reply.life.stop_requested and not done.wait(0.5):
                if not self.app.is_running:
                    return
        finally:
            reply.waiting = None

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

    # -- tool calls -------------------------------------------------------------------------------

    async def _close_step(self, reply: Reply) -> None:
        """The model has called a tool: the step it wrote so far ends; its calls and next step go below it."""
        await self._drain(reply)
        view = reply.view
        if not view.is_mounted or not (view.content.strip() or view.thinking.strip()):
            return  # nothing written: this view waits for what the model writes after the calls
        await view.finish("complete", calls=True)
        reply.view = ReplyView(streaming=True)
        await self.app.query_one(ChatView).mount(reply.view, after=view)
        # (Its thread waits for this: no piece is on its way.) Each step times its own thinking.
        reply.outbox = Outbox(interval_s=reply.outbox.interval_s)

    async def _show_block(self, reply: Reply, block: ToolBlock) -> None:
        chat_view = self.app.query_one(ChatView)
        if reply.view.is_mounted:
            await chat_view.mount(block, before=reply.view)
        else:
            await chat_view.mount(block)

    @while_shown
    async def on_tool_called(self, message: ToolCalled) -> None:
        """A call started (its block, open and running) or ended (its block says how, and closes)."""
        try:
            reply = self.active.get(message.reply_id)
            if reply is None or reply.ended:
                return
            await self._close_step(reply)
            use = message.event.use
            if isinstance(message.event, ToolStarted):
                reply.call = ToolBlock(use, running=True)
                await self._show_block(reply, reply.call)
                return
            block, reply.call = reply.call, None
            if block is not None and block.is_mounted and block.use.name == use.name:
                block.finish(use)
            else:  # a call that never ran (refused, or stopped while it asked) has no block yet
                await self._show_block(reply, ToolBlock(use))
        finally:
            message.shown.set()

    @while_shown
    async def on_tool_asked(self, message: ToolAsked) -> None:
        """A call asks first: show the dialog; its answer (Esc: deny) lets the reply's thread go on."""
        reply = self.active.get(message.reply_id)
        request = message.request

        def answered(decision: Decision | None) -> None:
            if reply is not None:
                reply.consent = None
            request.answer(decision or "deny")  # before the thread goes on: the loop reads it then
            message.answered.set()

        if reply is None or reply.ended or reply.life.stop_requested:
            answered("deny")
            return
        try:
            await self._close_step(reply)
            reply.consent = ConsentScreen(request)
            self.app.push_screen(reply.consent, answered)
        except BaseException:
            answered("deny")
            raise

    def _withdraw(self, reply: Reply) -> None:
        """Close the reply's consent dialog (it was stopped): the answer is no, and the stop makes the call stopped."""
        screen, reply.consent = reply.consent, None
        if screen is None or screen not in self.app.screen_stack:
            return
        try:
            if self.app.screen is not screen:
                screen.pop_until_active()  # (the help screen, opened over the dialog)
            screen.dismiss("deny")
        except ScreenError:
            pass  # the screens are going (the app is shutting down)

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
                reply.worker.cancel()  # sets the cancel event the engine (and a running tool) checks
            else:
                reply.finished.set()  # its thread will never run
            self._withdraw(reply)
            if reply.waiting is not None:
                reply.waiting.set()  # (after the cancel: the thread wakes to a stopped reply)
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
        self._withdraw(reply)
        if reply.call is not None and reply.call.is_mounted:
            reply.call.stopped()  # (settled before its thread's last word on the call came)
        reply.call = None
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
