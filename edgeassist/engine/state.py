"""`ContextState`: what a llama.cpp context holds, and the checkpoint a hybrid model resumes from.

Qwen 3.5 is a hybrid model whose recurrent state cannot be rolled back to an arbitrary earlier
position, and its template renders a finished reply differently from the prompt it was
generated under (the think block is dropped), so a plain prefix match would re-evaluate the
whole history every turn. Instead the state is saved where the assistant's reply starts; the
next turn restores it and evaluates only the previous reply (as history renders it) and the
new message. A transformer's cache is simply cut back to the common prefix.

Voice reads a prompt ahead while the user speaks, from transcripts that can still change; a
hybrid model keeps the state from before each such read (`anchors`), so a guess that turns out
wrong costs only the tokens after the last anchor that still holds.

A picture sits in the token list as a run of one negative id (the engine's, from the picture's
content), as long as the projector's tokens; it takes fewer positions than tokens under M-RoPE,
so positions are counted apart from cells (`shift`), and text after a picture is evaluated at
explicit positions.
"""

from __future__ import annotations

import ctypes
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from edgeassist.engine.prompt import common_prefix_len
from edgeassist.errors import EdgeAssistError

DISK_MARGIN = 16
"""Tokens a state on disk must save beyond the best in memory to be read (a read of tens of MB is not free)."""
ANCHORS = 4
"""Anchors a context keeps (each a copy of the state: tens of MB on the 0.8B)."""


@dataclass
class Checkpoint:
    """A saved state and the tokens it holds."""

    tokens: list[int]
    data: ctypes.Array[ctypes.c_uint8]


class Offer(Protocol):
    """A state that could be restored (one on disk): the tokens it holds, read only when chosen."""

    tokens: list[int]

    def load(self) -> Checkpoint | None:
        """The state itself; None (and a note kept by the offer's owner) when it cannot be used."""

    def rejected(self) -> None:
        """llama.cpp refused the state `load` gave (its owner notes it and drops it)."""


class Media(Protocol):
    """A picture's run in a context: the tokens it takes, the positions it spans, how it is evaluated."""

    n_tokens: int
    n_pos: int

    def decode(self, pos: int, cancel: threading.Event | None) -> bool:
        """Evaluate the picture at position `pos` after what the context holds; False if cancelled."""


