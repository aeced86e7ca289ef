"""Tool calls: the grammar, the parser and the splitter, on the real Qwen 3.5 vocabulary and template.

The grammar runs in llama.cpp on the synthetic random-weight Qwen 3.5 (its text is noise: it never
chooses to close anything, so every call it finishes shows the grammar's bounds at work); history
is rendered by the model's own chat template, as the engine renders it.
"""

from __future__ import annotations

import codecs
import ctypes
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from edgeassist.engine.base import GenerationOptions, Message, Notice, Text, ToolCall, ToolSpec
from edgeassist.engine.build import init_backend, model_params
from edgeassist.engine.sampling import GrammarSampler, sampler_chain
from edgeassist.engine.template import ChatTemplate
from edgeassist.engine.toolcalls import CLOSE, OPEN, CallSplitter, call_grammar, parse_call
from edgeassist.errors import EdgeAssistError

PROMPT = "<|im_start|>user\nWhat is the weather?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"


@dataclass
class Model:
    """The tiny Qwen 3.5 through llama.cpp's C API: one context, evaluated up to `PROMPT`."""

    model: Any
    ctx: Any
    vocab: Any
    template: ChatTemplate

    def tokenize(self, text: str) -> list[int]:
        import llama_cpp

        raw = text.encode()
        buf = (llama_cpp.llama_token * (len(raw) + 8))()
        n = llama_cpp.llama_tokenize(self.vocab, raw, len(raw), buf, len(buf), False, True)
        assert n >= 0
        return list(buf[:n])

    def piece(self, token: int) -> bytes:
        import llama_cpp

        buf = ctypes.create_string_buffer(128)
        n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, 128, 0, True)
        return buf.raw[: max(n, 0)]

    def token(self, text: str) -> int:
        tokens = self.tokenize(text)
        assert len(tokens) == 1, text
        return tokens[0]

    def restart(self) -> None:
        """Forget everything, and evaluate the prompt again."""
        import llama_cpp

        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self.ctx), True)
        tokens = self.tokenize(PROMPT)
        batch = (llama_cpp.llama_token * len(tokens))(*tokens)
        assert llama_cpp.llama_decode(self.ctx, llama_cpp.llama_batch_get_one(batch, len(tokens))) == 0

    def generate(self, sample: Any, max_tokens: int) -> tuple[list[int], bool]:
        """Tokens from `sample(ctx)`, each decoded in turn, and whether an end-of-generation token ended them."""
        import llama_cpp

        self.restart()
        one = (llama_cpp.llama_token * 1)()
        batch = llama_cpp.llama_batch_get_one(one, 1)
        tokens: list[int] = []
        for _ in range(max_tokens):
            token = sample(self.ctx)
            if llama_cpp.llama_vocab_is_eog(self.vocab, token):
                return tokens, True
            tokens.append(token)
            one[0] = token
            assert llama_cpp.llama_decode(self.ctx, batch) == 0
        return tokens, False

    def text(self, tokens: list[int]) -> str:
        return b"".join(self.piece(t) for t in tokens).decode("utf-8", "replace")


@pytest.fixture(scope="module")
def qwen(tiny_qwen35: Path) -> Iterator[Model]:
    import llama_cpp

    init_backend()
    model = llama_cpp.llama_model_load_from_file(str(tiny_qwen35).encode(), model_params())
    assert model
    cparams = llama_cpp.llama_context_default_params()
    cparams.n_ctx = cparams.n_batch = cparams.n_ubatch = 1024
    # One thread: with spinning worker threads, a busy machine makes each token take hundreds of ms.
    cparams.n_threads = cparams.n_threads_batch = 1
    ctx = llama_cpp.llama_init_from_model(model, cparams)
    assert ctx
    source = llama_cpp.llama_model_chat_template(model, None)
    assert source and b"tool_call" in source
    yield Model(model, ctx, llama_cpp.llama_model_get_vocab(model), ChatTemplate(source.decode()))
    llama_cpp.llama_free(ctx)
    llama_cpp.llama_model_free(model)


def chain(qwen: Model, seed: int, *, banned: tuple[int, ...] = (), **options: Any) -> Any:
    return sampler_chain(qwen.vocab, GenerationOptions(seed=seed, **options), "qwen3.5", lambda: [], banned)


