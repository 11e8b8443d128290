"""Phase ``profile``: where a guarded first execution spends its time, step by step.

``bench_profile`` times each step of idempotent-post's engine against the bare view in one
process (Django's test client, the variants taking turns request by request) and prints the
median milliseconds per step and variant as JSON; ``rows`` turns that into the table.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from ..plan import BARE, IP_CACHE, IP_DATABASE
from ..report import fmt, table

if TYPE_CHECKING:
    from ..bench import Bench

REQUEST = "request, in all (test client)"

SHORT = {
    BARE: "bare",
    IP_DATABASE: "database lock",
    IP_CACHE: "Redis lock",
    f"{IP_DATABASE}, DOUBLE_SUBMIT_WINDOW=0": "database lock, O2 watch off",
}


def rows(found: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The variants measured (``SELECT 1`` aside) and the table's rows.

    One row per step that any variant went through, in ``found["order"]``, ``-`` where a
    variant has no such step; then each variant's request time over bare's, and bare's
    request time over each variant's (its throughput relative to bare, in process).
    """
    medians = found["median_ms"]
    names = [name for name in medians if name != "SELECT 1"]
    table_rows = []
    for label in found["order"]:
        if any(label in medians[name] for name in names):
            table_rows.append(
                [label, *(fmt(medians[name].get(label, math.nan), 2) for name in names)]
            )
    bare = medians[BARE][REQUEST]
    table_rows.append(
        [
            "guard's cost (request - bare request)",
            *(fmt(medians[name][REQUEST] - bare, 2) for name in names),
        ]
    )
    table_rows.append(
        [
            "x bare throughput, in-process",
            *(f"{bare / medians[name][REQUEST]:.2f}" for name in names),
        ]
    )
    return names, table_rows


def run(bench: Bench) -> None:
    plan = bench.plan
    found = json.loads(
        bench.manage("bench_profile", "--requests", str(plan.profile_requests)).splitlines()[-1]
    )
    bench.results["profile"] = found
    names, table_rows = rows(found)
    round_trip = found["median_ms"]["SELECT 1"]["one SQL round trip"]
    bench.show(
        table(
            f"Where the time goes: ms per first execution, step by step (Django test "
            f"client in one process; median of {plan.profile_requests} requests per variant, "
            f"the variants taking turns request by request; one SELECT 1 round trip: "
            f"{round_trip:.2f} ms)",
            ["step", *(SHORT.get(name, name) for name in names)],
            table_rows,
        )
    )
