"""The native llama.cpp sampler chain for a request's options, and grammar-constrained sampling over one."""

from __future__ import annotations

import ctypes
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from edgeassist.engine.base import GenerationOptions
from edgeassist.errors import EdgeAssistError

PENALTY_LAST_N = 64
"""Tokens the repetition and presence penalties look back over."""


def sampler_chain(
    vocab: object,
    options: GenerationOptions,
    family: str,
    eog_tokens: Callable[[], list[int]],
    banned: Sequence[int] = (),
) -> Any:
    """A sampler chain for `options` (free it with llama_sampler_free); `eog_tokens` only for `ignore_eos`.

    `banned` tokens are never sampled (`<tool_call>` once a reply's calls are used up).
    """
    import llama_cpp

    s = options.sampling(family)
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    add = llama_cpp.llama_sampler_chain_add
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    never = list(dict.fromkeys([*(eog_tokens() if options.ignore_eos else ()), *banned]))
    if never:
        bias = (llama_cpp.llama_logit_bias * len(never))()
        for i, token in enumerate(never):
            bias[i] = llama_cpp.llama_logit_bias(token, float("-inf"))
        add(chain, llama_cpp.llama_sampler_init_logit_bias(n_vocab, len(never), bias))
    top_k = int(s["top_k"])
    if s["repeat_penalty"] != 1.0 or s["presence_penalty"] != 0.0:
        if s["presence_penalty"] >= 0 and s["repeat_penalty"] >= 1:
            # The penalty pass touches every logit (248k on Qwen 3.5: most of the sampling time).
            # Penalties only lower logits and hit at most the last 64 tokens, so cutting to the
            # top k + 64 first gives the same result at a fraction of the cost.
            add(chain, llama_cpp.llama_sampler_init_top_k(max(top_k, 1) + PENALTY_LAST_N))
        penalties = llama_cpp.llama_sampler_init_penalties(
            n_vocab, PENALTY_LAST_N, s["repeat_penalty"], 0.0, s["presence_penalty"]
        )
        add(chain, penalties)
    if s["temperature"] <= 0:
        add(chain, llama_cpp.llama_sampler_init_greedy())
        return chain
    if top_k > 0:
        add(chain, llama_cpp.llama_sampler_init_top_k(top_k))
    add(chain, llama_cpp.llama_sampler_init_top_p(s["top_p"], 1))
    if s["min_p"] > 0:
        add(chain, llama_cpp.llama_sampler_init_min_p(s["min_p"], 1))
    add(chain, llama_cpp.llama_sampler_init_temp(s["temperature"]))
    seed = options.seed if options.seed is not None else int.from_bytes(os.urandom(4), "little")
    add(chain, llama_cpp.llama_sampler_init_dist(seed & 0xFFFFFFFF))
    return chain


