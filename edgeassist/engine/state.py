"""`ContextState`: what a llama.cpp context holds, and the checkpoint a hybrid model resumes from.

Qwen 3.5 is a hybrid model whose recurrent state cannot be rolled back to an arbitrary earlier
position, and its template renders a finished reply differently from the prompt it was
generated under (the think block is dropped), so a plain prefix match would re-evaluate the
whole history every turn. Instead the state is saved where the assistant's reply starts; the
next turn restores it and evaluates only the previous reply (as history renders it) and the
new message. A transformer's cache is simply cut back to the common prefix.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from edgeassist.engine.prompt import common_prefix_len
from edgeassist.errors import EdgeAssistError


@dataclass
class Checkpoint:
    """A saved state and the tokens it holds."""

    tokens: list[int]
    data: ctypes.Array[ctypes.c_uint8]


class ContextState:
    """One llama.cpp context's tokens and checkpoint; used on the model thread only."""

    def __init__(self, ctx: object, *, n_batch: int, recurrent: bool, rollback: int) -> None:
        """Track `ctx`, empty. `rollback`: the recurrent-state snapshots it keeps (`n_rs_seq`)."""
        self.ctx = ctx
        self.n_batch = n_batch
        self.recurrent = recurrent
        self.rollback = rollback
        self.tokens: list[int] = []
        """What the context holds now, in order."""
        self.checkpoint: Checkpoint | None = None
        self.fresh = False
        """The context's logits are those of its last token (nothing was restored since it was evaluated)."""

    def decode(self, tokens: Sequence[int], cancel: threading.Event | None = None, *, last: int = 1) -> bool:
        """Evaluate `tokens` after what the context holds, in batches; False if cancelled.

        The final batch holds at least `last` tokens (the ones the state may be rolled back over).
        """
        import llama_cpp

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

    def reset(self) -> None:
        """Empty the context."""
        import llama_cpp

        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self.ctx), True)
        self.tokens = []
        self.fresh = False

    def save_checkpoint(self) -> None:
        """Keep the state as it is now, for a later turn to resume from."""
        self.checkpoint = Checkpoint(list(self.tokens), self._data())

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
        if not llama_cpp.llama_memory_seq_rm(memory, 0, split, -1):
            return  # (refused before anything changed: no checkpoint this turn)
        self.tokens = held[:split]
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
        self.fresh = False  # (a saved state carries no logits)
        return True

    def holds(self, tokens: Sequence[int]) -> bool:
        """Whether the context already holds `tokens` (or more after them)."""
        return len(self.tokens) >= len(tokens) and self.tokens[: len(tokens)] == list(tokens)

    def prepare(self, prompt: list[int]) -> int:
        """Make the context hold `prompt[:start]` for the largest reusable start; return start."""
        import llama_cpp

        common = common_prefix_len(self.tokens, prompt)
        if common == len(self.tokens) == len(prompt) and self.fresh:
            return common  # all of it, logits included (a reply continued where it was cut)
        last = len(prompt) - 1  # else at least one token must be evaluated to get logits
        if common == len(self.tokens) and common <= last:
            return common
        if not self.recurrent:
            start = min(common, last)
            llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(self.ctx), 0, start, -1)
            del self.tokens[start:]
            return start
        cp = self.checkpoint
        if cp is not None and len(cp.tokens) <= min(common, last) and self.restore(cp):
            return len(cp.tokens)
        self.reset()
        return 0
