"""`edgeassist pull`, `edgeassist models` and `edgeassist rm`: getting, listing and deleting GGUFs."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from edgeassist.config import Settings
from edgeassist.errors import EdgeAssistError, UsageError
from edgeassist.units import format_bytes

if TYPE_CHECKING:
    from edgeassist.hub import ModelRow


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Add the `pull`, `models` and `rm` subcommands."""
    p = sub.add_parser(
        "pull",
        parents=[common],
        help="download a model from the Hugging Face hub",
        description="Download a catalog model (qwen3.5-2b, qwen3.5-2b:q8_0) or any GGUF on the hub "
        "(owner/repo/file.gguf) into the models folder. An interrupted pull resumes where it stopped; "
        "the file is checked against the hub's size and sha256 before it is used. With --vision, also the "
        "model's vision projector (so it can see images), saved beside it as <model>-mmproj-F16.gguf.",
    )
    p.add_argument("name", nargs="?", help="model to pull (default: the configured model)")
    p.add_argument("--quant", help="quantization for a catalog name, e.g. q8_0")
    p.add_argument(
        "--vision",
        action="store_true",
        help="also pull the model's vision projector (mmproj); a model already there is not fetched again. "
        "For owner/repo/file.gguf: the repo's mmproj-<PRECISION>.gguf beside the file",
    )
    p.add_argument(
        "--vision-precision",
        metavar="PRECISION",
        # Checked by the hub's pull_projector (one line naming the known ones): no hub import to build the parser.
        help="the vision projector's precision: F16 (default), BF16 or F32; implies --vision",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or status lines")
    p.set_defaults(handler=run_pull)

    p = sub.add_parser(
        "models",
        parents=[common],
        help="list catalog models, local GGUFs, the starter model and speech models",
        description="List the catalog's models with size, estimated RAM, whether they are on disk and whether "
        "they can see images (VISION: their vision projector is beside them), "
        "plus other GGUF files in the models folder, the offline starter model, and the whisper models "
        "and piper voices pulled or installed from PyPI. With --endpoint URL: the models that server offers "
        "(its /v1/models) instead.",
    )
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(handler=run_models)

    p = sub.add_parser(
        "rm",
        parents=[common],
        help="delete a downloaded model",
        description="Delete a model file from the models folder, with its vision projector (unless another quant "
        "of the model beside it still uses it) and any half-finished download of either, "
        "or a pulled whisper model or piper voice (whisper:NAME, voice:NAME).",
    )
    p.add_argument(
        "name",
        help="model to delete (catalog name, file name in the models folder, whisper:NAME, voice:NAME); "
        "nothing outside the models folder is ever deleted, and a link there is removed itself, not its target",
    )
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(handler=run_rm)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def pull_name(name: str, quant: str | None) -> str:
    """Combine a NAME argument with `--quant`; a conflict or a quant on a non-catalog name is a usage error."""
    from edgeassist.hub import parse_model_name

    if quant is None:
        return name
    base, _, given = name.partition(":")
    if given and given.lower() != quant.lower():
        raise UsageError(f"conflicting quants: {name} and --quant {quant}")
    if parse_model_name(base) is None:
        raise UsageError(f"--quant only applies to catalog names (see `edgeassist models`), not {name}")
    return f"{base}:{quant.lower()}"


def run_pull(args: argparse.Namespace, settings: Settings) -> int:
    """Download the model and print its path on stdout (status on stderr)."""
    from edgeassist.hub import PROJECTOR_PRECISIONS, pull, pull_projector
    from edgeassist.speech.models import is_speech_spec

    vision = args.vision or args.vision_precision is not None
    if args.name and is_speech_spec(args.name):
        if vision:
            raise UsageError(f"--vision is for GGUF models, not {args.name}")
        # Speech models (whisper:tiny.en, voice:en_US-lessac-medium) come through the same hub.
        from edgeassist.speech.models import pull_speech_model

        model = pull_speech_model(
            args.name,
            settings.models_dir(),
            endpoint=settings.hub.endpoint,
            offline=settings.hub.offline,
            progress=not args.quiet,
            echo=None if args.quiet else _stderr,
        )
        print(model.path)
        return 0
    name = pull_name(args.name or settings.model.name, args.quant)
    path = pull(
        name,
        settings.models_dir(),
        endpoint=settings.hub.endpoint,
        offline=settings.hub.offline,
        progress=not args.quiet,
        echo=None if args.quiet else _stderr,
    )
    print(path, flush=True)
    if vision:
        projector = pull_projector(
            name,
            settings.models_dir(),
            precision=args.vision_precision or PROJECTOR_PRECISIONS[0],
            endpoint=settings.hub.endpoint,
            offline=settings.hub.offline,
            progress=not args.quiet,
            echo=None if args.quiet else _stderr,
        )
        print(projector)
    return 0


def _mark(ok: bool) -> str:
    if not ok:
        return ""
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "✓".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return "yes"
    return "✓"


def run_server_models(args: argparse.Namespace, settings: Settings) -> int:
    """Print the models the server at `model.endpoint` offers (or JSON)."""
    from edgeassist.engine.factory import server_models
    from edgeassist.engine.remote import plain_http_warning

    endpoint = settings.model.endpoint
    assert endpoint is not None
    warning = plain_http_warning(endpoint)
    if warning:
        _stderr(f"edgeassist: {warning}")
    models = server_models(settings)
    chosen = settings.model.remote_model or (models[0].id if len(models) == 1 else None)
    if args.json:
        data = [
            {"name": m.id, "owned_by": m.owned_by, "n_ctx": m.max_model_len, "default": m.id == chosen} for m in models
        ]
        print(json.dumps({"endpoint": endpoint, "models": data}, indent=2))
        return 0
    table = [("NAME", "OWNED BY", "CONTEXT", "")]
    for m in models:
        context = "" if m.max_model_len is None else str(m.max_model_len)
        table.append((m.id, m.owned_by or "", context, "default" if m.id == chosen else ""))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print(f"\nserver: {endpoint}")
    if chosen is None and models:
        print("choose one with --remote-model NAME (or model.remote_model)")
    return 0


def run_models(args: argparse.Namespace, settings: Settings) -> int:
    """Print the model table (or JSON); with an endpoint, the server's models."""
    if settings.model.endpoint:
        return run_server_models(args, settings)
    from edgeassist.hub import list_models, parse_model_name, resolve

    models_dir = settings.models_dir()
    rows = list_models(models_dir, n_ctx=settings.model.n_ctx)
    parsed = parse_model_name(settings.model.name)
    default_name = f"{parsed[0].name}:{parsed[1].quant.lower()}" if parsed else settings.model.name.strip()
    try:
        default_path = resolve(settings.model.name, models_dir, fallback=False).path
    except EdgeAssistError:  # the default may be a typo or not pulled yet: still list everything
        default_path = None

    def is_default(row: ModelRow) -> bool:
        return row.name == default_name or (default_path is not None and row.path == default_path)

    from edgeassist.speech.models import disk_bytes, list_speech_models

    speech = list_speech_models(models_dir)
    in_use = {("whisper", settings.speech.whisper_model), ("voice", settings.speech.voice)}
    if args.json:
        data = [
            {
                "name": r.name,
                "quant": r.quant,
                "kind": r.kind,
                "size_bytes": r.size_bytes,
                "size_is_exact": r.size_is_exact,
                "ram_gb": None if r.ram_gb is None else round(r.ram_gb, 2),
                "on_disk": r.on_disk,
                "partial_bytes": r.partial_bytes,
                "path": None if r.path is None else str(r.path),
                "repo": r.repo,
                "default": is_default(r),
                "vision": r.can_see,
                "projector": None if r.projector is None else str(r.projector),
                "vision_pullable": not r.can_see and r.projector_bytes is not None,
            }
            for r in rows
        ]
        speech_data = [
            {
                "kind": m.kind,
                "name": m.name,
                "source": m.source,
                "size_bytes": disk_bytes(m.path),
                "path": str(m.path),
                "default": (m.kind, m.name) in in_use,
            }
            for m in speech
        ]
        print(json.dumps({"models_dir": str(models_dir), "models": data, "speech": speech_data}, indent=2))
        return 0

    table = [("NAME", "QUANT", "SIZE", "RAM", "ON DISK", "VISION", "")]
    for r in rows:
        size = "" if r.size_bytes is None else ("" if r.size_is_exact else "~") + format_bytes(r.size_bytes)
        ram = "" if r.ram_gb is None else f"~{r.ram_gb:.1f} GB"
        notes = []
        if is_default(r):
            notes.append("default")
        if r.kind == "starter":
            notes.append("starter (offline fallback)")
        elif r.kind == "local":
            notes.append("local file")
        if r.partial_bytes and r.size_bytes:
            notes.append(f"partial {100 * r.partial_bytes / r.size_bytes:.0f}%: pull again to resume")
        table.append((r.name, (r.quant or "").upper(), size, ram, _mark(r.on_disk), _vision(r), ", ".join(notes)))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    if speech:
        print()
        speech_table: list[tuple[str, ...]] = [("SPEECH", "NAME", "SIZE", "")]
        for m in speech:
            notes = ["default"] if (m.kind, m.name) in in_use else []
            notes.append("pulled" if m.source == "pulled" else "from PyPI (offline fallback)")
            speech_table.append((m.kind, m.name, format_bytes(disk_bytes(m.path)), ", ".join(notes)))
        widths = [max(len(line[i]) for line in speech_table) for i in range(len(speech_table[0]))]
        for line in speech_table:
            print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
    print(f"\nmodels folder: {models_dir}")
    print("sizes with ~ and all RAM figures are estimates; get a model with `edgeassist pull NAME`")
    if any(not r.can_see and r.projector_bytes is not None for r in rows):
        print("VISION: whether it can see images; `edgeassist pull NAME --vision` adds the vision projector")
    return 0


def _vision(row: ModelRow) -> str:
    """The VISION cell: yes with its projector, how to get one for a catalog model, else no."""
    if row.can_see:
        return "yes"
    return "pull --vision" if row.projector_bytes is not None else "no"


def run_rm(args: argparse.Namespace, settings: Settings) -> int:
    """Delete a model (asking first on a terminal unless --yes)."""
    from edgeassist.hub import files_to_remove, remove
    from edgeassist.speech.models import disk_bytes, is_speech_spec, remove_speech_model, speech_files_to_remove

    models_dir = settings.models_dir()
    speech = is_speech_spec(args.name)
    files = speech_files_to_remove(args.name, models_dir) if speech else files_to_remove(args.name, models_dir)
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError(f"not deleting {args.name} without confirmation: pass --yes (stdin is not a terminal)")
        for f in files:
            if f.is_symlink():  # say so: only the link goes, what it points to stays
                print(f"  {f} (a link to {f.resolve()}: only the link is deleted)")
                continue
            size = format_bytes(disk_bytes(f)) if f.exists() else "?"
            print(f"  {f} ({size})")
        try:
            answer = input(f"Delete {'these files' if len(files) > 1 else 'this file'}? [y/N] ")
        except EOFError:
            print()
            answer = ""
        if answer.strip().lower() not in {"y", "yes"}:
            _stderr("edgeassist: nothing deleted")
            return 1
    for path in remove_speech_model(args.name, models_dir) if speech else remove(args.name, models_dir):
        print(f"deleted {path}")
    return 0
