"""`LlamaEngine`: the ChatEngine over llama.cpp, through llama-cpp-python's C API.

The decode loop is written against the C API (not `Llama.create_chat_completion`) for two
reasons: per-token Python work stays tiny (sampling runs in C on the last logits, nothing
is copied to numpy), and the model state can be checkpointed. Qwen 3.5 is a hybrid model
whose recurrent state cannot be rolled back to an earlier position, and its template renders
a finished reply differently from the prompt it was generated under (the think block is
dropped), so a plain prefix match re-evaluates the whole history every turn. Instead the
state is saved where the assistant's reply starts; the next turn restores it and evaluates
only the previous reply (as history renders it) and the new message.
"""

from __future__ import annotations

import codecs
import ctypes
import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from edgeassist.engine.base import Capabilities, Done, Event, GenerationOptions, Message, Stats, Text, Thinking
from edgeassist.engine.build import init_backend as _init_backend
from edgeassist.engine.build import llama_backend_name as llama_backend_name
from edgeassist.engine.build import log_tail as _log_tail
from edgeassist.engine.build import physical_cores
from edgeassist.engine.modelthread import MODEL_THREAD, Cancel
from edgeassist.engine.prompt import CUT, Segment, Shielded, common_prefix_len, shield
from edgeassist.engine.template import ChatTemplate
from edgeassist.engine.thinking import ThinkSplitter
from edgeassist.errors import ContextOverflowError, EdgeAssistError, ModelLoadError

T = TypeVar("T")

PENALTY_LAST_N = 64
"""Tokens the repetition and presence penalties look back over."""
_PREFILL_PROBES = ("x", " x", "X", "?", "\n")
"""Continuations tried on a cut prompt: tokens they all agree on are safe to evaluate early."""


ROLLBACK_MAX = 8
"""Most tokens after the reply's start for which the recurrent state is rolled back instead of evaluated twice."""
_SPECIAL_CACHE_MAX = 512
"""Message texts whose control-token scan is remembered (a chat's history is re-scanned each turn)."""


@dataclass
class Prompt:
    """A turn's prompt: the text as the model reads it, its tokens, and where the reply starts."""

    text: str
    tokens: list[int]
    split: int
    """Token index where the reply starts as the next turn's history will render it."""


def check_gguf(path: Path, fix_hint: str = "delete it and re-run `edgeassist pull`") -> None:
    """Fail early, with a message a person can act on, when `path` is not a readable GGUF."""
    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}")
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise ModelLoadError(f"cannot read model file {path}: {e.strerror}") from None
    if magic != b"GGUF":
        raise ModelLoadError(f"{path} is not a GGUF model file; {fix_hint}")


@dataclass
class _Checkpoint:
    tokens: list[int]
    data: ctypes.Array[ctypes.c_uint8]


