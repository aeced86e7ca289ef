"""Running the bench: each model at each thread count, through the same Conversation and engine as the front ends.

One run (a model at a thread count) goes:

1. load the model once to warm the page cache, then `repetitions` timed loads;
2. `warmup` untimed repetitions (short), then `repetitions` measured ones, each:
   a new `Conversation` (the configured system prompt) whose first message makes a prompt of
   about `prompt_tokens` tokens and gets `gen_tokens` tokens back; a short follow-up message in
   the same conversation (the prompt-reuse path); then the raw llama.cpp loop on the same
   prompt tokens in a second context on the same model, interleaved so that drift in the
   machine's speed hits both sides alike; where the model can call tools
   (`capabilities.tools`), a forced call of a bench tool after them, whose tokens are all held to
   the call's grammar (`Repetition.tool_call`);
3. sampling and detokenizing timed alone, to show where edgeassist's extra time per token goes.

With a picture (`BenchPlan.image`, `--image`) and a model that can see (`capabilities.images`), the
vision projector is loaded once after the loads (`ModelRun.vision_load_s`), and each repetition
(warm-up included) ends with a new conversation whose first message is the first turn's text with
the picture, then the follow-up message in it (`Repetition.image`, `image_followup`): the encoder's
time and the picture's tokens beside the text-only first turn, and a follow-up that should reuse the
picture rather than read it again. Each image turn gets a copy of the picture of its own
(`picture.copy_of`): the engine keeps embeddings by content. A model that cannot see runs the text
figures alone, with the line that says how to give it its projector (`ModelRun.no_image_reason`).

A remote run (`BenchPlan.remote`: the server at `model.endpoint`, after the local runs) goes the
same way through the same `Conversation`, on the engine every front end gets for an endpoint:
warm-up, then first turn and follow-up per repetition. No load, memory, thread sweep or raw loop:
the model is not in this process (`NO_RAW_REMOTE`). The server is asked for its models before
anything else runs, so one that cannot be reached fails the bench at once.

Every figure of the edgeassist side comes from the engine's `Done` stats, the same the TUI shows.
Ctrl+C (KeyboardInterrupt, also from a progress callback) or the `cancel` event stops the bench
between tokens (remote: between chunks, or at once while the server is silent); what was measured
so far is returned, marked incomplete.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from pathlib import Path

from edgeassist import __version__
from edgeassist.bench.analysis import conclude, summarize
from edgeassist.bench.picture import copy_of
from edgeassist.bench.raw import Stopped, raw_context, raw_decode, time_overheads
from edgeassist.bench.results import (
    NO_RAW_FLAG,
    NO_RAW_REMOTE,
    SCHEMA,
    BenchConfig,
    BenchImage,
    BenchResult,
    ImageSample,
    ModelRun,
    Overheads,
    RawSample,
    Repetition,
    ToolCallSample,
    TurnSample,
)
from edgeassist.bench.voice import VoiceHook, VoiceTarget, run_voice_hook
from edgeassist.chat import Conversation, scratch_pictures
from edgeassist.config import Settings
from edgeassist.engine.base import (
    ChatEngine,
    Done,
    GenerationOptions,
    ImageRef,
    Message,
    Text,
    Thinking,
    ToolCall,
    ToolSpec,
)
from edgeassist.engine.factory import generation_options, open_engine, open_local_engine, vision_refusal
from edgeassist.engine.llama import LlamaEngine
from edgeassist.engine.statefile import StateFiles
from edgeassist.errors import EdgeAssistError
from edgeassist.hub import ResolvedModel
from edgeassist.images import Picture
from edgeassist.system import peak_rss_bytes, reset_peak_rss, rss_bytes, rss_split, system_report

FOLLOWUP_TEXT = "Thank you. Now say that again in one short sentence."
"""The follow-up message of every repetition."""
FOLLOWUP_TOKENS = 8
"""Tokens generated for the follow-up (its time to first token is what is measured)."""
THIRD_TEXT = "Good. And now once more, as briefly as you can, please."
"""The third message, sent in the same process and then again as a resumed chat (see `Repetition.resumed`)."""
STATES_CAP = 1 << 30
"""Disk the bench's kept states may take (each is removed once its resumed turn is measured)."""
WARMUP_TOKENS = 16
"""Most tokens generated in a warm-up repetition."""
TOOL_TEXT = "Take a note for me: the river was high after the rain, and the old bridge is closed for repairs."
"""The message of the forced tool call (short and the same every time: see `_Runner.tool_call`)."""
BENCH_TOOL = ToolSpec(
    "note",
    "Save a short note for the user.",
    {"type": "object", "properties": {"text": {"type": "string", "description": "The note."}}, "required": ["text"]},
)
"""The tool the forced call calls: one required string, bounded only by the engine's `TOOL_STRING_CHARS`."""
TOOL_TOKENS_FACTOR = 2
"""A forced call may take this many times the first turn's tokens: room for the call's markup and a note of up
to 256 characters, so that at the default 64 the call can end (random weights write about 80 to 95 tokens for one)."""
_FILLER = (
    "Please read these notes from the field trip and keep them in mind for my next question. "
    "The river was high after the spring rain, the old bridge was closed for repairs, and the "
    "group walked two extra miles along the northern bank to reach the station. Lunch was bread, "
    "cheese and apples under the oak trees near the mill, where a heron stood in the shallows. "
).split()


