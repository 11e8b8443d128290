"""Phase ``purge``: ``idempotent_post_purge`` deleting expired records while guarded requests flow.

Twice, pacing off (``--pause 0``) and with the command's default pause, each time on records
of its own: expired records are bulk-inserted and a CHECKPOINT taken; the clients send guarded
first executions throughout, ``bench_lockwatch`` samples what the server's PostgreSQL backends
wait on, and after a baseline the purge runs. ``bucket`` sorts the requests into the window
before the purge and the window during it by their start and end times; ``waits_in`` does the
same for the waits; the table compares the windows of both purges.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..load import ClientResult, run_client
from ..plan import BENCHMARKS, IP_DATABASE, LABELS
from ..processes import BenchError, tail
from ..report import fmt, say, table
from ..stats import Sample, percentile

if TYPE_CHECKING:
    from ..bench import Bench
    from ..processes import Server

# Requests of the first moments share the CPU with the watcher's start-up: skipped.
SETTLE = 2.0

HEADERS = [
    "purge",
    "window",
    "req/s",
    "p50 ms",
    "p99 ms",
    "max ms",
    "non-2xx",
    "Lock waits",
    "longest ms",
    "other waits",
    "longest ms",
]

Waits = dict[str, list[dict[str, Any]]]


def bucket(
    results: Iterable[ClientResult],
    start_at: float,
    settle: float,
    purge_start: float,
    purge_end: float,
) -> tuple[Sample, Sample]:
    """The requests before the purge and those during it, with each window's length.

    Times are wall-clock seconds, latencies milliseconds. The clients started at
    ``start_at``; requests that started in the first ``settle`` seconds are left out.
    *Before*: a request that ended by ``purge_start`` (its window runs from
    ``start_at + settle`` to ``purge_start``). *During*: one that was still running at
    ``purge_start`` or started after it, and started before ``purge_end`` (its window runs
    from ``purge_start`` to ``purge_end``). Requests started at or after ``purge_end`` are
    in neither.
    """
    baseline = Sample(seconds=purge_start - start_at - settle)
    during = Sample(seconds=purge_end - purge_start)
    for result in results:
        for start, latency, status in zip(
            result.starts, result.latencies, result.statuses, strict=True
        ):
            if start < start_at + settle:
                continue
            if start + latency / 1000 <= purge_start:
                target = baseline
            elif start < purge_end:
                target = during
            else:
                continue
            target.latencies.append(latency)
            target.statuses[status] += 1
    return baseline, during


def waits_in(waits: Iterable[dict[str, Any]], begin: float, end: float) -> Waits:
    """The waits overlapping [begin, end]: row/table locks (``Lock``), and the rest.

    A wait was first seen at ``seen_at`` (wall-clock seconds) and lasted ``ms``.
    """
    inside = [
        wait
        for wait in waits
        if wait["seen_at"] <= end and wait["seen_at"] + wait["ms"] / 1000 >= begin
    ]
    return {
        "lock": [wait for wait in inside if wait["type"] == "Lock"],
        "other": [wait for wait in inside if wait["type"] != "Lock"],
    }


def longest(waits: list[dict[str, Any]]) -> str:
    """The longest of the waits in whole milliseconds; ``0`` when there is none."""
    return fmt(max((wait["ms"] for wait in waits), default=0.0), 0)


def deleted_count(output: str) -> int:
    """The number of records the purge reports as deleted (``Deleted N ...``)."""
    return int(re.search(r"Deleted (\d+)", output).group(1))  # type: ignore[union-attr]


def purge_arguments(batch_size: int, pause: str | None) -> list[str]:
    """The purge's command line: the batch size, and ``--pause`` unless ``None`` (its default)."""
    return ["--batch-size", str(batch_size), *([] if pause is None else ["--pause", pause])]


def pacing(pause: str | None) -> str:
    """How a purge of ``pause`` is named in the tables."""
    return "default pause" if pause is None else f"--pause {pause}"


def facts(
    before: dict[str, float],
    after: dict[str, float],
    deleted: int,
    purge_seconds: float,
    dry_seconds: float,
) -> list[list[str]]:
    """The purge's own figures: records before, deleted, duration, rate, dry-run duration."""
    return [
        ["records before (expired)", f"{int(before['total']):,} ({int(before['expired']):,})"],
        ["deleted; expired left", f"{deleted:,}; {int(after['expired']):,}"],
        ["duration (with ~1 s of Django start-up)", f"{purge_seconds:.1f} s"],
        ["rows deleted per second", f"{deleted / purge_seconds:,.0f}"],
        ["--dry-run (count only) duration", f"{dry_seconds:.1f} s"],
    ]


def side_by_side(columns: list[list[list[str]]]) -> list[list[str]]:
    """Rows of (name, value) per purge, as one row per name with a value per purge."""
    return [[rows[0][0], *(row[1] for row in rows)] for rows in zip(*columns, strict=True)]


