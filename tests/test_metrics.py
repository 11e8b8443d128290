"""Prometheus metrics (C6): counters and the guard's histogram on the default registry."""

from __future__ import annotations

import logging
import sys
from datetime import timedelta

import prometheus_client
import pytest
from asgiref.sync import async_to_sync
from django.apps import apps
from django.test import AsyncClient, Client
from django.utils import timezone

from idempotent_post import metrics
from idempotent_post.models import IdempotencyRecord

pytestmark = pytest.mark.django_db

PLAIN = {"view": "tests.testapp.views.plain_create"}
COUNTERS = (
    "executed",
    "replayed",
    "conflicts",
    "mismatches",
    "takeovers",
    "lock_fallbacks",
    "double_submits",
)
OUTCOMES = ("executed", "replayed", "conflict", "mismatch")


def sample(name: str, labels: dict[str, str]) -> float:
    return prometheus_client.REGISTRY.get_sample_value(name, labels) or 0.0


def snapshot(labels: dict[str, str] = PLAIN) -> dict[str, float]:
    """Every counter for ``labels``' view, and the histogram's count per outcome."""
    values = {name: sample(f"idempotent_post_{name}_total", labels) for name in COUNTERS}
    for outcome in OUTCOMES:
        values[f"guard:{outcome}"] = sample(
            "idempotent_post_guard_seconds_count", {"outcome": outcome}
        )
    return values


@pytest.fixture
def deltas():
    """A function that says which of /t/plain/'s metrics moved since the test began, by how much."""
    before = snapshot()

    def moved() -> dict[str, float]:
        after = snapshot()
        return {name: after[name] - before[name] for name in after if after[name] != before[name]}

    return moved


def post(key=None, body=None, **extra):
    if key:
        extra["HTTP_IDEMPOTENCY_KEY"] = key
    return Client().post(
        "/t/plain/", data=body or {"name": "w"}, content_type="application/json", **extra
    )


def test_C6_execution_counts_once(deltas):
    assert post("k").status_code == 201
    assert deltas() == {"executed": 1, "guard:executed": 1}


def test_C6_replay(deltas):
    post("k")
    assert post("k")["Idempotent-Replayed"] == "true"
    assert deltas() == {"executed": 1, "replayed": 1, "guard:executed": 1, "guard:replayed": 1}


def test_C6_conflict(deltas):
    post("k")
    IdempotencyRecord.objects.update(
        state="in_progress", owner="holder", locked_until=timezone.now() + timedelta(seconds=30)
    )
    assert post("k").status_code == 409
    assert deltas() == {"executed": 1, "conflicts": 1, "guard:executed": 1, "guard:conflict": 1}


def test_C6_mismatch(deltas):
    post("k")
    assert post("k", body={"name": "other"}).status_code == 422
    assert deltas() == {"executed": 1, "mismatches": 1, "guard:executed": 1, "guard:mismatch": 1}


def test_C6_takeover(deltas):
    post("k")
    IdempotencyRecord.objects.update(
        state="in_progress", owner="gone", locked_until=timezone.now() - timedelta(seconds=1)
    )
    assert post("k").status_code == 201
    assert deltas() == {"executed": 2, "takeovers": 1, "guard:executed": 2}


def test_C6_lock_fallback(deltas, settings):
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
    assert post("k").status_code == 201
    assert deltas() == {"executed": 1, "lock_fallbacks": 1, "guard:executed": 1}


def test_C6_requests_without_a_key_are_not_counted(deltas, settings):
    settings.IDEMPOTENT_POST_DOUBLE_SUBMIT_WINDOW = 0
    assert post().status_code == 201
    assert deltas() == {}


def test_C6_double_submit(deltas, settings):
    from django.core.cache import cache

    settings.IDEMPOTENT_POST_DOUBLE_SUBMIT_WINDOW = 60
    cache.clear()
    post()
    post()
    assert deltas() == {"double_submits": 1}


def test_C6_async_view():
    labels = {"view": "tests.testapp.views.async_create"}
    before = snapshot(labels)

    async def twice():
        client = AsyncClient()
        for _ in range(2):
            await client.post("/t/async/", headers={"Idempotency-Key": "k"})

    async_to_sync(twice)()
    after = snapshot(labels)
    assert after["executed"] - before["executed"] == 1
    assert after["replayed"] - before["replayed"] == 1
    assert after["guard:executed"] - before["guard:executed"] == 1


def test_C6_guard_time_is_observed(deltas):
    total = "idempotent_post_guard_seconds_sum"
    before = sample(total, {"outcome": "executed"})
    post("k")
    assert sample(total, {"outcome": "executed"}) > before
    # Buckets are cumulative: +Inf holds every observation.
    assert sample(
        "idempotent_post_guard_seconds_bucket", {"outcome": "executed", "le": "+Inf"}
    ) == sample("idempotent_post_guard_seconds_count", {"outcome": "executed"})


def test_C6_connecting_twice_counts_once(deltas):
    metrics.connect()
    apps.get_app_config("idempotent_post").ready()
    post("k")
    assert deltas() == {"executed": 1, "guard:executed": 1}


def test_C6_without_prometheus_client_ready_skips_the_metrics(monkeypatch):
    monkeypatch.setattr("idempotent_post.apps.find_spec", lambda name: None)
    # None in sys.modules makes any import of it fail: ready() must not try.
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.delitem(sys.modules, "idempotent_post.metrics")
    apps.get_app_config("idempotent_post").ready()
    assert "idempotent_post.metrics" not in sys.modules


def test_C6_a_failing_metric_never_fails_the_request(deltas, monkeypatch, caplog):
    def broken(**labels):
        raise RuntimeError("registry broke")

    monkeypatch.setattr(metrics.EXECUTED, "labels", broken)
    monkeypatch.setattr(metrics.GUARD_SECONDS, "labels", broken)
    with caplog.at_level(logging.WARNING, logger="idempotent_post"):
        assert post("k").status_code == 201
    assert post("k")["Idempotent-Replayed"] == "true"
    assert deltas() == {"replayed": 1}
    assert "Metrics receiver" in caplog.text
    assert "registry broke" in caplog.text


def test_C6_view_label_names_the_code_not_the_request():
    from tests.testapp.views import WidgetViewSet, plain_create

    assert metrics.view_name(plain_create) == "tests.testapp.views.plain_create"
    assert metrics.view_name(WidgetViewSet().create) == "tests.testapp.views.WidgetViewSet.create"
    assert metrics.view_name(WidgetViewSet) == "tests.testapp.views.WidgetViewSet"
    assert metrics.view_name(None) == "unknown"


def test_C6_demo_exposes_metrics():
    post("k")
    response = Client().get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"] == prometheus_client.CONTENT_TYPE_LATEST
    body = response.content.decode()
    for name in (
        "idempotent_post_executed_total",
        "idempotent_post_replayed_total",
        "idempotent_post_conflicts_total",
        "idempotent_post_mismatches_total",
        "idempotent_post_takeovers_total",
        "idempotent_post_lock_fallbacks_total",
        "idempotent_post_guard_seconds_bucket",
    ):
        assert name in body
    assert Client().post("/metrics").status_code == 405
