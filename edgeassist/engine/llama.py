"""`LlamaEngine`: the ChatEngine over llama.cpp, through llama-cpp-python's C API.

The decode loop is written against the C API (not `Llama.create_chat_completion`) for two
reasons: per-token Python work stays tiny (sampling runs in C on the last logits, nothing
is copied to numpy), and the model state can be checkpointed (`engine.state`). Prompts come
from `engine.encoder`, sampler chains from `engine.sampling`; all model compute runs on the
process's model thread (`engine.modelthread`), whichever thread calls.
"""

from __future__ import annotations

import codecs
import ctypes
import dataclasses
import hashlib
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from edgeassist.engine.base import (
    Capabilities,
    Done,
    Event,
    GenerationOptions,
    ImageRef,
    Message,
    Notice,
    Stats,
    Text,
    Thinking,
    ToolSpec,
)
from edgeassist.engine.build import init_backend as _init_backend
from edgeassist.engine.build import llama_backend_name as llama_backend_name
from edgeassist.engine.build import log_tail as _log_tail
from edgeassist.engine.build import model_params, physical_cores
from edgeassist.engine.encoder import Prompt, PromptEncoder
from edgeassist.engine.log import LOG as _LOG
from edgeassist.engine.log import first_error
from edgeassist.engine.modelthread import MODEL_THREAD, Cancel
from edgeassist.engine.sampling import GrammarSampler, sampler_chain
from edgeassist.engine.state import DISK_MARGIN, Checkpoint, ContextState
from edgeassist.engine.statefile import StateFileError, StateFiles, fingerprint_difference, model_identity
from edgeassist.engine.template import ChatTemplate
from edgeassist.engine.thinking import ThinkSplitter
from edgeassist.engine.threads import ReplyThreads
from edgeassist.engine.toolcalls import OPEN as CALL_OPEN
from edgeassist.engine.toolcalls import CallSplitter, call_grammar
from edgeassist.engine.vision import Vision
from edgeassist.errors import ContextOverflowError, EdgeAssistError, ModelLoadError

__all__ = ["LlamaEngine", "Prompt", "check_gguf", "llama_backend_name"]

T = TypeVar("T")