@dataclass(frozen=True)
class BenchTarget:
    """A model to bench, found on disk before anything is measured."""

    name: str
    """Name to show."""
    path: Path
    """The GGUF file."""
    quant: str | None = None
    """Quantization (lowercase), when known."""
    synthetic: str | None = None
    """Synthetic shape name, for a random-weight Qwen 3.5."""
    starter: bool = False
    """Whether this is the offline starter model."""


@dataclass(frozen=True)
class BenchPlan:
    """What to run: models, thread counts and the measurement sizes."""

    targets: list[BenchTarget]
    """Models, in order."""
    threads: list[int]
    """Thread counts; every model runs at each."""
    repetitions: int
    """Measured repetitions per run."""
    prompt_tokens: int
    """Prompt length of the first turn."""
    gen_tokens: int
    """Tokens generated in the first turn."""
    target_ms: float
    """Per-token decode target."""
    warmup: int = 1
    """Untimed warm-up repetitions per run."""
    raw_baseline: bool = True
    """Run the raw llama.cpp loop alongside."""
    command: str = "edgeassist bench"
    """The command line, recorded in the result."""
    voice: VoiceHook | None = None
    """Voice pipeline hook (`--voice`), run after the models."""
    remote: bool = False
    """Also time the model on the server at `model.endpoint`, after the local runs (`--endpoint`)."""
    image: Picture | None = None
    """The picture of the image turns (`--image`), read and checked before anything runs; None: text only."""
    image_source: str | None = None
    """How the picture was given: the file as typed, or `generated`; None: the picture's name."""


@dataclass(frozen=True)
class Progress:
    """Where the bench is, for a progress line."""

    run: int
    """Current run, from 1."""
    runs: int
    """Number of runs."""
    model: str
    """Model of the current run."""
    threads: int | None
    """Threads of the current run; None for the remote run."""
    step: str
    """What is being done now."""
    fraction: float
    """Share of the whole bench done, 0 to 1 (by steps, not time)."""


ProgressCallback = Callable[[Progress], None]


def fit_prompt(engine: ChatEngine, system: str | None, n_tokens: int, options: GenerationOptions) -> str:
    """A user message that makes the rendered prompt (system prompt and template included) at most `n_tokens` long.

    The longest such message of the filler text, found by bisection on its word count; when even
    one word overflows, the one word.
    """

    def message(words: int) -> str:
        return " ".join(_FILLER[i % len(_FILLER)] for i in range(max(1, words)))

    def count(words: int) -> int:
        msgs: list[Message] = []
        if system:
            msgs.append({"role": "system", "content": system})
        msgs.append({"role": "user", "content": message(words)})
        return engine.count_tokens(msgs, options)

    lo, hi = 1, max(2, n_tokens)
    if count(lo) >= n_tokens:
        return message(lo)
    while hi - lo > 1:  # count(lo) < n_tokens <= count(hi) or hi is the cap
        mid = (lo + hi) // 2
        if count(mid) <= n_tokens:
            lo = mid
        else:
            hi = mid
    return message(hi if count(hi) <= n_tokens else lo)


