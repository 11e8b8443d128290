"""Signals and log lines (O1), double-submit detection (O2), X-Retry-Count (O3)."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from idempotent_post import doublesubmit, signals
from idempotent_post.models import IdempotencyRecord

pytestmark = pytest.mark.django_db


@pytest.fixture
def received():
    seen: list[tuple[str, dict]] = []
    handlers = {}
    for name in (
        "replayed",
        "conflict",
        "mismatch",
        "lease_taken_over",
        "lock_backend_fallback",
        "double_submit_suspected",
    ):

        def handler(sender, _name=name, **kwargs):
            seen.append((_name, kwargs))

        handlers[name] = handler
        getattr(signals, name).connect(handler)
    yield seen
    for name, handler in handlers.items():
        getattr(signals, name).disconnect(handler)


def post(key=None, body=None, **extra):
    if key:
        extra["HTTP_IDEMPOTENCY_KEY"] = key
    return Client().post(
        "/t/plain/", data=body or {"name": "w"}, content_type="application/json", **extra
    )


def names(seen):
    return [name for name, _ in seen]


def test_o1_replayed(received, caplog):
    caplog.set_level(logging.INFO, logger="idempotent_post")
    post("k")
    post("k")
    assert names(received) == ["replayed"]
    assert received[0][1]["record"].key == "k"
    assert "Replaying key 'k'" in caplog.text


def test_o1_mismatch(received, caplog):
    post("k")
    post("k", body={"name": "other"})
    assert names(received) == ["mismatch"]
    assert "reused for a different request" in caplog.text


def test_o1_conflict(received, caplog):
    caplog.set_level(logging.INFO, logger="idempotent_post")
    post("k")
    IdempotencyRecord.objects.update(
        state="in_progress", owner="holder", locked_until=timezone.now() + timedelta(seconds=30)
    )
    assert post("k").status_code == 409
    assert names(received) == ["conflict"]
    assert "409" in caplog.text


def test_o1_lease_taken_over(received, caplog):
    post("k")
    IdempotencyRecord.objects.update(
        state="in_progress", owner="gone", locked_until=timezone.now() - timedelta(seconds=1)
    )
    assert post("k").status_code == 201
    assert names(received) == ["lease_taken_over"]
    assert received[0][1]["attempts"] == 2
    assert "takes over" in caplog.text


@pytest.fixture
def dead_redis(settings):
    """The cache lock backend on a Redis that refuses connections (L3)."""
    settings.CACHES = {
        **settings.CACHES,
        "dead": {
            "BACKEND": "django_redis.cache.RedisCache",
            # Nothing listens on port 1: the connection is refused at once.
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
        },
    }
    settings.IDEMPOTENT_POST_LOCK_BACKEND = "cache"
    settings.IDEMPOTENT_POST_CACHE = "dead"


def test_o1_lock_backend_fallback(received, caplog, dead_redis):
    assert post("k").status_code == 201
    assert post("k")["Idempotent-Replayed"] == "true"
    assert "lock_backend_fallback" in names(received)
    assert "using the database lock" in caplog.text


def test_l3_fail_closed_is_503_problem(settings, dead_redis):
    settings.IDEMPOTENT_POST_CACHE_FALLBACK = False
    response = post("k")
    assert response.status_code == 503
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == 503
    assert not IdempotencyRecord.objects.exists()


@pytest.fixture
def detection(settings):
    settings.IDEMPOTENT_POST_DOUBLE_SUBMIT_WINDOW = 60  # generous: no timing in tests
    from django.core.cache import cache

    cache.clear()


def test_o2_same_post_twice_without_a_key_is_reported_not_blocked(detection, received, caplog):
    assert post().status_code == 201
    assert post().status_code == 201  # not blocked: both ran
    assert names(received) == ["double_submit_suspected"]
    assert "Suspected double submit" in caplog.text


def test_o2_same_post_with_different_keys_is_reported(detection, received):
    post("k1")
    post("k2")
    doublesubmit.drain()  # keyed requests are watched off their path
    assert names(received) == ["double_submit_suspected"]


def test_o2_retry_with_the_same_key_is_not_a_double_submit(detection, received):
    post("k1")
    post("k1")
    doublesubmit.drain()
    assert names(received) == ["replayed"]


def test_o2_different_bodies_are_not_reported(detection, received):
    post(body={"name": "a"})
    post(body={"name": "b"})
    assert received == []


def test_o2_window_zero_disables(settings, received):
    settings.IDEMPOTENT_POST_DOUBLE_SUBMIT_WINDOW = 0
    post()
    post()
    assert received == []


def test_o3_retry_count_is_logged_and_recorded(caplog):
    caplog.set_level(logging.INFO, logger="idempotent_post")
    post("k", HTTP_X_RETRY_COUNT="2")
    assert "Retry 2 of key 'k'" in caplog.text
    assert IdempotencyRecord.objects.get(key="k").retry_count == 2
