"""The Redis side of the budget, and the cache lock that a kept outcome leaves to expire.

Round trips are counted on the real Redis, by wrapping (not replacing) redis-py's one
send per round trip: a single command or a whole pipeline. Only the request's own thread
counts: the double-submit watch of the database lock runs on a background thread.
"""

from __future__ import annotations

import threading

import pytest
from django.test import Client
from django_redis import get_redis_connection
from redis.connection import AbstractConnection

from idempotent_post import doublesubmit, signals
from idempotent_post.locks import LOCK_PREFIX, lock_id
from idempotent_post.models import IdempotencyRecord, RecordManager
from idempotent_post.operations import forget
from tests.testapp.models import Widget

pytestmark = pytest.mark.django_db(transaction=True)


def post(client, url, key, name="w"):
    return client.post(
        url, {"name": name}, content_type="application/json", HTTP_IDEMPOTENCY_KEY=key
    )


@pytest.fixture
def round_trips(monkeypatch):
    """The Redis round trips each thread sent, by thread id."""
    sent: dict[int, int] = {}
    real = AbstractConnection.send_packed_command

    def counted(self, command, check_health=True):
        ident = threading.get_ident()
        sent[ident] = sent.get(ident, 0) + 1
        return real(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    return sent


@pytest.fixture
def cache_lock(settings, redis_cache):
    settings.IDEMPOTENT_POST_LOCK_BACKEND = "cache"
    settings.IDEMPOTENT_POST_CACHE = redis_cache
    settings.IDEMPOTENT_POST_DOUBLE_SUBMIT_WINDOW = 60  # generous: no timing in tests
    get_redis_connection(redis_cache).flushdb()
    return redis_cache


def lock_exists(alias: str, key: str) -> bool:
    record = IdempotencyRecord.objects.get(key=key)
    from django.core.cache import caches

    name = caches[alias].make_key(LOCK_PREFIX + lock_id(record.scope, key).hex())
    return bool(get_redis_connection(alias).exists(name))


def test_budget_database_lock_sends_no_redis_round_trip_on_the_request(
    postgres, settings, redis_cache, round_trips, new_key
):
    settings.IDEMPOTENT_POST_LOCK_BACKEND = "database"
    settings.IDEMPOTENT_POST_CACHE = redis_cache
    settings.IDEMPOTENT_POST_DOUBLE_SUBMIT_WINDOW = 60
    key = new_key()
    assert post(Client(), "/t/plain/", key).status_code == 201
    assert post(Client(), "/t/plain/", key)["Idempotent-Replayed"] == "true"
    doublesubmit.drain()
    assert round_trips.get(threading.get_ident(), 0) == 0
    # The watch did run, off the request's thread: one round trip per batch.
    assert sum(round_trips.values()) in (1, 2)


def test_budget_cache_lock_first_execution_is_one_redis_round_trip(
    cache_lock, round_trips, new_key
):
    """The lock and the double-submit sighting share one pipeline; the lock is not freed."""
    key = new_key()
    assert post(Client(), "/t/plain/", key).status_code == 201
    assert round_trips == {threading.get_ident(): 1}
    assert lock_exists(cache_lock, key)  # left to expire with its lease


def test_budget_cache_lock_replay_sends_no_redis_round_trip(cache_lock, round_trips, new_key):
    key = new_key()
    post(Client(), "/t/plain/", key)
    round_trips.clear()
    assert post(Client(), "/t/plain/", key)["Idempotent-Replayed"] == "true"
    assert round_trips == {}


def test_L2_a_duplicate_that_read_before_the_commit_gets_the_replay_not_409(
    cache_lock, new_key, monkeypatch
):
    """Its pre-read found nothing, then the lock was still held (left to expire): it reads
    the record again and replays it."""
    key = new_key()
    first = post(Client(), "/t/plain/", key)
    real = RecordManager.lookup
    reads = []

    def lookup(self, using, scope, key):
        reads.append(key)
        return None if len(reads) == 1 else real(self, using, scope, key)

    monkeypatch.setattr(RecordManager, "lookup", lookup)
    duplicate = post(Client(), "/t/plain/", key)
    assert len(reads) == 2
    assert duplicate.status_code == 201
    assert duplicate["Idempotent-Replayed"] == "true"
    assert duplicate.content == first.content
    assert Widget.objects.count() == 1


def test_L2_an_outcome_not_kept_frees_the_lock_at_once(cache_lock, new_key):
    key = new_key()
    assert post(Client(), "/t/status/500/", key).status_code == 500
    assert not IdempotencyRecord.objects.filter(key=key).exists()
    retried = post(Client(), "/t/status/500/", key)
    assert retried.status_code == 500  # ran again: not a 409 behind a leftover lock
    assert "Idempotent-Replayed" not in retried


def test_L2_a_ttl_shorter_than_the_lease_frees_the_lock(cache_lock, settings, new_key):
    settings.IDEMPOTENT_POST_TTL = 1
    settings.IDEMPOTENT_POST_LEASE = 30
    key = new_key()
    assert post(Client(), "/t/plain/", key).status_code == 201
    assert not lock_exists(cache_lock, key)


def test_C7_forget_frees_the_lock_left_to_expire(cache_lock, new_key, django_user_model):
    key = new_key()
    post(Client(), "/t/plain/", key)
    assert lock_exists(cache_lock, key)
    forget(
        IdempotencyRecord.objects.get(key=key),
        django_user_model.objects.create(username="op"),
        "a test",
    )
    again = post(Client(), "/t/plain/", key)
    assert again.status_code == 201
    assert "Idempotent-Replayed" not in again  # the view ran again, at once
    assert Widget.objects.count() == 2


def test_O2_the_cache_lock_judges_the_sighting_in_its_own_round_trip(cache_lock, new_key):
    received = []

    def receiver(sender, **kwargs):
        received.append(kwargs["fingerprint"])

    signals.double_submit_suspected.connect(receiver)
    try:
        post(Client(), "/t/plain/", new_key())
        post(Client(), "/t/plain/", new_key())
        # No drain(): the report came with the second request's lock.
        assert len(received) == 1
    finally:
        signals.double_submit_suspected.disconnect(receiver)


def test_O2_a_batch_of_sightings_is_one_round_trip(settings, redis_cache, round_trips, rf):
    settings.IDEMPOTENT_POST_CACHE = redis_cache
    settings.IDEMPOTENT_POST_DOUBLE_SUBMIT_WINDOW = 60
    get_redis_connection(redis_cache).flushdb()
    round_trips.clear()
    request = rf.post("/t/plain/")
    received = []

    def receiver(sender, **kwargs):
        received.append(kwargs["request"])

    sightings = [
        doublesubmit.Sighting(request, "user:1", "same", key, None) for key in ("a", "b", "a", "c")
    ]
    signals.double_submit_suspected.connect(receiver)
    try:
        doublesubmit.watch(sightings)
    finally:
        signals.double_submit_suspected.disconnect(receiver)
    assert round_trips == {threading.get_ident(): 1}
    # "a" came first; "b" and "c" are other keys for the same request, "a" again a retry.
    assert len(received) == 2
