"""``bench_lockwatch``: sample what the servers' PostgreSQL backends wait on, until told to stop.

The purge benchmark runs it beside the purge. A guarded request slowed down by the purge
either waits in PostgreSQL (on a row or table lock the purge holds: wait type ``Lock``;
on a buffer or the WAL: ``LWLock``, ``IO``), which this sees, or only shares the CPU with
it, which this does not see.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import connection

# Backends busy in a statement and waiting on something other than their client.
WAITING = """
SELECT pid, query_start, wait_event_type, wait_event, left(query, 100)
FROM pg_stat_activity
WHERE datname = current_database()
  AND application_name = %s
  AND state = 'active'
  AND wait_event_type IS NOT NULL
  AND wait_event_type NOT IN ('Client', 'Activity')
"""


class Command(BaseCommand):
    help = (
        "Poll pg_stat_activity for waits of the backends named APPLICATION until STOP_FILE "
        "exists; print them as JSON (when first seen, for how long, on what), longest first."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("application", help="the application_name of the backends to watch")
        parser.add_argument("stop_file")
        parser.add_argument("--interval", type=float, default=0.02, help="seconds")
        parser.add_argument("--timeout", type=float, default=3 * 3600, help="seconds")

    def handle(
        self,
        *args: Any,
        application: str,
        stop_file: str,
        interval: float,
        timeout: float,
        **options: Any,
    ) -> None:
        seen: dict[tuple[Any, ...], list[float]] = {}
        events: Counter[str] = Counter()
        queries: dict[tuple[Any, ...], str] = {}
        samples = 0
        deadline = time.monotonic() + timeout
        with connection.cursor() as cursor:
            while not os.path.exists(stop_file) and time.monotonic() < deadline:
                cursor.execute(WAITING, [application])
                now = time.time()
                samples += 1
                for pid, query_start, kind, event, query in cursor.fetchall():
                    # One wait: one statement of one backend on one kind of thing, seen in
                    # consecutive samples.
                    key = (pid, query_start, kind, event)
                    seen.setdefault(key, [now, now])[1] = now
                    queries[key] = query
                    events[f"{kind}:{event}"] += 1
                time.sleep(interval)
        # Seen once, a wait lasted up to one interval; seen from t1 to t2, up to t2 - t1 + one.
        waits = sorted(
            (
                {
                    "seen_at": first,
                    "ms": round((last - first + interval) * 1000, 1),
                    "type": key[2],
                    "event": key[3],
                    "query": queries[key],
                }
                for key, (first, last) in seen.items()
            ),
            key=lambda wait: -wait["ms"],
        )
        self.stdout.write(
            json.dumps(
                {
                    "samples": samples,
                    "interval_ms": interval * 1000,
                    "samples_by_event": dict(events),
                    "waits": waits[:500],
                }
            )
        )
