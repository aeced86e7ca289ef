"""The hands-free room: the hands-free key (F7) turns `edgeassist.voice.HandsFree` on and off in the chat app.

Voice activity begins and ends each turn; no key is held. The first press builds the voice
pipeline, the push-to-talk room's (`TalkRoom.build`: whisper, piper, the devices, warmed up in a
worker), and starts a session on it; the next press stops it, off the UI thread (stopping waits
for the reply's threads). A thread worker reads the session's events: each `StateChanged` moves the
voice bar ("🎧 hands-free · listening (F7 to stop)", hearing you, thinking, speaking: <sentence>),
and each turn shows as a push-to-talk turn does: the transcript becomes the user's message, and
the reply is an ordinary spoken reply of the reply controller (`spoken`, `start_spoken`, `forward`,
`settle`), saved by the conversation. A turn that heard no words shows nothing.

The message is shown while the pipeline's reply thread waits in its final-transcript callback
(through `call_from_thread`, which never waits for a busy message queue), so a new chat is saved
before the pipeline saves the message into it, and the reply exists before its first event.

While hands-free is on:

- Esc stops the reply (or drops the turn being heard, or one whose words are not shown yet); hands-free
  listens again. Words already shown stay a message, saved, whenever the stop comes.
- With a headset, a barge-in while the last words are still decoded keeps them: they are shown and
  saved, with no reply of their own, and the reply to what the user says next reads them.
- The talk key says that hands-free is on and that F7 turns it off: both would read one microphone.
  So does the edit key: a turn heard meanwhile would become the last message, the one it replaces.
- A typed message stops the spoken reply, as talking over it would; a turn that begins while a
  typed message's reply is written stops that reply, as push-to-talk does.
- Another chat (open, new, clear, delete, its settings) or another model turns hands-free off first,
  with a notice: a session answers into one conversation. F7 turns it on again in the chat in view.
- Quitting stops the session before the push-to-talk room releases the devices.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from textual.css.query import NoMatches

from edgeassist.errors import EdgeAssistError
from edgeassist.tui.chats import ChatRoom
from edgeassist.tui.messages import (
    HandsFreeChanged,
    HandsFreeEnded,
    HandsFreeFailed,
    HandsFreeSpeaking,
    HandsFreeTurnDone,
    VoicePartial,
)
from edgeassist.tui.models import ModelRoom
from edgeassist.tui.reply import Reply, ReplyController
from edgeassist.tui.room import Room, Session, while_shown
from edgeassist.tui.talk import TalkRoom, for_the_app
from edgeassist.tui.widgets import ChatView, PromptInput, UserMessage, VoiceBar

if TYPE_CHECKING:
    from textual.app import App

    from edgeassist.voice import HandsFree, HandsFreeState, VoicePipeline

START_WAIT_S = 30.0
"""Longest a stop waits for the session's start (loading the VAD) to return."""


@dataclass(frozen=True, eq=False)
class Shown:
    """A turn's final words, and the reply shown for them (None: none was, the app is going)."""

    text: str
    """The final transcript, as the pipeline's `Heard` will carry it."""
    reply: Reply | None
    """The reply under the message, started (None: no message was shown)."""


@dataclass(eq=False)
class Live:
    """One hands-free session as the app holds it."""

    session: HandsFree
    """The session (its own state machine, threads and events)."""
    pipeline: VoicePipeline
    """The push-to-talk room's pipeline, lent to the session while it runs."""
    transcript: Callable[[str, bool], None] | None
    """The pipeline's own transcript callback (push-to-talk's), given back when the session ends."""
    shown: queue.SimpleQueue[Shown] = field(default_factory=queue.SimpleQueue)
    """Each turn's words and the reply shown for them, in order, for the events' thread."""
    started: threading.Event = field(default_factory=threading.Event)
    """`start()` has returned (or failed): the session may be stopped."""