def _turn(
    convo: Conversation, text: str | None, options: GenerationOptions, cancel: threading.Event | None
) -> TurnSample:
    """Send `text` (None: answer the last message again) and drain the reply as a front end would.

    The sample comes from the reply's Done stats.
    """
    done, first = _drain(convo, text, options, cancel)
    sample = TurnSample.from_stats(done.stats, first)
    if done.stats.finish_reason == "cancelled":
        raise Stopped(sample)
    return sample


def _drain(
    convo: Conversation,
    text: str | None,
    options: GenerationOptions,
    cancel: threading.Event | None,
    images: tuple[Picture, ...] = (),
) -> tuple[Done, float | None]:
    """Send `text` with `images` (None: answer the last message again); the reply's Done and its first event's time."""
    t0 = time.perf_counter()
    first: float | None = None
    done: Done | None = None
    if text is None:
        events = convo.regenerate(cancel, options)
    else:
        events = convo.send(text, cancel, options, images=images)
    for event in events:
        if first is None and isinstance(event, Text | Thinking):
            first = time.perf_counter() - t0
        elif isinstance(event, Done):
            done = event
    if done is None:  # pragma: no cover - the engine always ends with Done
        raise EdgeAssistError("the engine ended a reply without its stats")
    return done, first


def _picture_end(tokens: list[int]) -> int:
    """Prompt tokens up to the end of the last picture in `tokens` (a picture's tokens are negative ids); 0 if none."""
    return next((len(tokens) - i for i, t in enumerate(reversed(tokens)) if t < 0), 0)


def _image_turn(
    engine: LlamaEngine,
    convo: Conversation,
    text: str,
    options: GenerationOptions,
    cancel: threading.Event | None,
    images: tuple[Picture, ...] = (),
) -> ImageSample:
    """Send `text` (with `images`) in a conversation with a picture; the sample has where the picture ends."""
    done, first = _drain(convo, text, options, cancel, images)
    if done.stats.finish_reason == "cancelled":
        raise Stopped
    # The prompt as this reply evaluated it: the conversation up to its message (pictures are cached: no compute).
    messages = convo.context()
    asked = max(i for i, m in enumerate(messages) if m["role"] == "user")
    prompt = engine.encode(messages[: asked + 1], options.think).tokens
    return ImageSample.from_picture(done.stats, first, _picture_end(prompt))


def _tool_turn(
    engine: ChatEngine, messages: list[Message], options: GenerationOptions, cancel: threading.Event | None
) -> ToolCallSample:
    """Stream one reply that must call a tool, as a front end would, and time it from the Done stats."""
    t0 = time.perf_counter()
    call_s: float | None = None
    done: Done | None = None
    for event in engine.stream(messages, options, cancel):
        if call_s is None and isinstance(event, ToolCall):
            call_s = time.perf_counter() - t0
        elif isinstance(event, Done):
            done = event
    if done is None:  # pragma: no cover - the engine always ends with Done
        raise EdgeAssistError("the engine ended a reply without its stats")
    sample = ToolCallSample.from_call(done.stats, call_s)
    if done.stats.finish_reason == "cancelled":
        raise Stopped(sample)
    return sample


