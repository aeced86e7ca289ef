"""Qwen 3.5 tool calls: the grammar a call is generated under, its parser, and the splitter for a reply.

A call is written in the XML-ish format Qwen 3.5's chat template teaches (and renders history in):

    <tool_call>
    <function=NAME>
    <parameter=KEY>
    VALUE
    </parameter>
    </function>
    </tool_call>

String values go in raw; every other value is JSON. The grammar (`call_grammar`) makes the format
and each value's type certain, and keeps every call bounded in length, so that even a model that
never chooses to stop (a random-weight one) finishes. Its one restriction on text: no line of a
string value may start with `<` (so `\\n</parameter>` can never appear inside one, and the end of a
value and of a call are always found).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from edgeassist.engine.base import Notice, Text, ToolCall, ToolSpec
from edgeassist.engine.thinking import partial_tag

OPEN = "<tool_call>"
CLOSE = "</tool_call>"

_FUNCTION = "<function="
_FUNCTION_END = "</function>"
_PARAMETER = "<parameter="
_PARAMETER_END = "\n</parameter>"
_CALL_END = "\n" + CLOSE  # (a string value's line never starts with `<`: this ends only a call)

MAX_INT_DIGITS = 20
"""Most digits of a number's integer part or fraction in a call (its exponent has at most 2)."""


# -- the grammar -----------------------------------------------------------------------------------


def call_grammar(
    tools: Sequence[ToolSpec],
    *,
    max_string_chars: int = 256,
    max_items: int = 8,
    max_depth: int = 3,
    max_calls: int | None = None,
) -> str:
    """A GBNF grammar (root rule `root`) for one or more calls, separated by a newline, of `tools`.

    Each call names one of the tools and gives its parameters in the schema's `properties` order:
    required ones always, optional ones or not, no others; each value valid for its schema (string,
    enum, const, integer, number, boolean, null, array, object, a union of types, anyOf/oneOf; a
    schema without a type takes any JSON or a string). Bounds, so that every call ends: a string has
    at most `max_string_chars` characters (a schema's smaller `maxLength` is kept), an array or an
    object without properties at most `max_items` items, JSON of unknown shape nests at most
    `max_depth` deep, and at most `max_calls` calls follow each other (None: any number).

    Not enforced (the parser does not check them either): `minLength`, `pattern`, `format`, number
    ranges, `uniqueItems`; `$ref`, `allOf` and unknown types take any value. A string value cannot
    have a line that starts with `<`. Tools named twice count once; a tool whose name, or a required
    parameter's, holds a NUL or a lone surrogate (nothing can write it) is left out. Raises
    ValueError when no tool is left.
    """
    if max_string_chars < 0 or max_items < 1 or max_depth < 0 or (max_calls is not None and max_calls < 1):
        raise ValueError("call_grammar: a bound is out of range")
    builder = _Grammar(max_string_chars, max_items, max_depth)
    functions = []
    seen: set[str] = set()
    for tool in tools:
        if tool.name in seen:
            continue
        seen.add(tool.name)
        rule = builder.function(tool)
        if rule is not None:
            functions.append(rule)
    if not functions:
        raise ValueError("call_grammar: no tool can be called")
    more = "*" if max_calls is None else f"{{0,{max_calls - 1}}}" if max_calls > 1 else ""
    root = "call" if not more else f'call ("\\n" call){more}'
    opening, closing = _literal(OPEN + "\n"), _literal(CLOSE)
    head = [f"root ::= {root}", f"call ::= {opening} ( {' | '.join(functions)} ) {closing}"]
    return "\n".join(head + [f"{name} ::= {body}" for name, body in builder.rules.items()]) + "\n"


