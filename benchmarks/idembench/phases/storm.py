"""Phase ``storm``: for each of N keys, M clients send the same request at the same instant.

Then the orders per key are counted (each order carries its key in ``note``): more than
one is a duplicate execution, none a key that was lost.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any

from .. import load
from ..plan import LABELS, token_of
from ..report import say, table

if TYPE_CHECKING:
    from ..bench import Bench
    from ..processes import Server

HEADERS = [
    "implementation",
    "keys duplicated",
    "extra orders",
    "max orders/key",
    "keys w/o order",
    "answers (status x count)",
]


def tally(keys: list[str], counts: dict[str, int], statuses: Counter[int]) -> dict[str, Any]:
    """What the orders per key of the ``keys`` sent say: keys duplicated, extra orders,
    keys without an order; and the answers the clients got."""
    return {
        "keys": len(keys),
        "keys_duplicated": sum(1 for n in counts.values() if n > 1),
        "extra_orders": sum(n - 1 for n in counts.values() if n > 1),
        "keys_without_order": sum(1 for n in counts.values() if n == 0),
        "max_orders_per_key": max(counts.values()),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


def answers(statuses: Counter[int]) -> str:
    """``201x165 409x35``: each status (0, a failed connection, as ``conn-error``) x count."""
    return " ".join(f"{status or 'conn-error'}x{n}" for status, n in sorted(statuses.items()))


def run(bench: Bench, servers: dict[str, Server]) -> None:
    plan = bench.plan
    rows, found = [], {}
    for name, server in servers.items():
        statuses: Counter[int] = Counter()
        keys = []
        for _ in range(plan.storm_keys):
            key, product = str(uuid.uuid4()), bench.rng.choice(bench.products)
            keys.append(key)
            statuses += load.storm(
                server.port, server.path(), token_of(0), key, product, plan.storm_clients
            )
        counts = bench.orders_per_key(keys)
        found[name] = tallied = tally(keys, counts, statuses)
        rows.append(
            [
                LABELS[name],
                f"{tallied['keys_duplicated']}/{len(keys)}",
                tallied["extra_orders"],
                tallied["max_orders_per_key"],
                tallied["keys_without_order"],
                answers(statuses),
            ]
        )
        say(f"  {name}: {tallied['keys_duplicated']} of {len(keys)} keys duplicated")
    bench.results["storm"] = found
    bench.show(
        table(
            f"Storm: {plan.storm_keys} keys, each sent by {plan.storm_clients} clients "
            f"at once ({plan.workers} gunicorn workers)",
            HEADERS,
            rows,
        )
    )
