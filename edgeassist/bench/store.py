"""Bench results on disk: write a result as JSON, read one back with its conclusions recomputed."""

from __future__ import annotations

import json
from pathlib import Path

from edgeassist.bench.analysis import conclude
from edgeassist.bench.results import SCHEMA, BenchResult, from_json_dict, to_json_dict
from edgeassist.errors import UsageError


def save_result(result: BenchResult, path: Path) -> None:
    """Write `result` as JSON (the schema in docs/bench-schema.json)."""
    try:
        path.write_text(json.dumps(to_json_dict(result), indent=1) + "\n", encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror}") from None


def load_result(path: Path) -> BenchResult:
    """Read a result written by `edgeassist bench --json`, summaries recomputed; a wrong file is a one-line error."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None
    except ValueError as e:
        raise UsageError(f"{path} is not JSON: {e}") from None
    schema = data.get("schema") if isinstance(data, dict) else None
    if not isinstance(schema, str) or not schema.startswith("edgeassist-bench/"):
        raise UsageError(f'{path} is not an edgeassist bench result (no "schema": "{SCHEMA}")')
    if schema != SCHEMA:
        raise UsageError(f"{path} is a {schema} result; this edgeassist reads {SCHEMA}")
    # The derived parts are recomputed from the samples, so files from older code read the same way.
    data.pop("recommendation", None)
    for run in data.get("runs") or []:
        if isinstance(run, dict):
            run.pop("summary", None)
    try:
        result: BenchResult = from_json_dict(BenchResult, data)
    except (TypeError, ValueError) as e:
        raise UsageError(f"{path} does not match the bench schema: {str(e)[:200]}") from None
    return conclude(result)
