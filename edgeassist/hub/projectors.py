"""Vision projectors: the `mmproj` GGUF that lets a model see images, and where it sits beside its model.

One naming rule for all of edgeassist (pulls, `resolve`, `models`, `rm`, the synthetic writer): a
model's projector is in the model's folder, named `<model file stem without its quant suffix>-mmproj-<PRECISION>.gguf`,
so `Qwen3.5-0.8B-Q4_K_M.gguf` has `Qwen3.5-0.8B-mmproj-F16.gguf`, and every quant of a model shares one projector.
The part before `-mmproj-` must be the whole base name: `Qwen3.5-0.8B-mmproj-F16.gguf` is not the projector of
`Qwen3.5-0.8B-Instruct-Q4_K_M.gguf` (that one's would be `Qwen3.5-0.8B-Instruct-mmproj-F16.gguf`). Names are compared
ignoring case, as the file systems of macOS and Windows do.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from edgeassist.hub.catalog import _QUANT_PATTERN, PROJECTOR_PRECISIONS

_QUANT_SUFFIX = re.compile(rf"[-_.](?:{_QUANT_PATTERN})$", re.IGNORECASE)
_PROJECTOR_WORD = re.compile(r"(?:^|[-_.])mmproj(?:[-_.]|$)", re.IGNORECASE)
_MARK = "-mmproj-"


def _model_base(model_file: str) -> str:
    """A model file's stem without its quant suffix: `Qwen3.5-0.8B-Q4_K_M.gguf` -> `Qwen3.5-0.8B`."""
    return _QUANT_SUFFIX.sub("", Path(model_file).stem)


def _is_projector_file(name: str) -> bool:
    """Whether a GGUF file name is a vision projector rather than a model: it has `mmproj` as a word."""
    return _PROJECTOR_WORD.search(Path(name).stem) is not None


def projector_name(model_file: str, precision: str = PROJECTOR_PRECISIONS[0]) -> str:
    """A model's vision projector's file name: `Qwen3.5-0.8B-Q4_K_M.gguf`, `F16` -> `Qwen3.5-0.8B-mmproj-F16.gguf`."""
    return f"{_model_base(model_file)}{_MARK}{precision.upper()}.gguf"


def _projectors_beside(model_path: Path) -> list[Path]:
    """Every projector of `model_path` in its folder by the naming rule, the preferred first.

    F16, then BF16, then F32, then any other `-mmproj-*.gguf` of the model; ties by name, so the
    order never depends on the folder's. A link to a projector elsewhere counts (as for models).
    """
    folder = model_path.parent
    prefix = (_model_base(model_path.name) + _MARK).lower()
    try:
        names = os.listdir(folder)
    except OSError:  # no folder, or not one we may read: no projector
        return []
    found: list[tuple[int, str]] = []
    for name in names:
        lower = name.lower()
        if not lower.startswith(prefix) or not lower.endswith(".gguf") or len(lower) <= len(prefix) + len(".gguf"):
            continue
        if name.startswith(".") or not (folder / name).is_file():
            continue
        precision = name[len(prefix) : -len(".gguf")].upper()
        rank = PROJECTOR_PRECISIONS.index(precision) if precision in PROJECTOR_PRECISIONS else len(PROJECTOR_PRECISIONS)
        found.append((rank, name))
    return [folder / name for _, name in sorted(found)]


def projector_for(model_path: Path) -> Path | None:
    """The vision projector beside a model file (see the module's naming rule), or None: prefers F16, BF16, F32."""
    found = _projectors_beside(model_path)
    return found[0] if found else None


__all__ = ["projector_for", "projector_name"]
