"""Exactly once under real concurrency (S3, S4, S5, L2, L3), on PostgreSQL and Redis.

Threads and child processes fire the same key at once, released together by a
barrier; no test sleeps and hopes.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, connections
from django.test import Client

from idempotent_post import engine
from idempotent_post.models import IdempotencyRecord
from tests.testapp.models import Widget

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 8


def send(url, key, body=None, **extra):
    client = Client(raise_request_exception=False)
    try:
        return client.post(
            url,
            data=body or {"name": "w"},
            content_type="application/json",
            HTTP_IDEMPOTENCY_KEY=key,
            **extra,
        )
    finally:
        connections.close_all()


def run_together(count, func):
    """Run ``func(i)`` in ``count`` threads released at once by a barrier."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def target(i):
        barrier.wait()
        results[i] = func(i)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def classify(responses):
    fresh = [r for r in responses if r.status_code == 201 and "Idempotent-Replayed" not in r]
    replays = [r for r in responses if r.get("Idempotent-Replayed") == "true"]
    conflicts = [r for r in responses if r.status_code == 409]
    return fresh, replays, conflicts


def test_s4_threads_same_key_run_the_view_once(postgres, lock_backend, new_key):
    key = new_key()
    responses = run_together(THREADS, lambda i: send("/t/plain/", key))
    fresh, replays, conflicts = classify(responses)
    assert len(fresh) == 1
    assert len(fresh) + len(replays) + len(conflicts) == THREADS
    assert all(r["Content-Type"] == "application/problem+json" for r in conflicts)
    assert Widget.objects.count() == 1
    assert IdempotencyRecord.objects.get(key=key).state == "completed"


def test_s4_threads_many_keys(postgres, lock_backend, new_key):
    keys = [new_key() for _ in range(4)]
    responses = run_together(THREADS, lambda i: send("/t/plain/", keys[i % len(keys)]))
    assert all(r.status_code in (201, 409) for r in responses)
    assert Widget.objects.count() == len(keys)


def test_s4_processes_same_key_run_the_view_once(postgres, lock_backend, new_key, spawn, settings):
    key = new_key()
    options = {"LOCK_BACKEND": settings.IDEMPOTENT_POST_LOCK_BACKEND}
    if lock_backend == "cache":
        options["CACHE"] = settings.IDEMPOTENT_POST_CACHE
    workers = [spawn("/t/plain/", key, **options) for _ in range(4)]
    for worker in workers:
        worker.go()
    results = [worker.result() for worker in workers]
    fresh = [r for r in results if r["status"] == 201 and r["replayed"] is None]
    assert len(fresh) == 1, results
    assert all(r["status"] in (201, 409) for r in results), results
    assert Widget.objects.count() == 1


def test_s3_duplicate_during_the_first_gets_409_then_replay(postgres, lock_backend, new_key, gate):
    key, held = new_key(), gate()
    first = threading.Thread(target=lambda: send("/t/plain/", key, HTTP_X_GATE=held.name))
    first.start()
    assert held.entered.wait(timeout=30)
    duplicate = send("/t/plain/", key)
    assert duplicate.status_code == 409
    assert duplicate["Retry-After"]
    held.release()
    first.join(timeout=30)
    assert send("/t/plain/", key)["Idempotent-Replayed"] == "true"
    assert Widget.objects.count() == 1


def test_s3_waiting_duplicate_gets_the_replay(postgres, lock_backend, new_key, gate, monkeypatch):
    key, held = new_key(), gate()
    waiting = threading.Event()
    real_sleep = time.sleep

    def observed_sleep(seconds):
        waiting.set()
        real_sleep(seconds)

    monkeypatch.setattr(engine.time, "sleep", observed_sleep)
    first = threading.Thread(target=lambda: send("/t/waiting/", key, HTTP_X_GATE=held.name))
    first.start()
    assert held.entered.wait(timeout=30)
    result: dict = {}
    second = threading.Thread(target=lambda: result.update(r=send("/t/waiting/", key)))
    second.start()
    assert waiting.wait(timeout=30)  # the duplicate is polling, not answered yet
    held.release()
    first.join(timeout=30)
    second.join(timeout=30)
    assert result["r"].status_code == 201
    assert result["r"]["Idempotent-Replayed"] == "true"
    assert Widget.objects.count() == 1


@pytest.mark.parametrize("database", ["postgres", "sqlite"])
def test_s5_t1_killed_holder_recovers_by_lease(request, database, lock_backend, new_key, spawn):
    if database == "postgres":
        request.getfixturevalue("postgres")
    elif connection.vendor != "sqlite":
        pytest.skip("runs when the suite runs on SQLite")
    key = new_key()
    options = {"LEASE": 2, "LOCK_BACKEND": lock_backend}
    if lock_backend == "cache":
        options["CACHE"] = "redis"
    holder = spawn("/t/plain/", key, {"X-Hold-Forever": "1"}, **options)
    holder.go()
    assert holder.readline() == "ENTERED"
    holder.kill()

    from django.test import override_settings

    with override_settings(IDEMPOTENT_POST_LEASE=2):
        retry = send("/t/plain/", key)
        # The advisory lock died with the connection: PostgreSQL lets the retry in at
        # once. Redis and a durable reservation hold the key until the lease runs out.
        if database == "postgres" and lock_backend == "database":
            assert retry.status_code == 201
        else:
            assert retry.status_code == 409
            deadline = time.monotonic() + 30
            while retry.status_code == 409 and time.monotonic() < deadline:
                time.sleep(0.2)  # polling the observable outcome, bounded
                retry = send("/t/plain/", key)
            assert retry.status_code == 201
    assert "Idempotent-Replayed" not in retry
    # Nothing of the killed attempt survived (T1): only the retry's row exists.
    assert Widget.objects.count() == 1
    assert send("/t/plain/", key)["Idempotent-Replayed"] == "true"


def test_l3_redis_stops_mid_traffic_falls_back(postgres, own_redis, new_key, caplog):
    before = new_key()
    assert send("/t/plain/", before).status_code == 201
    own_redis.stop()
    key = new_key()
    responses = run_together(4, lambda i: send("/t/plain/", key))
    assert all(r.status_code in (201, 409) for r in responses)
    assert len(classify(responses)[0]) == 1
    assert send("/t/plain/", key)["Idempotent-Replayed"] == "true"
    assert Widget.objects.count() == 2
    assert "using the database lock" in caplog.text


def test_l3_redis_down_fail_closed_is_503(postgres, own_redis, new_key, settings):
    settings.IDEMPOTENT_POST_CACHE_FALLBACK = False
    own_redis.stop()
    response = send("/t/plain/", new_key())
    assert response.status_code == 503
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == 503
    assert Widget.objects.count() == 0