def accepts(qwen: Model, grammar: str, text: str) -> bool:
    """Whether llama.cpp's grammar takes all of `text` (tokenized as the model would write it) and may end there."""
    import llama_cpp

    sampler = llama_cpp.llama_sampler_init_grammar(qwen.vocab, grammar.encode(), b"root")
    assert sampler, "the grammar does not compile"
    one: Any = llama_cpp.llama_token_data(0, 0.0, 0.0)
    array = llama_cpp.llama_token_data_array(ctypes.pointer(one), 1, -1, False)

    def allowed(token: int) -> bool:
        one.id, one.logit = token, 0.0
        llama_cpp.llama_sampler_apply(sampler, ctypes.byref(array))
        return bool(one.logit != float("-inf"))

    try:
        for token in qwen.tokenize(text):
            if not allowed(token):
                return False
            llama_cpp.llama_sampler_accept(sampler, token)
        return allowed(qwen.token("<|im_end|>"))
    finally:
        llama_cpp.llama_sampler_free(sampler)


def render_call(qwen: Model, name: str, arguments: dict[str, Any]) -> str:
    """The `<tool_call>` block the chat template writes for this call in an assistant message's history."""
    call = ToolCall(name, arguments)
    messages: list[Message] = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "", "tool_calls": [call.part()]},
    ]
    text = qwen.template.render(messages, add_generation_prompt=False)
    return text[text.index(OPEN) : text.rindex(CLOSE) + len(CLOSE)]


def conforms(value: Any, schema: Any) -> bool:
    """A plain JSON-schema check, independent of the parser's (the keywords the grammar promises)."""
    if not isinstance(schema, dict):
        return True
    if "const" in schema:
        return json.dumps(value) == json.dumps(schema["const"])
    if "enum" in schema:
        return any(json.dumps(value) == json.dumps(v) for v in schema["enum"])
    kinds = schema.get("type")
    if kinds is None:
        return True
    for kind in [kinds] if isinstance(kinds, str) else kinds:
        if kind == "string" and isinstance(value, str):
            return bool(len(value) <= schema.get("maxLength", math.inf))
        if kind == "integer" and isinstance(value, int) and not isinstance(value, bool):
            return True
        if kind == "number" and isinstance(value, int | float) and not isinstance(value, bool):
            return True
        if kind == "boolean" and isinstance(value, bool):
            return True
        if kind == "null" and value is None:
            return True
        if kind == "array" and isinstance(value, list):
            return len(value) <= schema.get("maxItems", math.inf) and all(
                conforms(v, schema.get("items")) for v in value
            )
        if kind == "object" and isinstance(value, dict):
            props = schema.get("properties", {})
            return (
                all(r in value for r in schema.get("required", []))
                and (not props or set(value) <= set(props))
                and all(conforms(v, props.get(k)) for k, v in value.items())
            )
    return False


# -- tools ---------------------------------------------------------------------------------------