class HandsFreeRoom(Room):
    """Hands-free: a session on the push-to-talk room's pipeline, its turns, and its line in the voice bar."""

    def __init__(
        self,
        app: App[Any],
        session: Session,
        models: ModelRoom,
        chats: ChatRoom,
        replies: ReplyController,
        talk: TalkRoom,
    ) -> None:
        """A room of `app`; `talk` builds and owns the voice pipeline."""
        super().__init__(app, session)
        self.models, self.chats, self.replies, self.talk = models, chats, replies, talk
        self.live: Live | None = None
        """The session while hands-free is on (starting, listening, ..., stopping)."""
        self.loading = False
        """The key asked for hands-free and the pipeline is being built."""
        self.stopping = False
        """The session is being stopped."""
        self._state: HandsFreeState | None = None  # the state shown; None while it starts
        self._partial = ""  # what has been heard so far in this turn
        self._sentence = ""  # the sentence being spoken

    # -- what the app asks -------------------------------------------------------------------------

    @property
    def on(self) -> bool:
        """Whether hands-free is on (or about to be: the speech models load)."""
        return self.live is not None or self.loading

    @property
    def state(self) -> HandsFreeState:
        """Where the session is, as the voice bar shows it (stopped when hands-free is off)."""
        from edgeassist.voice import HandsFreeState

        if self.live is None or self._state is None:
            return HandsFreeState.STOPPED
        return self._state

    @property
    def busy(self) -> bool:
        """Whether a turn is being heard or answered (so Esc has something to stop)."""
        return self.live is not None and self._state is not None and self._state.value in _TURN_STATES

    async def toggle(self) -> None:
        """The hands-free key: turn it on (building the pipeline first, once), or off."""
        if self.stopping:
            return
        if self.live is not None:
            await self.stop()
            return
        if self.loading:  # pressed again while the speech models load: no session starts
            self.loading = False
            self.app.notify("Hands-free will not start.", timeout=3)
            return
        why = self._refusal()
        if why is not None:
            self.app.notify(why, severity="warning")
            return
        if self.talk.pipeline is None and self.chats.conversation is not None:
            self.loading = True
            self.talk.build(self.chats.conversation, hands_free=True)
            return
        await self._start()

    def interrupt(self) -> bool:
        """Esc or a typed message: stop the reply (or drop the turn being heard) and listen again; False when
        hands-free is off or only listening."""
        live = self.live
        if live is None or self.stopping or not live.started.is_set():
            return False
        if live.session.state.value not in _TURN_STATES:
            return False
        live.session.interrupt()
        return True

    async def stop(self, notice: str | None = None) -> None:
        """Turn hands-free off: stop listening and replying (a reply is saved as stopped), then say `notice`."""
        self.loading = False  # a pipeline still being built starts no session
        live = self.live
        if live is None or self.stopping:
            return
        self.stopping = True
        bar = self._bar()
        if bar is not None:
            bar.show_hands_free("stopping")
        try:
            await asyncio.to_thread(_stop, live)
        finally:
            self.stopping = False
            self._finish(live)
        if notice and not self.session.quitting:
            self.app.notify(notice, timeout=5)

    def abandon(self) -> None:
        """The app is going without having quit through its key: stop the session in a thread of its own (the
        UI thread must not wait for the session's threads, which may be waiting for it)."""
        live = self.live
        if live is not None:
            self.live = None
            threading.Thread(target=_stop, args=(live,), name="hands-free-stop", daemon=True).start()

    # -- starting ---------------------------------------------------------------------------------

    def _refusal(self) -> str | None:
        """Why hands-free cannot start now (one line), or None."""
        if self.chats.conversation is None or not self.models.ready:
            return "Voice starts once the model has loaded."
        if self.app.query_one(PromptInput).editing:
            return "Finish or cancel (Esc) the edit first."
        if self.talk.loading:
            return "The speech models are loading for push-to-talk: press F7 once they have."
        if self.talk.turns:
            return "A push-to-talk turn is going on: Esc stops it, then F7 turns hands-free on."
        return None

    async def on_ready(self) -> None:
        """The pipeline the key asked for is built: start the session (unless the key was pressed again)."""
        wanted, self.loading = self.loading, False
        if not wanted or self.session.quitting:
            bar = self._bar()
            if bar is not None and bar.mode == "loading":
                bar.show("off")
            return
        await self._start()

    def on_unavailable(self) -> None:
        """Voice cannot run here (the push-to-talk room has said why, in one notice): hands-free stays off."""
        self.loading = False

    async def _start(self) -> None:
        """Lend the pipeline to a new session, on the chat in view, and start it in a thread worker."""
        pipeline, convo = self.talk.pipeline, self.chats.conversation
        bar = self.app.query_one(VoiceBar)
        why = self._refusal()  # (again, after the speech models loaded: things may have changed)
        if pipeline is None or convo is None or why is not None:
            bar.show("off")
            if why is not None:
                self.app.notify(why, severity="warning")
            return
        from edgeassist.voice import HandsFree

        pipeline.conversation = convo  # the chat in view (another chat turns hands-free off)
        pipeline.options = self.models.options()
        live = Live(HandsFree(pipeline), pipeline, pipeline.on_transcript)
        pipeline.on_transcript = partial(self._on_transcript, live)
        self.live, self._state, self._partial, self._sentence = live, None, "", ""
        bar.show_hands_free("starting")
        self.app.refresh_bindings()
        self.app.run_worker(partial(self._run, live), name="hands-free", group="hands-free", thread=True)

    def _run(self, live: Live) -> None:
        """Start the session, then hand its events to the UI until it stops (blocking, in a thread worker)."""
        try:
            live.session.start()
        except Exception as e:  # noqa: BLE001 - no microphone, no VAD: one line, and chat goes on
            live.session.stop()  # gives back what start() had taken of the pipeline
            error = str(e) if isinstance(e, EdgeAssistError) else f"hands-free could not start: {e}"
            self.app.post_message(HandsFreeFailed(live, error))
            return
        finally:
            live.started.set()
        self._follow(live)

    # -- the session's threads --------------------------------------------------------------------

    def _follow(self, live: Live) -> None:
        """The session's events until it stops: its states to the bar, each turn's events to the turn's reply."""
        from edgeassist.voice import Heard, Speaking, StateChanged, TurnDone

        post = self.app.post_message
        turn: Reply | None = None
        error: str | None = None
        try:
            for event in live.session.events():
                if isinstance(event, StateChanged):
                    post(HandsFreeChanged(live, event.state, event.reason))
                elif isinstance(event, Heard):
                    if event.final and event.text:
                        turn = self._shown_for(live, event.text)
                elif isinstance(event, TurnDone):
                    if turn is not None:
                        self._turn_done(turn, event.status)
                    turn = None
                elif turn is None:
                    continue  # a turn no message shows (no words, or the app is going)
                elif isinstance(event, Speaking):
                    post(HandsFreeSpeaking(live, event.text))
                else:
                    self.replies.forward(turn, event)
        except EdgeAssistError as e:
            error = str(e)
        except Exception as e:  # noqa: BLE001 - a device or engine failure must not take the app down
            error = f"unexpected error: {e!r}"
        finally:
            for left in (turn, *(s.reply for s in _drain(live.shown))):
                if left is not None:
                    self._turn_done(left, "cancelled")
            post(HandsFreeEnded(live, error))

    def _shown_for(self, live: Live, text: str) -> Reply | None:
        """The reply shown for the words just heard: `_on_transcript` queued it, just before the pipeline
        yielded them (any other words queued before are a turn that never reached here: it ends)."""
        for shown in _drain(live.shown, until=text):
            if shown.text == text:
                return shown.reply
            if shown.reply is not None:
                self._turn_done(shown.reply, "cancelled")
        return None

    def _turn_done(self, reply: Reply, status: str) -> None:
        """A turn's events are over (what it said is saved): its reply may end."""
        reply.finished.set()
        self.app.post_message(HandsFreeTurnDone(reply.reply_id, status))

    def _on_transcript(self, live: Live, text: str, final: bool) -> None:
        """The pipeline's transcript callback while the session runs (from its threads): a partial goes on to
        push-to-talk's (it posts `VoicePartial`); the final words are shown before the pipeline goes on."""
        if not final:
            if live.transcript is not None:
                live.transcript(text, final)
            return
        if not text:
            return  # nothing heard: no message
        reply: Reply | None
        try:
            reply = self.app.call_from_thread(self._show_heard, live, text)
        except Exception:  # noqa: BLE001 - the app is going: the turn goes on unseen
            reply = None
        live.shown.put(Shown(text, reply))

    async def _show_heard(self, live: Live, text: str) -> Reply | None:
        """A turn's words: the user's message (a new chat saved first) and its spoken reply, started under it."""
        convo = self.chats.conversation
        if live is not self.live or self.session.quitting or convo is None or convo is not live.pipeline.conversation:
            return None
        self.chats.ensure_quietly(text)  # before the pipeline saves the message
        chat_view = self.app.query_one(ChatView)
        prompt = UserMessage(text)
        await chat_view.mount(prompt)
        chat_view.anchor()
        reply = self.replies.spoken(prompt, live.session.interrupt)
        await self.replies.start_spoken(reply)
        return reply

    # -- messages from the session's worker -------------------------------------------------------

    @while_shown
    async def on_changed(self, message: HandsFreeChanged) -> None:
        """Show where the session is now; a turn that begins stops a typed message's reply (the user talks now)."""
        live = self.live
        if live is None or message.live is not live or self.stopping:
            return
        from edgeassist.voice import HandsFreeState

        state = self._state = message.state
        if state in (HandsFreeState.LISTENING, HandsFreeState.HEARING):
            self._partial = self._sentence = ""
        if state is HandsFreeState.LISTENING:
            live.pipeline.options = self.models.options()  # for the next turn (thinking may have been switched)
        self._show()
        self.app.refresh_bindings()  # Esc stops a turn now, or nothing
        if state is HandsFreeState.HEARING and self.replies.busy_typing:
            await self.replies.stop_and_wait()

    def on_partial(self, message: VoicePartial) -> None:
        """What has been heard so far, in the bar while the turn is heard."""
        if self.live is not None and not self.stopping and self._state is not None and self._state.value == "hearing":
            self._partial = message.text
            self._show()

    def on_speaking(self, message: HandsFreeSpeaking) -> None:
        """Show the sentence being spoken."""
        if message.live is self.live and not self.stopping:
            self._sentence = message.text
            self._show()

    @while_shown
    async def on_turn_done(self, message: HandsFreeTurnDone) -> None:
        """The turn is over, its audio too: a reply that got no Done (stopped before it began) ends stopped."""
        reply = self.replies.active.get(message.reply_id)
        if reply is not None:
            await self.replies.settle(reply)

    def on_failed(self, message: HandsFreeFailed) -> None:
        """The session could not start: say why in one line; typing works as before."""
        live = self.live
        if live is None or message.live is not live:
            return
        self._finish(live)
        self.app.notify(for_the_app(message.error), title="Voice unavailable", severity="error", timeout=15)

    def on_ended(self, message: HandsFreeEnded) -> None:
        """The session's events ended; one that stopped by itself (a failure, the input's end) is off, and says why."""
        live = self.live
        if live is None or message.live is not live or self.stopping:
            return  # turned off: `stop` has done the rest
        self._finish(live)
        why = for_the_app(message.error) if message.error else "the microphone's input ended"
        self.app.notify(f"Hands-free stopped: {why}", title="Voice", severity="error", timeout=15)

    # -- the bar ----------------------------------------------------------------------------------

    def _bar(self) -> VoiceBar | None:
        """The voice bar (None once the chat screen is gone: shutting down)."""
        try:
            return self.app.query_one(VoiceBar)
        except NoMatches:
            return None

    def _show(self) -> None:
        """The state in the voice bar, with what was heard so far or the sentence being spoken."""
        bar, state = self._bar(), self._state
        if bar is None:
            return
        if state is None:
            bar.show_hands_free("starting")
            return
        text = {"hearing": self._partial, "speaking": self._sentence}.get(state.value, "")
        bar.show_hands_free(state.label, text)

    def _finish(self, live: Live) -> None:
        """Hands-free is off: the pipeline gets its transcript callback back, and the bar goes."""
        if self.live is not live:
            return
        self.live = None
        live.pipeline.on_transcript = live.transcript
        self._state = None
        self._partial = self._sentence = ""
        bar = self._bar()
        if bar is not None and bar.mode == "hands-free":
            bar.show("off")
        self.app.refresh_bindings()


_TURN_STATES = frozenset({"hearing", "thinking", "speaking"})
"""The `HandsFreeState` values of a turn in progress (what Esc stops)."""


def _stop(live: Live) -> None:
    """Stop the session once its start has returned (blocking: it joins the session's threads)."""
    live.started.wait(START_WAIT_S)
    live.session.stop()


def _drain(shown: queue.SimpleQueue[Shown], until: str | None = None) -> list[Shown]:
    """What is queued in `shown`, up to and with the first for the words `until` (None: all of it)."""
    taken: list[Shown] = []
    while not taken or until is None or taken[-1].text != until:
        try:
            taken.append(shown.get_nowait())
        except queue.Empty:
            break
    return taken
