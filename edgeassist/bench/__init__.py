"""The latency bench: the same engine and Conversation as the front ends, a raw llama.cpp baseline, and reports.

Modules: `measure` runs it, `raw` is the baseline loop, `stats` the percentiles, `analysis` the
summaries, verdict and recommendation, `results` the typed record, `store` its JSON file (save,
load), `schema` its JSON schema, `report` the terminal table, histogram, markdown and comparison,
`voice` the hook the voice pipeline fills, `picture` the picture of the image turns (`--image`).
No Textual here: the CLI and any other front end render the result.
"""

from __future__ import annotations

from edgeassist.bench.measure import BenchPlan, BenchTarget, Progress, run_bench
from edgeassist.bench.results import SCHEMA, BenchResult

__all__ = ["SCHEMA", "BenchPlan", "BenchResult", "BenchTarget", "Progress", "run_bench"]