ROLLBACK_MAX = 8
"""Most tokens after the reply's start for which the recurrent state is rolled back instead of evaluated twice."""
TOOL_STRING_CHARS = 256
"""Longest text a tool call's string argument may hold (the grammar's bound: a call always ends)."""


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
        state_files: StateFiles | None = None,
        adapt_threads: bool = True,
        projector: Path | None = None,
        image_tokens: int = 256,
    ) -> None:
        """Remember how to load `path`; nothing is read until the first use (or `load()`).

        `flash_attn` is auto, on or off; auto turns it off on the CPU, where llama.cpp's flash
        attention gets slower as the context grows (SmolLM2-135M with 2,000 tokens in context, 2
        threads: 38 against 16.5 ms/token), and leaves it to llama.cpp on a GPU. `fix_hint` ends the
        message of a load failure: what the user should do about the file. `state_files` keeps
        model states on disk between processes (see `engine.statefile`); None keeps none.
        `adapt_threads` picks the thread count per reply and token, up to `n_threads` (`engine.threads`).
        `projector` is the model's vision projector (its `mmproj` GGUF): with one, messages may carry
        pictures, each scaled to at most `image_tokens` tokens; it is loaded with the first picture.
        """
        self.path = Path(path)
        self.name = name or self.path.stem
        self._n_ctx = n_ctx
        self.n_threads = n_threads or physical_cores()
        self.reply_threads = ReplyThreads(self.n_threads, adapt=adapt_threads)
        self._n_gpu_layers = n_gpu_layers
        self.n_batch = n_batch
        self.flash_attn = flash_attn
        self._offloaded = False
        self.fix_hint = fix_hint
        self._backend: str | None = None  # known once loaded
        self.load_s = 0.0
        self.supports_thinking = False
        self.recurrent = False
        self._call_token: int | None = None  # the `<tool_call>` token, where the model can call tools
        self._think_end: int | None = None  # the `</think>` token, after which a thinking reply may call
        self.family = "other"
        self._lock = threading.RLock()
        self._model: object = None
        self._ctx: object = None
        self._vocab: object = None
        self._template: ChatTemplate | None = None
        self._encoder: PromptEncoder | None = None  # these two exist while loaded
        self._state: ContextState | None = None
        self._rollback = 0  # recurrent-state snapshots a context keeps (see PromptEncoder.reply_tail_depth)
        self._eog: list[int] | None = None
        self.state_files = state_files
        self._fingerprint: dict[str, object] | None = None  # what a kept state must have been saved under
        self._kept_last: dict[Path, object] = {}  # the state last handed to the writer, per file
        self._drafted: _Draft | None = None  # a reply begun ahead of its message (see `draft`)
        self.projector = Path(projector) if projector is not None else None
        self._vision = (
            Vision(projector, image_tokens=image_tokens, n_threads=self.n_threads, use_gpu=False, n_batch=n_batch)
            if projector is not None
            else None
        )

    # -- the contract: what it is --------------------------------------------------------------

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
        """Thinking when the model's template has the switch; tools when it renders them and has the call token;
        images with a vision projector."""
        return Capabilities(
            thinking=self.supports_thinking,
            tools=self._call_token is not None,
            images=self._vision is not None,
            local=True,
        )

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

    def stepwise(self) -> AbstractContextManager[None]:
        """Compute a reply's next token only when its reader asks (see `ModelThread.stepwise`)."""
        return MODEL_THREAD.stepwise()

    # -- loading -------------------------------------------------------------------------------

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
            layers = self._n_gpu_layers if self._n_gpu_layers is not None else (-1 if gpu else 0)
            mparams = model_params(layers if gpu else 0)
            _log_tail.clear()
            mark = _LOG.count  # llama.cpp's first error after this says why a load failed
            model = llama_cpp.llama_model_load_from_file(str(self.path).encode(), mparams)
            if not model:
                reason = first_error(mark) or (_log_tail[-1] if _log_tail else "unknown error")
                raise ModelLoadError(
                    f"cannot load {self.path.name}: the file is truncated, corrupt or of an unsupported "
                    f"architecture ({reason}); {self.fix_hint}"
                )
            n_train = llama_cpp.llama_model_n_ctx_train(model)
            if n_train > 0:
                self._n_ctx = min(self._n_ctx, n_train)
            self._model = model
            self._offloaded = layers != 0 and bool(gpu)
            try:
                encoder = self._open_encoder(model)
            except ModelLoadError:
                self._free_model()
                raise
            self._rollback = encoder.reply_tail_depth(ROLLBACK_MAX) if self.recurrent else 0
            mark = _LOG.count
            ctx = self.new_context()
            if not ctx:
                self._free_model()
                reason = first_error(mark) or (_log_tail[-1] if _log_tail else "out of memory?")
                raise ModelLoadError(f"cannot create a {self._n_ctx}-token context for {self.path.name}: {reason}")
            self._ctx = ctx
            self._rollback = min(self._rollback, llama_cpp.llama_n_rs_seq(ctx))  # (0 where llama.cpp has none)
            vision = self._vision
            self._state = ContextState(
                ctx,
                n_batch=self.n_batch,
                recurrent=self.recurrent,
                rollback=self._rollback,
                media=vision.span if vision is not None else None,
            )
            if vision is not None:
                vision.use_gpu = self._offloaded
                encoder.media = self._picture_tokens
            self.family = "qwen3.5" if self._meta("general.architecture").startswith("qwen35") else "other"
            self._backend = llama_backend_name() if self._offloaded else "cpu"
            self.load_s = time.perf_counter() - t0
            return self.load_s

    def _open_encoder(self, model: object) -> PromptEncoder:
        """The vocabulary and the chat template of a loaded model (a template that does not compile fails here)."""
        import llama_cpp

        vocab = self._vocab = llama_cpp.llama_model_get_vocab(model)
        self.recurrent = bool(llama_cpp.llama_model_is_recurrent(model) or llama_cpp.llama_model_is_hybrid(model))
        bos, eos = llama_cpp.llama_vocab_bos(vocab), llama_cpp.llama_vocab_eos(vocab)
        piece = self._piece
        bos_text = piece(bos) if bos >= 0 else ""
        source = llama_cpp.llama_model_chat_template(model, None)
        template = self._template = ChatTemplate(
            source.decode("utf-8") if source else None, bos_token=bos_text, eos_token=piece(eos) if eos >= 0 else ""
        )
        self.supports_thinking = template.supports_thinking
        encoder = self._encoder = PromptEncoder(
            vocab,
            template,
            add_bos=bool(llama_cpp.llama_vocab_get_add_bos(vocab)),
            bos_text=bos_text,
            recurrent=self.recurrent,
        )
        self._call_token = None
        if template.supports_tools:
            # The grammar waits for the call's opening tag, so it must be one token of its own.
            opening = encoder.tokenize(CALL_OPEN)
            self._call_token = opening[0] if len(opening) == 1 else None
            closing = encoder.tokenize("</think>")
            self._think_end = closing[0] if len(closing) == 1 else None
        return encoder

    def _picture_tokens(self, ref: ImageRef) -> list[int]:
        """A picture's prompt tokens; the projector is loaded with the first (on the model thread)."""
        return MODEL_THREAD.call(self._open_picture, ref)

    def _open_picture(self, ref: ImageRef) -> list[int]:
        with self._lock:
            vision = self._vision
            if vision is None or self._model is None:
                raise EdgeAssistError("the model was closed")
            vision.open(self._model, self._ctx)
            return vision.tokens(ref)

    def _piece(self, token: int) -> str:
        import llama_cpp

        buf = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, 64, 0, True)
        return buf.raw[: max(n, 0)].decode("utf-8", "replace")

    def new_context(self) -> Any:
        """A new llama.cpp context on the loaded model with this engine's parameters (free it with llama_free).

        The engine's own context is made here too, so the bench's raw baseline runs under exactly
        the same context size, batch, threads and recurrent-state snapshots.
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

    def _free_model(self) -> None:
        import llama_cpp

        llama_cpp.llama_model_free(self._model)
        self._model = self._vocab = self._template = self._encoder = None

    def close(self) -> None:
        """Free the context and the model."""
        with self._lock:
            self._drop_draft()
            if self._ctx is None:
                return
            import llama_cpp

            if self._vision is not None:
                self._vision.close()
            llama_cpp.llama_free(self._ctx)
            self._ctx = self._state = None
            self._free_model()
            self._eog = self._fingerprint = None
        if self.state_files is not None:
            self.state_files.flush()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown may have unloaded llama_cpp
            pass

    # -- tokens and prompts ----------------------------------------------------------------------

    def _loaded_encoder(self) -> PromptEncoder:
        self.load()
        encoder = self._encoder
        if encoder is None:  # (closed by another thread meanwhile)
            raise EdgeAssistError("the model was closed")
        return encoder

    def tokenize(self, text: str, *, special: bool = False, add_bos: bool = False) -> list[int]:
        """Tokens for `text`; control-token strings in it stay plain text unless `special`.

        Only the prompt encoder passes `special=True`, and only for the chat template's own
        markup (see `engine.prompt`): message text never becomes control tokens.
        """
        return self._loaded_encoder().tokenize(text, special=special, add_bos=add_bos)

    def control_strings(self, text: str) -> tuple[str, ...]:
        """The control-token strings (`<|im_start|>`…) that special parsing would find in `text`."""
        return self._loaded_encoder().control_strings(text)

    def piece_bytes(self, token: int) -> bytes:
        """The raw bytes of one token (special tokens spelled out); may be part of a UTF-8 character."""
        return self._loaded_encoder().piece_bytes(token)

    def render(self, messages: Sequence[Message], think: bool) -> str:
        """The prompt text for `messages` under the model's own chat template."""
        return self.encode(messages, think).text

    def encode(self, messages: Sequence[Message], think: bool, tools: Sequence[ToolSpec] = ()) -> Prompt:
        """The prompt for `messages` (see `PromptEncoder.encode`); thinking and tools only where the model has them."""
        encoder = self._loaded_encoder()
        return encoder.encode(messages, think and self.supports_thinking, tools if self._call_token is not None else ())

    def count_tokens(self, messages: Sequence[Message], options: GenerationOptions) -> int:
        """Tokens the rendered prompt for `messages` takes."""
        return len(self.encode(messages, options.think, options.tools).tokens)

    def sampler(self, options: GenerationOptions) -> Any:
        """A native llama.cpp sampler chain for `options` (free it with llama_sampler_free)."""
        self.load()
        return sampler_chain(self._vocab, options, self.family, self.eog_tokens)

    def _tool_sampler(
        self, options: GenerationOptions, tools: Sequence[ToolSpec], thinking: bool
    ) -> GrammarSampler | _Plain:
        """The sampler of a reply with tools offered: a call, once begun, is held to the grammar of the offered tools.

        `auto` leaves the text free until the model writes the call's opening tag (after its
        thinking, when the reply opens with it); `required` holds the whole reply to a call
        (where the reply does not open with thinking: there it is `auto`); `none` forbids the
        opening tag. At most `tool_calls_left` calls follow each other.
        """
        assert self._call_token is not None
        banned = (self._call_token,) if options.tool_choice == "none" else ()
        chain = sampler_chain(self._vocab, options, self.family, self.eog_tokens, banned=banned)
        if banned:
            return _Plain(chain)
        grammar = call_grammar(tools, max_string_chars=TOOL_STRING_CHARS, max_calls=options.tool_calls_left)
        if options.tool_choice == "required" and not thinking:
            return GrammarSampler(self._vocab, chain, grammar)
        # A reply that opens with thinking may write the tag while it thinks: a call starts after it.
        arming = self._think_end if thinking and self._think_end is not None else None
        return GrammarSampler(
            self._vocab, chain, grammar, lazy_tokens=(self._call_token,), armed_by=(arming,) if arming else ()
        )

    # -- the stream ------------------------------------------------------------------------------

    def stream(
        self,
        messages: Sequence[Message],
        options: GenerationOptions,
        cancel: threading.Event | None = None,
    ) -> Iterator[Event]:
        """Yield Thinking/Text events as tokens arrive, then one Done with the stats.

        The model runs on the process's model thread (see `modelthread`), and the events arrive
        in the caller's thread, at most a couple of tokens behind. Leaving the loop early stops the
        reply at the next token and returns once the model is free.
        """
        stop = Cancel(cancel)
        return MODEL_THREAD.stream(lambda: self._locked_stream(messages, options, stop), stop)

    def prefill(
        self,
        messages: Sequence[Message],
        think: bool,
        cancel: threading.Event | None = None,
        *,
        state_path: Path | None = None,
        tools: Sequence[ToolSpec] = (),
        complete: bool = False,
    ) -> int:
        """Evaluate the start of a coming prompt ahead of time; return the tokens evaluated.

        The last of `messages` is a message still being written (the user's words so far, say); the
        prompt is cut where the rest of it would go (`PromptEncoder.cut`), so the context holds a
        prefix of the final prompt when those words stand, and the next `stream()` reuses it. With
        `complete`, the message is taken as finished (a guess: the speaker has paused) and the whole
        prompt of a reply to it is read but its last token, so that such a reply starts at its first
        token. A hybrid model's state cannot be rolled back: the state before each read ahead is kept
        (`ContextState.anchors`), so a guess that turns out wrong costs only what it read. A state
        kept at `state_path` (the conversation's) is started from, as `stream()` would.
        """
        return MODEL_THREAD.call(self._prefill, messages, think, cancel, state_path, tools, complete, stop=cancel)

    def _prefill(
        self,
        messages: Sequence[Message],
        think: bool,
        cancel: threading.Event | None,
        state_path: Path | None,
        tools: Sequence[ToolSpec],
        complete: bool,
    ) -> int:
        with self._lock:
            self._load()
            self._drop_draft()
            assert self._encoder is not None and self._state is not None
            tools = tools if self._call_token is not None else ()
            think = think and self.supports_thinking
            stops: list[int] = []  # where a hybrid model's state is kept on the way (anchors)
            cut = self._encoder.cut(messages, think, tools)
            if complete:
                encoded = self._encoder.encode(messages, think, tools)
                tokens = encoded.tokens[:-1]  # (the last is the reply's to read, for its logits)
                if len(encoded.tokens) >= self._n_ctx:
                    return 0  # (the reply will say so)
                # The end of the message (a longer one may follow: the next guess goes on from
                # here), and where the reply starts: its checkpoint, which the reply that finds
                # the prompt read makes its own (see `_stream`).
                stops = [len(cut) if tokens[: len(cut)] == cut else 0, encoded.split]
            else:
                tokens = cut
            state = self._state
            if not tokens or state.holds(tokens):
                return 0
            start = state.prepare(tokens, self._offers(tokens, 0, state_path, []))
            if start >= len(tokens):
                return 0
            self.reply_threads.begin(self._ctx, self._offloaded)
            if self.recurrent:
                state.save_anchor()  # (where this guess began: a wrong one goes back here)
                for stop in sorted(x for x in stops if start < x < len(tokens)):
                    if not state.decode(tokens[len(state.tokens) : stop], cancel):
                        return len(state.tokens) - start
                    state.save_anchor()
            state.decode(tokens[len(state.tokens) :], cancel)
            return len(state.tokens) - start

    def draft(
        self,
        messages: Sequence[Message],
        options: GenerationOptions,
        cancel: threading.Event | None = None,
        *,
        tokens: int = 16,
    ) -> int:
        """Begin the reply to `messages` ahead of time: read the prompt and write up to `tokens` tokens; return
        how many were written.

        The last message is a guess (the speaker has paused, and may have finished); the reply is
        kept as it stands, and the next `stream()` of exactly these messages and options goes on
        from it: its first events are these tokens, at once. Anything else the model is asked
        first drops it. `cancel` stops the drafting (what was written is kept). A reply that offers
        tools is not begun (its grammar belongs to the reply that runs).
        """
        return MODEL_THREAD.call(self._draft, messages, options, cancel, tokens, stop=cancel)

    def _draft(
        self, messages: Sequence[Message], options: GenerationOptions, cancel: threading.Event | None, tokens: int
    ) -> int:
        with self._lock:
            self._load()
            self._drop_draft()
            if options.tools and self._call_token is not None:
                return 0
            # The prompt first, as a guess (anchors at the message's end and at the reply's start:
            # a guess that turns out wrong costs only what follows its words).
            self._prefill(messages, options.think, cancel, options.state_path, (), complete=True)
            if cancel is not None and cancel.is_set():
                return 0
            stop = _Relay()
            reply = self._stream(messages, options, stop)
            events: list[Event] = []
            written = 0
            try:
                while written < tokens and not (cancel is not None and cancel.is_set()):
                    event = next(reply, None)
                    if event is None:
                        break
                    events.append(event)
                    if isinstance(event, Text | Thinking):
                        written += event.tokens
            except BaseException:
                reply.close()
                raise
            self._drafted = _Draft(list(messages), options, events, reply, stop, written, time.perf_counter())
            return written

    def _take_draft(self, messages: Sequence[Message], options: GenerationOptions) -> _Draft | None:
        """The reply begun for exactly these messages and options, taken; any other is dropped."""
        drafted, self._drafted = self._drafted, None
        if drafted is not None and drafted.messages == list(messages) and drafted.options == options:
            return drafted
        if drafted is not None:
            drafted.reply.close()
        return None

    def _drop_draft(self) -> None:
        """Forget a reply begun ahead (the model is about to be asked something else)."""
        drafted, self._drafted = self._drafted, None
        if drafted is not None:
            drafted.reply.close()

    # -- states kept on disk ---------------------------------------------------------------------

    def forget(self) -> None:
        """Drop every state this process holds (the context, the checkpoints), as a new process starts.

        The model stays loaded; the next reply starts from a state kept on disk, or from nothing.
        For the bench's resumed-chat turn and the tests.
        """
        MODEL_THREAD.call(self._forget)

    def _forget(self) -> None:
        with self._lock:
            self._drop_draft()
            if self._state is not None:
                self._state.reset()
                self._state.checkpoint = self._state.prefix = self._state.turn = None
                self._state.anchors = []
            self._kept_last = {}

    def fingerprint(self) -> dict[str, object]:
        """What a state kept on disk must have been saved under to be restored into this context."""
        if self._fingerprint is None:
            import llama_cpp

            source = self._template.source if self._template is not None else None
            self._fingerprint = {
                "model": model_identity(self.path),
                "n_ctx": self._n_ctx,
                "template": hashlib.sha256((source or "").encode()).hexdigest()[:32],
                "llama": llama_cpp.__version__,
                "context": [self._rollback, self.flash_attn, self._offloaded],
            }
        return self._fingerprint

    def _offers(self, prompt: list[int], system_end: int, state_path: Path | None, notes: list[str]) -> list[_Kept]:
        """The states on disk that could start `prompt`: the conversation's, and its system prompt's.

        A kept state saved under another fingerprint, or for a history that has changed since, is
        not offered: a line saying why goes to `notes`.
        """
        files = self.state_files
        if files is None:
            return []
        state = self._state
        assert state is not None
        offers: list[_Kept] = []
        if state_path is not None and files.owns(state_path):
            kept = self._kept(state_path, "this chat's", notes)
            if kept is not None:
                if state.reusable(kept.tokens, prompt) >= 0:
                    offers.append(kept)
                elif self.recurrent:
                    notes.append("this chat's saved model state no longer matches its history (changed since)")
        if system_end >= DISK_MARGIN:
            path = files.prompt_path(self.fingerprint(), prompt[:system_end])
            kept = self._kept(path, "the system prompt's", notes)
            if kept is not None and kept.tokens == prompt[:system_end]:
                offers.append(kept)
        return offers

    def _kept(self, path: Path, whose: str, notes: list[str]) -> _Kept | None:
        """The state kept at `path`, if it was saved under this context's fingerprint."""
        files = self.state_files
        assert files is not None
        try:
            header = files.header(path)
        except StateFileError as e:
            notes.append(f"{whose} saved model state is unusable ({e})")
            files.remove(path)
            return None
        if header is None:
            return None
        differs = fingerprint_difference(header.fingerprint, self.fingerprint())
        if differs is not None:
            notes.append(f"{whose} saved model state was made with {differs}")
            return None
        return _Kept(files, path, header.tokens, whose, notes)

    def _keep_system_prompt(self, head: list[int], cancel: threading.Event | None) -> bool:
        """Evaluate up to the end of a new system prompt (`head`) and keep its state; False if cancelled.

        The state is kept in memory for the next chat of this process, and on disk for the next
        process, where it is long enough to be worth reading (`DISK_MARGIN`).
        """
        state = self._state
        assert state is not None
        if not state.decode(head[len(state.tokens) :], cancel):
            return False
        kept = state.save_prefix()
        files = self.state_files
        if files is not None and len(head) >= DISK_MARGIN:
            path = files.prompt_path(self.fingerprint(), kept.tokens)
            if not path.exists():
                files.save(path, self.fingerprint(), kept.tokens, kept.data)
        return True

    def _keep(self, state_path: Path | None, cp: Checkpoint | None) -> None:
        """Hand the conversation's state to the writer (it writes it after the reply, on its own thread)."""
        files = self.state_files
        if files is None or state_path is None or cp is None or not files.owns(state_path):
            return
        if self._kept_last.get(state_path) is cp.data:
            return  # (the state it holds already: a reply regenerated from the same checkpoint)
        self._kept_last = {state_path: cp.data}
        files.save(state_path, self.fingerprint(), cp.tokens, cp.data)

    def _locked_stream(
        self, messages: Sequence[Message], options: GenerationOptions, cancel: threading.Event
    ) -> Iterator[Event]:
        with self._lock:
            self._load()
            drafted = self._take_draft(messages, options)
            try:
                if drafted is not None:  # begun ahead, for these very messages: go on from there
                    drafted.stop.follow(cancel)
                    yield from drafted.events
                    yield from _waited_out(drafted.reply, drafted.written, time.perf_counter() - drafted.at)
                    return
                yield from self._stream(messages, options, cancel)
            except (GeneratorExit, EdgeAssistError):
                raise
            except BaseException:
                # Ctrl+C can land between a decode and its bookkeeping: start clean next time.
                if self._state is not None:
                    self._state.reset()
                raise

    def _stream(
        self, messages: Sequence[Message], options: GenerationOptions, cancel: threading.Event | None
    ) -> Generator[Event, None, None]:
        import llama_cpp

        t0 = time.perf_counter()
        think = options.think and self.supports_thinking
        encoder, state = self._encoder, self._state
        assert encoder is not None and state is not None  # (loaded, under the lock)
        tools = options.tools if self._call_token is not None else ()
        encoded = encoder.encode(messages, think, tools)
        text, prompt, split, system_end = encoded.text, encoded.tokens, encoded.split, encoded.system_end
        stats = Stats(
            model=self.name,
            backend=self.backend,
            load_s=self.load_s,
            prompt_tokens=len(prompt),
            n_ctx=self._n_ctx,
        )
        vision = self._vision
        if vision is not None:
            vision.stats.encoded, vision.stats.encode_s = 0, 0.0
            stats.images = sum(len(m.get("images", ())) for m in messages)
            stats.image_tokens = sum(1 for t in prompt if t < 0)
        if len(prompt) >= self._n_ctx:
            raise ContextOverflowError(
                f"the prompt is {len(prompt)} tokens but the context window is {self._n_ctx}: "
                "shorten it or raise model.n_ctx"
            )
        notes: list[str] = []
        self.reply_threads.begin(self._ctx, self._offloaded)
        start = state.prepare(prompt, self._offers(prompt, system_end, options.state_path, notes))
        if notes and len(prompt) - start > len(prompt) // 2:  # (a refused state that cost nothing is not worth a word)
            for note in notes:
                yield Notice(f"{note}: reading the prompt again ({len(prompt) - start} tokens)")
        stats.reused_tokens = start
        stats.evaluated_tokens = len(prompt) - start
        if self.recurrent and start >= split:
            # The prompt was read ahead (voice, while the user spoke): the checkpoint is the anchor
            # kept where this reply starts, since no pass here will take one.
            anchor = state.anchor_at(prompt[:split])
            if anchor is not None:
                state.checkpoint = anchor
        if start < system_end <= split:
            if not self._keep_system_prompt(prompt[:system_end], cancel):
                stats.finish_reason = "cancelled"
                stats.prompt_eval_s = time.perf_counter() - t0
                stats.context_used = len(state.tokens)
                yield Done(stats)
                return
            start = system_end
        # A hybrid model's state is checkpointed where the reply starts, for the next turn. With
        # snapshots for the tokens after that point, the prompt is evaluated in one pass and the
        # checkpoint taken by rolling back, once the first token is out; else in two passes.
        checkpoint_at = split if self.recurrent and start < split else None
        if checkpoint_at is not None and len(prompt) - split > state.rollback:
            ok = state.decode(prompt[start:split], cancel)
            if ok:
                state.save_checkpoint()
                ok = state.decode(prompt[split:], cancel)
            checkpoint_at = None
        else:
            ok = state.decode(prompt[start:], cancel, last=len(prompt) - split + 1)
        stats.prompt_eval_s = time.perf_counter() - t0
        if vision is not None:
            stats.images_encoded, stats.image_encode_s = vision.stats.encoded, vision.stats.encode_s
        if not ok:
            stats.finish_reason = "cancelled"
            stats.context_used = len(state.tokens)
            yield Done(stats)
            return

        # Start inside a think block when the prompt opened one (Qwen 3.5 ends it with `<think>\n`).
        tail = text[-40:]
        splitter = ThinkSplitter(thinking=tail.rfind("<think>") > tail.rfind("</think>"))
        calls = CallSplitter(tools) if tools else None
        utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        vocab, ctx, held = self._vocab, self._ctx, state.tokens
        if tools:
            grammar = self._tool_sampler(options, tools, splitter.thinking)
            sample, release = partial(grammar.sample, ctx), grammar.free
        else:
            chain = self.sampler(options)
            sample = partial(llama_cpp.llama_sampler_sample, chain, ctx, -1)
            release = partial(llama_cpp.llama_sampler_free, chain)
        is_eog = llama_cpp.llama_vocab_is_eog
        one = (llama_cpp.llama_token * 1)()
        batch = llama_cpp.llama_batch_get_one(one, 1)
        piece_bytes = encoder.piece_bytes
        # Without tools the think splitter's events go out as they are (no extra step per token).
        feed = splitter.feed if calls is None else (lambda text: _answer(splitter.feed(text), calls))
        stats.finish_reason = "length"
        pending = 0  # tokens generated since the last event (to count into the next one)
        try:
            for _ in range(options.max_tokens):
                if cancel is not None and cancel.is_set():
                    stats.finish_reason = "cancelled"
                    break
                if len(held) >= self._n_ctx:
                    break
                token = sample()
                now = time.perf_counter() - t0
                if is_eog(vocab, token):
                    stats.finish_reason = "stop"
                    break
                stats.token_times.append(now)
                if stats.ttft_s is None:
                    stats.ttft_s = now
                piece = utf8.decode(piece_bytes(token))
                pending += 1
                if piece:
                    for event in feed(piece):
                        if isinstance(event, Text | Thinking):
                            if event.tokens != pending:  # (pieces come with 1: the usual case costs nothing)
                                event = dataclasses.replace(event, tokens=pending)
                            pending = 0
                        yield event
                if checkpoint_at is not None:
                    state.checkpoint_by_rollback(checkpoint_at)
                    checkpoint_at, held = None, state.tokens
                one[0] = token
                rc = self.reply_threads.decode(ctx, batch)
                if rc != 0:
                    state.reset()
                    raise EdgeAssistError(f"llama.cpp failed while generating (code {rc})")
                held.append(token)
        finally:
            if tools and isinstance(grammar, GrammarSampler):
                stats.grammar_tokens, stats.grammar_redraws = grammar.held, grammar.resampled
            release()
        state.fresh = True  # (the last decode was of the last token held)
        if checkpoint_at is not None:  # (the reply ended before its first decode)
            state.checkpoint_by_rollback(checkpoint_at)
        if self.recurrent and messages and messages[-1]["role"] == "user":
            cp = state.checkpoint
            state.turn = cp if cp is not None and cp.tokens == prompt[:split] else None
            state.anchors = []  # (the turn's reads ahead are behind it: its checkpoint holds more)
        if options.state_path is not None:
            # What the next turn resumes from: where this reply started (a hybrid model), else all of it.
            cp = state.checkpoint if self.recurrent else state.snapshot()
            if cp is not None and (not self.recurrent or cp.tokens == prompt[:split]):
                self._keep(options.state_path, cp)
        yield from _answer(splitter.feed(utf8.decode(b"", final=True)), calls)
        yield from _answer(splitter.flush(), calls)
        if calls is not None:
            yield from calls.flush()
        stats.generated_tokens = len(stats.token_times)
        stats.context_used = len(state.tokens)
        yield Done(stats)