class _Runner:
    """One bench invocation's state: the plan, the result being filled, progress."""

    def __init__(
        self,
        settings: Settings,
        plan: BenchPlan,
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
    ) -> None:
        self.settings = settings
        self.plan = plan
        self.progress = progress
        self.cancel = cancel or threading.Event()  # also set when Ctrl+C lands while the model thread works
        self.pairs = [(t, n) for t in plan.targets for n in plan.threads]
        self.steps_per_run = 1 + plan.warmup + plan.repetitions + 1
        self.runs = len(self.pairs) + (1 if plan.remote else 0)
        self.base_options = generation_options(settings)
        self._states: StateFiles | None = None
        self._sees = False  # the current run's model takes the plan's picture (its projector loaded)

    def say(self, index: int, target: BenchTarget, threads: int, step: int, what: str) -> None:
        self.report(index, target.name, threads, step, what)

    def report(self, index: int, model: str, threads: int | None, step: int, what: str) -> None:
        """Tell the progress callback where the bench is; raise Stopped once `cancel` is set."""
        if self.progress is not None:
            done = (index + step / self.steps_per_run) / max(1, self.runs)
            self.progress(Progress(index + 1, self.runs, model, threads, what, min(1.0, done)))
        if self.cancel.is_set():
            raise Stopped

    def options(self, max_tokens: int) -> GenerationOptions:
        return replace(self.base_options, max_tokens=max_tokens, ignore_eos=True)

    def config(self) -> BenchConfig:
        opts = self.base_options
        return BenchConfig(
            target_ms=self.plan.target_ms,
            repetitions=self.plan.repetitions,
            warmup=self.plan.warmup,
            prompt_tokens=self.plan.prompt_tokens,
            gen_tokens=self.plan.gen_tokens,
            followup_tokens=FOLLOWUP_TOKENS,
            followup_text=FOLLOWUP_TEXT,
            think=opts.think,
            sampling=opts.sampling(),
            raw_baseline=self.plan.raw_baseline,
            ignore_eos="option",
            image=self.image_config(),
        )

    def image_config(self) -> BenchImage | None:
        picture = self.plan.image
        if picture is None:
            return None
        return BenchImage(
            source=self.plan.image_source or picture.name,
            format=picture.format,
            width=picture.width,
            height=picture.height,
            file_bytes=len(picture.data),
            sha256=picture.sha256,
        )

    def open(self, target: BenchTarget, threads: int) -> LlamaEngine:
        """The engine exactly as the front ends open it, for this file and thread count."""
        model = self.settings.model.model_copy(
            # Fixed threads: the sweep and the raw loop compare like with like (`bench --contention` adapts).
            update={"name": str(target.path), "n_threads": threads, "starter_fallback": False, "adapt_threads": False}
        )
        engine = open_local_engine(self.settings.model_copy(update={"model": model}), explicit=True, keep_states=False)
        # The bench's states go to a folder of its own, which `run` makes and removes: none of the user's is
        # read or evicted. (An engine opened outside `run` keeps none, and has no resumed-chat turn.)
        engine.state_files = self._states
        return engine

    def measure(self, index: int, target: BenchTarget, threads: int, run: ModelRun) -> None:
        """Fill `run` with samples; stops (Stopped, KeyboardInterrupt) leave what was measured in it."""
        plan = self.plan
        say = self.say
        peak_ok = reset_peak_rss()
        run.rss_before_bytes = rss_bytes()
        engine = self.open(target, threads)
        try:
            say(index, target, threads, 0, "loading the model")
            engine.load()
            run.n_ctx, run.backend, run.recurrent = engine.n_ctx, engine.backend, engine.recurrent
            run.n_batch = min(engine.n_batch, engine.n_ctx)
            for i in range(plan.repetitions):
                say(index, target, threads, 0, f"load {i + 1}/{plan.repetitions}")
                engine.close()
                run.load_s.append(engine.load())
            run.load_peak_rss_bytes = load_peak = peak_rss_bytes()
            run.peak_rss_source = "run" if peak_ok else ("process" if load_peak is not None else "unavailable")
            self._sees = False
            if plan.image is not None:
                say(index, target, threads, 0, "loading the vision projector")
                self._sees = self.open_vision(engine, target, run)
            system = self.settings.generation.system_prompt
            for w in range(plan.warmup):
                say(index, target, threads, 1 + w, f"warm-up {w + 1}/{plan.warmup}")
                self.repetition(engine, system, f"Warm-up {w + 1}.", min(plan.gen_tokens, WARMUP_TOKENS), None, engine)
            for r in range(plan.repetitions):
                say(index, target, threads, 1 + plan.warmup + r, f"repetition {r + 1}/{plan.repetitions}")
                self.repetition(engine, system, f"Run {r + 1}.", plan.gen_tokens, run, engine)
            if plan.raw_baseline:
                say(index, target, threads, self.steps_per_run - 1, "timing sampling and detokenizing")
                # Any prompt gives logits to sample from; the sampler's cost does not depend on them much.
                prompt = engine.tokenize(engine.render([{"role": "user", "content": FOLLOWUP_TEXT}], False))
                run.overheads = engine.exclusive(
                    self._overheads, engine, prompt, self.options(plan.gen_tokens), cancel=self.cancel
                )
            run.complete = True
        finally:
            engine.close()

    def open_vision(self, engine: LlamaEngine, target: BenchTarget, run: ModelRun) -> bool:
        """Load the projector with a first picture's tokens (timed); False, with the reason in `run`, if it cannot see.

        A projector that does not load is the run's reason too: the text figures are still measured.
        """
        assert self.plan.image is not None
        if not engine.capabilities.images:
            resolved = ResolvedModel(target.path, target.name, target.quant, is_starter=target.starter, note=None)
            run.no_image_reason = str(vision_refusal(engine, resolved))
            return False
        # A copy no turn uses: the turns' own pictures are read (and cut into tokens) as they are timed.
        picture = copy_of(self.plan.image, "projector")
        ref = ImageRef(picture.sha256, scratch_pictures().add(picture))
        message: Message = {"role": "user", "content": FOLLOWUP_TEXT, "images": (ref,)}
        t0 = time.perf_counter()
        try:
            engine.count_tokens([message], self.options(1))
        except EdgeAssistError as e:
            run.no_image_reason = str(e)
            return False
        run.vision_load_s = time.perf_counter() - t0
        return True

    def connect(self) -> ChatEngine:
        """The engine for `model.endpoint`, asked for its models once: an unreachable server fails the bench now."""
        engine = open_engine(self.settings).engine
        try:
            engine.load()
        finally:
            engine.close()  # (the remote run connects again when its turn comes)
        return engine

    def measure_remote(self, index: int, engine: ChatEngine, run: ModelRun) -> None:
        """Fill the remote `run` with samples: the same turns as a local run, without loads, memory or raw loop."""
        plan = self.plan
        say = self.report
        try:
            say(index, run.model, None, 0, "connecting to the server")
            engine.load()
            run.model, run.n_ctx = engine.name, engine.n_ctx
            if plan.image is not None:
                run.no_image_reason = str(vision_refusal(engine, None))  # (pictures go only to a model on this device)
            system = self.settings.generation.system_prompt
            for w in range(plan.warmup):
                say(index, run.model, None, 1 + w, f"warm-up {w + 1}/{plan.warmup}")
                self.repetition(engine, system, f"Warm-up {w + 1}.", min(plan.gen_tokens, WARMUP_TOKENS), None, None)
            for r in range(plan.repetitions):
                say(index, run.model, None, 1 + plan.warmup + r, f"repetition {r + 1}/{plan.repetitions}")
                self.repetition(engine, system, f"Run {r + 1}.", plan.gen_tokens, run, None)
            run.complete = True
        finally:
            engine.close()

    def remote_run(self, engine: ChatEngine) -> ModelRun:
        """The record of the remote run, before anything is measured."""
        endpoint = self.settings.model.endpoint
        assert endpoint is not None  # (the plan asks for a remote run only with an endpoint)
        return ModelRun(
            model=engine.name,
            path=endpoint,
            file_bytes=0,
            quant=None,
            synthetic=None,
            starter=False,
            threads=0,
            n_ctx=engine.n_ctx,
            n_batch=0,
            backend=engine.backend,
            recurrent=False,
            endpoint=endpoint,
            no_raw_reason=NO_RAW_REMOTE,
        )

    def repetition(
        self,
        engine: ChatEngine,
        system: str,
        nonce: str,
        gen_tokens: int,
        run: ModelRun | None,
        local: LlamaEngine | None,
    ) -> None:
        """One first turn and its follow-up, kept in `run` unless warming up.

        `local` is the same engine as llama.cpp, for what only a model in this process has: the
        memory figures, the raw loop on the same prompt, the resumed chat and, where the model can
        call tools, a forced tool call. None on a remote run.
        """
        plan = self.plan
        # The nonce opens the system prompt, so no state from the previous repetition can be reused.
        sys_prompt = f"{nonce} {system}".strip()
        options = self.options(gen_tokens)
        user = fit_prompt(engine, sys_prompt, plan.prompt_tokens, options)
        messages: list[Message] = [{"role": "system", "content": sys_prompt}] if sys_prompt else []
        messages.append({"role": "user", "content": user})
        convo = Conversation(engine, system_prompt=sys_prompt, options=options)
        if local is not None:
            reset_peak_rss()
        # The turns run as every front end's do: this thread reads the events the engine hands over.
        first = _turn(convo, user, options, self.cancel)
        rep = Repetition(first=first, followup=None, raw=None, peak_rss_bytes=None)
        if run is not None:
            run.repetitions.append(rep)
        follow = self.options(min(FOLLOWUP_TOKENS, gen_tokens))
        kept = None
        if local is not None and run is not None and local.state_files is not None:
            kept = local.state_files.folder / f"chat-{secrets.token_hex(16)}.state"
        rep.followup = _turn(convo, FOLLOWUP_TEXT, replace(follow, state_path=kept), self.cancel)
        if local is None:
            return
        if kept is not None and local.state_files is not None:
            local.state_files.flush()  # (the state is written before anything else is timed)
        rep.peak_rss_bytes = peak_rss_bytes()
        rep.rss_anon_bytes, rep.rss_file_bytes = rss_split()
        if plan.raw_baseline:
            prompt = local.encode(messages, options.think).tokens  # the first turn's prompt tokens, as evaluated
            rep.raw = local.exclusive(self._raw, local, prompt, gen_tokens, cancel=self.cancel)
        if kept is not None and kept.exists():
            self.resume(local, convo, follow, kept, rep)
        if local.capabilities.tools:
            rep.tool_call = self.tool_call(local, system, TOOL_TOKENS_FACTOR * gen_tokens)
        if self._sees:
            self.image_turns(local, system, nonce, user, follow, rep)

    def image_turns(
        self, engine: LlamaEngine, system: str, nonce: str, user: str, options: GenerationOptions, rep: Repetition
    ) -> None:
        """The first turn's text with the picture before it, in a new conversation; then the follow-up message.

        The system prompt has a nonce of its own, so nothing of the text turns' state is reused; the
        picture is a copy of its own (`copy_of`), so the encoder reads it.
        """
        assert self.plan.image is not None
        sys_prompt = f"{nonce} With a picture. {system}".strip()
        convo = Conversation(engine, system_prompt=sys_prompt, options=options)
        picture = copy_of(self.plan.image, nonce)
        rep.image = _image_turn(engine, convo, user, options, self.cancel, (picture,))
        rep.image_followup = _image_turn(engine, convo, FOLLOWUP_TEXT, options, self.cancel)

    def tool_call(self, engine: LlamaEngine, system: str, max_tokens: int) -> ToolCallSample | None:
        """One forced call of `BENCH_TOOL` through `engine.stream`, the path every front end's calls take.

        The same sampling as the turns (thinking off, so that `required` holds the reply from its first
        token), at most one call, ended by the grammar rather than by `ignore_eos`. A fixed short message
        rather than the first turn's: the tools block the template adds (about 240 tokens on Qwen 3.5)
        makes the prompt another one either way, only the decode is timed, and the call's room in the
        context does not then depend on `-p`. None when even this prompt does not fit in the context.
        """
        opts = self.base_options
        sampling = opts.sampling(engine.family)  # (the turns' values, also when they think)
        options = replace(
            opts,
            temperature=sampling["temperature"],
            top_p=sampling["top_p"],
            top_k=round(sampling["top_k"]),
            min_p=sampling["min_p"],
            presence_penalty=sampling["presence_penalty"],
            repeat_penalty=sampling["repeat_penalty"],
            think=False,
            ignore_eos=False,
            max_tokens=max_tokens,
            tools=(BENCH_TOOL,),
            tool_choice="required",
            tool_calls_left=1,
        )
        messages: list[Message] = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": TOOL_TEXT})
        if engine.count_tokens(messages, options) >= engine.n_ctx - 1:
            return None
        return _tool_turn(engine, messages, options, self.cancel)

    def resume(
        self, engine: LlamaEngine, convo: Conversation, options: GenerationOptions, kept: Path, rep: Repetition
    ) -> None:
        """A third message in this process, then the same again resumed from the follow-up's state on disk.

        The two evaluate the same tokens (the follow-up's reply and the message): the difference
        is what restoring the kept state costs against having it in memory.
        """
        rep.state_bytes = kept.stat().st_size
        rep.third = _turn(convo, THIRD_TEXT, options, self.cancel)  # (no state_path: the file stays the follow-up's)
        engine.forget()
        try:
            rep.resumed = _turn(convo, None, replace(options, state_path=kept), self.cancel)
        finally:
            if engine.state_files is not None:
                engine.state_files.flush()
            kept.unlink(missing_ok=True)

    def measured(self, run: ModelRun, measure: Callable[[], None]) -> bool:
        """Run `measure` to fill `run`; False (the error kept in the run) when it failed. Stops pass through."""
        try:
            measure()
        except EdgeAssistError as e:
            run.error = str(e)
            return False
        finally:
            run.summary = summarize(run, self.plan.target_ms)
        return True

    # The raw loop runs where the engine decodes (`LlamaEngine.exclusive`: on its model thread).

    def _raw(self, engine: LlamaEngine, prompt: list[int], gen_tokens: int) -> RawSample:
        with raw_context(engine) as ctx:
            return raw_decode(engine, ctx, prompt, gen_tokens, self.cancel)

    def _overheads(self, engine: LlamaEngine, prompt: list[int], options: GenerationOptions) -> Overheads:
        with raw_context(engine) as ctx:
            raw_decode(engine, ctx, prompt, 1, self.cancel)
            return time_overheads(engine, ctx, options, options.max_tokens)

    def run(self, voice: VoiceHook | None) -> BenchResult:
        result = BenchResult(
            schema=SCHEMA,
            edgeassist_version=__version__,
            created=datetime.now().astimezone().isoformat(timespec="seconds"),
            command=self.plan.command,
            complete=False,
            interrupted=False,
            config=self.config(),
            system=system_report(),
        )
        failed = False
        remote = self.connect() if self.plan.remote else None
        folder = Path(tempfile.mkdtemp(prefix="edgeassist-bench-states-"))
        self._states = StateFiles(folder, STATES_CAP, create=False)
        try:
            for index, (target, threads) in enumerate(self.pairs):
                run = ModelRun(
                    model=target.name,
                    path=str(target.path),
                    file_bytes=target.path.stat().st_size,
                    quant=target.quant,
                    synthetic=target.synthetic,
                    starter=target.starter,
                    threads=threads,
                    n_ctx=self.settings.model.n_ctx,
                    n_batch=self.settings.model.n_batch,
                    backend="cpu",
                    recurrent=False,
                    no_raw_reason=None if self.plan.raw_baseline else NO_RAW_FLAG,
                )
                result.runs.append(run)
                failed = not self.measured(run, partial(self.measure, index, target, threads, run)) or failed
            if remote is not None:
                run = self.remote_run(remote)
                result.runs.append(run)
                failed = not self.measured(run, partial(self.measure_remote, len(self.pairs), remote, run)) or failed
            if voice is not None and self.pairs:
                target, threads = self.pairs[0]
                say = self.say
                say(len(self.pairs) - 1, target, threads, self.steps_per_run - 1, "voice turns")
                vt = VoiceTarget(target.name, target.path, threads, random_text=target.synthetic is not None)
                result.voice = run_voice_hook(voice, self.settings, vt)
            result.complete = not failed
        except (KeyboardInterrupt, Stopped):
            result.interrupted = True
        finally:
            self._states.flush()
            shutil.rmtree(folder, ignore_errors=True)
            self._states = None
            conclude(result)
        return result


def run_bench(
    settings: Settings,
    plan: BenchPlan,
    *,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> BenchResult:
    """Run `plan` and return every sample with the derived figures; interrupted runs return what was measured."""
    return _Runner(settings, plan, progress, cancel).run(plan.voice)
