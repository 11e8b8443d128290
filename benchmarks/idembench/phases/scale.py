"""Phase ``scale``: first executions and replays with 10 thousand and 1 million records.

Each size gets a database of its own (the main one's name plus ``_<size>``), filled with
``bench_fill``, and a server of its own; the sizes are alternated round by round, so the
machine's noise falls on both. The largest size's server and database stay up for the
purge.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from ..plan import IP_DATABASE, LABELS
from ..processes import Server
from ..report import fmt, say, table
from ..stats import Sample, percentile

if TYPE_CHECKING:
    from ..bench import Bench

HEADERS = ["records (before -> after)", "request", "req/s", "p50 ms", "p99 ms", "non-2xx"]
KINDS = (("fresh", "first execution"), ("replay", "replay"))


def database_url(main_url: str, size: int) -> str:
    """The URL of the database for ``size`` records: the main database's name + ``_size``."""
    parts = urlsplit(main_url)
    return urlunsplit(parts._replace(path=f"{parts.path}_{size}"))


def scale_database(bench: Bench, size: int) -> str:
    """A database of its own for ``size`` records, next to the main one."""
    url = database_url(bench.args.database_url, size)
    bench.manage("bench_resetdb", "--keep-redis", database_url=url)
    bench.manage("migrate", "--no-input", "-v", "0", database_url=url)
    bench.manage("bench_seed", "--users", str(max(16, bench.plan.clients)), database_url=url)
    return url


def order(sizes: list[int], number: int) -> list[int]:
    """The sizes in round ``number``: smallest first in even rounds, largest first in odd."""
    return sizes if number % 2 == 0 else sizes[::-1]


def size_rows(records: str, samples: dict[str, Sample]) -> list[list[Any]]:
    """A first-execution row and a replay row for one size (``records``: before -> after)."""
    return [
        [
            records,
            label,
            fmt(samples[mode].rps),
            fmt(percentile(samples[mode].latencies, 50), 2),
            fmt(percentile(samples[mode].latencies, 99), 2),
            samples[mode].failed,
        ]
        for mode, label in KINDS
    ]


def ratio_rows(small: dict[str, Any], large: dict[str, Any]) -> list[list[Any]]:
    """The largest size over the smallest: throughput, p50 and p99, per kind of request."""
    return [
        [
            f"{large['size']:,} / {small['size']:,}",
            label,
            f"{large[mode]['rps'] / small[mode]['rps']:.2f}x",
            f"{large[mode]['p50_ms'] / small[mode]['p50_ms']:.2f}x",
            f"{large[mode]['p99_ms'] / small[mode]['p99_ms']:.2f}x",
            "",
        ]
        for mode, label in KINDS
    ]


def run(bench: Bench) -> tuple[Server, str]:
    """Each size in a database of its own with its own server, the sizes alternated.

    Returns the largest size's server and database, which the purge goes on to use.
    """
    plan = bench.plan
    servers: dict[int, Server] = {}
    urls: dict[int, str] = {}
    filled: dict[int, dict[str, float]] = {}
    for size in plan.scale_sizes:
        say(f"A database with {size:,} records ...")
        urls[size] = scale_database(bench, size)
        filled[size] = bench.fill(size, database_url=urls[size])
        servers[size] = Server(bench, IP_DATABASE, plan.workers, urls[size]).start()
        bench.measure(servers[size], "fresh", plan.warmup)
    keys = {size: bench.replay_keys(server) for size, server in servers.items()}
    samples = {(size, mode): Sample() for size in servers for mode in ("fresh", "replay")}
    sizes = list(servers)
    for number in range(plan.scale_rounds):
        for mode in ("fresh", "replay"):
            for size in order(sizes, number):
                sample = bench.measure(servers[size], mode, plan.scale_seconds, keys[size])
                samples[size, mode].add(sample)
        say(f"  round {number + 1}/{plan.scale_rounds} done")
    rows, found = [], []
    for size in sizes:
        after = bench.fill(0, database_url=urls[size])
        entry: dict[str, Any] = {
            "size": size,
            "records_before": int(filled[size]["total"]),
            "records_after": int(after["total"]),
            "fill_seconds": filled[size]["seconds"],
        }
        of_size = {mode: samples[size, mode] for mode, _ in KINDS}
        for mode, sample in of_size.items():
            entry[mode] = sample.summary()
        rows += size_rows(f"{int(filled[size]['total']):,} -> {int(after['total']):,}", of_size)
        found.append(entry)
    if len(sizes) > 1:
        rows += ratio_rows(found[0], found[-1])
    bench.results["scale"] = found
    bench.show(
        table(
            f"Scale: {LABELS[IP_DATABASE]}, one database and server per size, "
            f"the sizes alternated ({plan.clients} clients, {plan.scale_rounds} rounds x "
            f"{plan.scale_seconds:g} s per size and kind)",
            HEADERS,
            rows,
        )
    )
    largest = sizes[-1]
    for size, server in servers.items():
        if size != largest:
            server.stop()
    return servers[largest], urls[largest]