class _Relay(threading.Event):
    """A reply's stop flag that, once the reply is adopted, also reads the adopting caller's (`follow`)."""

    def __init__(self) -> None:
        """Unset, following nothing."""
        super().__init__()
        self._outer: threading.Event | None = None

    def follow(self, outer: threading.Event) -> None:
        """From now on, read as set when `outer` is."""
        self._outer = outer

    def is_set(self) -> bool:
        """Whether this flag or the one it follows is set."""
        return super().is_set() or (self._outer is not None and self._outer.is_set())


@dataclass
class _Draft:
    """A reply begun ahead of its message (`LlamaEngine.draft`): what it was for, what it wrote, and the
    reply itself, suspended between two tokens."""

    messages: list[Message]
    options: GenerationOptions
    events: list[Event]
    reply: Generator[Event, None, None]
    stop: _Relay
    written: int
    """Tokens written ahead."""
    at: float
    """When it stopped to wait (perf_counter)."""


def _waited_out(reply: Iterator[Event], written: int, waited_s: float) -> Iterator[Event]:
    """The rest of a reply begun ahead, its token times without the `waited_s` it spent waiting to be taken
    over after its first `written` tokens (the speed shown is the model's, not the user's pause)."""
    for event in reply:
        if isinstance(event, Done):
            times = event.stats.token_times
            times[written:] = [t - waited_s for t in times[written:]]
        yield event


