"""``manage.py idempotent_post_rotate_keys``: re-encrypt stored responses (C4)."""

from __future__ import annotations

import logging
from collections import Counter
from functools import partial
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections, transaction
from django.utils import timezone

from idempotent_post import responses
from idempotent_post.engine import records_database
from idempotent_post.models import IdempotencyRecord

logger = logging.getLogger("idempotent_post")

# What happened to each record, in the order the summary names them.
OUTCOMES = {
    "rotated": "re-encrypted under the first key",
    "encrypted": "encrypted (stored before encryption was turned on)",
    "current": "already under the first key",
    "changed": "skipped: changed while the command ran",
    "unreadable": "skipped: no key decrypts them",
    "failed": "skipped: an error (logged)",
}


class Command(BaseCommand):
    """Re-encrypt every live record's stored response under the first encryption key.

    Run it after putting a new key first in ``IDEMPOTENT_POST_ENCRYPTION_KEYS``; once it
    reports no record skipped, the old keys can go. Records kept in the clear (before
    encryption was turned on) are encrypted too. Expired records are left to the purge,
    in-progress ones have no response yet.

    Records are read in batches of ``--batch-size`` in primary-key order, and each is
    written back by one UPDATE that also checks it is the record read (same primary key,
    completion time and body file, still completed and live): a record a retry took over,
    or the forget command replaced, meanwhile is skipped, never overwritten. A body file
    is copied, encrypted, under a new name; the old files are deleted at the end of the
    run, so that a replay that read the record just before its update still finds its file.
    """

    help = (
        "Re-encrypt the stored responses of live idempotency records under the first key of "
        "IDEMPOTENT_POST_ENCRYPTION_KEYS (and encrypt those stored in the clear)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size",
            type=int,
            default=100,
            help="Records read per batch (default: 100).",
        )
        parser.add_argument(
            "--database",
            default=None,
            help="The database alias that holds the records "
            "(default: IDEMPOTENT_POST_DATABASE, else the router's choice).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        batch_size = options["batch_size"]
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise CommandError(f"--batch-size must be a positive integer, not {batch_size!r}.")
        using = options["database"] or records_database()
        if using not in connections:
            raise CommandError(f"Unknown database alias {using!r}.")
        try:
            if responses._fernet() is None:
                raise CommandError(
                    "IDEMPOTENT_POST_ENCRYPTION_KEYS is empty: there is no key to encrypt under."
                )
        except ImproperlyConfigured as error:
            raise CommandError(str(error)) from None

        counts: Counter[str] = Counter()
        old_files: list[str] = []
        now = timezone.now()
        last_pk = None
        try:
            while True:
                records = (
                    IdempotencyRecord.objects.using(using)
                    .filter(state=IdempotencyRecord.State.COMPLETED, expires_at__gt=now)
                    .order_by("pk")
                )
                if last_pk is not None:
                    records = records.filter(pk__gt=last_pk)
                batch = list(records[:batch_size])
                if not batch:
                    break
                for record in batch:
                    last_pk = record.pk
                    counts[self._rotate(using, record, old_files)] += 1
        finally:
            for name in old_files:
                # Inside a caller's transaction, the files wait for its commit.
                transaction.on_commit(partial(responses.discard, name), using=using)
        done = ", ".join(f"{counts[outcome]} {text}" for outcome, text in OUTCOMES.items())
        self.stdout.write(f"{sum(counts.values())} live idempotency records: {done}.")

    def _rotate(self, using: str, record: IdempotencyRecord, old_files: list[str]) -> str:
        body = record.response_body
        stored = responses.StoredResponse(
            status_code=record.status_code or 200,
            headers=record.response_headers,
            body=bytes(body) if body is not None else None,
            body_file=record.body_file,
            kept=record.body_stored,
        )
        encrypted = responses.is_encrypted(stored)
        try:
            new = responses.reencrypt(stored)
        except responses.UnreadableResponse as error:
            logger.error("Idempotency %s cannot be re-encrypted: %s.", _name(record), error)
            return "unreadable"
        except Exception:
            logger.exception("Idempotency %s could not be re-encrypted.", _name(record))
            return "failed"
        if new is None:
            return "current"
        updated = (
            IdempotencyRecord.objects.using(using)
            .filter(
                pk=record.pk,
                state=IdempotencyRecord.State.COMPLETED,
                completed_at=record.completed_at,
                body_file=record.body_file,
                expires_at__gt=timezone.now(),
            )
            .update(
                response_headers=new.headers,
                response_body=new.body,
                body_file=new.body_file,
            )
        )
        if not updated:
            if new.body_file != record.body_file:
                responses.discard(new.body_file)
            return "changed"
        if record.body_file and new.body_file != record.body_file:
            old_files.append(record.body_file)
        return "rotated" if encrypted else "encrypted"


def _name(record: IdempotencyRecord) -> str:
    return f"key {record.key!r} ({record.scope}, id {record.pk})"