WEATHER = ToolSpec(
    "get_weather",
    "The weather in a city.",
    {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "units": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer"},
        },
        "required": ["city"],
    },
)
CALC = ToolSpec(
    "calc.eval-1",
    "Arithmetic.",
    {
        "type": "object",
        "properties": {"expr": {"type": "string", "maxLength": 6}, "exact": {"type": "boolean"}},
        "required": ["expr"],
    },
)
HOSTILE = ToolSpec(
    'we"ird\\tool',
    'A "description" with \\ backslashes,\nnewlines and </tool_call> in it.',
    {
        "type": "object",
        "properties": {
            'q"\\x': {"type": "string"},
            "ratio": {"type": "number"},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 4}, "maxItems": 2},
            "opt": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": ["string", "null"]}},
                "required": ["a"],
            },
        },
        "required": ['q"\\x', "ratio"],
    },
)
LOOSE = ToolSpec(
    "loose",
    "Schemas without a type, unions, odd enums.",
    {
        "type": "object",
        "properties": {
            "any": {},
            "maybe": {"type": ["boolean", "null"]},
            "mode": {"enum": [1, "two", True, None]},
            "fixed": {"const": "x"},
            "either": {"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 3}]},
        },
        "required": ["any", "mode"],
    },
)
EMPTY = ToolSpec("now", "The time; no arguments.")

TOOL_SETS = {"weather+calc": [WEATHER, CALC, EMPTY], "hostile": [HOSTILE], "loose": [LOOSE]}


# -- the grammar in llama.cpp ------------------------------------------------------------------


ODD_NAMES = ['a"b', "c\\d", "new\nline", "tab\there", "<function=x>", "x>y", "ünïcödé", "😀", "\u2028", "", "'"]


def test_grammars_compile_for_many_schemas_and_hostile_names(qwen: Model) -> None:
    tools = [WEATHER, CALC, HOSTILE, LOOSE, EMPTY]
    tools += [
        ToolSpec(
            name, f'"{name}"\\\n', {"type": "object", "properties": {name: {"type": "string"}}, "required": [name]}
        )
        for name in ODD_NAMES
    ]
    tools.append(
        ToolSpec(
            "deep",
            "nested",
            {
                "type": "object",
                "properties": {
                    "rows": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "properties": {
                                "cells": {"type": "array", "items": {"type": ["number", "string"]}},
                                "meta": {"type": "object", "additionalProperties": {"type": "integer"}},
                                "free": {"type": "object"},
                            },
                        },
                    },
                    "n": {"type": "null"},
                    "weird": {"type": "no-such-type"},
                    "ref": {"$ref": "#/x"},
                    "empty": {"type": "string", "maxLength": 0},
                    "none": {"type": "array", "maxItems": 0},
                },
            },
        )
    )
    for subset in ([t] for t in tools):
        for lazy in (False, True):
            grammar = call_grammar(subset, max_string_chars=64)
            sampler = GrammarSampler(
                qwen.vocab, chain(qwen, 0), grammar, lazy_tokens=[qwen.token(OPEN)] if lazy else None
            )
            sampler.free()
    grammar = call_grammar(tools)  # all of them together, default bounds
    GrammarSampler(qwen.vocab, chain(qwen, 0), grammar).free()
    for name in ODD_NAMES:
        spec = next(t for t in tools if t.name == name)
        block = render_call(qwen, name, {name: "text"})
        assert parse_call(block, tools) == ToolCall(name, {name: "text"})
        assert accepts(qwen, call_grammar([spec]), block), repr(name)


def test_tools_nothing_can_write_are_left_out() -> None:
    nul = ToolSpec("a\0b", "")
    surrogate = ToolSpec("ok", "", {"type": "object", "properties": {"\ud800": {}}, "required": ["\ud800"]})
    with pytest.raises(ValueError, match="no tool"):
        call_grammar([nul, surrogate])
    with pytest.raises(ValueError, match="no tool"):
        call_grammar([])
    assert "a\\x00b" not in call_grammar([nul, WEATHER])


@pytest.mark.parametrize(
    ("tools", "text"),
    [
        (
            [WEATHER],
            "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>",
        ),
        (
            [WEATHER],
            "<tool_call>\n<function=get_weather>\n<parameter=city>\nOslo\n</parameter>\n<parameter=units>\ncelsius\n"
            "</parameter>\n<parameter=days>\n-3\n</parameter>\n</function>\n</tool_call>",
        ),
        ([EMPTY], "<tool_call>\n<function=now>\n</function>\n</tool_call>"),
        (
            [EMPTY],
            "<tool_call>\n<function=now>\n</function>\n</tool_call>\n<tool_call>\n<function=now>\n</function>\n</tool_call>",
        ),
        (
            [HOSTILE],
            '<tool_call>\n<function=we"ird\\tool>\n<parameter=q"\\x>\n\nline 1 < 2\n\n  <b>\n</parameter>\n'
            '<parameter=ratio>\n-1.5e+3\n</parameter>\n<parameter=opt>\n{"a": 1, "b": null}\n</parameter>\n'
            "</function>\n</tool_call>",
        ),
        (
            [LOOSE],
            '<tool_call>\n<function=loose>\n<parameter=any>\n[1,{"k":"\\u00e9\\n"}]\n</parameter>\n'
            "<parameter=mode>\ntrue\n</parameter>\n<parameter=either>\nabc\n</parameter>\n</function>\n</tool_call>",
        ),
    ],
)
def test_grammar_takes_well_formed_calls(qwen: Model, tools: list[ToolSpec], text: str) -> None:
    assert accepts(qwen, call_grammar(tools), text)
    for block in text.split("\n<tool_call>"):
        parse_call(block if block.startswith(OPEN) else "<tool_call>" + block, tools)


