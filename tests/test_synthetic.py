"""Synthetic Qwen 3.5 models: the size arithmetic, and a tiny real model through the engine."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from edgeassist.engine.base import Done, GenerationOptions, Message
from edgeassist.engine.llama import LlamaEngine
from edgeassist.errors import DownloadError, UsageError
from edgeassist.synthetic import (
    PUBLISHED_BYTES,
    SHAPES,
    default_path,
    expected_size,
    planned_types,
    tensor_specs,
    tokenizer_assets,
)


@pytest.fixture(scope="module")
def engine(tiny_qwen35: Path) -> LlamaEngine:
    """The tiny model loaded in the project's engine."""
    e = LlamaEngine(tiny_qwen35, n_ctx=512)
    e.load()
    return e


# -- arithmetic (no model built) -------------------------------------------------------------


def test_expected_size_of_0_8b_q4_k_m_is_within_5_percent_of_the_published_file() -> None:
    published = PUBLISHED_BYTES[("0.8b", "Q4_K_M")]
    assert published == 532_517_120
    assert abs(expected_size("0.8b", "Q4_K_M") / published - 1) < 0.05


def test_published_shapes_match_the_model_cards() -> None:
    small, big = SHAPES["0.8b"], SHAPES["2b"]
    assert (small.n_embd, small.n_layer, small.n_ff) == (1024, 24, 3584)
    assert (big.n_embd, big.n_layer, big.n_ff) == (2048, 24, 6144)
    for s in (small, big):
        assert (s.n_head, s.n_head_kv, s.head_dim, s.rope_dims) == (8, 2, 256, 64)
        assert (s.linear_k_heads, s.linear_v_heads, s.linear_head_dim, s.conv_kernel) == (16, 16, 128, 4)
        assert s.n_vocab == 248_320 and s.mrope_sections == (11, 11, 10, 0)
        assert [i for i in range(s.n_layer) if s.is_full_attention(i)] == [3, 7, 11, 15, 19, 23]


def test_0_8b_has_no_output_matrix_and_its_embedding_goes_q6_k() -> None:
    names = {t.name for t in tensor_specs("0.8b")}
    assert "output.weight" not in names and "blk.0.ssm_a" in names and "blk.0.ssm_dt.bias" in names
    types = planned_types("0.8b", "Q4_K_M")
    assert types["token_embd.weight"] == "Q6_K"
    assert types["blk.0.ssm_conv1d.weight"] == "F32" and types["blk.0.ssm_a"] == "F32"
    assert {types[f"blk.{i}.ffn_up.weight"] for i in range(24)} == {"Q4_K"}


def test_every_tensor_is_a_qwen35_tensor_of_gguf_py() -> None:
    import gguf

    known = {gguf.TENSOR_NAMES[t] for t in gguf.MODEL_TENSORS[gguf.MODEL_ARCH.QWEN35]}
    for spec in tensor_specs("0.8b"):
        base = spec.name.removesuffix(".weight").removesuffix(".bias")
        assert re.sub(r"^blk\.\d+\.", "blk.{bid}.", base) in known, spec.name


def test_unknown_shape_or_quant_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="shape"):
        expected_size("7b", "Q4_K_M")
    with pytest.raises(UsageError, match="quantization"):
        default_path("tiny", "Q3_K_S")
    assert default_path("0.8b", "q8_0") == Path("models/synthetic-qwen3.5-0.8b-Q8_0.gguf")


def test_a_failed_tokenizer_fetch_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A real pip run with no index to look in: what a machine without network sees.
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    with pytest.raises(DownloadError) as info:
        tokenizer_assets(tmp_path / "cache")
    message = str(info.value)
    assert "\n" not in message and "pip download llama-cpp-python" in message


# -- the tiny model, built for real ------------------------------------------------------------


def test_tiny_file_matches_the_size_arithmetic(tiny_qwen35: Path) -> None:
    # The same arithmetic gives the 0.8B figure above; here it meets llama.cpp's real quantizer.
    assert abs(tiny_qwen35.stat().st_size - expected_size("tiny", "Q4_K_M")) <= 0.005 * tiny_qwen35.stat().st_size


def test_tokenizer_assets_are_reused_from_the_cache(tiny_qwen35: Path) -> None:
    vocab, template = tokenizer_assets()
    assert vocab.name == "ggml-vocab-qwen35.gguf" and "enable_thinking" in template.read_text()


def test_tiny_loads_as_a_hybrid_thinking_model(engine: LlamaEngine) -> None:
    assert engine.recurrent is True
    assert engine.supports_thinking is True


def test_tiny_tokenizes_like_qwen(engine: LlamaEngine) -> None:
    for special in ("<think>", "</think>", "<tool_call>", "</tool_call>", "<|im_start|>", "<|im_end|>"):
        assert len(engine.tokenize(special, special=True)) == 1, special
    assert engine.tokenize("<think>") == [151667]
    assert engine.tokenize("Hello world") == [9707, 1879]  # Qwen BPE ids, and no BOS


def test_tiny_renders_the_qwen_3_5_template(engine: LlamaEngine) -> None:
    msgs: list[Message] = [{"role": "user", "content": "hi"}]
    prompt = engine.render(msgs, think=True)
    assert prompt == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n"
    assert engine.render(msgs, think=False).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_tiny_streams_a_reply_that_ends_with_done(engine: LlamaEngine) -> None:
    msgs: list[Message] = [{"role": "user", "content": "hi"}]
    events = list(engine.stream(msgs, GenerationOptions(max_tokens=8, temperature=0)))
    done = events[-1]
    assert isinstance(done, Done)
    assert sum(isinstance(e, Done) for e in events) == 1
    stats = done.stats
    assert stats.prompt_tokens > 0
    assert stats.generated_tokens > 0 or stats.finish_reason == "stop"
    assert stats.finish_reason in ("stop", "length")
