"""The push-to-talk room: the talk key drives the same `edgeassist.voice.VoicePipeline` as `edgeassist voice`.

The first press builds the pipeline (whisper, piper, the devices) in a worker and starts
recording; the next press sends what was said. Each turn's `respond()` runs in a thread worker:
what was heard becomes the user's message, the reply is an ordinary reply of the reply
controller (its events go through `ReplyController.forward`), and the sentence being spoken
shows in the voice bar. Talking over a spoken reply stops it and records the next turn.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from edgeassist.chat import Conversation
from edgeassist.config import Settings
from edgeassist.errors import EdgeAssistError, StoreError
from edgeassist.tui.chats import ChatRoom
from edgeassist.tui.messages import (
    ReplyFailed,
    VoiceHeard,
    VoiceLevel,
    VoicePartial,
    VoiceReady,
    VoiceSpeaking,
    VoiceTurnDone,
    VoiceUnavailable,
)
from edgeassist.tui.models import ModelRoom
from edgeassist.tui.reply import Reply, ReplyController
from edgeassist.tui.room import Room, Session, while_shown
from edgeassist.tui.widgets import ChatView, PromptInput, UserMessage, VoiceBar

if TYPE_CHECKING:
    from textual.app import App

    from edgeassist.voice import VoicePipeline

_WAV_FLAGS = re.compile(r"[,;]? or use --(?:input|output)-wav(?:/--output-wav)?(?: FILE)?")
"""The speech layer's pointer to `edgeassist voice`'s wav-file flags, which the chat app does not have."""


def for_the_app(error: str) -> str:
    """A speech error as the chat app says it: without the wav-file flags of `edgeassist voice`.

    What is left is what helps here: connect a device, install the part, pick one in the config.
    """
    return _WAV_FLAGS.sub("", error)


MakeVoice = Callable[[Settings, Conversation, Callable[[float], None], Callable[[str, bool], None]], Any]
"""Builds the voice pipeline (settings, conversation, on_level, on_transcript); default `voice.build_pipeline`."""


def default_make_voice(
    settings: Settings,
    conversation: Conversation,
    on_level: Callable[[float], None],
    on_transcript: Callable[[str, bool], None],
) -> VoicePipeline:
    """`voice.build_pipeline` on the configured devices."""
    from edgeassist.voice import build_pipeline  # the speech libraries load only when voice is used

    return build_pipeline(settings, conversation, on_level=on_level, on_transcript=on_transcript)


@dataclass(eq=False)
class Turn:
    """One push-to-talk turn: its reply (whose `prompt` is the message being recorded) and its pipeline."""

    reply: Reply
    pipeline: VoicePipeline
    heard: bool = False
    """The recording has been transcribed (the message no longer follows the partial transcript)."""


class TalkRoom(Room):
    """Push-to-talk: the pipeline (built on first use), its turns, the voice bar."""

    def __init__(
        self,
        app: App[Any],
        session: Session,
        models: ModelRoom,
        chats: ChatRoom,
        replies: ReplyController,
        make_voice: MakeVoice | None = None,
    ) -> None:
        """`make_voice` builds the pipeline (default `default_make_voice`; tests pass one on wav files)."""
        super().__init__(app, session)
        self.models, self.chats, self.replies = models, chats, replies
        self._make_voice = make_voice or default_make_voice
        self.pipeline: VoicePipeline | None = None
        """Built on the first press of the talk key."""
        self.loading = False
        """The pipeline is being built."""
        self.turns: dict[int, Turn] = {}
        """The voice turns whose audio may still be playing, by reply id."""

    async def press(self) -> None:
        """The talk key: start recording; again: send what was said; while a reply speaks: talk over it."""
        if self.chats.conversation is None or not self.models.ready:
            self.app.notify("Voice starts once the model has loaded.", severity="warning")
            return
        if self.app.query_one(PromptInput).editing:
            self.app.notify("Finish or cancel (Esc) the edit first.", severity="warning")
            return
        if self.loading:
            return
        if self.pipeline is None:
            self.build(self.chats.conversation)
            return
        if self.pipeline.state == "recording":
            self.pipeline.stop_recording()
            self.app.query_one(VoiceBar).show("transcribing")
            return
        await self._start()

    def build(self, conversation: Conversation, *, hands_free: bool = False) -> None:
        """Build the pipeline on `conversation` in a worker (whisper, piper, the devices); `VoiceReady` says
        when, and for which key. `hands_free`: the hands-free key asked (`tui.handsfree`): no recording starts.
        """
        self.loading = True
        self.app.query_one(VoiceBar).show("loading")
        setup = partial(self._setup, self.session.settings, conversation, hands_free)
        self.app.run_worker(setup, name="voice-setup", group="voice-setup", exclusive=True, thread=True)

    def interrupt(self) -> bool:
        """Stop what the voice turns are doing (recording, speaking) at once; False when there are none."""
        if self.pipeline is None or not self.turns:
            return False
        self.pipeline.interrupt()
        return True

    async def close(self) -> None:
        """Release the microphone and the speaker."""
        if self.pipeline is not None:
            await asyncio.to_thread(self.pipeline.close)

    # -- the pipeline -----------------------------------------------------------------------------

    def _setup(self, settings: Settings, conversation: Conversation, hands_free: bool = False) -> None:
        """Build the voice pipeline and load whisper and piper (blocking, in a thread), then say it is ready."""
        post = self.app.post_message

        def on_level(level: float) -> None:
            post(VoiceLevel(level))

        def on_transcript(text: str, final: bool) -> None:
            if not final:
                post(VoicePartial(text))

        try:
            pipeline = self._make_voice(settings, conversation, on_level, on_transcript)
            pipeline.warm_up()
        except EdgeAssistError as e:
            post(VoiceUnavailable(str(e)))
            return
        except Exception as e:  # noqa: BLE001 - a broken speech setup must not take the chat down
            post(VoiceUnavailable(f"voice could not start: {e}"))
            return
        post(VoiceReady(pipeline, hands_free=hands_free))

    async def on_ready(self, message: VoiceReady) -> None:
        """Speech models loaded: start the recording the talk key asked for (hands-free starts its own session)."""
        self.loading = False
        self.pipeline = message.pipeline
        for note in message.pipeline.notes:
            self.app.notify(note, title="Voice", severity="warning", timeout=10)
        if self.session.quitting or message.hands_free:
            return
        await self._start()

    def on_unavailable(self, message: VoiceUnavailable) -> None:
        """Voice cannot run here: say what to install; typing works as before."""
        self.loading = False
        self.app.query_one(VoiceBar).show("off")
        self.app.notify(for_the_app(message.error), title="Voice unavailable", severity="error", timeout=15)

    # -- a turn -----------------------------------------------------------------------------------

    async def _start(self) -> None:
        """Start recording a voice turn (barge-in when a voice reply is playing)."""
        pipeline, convo = self.pipeline, self.chats.conversation
        if pipeline is None or convo is None:
            return
        if self.replies.busy_typing:
            await self.replies.stop_and_wait()  # a typed message's reply: the user is talking now
        pipeline.conversation = convo  # the chat open now (it may have changed since the last turn)
        pipeline.options = self.models.options()
        chat_view = self.app.query_one(ChatView)
        message = UserMessage("🎙 …")
        await chat_view.mount(message)
        chat_view.anchor()
        try:
            pipeline.start_recording()  # stops a reply that is speaking, at once
        except EdgeAssistError as e:
            await message.remove()
            self.app.notify(for_the_app(str(e)), title="Voice", severity="error", timeout=15)
            return
        turn = Turn(self.replies.spoken(message, pipeline.interrupt), pipeline)
        self.turns[turn.reply.reply_id] = turn
        self.app.refresh_bindings()
        bar = self.app.query_one(VoiceBar)
        bar.level = 0.0
        bar.show("recording")
        listen = partial(self._listen, turn)
        turn.reply.worker = self.app.run_worker(listen, name="voice", group="voice", thread=True)

    def _listen(self, turn: Turn) -> None:
        """One voice turn's events (blocking, in a thread): what was heard, the reply, what is spoken."""
        from edgeassist.voice import Heard, Speaking, TurnDone

        reply, post = turn.reply, self.app.post_message
        status = "error"
        try:
            for event in turn.pipeline.respond():
                if isinstance(event, Heard):
                    if event.final:
                        if event.text:
                            self.app.call_from_thread(self.chats.ensure_quietly, event.text)  # before it is saved
                        post(VoiceHeard(reply.reply_id, event.text))
                elif isinstance(event, Speaking):
                    post(VoiceSpeaking(reply.reply_id, event.text))
                elif isinstance(event, TurnDone):
                    status = event.status
                else:
                    self.replies.forward(reply, event)
        except EdgeAssistError as e:
            post(ReplyFailed(reply.reply_id, str(e), unsaved=isinstance(e, StoreError)))
        except Exception as e:  # noqa: BLE001 - a device or engine failure must not take the app down
            post(ReplyFailed(reply.reply_id, f"unexpected error in the voice turn: {e!r}"))
        finally:
            reply.finished.set()
            post(VoiceTurnDone(reply.reply_id, status))

    def on_level(self, message: VoiceLevel) -> None:
        """Move the meter."""
        self.app.query_one(VoiceBar).set_level(message.level)

    def on_partial(self, message: VoicePartial) -> None:
        """Show what has been heard so far in the message being recorded."""
        for turn in self.turns.values():
            if not turn.heard and turn.reply.prompt is not None and turn.pipeline.state == "recording":
                turn.reply.prompt.update(f"🎙 {message.text} …")

    @while_shown
    async def on_heard(self, message: VoiceHeard) -> None:
        """The transcript is final: it becomes the user's message, and the reply starts under it."""
        turn = self.turns.get(message.reply_id)
        if turn is None or turn.reply.ended:
            return
        turn.heard = True
        if not message.text:
            return  # nothing heard: the turn ends without a reply (VoiceTurnDone)
        assert turn.reply.prompt is not None
        turn.reply.prompt.update(message.text)
        await self.replies.start_spoken(turn.reply)
        bar = self.app.query_one(VoiceBar)
        if bar.mode in ("recording", "transcribing") and turn.pipeline.state != "recording":
            bar.show("replying")  # (a new recording, talking over this turn, keeps its meter)

    def on_speaking(self, message: VoiceSpeaking) -> None:
        """Show the sentence being spoken."""
        if message.reply_id in self.turns and len(self.turns) == 1:
            self.app.query_one(VoiceBar).show("speaking", message.text)

    @while_shown
    async def on_turn_done(self, message: VoiceTurnDone) -> None:
        """The voice turn is over, audio included: a reply that got no Done ends stopped."""
        turn = self.turns.pop(message.reply_id, None)
        if turn is None:
            return
        await self.replies.settle(turn.reply)  # nothing heard, or stopped before the reply
        if message.status == "empty":
            self.app.notify("Nothing was heard: press the talk key, speak, then press it again.", severity="warning")
        if not self.turns:
            self.app.query_one(VoiceBar).show("off")
        self.app.refresh_bindings()  # Esc stops nothing now
