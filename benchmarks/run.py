#!/usr/bin/env python3
"""Benchmark idempotent-post under gunicorn, PostgreSQL and Redis (issue 4).

    python benchmarks/run.py                      the full run (about 15 minutes)
    python benchmarks/run.py --quick              a smoke run: short rounds, 10k records only
    make bench BENCH_ARGS="--skip-alternatives"   the same through make

Run it on purpose, on a machine as quiet as you can get; it is not a CI pass/fail check.
It sets everything up itself and prints a table per phase, then all of them again:

- queries   SQL statements, writing commits and Redis round trips of one first execution
            and one replay, per implementation (Django's test client, no server).
- profile   where a guarded first execution spends its time, step by step, against the
            bare view (Django's test client, no server; medians of alternated rounds).
- overhead  first executions, a fresh key per request, bare against every guarded
            implementation: each guarded slot runs between two bare slots, round after
            round, so the noise of a shared machine hits both sides of each ratio alike.
- replay    the same key sent again and again, against bare first executions (same way).
- storm     N keys, each sent by M clients at the same instant: orders per key.
- scale     first executions and replays with 10 thousand and 1 million stored records,
            each size in a database of its own with its own server, the sizes alternated.
- purge     idempotent_post_purge deleting 1 million expired records while guarded
            requests flow, pacing off and with its default pause: its duration and the
            slowest concurrent request.
- memory    peak RSS (VmHWM) of a fresh gunicorn worker taking a 50 MB multipart upload,
            guarded and unguarded.

What it needs and what it touches:

- PostgreSQL and Redis (``--database-url``, ``--redis-url``). The database is dropped and
  created again, the Redis database flushed: give the benchmark ones of its own.
- The project's virtualenv runs this script. The alternative packages (drf-idempotency,
  django-idempotency-key, djangorestframework-idempotency-key) are installed into
  ``benchmarks/.venv``, never into the project's virtualenv, with Django, DRF and the
  drivers pinned to the project's versions; a package that does not install or import
  next to them is reported as such. ``--skip-alternatives`` needs no second virtualenv.
- idempotent-post itself is imported from this working tree (``PYTHONPATH``).
- Every gunicorn server it starts is stopped when it ends, Ctrl-C included.

The code is in ``benchmarks/idembench/``: ``plan`` (phases, sizes, variants), ``stats``,
``report``, ``processes`` (gunicorn, /proc), ``load`` (the HTTP clients), ``bench`` (set-up
and load), and ``phases/`` (one module per phase). This file is the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from idembench.bench import Bench
from idembench.phases import memory, overhead, profile, purge, queries, replay, scale, storm
from idembench.plan import (
    BARE,
    DEFAULT_DATABASE_URL,
    DEFAULT_REDIS_URL,
    IP_DATABASE,
    PHASES,
    make_plan,
    select_phases,
)
from idembench.processes import BenchError, Server
from idembench.report import say, summary


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark idempotent-post under gunicorn, PostgreSQL and Redis.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="short rounds, 10k records only")
    parser.add_argument(
        "--skip-alternatives", action="store_true", help="measure idempotent-post and bare only"
    )
    parser.add_argument("--skip-scale", action="store_true", help="skip the scale and purge phases")
    parser.add_argument(
        "--only", default="", help=f"comma-separated phases to run, of: {', '.join(PHASES)}"
    )
    parser.add_argument("--clients", type=int, help="concurrent clients (default 4)")
    parser.add_argument("--workers", type=int, help="gunicorn workers per server (default 2)")
    parser.add_argument("--rounds", type=int, help="overhead rounds (default 5; --quick 2)")
    parser.add_argument("--seconds", type=float, help="seconds per overhead round (default 8)")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="PostgreSQL database to DROP and create (env BENCH_DATABASE_URL)",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL),
        help="Redis database to FLUSH and use (env BENCH_REDIS_URL)",
    )
    parser.add_argument("--json", type=Path, help="also write the raw results to this file")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    plan = make_plan(args.quick, vars(args))
    phases, unknown = select_phases(args.only, args.skip_scale)
    if unknown:
        say(f"Unknown phase(s): {', '.join(unknown)}; choose from {', '.join(PHASES)}")
        return 2

    bench = Bench(args, plan)
    # SIGTERM (a CI timeout, kill) ends the run through the same clean-up as Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    began = time.monotonic()
    try:
        bench.setup()
        bench.results["command"] = " ".join(["python benchmarks/run.py", *(argv or sys.argv[1:])])
        if "queries" in phases:
            queries.run(bench)
        if "profile" in phases:
            say("== Profile")
            profile.run(bench)
        servers: dict[str, Server] = {}
        purge_alone = "purge" in phases and "scale" not in phases
        if {"overhead", "replay", "storm"} & set(phases) or purge_alone:
            servers = bench.start_servers()
            if BARE not in servers or IP_DATABASE not in servers:
                raise BenchError(
                    "the bare or idempotent-post server does not work: "
                    + json.dumps(bench.not_wired)
                )
        if "overhead" in phases:
            say("== Overhead")
            overhead.run(bench, servers)
        if "replay" in phases:
            say("== Replay")
            replay.run(bench, servers)
        if "storm" in phases:
            say("== Storm")
            storm.run(bench, servers)
        # Without the scale phase, the purge goes on the main database and server.
        purge_server, purge_database = servers.get(IP_DATABASE), None
        if "scale" in phases:
            for server in servers.values():
                server.stop()
            say("== Scale")
            purge_server, purge_database = scale.run(bench)
        if "purge" in phases and purge_server is not None:
            say("== Purge")
            purge.run(bench, purge_server, purge_database)
        bench.close_servers()
        if "memory" in phases:
            say("== Memory")
            memory.run(bench)
        bench.not_wired_table()
    except BenchError as error:
        say(f"\nbenchmark failed: {error}")
        say(f"server logs: {bench.workdir}")
        return 1
    finally:
        bench.close()
    minutes = (time.monotonic() - began) / 60
    bench.results["minutes"] = round(minutes, 1)
    bench.results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    say(summary(bench.results, bench.tables, minutes))
    if args.json:
        args.json.write_text(json.dumps(bench.results, indent=2, default=str))
        say(f"Raw results: {args.json}")
    shutil.rmtree(bench.workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
