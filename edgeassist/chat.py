"""`Conversation`: the history, system prompt, trimming and saving around one engine.

Every front end (ask, the TUI, voice) talks through a Conversation, so prompting,
streaming and history are written once.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from edgeassist.engine.base import (
    ChatEngine,
    Done,
    Event,
    GenerationOptions,
    ImageRef,
    Message,
    Notice,
    Stats,
    Text,
    Thinking,
    ToolCall,
    ToolSpec,
)
from edgeassist.errors import ContextOverflowError, EdgeAssistError, UsageError, VisionUnavailableError
from edgeassist.images import ImageStore, Picture
from edgeassist.store import ChatRecord, KeptImage, Store, chat_name
from edgeassist.tools import Toolbox, ToolEvent, ToolResult, ToolStarted, ToolUse

ReplyEvent = Event | ToolEvent
"""What a reply streams: the engine's events, and the tool loop's (consent asked, a call started or ended)."""


@dataclass
class Turn:
    """One message of the conversation as front ends show it."""

    role: Literal["user", "assistant", "tool"]
    """Who said it (`tool`: one tool call of the reply before it, and its result)."""
    content: str
    """The text (a reply's answer, without thinking; a tool call's result)."""
    thinking: str = ""
    """The reply's thinking, if any."""
    status: Literal["complete", "cut", "cancelled", "error"] = "complete"
    """How a reply ended: finished, cut by the token limit (or a full context), or stopped."""
    stats: Stats | None = None
    """Timing figures of a reply made in this session."""
    record_id: int | None = field(default=None, repr=False)
    """Row id in the store, when saved."""
    call: ToolUse | None = None
    """A tool turn's call: the tool, its arguments, how it ended."""
    images: tuple[Shown, ...] = ()
    """A user message's pictures, in order."""


@dataclass(frozen=True)
class Shown:
    """A picture of a user message: the kept file the engine reads, and the name it was attached as."""

    ref: ImageRef
    format: str
    name: str

    def kept(self) -> KeptImage:
        """As the store keeps it."""
        return KeptImage(self.ref.sha256, self.format, self.name)


_scratch: ImageStore | None = None
_scratch_lock = threading.Lock()


def scratch_pictures() -> ImageStore:
    """A private folder of this process's pictures for a chat that is not saved (removed at exit).

    The engine reads a copy kept here, never the user's file, which could change or be swapped
    between the check and the read.
    """
    global _scratch
    with _scratch_lock:
        if _scratch is None:
            folder = Path(tempfile.mkdtemp(prefix="edgeassist-images-"))  # (0700, made by mkdtemp)
            atexit.register(shutil.rmtree, folder, True)
            _scratch = ImageStore(folder)
        return _scratch


_STATUS: dict[str, Literal["complete", "cut", "cancelled", "error"]] = {"length": "cut", "cancelled": "cancelled"}
"""A reply's saved status by the Done's finish reason (stop, and anything else, is complete)."""