def _literal(text: str) -> str:
    """`text` as a GBNF string literal: quotes, backslashes and anything unprintable escaped."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02X}")
        elif not ch.isprintable() or 0xD800 <= code <= 0xDFFF:
            out.append(f"\\u{code:04X}" if code <= 0xFFFF else f"\\U{code:08X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _writable(name: str) -> bool:
    """Whether a model can write `name` (llama.cpp's grammar never matches NUL or a lone surrogate)."""
    return not any(ch == "\0" or 0xD800 <= ord(ch) <= 0xDFFF for ch in name)


def _properties(schema: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A tool's parameters and the required ones; a required name missing from `properties` takes anything."""
    props = schema.get("properties")
    properties = dict(props) if isinstance(props, Mapping) else {}
    req = schema.get("required")
    required = [r for r in req if isinstance(r, str)] if isinstance(req, list | tuple) else []
    for name in required:
        properties.setdefault(name, {})
    return properties, required


class _Grammar:
    """Builds the grammar's rules; rules for the same schema in the same place are shared."""

    def __init__(self, max_string_chars: int, max_items: int, max_depth: int) -> None:
        self.max_string_chars = max_string_chars
        self.max_items = max_items
        self.max_depth = max_depth
        self.rules: dict[str, str] = {}
        self._memo: dict[str, str] = {}

    def _rule(self, key: str, base: str, body: str | None = None) -> str:
        """The rule named for `key`, made once (with `body`, or filled in later by the caller)."""
        name = self._memo.get(key)
        if name is None:
            name = f"{base}-{len(self.rules)}"
            self._memo[key] = name
            self.rules[name] = body or ""
        return name

    def _fixed(self, name: str, body: str) -> str:
        self.rules.setdefault(name, body)
        return name

    # tools and parameters

    def function(self, tool: ToolSpec) -> str | None:
        if not _writable(tool.name):
            return None
        properties, required = _properties(tool.parameters)
        parts = [_literal(f"{_FUNCTION}{tool.name}>\n")]
        for key, schema in properties.items():
            if not _writable(key):
                if key in required:
                    return None
                continue
            opening, closing = _literal(f"{_PARAMETER}{key}>\n"), _literal(_PARAMETER_END + "\n")
            block = f"{opening} {self.value(schema, raw=True)} {closing}"
            if key in required:
                parts.append(block)
            else:
                parts.append(f"( {block} )?")
        parts.append(_literal(_FUNCTION_END + "\n"))
        return self._rule(f"fn:{len(self.rules)}", "fn", " ".join(parts))

    # values

    def value(self, schema: Any, *, raw: bool) -> str:
        """The rule for a value of `schema`: raw (a parameter's, strings unquoted) or inside JSON."""
        if not isinstance(schema, Mapping):
            return self.anything(raw)
        key = f"v:{raw}:{json.dumps(schema, sort_keys=True, default=repr)}"
        if key in self._memo:
            return self._memo[key]
        name = self._rule(key, "v")
        self.rules[name] = self._value_body(schema, raw)
        return name

    def _value_body(self, schema: Mapping[str, Any], raw: bool) -> str:
        if "const" in schema:
            return self._constant(schema["const"], raw)
        enum = schema.get("enum")
        if isinstance(enum, list | tuple) and enum:
            return " | ".join(dict.fromkeys(self._constant(v, raw) for v in enum))
        for combinator in ("anyOf", "oneOf"):
            subs = schema.get(combinator)
            if isinstance(subs, list | tuple) and subs:
                return " | ".join(dict.fromkeys(self.value(sub, raw=raw) for sub in subs))
        kind = schema.get("type")
        if kind is None:
            kind = "object" if "properties" in schema else "array" if "items" in schema else None
        kinds = [kind] if isinstance(kind, str) else list(kind) if isinstance(kind, list | tuple) else []
        if not kinds:
            return self.anything(raw)
        return " | ".join(dict.fromkeys(self._typed(str(k), schema, raw) for k in kinds))

    def _constant(self, value: Any, raw: bool) -> str:
        if raw and isinstance(value, str):
            return _literal(value)
        return _literal(json.dumps(value, ensure_ascii=False))

    def _typed(self, kind: str, schema: Mapping[str, Any], raw: bool) -> str:
        if kind == "string":
            cap = self.max_string_chars
            limit = schema.get("maxLength")
            if isinstance(limit, int) and not isinstance(limit, bool) and 0 <= limit < cap:
                cap = limit
            return self.raw_string(cap) if raw else self.json_string(cap)
        if kind == "integer":
            return self.integer()
        if kind == "number":
            return self.number()
        if kind == "boolean":
            return self._fixed("bool", '"true" | "false"')
        if kind == "null":
            return self._fixed("null", '"null"')
        if kind == "array":
            return self.array(schema)
        if kind == "object":
            return self.object(schema)
        return self.anything(raw)

    def anything(self, raw: bool) -> str:
        """Any JSON (bounded); for a parameter, any string too."""
        json_any = self.json_any(self.max_depth)
        if not raw:
            return json_any
        return self._fixed("any-raw", f"{json_any} | {self.raw_string(self.max_string_chars)}")

    def raw_string(self, cap: int) -> str:
        """A parameter's string: up to `cap` characters, no line starting with `<`.

        Two rules per length left: `rs-sK` at the value's start or after a newline (no `<` next),
        `rs-tK` after any other character. Counting this way keeps the cap exact.
        """
        if cap == 0:
            return self._fixed("rs-s0", '""')
        for k in range(1, cap + 1):
            if f"rs-s{k}" in self.rules:
                continue
            after_nl = '"\\n"' if k == 1 else f'"\\n" rs-s{k - 1}'
            plain = "[^<\\n]" if k == 1 else f"[^<\\n] rs-t{k - 1}"
            other = "[^\\n]" if k == 1 else f"[^\\n] rs-t{k - 1}"
            self.rules[f"rs-s{k}"] = f"| {after_nl} | {plain}"
            self.rules[f"rs-t{k}"] = f"| {after_nl} | {other}"
        return f"rs-s{cap}"

    def json_string(self, cap: int) -> str:
        char = self._fixed(
            "jchar",
            # (no `\u` escape of a lone surrogate: it would not survive being written out as UTF-8)
            '[^"\\\\\\x00-\\x1F] | "\\\\" ( ["\\\\/bfnrt] | "u" ( [0-9a-cA-Ce-fE-F] hex{3} | [dD] [0-7] hex{2} ) )',
        )
        self._fixed("hex", "[0-9a-fA-F]")
        body = f'"\\"" {char}{{0,{cap}}} "\\""' if cap else '"\\"\\""'
        return self._fixed(f"jstr{cap}", body)

    def integer(self) -> str:
        return self._fixed("int", f'"-"? ( "0" | [1-9] [0-9]{{0,{MAX_INT_DIGITS - 1}}} )')

    def number(self) -> str:
        self.integer()
        frac = f'( "." [0-9]{{1,{MAX_INT_DIGITS}}} )?'
        exp = "( [eE] [-+]? [0-9]{1,2} )?"  # (three digits could overflow a float)
        return self._fixed("num", f"int {frac} {exp}")

    def _separators(self) -> tuple[str, str]:
        # The template writes history JSON with `, ` and `: `: the model may copy that, or write none.
        return self._fixed("comma", '"," " "?'), self._fixed("colon", '":" " "?')

    def array(self, schema: Mapping[str, Any]) -> str:
        items = schema.get("items", {})
        item = self.value(items, raw=False) if isinstance(items, Mapping) else self.json_any(self.max_depth - 1)
        low = schema.get("minItems", 0)
        high = schema.get("maxItems", self.max_items)
        low = low if isinstance(low, int) and not isinstance(low, bool) and low > 0 else 0
        high = high if isinstance(high, int) and not isinstance(high, bool) and high >= 0 else self.max_items
        high = max(low, min(high, self.max_items))
        key = f"arr:{item}:{low}:{high}"
        if key in self._memo:
            return self._memo[key]
        return self._rule(key, "arr", self._list('"["', item, '"]"', low, high))

    def _list(self, opening: str, item: str, closing: str, low: int, high: int) -> str:
        comma, _ = self._separators()
        if high == 0:
            return f"{opening} {closing}"
        more = f" ( {comma} {item} ){{{max(low - 1, 0)},{high - 1}}}" if high > 1 else ""
        body = f"{item}{more}"
        return f"{opening} {body} {closing}" if low > 0 else f"{opening} ( {body} )? {closing}"

    def object(self, schema: Mapping[str, Any]) -> str:
        props = schema.get("properties")
        if not isinstance(props, Mapping) or not props:
            extra = schema.get("additionalProperties")
            value = self.value(extra, raw=False) if isinstance(extra, Mapping) else self.json_any(self.max_depth - 1)
            return self._generic_object(value)
        properties, required = _properties(schema)
        _, colon = self._separators()
        members = [
            (f"{_literal(json.dumps(k, ensure_ascii=False))} {colon} {self.value(s, raw=False)}", k in required)
            for k, s in properties.items()
            if _writable(k)
        ]
        name = self._rule(f"obj:{len(self.rules)}", "obj")
        self.rules[name] = f'"{{" {self._members(name, members, 0, True)} "}}"'
        return name

    def _members(self, base: str, members: list[tuple[str, bool]], i: int, first: bool) -> str:
        """Members `i`… of an object in order, required ones always, each after a comma unless `first`."""
        if i == len(members):
            return ""
        comma, _ = self._separators()
        member, required = members[i]
        head = f"{'' if first else comma + ' '}{member} {self._members(base, members, i + 1, False)}".strip()
        if required:
            return f"( {head} )"
        name = f"{base}-{i}-{'f' if first else 'r'}"
        if name not in self.rules:
            self.rules[name] = ""  # (reserved before the recursion below names it again)
            skip = self._members(base, members, i + 1, first)
            self.rules[name] = f"{head} | {skip}" if skip else f"| {head}"
        return name

    def _generic_object(self, value: str) -> str:
        _, colon = self._separators()
        key = f"gobj:{value}"
        if key in self._memo:
            return self._memo[key]
        member = self._rule(f"gmem:{value}", "gmem", f"{self.json_string(self.max_string_chars)} {colon} {value}")
        return self._rule(key, "gobj", self._list('"{"', member, '"}"', 0, self.max_items))

    def json_any(self, depth: int) -> str:
        """Any JSON value nested at most `depth` deep."""
        depth = max(depth, 0)
        name = f"jany{depth}"
        if name in self.rules:
            return name
        scalars = f"{self.json_string(self.max_string_chars)} | {self.number()} | bool | null"
        self._fixed("bool", '"true" | "false"')
        self._fixed("null", '"null"')
        if depth == 0:
            return self._fixed(name, scalars)
        self.rules[name] = ""
        inner = self.json_any(depth - 1)
        array = self._list('"["', inner, '"]"', 0, self.max_items)
        self.rules[name] = f"{scalars} | {array} | {self._generic_object(inner)}"
        return name


# -- the parser ------------------------------------------------------------------------------------


def parse_call(block: str, tools: Sequence[ToolSpec]) -> ToolCall:
    """The call in one `<tool_call>…</tool_call>` block, its arguments typed by the tool's schema.

    String values are the raw text (less the newline the format puts on either side); others are
    JSON, booleans also `True`/`False` and null also `None` (how the template renders history).
    Where a type union holds `string`, text that reads as one of its other types is that type.
    Raises ValueError with a short reason: an unknown tool, an unknown, repeated or missing required
    parameter, or a value not valid for its schema.
    """
    text = block.strip()
    if not text.startswith(OPEN) or not text.endswith(CLOSE):
        raise ValueError(f"not a {OPEN} block")
    body = text[len(OPEN) : len(text) - len(CLOSE)].strip()
    if not body.startswith(_FUNCTION):
        raise ValueError(f"no {_FUNCTION}…> in the call")
    rest = body[len(_FUNCTION) :]
    by_name: dict[str, ToolSpec] = {}
    for t in tools:
        by_name.setdefault(t.name, t)  # (as in the grammar: a name given twice is the first tool's)
    tool = _longest(rest, 0, by_name)
    if tool is None:
        raise ValueError(f"unknown tool {_shown(rest.split('>', 1)[0])}")
    rest = rest[len(tool.name) + 1 :]
    if not rest.rstrip().endswith(_FUNCTION_END):
        raise ValueError(f"the call does not end with {_FUNCTION_END}")
    rest = rest.rstrip()[: -len(_FUNCTION_END)]
    properties, required = _properties(tool.parameters)
    arguments: dict[str, Any] = {}
    pos = 0
    while True:
        while pos < len(rest) and rest[pos] in " \t\r\n":
            pos += 1
        if pos >= len(rest):
            break
        if not rest.startswith(_PARAMETER, pos):
            raise ValueError(f"unexpected text in the call: {_shown(rest[pos:])}")
        pos += len(_PARAMETER)
        key = _longest(rest, pos, {k: k for k in properties})
        if key is None:
            raise ValueError(f"unknown parameter {_shown(rest[pos:].split('>', 1)[0])} for {tool.name}")
        pos += len(key) + 1
        end = rest.find(_PARAMETER_END, pos)
        if end < 0:  # (an empty value written without its newline)
            end = rest.find(_PARAMETER_END[1:], pos)
            if end < 0:
                raise ValueError(f"parameter {_shown(key)} is not closed")
            after = end + len(_PARAMETER_END) - 1
        else:
            after = end + len(_PARAMETER_END)
        value = rest[pos:end]
        pos = after
        if value.startswith("\n"):
            value = value[1:]
        if key in arguments:
            raise ValueError(f"parameter {_shown(key)} is given twice")
        try:
            arguments[key] = _read(value, properties[key])
        except _Invalid as e:
            raise ValueError(f"parameter {_shown(key)}: {e}") from None
    missing = [k for k in required if k not in arguments]
    if missing:
        raise ValueError(f"missing required parameter {_shown(missing[0])} for {tool.name}")
    return ToolCall(tool.name, arguments)


def _longest(text: str, pos: int, names: Mapping[str, Any]) -> Any:
    """The entry whose name, then `>`, starts `text` at `pos` (the longest such name), or None."""
    best: str | None = None
    for name in names:
        if text.startswith(name + ">", pos) and (best is None or len(name) > len(best)):
            best = name
    return None if best is None else names[best]


def _shown(text: str, limit: int = 40) -> str:
    """`text` quoted for a one-line message, cut to `limit` characters."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


class _Invalid(Exception):
    """A value that does not fit its schema (the reason)."""


def _read(raw: str, schema: Any) -> Any:
    """A parameter's raw text as the value its schema says."""
    if not isinstance(schema, Mapping):
        return _read_any(raw)
    choices = _choices(schema)
    if choices is not None:
        for choice in choices:
            if isinstance(choice, str) and raw == choice:
                return choice
        try:
            value = _json(raw)
        except _Invalid:
            value = _PYTHON.get(raw.strip(), raw)  # (how the template renders True, False and None)
        for choice in choices:
            if _same(value, choice):
                return choice
        raise _Invalid(f"{_shown(raw)} is not one of {_shown(', '.join(map(str, choices)), 60)}")
    subs = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(subs, list | tuple) and subs:
        return _first_fit(raw, [(sub, _is_string_schema(sub)) for sub in subs])
    kinds = _kinds(schema)
    if kinds is None:
        return _read_any(raw)
    errors: list[str] = []
    for kind in sorted(kinds, key=lambda k: k == "string"):  # (strings last: they take any text)
        try:
            return _read_kind(raw, kind, schema)
        except _Invalid as e:
            errors.append(str(e))
    raise _Invalid(errors[0] if len(errors) == 1 else f"expected {' or '.join(kinds)}, got {_shown(raw)}")


_PYTHON: dict[str, Any] = {"True": True, "False": False, "None": None}


def _first_fit(raw: str, subs: list[tuple[Any, bool]]) -> Any:
    errors = []
    for sub, _ in sorted(subs, key=lambda s: s[1]):
        try:
            return _read(raw, sub)
        except _Invalid as e:
            errors.append(str(e))
    raise _Invalid(errors[0] if len(errors) == 1 else f"no alternative fits {_shown(raw)}")


def _is_string_schema(schema: Any) -> bool:
    return isinstance(schema, Mapping) and schema.get("type") == "string"


def _choices(schema: Mapping[str, Any]) -> list[Any] | None:
    if "const" in schema:
        return [schema["const"]]
    enum = schema.get("enum")
    return list(enum) if isinstance(enum, list | tuple) and enum else None


def _kinds(schema: Mapping[str, Any]) -> list[str] | None:
    kind = schema.get("type")
    if kind is None:
        return ["object"] if "properties" in schema else ["array"] if "items" in schema else None
    if isinstance(kind, str):
        return [kind]
    if isinstance(kind, list | tuple) and kind:
        return [str(k) for k in kind]
    return None


def _read_any(raw: str) -> Any:
    try:
        return _json(raw)
    except _Invalid:
        return raw


def _read_kind(raw: str, kind: str, schema: Mapping[str, Any]) -> Any:
    text = raw.strip()
    if kind == "string":
        return raw
    if kind == "boolean":
        if text in ("true", "True"):
            return True
        if text in ("false", "False"):
            return False
        raise _Invalid(f"expected true or false, got {_shown(raw)}")
    if kind == "null":
        if text in ("null", "None"):
            return None
        raise _Invalid(f"expected null, got {_shown(raw)}")
    if kind in ("integer", "number", "array", "object"):
        try:
            value = _json(text)
        except _Invalid:
            article = "an" if kind in ("integer", "array", "object") else "a"
            raise _Invalid(f"expected {article} {kind}, got {_shown(raw)}") from None
        return _checked(value, {**schema, "type": kind}, "")
    return _read_any(raw)  # (a type this parser does not know: take what is there)


def _json(text: str) -> Any:
    """`text` as JSON (NaN and Infinity refused), else _Invalid."""

    def refuse(name: str) -> Any:
        raise ValueError(name)

    try:
        return json.loads(text, parse_constant=refuse)
    except (ValueError, RecursionError):
        raise _Invalid(f"not JSON: {_shown(text)}") from None


def _same(a: Any, b: Any) -> bool:
    """JSON equality: `True` is not `1`."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, list) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    numbers = isinstance(a, int | float) and isinstance(b, int | float)
    return (type(a) is type(b) or numbers) and a == b


def _checked(value: Any, schema: Any, where: str) -> Any:
    """`value` (parsed JSON) when it fits `schema`, with integral floats made int where an integer is asked."""
    if not isinstance(schema, Mapping):
        return value
    at = f" at {where}" if where else ""
    choices = _choices(schema)
    if choices is not None:
        for choice in choices:
            if _same(value, choice):
                return value
        raise _Invalid(f"{_shown(json.dumps(value, ensure_ascii=False))}{at} is not an allowed value")
    subs = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(subs, list | tuple) and subs:
        for sub in subs:
            try:
                return _checked(value, sub, where)
            except _Invalid:
                pass  # (the next alternative may fit)
        raise _Invalid(f"no alternative fits{at}")
    kinds = _kinds(schema)
    if kinds is None:
        return value
    for kind in kinds:
        fitted = _fit(value, kind, schema, where)
        if fitted is not _NO:
            return fitted
    raise _Invalid(f"expected {' or '.join(kinds)}{at}, got {_shown(json.dumps(value, ensure_ascii=False))}")


_NO = object()


def _fit(value: Any, kind: str, schema: Mapping[str, Any], where: str) -> Any:
    if kind == "string":
        return value if isinstance(value, str) else _NO
    if kind == "boolean":
        return value if isinstance(value, bool) else _NO
    if kind == "null":
        return value if value is None else _NO
    if kind == "integer":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)
        return _NO
    if kind == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        return value if ok else _NO
    if kind == "array":
        if not isinstance(value, list):
            return _NO
        items = schema.get("items", {})
        return [_checked(v, items, f"{where}[{i}]") for i, v in enumerate(value)]
    if kind == "object":
        if not isinstance(value, dict):
            return _NO
        props = schema.get("properties")
        properties = props if isinstance(props, Mapping) else {}
        req = schema.get("required")
        for name in req if isinstance(req, list | tuple) else ():
            if name not in value:
                raise _Invalid(f"missing {_shown(str(name))} in {where or 'the object'}")
        extra = schema.get("additionalProperties", True)
        out = {}
        for k, v in value.items():
            if k in properties:
                out[k] = _checked(v, properties[k], f"{where}.{k}" if where else k)
            elif extra is False:
                raise _Invalid(f"unknown key {_shown(k)} in {where or 'the object'}")
            else:
                out[k] = _checked(v, extra, f"{where}.{k}" if where else k)
        return out
    return value


# -- the splitter ----------------------------------------------------------------------------------


class CallSplitter:
    """Turns a reply's answer text into `Text`, `ToolCall` and `Notice` events.

    Text outside a call passes through (only a tail that could begin `<tool_call>`, and the
    whitespace before it, is held back); a call is held until its `</tool_call>` and comes out as one
    `ToolCall`, or as a `Notice` when it cannot be read; its markup is never shown. Whitespace
    right after a call is dropped, and so is whitespace right before one.
    """

    def __init__(self, tools: Sequence[ToolSpec]) -> None:
        """Read calls of `tools`."""
        self.tools = tuple(tools)
        self.calls: list[ToolCall] = []
        """The calls read so far."""
        self.in_call = False
        """Whether a call has begun and not yet ended."""
        self._buf = ""
        self._scan = 0  # in a call: where the search for its end goes on from
        self._after_call = False  # drop the whitespace that follows a call

    def feed(self, piece: str) -> Iterator[Text | ToolCall | Notice]:
        """Consume one piece of the answer; yield what can be decided so far."""
        self._buf += piece
        while self._buf:
            if self.in_call:
                end = self._buf.find(_CALL_END, self._scan)
                if end < 0:
                    self._scan = max(0, len(self._buf) - len(_CALL_END) + 1)
                    return
                end += len(_CALL_END)
                block, self._buf = self._buf[:end], self._buf[end:]
                self.in_call, self._scan, self._after_call = False, 0, True
                yield self._read(block)
                continue
            if self._after_call:
                self._buf = self._buf.lstrip()
                if not self._buf:
                    return
            idx = self._buf.find(OPEN)
            if idx >= 0:
                yield from self._text(self._buf[:idx].rstrip())
                self._buf, self.in_call, self._scan = self._buf[idx:], True, len(OPEN)
                continue
            # Hold back a tail that could begin the tag, and the whitespace before it.
            cut = len(self._buf) - partial_tag(self._buf, OPEN)
            cut = len(self._buf[:cut].rstrip())
            out, self._buf = self._buf[:cut], self._buf[cut:]
            yield from self._text(out)
            return

    def flush(self) -> Iterator[Text | ToolCall | Notice]:
        """End of the reply: an unfinished call becomes a Notice, held-back text a Text."""
        rest, self._buf = self._buf, ""
        if self.in_call:
            self.in_call, self._scan = False, 0
            if rest.rstrip().endswith(CLOSE):  # (its `</tool_call>` did not start a line)
                yield self._read(rest.rstrip())
            else:
                yield Notice("the model's tool call was cut off before it ended; it was dropped")
            return
        if self._after_call:
            rest = rest.lstrip()
        yield from self._text(rest)

    def _text(self, text: str) -> Iterator[Text]:
        if text:
            self._after_call = False
            yield Text(text)

    def _read(self, block: str) -> ToolCall | Notice:
        try:
            call = parse_call(block, self.tools)
        except ValueError as e:
            return Notice(f"the model's tool call could not be read ({e}); it was dropped")
        self.calls.append(call)
        return call


__all__ = ["CLOSE", "MAX_INT_DIGITS", "OPEN", "CallSplitter", "call_grammar", "parse_call"]