CITY = "<tool_call>\n<function=get_weather>\n<parameter=city>\n{}\n</parameter>\n{}</function>\n</tool_call>"


@pytest.mark.parametrize(
    "text",
    [
        CITY.format("Paris", "<parameter=zone>\nx\n</parameter>\n"),  # an unknown parameter
        "<tool_call>\n<function=get_weather>\n</function>\n</tool_call>",  # a required one missing
        CITY.format("Paris", "<parameter=units>\nkelvin\n</parameter>\n"),  # not in the enum
        CITY.format("Paris", "<parameter=days>\n3.5\n</parameter>\n"),  # not an integer
        CITY.format("Paris", "<parameter=days>\n1\n</parameter>\n<parameter=units>\ncelsius\n</parameter>\n"),  # order
        CITY.format("Paris\n<b>", ""),  # a line of a string starting with <
        CITY.format("<b>", ""),
        CITY.format("x" * 25, ""),  # over the cap
        CITY.replace("get_weather", "get_weathe"),  # an unknown tool
        CITY.format("Paris", "").replace("</tool_call>", "</tool_call>\n"),  # anything after the call
        CITY.format("Paris", "") + "\n" + CITY.format("Rome", ""),  # more calls than allowed
    ],
)
def test_grammar_refuses_malformed_calls(qwen: Model, text: str) -> None:
    assert not accepts(qwen, call_grammar([WEATHER, CALC], max_string_chars=24, max_calls=1), text)


# -- sampling under the grammar ----------------------------------------------------------------


@pytest.mark.parametrize(("tools", "runs"), zip(TOOL_SETS.values(), (8, 5, 6), strict=True), ids=TOOL_SETS.keys())
def test_forced_calls_from_a_random_model_always_parse(qwen: Model, tools: list[ToolSpec], runs: int) -> None:
    # (each token the grammar rejects is drawn again over all 248k tokens, ~15 ms: a few runs per set)
    grammar = call_grammar(tools, max_string_chars=6, max_items=2, max_depth=1, max_calls=1)
    for seed in range(runs):
        sampler = GrammarSampler(qwen.vocab, chain(qwen, seed), grammar)
        try:
            tokens, ended = qwen.generate(sampler.sample, 300)
        finally:
            sampler.free()
        text = qwen.text(tokens)
        assert ended, f"seed {seed}: no end after 300 tokens: {text!r}"
        call = parse_call(text, tools)
        spec = next(t for t in tools if t.name == call.name)
        assert conforms(call.arguments, dict(spec.parameters)), (seed, text, call)
        splitter, utf8 = CallSplitter(tools), codecs.getincrementaldecoder("utf-8")()
        events = [e for t in tokens for e in splitter.feed(utf8.decode(qwen.piece(t)))]
        assert events + list(splitter.flush()) == [call], text


def test_lazy_grammar_leaves_text_free_until_the_call_starts(qwen: Model) -> None:
    grammar = call_grammar([WEATHER], max_string_chars=8, max_calls=1)
    for seed in (1, 2):
        plain = chain(qwen, seed)
        try:
            free, _ = qwen.generate(lambda ctx, plain=plain: qwen_sample(plain, ctx), 40)
        finally:
            free_chain(plain)
        lazy = GrammarSampler(qwen.vocab, chain(qwen, seed), grammar, lazy_tokens=[qwen.token(OPEN)])
        try:
            tokens, _ = qwen.generate(lazy.sample, 40)
            assert not lazy.triggered and lazy.resampled == 0
        finally:
            lazy.free()
        assert tokens == free  # (the very tokens the chain alone picks: no `<tool_call>` among them)
        assert not accepts(qwen, grammar, qwen.text(tokens))


