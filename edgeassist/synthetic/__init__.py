"""Synthetic Qwen 3.5 models: the real `qwen35` llama.cpp architecture with random weights.

They load and run like the published GGUFs of the same shape (hybrid Gated DeltaNet + full
attention, the same tensors, types and vocabulary size), tokenize with a Qwen BPE vocabulary
and the `qwen35` pre-tokenizer, and carry the real Qwen 3.5 chat template, so the bench can
measure speed and the tests can exercise the engine without a download. Their text is noise.

A model is written as F16 with `gguf.GGUFWriter`, one tensor at a time, then quantized
with llama.cpp's own quantizer. The tokenizer and template come from llama-cpp-python's
sdist on PyPI (llama.cpp's `ggml-vocab-qwen35.gguf` and `Qwen3.5-4B.jinja`), fetched once
with pip into a cache folder.

    shapes      Qwen35Shape and SHAPES, the tensors of a shape, its GGUF metadata
    sizes       the type each tensor is quantized to, and the size of the file `build` writes
    tokenizer   the Qwen 3.5 vocab and chat template, fetched once into the cache folder
    writer      the F16 file: metadata, tokenizer and seeded random weights
    builder     `build`: write, quantize, rename into place
"""

from edgeassist.synthetic.builder import SyntheticModel, build, default_path
from edgeassist.synthetic.shapes import (
    ARCH,
    GENERATOR_VERSION,
    QUANTS,
    SHAPES,
    Qwen35Shape,
    TensorSpec,
    get_shape,
    tensor_specs,
)
from edgeassist.synthetic.sizes import PUBLISHED_BYTES, expected_size, planned_types
from edgeassist.synthetic.tokenizer import CACHE_ENV, TEMPLATE_FILE, VOCAB_FILE, cache_dir, tokenizer_assets

__all__ = [
    "ARCH",
    "CACHE_ENV",
    "GENERATOR_VERSION",
    "PUBLISHED_BYTES",
    "QUANTS",
    "SHAPES",
    "TEMPLATE_FILE",
    "VOCAB_FILE",
    "Qwen35Shape",
    "SyntheticModel",
    "TensorSpec",
    "build",
    "cache_dir",
    "default_path",
    "expected_size",
    "get_shape",
    "planned_types",
    "tensor_specs",
    "tokenizer_assets",
]
