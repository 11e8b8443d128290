"""``manage.py idempotent_post_purge``: delete expired idempotency records in batches (O5)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from datetime import datetime
from functools import partial
from time import monotonic, sleep
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections, router, transaction
from django.utils import timezone

from idempotent_post import responses
from idempotent_post.conf import conf
from idempotent_post.models import IdempotencyRecord

# Without --pause, the command rests after each batch as long as that batch took: it keeps
# the database busy at most half the time, however fast or loaded the database is. Longer
# rests did not shorten the concurrent requests' tail any further (docs/benchmarks.md).
PAUSE_RATIO = 1.0


def _records(count: int) -> str:
    return f"{count} expired idempotency record{'' if count == 1 else 's'}"


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def expired_batch(
    using: str, now: datetime, size: int, since: datetime | None = None
) -> list[tuple[Any, str]]:
    """The primary key and body file name of up to ``size`` records expired at ``now``.

    Oldest first, in ``expires_at`` order, which the expiry index serves. ``since`` (an
    expiry no record left to purge is older than) starts the index scan there rather than
    at the oldest entry.
    """
    expired = IdempotencyRecord.objects.using(using).filter(expires_at__lte=now)
    if since is not None:
        expired = expired.filter(expires_at__gte=since)
    return list(expired.order_by("expires_at", "pk").values_list("pk", "body_file")[:size])


def delete_expired(
    using: str, now: datetime, batch: Sequence[tuple[Any, str]]
) -> tuple[int, list[str], datetime | None]:
    """Delete the records of ``batch`` that are still expired at ``now``.

    Returns how many rows went, the body files those rows held, and (PostgreSQL) the
    latest expiry among them. The expiry condition is in the DELETE statement itself: a
    record a retry took up again since ``batch`` was read has a fresh ``expires_at`` and
    stays. Plain SQL rather than ``QuerySet.delete()``, because one
    ``pre_delete``/``post_delete`` receiver anywhere in the project makes Django read the
    rows first and delete them by primary key alone. So the purge sends no delete signals.
    """
    connection = connections[using]
    qn = connection.ops.quote_name
    meta = IdempotencyRecord._meta
    table = qn(meta.db_table)
    pk = qn(str(meta.pk.column)) if meta.pk else qn("id")
    expires_at, body_file = qn("expires_at"), qn("body_file")
    cutoff = connection.ops.adapt_datetimefield_value(now)
    keys = [row[0] for row in batch]
    if connection.vendor == "postgresql":
        # The keys go as one array and one row comes back: a thousand placeholders to
        # parse and a thousand rows to convert would cost the purge's own process more
        # CPU than the DELETE costs the database, on a machine it may share.
        with connection.cursor() as cursor:
            cursor.execute(
                f"WITH gone AS (DELETE FROM {table} WHERE {pk} = ANY(%s) "
                f"AND {expires_at} <= %s RETURNING {body_file}, {expires_at}) "
                f"SELECT count(*), max({expires_at}), "
                f"array_agg({body_file}) FILTER (WHERE {body_file} <> '') FROM gone",
                [keys, cutoff],
            )
            count, latest, files = cursor.fetchone()
        return count, list(files or ()), latest
    # SQLite may allow as few as 999 parameters per statement.
    per_statement = (connection.features.max_query_params or len(batch) + 1) - 1
    count = 0
    for chunk in _chunks(keys, per_statement):
        with connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {table} WHERE {pk} IN ({', '.join(['%s'] * len(chunk))}) "
                f"AND {expires_at} <= %s",
                [*chunk, cutoff],
            )
            count += cursor.rowcount
    # A record whose file name was read with the batch and that is gone now was deleted
    # by this statement: a record taken up again is never expired by then.
    held = {key: name for key, name in batch if name}
    left: set[Any] = set()
    for chunk in _chunks(list(held), per_statement):
        left.update(
            IdempotencyRecord.objects.using(using).filter(pk__in=chunk).values_list("pk", flat=True)
        )
    return count, [name for key, name in held.items() if key not in left], None


class Command(BaseCommand):
    """Delete the records whose ``expires_at`` has passed, a small batch at a time.

    Each batch reads up to ``--batch-size`` primary keys in ``expires_at`` order (the
    index serves it) and deletes those rows in one short statement of their own, so the
    command holds no long locks and can run from cron while traffic flows. The DELETE
    statement checks the expiry again: a record the engine took up anew between the two
    statements (an expired key used again) has a fresh ``expires_at`` and stays,
    whatever delete signal receivers the project has.

    Between two batches the command rests (``--pause``), by default as long as the batch
    before took: the purge then keeps the database busy at most half the time, however fast
    or loaded the database is. A concurrent request never waits on a lock the purge holds;
    what slows it is the CPU the purge takes, and its own ``COMMIT`` flushing the WAL the
    purge wrote before it. The rests hand both back to the requests. The purge's own
    transactions keep ``synchronous_commit``: turned off, it would spare the requests
    nothing (a ``COMMIT`` flushes all the WAL written before it, the purge's included), and
    the body files would go before the rows' deletion was safely on disk.

    In-progress records whose ``expires_at`` has passed go too: an expired record counts
    as absent (S7), whatever its state. Response bodies the deleted records kept in the
    response storage (P3) are deleted from it once the rows' deletion has committed.
    """

    help = "Delete expired idempotency records in batches; safe to run while traffic flows."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size",
            type=int,
            default=None,
            help="Rows deleted per batch (default: IDEMPOTENT_POST_PURGE_BATCH_SIZE, 1000).",
        )
        parser.add_argument(
            "--max-batches",
            type=int,
            default=None,
            help="Stop after this many batches (default: until no expired record is left).",
        )
        parser.add_argument(
            "--pause",
            type=float,
            default=None,
            metavar="SECONDS",
            help="Seconds to rest between two batches; 0 for none (default: as long as the "
            "batch before took, so the purge keeps the database busy at most half the time).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Count the expired records, delete nothing.",
        )
        parser.add_argument(
            "--database",
            default=None,
            help="The database alias that holds the records "
            "(default: IDEMPOTENT_POST_DATABASE, else the router's choice).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        batch_size = options["batch_size"]
        if batch_size is None:
            batch_size = conf.PURGE_BATCH_SIZE
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise CommandError(f"--batch-size must be a positive integer, not {batch_size!r}.")
        max_batches = options["max_batches"]
        if max_batches is not None and (
            isinstance(max_batches, bool) or not isinstance(max_batches, int) or max_batches < 1
        ):
            raise CommandError(f"--max-batches must be a positive integer, not {max_batches!r}.")
        pause = options["pause"]
        if pause is not None and (
            isinstance(pause, bool)
            or not isinstance(pause, (int, float))
            or not math.isfinite(pause)
            or pause < 0
        ):
            raise CommandError(f"--pause must be a number of seconds, 0 or more, not {pause!r}.")
        using = options["database"] or conf.DATABASE or router.db_for_write(IdempotencyRecord)
        if using not in connections:
            raise CommandError(f"Unknown database alias {using!r}.")

        # One cut-off for the whole run: records that expire while it runs wait for the
        # next one, so a busy table cannot keep the command going forever.
        now = timezone.now()

        if options["dry_run"]:
            count = IdempotencyRecord.objects.using(using).filter(expires_at__lte=now).count()
            self.stdout.write(f"Would delete {_records(count)}.")
            return

        deleted = batches = 0
        took = 0.0
        since = None
        while max_batches is None or batches < max_batches:
            began = monotonic()
            batch = expired_batch(using, now, batch_size, since)
            if not batch:
                break
            if batches:
                # Between two batches only: the look-up above said there is another. The
                # rows read before the rest are safe to delete after it, since the DELETE
                # checks their expiry again.
                rest = took * PAUSE_RATIO if pause is None else pause
                if rest > 0:
                    read = monotonic() - began
                    sleep(rest)
                    began = monotonic() - read
            # Committed on its own: no transaction spans the batches.
            count, files, latest = delete_expired(using, now, batch)
            took = monotonic() - began
            # PostgreSQL keeps a deleted row's index entries until a vacuum: read from the
            # oldest, each batch would step over every entry the batches before it deleted.
            # Every record still to purge expires at or after the latest this batch deleted:
            # one that expired earlier was in this batch or an earlier one.
            since = latest or since
            for name in files:
                # Inside a caller's transaction, the files wait for its commit.
                transaction.on_commit(partial(responses.discard, name), using=using)
            deleted += count
            batches += 1
            if options["verbosity"] >= 2:
                self.stdout.write(f"Batch {batches}: deleted {_records(count)}.")
        self.stdout.write(f"Deleted {_records(deleted)}.")
