"""What a bench run records: typed dataclasses, written to and read from JSON without loss.

Raw samples (every token time of every repetition) are the record; the `summary` of each run,
the verdicts and the recommendation are derived from them (`edgeassist.bench.analysis`) and
stored alongside so that a JSON file can be read without this code. pydantic turns these classes
into JSON and back (`result_adapter`, used by `edgeassist.bench.store`) and generates their JSON
schema, `docs/bench-schema.json` (`edgeassist.bench.schema`); the field docstrings are its descriptions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Final, Literal, get_args

from pydantic import ConfigDict, TypeAdapter, with_config

from edgeassist.bench.stats import Percentiles, Spread
from edgeassist.engine.base import Stats
from edgeassist.system import SystemReport

SchemaVersion = Literal["edgeassist-bench/1", "edgeassist-bench/2"]
SCHEMA: Final[SchemaVersion] = "edgeassist-bench/2"
"""Schema name and version written into every result; bumped when a field changes meaning.

2 added remote runs (`ModelRun.endpoint`), whose `threads` and `file_bytes` are 0: code that reads
only 1 would take them for local models. Every field 2 added has a default, so 1 files still load.
"""
READABLE: Final[tuple[str, ...]] = get_args(SchemaVersion)
"""The schema versions this code reads."""

NO_RAW_REMOTE: Final = "a raw llama.cpp loop cannot run against a server: the model is not in this process"
"""Why a remote run has no raw baseline, as the report and the JSON say it."""
NO_RAW_FLAG: Final = "skipped with --no-raw"
"""Why a local run has no raw baseline when the user asked for none."""

RESULT_CONFIG = ConfigDict(
    use_attribute_docstrings=True,  # the docstring under each field is its description in the schema
    extra="forbid",  # a key the schema does not know is reported (`schema.validate`, `store.load_result`)
    json_schema_serialization_defaults_required=True,  # the schema describes written files: every key is there
)
"""pydantic settings for `BenchResult`; the dataclasses nested in it (here, `system`, `engine.build`) take them too."""


def _number(d: object, key: str) -> float | None:
    value = d.get(key) if isinstance(d, Mapping) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _count(d: object, key: str) -> int | None:
    value = _number(d, key)
    return None if value is None else int(value)


@dataclass
class ServerFigures:
    """What a server said about one reply (its `usage`, llama-server's `timings`): its own view, without the network."""

    prompt_tokens: int | None = None
    """Prompt tokens by the server's count (`usage.prompt_tokens`)."""
    completion_tokens: int | None = None
    """Generated tokens by the server's count (`usage.completion_tokens`)."""
    cached_tokens: int | None = None
    """Prompt tokens the server reused from its cache (`timings.cache_n`)."""
    evaluated_tokens: int | None = None
    """Prompt tokens the server evaluated (`timings.prompt_n`)."""
    prompt_ms: float | None = None
    """Milliseconds the server spent evaluating the prompt (`timings.prompt_ms`)."""
    decode_ms: float | None = None
    """Milliseconds the server spent generating (`timings.predicted_ms`)."""
    decoded_tokens: int | None = None
    """Tokens those milliseconds generated (`timings.predicted_n`)."""

    @classmethod
    def from_report(cls, server: Mapping[str, object]) -> ServerFigures | None:
        """The figures in an engine's `Stats.server`; None when the server sent none."""
        usage, timings = server.get("usage"), server.get("timings")
        figures = cls(
            prompt_tokens=_count(usage, "prompt_tokens"),
            completion_tokens=_count(usage, "completion_tokens"),
            cached_tokens=_count(timings, "cache_n"),
            evaluated_tokens=_count(timings, "prompt_n"),
            prompt_ms=_number(timings, "prompt_ms"),
            decode_ms=_number(timings, "predicted_ms"),
            decoded_tokens=_count(timings, "predicted_n"),
        )
        return None if figures == cls() else figures


@dataclass
class TurnSample:
    """One reply through `Conversation` and the engine: the figures the engine's `Done` stats carry."""

    prompt_tokens: int
    """Tokens in the rendered prompt."""
    reused_tokens: int
    """Prompt tokens whose state was reused from the previous turn."""
    evaluated_tokens: int
    """Prompt tokens evaluated for this reply."""
    prompt_eval_s: float
    """Seconds the engine spent on the prompt (rendering, tokenizing, evaluating, checkpointing)."""
    ttft_s: float | None
    """Engine time to the first generated token, from the engine's request start."""
    first_event_s: float | None
    """Wall time from `Conversation.send` to the first Text/Thinking event the front end receives."""
    token_times: list[float]
    """When each generated token was ready, seconds from the engine's request start (the engine's Stats).

    On a remote run: when each streamed chunk arrived at this machine (a chunk is a token on llama-server)."""
    generated_tokens: int
    """Tokens generated."""
    finish_reason: str
    """stop, length, cancelled or error."""
    server: ServerFigures | None = None
    """What the server reported about the reply (remote runs; null when it sent nothing, and locally)."""

    @classmethod
    def from_stats(cls, stats: Stats, first_event_s: float | None) -> TurnSample:
        """The sample for one reply's engine stats."""
        return cls(
            prompt_tokens=stats.prompt_tokens,
            reused_tokens=stats.reused_tokens,
            evaluated_tokens=stats.evaluated_tokens,
            prompt_eval_s=stats.prompt_eval_s,
            ttft_s=stats.ttft_s,
            first_event_s=first_event_s,
            token_times=list(stats.token_times),
            generated_tokens=stats.generated_tokens,
            finish_reason=stats.finish_reason,
            server=ServerFigures.from_report(stats.server),
        )


@dataclass
class ToolCallSample(TurnSample):
    """A forced tool call (`tool_choice="required"`, one call): a reply held to the call's grammar from its first token.

    `token_times` are the grammar-held tokens; `first_event_s` is null (a call's one event is `call_s`)."""

    grammar_tokens: int = 0
    """Tokens sampled while the grammar held the reply (the engine's count; with a call that ended, the
    end-of-generation token that closed it too)."""
    grammar_redraws: int = 0
    """Of those, tokens the grammar refused and that were drawn again with it applied to the whole vocabulary
    (the slow path); the rest took the fast path (the free token checked alone)."""
    call_s: float | None = None
    """Wall time from the request to the `ToolCall` event; null when the token limit cut the call before it ended."""

    @classmethod
    def from_call(cls, stats: Stats, call_s: float | None) -> ToolCallSample:
        """The sample for one forced call's engine stats."""
        return cls(
            **vars(TurnSample.from_stats(stats, None)),
            grammar_tokens=stats.grammar_tokens,
            grammar_redraws=stats.grammar_redraws,
            call_s=call_s,
        )


@dataclass
class ImageSample(TurnSample):
    """A reply in a conversation whose first message carries a picture (`--image`): the vision figures too."""

    images: int = 0
    """Pictures in the prompt."""
    image_tokens: int = 0
    """Prompt tokens the pictures take."""
    images_encoded: int = 0
    """Pictures the vision encoder read for this reply (0: each was in the reused state, or its embeddings kept)."""
    image_encode_s: float = 0.0
    """Seconds the vision encoder took for them (part of `prompt_eval_s`)."""
    picture_end: int = 0
    """Prompt tokens up to the end of the last picture: a reply that reused this many did not read it again."""

    @classmethod
    def from_picture(cls, stats: Stats, first_event_s: float | None, picture_end: int) -> ImageSample:
        """The sample for one reply's engine stats, with where the picture ends in its prompt."""
        return cls(
            **vars(TurnSample.from_stats(stats, first_event_s)),
            images=stats.images,
            image_tokens=stats.image_tokens,
            images_encoded=stats.images_encoded,
            image_encode_s=stats.image_encode_s,
            picture_end=picture_end,
        )

    @property
    def read_again(self) -> bool:
        """Whether this reply read a picture into the model again: the encoder ran, or the reuse stopped before it."""
        return self.images_encoded > 0 or self.reused_tokens < self.picture_end


@dataclass
class RawSample:
    """The baseline: llama.cpp's decode loop alone on the same model, context parameters and threads."""

    prompt_tokens: int
    """Tokens evaluated as the prompt (the same tokens as the edgeassist turn's prompt)."""
    prompt_eval_s: float
    """Seconds to evaluate the prompt (the raw time to first logits)."""
    token_times: list[float]
    """Seconds from the start: the first is the prompt's end, then one per single-token `llama_decode`."""


@dataclass
class Repetition:
    """One measured repetition: a first turn, its follow-up, and the raw baseline on the same prompt."""

    first: TurnSample
    """A new conversation's first turn: a prompt of about `prompt_tokens`, `gen_tokens` generated."""
    followup: TurnSample | None
    """A short second message in the same conversation (the prompt-reuse path)."""
    raw: RawSample | None
    """The raw llama.cpp decode loop on the first turn's prompt tokens."""
    peak_rss_bytes: int | None
    """Peak resident memory of the process during this repetition's edgeassist turns."""
    rss_anon_bytes: int | None = None
    """Resident anonymous memory after the turns: allocations (repacked weights, context, buffers)."""
    rss_file_bytes: int | None = None
    """Resident file-backed memory after the turns: mapped model pages (the kernel can drop them under pressure)."""
    third: TurnSample | None = None
    """A third message after the follow-up, in the same process (the baseline of `resumed`)."""
    resumed: TurnSample | None = None
    """The same third message again with nothing in memory, as a new process resuming the chat: the
    follow-up's model state restored from disk."""
    state_bytes: int | None = None
    """Size of the chat's kept state file the resumed turn started from."""
    tool_call: ToolCallSample | None = None
    """A forced tool call after the turns, where the model can call tools (null otherwise, and on remote runs):
    what holding a reply to the call's grammar costs per token."""
    image: ImageSample | None = None
    """`--image`, where the model can see: a new conversation whose first message is the first turn's text with
    the picture before it (a copy of its own each time, so the encoder reads it), `followup_tokens` generated."""
    image_followup: ImageSample | None = None
    """The follow-up message in that conversation: it should reuse the picture, not read it again."""


@dataclass
class Overheads:
    """Per-token cost of the work edgeassist adds around `llama_decode`, each timed alone."""

    sample_s: list[float]
    """Seconds per call of the engine's native sampler chain (the configured sampling settings)."""
    detokenize_s: list[float]
    """Seconds per token to turn it into text (token to piece, incremental UTF-8 decoding)."""


@dataclass
class Breakdown:
    """Where edgeassist's decode time above the raw loop goes, in milliseconds per token (medians)."""

    excess_ms: float
    """edgeassist p50 minus raw p50."""
    sample_ms: float
    """Sampling (native sampler chain on the last logits)."""
    detokenize_ms: float
    """Token to text."""
    dispatch_ms: float
    """The rest: the Python loop, think-splitting, events through Conversation to the front end (and noise)."""


@dataclass
class Jitter:
    """How unevenly the reply arrived: the spread of the gaps between tokens (remote: between streamed chunks)."""

    spread_ms: float
    """p90 minus p50 of the gaps, pooled over repetitions: how much later than a typical one a slow token comes."""
    stdev_ms: float
    """Standard deviation of the gaps (sample; 0 for a single gap)."""
    max_gap_ms: float
    """The longest gap: the worst stall a listener heard."""
    gaps: int
    """Gaps pooled."""
    tokens_per_chunk: float | None
    """Generated tokens (the server's count) per streamed chunk on a remote run: above 1, a gap spans several tokens."""


@dataclass
class ServerSummary:
    """A remote run's figures as the server reported them, and what the client saw beyond them (medians)."""

    prompt_s: Spread | None
    """The server's own prompt evaluation time (`timings.prompt_ms`), first turns."""
    prefill_tps: Spread | None
    """The server's prompt tokens evaluated per second."""
    decode_ms: Spread | None
    """The server's own milliseconds per generated token (`predicted_ms / predicted_n`), per repetition."""
    ttft_overhead_s: Spread | None
    """Client time to first token minus the server's prompt time: network, HTTP, queueing and the first token."""
    decode_overhead_ms: Spread | None
    """Client milliseconds per token (first to last chunk) minus the server's: what the network adds to each token."""
    reported: int
    """Replies (first turns) for which the server sent timings; 0 means it sent none (llama-cpp-python's server)."""


@dataclass
class Verdict:
    """Whether decoding meets the per-token target."""

    target_ms: float
    """The target in milliseconds per token."""
    p50_ms: float | None
    """Measured decode p50."""
    p90_ms: float | None
    """Measured decode p90."""
    meets_p50: bool
    """p50 is at or under the target."""
    meets_p90: bool
    """p90 is at or under the target."""
    status: Literal["meets", "p50-only", "misses", "unknown"]
    """meets: p50 and p90 under target; p50-only: typical tokens are fast enough, slow ones are not."""


@dataclass
class RunSummary:
    """The figures derived from one run's raw samples (medians over repetitions, percentiles over tokens)."""

    load_s: Spread | None
    """Model load time (file to ready context)."""
    prompt_tokens: int | None
    """Median prompt length of the first turns."""
    ttft_s: Spread | None
    """Engine time to first token of a new conversation's first turn."""
    first_event_s: Spread | None
    """Wall time from sending to the first event the front end receives."""
    prefill_tps: Spread | None
    """Prompt tokens evaluated per second in the first turn."""
    decode_ms: Percentiles | None
    """Milliseconds between generated tokens, pooled over every repetition (from the engine's token times)."""
    decode_tps: Spread | None
    """Generated tokens per second, per repetition."""
    followup_ttft_s: Spread | None
    """Time to first token of the follow-up turn."""
    followup_prompt_tokens: int | None
    """Median prompt length of the follow-up turn (the whole conversation)."""
    followup_evaluated_tokens: int | None
    """Median tokens the follow-up actually evaluated (its message and the previous reply)."""
    raw_ttft_s: Spread | None
    """Raw loop: prompt evaluation time."""
    raw_prefill_tps: Spread | None
    """Raw loop: prompt tokens per second."""
    raw_decode_ms: Percentiles | None
    """Raw loop: milliseconds per single-token decode, pooled."""
    raw_decode_tps: Spread | None
    """Raw loop: tokens per second, per repetition."""
    ratio: float | None
    """edgeassist decode p50 over raw decode p50: the per-token cost of everything edgeassist adds."""
    ratio_p10: float | None
    """The same ratio at the 10th percentiles: less sensitive to other processes on a busy machine."""
    ttft_ratio: float | None
    """edgeassist time to first token over the raw prompt evaluation time."""
    breakdown: Breakdown | None
    """Where the decode time above the raw loop goes."""
    peak_rss_bytes: int | None
    """Peak resident memory of the process while the model ran."""
    model_rss_bytes: int | None
    """Peak resident memory above what the process used before loading the model."""
    rss_anon_bytes: int | None
    """Median resident anonymous memory after the turns (allocations)."""
    rss_file_bytes: int | None
    """Median resident file-backed memory after the turns (mapped model pages)."""
    bandwidth_gbs: float | None
    """Model file bytes per decode p50, in GB/s: the memory bandwidth one token uses (an estimate)."""
    verdict: Verdict | None
    """Whether decoding meets the target."""
    jitter: Jitter | None = None
    """The spread of the gaps between tokens as the front end received them (remote: the network's and the server's)."""
    server: ServerSummary | None = None
    """A remote run's server-reported figures beside the client's (null for a local run)."""
    resumed_ttft_s: Spread | None = None
    """Time to first token of a resumed chat's turn: the state kept on disk restored, nothing in memory."""
    resumed_base_ttft_s: Spread | None = None
    """Time to first token of the same turn as an in-process follow-up (`third`)."""
    resumed_ratio: float | None = None
    """Resumed over in-process time to first token, for the same history (medians)."""
    resumed_evaluated_tokens: int | None = None
    """Median tokens the resumed turn evaluated (its message and the previous reply, as in-process)."""
    resumed_prompt_tokens: int | None = None
    """Median prompt length of the resumed turn."""
    state_bytes: int | None = None
    """Median size of the chat's kept state (the model state on disk)."""
    tool_decode_ms: Percentiles | None = None
    """Milliseconds between the tokens of the forced tool calls (the grammar holding every one), pooled."""
    tool_ratio: float | None = None
    """Tool call decode p50 over this run's free decode p50 (`decode_ms`): the grammar's per-token cost."""
    tool_redraw_share: float | None = None
    """Share of the calls' grammar-held tokens that the grammar refused and that were drawn again (the slow path)."""
    tool_tokens: int | None = None
    """Median grammar-held tokens per call."""
    tool_calls: int | None = None
    """Forced calls measured (one per repetition)."""
    tool_calls_complete: int | None = None
    """Of those, calls that ended (a `ToolCall` event) within their token limit."""
    images: int | None = None
    """Pictures in the image turn's message (`--image`; null without image turns)."""
    image_tokens: int | None = None
    """Median prompt tokens the picture takes."""
    image_prompt_tokens: int | None = None
    """Median prompt length of the image turn (the first turn's text, the picture and the markers around it)."""
    image_encode_s: Spread | None = None
    """Vision encoder time of the image turn (part of its prompt evaluation)."""
    image_prompt_eval_s: Spread | None = None
    """Prompt evaluation time of the image turn, the encoder included."""
    image_ttft_s: Spread | None = None
    """Time to first token of the image turn: a new conversation's first message with the picture."""
    image_ttft_ratio: float | None = None
    """Image turn over text-only first turn time to first token (medians): what the picture adds."""
    images_encoded: int | None = None
    """Pictures the encoder read, over every image turn (one each expected)."""
    image_followup_ttft_s: Spread | None = None
    """Time to first token of the text follow-up after the picture."""
    image_followup_prompt_tokens: int | None = None
    """Median prompt length of that follow-up (the whole conversation, the picture included)."""
    image_followup_evaluated_tokens: int | None = None
    """Median tokens that follow-up evaluated (the previous reply and its message)."""
    image_followup_read_again: bool | None = None
    """Whether any follow-up read the picture again (encoder run, or reuse stopped before the picture's end)."""


@dataclass
class ModelRun:
    """One model at one thread count: its setup, every raw sample, and the derived summary."""

    model: str
    """Model name as shown (`qwen3.5-0.8b:q4_k_m`, a file stem, `smollm2-135m`)."""
    path: str
    """The GGUF file (remote: the endpoint)."""
    file_bytes: int
    """Size of the GGUF file (0 on a remote run: unknown here)."""
    quant: str | None
    """Quantization (lowercase), when known."""
    synthetic: str | None
    """Shape name when this is a random-weight synthetic Qwen 3.5 (tiny, 0.8b, 2b), else null."""
    starter: bool
    """Whether this is the offline starter model."""
    threads: int
    """CPU threads for prompt and decode (0 on a remote run: the server's business)."""
    n_ctx: int
    """Context window of both the engine and the raw loop (remote: the server's where it says, else as configured)."""
    n_batch: int
    """Prompt batch size of both (0 on a remote run)."""
    backend: str
    """cpu, metal, cuda, ...; remote for a model on a server."""
    recurrent: bool
    """Hybrid or recurrent model (Qwen 3.5): prompt reuse goes through state checkpoints."""
    load_s: list[float] = field(default_factory=list)
    """Seconds per measured model load (after one warm-up load)."""
    rss_before_bytes: int | None = None
    """Resident memory of the process before the model was loaded."""
    load_peak_rss_bytes: int | None = None
    """Peak resident memory while loading the model (the loads above)."""
    peak_rss_source: Literal["run", "process", "unavailable"] = "unavailable"
    """run: peak measured within this run (Linux); process: the process's lifetime peak (other systems)."""
    repetitions: list[Repetition] = field(default_factory=list)
    """Measured repetitions (the warm-up is not kept)."""
    overheads: Overheads | None = None
    """Sampling and detokenizing costs timed alone."""
    complete: bool = False
    """False when the run was interrupted or failed part-way."""
    error: str | None = None
    """Why the run failed, if it did."""
    summary: RunSummary | None = None
    """Derived figures (recomputed from the samples above by `edgeassist.bench.analysis.summarize`)."""
    endpoint: str | None = None
    """The server's base URL when the model ran there (`--endpoint`); null for a local run. Never holds a key."""
    no_raw_reason: str | None = None
    """Why this run has no raw llama.cpp baseline, when it has none (a remote run; `--no-raw`)."""
    no_image_reason: str | None = None
    """With `--image`, why this run has no image turns: the model cannot see (what to pull, or where its projector
    goes), or it runs on a server; null when it has them, and without `--image`."""
    vision_load_s: float | None = None
    """With `--image`: seconds to the first picture's tokens after the model loaded, the vision projector loaded
    with them (what the first picture after start-up adds, beyond its encoding); null without."""

    @property
    def remote(self) -> bool:
        """Whether the model ran on a server (`endpoint`) rather than in this process."""
        return self.endpoint is not None


@dataclass
class BenchImage:
    """The picture of the image turns (`--image`)."""

    source: str
    """The file as given, or `generated` for the bench's own test picture."""
    format: str
    """JPEG, PNG or WEBP."""
    width: int
    """Width as displayed, in pixels (before the engine scales it to `model.image_tokens`)."""
    height: int
    """Height as displayed, in pixels."""
    file_bytes: int
    """Size of the file."""
    sha256: str
    """SHA-256 of the file (each turn reads a copy with a few bytes after the image's end, the same pixels)."""


@dataclass
class BenchConfig:
    """How the bench was run."""

    target_ms: float
    """Per-token decode target in milliseconds."""
    repetitions: int
    """Measured repetitions per run."""
    warmup: int
    """Warm-up repetitions per run, not kept."""
    prompt_tokens: int
    """Requested prompt length of the first turn."""
    gen_tokens: int
    """Tokens generated in the first turn (end-of-generation is suppressed so that all of them are)."""
    followup_tokens: int
    """Tokens generated in the follow-up turn."""
    followup_text: str
    """The follow-up message."""
    think: bool
    """Qwen 3.5 thinking mode of the requests."""
    sampling: dict[str, float]
    """Effective sampling settings of the edgeassist turns."""
    raw_baseline: bool
    """Whether the raw llama.cpp loop ran (on local runs: a remote run never has one, see `ModelRun.no_raw_reason`)."""
    ignore_eos: str
    """How end-of-generation was suppressed: `option` (GenerationOptions.ignore_eos; older files: `logit-bias`)."""
    image: BenchImage | None = None
    """The picture of the image turns (`--image`); null without."""


@dataclass
class VoiceStage:
    """One stage of the voice pipeline and its timings."""

    name: str
    """Stage name, as the voice pipeline reports it (transcribe, first_audio, ...)."""
    samples_s: list[float]
    """Seconds (a ratio for `_rtf` stages), one per turn."""
    summary: Spread | None
    """Median and spread of the samples."""


@dataclass
class VoiceResult:
    """Timings of the speech stages, from the voice pipeline's bench hook."""

    stages: list[VoiceStage]
    """Stages in pipeline order."""
    error: str | None = None
    """Why the voice stages were not measured, if they were not."""
    model: str | None = None
    """The model the voice turns ran on (the bench's first)."""
    threads: int | None = None
    """Its decode threads."""
    target_s: float | None = None
    """Target for `speech_end_to_first_audio_s`: first reply audio this soon after the end of speech."""


@dataclass
class ContentionRun:
    """One way of choosing threads (a fixed count, or adaptive) timed with or without the competing load."""

    busy: int
    """Competing busy processes while it ran (0: a quiet machine)."""
    threads: int | None
    """The fixed thread count; null for the adaptive engine (at most `ContentionResult.max_threads`)."""
    ttft_s: list[float] = field(default_factory=list)
    """Engine time to first token of each reply (a new conversation's first turn)."""
    decode_tps: list[float] = field(default_factory=list)
    """Generated tokens per second of each reply, first token to last."""
    threads_used: list[list[int]] = field(default_factory=list)
    """Adaptive: the thread count each token was decoded with, per reply (empty for a fixed count)."""
    start_threads: list[int] = field(default_factory=list)
    """The thread count each reply started (and evaluated its prompt) with."""


@dataclass
class ContentionSummary:
    """The figures `bench --contention` is run for (medians over replies)."""

    busy_best_fixed: int | None
    """The fixed thread count with the most tokens/s under the competing load."""
    busy_ratio: float | None
    """Adaptive tokens/s over the best fixed count's, under the load (the goal: at least 0.8)."""
    busy_ttft_ratio: float | None
    """Adaptive time to first token over the best fixed count's, under the load."""
    quiet_best_fixed: int | None
    """The fixed thread count with the most tokens/s on the quiet machine."""
    quiet_ratio: float | None
    """Adaptive tokens/s over the best fixed count's, quiet (the goal: no loss)."""
    quiet_ttft_ratio: float | None
    """Adaptive time to first token over the best fixed count's, quiet."""


@dataclass
class ContentionResult:
    """`edgeassist bench --contention`: fixed thread counts and the adaptive engine, loaded and quiet."""

    model: str
    """The model (one)."""
    max_threads: int
    """The most threads: the highest fixed count, and the adaptive engine's ceiling."""
    busy: int
    """Competing busy processes of the loaded half (each spins one core)."""
    free_cores_busy: int | None
    """Cores `edgeassist.cores.free_cores` saw free with the load running."""
    free_cores_quiet: int | None
    """Cores it saw free without it."""
    runs: list[ContentionRun] = field(default_factory=list)
    """Each fixed count and the adaptive engine, loaded then quiet."""
    summary: ContentionSummary | None = None
    """Derived from the runs (`edgeassist.bench.analysis.contention_summary`)."""


@dataclass
class Candidate:
    """A catalog model and what this machine is expected to do with it."""

    model: str
    """Catalog name and quant (`qwen3.5-2b:q4_k_m`)."""
    file_bytes: int
    """File size (published, or estimated from the parameter count)."""
    ram_gb: float
    """Estimated memory needed with the bench's context window."""
    predicted_p50_ms: float
    """Expected decode p50: file bytes over the measured bandwidth per token."""
    predicted_p90_ms: float
    """Expected decode p90: the p50 times the measured p90/p50 ratio."""
    fits_ram: bool
    """The estimated memory fits in the machine's RAM with headroom for the system."""
    meets_target: bool
    """Expected p90 at or under the target, and it fits."""


@dataclass
class Recommendation:
    """The largest catalog model expected to meet the target here: an estimate, not a measurement."""

    model: str | None
    """Catalog name and quant to use: the largest expected to meet the target at p90; null when none is."""
    model_p50: str | None
    """The largest expected to meet the target at p50 (typical tokens; slow ones may exceed it)."""
    basis_model: str
    """The measured run the estimate scales from (the largest model measured, at its fastest thread count)."""
    basis_threads: int
    """Threads of that run."""
    bandwidth_gbs: float
    """Measured bytes read per second of decoding (file bytes over decode p50)."""
    p90_over_p50: float
    """Measured tail ratio used for the p90 estimates."""
    ram_total_bytes: int | None
    """The machine's RAM."""
    target_ms: float
    """Per-token target."""
    candidates: list[Candidate]
    """Every catalog model and quant with its estimate, smallest first."""
    note: str
    """One line on how far to trust it."""


@with_config(RESULT_CONFIG)
@dataclass
class BenchResult:
    """One `edgeassist bench` invocation: machine, settings, every run's raw samples and the conclusions."""

    schema: SchemaVersion
    """Schema name and version (`edgeassist-bench/2`; files of 1 have no remote runs)."""
    edgeassist_version: str
    """edgeassist version."""
    created: str
    """When the bench started (ISO 8601, local time with offset)."""
    command: str
    """The command line."""
    complete: bool
    """False when interrupted (Ctrl+C) or when a run failed: the runs hold what was measured."""
    interrupted: bool
    """True when stopped by Ctrl+C."""
    config: BenchConfig
    """How it was run."""
    system: SystemReport
    """The machine."""
    runs: list[ModelRun] = field(default_factory=list)
    """One entry per model and thread count, in the order run."""
    voice: VoiceResult | None = None
    """Speech stage timings (`--voice`)."""
    recommendation: Recommendation | None = None
    """Which catalog model to use here (derived; an estimate)."""
    contention: ContentionResult | None = None
    """`--contention`: thread choice under a competing load (then `runs` is empty)."""


@cache
def result_adapter() -> TypeAdapter[BenchResult]:
    """pydantic's validator, serializer and JSON schema for `BenchResult` (built once, on first use)."""
    return TypeAdapter(BenchResult)