class GrammarSampler:
    """Samples through a chain, every token allowed by a GBNF grammar (llama.cpp's, on its vocabulary).

    Fast in the usual case: the chain samples freely, and only that one token is checked against the
    grammar. Only when the grammar rejects it is the token drawn again, from the whole vocabulary
    with the grammar applied first and the chain's cuts after (what llama.cpp's `common_sampler_sample`
    does). A token the grammar rejected is never accepted into it: llama.cpp aborts the process
    when an end-of-generation token reaches an unfinished grammar.

    With `lazy_tokens`, text is free until one of those tokens is sampled; the grammar constrains
    everything from that token on (which it must start with). Without, from the first token. With
    `armed_by` too, a lazy token counts only once one of those has been sampled (a reply that
    opens with thinking: a call begins after `</think>`, and one written while thinking is thought).
    """

    def __init__(
        self,
        vocab: object,
        chain: Any,
        grammar: str,
        *,
        lazy_tokens: Sequence[int] | None = None,
        armed_by: Sequence[int] = (),
    ) -> None:
        """Compile `grammar` (root rule `root`) and take ownership of `chain` (from `sampler_chain`).

        A grammar that does not compile, or that a lazy token cannot start, raises EdgeAssistError;
        the chain is freed then too.
        """
        import llama_cpp

        self._chain: Any = chain
        self._grammar: Any = None
        try:
            self._n_vocab = int(llama_cpp.llama_vocab_n_tokens(vocab))
            triggers = list(lazy_tokens) if lazy_tokens is not None else None
            self._grammar = _compile(vocab, grammar, triggers)
            self._one: Any = llama_cpp.llama_token_data(0, 0.0, 0.0)  # (the candidate `_allows` checks)
            self._one_array = llama_cpp.llama_token_data_array(ctypes.pointer(self._one), 1, -1, False)
            if triggers is not None:
                self._check_triggers(vocab, grammar, triggers)
        except BaseException:
            self.free()
            raise
        self._triggers = frozenset(triggers or ())
        self._active = triggers is None
        self._arming = frozenset(armed_by)
        self._armed = not self._arming
        self._full: Any = None  # the whole-vocabulary candidates, made on the first redraw
        self.resampled = 0
        """Tokens the grammar rejected and that were drawn again (the slow path)."""
        self.held = 0
        """Tokens sampled while the grammar was active (the trigger included)."""

    @property
    def triggered(self) -> bool:
        """Whether the grammar constrains the tokens now (always, unless lazy and not yet triggered)."""
        return self._active

    def sample(self, ctx: object) -> int:
        """The next token from the last logits of `ctx`, accepted by the chain and the grammar."""
        import llama_cpp

        if not self._active:
            token = int(llama_cpp.llama_sampler_sample(self._chain, ctx, -1))
            if not self._armed:
                self._armed = token in self._arming
            elif token in self._triggers:
                llama_cpp.llama_sampler_accept(self._grammar, token)
                self._active = True
                self.held += 1
            return token
        self.held += 1
        # Sampling accepts the token into the chain (penalties remember it): keep the state from
        # before, to draw again from if the grammar says no.
        before = llama_cpp.llama_sampler_clone(self._chain)
        token = int(llama_cpp.llama_sampler_sample(self._chain, ctx, -1))
        if self._allows(token):
            llama_cpp.llama_sampler_free(before)
            llama_cpp.llama_sampler_accept(self._grammar, token)
            return token
        llama_cpp.llama_sampler_free(self._chain)
        self._chain = before
        token = self._redraw(ctx)
        llama_cpp.llama_sampler_accept(self._chain, token)
        llama_cpp.llama_sampler_accept(self._grammar, token)
        self.resampled += 1
        return token

    def free(self) -> None:
        """Free the chain and the grammar (once; later calls do nothing)."""
        import llama_cpp

        if self._chain is not None:
            llama_cpp.llama_sampler_free(self._chain)
            self._chain = None
        if self._grammar is not None:
            llama_cpp.llama_sampler_free(self._grammar)
            self._grammar = None

    def _allows(self, token: int, grammar: Any = None) -> bool:
        """Whether the grammar (or `grammar`), as it stands, lets `token` come next: one candidate, -inf if not."""
        import llama_cpp

        one, array = self._one, self._one_array
        one.id, one.logit, one.p = token, 0.0, 0.0
        array.size, array.selected, array.sorted = 1, -1, False
        llama_cpp.llama_sampler_apply(self._grammar if grammar is None else grammar, ctypes.byref(array))
        return bool(one.logit != float("-inf"))

    def _redraw(self, ctx: object) -> int:
        """A token drawn from the whole vocabulary, the grammar applied before the chain (nothing accepted)."""
        import llama_cpp
        import numpy as np

        logits = llama_cpp.llama_get_logits_ith(ctx, -1)
        if not logits:
            raise EdgeAssistError("llama.cpp has no logits to sample the tool call from")
        n = self._n_vocab
        if self._full is None:
            dtype = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])
            self._full = (np.empty(n, dtype=dtype), np.arange(n, dtype=np.int32))
        cur, ids = self._full
        cur["id"] = ids  # (samplers sort the candidates in place: every field is written again)
        cur["logit"] = np.ctypeslib.as_array(logits, shape=(n,))
        cur["p"] = 0.0
        data = cur.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data))
        array = llama_cpp.llama_token_data_array(data, n, -1, False)
        llama_cpp.llama_sampler_apply(self._grammar, ctypes.byref(array))
        llama_cpp.llama_sampler_apply(self._chain, ctypes.byref(array))
        if not 0 <= array.selected < array.size:
            raise EdgeAssistError("the sampler chain picked no token for the tool call")
        token = int(array.data[array.selected].id)
        if not self._allows(token):
            raise EdgeAssistError("the tool call grammar allows no token the sampler may pick (all of them banned?)")
        return token

    def _check_triggers(self, vocab: object, grammar: str, triggers: list[int]) -> None:
        """Refuse lazy tokens the grammar cannot start with: llama.cpp would abort on the first one sampled."""
        import llama_cpp

        probe = _compile(vocab, grammar, None)
        try:
            for token in triggers:
                if not 0 <= token < self._n_vocab:
                    raise EdgeAssistError(f"the grammar's trigger token {token} is not in the vocabulary")
                if not self._allows(token, probe):
                    raise EdgeAssistError(f"the grammar cannot start with its trigger token {token}")
        finally:
            llama_cpp.llama_sampler_free(probe)


_STDERR_LOCK = threading.Lock()


@contextmanager
def _captured_stderr() -> Iterator[list[str]]:
    """Catch what native code writes to stderr meanwhile (llama.cpp prints grammar errors there).

    A terminal UI's screen would be corrupted by it; the text becomes the error's reason instead.
    """
    out: list[str] = []
    with _STDERR_LOCK, tempfile.TemporaryFile() as f:
        saved = os.dup(2)
        os.dup2(f.fileno(), 2)
        try:
            yield out
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            f.seek(0)
            out.append(f.read(4096).decode("utf-8", "replace"))


def _compile(vocab: object, grammar: str, triggers: list[int] | None) -> Any:
    """A native grammar sampler for `grammar`, lazy on `triggers` unless None; EdgeAssistError if it cannot compile."""
    import llama_cpp

    from edgeassist.engine.log import LOG, first_error

    if not grammar.strip():
        raise EdgeAssistError("the tool call grammar is empty")
    source = grammar.encode("utf-8", "replace")
    mark = LOG.count
    with _captured_stderr() as printed:
        if triggers is None:
            sampler = llama_cpp.llama_sampler_init_grammar(vocab, source, b"root")
        else:
            tokens = (llama_cpp.llama_token * max(len(triggers), 1))(*triggers)
            sampler = llama_cpp.llama_sampler_init_grammar_lazy_patterns(
                vocab, source, b"root", None, 0, tokens, len(triggers)
            )
    if not sampler:
        said = [line.strip() for line in "".join(printed).splitlines() if "error" in line]
        reason = said[0] if said else first_error(mark) or "llama.cpp could not parse it"
        reason = reason.split("error parsing grammar: ", 1)[-1]
        raise EdgeAssistError(f"the tool call grammar does not compile: {reason[:160]}")
    return sampler


__all__ = ["PENALTY_LAST_N", "GrammarSampler", "sampler_chain"]
