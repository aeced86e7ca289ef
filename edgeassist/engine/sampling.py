"""The native llama.cpp sampler chain for a request's options."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from edgeassist.engine.base import GenerationOptions

PENALTY_LAST_N = 64
"""Tokens the repetition and presence penalties look back over."""


def sampler_chain(vocab: object, options: GenerationOptions, family: str, eog_tokens: Callable[[], list[int]]) -> Any:
    """A sampler chain for `options` (free it with llama_sampler_free); `eog_tokens` only for `ignore_eos`."""
    import llama_cpp

    s = options.sampling(family)
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    add = llama_cpp.llama_sampler_chain_add
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    if options.ignore_eos:
        eog = eog_tokens()
        bias = (llama_cpp.llama_logit_bias * len(eog))()
        for i, token in enumerate(eog):
            bias[i] = llama_cpp.llama_logit_bias(token, float("-inf"))
        add(chain, llama_cpp.llama_sampler_init_logit_bias(n_vocab, len(eog), bias))
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
