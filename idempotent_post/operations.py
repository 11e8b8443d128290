"""What operators do by hand: look a key up, and forget one on purpose (C7).

``manage.py idempotent_post_forget`` and the admin's "Forget selected keys" action both
forget through :func:`forget`, so both delete the same way and log the same way.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from django.apps import apps
from django.db import router, transaction

from idempotent_post import responses
from idempotent_post.conf import conf
from idempotent_post.engine import records_database
from idempotent_post.locks import free_cache_lock
from idempotent_post.models import IdempotencyRecord

logger = logging.getLogger("idempotent_post")


def lookup(scope: str, key: str, using: str | None = None) -> IdempotencyRecord | None:
    """The record of ``key`` in ``scope``, or ``None`` when there is none.

    ``scope`` is the stored scope, as the admin shows it (``user:42``,
    ``session:…``). Keys and scopes compare case-sensitively (K6). The record is
    returned as stored, expired or not: ``record.is_live()`` says whether it still
    counts. ``using`` is the database alias of the records (default: the
    ``IDEMPOTENT_POST_DATABASE`` setting, else the router's choice).
    """
    records = IdempotencyRecord.objects.using(using or records_database())
    return records.filter(scope=scope, key=key).first()


def describe(record: IdempotencyRecord) -> str:
    """One line naming ``record``'s key and scope and what it held, for messages and logs."""
    if record.state == IdempotencyRecord.State.COMPLETED:
        held = f"completed, status {record.status_code}"
    else:
        held = "in progress"
    return f'key "{record.key}" of scope "{record.scope}" ({held})'


def forget(record: IdempotencyRecord, user: Any, via: str) -> bool:
    """Delete ``record`` on purpose, as ``user`` did through ``via``; False if it was gone.

    The next request with its key runs the view again as a first request. The
    deletion is recorded in Django's admin log (a ``LogEntry`` with the action
    DELETION, ``user`` and the time, its message naming the key and scope) when
    ``django.contrib.admin`` is installed, and always on the ``idempotent_post``
    logger. A body the record kept in the response storage (P3) is deleted once the
    deletion has committed.

    An attempt that still holds the key (in progress) loses it: it can no longer
    store its outcome (S9), and on the atomic path its writes roll back.
    """
    using = record._state.db or records_database()
    message = f"Forgot the idempotency {describe(record)} through {via}."
    with transaction.atomic(using=using):
        body_file = (
            IdempotencyRecord.objects.using(using)
            .select_for_update()
            .filter(pk=record.pk)
            .values_list("body_file", flat=True)
            .first()
        )
        if body_file is None:
            return False
        IdempotencyRecord.objects.using(using).filter(pk=record.pk).delete()
        if apps.is_installed("django.contrib.admin"):
            # Nested, so the log entry commits before the deletion where the two live
            # on different databases: a deletion is never left out of the log.
            _log_deletion(record, user, message)
        if body_file:
            transaction.on_commit(partial(responses.discard, body_file), using=using)
    if record.state == IdempotencyRecord.State.COMPLETED and conf.LOCK_BACKEND == "cache":
        # Its holder left the cache lock to expire (the record answered for it): free it,
        # so that the next request runs the view now rather than after the lease.
        free_cache_lock(conf.CACHE, record.scope, record.key)
    logger.warning("%s (user %s)", message, user.get_username())
    return True


def _log_deletion(record: IdempotencyRecord, user: Any, message: str) -> None:
    from django.contrib.admin.models import DELETION, LogEntry

    with transaction.atomic(using=router.db_for_write(LogEntry)):
        LogEntry.objects.log_actions(
            user_id=user.pk,
            queryset=[record],
            action_flag=DELETION,
            change_message=message,
            single_object=True,
        )
