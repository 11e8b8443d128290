"""``manage.py idempotent_post_purge``: delete expired idempotency records in batches (O5)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections, router
from django.utils import timezone

from idempotent_post.conf import conf
from idempotent_post.models import IdempotencyRecord


def _records(count: int) -> str:
    return f"{count} expired idempotency record{'' if count == 1 else 's'}"


class Command(BaseCommand):
    """Delete the records whose ``expires_at`` has passed, a small batch at a time.

    Each batch reads up to ``--batch-size`` primary keys in ``expires_at`` order (the
    index serves it) and deletes those rows in one short statement of their own, so the
    command holds no long locks and can run from cron while traffic flows. The delete
    checks the expiry again: a record the engine took up anew between the two statements
    (an expired key used again) has a fresh ``expires_at`` and stays.

    In-progress records whose ``expires_at`` has passed go too: an expired record counts
    as absent (S7), whatever its state.
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
        using = options["database"] or conf.DATABASE or router.db_for_write(IdempotencyRecord)
        if using not in connections:
            raise CommandError(f"Unknown database alias {using!r}.")

        # One cut-off for the whole run: records that expire while it runs wait for the
        # next one, so a busy table cannot keep the command going forever.
        now = timezone.now()
        expired = IdempotencyRecord.objects.using(using).filter(expires_at__lte=now)

        if options["dry_run"]:
            self.stdout.write(f"Would delete {_records(expired.count())}.")
            return

        deleted = batches = 0
        while max_batches is None or batches < max_batches:
            pks = list(
                expired.order_by("expires_at", "pk").values_list("pk", flat=True)[:batch_size]
            )
            if not pks:
                break
            # A single DELETE, committed on its own: no transaction spans the batches.
            count, _ = expired.filter(pk__in=pks).delete()
            deleted += count
            batches += 1
            if options["verbosity"] >= 2:
                self.stdout.write(f"Batch {batches}: deleted {_records(count)}.")
        self.stdout.write(f"Deleted {_records(deleted)}.")
