"""Phase ``queries``: SQL statements, writing commits and Redis round trips per request.

``bench_queries`` runs one first execution and one replay per implementation through
Django's test client (no server) and prints the counts as JSON.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..plan import LABELS
from ..processes import BenchError
from ..report import table

if TYPE_CHECKING:
    from ..bench import Bench

HEADERS = ["implementation", "first: SQL", "commits", "Redis", "replay: SQL", "commits", "Redis"]


def row(label: str, counts: dict[str, dict[str, int]]) -> list[Any]:
    """The table row of one implementation's counts (first execution, then replay)."""
    first, again = counts["first"], counts["replay"]
    return [
        label,
        first["sql"],
        first["commits"],
        first["redis"],
        again["sql"],
        again["commits"],
        again["redis"],
    ]


def run(bench: Bench) -> None:
    rows, found = [], {}
    for variant in bench.variants():
        try:
            counts = json.loads(bench.manage("bench_queries", variant=variant).splitlines()[-1])
        except (BenchError, ValueError, IndexError) as error:
            found[variant] = {"error": str(error)}
            rows.append([LABELS[variant], "error", "", "", "", "", ""])
            continue
        found[variant] = counts
        rows.append(row(LABELS[variant], counts))
    bench.results["queries"] = found
    bench.show(table("Round trips per request (one request, Django test client)", HEADERS, rows))