class ContextState:
    """One llama.cpp context's tokens and checkpoint; used on the model thread only."""

    def __init__(
        self,
        ctx: object,
        *,
        n_batch: int,
        recurrent: bool,
        rollback: int,
        media: Callable[[int], Media] | None = None,
    ) -> None:
        """Track `ctx`, empty. `rollback`: the recurrent-state snapshots it keeps (`n_rs_seq`).

        `media` gives the picture behind a negative token id (a model that sees; None for one that does not).
        """
        self.ctx = ctx
        self.media = media
        self.shift = 0
        """Cells held minus positions used: what the pictures held save (the next position is `len(tokens) - shift`)."""
        self.n_batch = n_batch
        self.recurrent = recurrent
        self.rollback = rollback
        self.tokens: list[int] = []
        """What the context holds now, in order."""
        self.checkpoint: Checkpoint | None = None
        """The state where the last reply started (a hybrid model's; the next turn resumes from it)."""
        self.prefix: Checkpoint | None = None
        """The state after the last system prompt evaluated (a new chat with the same one starts from it)."""
        self.turn: Checkpoint | None = None
        """The checkpoint of the last reply to a user's message, kept through the tool calls that followed.

        Inside a tool loop each step resumes from the step before; once the next message comes, the
        template renders those steps differently (their think blocks go), so the next turn resumes
        from here instead of reading the history again."""
        self.fresh = False
        """The context's logits are those of its last token (nothing was restored since it was evaluated)."""
        self.anchors: list[Checkpoint] = []
        """States saved where a prompt read ahead began (a hybrid model's), newest last, at most `ANCHORS`.

        Voice reads the prompt while the user is still speaking, from transcripts that may change:
        when the final message turns out otherwise, the reply resumes from the longest anchor it
        begins with, instead of from the last turn's checkpoint."""

    def decode(self, tokens: Sequence[int], cancel: threading.Event | None = None, *, last: int = 1) -> bool:
        """Evaluate `tokens` after what the context holds, in batches; False if cancelled.

        The final batch holds at least `last` tokens (the ones the state may be rolled back over).
        """
        import llama_cpp

        if self.shift or (self.media is not None and tokens and min(tokens) < 0):
            return self._decode_runs(tokens, cancel, last)
        i, n = 0, len(tokens)
        while i < n:
            if cancel is not None and cancel.is_set():
                return False
            end = min(i + self.n_batch, n)
            if 0 < n - end < last:
                end = max(i + 1, n - last)
            chunk = tokens[i:end]
            arr = (llama_cpp.llama_token * len(chunk))(*chunk)
            rc = llama_cpp.llama_decode(self.ctx, llama_cpp.llama_batch_get_one(arr, len(chunk)))
            if rc != 0:
                self.reset()
                raise EdgeAssistError(f"llama.cpp failed to evaluate the prompt (code {rc})")
            self.tokens.extend(chunk)
            self.fresh = True
            i = end
        return True

    def _decode_runs(self, tokens: Sequence[int], cancel: threading.Event | None, last: int) -> bool:
        """`decode` with pictures, or text after one: text at explicit positions, pictures through `media`."""
        assert self.media is not None
        i, n = 0, len(tokens)
        while i < n:
            if cancel is not None and cancel.is_set():
                return False
            if tokens[i] < 0:
                media = self.media(tokens[i])
                if list(tokens[i : i + media.n_tokens]) != [tokens[i]] * media.n_tokens:
                    raise EdgeAssistError("a picture's tokens were cut short in the prompt")
                if not media.decode(len(self.tokens) - self.shift, cancel):
                    self.reset()  # (a picture half evaluated cannot be built on)
                    return False
                self.tokens.extend(tokens[i : i + media.n_tokens])
                self.shift += media.n_tokens - media.n_pos
                self.fresh = False
                i += media.n_tokens
                continue
            run_end = next((j for j in range(i, n) if tokens[j] < 0), n)
            end = min(i + self.n_batch, run_end)
            if run_end == n and 0 < n - end < last:
                end = max(i + 1, n - last)
            self._decode_at(tokens[i:end])
            i = end
        return True

    def _decode_at(self, chunk: Sequence[int]) -> None:
        """Evaluate text tokens at explicit positions (after a picture, cells and positions differ)."""
        import llama_cpp

        batch = llama_cpp.llama_batch_init(len(chunk), 0, 1)
        try:
            pos = len(self.tokens) - self.shift
            for j, token in enumerate(chunk):
                batch.token[j] = token
                batch.pos[j] = pos + j
                batch.n_seq_id[j] = 1
                batch.seq_id[j][0] = 0
                batch.logits[j] = j == len(chunk) - 1
            batch.n_tokens = len(chunk)
            rc = llama_cpp.llama_decode(self.ctx, batch)
        finally:
            llama_cpp.llama_batch_free(batch)
        if rc != 0:
            self.reset()
            raise EdgeAssistError(f"llama.cpp failed to evaluate the prompt (code {rc})")
        self.tokens.extend(chunk)
        self.fresh = True

    def reset(self) -> None:
        """Empty the context."""
        import llama_cpp

        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self.ctx), True)
        self.tokens = []
        self.shift = 0
        self.fresh = False

    def shift_of(self, tokens: Sequence[int]) -> int:
        """Cells minus positions for a context holding `tokens` (what its pictures save)."""
        if self.media is None or not tokens or min(tokens) >= 0:
            return 0
        shift = 0
        for token, count in Counter(t for t in tokens if t < 0).items():
            media = self.media(token)
            shift += count // media.n_tokens * (media.n_tokens - media.n_pos)
        return shift

    def position(self, n: int) -> int:
        """The position of the `n`th cell held (cells and positions differ after a picture)."""
        return n - self.shift_of(self.tokens[:n]) if self.shift else n

    def save_checkpoint(self) -> None:
        """Keep the state as it is now, for a later turn to resume from."""
        self.checkpoint = self.snapshot()

    def save_prefix(self) -> Checkpoint:
        """Keep the state as it is now as the system prompt's, for a new chat to start from; return it."""
        self.prefix = self.snapshot()
        return self.prefix

    def save_anchor(self) -> None:
        """Keep the state as it is now as an anchor (see `anchors`); the oldest goes past `ANCHORS`."""
        if self.tokens and not any(a.tokens == self.tokens for a in self.anchors):
            self.anchors = [*self.anchors[-(ANCHORS - 1) :], self.snapshot()]

    def anchor_at(self, tokens: Sequence[int]) -> Checkpoint | None:
        """The anchor holding exactly `tokens`, if one does."""
        return next((a for a in self.anchors if a.tokens == list(tokens)), None)

    def snapshot(self) -> Checkpoint:
        """A copy of the state as it is now, with the tokens it holds."""
        return Checkpoint(list(self.tokens), self._data())

    def _data(self) -> ctypes.Array[ctypes.c_uint8]:
        import llama_cpp

        size = llama_cpp.llama_state_seq_get_size(self.ctx, 0)
        data: ctypes.Array[ctypes.c_uint8] = (ctypes.c_uint8 * size)()
        llama_cpp.llama_state_seq_get_data(self.ctx, data, size, 0)
        return data

    def checkpoint_by_rollback(self, split: int) -> None:
        """Save the state at `split` from the snapshots of the last pass, keeping the state as it is.

        The state is copied out, rolled back to `split` and saved as the checkpoint, then put back:
        two copies of the state instead of evaluating the tokens after `split` a second time.
        """
        import llama_cpp

        memory = llama_cpp.llama_get_memory(self.ctx)
        held = list(self.tokens)
        now = self._data()
        if not llama_cpp.llama_memory_seq_rm(memory, 0, self.position(split), -1):
            return  # (refused before anything changed: no checkpoint this turn)
        self.tokens = held[:split]
        self.shift = self.shift_of(self.tokens)
        self.save_checkpoint()
        if not self.restore(Checkpoint(held, now)):
            raise EdgeAssistError("llama.cpp could not restore the model state")

    def restore(self, cp: Checkpoint) -> bool:
        """Put a saved state back; False (and an empty context) if llama.cpp refuses it."""
        import llama_cpp

        llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(self.ctx), 0, -1, -1)
        n = llama_cpp.llama_state_seq_set_data(self.ctx, cp.data, len(cp.data), 0)
        if n == 0:
            self.reset()
            return False
        self.tokens = list(cp.tokens)
        self.shift = self.shift_of(self.tokens)
        self.fresh = False  # (a saved state carries no logits)
        return True

    def holds(self, tokens: Sequence[int]) -> bool:
        """Whether the context already holds `tokens` (or more after them)."""
        return len(self.tokens) >= len(tokens) and self.tokens[: len(tokens)] == list(tokens)

    def prepare(self, prompt: list[int], offers: Sequence[Offer] = ()) -> int:
        """Make the context hold `prompt[:start]` for the largest reusable start; return start.

        What the context holds, the checkpoints kept in memory and the `offers` (states on disk)
        are weighed by the tokens each saves; an offer must save `DISK_MARGIN` more than the best
        in memory, since it is read from disk first. An offer that fails to load is passed over.
        """
        common = common_prefix_len(self.tokens, prompt)
        if common == len(self.tokens) == len(prompt) and self.fresh:
            return common  # all of it, logits included (a reply continued where it was cut)
        last = len(prompt) - 1  # else at least one token must be evaluated to get logits
        if common == len(self.tokens) and common <= last:
            held = common
        else:
            held = _whole(prompt, min(common, last)) if not self.recurrent else -1
        memory = max(
            (c for c in (self.checkpoint, self.prefix, self.turn, *self.anchors) if c is not None),
            key=lambda c: self.reusable(c.tokens, prompt),
            default=None,
        )
        in_memory = max(held, self.reusable(memory.tokens, prompt) if memory is not None else -1)
        for offer in sorted(offers, key=lambda o: -self.reusable(o.tokens, prompt)):
            if self.reusable(offer.tokens, prompt) < max(in_memory, 0) + DISK_MARGIN:
                break
            cp = offer.load()
            if cp is None:
                continue
            if self.restore(cp):
                return self._cut(self.reusable(cp.tokens, prompt))
            offer.rejected()
            held = 0  # (the refused restore emptied the context)
        if held >= 0 and (memory is None or held >= self.reusable(memory.tokens, prompt)):
            return self._cut(held)
        if memory is not None and self.reusable(memory.tokens, prompt) >= 0 and self.restore(memory):
            return self._cut(self.reusable(memory.tokens, prompt))
        self.reset()
        return 0

    def reusable(self, saved: Sequence[int], prompt: Sequence[int]) -> int:
        """Tokens of `prompt` a state holding `saved` gives; -1 when it gives none.

        A hybrid model's state must hold a prefix of the prompt (it cannot be cut back), and
        one token short of it at most (the last is evaluated for its logits); a transformer's
        is cut back to what it shares with the prompt.
        """
        last = len(prompt) - 1
        if self.recurrent:
            n = len(saved)
            return n if 0 < n <= last and list(prompt[:n]) == list(saved) else -1
        n = _whole(prompt, min(common_prefix_len(saved, prompt), last))
        return n if n > 0 else -1

    def _cut(self, n: int) -> int:
        """Drop what the context holds after `n` tokens (a transformer's cache; a hybrid's holds no more); return n."""
        import llama_cpp

        if len(self.tokens) > n:
            llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(self.ctx), 0, self.position(n), -1)
            del self.tokens[n:]
            self.shift = self.shift_of(self.tokens)
        return n


def _whole(prompt: Sequence[int], n: int) -> int:
    """`n`, or less so that the first `n` tokens of `prompt` end between pictures, never inside one."""
    while 0 < n < len(prompt) and prompt[n] < 0 and prompt[n - 1] == prompt[n]:
        n -= 1
    return n