def test_a_lazy_grammar_constrains_from_its_trigger_on(qwen: Model) -> None:
    import llama_cpp

    opening = qwen.token(OPEN)
    grammar = call_grammar([WEATHER, CALC], max_string_chars=6, max_calls=1)
    for seed in range(2):
        # A chain that wants nothing but `<tool_call>`: the trigger comes first, and after it only
        # the grammar keeps the model from writing it again and again.
        native = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        bias = (llama_cpp.llama_logit_bias * 1)(llama_cpp.llama_logit_bias(opening, 1000.0))
        n_vocab = llama_cpp.llama_vocab_n_tokens(qwen.vocab)
        llama_cpp.llama_sampler_chain_add(native, llama_cpp.llama_sampler_init_logit_bias(n_vocab, 1, bias))
        llama_cpp.llama_sampler_chain_add(native, llama_cpp.llama_sampler_init_top_k(20))
        llama_cpp.llama_sampler_chain_add(native, llama_cpp.llama_sampler_init_dist(seed))
        sampler = GrammarSampler(qwen.vocab, native, grammar, lazy_tokens=[opening])
        try:
            tokens, ended = qwen.generate(sampler.sample, 300)
            assert sampler.triggered and sampler.resampled > 0
        finally:
            sampler.free()
        assert ended and tokens[0] == opening
        parse_call(qwen.text(tokens), [WEATHER, CALC])


def test_a_call_tag_written_while_thinking_is_thought_not_a_call(qwen: Model) -> None:
    """Armed by `</think>`, a lazy grammar lets the tag pass while the reply still thinks."""
    import llama_cpp

    opening, think_end = qwen.token(OPEN), qwen.token("</think>")
    grammar = call_grammar([WEATHER], max_string_chars=6, max_calls=1)
    n_vocab = llama_cpp.llama_vocab_n_tokens(qwen.vocab)

    def biased(*favoured: tuple[int, float]) -> Any:
        native = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        bias = (llama_cpp.llama_logit_bias * len(favoured))(*(llama_cpp.llama_logit_bias(t, b) for t, b in favoured))
        llama_cpp.llama_sampler_chain_add(native, llama_cpp.llama_sampler_init_logit_bias(n_vocab, len(favoured), bias))
        llama_cpp.llama_sampler_chain_add(native, llama_cpp.llama_sampler_init_greedy())
        return native

    # Thinking: the model wants `<tool_call>` over and over, and never ends its thinking.
    armed = GrammarSampler(qwen.vocab, biased((opening, 1000.0)), grammar, lazy_tokens=[opening], armed_by=[think_end])
    try:
        tokens, _ = qwen.generate(armed.sample, 12)
        assert tokens == [opening] * 12 and not armed.triggered
    finally:
        armed.free()
    # Not armed (a reply that does not think), the same tag starts a call at once.
    unarmed = GrammarSampler(qwen.vocab, biased((opening, 1000.0)), grammar, lazy_tokens=[opening])
    try:
        qwen.generate(unarmed.sample, 3)
        assert unarmed.triggered
    finally:
        unarmed.free()


def qwen_sample(native: Any, ctx: Any) -> int:
    import llama_cpp

    return int(llama_cpp.llama_sampler_sample(native, ctx, -1))


def free_chain(native: Any) -> None:
    import llama_cpp

    llama_cpp.llama_sampler_free(native)


def test_banned_tokens_are_never_sampled(qwen: Model) -> None:
    qwen.restart()
    picked: list[int] = []
    for _ in range(3):
        native = chain(qwen, 0, banned=tuple(picked), temperature=0)
        picked.append(qwen_sample(native, qwen.ctx))
        free_chain(native)
    assert len(set(picked)) == 3  # (greedy: each ban moves it to the next best token)
    eog = picked[0]
    native = sampler_chain(
        qwen.vocab, GenerationOptions(temperature=0, ignore_eos=True), "qwen3.5", lambda: [eog], banned=(picked[1],)
    )
    assert qwen_sample(native, qwen.ctx) == picked[2]
    free_chain(native)


def test_a_grammar_with_every_way_on_banned_raises_instead_of_aborting(qwen: Model) -> None:
    import llama_cpp

    # Every token that could begin a call: the grammar leaves the chain nothing to pick.
    n_vocab = llama_cpp.llama_vocab_n_tokens(qwen.vocab)
    banned = tuple(t for t in range(n_vocab) if qwen.piece(t)[:1] == b"<")
    sampler = GrammarSampler(qwen.vocab, chain(qwen, 0, banned=banned), call_grammar([WEATHER]))
    try:
        with pytest.raises(EdgeAssistError, match="allows no token"):
            qwen.generate(sampler.sample, 5)
    finally:
        sampler.free()
    # The end of generation banned where only it may come (the grammar is complete): the same, no abort.
    eog = [t for t in range(n_vocab) if llama_cpp.llama_vocab_is_eog(qwen.vocab, t)]
    sampler = GrammarSampler(qwen.vocab, chain(qwen, 0, banned=tuple(eog)), 'root ::= "a"')
    try:
        with pytest.raises(EdgeAssistError, match="allows no token"):
            qwen.generate(sampler.sample, 5)
    finally:
        sampler.free()