class LlamaEngine:
    """A chat engine over one GGUF file; loads lazily, once, and serves one reply at a time."""

    def __init__(
        self,
        path: Path,
        *,
        name: str | None = None,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_gpu_layers: int | None = None,
        n_batch: int = 512,
        flash_attn: str = "auto",
        fix_hint: str = "delete it and re-run `edgeassist pull`",
    ) -> None:
        """Remember how to load `path`; nothing is read until the first use (or `load()`).

        `flash_attn` is auto, on or off; auto turns it off on the CPU, where llama.cpp's flash
        attention gets slower as the context grows (SmolLM2-135M with 2,000 tokens in context, 2
        threads: 38 against 16.5 ms/token), and leaves it to llama.cpp on a GPU. `fix_hint` ends the
        message of a load failure: what the user should do about the file.
        """
        self.path = Path(path)
        self.name = name or self.path.stem
        self._n_ctx = n_ctx
        self.n_threads = n_threads or physical_cores()
        self._n_gpu_layers = n_gpu_layers
        self.n_batch = n_batch
        self.flash_attn = flash_attn
        self._offloaded = False
        self.fix_hint = fix_hint
        self._backend: str | None = None  # known once loaded
        self.load_s = 0.0
        self.supports_thinking = False
        self.recurrent = False
        self.family = "other"
        self._lock = threading.RLock()
        self._model: object = None
        self._ctx: object = None
        self._vocab: object = None
        self._template: ChatTemplate | None = None
        self._tokens: list[int] = []  # what the context holds now, in order
        self._checkpoint: _Checkpoint | None = None
        self._add_bos = False
        self._bos_text = ""
        self._eog: list[int] | None = None
        self._specials: dict[str, tuple[str, ...]] = {}
        self._rollback = 0  # recurrent-state snapshots the context keeps (see _reply_tail_depth)
        self._encoded: tuple[tuple[object, ...], Prompt] | None = None  # the last prompt encoded, for its turn
        self._tails: dict[bool, str] = {}  # the generation prompt's text after the reply start, per think mode

    # -- loading ---------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory."""
        return self._ctx is not None

    @property
    def n_ctx(self) -> int:
        """The context window in tokens."""
        return self._n_ctx

    @property
    def backend(self) -> str:
        """Where llama.cpp runs the model: cpu, or the GPU backend it was built with when layers go there."""
        if self._backend is not None:
            return self._backend
        return "cpu" if self._n_gpu_layers == 0 else llama_backend_name()

    @property
    def capabilities(self) -> Capabilities:
        """Thinking when the model's template has the switch; no tools or images yet."""
        return Capabilities(thinking=self.supports_thinking, local=True)

    def exclusive(self, fn: Callable[..., T], *args: Any, cancel: threading.Event | None = None) -> T:
        """Run `fn(*args)` where this engine computes, with the model to itself; return its result.

        For code that drives llama.cpp directly on this engine's model (the bench's raw baseline):
        it must run on the model thread like the engine's own decoding (see `modelthread`). An
        interruption while waiting sets `cancel`, and `fn` is waited for before it goes on.
        """
        return MODEL_THREAD.call(fn, *args, stop=cancel)

    def held(self) -> AbstractContextManager[None]:
        """Hold a reply in progress between tokens (see `ModelThread.held`)."""
        return MODEL_THREAD.held()

    def load(self) -> float:
        """Load the model and create the context (once); return the seconds loading took."""
        if self._ctx is not None:  # (no trip to the model thread, which may be busy with a reply)
            return self.load_s
        return MODEL_THREAD.call(self._load)

    def _load(self) -> float:
        with self._lock:
            if self._ctx is not None:
                return self.load_s
            check_gguf(self.path, self.fix_hint)
            _init_backend()
            import llama_cpp

            t0 = time.perf_counter()
            gpu = llama_cpp.llama_supports_gpu_offload()
            mparams = llama_cpp.llama_model_default_params()
            layers = self._n_gpu_layers if self._n_gpu_layers is not None else (-1 if gpu else 0)
            mparams.n_gpu_layers = layers if gpu else 0
            _log_tail.clear()
            model = llama_cpp.llama_model_load_from_file(str(self.path).encode(), mparams)
            if not model:
                reason = _log_tail[-1] if _log_tail else "unknown error"
                raise ModelLoadError(
                    f"cannot load {self.path.name}: the file is truncated, corrupt or of an unsupported "
                    f"architecture ({reason}); {self.fix_hint}"
                )
            n_train = llama_cpp.llama_model_n_ctx_train(model)
            if n_train > 0:
                self._n_ctx = min(self._n_ctx, n_train)
            self._model = model
            self._offloaded = layers != 0 and bool(gpu)
            self._vocab = llama_cpp.llama_model_get_vocab(model)
            self.recurrent = bool(llama_cpp.llama_model_is_recurrent(model) or llama_cpp.llama_model_is_hybrid(model))
            self._add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))
            bos = llama_cpp.llama_vocab_bos(self._vocab)
            eos = llama_cpp.llama_vocab_eos(self._vocab)
            self._bos_text = self._piece(bos) if bos >= 0 else ""
            tmpl = llama_cpp.llama_model_chat_template(model, None)
            try:
                self._template = ChatTemplate(
                    tmpl.decode("utf-8") if tmpl else None,
                    bos_token=self._bos_text,
                    eos_token=self._piece(eos) if eos >= 0 else "",
                )
            except ModelLoadError:
                self._free_model()
                raise
            self.supports_thinking = self._template.supports_thinking
            self._rollback = self._reply_tail_depth() if self.recurrent else 0
            ctx = self.new_context()
            if not ctx:
                self._free_model()
                reason = _log_tail[-1] if _log_tail else "out of memory?"
                raise ModelLoadError(f"cannot create a {self._n_ctx}-token context for {self.path.name}: {reason}")
            self._ctx = ctx
            self._rollback = min(self._rollback, llama_cpp.llama_n_rs_seq(ctx))  # (0 where llama.cpp has none)
            arch = self._meta("general.architecture")
            self.family = "qwen3.5" if arch.startswith("qwen35") else "other"
            self._backend = llama_backend_name() if self._offloaded else "cpu"
            self.load_s = time.perf_counter() - t0
            return self.load_s

    def new_context(self) -> Any:
        """A new llama.cpp context on the loaded model with this engine's parameters (free it with llama_free).

        The engine's own context is made here too, so the bench's raw baseline runs under exactly
        the same context size, batch and threads.
        """
        import llama_cpp

        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = self._n_ctx
        cparams.n_batch = min(self.n_batch, self._n_ctx)
        cparams.n_ubatch = cparams.n_batch
        cparams.n_threads = self.n_threads
        cparams.n_threads_batch = self.n_threads
        cparams.flash_attn_type = {"on": 1, "off": 0}.get(self.flash_attn, -1 if self._offloaded else 0)
        cparams.n_rs_seq = self._rollback
        cparams.no_perf = True
        return llama_cpp.llama_init_from_model(self._model, cparams)

    def eog_tokens(self) -> list[int]:
        """Every end-of-generation token of the vocabulary (scanned once: ~0.25 s on a 248k vocabulary)."""
        import llama_cpp

        if self._eog is None:
            self.load()
            is_eog, vocab = llama_cpp.llama_vocab_is_eog, self._vocab
            self._eog = [t for t in range(llama_cpp.llama_vocab_n_tokens(vocab)) if is_eog(vocab, t)]
        return self._eog

    def _meta(self, key: str) -> str:
        import llama_cpp

        buf = ctypes.create_string_buffer(256)
        n = llama_cpp.llama_model_meta_val_str(self._model, key.encode(), buf, 256)
        return buf.value.decode("utf-8", "replace") if n >= 0 else ""

    def _reply_tail_depth(self) -> int:
        """Recurrent-state snapshots to keep: the tokens a generation prompt adds after the reply's start.

        The next turn's history renders the reply from that start (Qwen 3.5 drops the empty think
        block), so a hybrid model's state must be taken there. With that many snapshots llama.cpp
        can roll the state back to it after the whole prompt is evaluated in one pass (`_stream`),
        instead of a second pass for the last few tokens. 0 (two passes) for a template that adds
        more than `ROLLBACK_MAX` tokens, or fails to render a sample chat.
        """
        sample: list[Message] = [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"},
        ]
        try:
            depth = max(len(p.tokens) - p.split for p in (self._encode(sample, t) for t in (False, True)))
        except EdgeAssistError:
            return 0
        return depth if depth <= ROLLBACK_MAX else 0

    def _free_model(self) -> None:
        import llama_cpp

        llama_cpp.llama_model_free(self._model)
        self._model = self._vocab = self._template = None

    def close(self) -> None:
        """Free the context and the model."""
        with self._lock:
            if self._ctx is None:
                return
            import llama_cpp

            llama_cpp.llama_free(self._ctx)
            self._ctx = None
            self._free_model()
            self._tokens, self._checkpoint, self._eog, self._encoded = [], None, None, None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown may have unloaded llama_cpp
            pass

    # -- tokens ------------------------------------------------------------------------------

    def tokenize(self, text: str, *, special: bool = False, add_bos: bool = False) -> list[int]:
        """Tokens for `text`; control-token strings in it stay plain text unless `special`.

        Only the engine's prompt encoder passes `special=True`, and only for the chat template's
        own markup (see `engine.prompt`): message text never becomes control tokens.
        """
        import llama_cpp

        if self._vocab is None:
            self.load()
        raw = text.encode("utf-8", "replace")  # a lone surrogate must not stop a reply
        n_max = len(raw) + 8
        buf = (llama_cpp.llama_token * n_max)()
        n = llama_cpp.llama_tokenize(self._vocab, raw, len(raw), buf, n_max, add_bos, special)
        if n < 0:
            n_max = -n
            buf = (llama_cpp.llama_token * n_max)()
            n = llama_cpp.llama_tokenize(self._vocab, raw, len(raw), buf, n_max, add_bos, special)
        return list(buf[:n])

    def control_strings(self, text: str) -> tuple[str, ...]:
        """The control-token strings (`<|im_start|>`…) that special parsing would find in `text`."""
        import llama_cpp

        found = self._specials.get(text)
        if found is None:
            flags = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN
            attr, vocab = llama_cpp.llama_vocab_get_attr, self._vocab
            tokens = self.tokenize(text, special=True) if text else []
            found = tuple(sorted({self._piece(t) for t in tokens if attr(vocab, t) & flags}))
            if len(self._specials) >= _SPECIAL_CACHE_MAX:
                self._specials.clear()
            self._specials[text] = found
        return found

    def _prompt_tokens(
        self, shielded: Shielded, rendered: str, known: list[tuple[Segment, list[int]]] | None = None
    ) -> tuple[list[int], list[tuple[Segment, list[int]]]]:
        """Tokens of a prompt rendered from `shielded`: markup with special parsing, quoted strings without.

        Also returns each segment with its tokens; pass them back as `known` to tokenize a prefix of
        the same rendering (the reply's head) without tokenizing its segments again.
        """
        out: list[int] = []
        parts: list[tuple[Segment, list[int]]] = []
        for i, seg in enumerate(shielded.segments(rendered)):
            if known is not None and i < len(known) and known[i][0] == seg:
                tokens = known[i][1]
            else:
                bos = i == 0 and self._add_bos and not (self._bos_text and seg.text.startswith(self._bos_text))
                tokens = self.tokenize(seg.text, special=seg.special, add_bos=bos)
            parts.append((seg, tokens))
            out += tokens
        return out, parts

    def _piece(self, token: int) -> str:
        return self.piece_bytes(token).decode("utf-8", "replace")

    def piece_bytes(self, token: int) -> bytes:
        """The raw bytes of one token (special tokens spelled out); may be part of a UTF-8 character."""
        import llama_cpp

        buf = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, 64, 0, True)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, -n, 0, True)
        return buf.raw[:n]

    def render(self, messages: Sequence[Message], think: bool) -> str:
        """The prompt text for `messages` under the model's own chat template."""
        return self.encode(messages, think).text

    def encode(self, messages: Sequence[Message], think: bool) -> Prompt:
        """The prompt for `messages`: its text, its tokens (message text never special), the reply's start.

        A turn asks twice (the conversation's fit to the context, then the stream): the last
        encoding is kept, so the template is rendered and the prompt tokenized once per turn.
        """
        self.load()
        think = think and self.supports_thinking
        key = (think, *((m["role"], m["content"]) for m in messages))
        memo = self._encoded
        if memo is not None and memo[0] == key:
            return memo[1]
        prompt = self._encode(messages, think)
        self._encoded = (key, prompt)
        return prompt

    def _encode(self, messages: Sequence[Message], think: bool) -> Prompt:
        assert self._template is not None
        shielded = shield(messages, self.control_strings)
        rendered = self._template.render(shielded.messages, think=think)
        tokens, parts = self._prompt_tokens(shielded, rendered)
        split = len(tokens) - 1
        if self.recurrent:  # (only a hybrid model's checkpoint needs the reply's start)
            tail = self._tails.get(think)
            if tail is not None and len(rendered) > len(tail) and rendered.endswith(tail):
                start = len(rendered) - len(tail)  # the same opening as before: no second rendering
            else:
                start = self._template.reply_start(shielded.messages, think=think, prompt=rendered)
                self._tails[think] = rendered[start:]
            head_tokens, _ = self._prompt_tokens(shielded, rendered[:start], parts)
            split = min(common_prefix_len(head_tokens, tokens), split)
        return Prompt(shielded.text(rendered), tokens, split)

    def count_tokens(self, messages: Sequence[Message], options: GenerationOptions) -> int:
        """Tokens the rendered prompt for `messages` takes."""
        return len(self.encode(messages, options.think).tokens)

    # -- state -------------------------------------------------------------------------------

    def _decode(self, tokens: Sequence[int], cancel: threading.Event | None = None, *, last: int = 1) -> bool:
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
            rc = llama_cpp.llama_decode(self._ctx, llama_cpp.llama_batch_get_one(arr, len(chunk)))
            if rc != 0:
                self._reset()
                raise EdgeAssistError(f"llama.cpp failed to evaluate the prompt (code {rc})")
            self._tokens.extend(chunk)
            i = end
        return True

    def _reset(self) -> None:
        import llama_cpp

        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self._ctx), True)
        self._tokens = []

    def _save_checkpoint(self) -> None:
        self._checkpoint = _Checkpoint(list(self._tokens), self._state())

    def _state(self) -> ctypes.Array[ctypes.c_uint8]:
        import llama_cpp

        size = llama_cpp.llama_state_seq_get_size(self._ctx, 0)
        data = (ctypes.c_uint8 * size)()
        llama_cpp.llama_state_seq_get_data(self._ctx, data, size, 0)
        return data

    def _checkpoint_by_rollback(self, split: int) -> None:
        """Save the state at `split` from the snapshots of the last pass, keeping the state as it is.

        The state is copied out, rolled back to `split` and saved as the checkpoint, then put back:
        two copies of the state instead of evaluating the tokens after `split` a second time.
        """
        import llama_cpp

        memory = llama_cpp.llama_get_memory(self._ctx)
        held = list(self._tokens)
        now = self._state()
        if not llama_cpp.llama_memory_seq_rm(memory, 0, split, -1):
            return  # (refused before anything changed: no checkpoint this turn)
        self._tokens = held[:split]
        self._save_checkpoint()
        if not self._restore_checkpoint(_Checkpoint(held, now)):
            raise EdgeAssistError("llama.cpp could not restore the model state")

    def _restore_checkpoint(self, cp: _Checkpoint) -> bool:
        import llama_cpp

        llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(self._ctx), 0, -1, -1)
        n = llama_cpp.llama_state_seq_set_data(self._ctx, cp.data, len(cp.data), 0)
        if n == 0:
            self._reset()
            return False
        self._tokens = list(cp.tokens)
        return True

    def _prepare(self, prompt: list[int]) -> int:
        """Make the context hold `prompt[:start]` for the largest reusable start; return start."""
        import llama_cpp

        common = common_prefix_len(self._tokens, prompt)
        last = len(prompt) - 1  # at least one token must be evaluated to get logits
        if common == len(self._tokens) and common <= last:
            return common
        if not self.recurrent:
            start = min(common, last)
            llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(self._ctx), 0, start, -1)
            del self._tokens[start:]
            return start
        cp = self._checkpoint
        if cp is not None and len(cp.tokens) <= min(common, last) and self._restore_checkpoint(cp):
            return len(cp.tokens)
        self._reset()
        return 0

    # -- sampling ----------------------------------------------------------------------------

    def sampler(self, options: GenerationOptions) -> Any:
        """A native llama.cpp sampler chain for `options` (free it with llama_sampler_free)."""
        import llama_cpp

        s = options.sampling(self.family)
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        add = llama_cpp.llama_sampler_chain_add
        n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        if options.ignore_eos:
            eog = self.eog_tokens()
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

    # -- the stream --------------------------------------------------------------------------

    def stream(
        self,
        messages: Sequence[Message],
        options: GenerationOptions,
        cancel: threading.Event | None = None,
    ) -> Iterator[Event]:
        """Yield Thinking/Text events as tokens arrive, then one Done with the stats.

        The model runs on the process's model thread (see `modelthread`): a caller on that thread
        (`MODEL_THREAD.call`) iterates it in place; any other gets the events in its own thread, at
        most a couple of tokens behind. Leaving the loop early stops the reply at the next token.
        """
        stop = Cancel(cancel)
        return MODEL_THREAD.stream(lambda: self._locked_stream(messages, options, stop), stop)

    def prefill(self, messages: Sequence[Message], think: bool, cancel: threading.Event | None = None) -> int:
        """Evaluate the start of a coming prompt ahead of time; return the tokens evaluated.

        The last of `messages` is a message still being written (the user's words so far, say); the
        prompt is cut where the rest of it would go. Only the tokens that no continuation could
        tokenize differently are evaluated, so the context always holds a prefix of the final
        prompt and the next `stream()` reuses it. On a hybrid model, whose state cannot be rolled
        back, this is the only safe way to start early.
        """
        return MODEL_THREAD.call(self._prefill, messages, think, cancel, stop=cancel)

    def _prefill(self, messages: Sequence[Message], think: bool, cancel: threading.Event | None) -> int:
        with self._lock:
            self._load()
            assert self._template is not None
            if not messages:
                return 0
            shielded = shield(messages, self.control_strings)
            last = shielded.messages[-1]
            shielded.messages[-1] = {**last, "content": last["content"] + CUT}
            rendered = self._template.render(shielded.messages, think=think and self.supports_thinking)
            cut = rendered.find(CUT)
            if cut <= 0:
                return 0
            text = rendered[:cut]
            tokens, parts = self._prompt_tokens(shielded, text)
            for tail in _PREFILL_PROBES:  # keep only tokens that stay the same whatever follows
                probe, _ = self._prompt_tokens(shielded, text + tail, parts)
                tokens = tokens[: common_prefix_len(tokens, probe)]
            held = self._tokens
            if not tokens or (len(held) >= len(tokens) and held[: len(tokens)] == tokens):
                return 0
            start = self._prepare(tokens)
            if start >= len(tokens):
                return 0
            self._decode(tokens[start:], cancel)
            return len(tokens) - start

    def _locked_stream(
        self, messages: Sequence[Message], options: GenerationOptions, cancel: threading.Event
    ) -> Iterator[Event]:
        with self._lock:
            self._load()
            try:
                yield from self._stream(messages, options, cancel)
            except (GeneratorExit, EdgeAssistError):
                raise
            except BaseException:
                # Ctrl+C can land between a decode and its bookkeeping: start clean next time.
                self._reset()
                raise

    def _stream(
        self, messages: Sequence[Message], options: GenerationOptions, cancel: threading.Event | None
    ) -> Iterator[Event]:
        import llama_cpp

        t0 = time.perf_counter()
        think = options.think and self.supports_thinking
        encoded = self.encode(messages, think)
        text, prompt, split = encoded.text, encoded.tokens, encoded.split
        stats = Stats(
            model=self.name,
            backend=self.backend,
            load_s=self.load_s,
            prompt_tokens=len(prompt),
            n_ctx=self._n_ctx,
        )
        if len(prompt) >= self._n_ctx:
            raise ContextOverflowError(
                f"the prompt is {len(prompt)} tokens but the context window is {self._n_ctx}: "
                "shorten it or raise model.n_ctx"
            )
        start = self._prepare(prompt)
        stats.reused_tokens = start
        stats.evaluated_tokens = len(prompt) - start
        # A hybrid model's state is checkpointed where the reply starts, for the next turn. With
        # snapshots for the tokens after that point, the prompt is evaluated in one pass and the
        # checkpoint taken by rolling back, once the first token is out; else in two passes.
        checkpoint_at = split if self.recurrent and start < split else None
        if checkpoint_at is not None and len(prompt) - split > self._rollback:
            ok = self._decode(prompt[start:split], cancel)
            if ok:
                self._save_checkpoint()
                ok = self._decode(prompt[split:], cancel)
            checkpoint_at = None
        else:
            ok = self._decode(prompt[start:], cancel, last=len(prompt) - split + 1)
        stats.prompt_eval_s = time.perf_counter() - t0
        if not ok:
            stats.finish_reason = "cancelled"
            stats.context_used = len(self._tokens)
            yield Done(stats)
            return

        # Start inside a think block when the prompt opened one (Qwen 3.5 ends it with `<think>\n`).
        tail = text[-40:]
        splitter = ThinkSplitter(thinking=tail.rfind("<think>") > tail.rfind("</think>"))
        utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        sampler = self.sampler(options)
        vocab, ctx = self._vocab, self._ctx
        is_eog = llama_cpp.llama_vocab_is_eog
        sample = llama_cpp.llama_sampler_sample
        one = (llama_cpp.llama_token * 1)()
        batch = llama_cpp.llama_batch_get_one(one, 1)
        stats.finish_reason = "length"
        pending = 0  # tokens generated since the last event (to count into the next one)
        try:
            for _ in range(options.max_tokens):
                if cancel is not None and cancel.is_set():
                    stats.finish_reason = "cancelled"
                    break
                if len(self._tokens) >= self._n_ctx:
                    break
                token = sample(sampler, ctx, -1)
                now = time.perf_counter() - t0
                if is_eog(vocab, token):
                    stats.finish_reason = "stop"
                    break
                stats.token_times.append(now)
                if stats.ttft_s is None:
                    stats.ttft_s = now
                piece = utf8.decode(self.piece_bytes(token))
                pending += 1
                if piece:
                    for event in splitter.feed(piece):
                        if isinstance(event, Text | Thinking):
                            if event.tokens != pending:  # (pieces come with 1: the usual case costs nothing)
                                event = dataclasses.replace(event, tokens=pending)
                            pending = 0
                        yield event
                if checkpoint_at is not None:
                    self._checkpoint_by_rollback(checkpoint_at)
                    checkpoint_at = None
                one[0] = token
                rc = llama_cpp.llama_decode(ctx, batch)
                if rc != 0:
                    self._reset()
                    raise EdgeAssistError(f"llama.cpp failed while generating (code {rc})")
                self._tokens.append(token)
        finally:
            llama_cpp.llama_sampler_free(sampler)
        if checkpoint_at is not None:  # (the reply ended before its first decode)
            self._checkpoint_by_rollback(checkpoint_at)
        yield from splitter.feed(utf8.decode(b"", final=True))
        yield from splitter.flush()
        stats.generated_tokens = len(stats.token_times)
        stats.context_used = len(self._tokens)
        yield Done(stats)
