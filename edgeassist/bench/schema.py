"""The JSON schema of bench results, generated from the result dataclasses, and a small validator.

`python -m edgeassist.bench.schema` prints the schema; `docs/bench-schema.json` is its output
(tests/test_bench.py fails when the file is stale). Field descriptions are the fields' docstrings.
The validator covers the part of JSON Schema the generated schema uses (type, properties,
required, additionalProperties, items, enum, anyOf, $ref), so no extra dependency is needed.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import textwrap
import types
import typing
from functools import cache
from typing import Any, Literal

from edgeassist.bench.results import SCHEMA, BenchResult

_DIALECT = "https://json-schema.org/draft/2020-12/schema"


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstrings written under each field of a dataclass (attribute docstrings)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = inspect.cleandoc(nxt.value.value)
    return docs


def json_schema() -> dict[str, Any]:
    """The JSON schema (draft 2020-12) of a `BenchResult` written with `--json`."""
    defs: dict[str, Any] = {}
    root = _object_schema(BenchResult, defs)
    root["properties"]["schema"] = {"const": SCHEMA, "description": root["properties"]["schema"]["description"]}
    return {
        "$schema": _DIALECT,
        "$id": f"urn:{SCHEMA.replace('/', ':')}",
        "title": "edgeassist bench result",
        **{k: v for k, v in root.items() if k != "title"},
        "$defs": dict(sorted(defs.items())),
    }


def _object_schema(cls: type, defs: dict[str, Any]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    props: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        prop = _type_schema(hints[f.name], defs)
        if f.name in docs:
            prop = {**prop, "description": docs[f.name]}
        props[f.name] = prop
    return {
        "title": cls.__name__,
        "description": inspect.cleandoc(cls.__doc__ or ""),
        "type": "object",
        "properties": props,
        "required": [f.name for f in dataclasses.fields(cls)],
        "additionalProperties": False,
    }


def _type_schema(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        inner = _type_schema(args[0], defs) if len(args) == 1 else {"anyOf": [_type_schema(a, defs) for a in args]}
        return {"anyOf": [inner, {"type": "null"}]}
    if origin is list:
        return {"type": "array", "items": _type_schema(typing.get_args(tp)[0], defs)}
    if origin is dict:
        return {"type": "object", "additionalProperties": _type_schema(typing.get_args(tp)[1], defs)}
    if origin is Literal:
        return {"enum": list(typing.get_args(tp))}
    if dataclasses.is_dataclass(tp):
        assert isinstance(tp, type)
        if tp.__name__ not in defs:
            defs[tp.__name__] = {}  # placeholder against recursion
            defs[tp.__name__] = _object_schema(tp, defs)
        return {"$ref": f"#/$defs/{tp.__name__}"}
    simple = {float: "number", int: "integer", str: "string", bool: "boolean"}
    if tp in simple:
        return {"type": simple[tp]}
    raise TypeError(f"no JSON schema for {tp!r}")


def validate(data: Any, schema: dict[str, Any] | None = None) -> list[str]:
    """Where `data` breaks `schema` (default: the bench schema), one message per problem; empty when valid."""
    schema = schema if schema is not None else json_schema()
    errors: list[str] = []
    _check(data, schema, schema, "$", errors)
    return errors


def _check(data: Any, node: dict[str, Any], root: dict[str, Any], where: str, errors: list[str]) -> None:
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        _check(data, root["$defs"][name], root, where, errors)
        return
    if "anyOf" in node:
        for option in node["anyOf"]:
            trial: list[str] = []
            _check(data, option, root, where, trial)
            if not trial:
                return
        errors.append(f"{where}: {json.dumps(data)[:60]} matches none of the allowed types")
        return
    if "const" in node and data != node["const"]:
        errors.append(f"{where}: expected {node['const']!r}, got {data!r}")
    if "enum" in node and data not in node["enum"]:
        errors.append(f"{where}: {data!r} is not one of {node['enum']}")
    kind = node.get("type")
    ok = {
        None: True,
        "object": isinstance(data, dict),
        "array": isinstance(data, list),
        "string": isinstance(data, str),
        "boolean": isinstance(data, bool),
        "integer": isinstance(data, int) and not isinstance(data, bool),
        "number": isinstance(data, int | float) and not isinstance(data, bool),
        "null": data is None,
    }[kind]
    if not ok:
        errors.append(f"{where}: expected {kind}, got {type(data).__name__}")
        return
    if kind == "object":
        props = node.get("properties", {})
        for key in node.get("required", []):
            if key not in data:
                errors.append(f"{where}: missing {key!r}")
        extra = node.get("additionalProperties", True)
        for key, value in data.items():
            if key in props:
                _check(value, props[key], root, f"{where}.{key}", errors)
            elif extra is False:
                errors.append(f"{where}: unexpected key {key!r}")
            elif isinstance(extra, dict):
                _check(value, extra, root, f"{where}.{key}", errors)
    elif kind == "array" and "items" in node:
        for i, value in enumerate(data):
            _check(value, node["items"], root, f"{where}[{i}]", errors)


if __name__ == "__main__":
    print(json.dumps(json_schema(), indent=2))