@pytest.mark.parametrize(
    ("grammar", "lazy", "reason"),
    [
        ('root ::= "a" (', None, "does not compile"),
        ("", None, "empty"),
        ('other ::= "a"', None, "does not compile"),
        ('root ::= "a" undefined-rule', None, "does not compile"),
        ('root ::= "a"', "<tool_call>", "cannot start with"),
    ],
)
def test_a_bad_grammar_is_one_line_of_error(
    qwen: Model, capfd: pytest.CaptureFixture[str], grammar: str, lazy: str | None, reason: str
) -> None:
    triggers = [qwen.token(lazy)] if lazy else None
    with pytest.raises(EdgeAssistError, match=reason) as info:
        GrammarSampler(qwen.vocab, chain(qwen, 0), grammar, lazy_tokens=triggers)
    assert "\n" not in str(info.value)
    assert capfd.readouterr().err == ""  # (llama.cpp prints its parse errors: caught, not shown)


# -- the parser: round trips through the chat template -----------------------------------------

TEXT = st.text(alphabet=st.sampled_from(list("ab Z09é中😀\n\t<>/\"'\\{}[]:,=")), max_size=16)
KEYS = st.text(alphabet=st.sampled_from(list('abc_.-"\\ é')), min_size=1, max_size=6)


def _not_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return True
    return False


NUMBERS = st.integers(-(10**19), 10**19) | st.floats(allow_nan=False, allow_infinity=False)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)
JSON = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3), max_leaves=8
)


@dataclass(frozen=True)
class Kind:
    """A parameter's schema and what may go in it: everything, and what the grammar can also write."""

    schema: dict[str, Any]
    values: st.SearchStrategy[Any]


def _kinds() -> list[Kind]:
    text = TEXT.filter(lambda s: "\n</" not in s)
    return [
        Kind({"type": "string"}, text),
        Kind({"type": "string", "enum": ["a b", "", "<x>", "1"]}, st.sampled_from(["a b", "", "<x>", "1"])),
        Kind({"type": "integer"}, st.integers(-(10**19), 10**19)),
        Kind({"type": "number"}, st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(10**6), 10**6)),
        Kind({"type": "boolean"}, st.booleans()),
        Kind({"type": "null"}, st.none()),
        Kind({"type": ["string", "null"]}, st.none() | text.filter(lambda s: s.strip() not in ("null", "None"))),
        Kind({"type": "array", "items": {"type": "integer"}}, st.lists(st.integers(-100, 100), max_size=4)),
        Kind({"type": "array", "items": {"type": "string"}}, st.lists(TEXT, max_size=3)),
        Kind(
            {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "number"}}, "required": ["a"]},
            st.fixed_dictionaries({"a": TEXT}, optional={"b": st.integers(-9, 9) | st.floats(-1, 1)}).map(
                lambda d: dict(sorted(d.items()))  # (the properties' order, which the grammar keeps)
            ),
        ),
        # (a bare True or None renders as `True`/`None`, which a schema without a type reads as text)
        Kind({}, st.one_of(NUMBERS, text.filter(_not_json), st.lists(JSON, max_size=3), st.dictionaries(TEXT, JSON))),
    ]


KINDS = _kinds()


@st.composite
def tool_and_call(draw: st.DrawFn, *, writable: bool = False) -> tuple[ToolSpec, dict[str, Any]]:
    """A tool of a few parameters and a call of it; `writable`: only calls the grammar can write (see below)."""
    names = draw(st.lists(KEYS, min_size=0, max_size=4, unique=True))
    properties: dict[str, Any] = {}
    required: list[str] = []
    arguments: dict[str, Any] = {}
    for name in names:
        kind = draw(st.sampled_from(KINDS))
        properties[name] = kind.schema
        if draw(st.booleans()):
            required.append(name)
        if name in required or draw(st.booleans()):
            value = draw(kind.values)
            # What the template renders that the grammar does not write: `True`/`None` for a bare
            # boolean or null (the grammar writes JSON), a string line starting with `<`, past the cap.
            assume(not writable or (not isinstance(value, bool) and value is not None and _fits(value, top=True)))
            arguments[name] = value
    tool = ToolSpec(draw(KEYS), "a tool", {"type": "object", "properties": properties, "required": required})
    return tool, arguments


