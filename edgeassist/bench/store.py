"""Bench results on disk: write a result as JSON, read one back with its conclusions recomputed.

pydantic does the conversion both ways (`edgeassist.bench.results.result_adapter`). Reading is strict,
as JSON is: a number where a string belongs, or a string where a number belongs, is an error, not a guess.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edgeassist.bench.analysis import conclude
from edgeassist.bench.results import READABLE, SCHEMA, BenchResult, result_adapter
from edgeassist.errors import UsageError

_UNKNOWN_KEY = ("unexpected_keyword_argument", "extra_forbidden")
"""pydantic's error types for a key the schema does not have (on a dataclass, on a model)."""


def to_json(result: BenchResult) -> dict[str, Any]:
    """`result` as a JSON-ready dict (the schema in docs/bench-schema.json)."""
    data: dict[str, Any] = result_adapter().dump_python(result, mode="json")
    return data


def from_json(data: Any) -> BenchResult:
    """A `BenchResult` from `to_json` output, as is (nothing recomputed); raises pydantic's ValidationError."""
    # Validated as JSON text: strict JSON mode takes objects for the dataclasses and ints for floats.
    return result_adapter().validate_json(json.dumps(data), strict=True)


def save_result(result: BenchResult, path: Path) -> None:
    """Write `result` as JSON (the schema in docs/bench-schema.json)."""
    try:
        path.write_text(json.dumps(to_json(result), indent=1) + "\n", encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror}") from None


def load_result(path: Path) -> BenchResult:
    """Read a result written by `edgeassist bench --json`, summaries recomputed; a wrong file is a one-line error.

    Keys this code does not know (a file from a newer edgeassist of the same schema) are ignored.
    Files of every schema version in `READABLE` load: the later ones only added fields, with defaults.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None
    except ValueError as e:
        raise UsageError(f"{path} is not JSON: {e}") from None
    schema = data.get("schema") if isinstance(data, dict) else None
    if not isinstance(schema, str) or not schema.startswith("edgeassist-bench/"):
        raise UsageError(f'{path} is not an edgeassist bench result (no "schema": "{SCHEMA}")')
    if schema not in READABLE:
        raise UsageError(f"{path} is a {schema} result; this edgeassist reads {' and '.join(READABLE)}")
    # The derived parts are recomputed from the samples, so files from older code read the same way.
    data.pop("recommendation", None)
    for run in data.get("runs") or []:
        if isinstance(run, dict):
            run.pop("summary", None)
    try:
        try:
            result = from_json(data)
        except ValidationError as e:
            unknown = [err["loc"] for err in e.errors() if err["type"] in _UNKNOWN_KEY]
            if len(unknown) < e.error_count():
                raise
            for loc in unknown:
                _drop(data, loc)
            result = from_json(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = error_path(first["loc"])
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        raise UsageError(f"{path} does not match the bench schema: {where}: {first['msg']}{more}") from None
    return conclude(result)


def _drop(data: Any, loc: tuple[int | str, ...]) -> None:
    for key in loc[:-1]:
        data = data[key]
    data.pop(loc[-1], None)


def error_path(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a JSON path: `$.runs[0].threads`."""
    return "$" + "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in loc)