class Conversation:
    """A chat with one engine: sends messages, streams replies, trims to the context, saves to the store."""

    def __init__(
        self,
        engine: ChatEngine,
        *,
        system_prompt: str | None = None,
        options: GenerationOptions | None = None,
        store: Store | None = None,
        chat: ChatRecord | None = None,
        tools: Toolbox | None = None,
    ) -> None:
        """Start a conversation; with `store` and `chat`, continue that saved chat; with `tools`, offer them."""
        self.engine = engine
        self.options = options or GenerationOptions()
        self.store = store
        self.chat = chat
        self.system_prompt = system_prompt
        self.toolbox = tools
        self.allowed_tools: set[str] = set()  # tools the user allowed for this chat
        self.turns: list[Turn] = []
        self._dropped = 0  # leading turns left out of the context; only grows, so the prefix stays stable
        self._told_trim = False
        self._told_tools = False
        if store is not None and chat is not None:
            if chat.system_prompt:
                self.system_prompt = chat.system_prompt
            for m in store.messages(chat.id):
                if m.role in ("user", "assistant"):
                    shown = tuple(self._kept_picture(store, kept) for kept in m.images)
                    turn = Turn(m.role, m.content, m.thinking, m.status, None, m.id)
                    turn.images = tuple(s for s in shown if s is not None)
                    self.turns.append(turn)
                elif m.role == "tool":
                    call = ToolUse.from_dict(m.tool or {})
                    self.turns.append(Turn("tool", m.content, record_id=m.id, call=call))

    @staticmethod
    def _kept_picture(store: Store, kept: KeptImage) -> Shown | None:
        """A saved message's picture, if its file is still kept whole (one that is gone is left out)."""
        try:
            path = store.images.get(kept.sha256)
        except EdgeAssistError:
            return None
        return Shown(ImageRef(kept.sha256, path), kept.format, kept.name) if path is not None else None

    @classmethod
    def open(
        cls,
        engine: ChatEngine,
        store: Store,
        name: str,
        *,
        system_prompt: str | None = None,
        options: GenerationOptions | None = None,
        tools: Toolbox | None = None,
    ) -> Conversation:
        """Continue the saved chat called `name`, creating it when it does not exist.

        A blank name, or one with control characters, is a UsageError (`--chat ""`). Finding and
        creating are one step in the store, so two processes starting the same chat both get it.
        """
        try:
            name = chat_name(name)
        except ValueError as e:
            raise UsageError(str(e)) from None
        chat = store.open_chat(name, system_prompt=None, model=engine.name)
        return cls(engine, system_prompt=system_prompt, options=options, store=store, chat=chat, tools=tools)

    @property
    def state_path(self) -> Path | None:
        """Where the engine keeps this chat's model state between processes (a saved chat's only)."""
        if self.store is None or self.chat is None:
            return None
        return self.store.state_path(self.chat)

    # -- context -------------------------------------------------------------------------------

    @property
    def forgotten(self) -> int:
        """Leading turns the model no longer sees (trimmed to fit its context window; still in the history)."""
        return self._dropped

    def fit_to_window(self, options: GenerationOptions | None = None) -> int:
        """Trim as the next turn would, without its notice (a chat just opened); return `forgotten`."""
        told, self._told_trim = self._told_trim, True
        try:
            self._fit(options or self.options)
        except ContextOverflowError:
            pass  # not even the newest turn fits: the next send says so, as a context error (exit 5)
        finally:
            self._told_trim = told
        return self._dropped

    def context(self) -> list[Message]:
        """The messages sent to the model: system prompt, then the turns not trimmed away.

        A tool turn is a `tool` message, and its call is added to the assistant message before it.
        For a model that cannot call tools, tool turns (and the empty steps that only called
        tools) are left out.
        """
        msgs: list[Message] = []
        if self.system_prompt:
            msgs.append({"role": "system", "content": self.system_prompt})
        tools = self.engine.capabilities.tools
        for i, t in enumerate(self.turns[self._dropped :], self._dropped):
            if t.role == "tool":
                if not tools or t.call is None:
                    continue
                owner = next((m for m in reversed(msgs) if m["role"] == "assistant"), None)
                if owner is not None and msgs[-1]["role"] in ("assistant", "tool"):
                    owner.setdefault("tool_calls", []).append(ToolCall(t.call.name, t.call.arguments).part())
                msgs.append({"role": "tool", "content": t.content})
                continue
            if t.role == "assistant" and self._calls_tools(i):
                if not tools and not t.content:
                    continue
                msg: Message = {"role": "assistant", "content": t.content}
                if tools and t.thinking:
                    msg["reasoning_content"] = t.thinking  # (the template shows it inside the tool loop)
                msgs.append(msg)
                continue
            msg = {"role": t.role, "content": t.content}
            if t.images and self.engine.capabilities.images:  # (a model that cannot see reads the text alone)
                msg["images"] = tuple(shown.ref for shown in t.images)
            msgs.append(msg)
        return msgs

    def request(self, text: str, options: GenerationOptions | None = None) -> tuple[list[Message], GenerationOptions]:
        """The messages and options `send(text, options=options)` would stream the engine with, as things
        stand (a send that must first trim the history sends fewer): for a reply begun ahead (voice)."""
        message: Message = {"role": "user", "content": text}  # (as `context` renders a message without pictures)
        return [*self.context(), message], self._engine_options(options or self.options)

    def _engine_options(self, options: GenerationOptions) -> GenerationOptions:
        """`options` as a reply hands them to the engine: with the chat's kept state, when it has one."""
        if options.state_path is None and self.state_path is not None:
            return replace(options, state_path=self.state_path)
        return options

    def _calls_tools(self, i: int) -> bool:
        """Whether turn `i` (a reply) made tool calls: tool turns follow it."""
        return i + 1 < len(self.turns) and self.turns[i + 1].role == "tool"

    def offered_tools(self, options: GenerationOptions | None = None) -> tuple[ToolSpec, ...]:
        """The tools the next reply offers: the toolbox's, where the engine can call tools."""
        if self.toolbox is None or not self.engine.capabilities.tools:
            return ()
        return self.toolbox.specs()

    def _fit(self, options: GenerationOptions) -> Notice | None:
        """Drop the oldest turns until the prompt leaves room for the reply; tell the user once."""
        n_ctx = self.engine.n_ctx
        if not options.tools:
            options = replace(options, tools=self.offered_tools())
        reserve = min(options.max_tokens, n_ctx // 4)
        budget = n_ctx - reserve
        need = self.engine.count_tokens(self.context(), options)
        if need <= budget:
            return None
        before = self._dropped
        # Trim down to 3/4 of the budget at once, so several later turns share the same prefix.
        while need > budget * 3 // 4 and self._dropped < len(self.turns) - 1:
            self._dropped += 1
            # Never start the context with a reply: drop whole user+assistant pairs.
            while self._dropped < len(self.turns) - 1 and self.turns[self._dropped].role != "user":
                self._dropped += 1
            need = self.engine.count_tokens(self.context(), options)
        if need > budget:
            raise ContextOverflowError(
                f"the message is too long: {need} tokens, but the context window is {n_ctx} "
                f"with {reserve} kept for the reply; shorten it or raise model.n_ctx"
            )
        if self._dropped > before and not self._told_trim:
            self._told_trim = True
            return Notice(
                f"the conversation outgrew the {n_ctx}-token context: the oldest messages are no longer "
                "seen by the model (they stay in the history)"
            )
        return None

    # -- turns ---------------------------------------------------------------------------------

    def send(
        self,
        text: str,
        cancel: threading.Event | None = None,
        options: GenerationOptions | None = None,
        *,
        images: Sequence[Picture | Shown] = (),
    ) -> Iterator[ReplyEvent]:
        """Add a user message (with `images`, checked pictures) and stream the reply.

        The events are the engine's, plus Notices and the tool loop's. Pictures are kept with the
        chat (a saved chat's image folder; else a private folder of this process) before anything
        is saved; a model that cannot see them refuses them here, and nothing is kept.
        """
        if not text.strip():
            raise UsageError("the message is empty: type a question")
        if images and not self.engine.capabilities.images:
            raise VisionUnavailableError(f"{self.engine.name} cannot see images")
        options = options or self.options
        turn = Turn("user", text)
        self.turns.append(turn)
        try:
            turn.images = tuple(self._keep_picture(p) for p in images)
            notice = self._fit(options)
        except BaseException:
            self.turns.pop()  # a message that cannot be answered is not kept (nor are its pictures)
            if images and self.store is not None:
                self.store.prune_images()
            raise
        if self.store is not None and self.chat is not None:
            kept = [shown.kept() for shown in turn.images]
            turn.record_id = self.store.add_message(self.chat.id, "user", text, images=kept).id
        if notice is not None:
            yield notice
        yield from self._respond(cancel, options)

    def _keep_picture(self, picture: Picture | Shown) -> Shown:
        """Keep `picture` where the engine will read it (a picture already kept stays as it is)."""
        if isinstance(picture, Shown):
            return picture
        folder = self.store.images if self.store is not None and self.chat is not None else scratch_pictures()
        return Shown(ImageRef(picture.sha256, folder.add(picture)), picture.format, Path(picture.name).name)

    def regenerate(
        self, cancel: threading.Event | None = None, options: GenerationOptions | None = None
    ) -> Iterator[ReplyEvent]:
        """Replace the last reply (with its tool calls) with a new one for the same message."""
        self._forget_reply()
        if not self.turns:
            raise UsageError("there is no message to answer again")
        yield from self._reply(cancel, options or self.options)

    def _forget_reply(self) -> None:
        """Drop the turns after the last user message: the last reply, its tool calls and their steps."""
        while self.turns and self.turns[-1].role != "user":
            self._forget(self.turns.pop())

    def edit_last(
        self, text: str, cancel: threading.Event | None = None, options: GenerationOptions | None = None
    ) -> Iterator[ReplyEvent]:
        """Replace the last user message (and its reply) with `text` and stream a new reply; its pictures stay."""
        self._forget_reply()
        images: tuple[Shown, ...] = ()
        if self.turns and self.turns[-1].role == "user":
            images = self.turns[-1].images
            self._forget(self.turns.pop())
        yield from self.send(text, cancel, options, images=images)

    def last_user_text(self) -> str | None:
        """The last message the user sent, if any."""
        for t in reversed(self.turns):
            if t.role == "user":
                return t.content
        return None

    def _forget(self, turn: Turn) -> None:
        if self.store is not None and turn.record_id is not None:
            self.store.delete_message(turn.record_id)
        self._dropped = min(self._dropped, max(0, len(self.turns) - 1))

    def _reply(self, cancel: threading.Event | None, options: GenerationOptions) -> Iterator[ReplyEvent]:
        notice = self._fit(options)
        if notice is not None:
            yield notice
        yield from self._respond(cancel, options)

    def continue_reply(
        self, cancel: threading.Event | None = None, options: GenerationOptions | None = None
    ) -> Iterator[ReplyEvent]:
        """Go on with the last reply, cut by the token limit, from where it stopped.

        The engine continues the reply's own text (it is the last message of the prompt), so the
        history is not read again; the reply is kept as one message, its status and figures those
        of the continuation. Stopped before a new token, it stays as it was.
        """
        last = self.turns[-1] if self.turns else None
        if last is None or last.role != "assistant" or last.status != "cut":
            raise UsageError("there is no reply cut by the token limit to continue")
        options = options or self.options
        notice = self._fit(options)
        if notice is not None:
            yield notice
        yield from self._respond(cancel, options, last)

    # -- the tool loop ---------------------------------------------------------------------------

    def _respond(
        self, cancel: threading.Event | None, options: GenerationOptions, prior: Turn | None = None
    ) -> Iterator[ReplyEvent]:
        """Stream a reply; where tools are offered, run the calls it makes and go on until it answers.

        Each step is saved as a reply of its own and each call as a tool turn, so a chat read
        back (or a process killed half-way) has the whole loop. At most `tools.max_calls` calls
        run in one reply; then the model may not call again and must answer. Only the last
        step's `Done` is passed on, so front ends see one reply.
        """
        tools = options.tools or self.offered_tools()
        if not tools:
            if self.toolbox is not None and self.toolbox.configured and not self._told_tools:
                if not self.engine.capabilities.tools:
                    self._told_tools = True
                    yield Notice(
                        f"{self.engine.name} cannot call tools (its chat template has no tool format): none are offered"
                    )
            yield from self._stream_reply(cancel, options, prior)
            return
        assert self.toolbox is not None
        cancel = cancel if cancel is not None else threading.Event()
        limit = self.toolbox.settings.max_calls
        made = 0
        choice = options.tool_choice
        while True:
            step = replace(
                options, tools=tools, tool_choice="none" if made >= limit else choice, tool_calls_left=limit - made
            )
            calls: list[ToolCall] = []
            done: Done | None = None
            for event in self._stream_reply(cancel, step, prior):
                if isinstance(event, ToolCall):
                    calls.append(event)
                elif isinstance(event, Done):
                    done = event
                else:
                    yield event
            prior, choice = None, "auto"
            assert done is not None  # (_stream_reply ends with one, or raises)
            if not calls:
                yield done
                return
            for call in calls:
                yield from self._call(call, cancel, made >= limit)
                made += 1
            if cancel.is_set():
                yield Done(replace(done.stats, finish_reason="cancelled"))
                return
            notice = self._fit(step)
            if notice is not None:
                yield notice

    def _call(self, call: ToolCall, cancel: threading.Event, over_limit: bool) -> Iterator[ReplyEvent]:
        """One call: consent where its policy asks, then the run; its tool turn is saved whatever happens."""
        assert self.toolbox is not None
        use: ToolUse | None = None
        try:
            use = yield from self._decide_and_run(call, cancel, over_limit)
        finally:
            if use is None:  # (interrupted: Ctrl+C, a closed stream)
                use = self.toolbox.refused(call, "Not run: the reply was interrupted.")
                use.outcome = "stopped"
            self._save_call(use)
        yield ToolResult(use)

    def _decide_and_run(
        self, call: ToolCall, cancel: threading.Event, over_limit: bool
    ) -> Generator[ReplyEvent, None, ToolUse]:
        assert self.toolbox is not None
        box = self.toolbox
        tool = box.get(call.name)
        if over_limit:
            return box.refused(call, f"Not run: the limit of {box.settings.max_calls} calls per reply is reached.")
        if tool is None:
            use = box.refused(call, f"error: there is no tool `{call.name}`")
            use.outcome = "error"
            return use
        policy = box.policy(call.name, chat_allowed=self.allowed_tools)
        if policy == "deny":
            return box.refused(call, f"Not run: the user's settings do not allow `{call.name}`.")
        if policy == "ask" and not cancel.is_set():
            request = box.request(call)
            yield request
            decision = request.decision or "deny"
            if decision == "deny" and not cancel.is_set():
                return box.refused(call, "Not run: the user did not allow this call.")
            if decision == "chat":
                self.allowed_tools.add(call.name)
            elif decision == "always":
                try:
                    box.allow_always(call.name)
                except EdgeAssistError as e:
                    self.allowed_tools.add(call.name)
                    yield Notice(f"`{call.name}` is allowed for this chat, but the choice was not saved: {e}")
        if cancel.is_set():
            use = box.refused(call, "Not run: the user stopped the reply.")
            use.outcome = "stopped"
            return use
        yield ToolStarted(ToolUse(call.name, dict(call.arguments), tool.source))
        return box.run(call, cancel)

    def _save_call(self, use: ToolUse) -> None:
        turn = Turn("tool", use.result, call=use)
        self.turns.append(turn)
        if self.store is not None and self.chat is not None:
            turn.record_id = self.store.add_message(self.chat.id, "tool", use.result, tool=use.to_dict()).id

    def _stream_reply(
        self, cancel: threading.Event | None, options: GenerationOptions, prior: Turn | None = None
    ) -> Iterator[Event]:
        """One engine reply, saved as it ends (or as far as it got, whatever interrupts it)."""
        reply = Turn("assistant", "", status="cancelled")
        answer: list[str] = [prior.content] if prior is not None else []
        thinking: list[str] = [prior.thinking] if prior is not None else []
        saved = False
        options = self._engine_options(options)
        try:
            for event in self.engine.stream(self.context(), options, cancel):
                if isinstance(event, Text):
                    answer.append(event.text)
                elif isinstance(event, Thinking):
                    thinking.append(event.text)
                elif isinstance(event, ToolCall):
                    reply.status = "complete"  # (a step that only calls a tool is kept, even empty)
                elif isinstance(event, Done):
                    reply.stats = replace(event.stats, trimmed_messages=self._dropped)
                    reply.status = _STATUS.get(event.stats.finish_reason, "complete")
                    saved = True  # before the save: an interruption landing in it must not save it twice
                    self._save(reply, answer, thinking, prior)
                    yield Done(reply.stats)
                    continue
                yield event
        finally:
            # Ctrl+C, SIGTERM, a closed stream or an engine error: keep what arrived, marked as
            # stopped (complete, if the reply had ended before the interruption landed).
            if not saved:
                self._save(reply, answer, thinking, prior)

    def _save(self, reply: Turn, answer: list[str], thinking: list[str], prior: Turn | None = None) -> None:
        """Keep the reply in the turns and the store, whatever interrupts the main thread meanwhile.

        Ctrl+C and SIGTERM raise in the main thread (`ask`), wherever it is: there the save runs
        in a short thread of its own and is waited for, so that it is never cut in half. Even a
        second interruption only stops the waiting; Python finishes the (non-daemon) thread
        before it exits.
        """
        if threading.current_thread() is not threading.main_thread():
            self._write(reply, answer, thinking, prior)
            return
        failed: list[BaseException] = []

        def write() -> None:
            try:
                self._write(reply, answer, thinking, prior)
            except BaseException as e:  # noqa: BLE001 - raised again in the caller's thread
                failed.append(e)

        writer = threading.Thread(target=write, name="edgeassist-save")
        writer.start()
        try:
            writer.join()
        except BaseException:
            writer.join()
            raise
        if failed:
            raise failed[0]

    def _write(self, reply: Turn, answer: list[str], thinking: list[str], prior: Turn | None = None) -> None:
        if prior is not None:  # a continuation: the cut reply grows, or stays as it was
            if len(answer) + len(thinking) == 2 and reply.status == "cancelled":
                return  # stopped before a new token
            prior.content = "".join(answer).strip()
            prior.thinking = "".join(thinking).strip()
            prior.status, prior.stats = reply.status, reply.stats
            if self.store is not None and prior.record_id is not None:
                stats = prior.stats.to_dict() if prior.stats is not None else None
                self.store.update_message(
                    prior.record_id, prior.content, thinking=prior.thinking, status=prior.status, stats=stats
                )
            return
        reply.content = "".join(answer).strip()
        reply.thinking = "".join(thinking).strip()
        if not reply.content and not reply.thinking and reply.status == "cancelled":
            return  # stopped before a single token: nothing worth keeping
        self.turns.append(reply)
        if self.store is not None and self.chat is not None:
            stats = reply.stats.to_dict() if reply.stats is not None else None
            rec = self.store.add_message(
                self.chat.id,
                "assistant",
                reply.content,
                thinking=reply.thinking,
                status=reply.status,
                stats=stats,
            )
            reply.record_id = rec.id
            self.store.set_model(self.chat.id, self.engine.name)
