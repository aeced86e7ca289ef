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
    vision      the vision projector (mmproj, `qwen3vl_merger`) of a shape: tensors, metadata, the F16
                file `build_projector` writes, and `projector_path`, where a model's projector sits
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
from edgeassist.synthetic.vision import (
    PROJECTOR_ARCH,
    PROJECTOR_PRECISION,
    PROJECTOR_TYPE,
    PUBLISHED_PROJECTOR_BYTES,
    VISION_SHAPES,
    Qwen35VisionShape,
    build_projector,
    get_vision_shape,
    projector_kv,
    projector_path,
    projector_size,
    projector_tensor_specs,
)

__all__ = [
    "ARCH",
    "CACHE_ENV",
    "GENERATOR_VERSION",
    "PROJECTOR_ARCH",
    "PROJECTOR_PRECISION",
    "PROJECTOR_TYPE",
    "PUBLISHED_BYTES",
    "PUBLISHED_PROJECTOR_BYTES",
    "QUANTS",
    "SHAPES",
    "TEMPLATE_FILE",
    "VISION_SHAPES",
    "VOCAB_FILE",
    "Qwen35Shape",
    "Qwen35VisionShape",
    "SyntheticModel",
    "TensorSpec",
    "build",
    "build_projector",
    "cache_dir",
    "default_path",
    "expected_size",
    "get_shape",
    "get_vision_shape",
    "planned_types",
    "projector_kv",
    "projector_path",
    "projector_size",
    "projector_tensor_specs",
    "tensor_specs",
    "tokenizer_assets",
]
