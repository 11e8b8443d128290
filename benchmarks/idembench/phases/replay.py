"""Phase ``replay``: one already-executed key per client sent again and again.

Measured like the overhead (see ``bracketed``), against bare first executions; afterwards
every replayed key must still have exactly one order, or the replay ran the view again.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..plan import BARE, LABELS
from ..report import table
from . import bracketed

if TYPE_CHECKING:
    from ..bench import Bench
    from ..processes import Server


def view_reran(counts: dict[str, int], keys: Iterable[list[tuple[str, int]]]) -> bool:
    """Whether any of the replayed keys (per client, (key, product) pairs) has other than
    exactly one order."""
    return any(counts[k] != 1 for ks in keys for k, _ in ks)


def run(bench: Bench, servers: dict[str, Server]) -> None:
    plan = bench.plan
    guarded = bench.guarded(servers)
    keys = {name: bench.replay_keys(servers[name]) for name in guarded}
    samples, ratios = bracketed.measure(
        bench,
        servers,
        dict.fromkeys(guarded, "replay"),
        plan.replay_seconds,
        plan.replay_rounds,
        keys,
    )
    # A replay must not run the view: each replayed key still has exactly one order.
    counts = bench.orders_per_key(k for name in guarded for ks in keys[name] for k, _ in ks)
    rows, found = bracketed.ratio_rows(samples, ratios, LABELS[BARE] + " (first executions)")
    rows[0].append("-")
    for row, name in zip(rows[1:], guarded, strict=True):
        reran = view_reran(counts, keys[name])
        found[name]["view_reran"] = reran
        row.append("YES" if reran else "no")
    bench.results["replay"] = found
    bench.show(
        table(
            f"Replay: the same key again and again, against bare first executions "
            f"({plan.clients} clients, {plan.replay_rounds} rounds x "
            f"{plan.replay_seconds:g} s per variant, each slot between two bare slots)",
            [*bracketed.HEADERS, "view re-ran"],
            rows,
        )
    )
