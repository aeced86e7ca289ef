"""The baseline: llama.cpp's decode loop with nothing around it, and the pieces edgeassist adds, timed alone.

The raw loop runs on the engine's own model (no second copy in memory) in a context created
with the engine's parameters (context size, batch, threads), evaluates the same prompt tokens,
then calls `llama_decode` one token at a time, feeding back fixed tokens: no sampling, no
detokenizing, no Python between decodes beyond the loop itself. Its ms/token is what llama.cpp
alone costs here; edgeassist's ms/token over it is the cost of everything edgeassist adds.
"""

from __future__ import annotations

import codecs
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from edgeassist.bench.results import Overheads, RawSample
from edgeassist.engine.base import GenerationOptions
from edgeassist.engine.llama import LlamaEngine
from edgeassist.errors import EdgeAssistError


class Stopped(Exception):
    """The bench's cancel event was set."""


@contextmanager
def raw_context(engine: LlamaEngine) -> Iterator[object]:
    """A fresh llama.cpp context on `engine`'s loaded model, with the engine's context parameters."""
    import llama_cpp

    engine.load()
    ctx = engine.new_context()  # the same parameters as the engine's own context
    if not ctx:
        raise EdgeAssistError(f"cannot create a second {engine.n_ctx}-token context for the raw baseline (memory?)")
    try:
        yield ctx
    finally:
        llama_cpp.llama_free(ctx)


def _decode(ctx: object, tokens: Sequence[int], n_batch: int) -> None:
    import llama_cpp

    for i in range(0, len(tokens), n_batch):
        chunk = tokens[i : i + n_batch]
        arr = (llama_cpp.llama_token * len(chunk))(*chunk)
        rc = llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(arr, len(chunk)))
        if rc != 0:
            raise EdgeAssistError(f"llama.cpp failed to evaluate the raw baseline's prompt (code {rc})")
    llama_cpp.llama_synchronize(ctx)


def raw_decode(
    engine: LlamaEngine,
    ctx: object,
    prompt: Sequence[int],
    n_tokens: int,
    cancel: threading.Event | None = None,
) -> RawSample:
    """Evaluate `prompt`, then decode `n_tokens - 1` single tokens; time each (`ctx` from `raw_context`).

    The prompt is evaluated once untimed first, so the new context is as warm as the engine's.
    """
    import llama_cpp

    memory = llama_cpp.llama_get_memory(ctx)
    # A new context's first decodes set up its buffers and threads; the engine's context is long past that.
    _decode(ctx, prompt, min(engine.n_batch, engine.n_ctx))
    llama_cpp.llama_memory_clear(memory, True)
    feed = list(prompt) or [0]  # fed back in turn: which token is decoded does not change the work
    decode, sync, now = llama_cpp.llama_decode, llama_cpp.llama_synchronize, time.perf_counter
    one = (llama_cpp.llama_token * 1)()
    batch = llama_cpp.llama_batch_get_one(one, 1)
    t0 = now()
    _decode(ctx, prompt, min(engine.n_batch, engine.n_ctx))
    times = [now() - t0]
    prompt_s = times[0]
    for i in range(n_tokens - 1):
        if cancel is not None and cancel.is_set():
            raise Stopped
        one[0] = feed[i % len(feed)]
        rc = decode(ctx, batch)
        sync(ctx)  # GPU backends return before the work is done; reading logits would wait the same way
        times.append(now() - t0)
        if rc != 0:
            raise EdgeAssistError(f"llama.cpp failed in the raw decode loop (code {rc})")
    return RawSample(prompt_tokens=len(prompt), prompt_eval_s=prompt_s, token_times=times)


def time_overheads(engine: LlamaEngine, ctx: object, options: GenerationOptions, n: int) -> Overheads:
    """Time the engine's sampler chain and its token-to-text step alone, `n` times each, on `ctx`'s last logits."""
    import llama_cpp

    sampler = engine.sampler(options)
    sample, now = llama_cpp.llama_sampler_sample, time.perf_counter
    sample_s: list[float] = []
    tokens: list[int] = []
    try:
        for _ in range(n):
            t = now()
            tokens.append(sample(sampler, ctx, -1))
            sample_s.append(now() - t)
    finally:
        llama_cpp.llama_sampler_free(sampler)
    utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
    detok_s: list[float] = []
    for token in tokens:
        t = now()
        utf8.decode(engine.piece_bytes(token))
        detok_s.append(now() - t)
    return Overheads(sample_s=sample_s, detokenize_s=detok_s)
