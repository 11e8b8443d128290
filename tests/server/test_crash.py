"""A worker killed mid-request does not block its key for ever, nor leave work behind (S5, T1).

A gunicorn worker runs the guarded view ``/t/plain/`` up to the point where it prints
``ENTERED`` (header ``X-Hold-Forever``), and is killed there with SIGKILL; its master
starts a new one. A retry with the same key, sent to a second server on the same
database, then meets the dead attempt's reservation:

- PostgreSQL with the database lock: the advisory lock died with the connection, so
  the retry runs at once, long before the (30 s) lease;
- Redis, or SQLite's durable reservation: 409 until the (2 s) lease runs out, then the
  retry runs once.

Either way exactly one widget exists afterwards: the retry's, not the dead attempt's.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import requests
from django.db import connection

from idempotent_post.keys import ANONYMOUS_SCOPE
from idempotent_post.locks import lock_id
from tests.server.conftest import assert_problem, is_replay, post, wait_until
from tests.testapp.models import Widget

pytestmark = [pytest.mark.server, pytest.mark.django_db(transaction=True)]


def advisory_lock_held(key: str) -> bool:
    """Whether some session holds the PostgreSQL advisory lock of ``key`` (anonymous scope)."""
    number = int.from_bytes(lock_id(ANONYMOUS_SCOPE, key)[:8], "big", signed=True)
    # pg_locks shows a 64-bit advisory lock as two 32-bit halves, classid and objid.
    unsigned = number & 0xFFFFFFFFFFFFFFFF
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND classid = %s AND objid = %s AND objsubid = 1"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            [unsigned >> 32, unsigned & 0xFFFFFFFF],
        )
        return cursor.fetchone()[0] > 0


@pytest.mark.parametrize(
    ("database", "backend"),
    [("postgres", "database"), ("postgres", "cache"), ("sqlite", "database")],
    ids=["postgres-database", "postgres-cache", "sqlite-database"],
)
def test_s5_t1_killed_worker_releases_its_key(
    request, database, backend, gunicorn, lock_options, new_key
):
    if database == "postgres":
        request.getfixturevalue("postgres")
    elif connection.vendor != "sqlite":
        pytest.skip("runs when the suite runs on SQLite")
    options = lock_options(backend)
    freed_at_once = (database, backend) == ("postgres", "database")
    lease = 30.0 if freed_at_once else 2.0
    holder = gunicorn(workers=1, ready=False, LEASE=lease, **options)
    other = gunicorn(workers=1, ready=False, LEASE=lease, **options)
    holder.wait_ready()
    other.wait_ready()
    [worker] = holder.workers()
    key = new_key()

    outcome: dict[str, object] = {}

    def hold() -> None:
        try:
            outcome["response"] = post(holder, "/t/plain/", key, X_Hold_Forever="1")
        except requests.RequestException as error:
            outcome["error"] = error

    sent = time.monotonic()
    mark = holder.mark()
    holding = threading.Thread(target=hold)
    holding.start()
    holder.wait_for_line("^ENTERED$", stream="stdout", start=mark, timeout=30)
    if freed_at_once:
        assert advisory_lock_held(key)
    os.kill(worker, signal.SIGKILL)
    holding.join(timeout=30)
    assert "error" in outcome, f"the killed request was answered: {outcome}"

    if freed_at_once:
        # The server frees the lock as soon as it sees the connection drop.
        wait_until(lambda: not advisory_lock_held(key), 10, "PostgreSQL to free the lock")
        retry = post(other, "/t/plain/", key)
        assert retry.status_code == 201, retry.text
        assert time.monotonic() - sent < lease, "the retry only ran after the lease"
    else:
        retry = post(other, "/t/plain/", key)
        assert time.monotonic() - sent < lease, "too slow to see the key within its lease"
        assert_problem(retry, 409)
        assert retry.headers["Retry-After"]
        # Poll the observable outcome until the lease runs out, with a deadline.
        deadline = sent + lease + 30
        while retry.status_code == 409 and time.monotonic() < deadline:
            time.sleep(0.1)
            retry = post(other, "/t/plain/", key)
        assert retry.status_code == 201, retry.text
        assert time.monotonic() - sent >= lease, "the key was taken over before its lease ran out"
    assert not is_replay(retry)

    # Nothing of the killed attempt survived (T1): the one widget is the retry's.
    assert list(Widget.objects.values_list("pk", flat=True)) == [retry.json()["id"]]

    # The master replaced its killed worker, and the new one replays the retry's answer.
    replay = post(holder, "/t/plain/", key)
    assert is_replay(replay)
    assert replay.content == retry.content
    assert worker not in holder.workers()
    assert Widget.objects.count() == 1
