"""The state machine (S1-S7), transactions (T1, T2) and query counts, through HTTP.

These run on whatever database the suite runs on (SQLite by default, PostgreSQL in
CI); tests that need real concurrency are in tests/integration/.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from idempotent_post.models import IdempotencyRecord
from tests.testapp.models import Widget

pytestmark = pytest.mark.django_db


def post(client, url, key=None, body=None, **extra):
    if key is not None:
        extra["HTTP_IDEMPOTENCY_KEY"] = key
    return client.post(url, data=body or {"name": "w"}, content_type="application/json", **extra)


@pytest.fixture
def client():
    return Client(raise_request_exception=False)


def test_s1_first_request_runs_and_completes(client, new_key):
    key = new_key()
    response = post(client, "/t/plain/", key)
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    assert Widget.objects.count() == 1
    record = IdempotencyRecord.objects.get(key=key)
    assert record.state == IdempotencyRecord.State.COMPLETED
    assert record.status_code == 201
    assert record.scope == "anonymous"


def test_s2_retry_after_completion_replays_without_running(client, new_key):
    """S2: the stored outcome, and the view does not run again."""
    key = new_key()
    first = post(client, "/t/plain/", key)
    second = post(client, "/t/plain/", key)
    assert second.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert second.content == first.content
    assert Widget.objects.count() == 1


def test_s3_live_reservation_answers_409_with_retry_after(client, new_key):
    key = new_key()
    post(client, "/t/plain/", key)
    # Turn the record back into a live in-progress reservation, as a running first
    # attempt with a durable reservation leaves it.
    IdempotencyRecord.objects.filter(key=key).update(
        state="in_progress", owner="holder", locked_until=timezone.now() + timedelta(seconds=30)
    )
    response = post(client, "/t/plain/", key)
    assert response.status_code == 409
    assert response["Content-Type"] == "application/problem+json"
    assert int(response["Retry-After"]) >= 1
    assert Widget.objects.count() == 1


def test_s5_lease_runs_out_and_a_retry_takes_over(client, new_key):
    key = new_key()
    post(client, "/t/plain/", key)
    Widget.objects.all().delete()
    IdempotencyRecord.objects.filter(key=key).update(
        state="in_progress", owner="dead", locked_until=timezone.now() - timedelta(seconds=1)
    )
    response = post(client, "/t/plain/", key)
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    assert Widget.objects.count() == 1
    record = IdempotencyRecord.objects.get(key=key)
    assert record.state == IdempotencyRecord.State.COMPLETED
    assert record.attempts == 2


@pytest.mark.parametrize("code", [200, 302, 400, 404, 422])
def test_s6_2xx_3xx_4xx_are_stored(client, new_key, code):
    """S6: 2xx, 3xx and 4xx outcomes are stored and replayed."""
    key = new_key()
    first = post(client, f"/t/status/{code}/", key)
    second = post(client, f"/t/status/{code}/", key)
    assert first.status_code == second.status_code == code
    assert second["Idempotent-Replayed"] == "true"
    assert Widget.objects.count() == 1


@pytest.mark.parametrize("code", [500, 503])
def test_s6_5xx_is_not_stored_and_rolled_back(client, new_key, code):
    key = new_key()
    assert post(client, f"/t/status/{code}/", key).status_code == code
    assert not IdempotencyRecord.objects.filter(key=key).exists()
    # T1: the 5xx view's writes did not commit.
    assert Widget.objects.count() == 0
    second = post(client, f"/t/status/{code}/", key)
    assert "Idempotent-Replayed" not in second


def test_s6_store_server_errors_setting(client, new_key, settings):
    settings.IDEMPOTENT_POST_STORE_SERVER_ERRORS = True
    key = new_key()
    post(client, "/t/status/500/", key)
    second = post(client, "/t/status/500/", key)
    assert second.status_code == 500
    assert second["Idempotent-Replayed"] == "true"
    assert Widget.objects.count() == 1


def test_s6_t1_exception_releases_the_key_and_leaves_nothing(client, new_key):
    key = new_key()
    response = post(client, "/t/failing/", key)
    assert response.status_code == 500
    assert not IdempotencyRecord.objects.filter(key=key).exists()
    assert Widget.objects.count() == 0
    # The retry runs the view again (and fails again): it was not answered from a record.
    assert post(client, "/t/failing/", key).status_code == 500


def test_s7_expired_record_is_as_good_as_absent(client, new_key):
    key = new_key()
    post(client, "/t/plain/", key)
    IdempotencyRecord.objects.filter(key=key).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    response = post(client, "/t/plain/", key, body={"name": "other"})
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    assert Widget.objects.count() == 2


def test_s7_ttl_setting_sets_expiry(client, new_key, settings):
    settings.IDEMPOTENT_POST_TTL = 60
    key = new_key()
    before = timezone.now()
    post(client, "/t/plain/", key)
    record = IdempotencyRecord.objects.get(key=key)
    assert (
        before + timedelta(seconds=59)
        <= record.expires_at
        <= timezone.now() + timedelta(seconds=61)
    )


def test_t1_atomic_false_view_keeps_a_durable_reservation(client, new_key):
    key = new_key()
    first = post(client, "/t/nonatomic/", key)
    second = post(client, "/t/nonatomic/", key)
    assert first.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert Widget.objects.count() == 1


def test_t2_recovery_points_resume_after_the_last_finished_step(client, new_key):
    key = new_key()
    failed = post(client, "/t/steps/", key, HTTP_X_FAIL_AFTER_STEPS="1")
    assert failed.status_code == 500
    # Both steps committed on their own; the final write did not happen.
    assert sorted(Widget.objects.values_list("name", flat=True)) == ["charge", "email"]
    record = IdempotencyRecord.objects.get(key=key)
    assert set(record.recovery_points) == {"charge", "email"}

    retried = post(client, "/t/steps/", key)
    assert retried.status_code == 201
    assert sorted(Widget.objects.values_list("name", flat=True)) == ["charge", "done", "email"]
    assert retried.json() == record.recovery_points
    assert post(client, "/t/steps/", key)["Idempotent-Replayed"] == "true"


def test_o3_retry_count_is_recorded(client, new_key):
    key = new_key()
    post(client, "/t/plain/", key, HTTP_X_RETRY_COUNT="3")
    assert IdempotencyRecord.objects.get(key=key).retry_count == 3


def test_d2_async_view(client, new_key):
    key = new_key()
    first = post(client, "/t/async/", key)
    second = post(client, "/t/async/", key)
    assert first.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert second.content == first.content
    assert Widget.objects.filter(name="async").count() == 1


def test_safe_methods_pass_through(client, new_key):
    response = client.get("/t/plain/", HTTP_IDEMPOTENCY_KEY="not a valid key")
    assert response.status_code == 201  # the view ran; GET is never guarded
    assert not IdempotencyRecord.objects.exists()


# Query counts: what each path costs on this database (see README, "Costs").


def _count(django_assert_num_queries, client, url, key, expected):
    with django_assert_num_queries(expected):
        post(client, url, key)


@pytest.mark.django_db(transaction=True)
def test_query_count_replay_is_one_indexed_read(client, new_key, django_assert_num_queries):
    key = new_key()
    post(client, "/t/plain/", key)
    _count(django_assert_num_queries, client, "/t/plain/", key, 1)


@pytest.mark.django_db(transaction=True)
def test_query_count_first_execution(client, new_key, django_assert_num_queries, settings):
    """The bare view costs one INSERT; these are the guard's costs on top (README)."""
    settings.IDEMPOTENT_POST_LOCK_BACKEND = "database"
    vendor_costs = {
        # read; BEGIN, advisory lock and read again in one statement, the view's INSERT,
        # record INSERT, COMMIT
        "postgresql": 6,
        # read, GET_LOCK; BEGIN, read again, the view's INSERT, record INSERT, COMMIT;
        # RELEASE_LOCK
        "mysql": 8,
        # read, reservation INSERT (its own commit); BEGIN, the view's INSERT, completing
        # UPDATE, COMMIT
        "sqlite": 6,
    }
    _count(
        django_assert_num_queries,
        client,
        "/t/plain/",
        new_key(),
        vendor_costs[connection.vendor],
    )


