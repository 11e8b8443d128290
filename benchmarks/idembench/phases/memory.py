"""Phase ``memory``: peak RSS (``VmHWM``) of a fresh gunicorn worker taking one large upload.

A fresh single-worker server per measurement, since ``VmHWM`` never goes down: bare and
idempotent-post once each, every alternative with Django's body limit and without it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .. import load
from ..plan import BARE, IP_DATABASE, LABELS, token_of
from ..processes import Server, vm_hwm_kb
from ..report import say, table
from ..stats import median

if TYPE_CHECKING:
    from ..bench import Bench

HEADERS = ["implementation", "how", "status", "idle", "peak", "growth"]

Case = tuple[str, str, dict[str, str]]


def cases(alternatives: Sequence[str]) -> list[Case]:
    """(variant, how, server environment) of every measurement."""
    found: list[Case] = [(BARE, "unguarded", {}), (IP_DATABASE, "guarded", {})]
    for name in alternatives:
        found.append((name, "guarded, Django defaults", {}))
        found.append(
            (
                name,
                "guarded, DATA_UPLOAD_MAX_MEMORY_SIZE=None",
                {"BENCH_DATA_UPLOAD_MAX_MEMORY_SIZE": "none"},
            )
        )
    return found


def summarize(
    measured_cases: Sequence[Case], measured: dict[int, list[dict[str, Any]]]
) -> tuple[list[list[Any]], list[dict[str, Any]]]:
    """Table rows and results: per case the median idle and peak in MB, and the statuses."""
    rows, found = [], []
    for index, (variant, how, _) in enumerate(measured_cases):
        runs = measured[index]
        idle = median([r["idle_kb"] for r in runs]) / 1024
        peak = median([r["peak_kb"] for r in runs]) / 1024
        statuses = sorted({r["status"] for r in runs})
        found.append(
            {"variant": variant, "how": how, "runs": runs, "idle_mb": idle, "peak_mb": peak}
        )
        rows.append(
            [
                LABELS[variant],
                how,
                "/".join(str(s or "conn-error") for s in statuses),
                f"{idle:.1f} MB",
                f"{peak:.1f} MB",
                f"{peak - idle:.1f} MB",
            ]
        )
    return rows, found


def run(bench: Bench) -> None:
    plan = bench.plan
    measured_cases = cases(bench.alternatives)
    measured: dict[int, list[dict[str, Any]]] = {i: [] for i in range(len(measured_cases))}
    for _ in range(plan.memory_repeats):
        for index, (variant, how, extra) in enumerate(measured_cases):
            # A fresh single-worker server per measurement: VmHWM never goes down.
            server = Server(bench, variant, 1, **extra).start()
            try:
                (worker,) = server.worker_pids()
                idle = vm_hwm_kb(worker)
                started = time.monotonic()
                reply = load.upload(
                    server.port,
                    server.path("upload"),
                    token_of(0),
                    str(uuid.uuid4()),
                    plan.upload_megabytes,
                )
                seconds = time.monotonic() - started
                peak = vm_hwm_kb(worker)
            finally:
                server.stop()
            measured[index].append(
                {
                    "idle_kb": idle,
                    "peak_kb": peak,
                    "status": reply.status,
                    "seconds": round(seconds, 2),
                    "answer": reply.body[:200].decode(errors="replace"),
                }
            )
            say(
                f"  {variant} ({how}): {reply.status}, VmHWM {idle / 1024:.0f} -> "
                f"{peak / 1024:.0f} MB"
            )
    rows, found = summarize(measured_cases, measured)
    bench.results["memory"] = found
    bench.show(
        table(
            f"Memory: peak RSS (VmHWM) of a fresh gunicorn worker taking one "
            f"{plan.upload_megabytes} MB multipart upload (median of {plan.memory_repeats})",
            HEADERS,
            rows,
        )
    )
