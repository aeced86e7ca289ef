"""Build the engine and generation options that the settings describe."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgeassist.config import GenerationSettings, Settings, section_with
from edgeassist.engine.base import ChatEngine, GenerationOptions
from edgeassist.engine.llama import LlamaEngine
from edgeassist.engine.statefile import StateFiles
from edgeassist.errors import VisionUnavailableError
from edgeassist.hub import ResolvedModel, resolve, vision_hint
from edgeassist.store import states_dir

if TYPE_CHECKING:
    from edgeassist.engine.remote import RemoteEngine, RemoteModel, ServerModel


@dataclass(frozen=True)
class OpenedModel:
    """An engine (not yet loaded) and where its model came from."""

    engine: ChatEngine
    """The engine; it loads on first use."""
    resolved: ResolvedModel | RemoteModel
    """The model file (or the server), its display name, quant, and the starter-fallback note if any."""


def open_engine(settings: Settings, *, explicit: bool = False) -> OpenedModel:
    """The engine the settings describe: a RemoteEngine when `model.endpoint` is set, else llama.cpp.

    The local model is resolved without touching the network. `explicit` says the user named the
    model on the command line: then a missing model is an error rather than a fallback to the
    offline starter.
    """
    if settings.model.endpoint:
        from edgeassist.engine.remote import RemoteModel

        remote = remote_engine(settings)
        return OpenedModel(remote, RemoteModel(remote))
    engine, resolved = _local(settings, explicit)
    return OpenedModel(engine, resolved)


def open_local_engine(settings: Settings, *, explicit: bool = False, keep_states: bool = True) -> LlamaEngine:
    """The llama.cpp engine for the configured model, whatever `model.endpoint` says (the bench's local runs).

    `keep_states=False` leaves the user's kept model states alone (the bench keeps its own).
    """
    return _local(settings, explicit, keep_states)[0]


def remote_engine(settings: Settings) -> RemoteEngine:
    """The RemoteEngine for `model.endpoint` (which must be set); nothing is sent until it loads."""
    from edgeassist.engine.remote import RemoteEngine

    m = settings.model
    assert m.endpoint is not None
    return RemoteEngine(
        m.endpoint,
        model=m.remote_model,
        api_key_env=m.api_key_env,
        n_ctx=m.n_ctx,
        connect_timeout_s=m.connect_timeout_s,
        stall_timeout_s=m.stall_timeout_s,
        thinking={"auto": None, "on": True, "off": False}[m.remote_thinking],
    )


def server_models(settings: Settings) -> list[ServerModel]:
    """The models the server at `model.endpoint` offers (its `/models`)."""
    engine = remote_engine(settings)
    try:
        return engine.server_models()
    finally:
        engine.close()


def _local(settings: Settings, explicit: bool, keep_states: bool = True) -> tuple[LlamaEngine, ResolvedModel]:
    """Resolve the configured model file and wrap it in a LlamaEngine."""
    resolved = resolve(
        settings.model.name,
        settings.models_dir(),
        fallback=settings.model.starter_fallback and not explicit,
    )
    m = settings.model
    if ":" in resolved.name and not resolved.is_starter:  # a catalog model: name the exact pull
        hint = f"delete it and re-run `edgeassist pull {resolved.name}`"
    else:
        hint = "check the file, or pull a model with `edgeassist pull qwen3.5-0.8b`"
    engine = LlamaEngine(
        resolved.path,
        name=resolved.name,
        n_ctx=m.n_ctx,
        n_threads=m.n_threads,
        n_gpu_layers=m.n_gpu_layers,
        n_batch=m.n_batch,
        flash_attn=m.flash_attn,
        fix_hint=hint,
        state_files=state_files(settings) if keep_states else None,
        adapt_threads=m.adapt_threads,
        projector=m.mmproj.expanduser() if m.mmproj is not None else resolved.projector,
        image_tokens=m.image_tokens,
    )
    return engine, resolved


def state_files(settings: Settings) -> StateFiles | None:
    """The folder of kept model states beside the history, under `store.state_cache_mb`; None when 0."""
    cap = settings.store.state_cache_mb << 20
    return StateFiles(states_dir(settings.store_path()), cap) if cap > 0 else None


def generation_options(settings: Settings, **overrides: object) -> GenerationOptions:
    """Generation options from the `[generation]` settings, with per-call overrides.

    Overrides of `[generation]` keys are checked as the settings are (a front end's `--max-tokens 0`
    is a ConfigError, not a reply of no tokens); None leaves a value as configured.
    """
    g = settings.generation
    checked = {k: v for k, v in overrides.items() if v is not None and k in GenerationSettings.model_fields}
    if checked:
        g = section_with(g, checked, "a command-line option")
    values: dict[str, object] = {
        "think": g.think,
        "max_tokens": g.max_tokens,
        "temperature": g.temperature,
        "top_p": g.top_p,
        "top_k": g.top_k,
        "min_p": g.min_p,
        "presence_penalty": g.presence_penalty,
        "repeat_penalty": g.repeat_penalty,
        "seed": g.seed,
        "tool_choice": settings.tools.choice,
    }
    values.update({k: v for k, v in overrides.items() if v is not None and k not in checked})  # e.g. ignore_eos
    return GenerationOptions(**values)  # type: ignore[arg-type]


def vision_refusal(engine: ChatEngine, resolved: object) -> VisionUnavailableError:
    """The one-line error for pictures sent to a model that cannot see: what to pull, or where a projector goes.

    `resolved` is what `open_engine` resolved the model to (a local file's `ResolvedModel`, or a server's).
    """
    if not engine.capabilities.local or not isinstance(resolved, ResolvedModel):
        return VisionUnavailableError(
            f"{engine.name} runs on a server: edgeassist sends pictures only to a model on this device"
        )
    return VisionUnavailableError(vision_hint(resolved))