@pytest.mark.django_db(transaction=True)
def test_query_count_first_execution_cache_backend(
    client, new_key, django_assert_num_queries, settings, redis_cache
):
    """With Redis holding the in-flight lock, every database pays one commit."""
    settings.IDEMPOTENT_POST_LOCK_BACKEND = "cache"
    settings.IDEMPOTENT_POST_CACHE = redis_cache
    # read; BEGIN, read again under the lock, the view's INSERT, record INSERT, COMMIT
    _count(django_assert_num_queries, client, "/t/plain/", new_key(), 6)


@pytest.mark.django_db(transaction=True)
def test_query_count_non_atomic_view(client, new_key, django_assert_num_queries):
    """atomic=False: a durable reservation and its completion, each its own commit."""
    # read, reservation INSERT, the view's INSERT, completing UPDATE
    _count(django_assert_num_queries, client, "/t/nonatomic/", new_key(), 4)


def test_replay_read_leaves_out_what_the_engine_never_uses(client, new_key):
    """The timestamps and request details are not loaded on the hot path, yet still load."""
    from idempotent_post import signals
    from idempotent_post.models import UNREAD_FIELDS

    key = new_key()
    post(client, "/t/plain/", key)
    received = []

    def receiver(sender, record, **kwargs):
        received.append(record)

    signals.replayed.connect(receiver)
    try:
        assert post(client, "/t/plain/", key)["Idempotent-Replayed"] == "true"
    finally:
        signals.replayed.disconnect(receiver)
    (record,) = received
    assert record.get_deferred_fields() == UNREAD_FIELDS
    assert (record.method, record.path) == ("POST", "/t/plain/")  # loaded on use
    assert record.completed_at is not None
