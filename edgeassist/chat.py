"""`Conversation`: the history, system prompt, trimming and saving around one engine.

Every front end (ask, the TUI, voice) talks through a Conversation, so prompting,
streaming and history are written once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from edgeassist.engine.base import (
    ChatEngine,
    Done,
    Event,
    GenerationOptions,
    Message,
    Notice,
    Stats,
    Text,
    Thinking,
)
from edgeassist.errors import ContextOverflowError, UsageError
from edgeassist.store import ChatRecord, Store, chat_name


@dataclass
class Turn:
    """One message of the conversation as front ends show it."""

    role: Literal["user", "assistant"]
    """Who said it."""
    content: str
    """The text (a reply's answer, without thinking)."""
    thinking: str = ""
    """The reply's thinking, if any."""
    status: Literal["complete", "cut", "cancelled", "error"] = "complete"
    """How a reply ended: finished, cut by the token limit (or a full context), or stopped."""
    stats: Stats | None = None
    """Timing figures of a reply made in this session."""
    record_id: int | None = field(default=None, repr=False)
    """Row id in the store, when saved."""


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
    ) -> None:
        """Start a conversation; with `store` and `chat`, continue that saved chat."""
        self.engine = engine
        self.options = options or GenerationOptions()
        self.store = store
        self.chat = chat
        self.system_prompt = system_prompt
        self.turns: list[Turn] = []
        self._dropped = 0  # leading turns left out of the context; only grows, so the prefix stays stable
        self._told_trim = False
        if store is not None and chat is not None:
            if chat.system_prompt:
                self.system_prompt = chat.system_prompt
            for m in store.messages(chat.id):
                if m.role in ("user", "assistant"):
                    self.turns.append(Turn(m.role, m.content, m.thinking, m.status, None, m.id))

    @classmethod
    def open(
        cls,
        engine: ChatEngine,
        store: Store,
        name: str,
        *,
        system_prompt: str | None = None,
        options: GenerationOptions | None = None,
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
        return cls(engine, system_prompt=system_prompt, options=options, store=store, chat=chat)

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
        """The messages sent to the model: system prompt, then the turns not trimmed away."""
        msgs: list[Message] = []
        if self.system_prompt:
            msgs.append({"role": "system", "content": self.system_prompt})
        for t in self.turns[self._dropped :]:
            msgs.append({"role": t.role, "content": t.content})
        return msgs

    def _fit(self, options: GenerationOptions) -> Notice | None:
        """Drop the oldest turns until the prompt leaves room for the reply; tell the user once."""
        n_ctx = self.engine.n_ctx
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
        self, text: str, cancel: threading.Event | None = None, options: GenerationOptions | None = None
    ) -> Iterator[Event]:
        """Add a user message and stream the reply (events from the engine, plus Notices)."""
        if not text.strip():
            raise UsageError("the message is empty: type a question")
        options = options or self.options
        turn = Turn("user", text)
        self.turns.append(turn)
        try:
            notice = self._fit(options)
        except ContextOverflowError:
            self.turns.pop()  # a message that cannot be answered is not kept
            raise
        if self.store is not None and self.chat is not None:
            turn.record_id = self.store.add_message(self.chat.id, "user", text).id
        if notice is not None:
            yield notice
        yield from self._stream_reply(cancel, options)

    def regenerate(
        self, cancel: threading.Event | None = None, options: GenerationOptions | None = None
    ) -> Iterator[Event]:
        """Replace the last reply with a new one for the same message."""
        if self.turns and self.turns[-1].role == "assistant":
            self._forget(self.turns.pop())
        if not self.turns:
            raise UsageError("there is no message to answer again")
        yield from self._reply(cancel, options or self.options)

    def edit_last(
        self, text: str, cancel: threading.Event | None = None, options: GenerationOptions | None = None
    ) -> Iterator[Event]:
        """Replace the last user message (and its reply) with `text` and stream a new reply."""
        if self.turns and self.turns[-1].role == "assistant":
            self._forget(self.turns.pop())
        if self.turns and self.turns[-1].role == "user":
            self._forget(self.turns.pop())
        yield from self.send(text, cancel, options)

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

    def _reply(self, cancel: threading.Event | None, options: GenerationOptions) -> Iterator[Event]:
        notice = self._fit(options)
        if notice is not None:
            yield notice
        yield from self._stream_reply(cancel, options)

    def continue_reply(
        self, cancel: threading.Event | None = None, options: GenerationOptions | None = None
    ) -> Iterator[Event]:
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
        yield from self._stream_reply(cancel, options, last)

    def _stream_reply(
        self, cancel: threading.Event | None, options: GenerationOptions, prior: Turn | None = None
    ) -> Iterator[Event]:
        reply = Turn("assistant", "", status="cancelled")
        answer: list[str] = [prior.content] if prior is not None else []
        thinking: list[str] = [prior.thinking] if prior is not None else []
        saved = False
        if options.state_path is None and self.state_path is not None:
            options = replace(options, state_path=self.state_path)
        try:
            for event in self.engine.stream(self.context(), options, cancel):
                if isinstance(event, Text):
                    answer.append(event.text)
                elif isinstance(event, Thinking):
                    thinking.append(event.text)
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
