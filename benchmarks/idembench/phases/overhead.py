"""Phase ``overhead``: first executions, a fresh key per request, bare against each guard.

Every server is warmed up first; then each guarded slot runs between two bare slots, round
after round (see ``bracketed``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..plan import BARE, LABELS
from ..report import say, table
from . import bracketed

if TYPE_CHECKING:
    from ..bench import Bench
    from ..processes import Server


def run(bench: Bench, servers: dict[str, Server]) -> None:
    plan = bench.plan
    say(f"Warming up {len(servers)} servers ...")
    for server in servers.values():
        bench.measure(server, "fresh", plan.warmup)
    samples, ratios = bracketed.measure(
        bench,
        servers,
        dict.fromkeys(bench.guarded(servers), "fresh"),
        plan.seconds,
        plan.rounds,
    )
    rows, found = bracketed.ratio_rows(samples, ratios, LABELS[BARE])
    bench.results["overhead"] = found
    bench.show(
        table(
            f"Overhead: first executions, a fresh key per request ({plan.clients} clients, "
            f"{plan.workers} gunicorn workers, {plan.rounds} rounds x {plan.seconds:g} s "
            "per variant, each slot between two bare slots; x bare = median over the "
            "rounds of slot / mean of its two bare slots)",
            bracketed.HEADERS,
            rows,
        )
    )
