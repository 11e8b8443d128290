"""``bench_fill``: bulk-insert idempotent-post records, live or expired, with SQL.

One ``INSERT ... SELECT generate_series`` per call: a million rows in seconds, where the
ORM would take minutes. The rows look like the benchmark's own (an order's JSON as body,
scopes spread over thousands of users, random keys), so the unique index on
(scope, key) grows as it would in production.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import connection

from idempotent_post.models import IdempotencyRecord

BODY = (
    b'{"id":1234567,"order_number":"ORD-3F9A0C12BE","product":42,"quantity":1,'
    b'"note":"00000000-0000-0000-0000-000000000000","user":1,'
    b'"created_at":"2026-01-01T00:00:00.000000Z"}'
)

INSERT = """
INSERT INTO {table} (
    scope, key, state, fingerprint, method, path, owner, locked_until, attempts,
    retry_count, status_code, response_headers, response_body, body_stored, body_file,
    recovery_points, created_at, completed_at, expires_at
)
SELECT
    'user:' || (100000 + g %% 5000),
    'bulk-' || %(tag)s || '-' || md5(g::text),
    'completed',
    md5(%(tag)s || g::text) || md5(g::text),
    'POST',
    '/idempotent-post-database/orders/',
    '',
    NULL,
    1,
    0,
    201,
    '[["Content-Type", "application/json"], ["Location", "/orders/1234567/"]]'::jsonb,
    %(body)s,
    true,
    '',
    '{{}}'::jsonb,
    now() - interval '1 minute',
    now() - interval '1 minute',
    {expires}
FROM generate_series(1, %(count)s) AS g
"""

# Live records expire tomorrow; expired ones expired over the past day, oldest first.
LIVE = "now() + interval '1 day'"
EXPIRED = "now() - interval '1 hour' - g * interval '50 milliseconds'"


class Command(BaseCommand):
    help = (
        "Insert N live or expired idempotency records, then VACUUM ANALYZE the table; "
        "print the counts."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("count", type=int)
        parser.add_argument("--expired", action="store_true")
        parser.add_argument("--truncate", action="store_true", help="Empty the table first.")
        parser.add_argument(
            "--checkpoint",
            action="store_true",
            help="CHECKPOINT at the end, so the next writes start a checkpoint cycle afresh.",
        )

    def handle(
        self,
        *args: Any,
        count: int,
        expired: bool,
        truncate: bool,
        checkpoint: bool,
        **options: Any,
    ) -> None:
        table = connection.ops.quote_name(IdempotencyRecord._meta.db_table)
        started = time.monotonic()
        if truncate:
            with connection.cursor() as cursor:
                cursor.execute(f"TRUNCATE {table}")
        if count > 0:
            with connection.cursor() as cursor:
                cursor.execute(
                    INSERT.format(table=table, expires=EXPIRED if expired else LIVE),
                    {"tag": secrets.token_hex(4), "body": BODY, "count": count},
                )
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM ANALYZE {table}")
            cursor.execute(
                f"SELECT count(*), count(*) FILTER (WHERE expires_at <= now()) FROM {table}"
            )
            total, dead = cursor.fetchone()
            if checkpoint:
                # A million rows write about a gigabyte of WAL, so whether a checkpoint is
                # under way when the next writer starts is chance. After this one, the
                # first change to each page logs a full-page image: every run that follows
                # writes as much WAL as it ever can, and runs compare.
                cursor.execute("CHECKPOINT")
        seconds = time.monotonic() - started
        self.stdout.write(f"inserted={count} total={total} expired={dead} seconds={seconds:.1f}")
