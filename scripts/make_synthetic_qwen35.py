#!/usr/bin/env python3
"""Write a random-weight Qwen 3.5 GGUF (the real `qwen35` architecture) for tests and the bench.

    python scripts/make_synthetic_qwen35.py --shape 0.8b --quant Q4_K_M
    python scripts/make_synthetic_qwen35.py --shape 0.8b --vision

The tokenizer and chat template are fetched from PyPI (llama-cpp-python's sdist) on first use
and cached in $EDGEASSIST_CACHE_DIR (default ~/.cache/edgeassist).

`--vision` also writes the model's vision projector (`<model>-mmproj-F16.gguf`, beside it); when
the model file is already there, only the projector is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeassist.errors import EdgeAssistError  # noqa: E402
from edgeassist.synthetic import (  # noqa: E402
    PUBLISHED_BYTES,
    PUBLISHED_PROJECTOR_BYTES,
    QUANTS,
    SHAPES,
    build,
    build_projector,
    default_path,
    expected_size,
    projector_path,
    projector_size,
)


def _embedding_length(path: Path) -> int | None:
    """The width an existing qwen35 file declares (None for any other file), to check it is the shape asked for."""
    import gguf

    try:
        field = gguf.GGUFReader(path).get_field("qwen35.embedding_length")
    except (OSError, ValueError):  # not a GGUF at all
        return None
    return int(field.contents()) if field is not None else None


def _write_model(args: argparse.Namespace, out: Path) -> None:
    model = build(
        args.shape, args.quant, out, seed=args.seed, n_threads=args.threads, progress=lambda m: print(m, flush=True)
    )
    expected = expected_size(args.shape, args.quant)
    print(f"wrote {model.path} ({model.size_bytes:,} bytes, expected {expected:,}) in {model.build_s:.1f} s")
    published = PUBLISHED_BYTES.get((args.shape, args.quant))
    if published:
        print(
            f"the published {args.shape} {args.quant} is {published:,} bytes ({model.size_bytes / published - 1:+.2%})"
        )


def _write_projector(args: argparse.Namespace, model: Path) -> None:
    path = build_projector(args.shape, projector_path(model), seed=args.seed, progress=lambda m: print(m, flush=True))
    size, expected = path.stat().st_size, projector_size(args.shape)
    print(f"wrote {path} ({size:,} bytes, expected {expected:,})")
    published = PUBLISHED_PROJECTOR_BYTES.get(args.shape)
    if published:
        print(f"the published {args.shape} mmproj F16 is about {published:,} bytes ({size / published - 1:+.2%})")


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, build the model (and its projector), print where they went and how big they are."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=list(SHAPES), default="tiny", help="model shape (default: tiny)")
    parser.add_argument("--quant", choices=QUANTS, default="Q4_K_M", type=str.upper, help="default: Q4_K_M")
    parser.add_argument("--out", type=Path, help="output file (default: models/synthetic-qwen3.5-<shape>-<quant>.gguf)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--threads", type=int, help="quantizer threads (default: physical cores)")
    parser.add_argument(
        "--vision",
        action="store_true",
        help="also write the vision projector beside the model (<model>-mmproj-F16.gguf); "
        "an existing model file is kept and only the projector is written",
    )
    args = parser.parse_args(argv)

    out = args.out or default_path(args.shape, args.quant, ROOT / "models")
    try:
        if args.vision and out.is_file():
            # The projector's output width must be the model's: a projector of another shape would not load.
            width, want = _embedding_length(out), SHAPES[args.shape].n_embd
            if width != want:
                why = f"{width} wide, not {want} like the {args.shape} shape" if width else "not a qwen35 model"
                hint = "pass its --shape, or another --out" if width else "pass another --out"
                print(f"error: {out} is {why}: {hint}", file=sys.stderr)
                return 2
            print(f"{out} is already there: writing only its vision projector", flush=True)
        else:
            _write_model(args, out)
        if args.vision:
            _write_projector(args, out)
    except EdgeAssistError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
