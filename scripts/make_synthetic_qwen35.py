#!/usr/bin/env python3
"""Write a random-weight Qwen 3.5 GGUF (the real `qwen35` architecture) for tests and the bench.

    python scripts/make_synthetic_qwen35.py --shape 0.8b --quant Q4_K_M

The tokenizer and chat template are fetched from PyPI (llama-cpp-python's sdist) on first use
and cached in $EDGEASSIST_CACHE_DIR (default ~/.cache/edgeassist).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeassist.errors import EdgeAssistError  # noqa: E402
from edgeassist.synthetic import PUBLISHED_BYTES, QUANTS, SHAPES, build, default_path, expected_size  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, build the model, print where it went and how big it is."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=list(SHAPES), default="tiny", help="model shape (default: tiny)")
    parser.add_argument("--quant", choices=QUANTS, default="Q4_K_M", type=str.upper, help="default: Q4_K_M")
    parser.add_argument("--out", type=Path, help="output file (default: models/synthetic-qwen3.5-<shape>-<quant>.gguf)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--threads", type=int, help="quantizer threads (default: physical cores)")
    args = parser.parse_args(argv)

    out = args.out or default_path(args.shape, args.quant, ROOT / "models")
    try:
        model = build(
            args.shape, args.quant, out, seed=args.seed, n_threads=args.threads, progress=lambda m: print(m, flush=True)
        )
    except EdgeAssistError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    expected = expected_size(args.shape, args.quant)
    print(f"wrote {model.path} ({model.size_bytes:,} bytes, expected {expected:,}) in {model.build_s:.1f} s")
    published = PUBLISHED_BYTES.get((args.shape, args.quant))
    if published:
        print(
            f"the published {args.shape} {args.quant} is {published:,} bytes ({model.size_bytes / published - 1:+.2%})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
