"""Build the engine and generation options that the settings describe."""

from __future__ import annotations

from dataclasses import dataclass

from edgeassist.config import GenerationSettings, Settings, section_with
from edgeassist.engine.base import GenerationOptions
from edgeassist.engine.llama import LlamaEngine
from edgeassist.hub import ResolvedModel, resolve


@dataclass(frozen=True)
class OpenedModel:
    """An engine (not yet loaded) and where its model came from."""

    engine: LlamaEngine
    """The engine; it loads on first use."""
    resolved: ResolvedModel
    """The model file, its display name, and the starter-fallback note if any."""


def open_engine(settings: Settings, *, explicit: bool = False) -> OpenedModel:
    """Resolve the configured model (never over the network) and wrap it in a LlamaEngine.

    `explicit` says the user named the model on the command line: then a missing model is an
    error rather than a fallback to the offline starter.
    """
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
    )
    return OpenedModel(engine, resolved)


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
    }
    values.update({k: v for k, v in overrides.items() if v is not None and k not in checked})  # e.g. ignore_eos
    return GenerationOptions(**values)  # type: ignore[arg-type]
