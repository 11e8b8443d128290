"""No second start (S8) and leases that live as long as their holder (S9), for real.

Effects are counted *outside* the view's transaction (as a card charge would be), so a
duplicate that started and was rolled back still counts. Races are made deterministic
with gates and a held PostgreSQL lock; one statistical storm per lock backend stays.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.http import JsonResponse
from django.test import Client
from django.urls import path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from idempotent_post import idempotent
from idempotent_post.locks import lock_id
from idempotent_post.models import IdempotencyRecord
from tests.testapp.models import Widget

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.urls("tests.integration.test_exactly_once_races"),
]

# Effects outside any transaction: what a payment gateway would have charged.
charges: Counter[str] = Counter()
charges_lock = threading.Lock()
gates: dict[str, tuple[threading.Event, threading.Event]] = {}


def _charge(request):
    key = request.headers.get("Idempotency-Key", "")
    with charges_lock:
        charges[key] += 1
    gate = gates.get(key)
    if gate is not None:
        entered, release = gate
        entered.set()
        release.wait(timeout=30)
    widget = Widget.objects.create(name=key[:50])
    return JsonResponse({"id": widget.pk}, status=201)


@csrf_exempt
@idempotent(required=True)
def charge(request):
    return _charge(request)


@csrf_exempt
@idempotent(required=True, atomic=False)
def charge_durable(request):
    return _charge(request)


urlpatterns = [path("charge/", charge), path("charge-durable/", charge_durable)]


@pytest.fixture(autouse=True)
def _clean():
    charges.clear()
    gates.clear()
    yield
    for _, release in gates.values():
        release.set()


def send(client, url, key):
    return client.post(url, data={}, content_type="application/json", HTTP_IDEMPOTENCY_KEY=key)


# S8: the read that decides sees every commit made before the lock was granted.

OLD_LOCK_AND_READ = (
    "SELECT pg_try_advisory_xact_lock(%(number)s + w.one - 1) AS locked, r.id "
    "FROM (SELECT length(pg_advisory_lock(%(gate)s)::text) + 1 AS one) w "
    "LEFT JOIN idempotent_post_idempotencyrecord r ON r.scope = %(scope)s AND r.key = %(key)s"
)
NEW_LOCK_AND_READ = (
    "SELECT f.id FROM (SELECT length(pg_advisory_lock(%(gate)s)::text) + 1 AS one) w, "
    "LATERAL idempotent_post_lock_and_read(%(number)s + w.one - 1, %(scope)s, %(key)s) f"
)


@pytest.mark.parametrize(
    "sql, sees_commit", [(OLD_LOCK_AND_READ, False), (NEW_LOCK_AND_READ, True)]
)
def test_S8_lock_and_read_sees_a_commit_made_while_it_waited(postgres, new_key, sql, sees_commit):
    """A statement held after it began, the record committed, then the lock and read.

    The single statement that took the lock and read together read with the snapshot of
    its start and missed the commit (a duplicate then ran the view); the function reads
    with a snapshot taken after the lock.
    """
    key, scope, gate_number = new_key(), "anonymous", 424242
    number = int.from_bytes(lock_id(scope, key)[:8], "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [gate_number])
    found: list = []

    def duplicate():
        try:
            with connections["default"].cursor() as cursor:
                cursor.execute(
                    sql, {"number": number, "gate": gate_number, "scope": scope, "key": key}
                )
                found.append(cursor.fetchone())
                cursor.execute("SELECT pg_advisory_unlock_all()")
        finally:
            connections.close_all()

    thread = threading.Thread(target=duplicate)
    thread.start()
    deadline = time.monotonic() + 10
    with connection.cursor() as cursor:
        while True:  # until the duplicate's statement waits on the gate (it has its snapshot)
            cursor.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            )
            waited = bool(cursor.fetchone()[0])
            if waited or time.monotonic() > deadline:
                break
    IdempotencyRecord.objects.create(
        scope=scope,
        key=key,
        state="completed",
        fingerprint="f",
        status_code=201,
        expires_at=timezone.now() + timedelta(hours=1),
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock(%s)", [gate_number])
    thread.join(timeout=10)
    assert waited, "the duplicate's statement never waited on the gate"
    row = found[0]
    record_id = row[-1] if row else None
    assert record_id != -1  # the lock of (scope, key) was free
    assert (record_id is not None) is sees_commit


KEYS = 600
DUPLICATES = 5


def test_S8_storm_charges_each_key_once(postgres, lock_backend, new_key):
    """Hundreds of keys, each sent by several threads at once: one charge per key."""
    keys = [new_key() for _ in range(KEYS)]
    barrier = threading.Barrier(DUPLICATES)
    statuses: Counter[int] = Counter()
    statuses_lock = threading.Lock()

    def worker():
        client = Client(raise_request_exception=False)
        try:
            for key in keys:
                barrier.wait(timeout=30)
                status = send(client, "/charge/", key).status_code
                with statuses_lock:
                    statuses[status] += 1
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(DUPLICATES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert set(statuses) <= {201, 409}, statuses
    duplicated = {key: count for key, count in charges.items() if count > 1}
    assert duplicated == {}
    assert len(charges) == KEYS
    assert Widget.objects.count() == KEYS


# S9: a running attempt keeps its key; a holder that lost it never commits.


def _send_in_thread(url, key, into):
    try:
        into.append(send(Client(raise_request_exception=False), url, key))
    finally:
        connections.close_all()


def _hold(key):
    entered, release = threading.Event(), threading.Event()
    gates[key] = (entered, release)
    return entered, release


@pytest.mark.parametrize("url", ["/charge-durable/", "/charge/"])
def test_S9_a_view_slower_than_its_lease_keeps_its_key(settings, lock_backend, new_key, url):
    """Lease 0.6 s, the first still running long after it: the retry gets 409, not a run."""
    settings.IDEMPOTENT_POST_LEASE = 0.6
    key = new_key()
    entered, release = _hold(key)
    first: list = []
    thread = threading.Thread(target=_send_in_thread, args=(url, key, first))
    thread.start()
    assert entered.wait(timeout=10)
    # A clock, not a race: wait until three leases have passed while the view runs.
    time.sleep(1.8)
    retry = send(Client(raise_request_exception=False), url, key)
    release.set()
    thread.join(timeout=30)
    assert retry.status_code == 409
    assert first[0].status_code == 201
    assert charges[key] == 1
    assert send(Client(), url, key)["Idempotent-Replayed"] == "true"
    assert charges[key] == 1


@pytest.mark.parametrize("url", ["/charge-durable/", "/charge/"])
def test_S9_a_holder_that_lost_its_key_does_not_store_over_the_new_one(settings, new_key, url):
    """A reservation taken by another attempt mid-run: the late holder's outcome is not kept."""
    settings.IDEMPOTENT_POST_LOCK_BACKEND = "database"
    if connection.vendor != "sqlite" and url == "/charge/":
        pytest.skip("the locked path holds no durable reservation to take over")
    key = new_key()
    entered, release = _hold(key)
    first: list = []
    thread = threading.Thread(target=_send_in_thread, args=(url, key, first))
    thread.start()
    assert entered.wait(timeout=10)
    IdempotencyRecord.objects.filter(key=key).update(owner="new-holder")
    release.set()
    thread.join(timeout=30)
    record = IdempotencyRecord.objects.get(key=key)
    assert record.owner == "new-holder"
    assert record.state == IdempotencyRecord.State.IN_PROGRESS
    if url == "/charge/":
        # Atomic: the late holder's writes went with its outcome.
        assert Widget.objects.count() == 0