def _fits(value: Any, top: bool = False, depth: int = 0) -> bool:
    if isinstance(value, str):
        return len(value) <= 16 and (not top or ("\n<" not in value and not value.startswith("<")))
    if isinstance(value, float):
        return "e" not in repr(value) or len(repr(value).split("e")[1].lstrip("+-")) <= 2
    if isinstance(value, list):
        return depth < 3 and len(value) <= 8 and all(_fits(v, depth=depth + 1) for v in value)
    if isinstance(value, dict):
        return depth < 3 and len(value) <= 8 and all(_fits(k) and _fits(v, depth=depth + 1) for k, v in value.items())
    return True


def _json_equal(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=tool_and_call())
def test_a_call_rendered_by_the_template_parses_back(qwen: Model, case: tuple[ToolSpec, dict[str, Any]]) -> None:
    tool, arguments = case
    call = parse_call(render_call(qwen, tool.name, arguments), [EMPTY, tool])
    assert call.name == tool.name and _json_equal(call.arguments, arguments), call


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(case=tool_and_call(writable=True))
def test_the_grammar_takes_what_the_template_renders(qwen: Model, case: tuple[ToolSpec, dict[str, Any]]) -> None:
    tool, arguments = case
    assert accepts(qwen, call_grammar([tool], max_string_chars=16), render_call(qwen, tool.name, arguments))


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("<function=nope>\n</function>", "unknown tool 'nope'"),
        ("<function=get_weather>\n<parameter=zone>\nx\n</parameter>\n</function>", "unknown parameter 'zone'"),
        ("<function=get_weather>\n</function>", "missing required parameter 'city'"),
        (
            "<function=get_weather>\n<parameter=city>\na\n</parameter>\n<parameter=city>\nb\n</parameter>\n</function>",
            "given twice",
        ),
        (
            "<function=get_weather>\n<parameter=city>\na\n</parameter>\n<parameter=days>\nmany\n</parameter>\n"
            "</function>",
            "expected an integer",
        ),
        (
            "<function=get_weather>\n<parameter=city>\na\n</parameter>\n<parameter=units>\nkelvin\n</parameter>\n"
            "</function>",
            "not one of",
        ),
        (
            "<function=calc.eval-1>\n<parameter=expr>\n1\n</parameter>\n<parameter=exact>\nyes\n</parameter>\n"
            "</function>",
            "expected true or false",
        ),
        ("<function=get_weather>\n<parameter=city>\na\n</parameter>\n", "does not end"),
        ("<function=get_weather>\n<parameter=city>\na\n</function>", "not closed"),
        ("hello", "no <function="),
    ],
)
def test_a_call_that_cannot_be_read_says_why(body: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as info:
        parse_call(f"{OPEN}\n{body}\n{CLOSE}", [WEATHER, CALC])
    assert "\n" not in str(info.value)


def test_values_are_typed_by_the_schema() -> None:
    block = render_block(
        "loose", {"any": '{"k": [1, 2.5]}', "maybe": "None", "mode": "True", "fixed": "x", "either": "12"}
    )
    assert parse_call(block, [LOOSE]).arguments == {
        "any": {"k": [1, 2.5]},
        "maybe": None,
        "mode": True,
        "fixed": "x",
        "either": 12,
    }
    block = render_block("loose", {"any": "plain words", "mode": "two", "maybe": "True", "either": "abc"})
    assert parse_call(block, [LOOSE]).arguments == {
        "any": "plain words",
        "mode": "two",
        "maybe": True,
        "either": "abc",
    }
    with pytest.raises(ValueError, match="'fixed'"):
        parse_call(render_block("loose", {"any": "1", "mode": "1", "fixed": "y"}), [LOOSE])
    block = render_block(HOSTILE.name, {'q"\\x': "\n two lines \n", "ratio": "1e+16", "opt": '{"a": 2.0}'})
    assert parse_call(block, [HOSTILE]).arguments == {'q"\\x': "\n two lines \n", "ratio": 1e16, "opt": {"a": 2}}


def render_block(name: str, raw: dict[str, str]) -> str:
    """A call block with its values written as given (no template in between)."""
    params = "".join(f"<parameter={k}>\n{v}\n</parameter>\n" for k, v in raw.items())
    return f"{OPEN}\n<function={name}>\n{params}</function>\n{CLOSE}"


# -- the splitter ----------------------------------------------------------------------------------


def merged(events: list[Any]) -> list[Any]:
    """Events with neighbouring Text pieces joined (how they arrive depends on the pieces fed)."""
    out: list[Any] = []
    for e in events:
        if isinstance(e, Text) and out and isinstance(out[-1], Text):
            out[-1] = Text(out[-1].text + e.text)
        else:
            out.append(e)
    return out


def split_run(stream: str, cuts: list[int]) -> tuple[list[Any], CallSplitter]:
    splitter = CallSplitter([WEATHER, CALC])
    events: list[Any] = []
    last = 0
    for cut in [*sorted(cuts), len(stream)]:
        events += splitter.feed(stream[last:cut])
        last = cut
    events += splitter.flush()
    return merged(events), splitter


CALL_BLOCKS = st.sampled_from(
    [
        render_block("get_weather", {"city": "Paris <3", "days": "2"}),
        render_block("calc.eval-1", {"expr": "1</tool_call>", "exact": "true"}),
        render_block("get_weather", {"days": "2"}),  # missing its city: a Notice
        render_block("nope", {}),  # unknown: a Notice
    ]
)
PROSE = st.text(alphabet=st.sampled_from(list("ab <>/_tolc \n\t")), max_size=20).filter(lambda s: OPEN not in s)


@settings(max_examples=200, deadline=None)
@given(
    parts=st.lists(st.one_of(PROSE, CALL_BLOCKS), max_size=6),
    cut_at=st.lists(st.floats(0, 1), max_size=12),
    tail=st.sampled_from(["", "<tool", "<tool_call>\n<function=get_weather>\n<parameter=ci"]),
)
def test_any_split_of_a_reply_gives_the_same_events(parts: list[str], cut_at: list[float], tail: str) -> None:
    stream = "".join(parts) + tail
    calls = sum(p.startswith(OPEN) for p in parts) + tail.startswith(OPEN)
    assume(stream.count(OPEN) == calls)  # (no `<tool_call>` made of two pieces of prose)
    whole, _ = split_run(stream, [])
    pieces, splitter = split_run(stream, [int(f * len(stream)) for f in cut_at])
    assert pieces == whole
    one_by_one, _ = split_run(stream, list(range(len(stream))))
    assert one_by_one == whole
    assert not splitter.in_call
    assert splitter.calls == [e for e in whole if isinstance(e, ToolCall)]
    shown = "".join(e.text for e in whole if isinstance(e, Text))
    assert "<function=" not in shown and "</parameter>" not in shown  # (a call's markup is never shown)
    assert len([e for e in whole if isinstance(e, ToolCall | Notice)]) == calls


def test_splitter_events_in_order() -> None:
    call = render_block("get_weather", {"city": "Rome"})
    stream = f"Let me look.\n\n{call}\n{call}\n\n  Done <t"
    splitter = CallSplitter([WEATHER])
    events = merged([*splitter.feed(stream[:20]), *splitter.feed(stream[20:]), *splitter.flush()])
    rome = ToolCall("get_weather", {"city": "Rome"})
    assert events == [Text("Let me look."), rome, rome, Text("Done <t")]
    assert splitter.calls == [rome, rome]

    splitter = CallSplitter([WEATHER])
    events = [*splitter.feed("Hm " + call[:30])]
    assert events == [Text("Hm")] and splitter.in_call
    (notice,) = splitter.flush()
    assert isinstance(notice, Notice) and "cut off" in notice.text and not splitter.in_call

    splitter = CallSplitter([WEATHER])
    (notice,) = splitter.feed(render_block("get_weather", {"city": "x", "days": "soon"}))
    assert isinstance(notice, Notice) and "could not be read" in notice.text and "'days'" in notice.text
    assert splitter.calls == []
    # A `</tool_call>` that does not start a line still ends a call when the reply ends there.
    splitter = CallSplitter([WEATHER])
    assert [*splitter.feed(call.replace("\n</tool_call>", "</tool_call>")), *splitter.flush()] == [rome]