def window_rows(purge: str, windows: dict[str, tuple[Sample, Waits]]) -> list[list[Any]]:
    """One row per window of ``purge``: throughput, latencies, failures, the waits seen in it."""
    return [
        [
            purge,
            label,
            fmt(sample.rps, 0),
            fmt(percentile(sample.latencies, 50), 1),
            fmt(percentile(sample.latencies, 99), 1),
            fmt(max(sample.latencies, default=math.nan), 1),
            sample.failed,
            len(waits["lock"]),
            longest(waits["lock"]),
            len(waits["other"]),
            longest(waits["other"]),
        ]
        for label, (sample, waits) in windows.items()
    ]


def run(bench: Bench, server: Server, database_url: str | None) -> None:
    plan = bench.plan
    runs = [purge_once(bench, server, database_url, pause) for pause in plan.purge_pauses]
    bench.results["purge"] = {"batch_size": plan.purge_batch_size, "runs": runs}
    bench.show(
        table(
            f"Purge: idempotent_post_purge --batch-size {plan.purge_batch_size} deleting "
            f"{plan.purge_records:,} expired records",
            ["", *(run["pacing"] for run in runs)],
            side_by_side([run["facts"] for run in runs]),
        )
        + "\n\n"
        + table(
            f"Guarded first executions ({LABELS[IP_DATABASE]}, {plan.clients} clients) "
            f"around each purge, and what their PostgreSQL backends waited on (sampled every "
            f"{runs[0]['watch']['interval_ms']:g} ms: Lock = a row or table lock, other = "
            "LWLock, IO ...)",
            HEADERS,
            [row for run in runs for row in run["rows"]],
        )
    )


def purge_once(
    bench: Bench, server: Server, database_url: str | None, pause: str | None
) -> dict[str, Any]:
    """Fill expired records, run guarded load, purge them with ``pause`` under it; the figures.

    Each purge has its fill, its checkpoint and its baseline: the purges compared start from
    the same state.
    """
    plan = bench.plan
    say(f"Inserting {plan.purge_records:,} expired records ...")
    before = bench.fill(plan.purge_records, "--expired", "--checkpoint", database_url=database_url)
    started = time.monotonic()
    dry = bench.manage("idempotent_post_purge", "--dry-run", database_url=database_url)
    dry_seconds = time.monotonic() - started
    stop_file = bench.workdir / "stop-purge-load"
    stop_file.unlink(missing_ok=True)
    assert bench.pool is not None
    # Guarded first executions run throughout: a baseline first, then the purge.
    start_at = time.time() + 0.3
    jobs = bench.jobs(server, "fresh", start_at, start_at + 3 * 3600, stop_file=str(stop_file))
    futures = [bench.pool.submit(run_client, job) for job in jobs]
    # The watcher samples what the server's backends wait on, baseline included.
    watcher = subprocess.Popen(
        [
            str(bench.python),
            "-m",
            "django",
            "bench_lockwatch",
            server.application_name,
            str(stop_file),
        ],
        cwd=BENCHMARKS,
        env=bench.env(database_url=database_url, BENCH_APPLICATION_NAME="bench-watch"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    arguments = purge_arguments(plan.purge_batch_size, pause)
    try:
        time.sleep(0.3 + SETTLE + plan.purge_baseline_seconds)
        say(f"Purging ({' '.join(arguments)}) under load ...")
        purge_start = time.time()
        output = bench.manage(
            "idempotent_post_purge",
            *arguments,
            database_url=database_url,
            BENCH_APPLICATION_NAME="bench-purge",
        )
        purge_end = time.time()
        time.sleep(1.0)
    finally:
        stop_file.touch()
        watched, watch_errors = watcher.communicate(timeout=60)
    results = [future.result() for future in futures]
    if watcher.returncode:
        raise BenchError(f"bench_lockwatch failed:\n{tail(watch_errors)}")
    watch = json.loads(watched.splitlines()[-1])
    after = bench.fill(0, database_url=database_url)

    baseline, during = bucket(results, start_at, SETTLE, purge_start, purge_end)
    windows = {
        "before the purge": (baseline, waits_in(watch["waits"], start_at + SETTLE, purge_start)),
        "during the purge": (during, waits_in(watch["waits"], purge_start, purge_end)),
    }
    deleted = deleted_count(output)
    purge_seconds = purge_end - purge_start
    return {
        "pacing": pacing(pause),
        "arguments": arguments,
        "records_before": int(before["total"]),
        "expired_before": int(before["expired"]),
        "expired_after": int(after["expired"]),
        "deleted": deleted,
        "seconds": round(purge_seconds, 2),
        "dry_run_seconds": round(dry_seconds, 2),
        "dry_run_output": dry,
        "watch": {k: v for k, v in watch.items() if k != "waits"},
        **{
            label.replace(" ", "_"): sample.summary() | {"waits": waits}
            for label, (sample, waits) in windows.items()
        },
        "facts": facts(before, after, deleted, purge_seconds, dry_seconds),
        "rows": window_rows(pacing(pause), windows),
    }
