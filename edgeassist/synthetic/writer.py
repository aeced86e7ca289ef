"""Writing a model as an F16 GGUF: the metadata, the tokenizer and seeded random weights, a tensor at a time."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from edgeassist.synthetic.shapes import ARCH, Qwen35Shape, TensorSpec, model_kv, tensor_specs
from edgeassist.synthetic.tokenizer import Tokenizer


class _NormalPool:
    """Seeded N(0, 1) values as float32, handed out as slices of a pool at random offsets.

    Drawing every value takes ~20 ns (15 s for the 0.8B); slicing a 4M-value pool is a copy.
    For a speed benchmark and smoke tests the weights only need to be random-looking and
    well scaled, not independent.
    """

    size = 1 << 22

    def __init__(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)
        pool = self._rng.standard_normal(self.size, dtype=np.float32)
        self._pool = np.concatenate([pool, pool])  # a slice up to `size` long never wraps

    def take(self, n: int) -> Iterator[np.ndarray[Any, np.dtype[np.float32]]]:
        """`n` values, in slices of at most the pool size."""
        while n > 0:
            k = min(n, self.size)
            off = int(self._rng.integers(0, self.size))
            yield self._pool[off : off + k]
            n -= k


class _Fill:
    """A tensor's data, generated while it is written (GGUFWriter only asks for nbytes and tofile)."""

    def __init__(self, spec: TensorSpec, pool: _NormalPool, seed: int) -> None:
        self.spec = spec
        self.nbytes = spec.n_elements * (2 if spec.dtype == "F16" else 4)
        self._pool = pool
        # Per-tensor seed: a tensor's values do not depend on which tensors come before it.
        self._rng = np.random.default_rng([seed, zlib.crc32(spec.name.encode())])

    def tofile(self, f: IO[bytes]) -> None:
        spec = self.spec
        out_type = np.float16 if spec.dtype == "F16" else np.float32
        if spec.init == "ones":
            np.ones(spec.shape, dtype=out_type).tofile(f)
        elif spec.init == "ssm_a":
            # ssm_a = -exp(A_log), with A drawn from U(1, 16) as in the HF initialisation:
            # negative, so the DeltaNet state decays instead of blowing up.
            (-self._rng.uniform(1.0, 16.0, spec.shape)).astype(out_type).tofile(f)
        else:
            for chunk in self._pool.take(spec.n_elements):
                (chunk * np.float32(0.02)).astype(out_type).tofile(f)


def write_f16(s: Qwen35Shape, path: Path, seed: int, tok: Tokenizer) -> None:
    """Write shape `s` to `path` as F16, with the tokenizer `tok` and random weights from `seed`."""
    import gguf

    vt = gguf.GGUFValueType
    kinds = {"str": vt.STRING, "u32": vt.UINT32, "f32": vt.FLOAT32, "bool": vt.BOOL, "arr_i32": vt.ARRAY}
    w = gguf.GGUFWriter(path, ARCH)
    for key, (value, kind) in model_kv(s, "F16").items():
        if key != "general.architecture":  # GGUFWriter writes that one itself
            w.add_key_value(key, value, kinds[kind], sub_type=vt.INT32 if kind == "arr_i32" else None)
    w.add_tokenizer_model(tok.model)
    w.add_tokenizer_pre(tok.pre)
    # The long arrays get their item type up front: GGUFWriter would otherwise check every item.
    arr, keys = gguf.GGUFValueType.ARRAY, gguf.Keys.Tokenizer
    w.add_key_value(keys.LIST, tok.tokens, arr, sub_type=gguf.GGUFValueType.STRING)
    w.add_key_value(keys.TOKEN_TYPE, tok.types, arr, sub_type=gguf.GGUFValueType.INT32)
    w.add_key_value(keys.MERGES, tok.merges, arr, sub_type=gguf.GGUFValueType.STRING)
    w.add_eos_token_id(tok.eos)
    w.add_bos_token_id(tok.bos)
    w.add_pad_token_id(tok.pad)
    w.add_add_bos_token(False)  # Qwen 3.5 prompts start with <|im_start|>, no BOS
    w.add_chat_template(tok.template)

    write_tensors(w, tensor_specs(s), seed)


def write_tensors(w: Any, specs: list[TensorSpec], seed: int) -> None:
    """Write the header, then `specs`' random weights from `seed` (one at a time), and close `w` (a GGUFWriter).

    The same seed gives the same weights on any machine (the model's and its projector's alike).
    """
    pool = _NormalPool(seed)
    fills = [_Fill(spec, pool, seed) for spec in specs]
    for fill in fills:
        np_dtype = np.dtype(np.float16 if fill.spec.dtype == "F16" else np.float32)
        w.add_tensor_info(fill.spec.name, fill.spec.shape, np_dtype, fill.nbytes)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for fill in fills:
        w.write_tensor_data(fill)  # duck-typed: nbytes + tofile
    w.close()