class _Plain:
    """A sampler chain with the grammar sampler's face (a reply that may not call a tool needs no grammar)."""

    def __init__(self, chain: Any) -> None:
        self.chain = chain

    def sample(self, ctx: Any) -> int:
        import llama_cpp

        return int(llama_cpp.llama_sampler_sample(self.chain, ctx, -1))

    def free(self) -> None:
        import llama_cpp

        llama_cpp.llama_sampler_free(self.chain)


def _answer(events: Iterable[Thinking | Text], calls: CallSplitter | None) -> Iterator[Event]:
    """The think splitter's events, with tool calls taken out of the answer when tools are offered."""
    for event in events:
        if calls is not None and isinstance(event, Text):
            yield from calls.feed(event.text)
        else:
            yield event


@dataclass
class _Kept:
    """A state kept on disk, offered to `ContextState.prepare`: read only when chosen."""

    files: StateFiles
    path: Path
    tokens: list[int]
    whose: str
    notes: list[str]

    def load(self) -> Checkpoint | None:
        """The state, read and checked whole; None (with a note, the file removed) when unusable."""
        try:
            header, data = self.files.read(self.path)
        except StateFileError as e:
            self.notes.append(f"{self.whose} saved model state is unusable ({e})")
            self.files.remove(self.path)
            return None
        if header.tokens != self.tokens:
            return None  # (replaced by another process since its header was read: passed over)
        return Checkpoint(header.tokens, data)

    def rejected(self) -> None:
        """llama.cpp refused the state: say so, and remove it."""
        self.notes.append(f"{self.whose} saved model state was refused by llama.cpp")
        self.files.remove(self.path)
