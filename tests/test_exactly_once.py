"""Regression tests for "exactly once": S9-S12, T2-T4, E3, K4, O1, D5, through HTTP.

Each test is named by the rule it proves. The views are in
tests/testapp/exactly_once_views.py; :data:`effects` there counts what no rollback
undoes (a charge at a payment gateway), so "the step did not run again" is a count.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, connections
from django.test import Client
from django.utils import timezone

from idempotent_post import signals
from idempotent_post.locks import free_cache_lock
from idempotent_post.models import IdempotencyRecord, RecordManager
from tests.testapp.exactly_once_views import effects
from tests.testapp.models import Widget

pytestmark = pytest.mark.urls("tests.exactly_once_urls")

MAX_RETRY_COUNT = 2**31 - 1


def post(client, url, key=None, body=None, **extra):
    if key is not None:
        extra["HTTP_IDEMPOTENCY_KEY"] = key
    return client.post(
        url, data=json.dumps(body or {"name": "w"}), content_type="application/json", **extra
    )


def record_of(key) -> IdempotencyRecord:
    return IdempotencyRecord.objects.get(key=key)


@pytest.fixture
def client():
    return Client(raise_request_exception=False)


@pytest.fixture
def name(new_key):
    """A name for this test's rows and effects, so tests never count each other's."""
    return new_key()


def run_in_thread(func):
    """Start ``func()`` in a thread with its own connection; ``result[0]`` once joined."""
    result: list = []

    def target():
        try:
            result.append(func())
        finally:
            connection.close()

    thread = threading.Thread(target=target)
    thread.start()
    return thread, result


# S10: the form mixin keeps what form_valid answers, and never an invalid form's page.


def render_form(client, url) -> str:
    page = client.get(url)
    assert page.status_code == 200
    match = re.search(r'name="idempotency_key" value="([^"]+)"', page.content.decode())
    assert match, "the form has no key field"
    return match.group(1)


def form_data(key, name, quantity=2):
    return {"idempotency_key": key, "name": name[:50], "quantity": quantity}


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/eo/thanks/", "/eo/thanks-base/"])
def test_S10_form_valid_200_thank_you_page_is_kept_and_replayed(client, url, name):
    key = render_form(client, url)
    first = client.post(url, form_data(key, name))
    assert first.status_code == 200
    assert b"Thank you" in first.content
    # A success is never rolled back because it was not a redirect.
    assert Widget.objects.filter(key=key).count() == 1

    again = client.post(url, form_data(key, name))
    assert Widget.objects.filter(key=key).count() == 1  # no second order
    assert again.status_code == 200
    assert again.get("Idempotent-Replayed") == "true"
    assert again.content == first.content


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/eo/htmx/", "/eo/htmx-base/"])
def test_S10_form_valid_204_hx_redirect_is_kept_and_replayed(client, url, name, settings):
    # Not replayed by default: see the next test.
    settings.IDEMPOTENT_POST_REPLAY_HEADERS = ["Content-Type", "Location", "HX-Redirect"]
    key = render_form(client, url)
    first = client.post(url, form_data(key, name))
    assert first.status_code == 204
    widget = Widget.objects.get(key=key)
    assert first["HX-Redirect"] == f"/orders/{widget.pk}/"

    again = client.post(url, form_data(key, name))
    assert Widget.objects.filter(key=key).count() == 1  # no second order
    assert again.status_code == 204
    assert again.get("Idempotent-Replayed") == "true"
    assert again.get("HX-Redirect") == first["HX-Redirect"]


@pytest.mark.django_db
def test_S10_replayed_204_carries_hx_redirect_by_default(client, name):
    url = "/eo/htmx-base/"
    key = render_form(client, url)
    first = client.post(url, form_data(key, name))
    again = client.post(url, form_data(key, name))
    assert again["Idempotent-Replayed"] == "true"
    assert again.get("HX-Redirect") == first["HX-Redirect"]


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/eo/thanks/", "/eo/thanks-base/"])
def test_S10_invalid_form_is_never_kept_and_can_be_corrected(client, url, name):
    key = render_form(client, url)
    invalid = client.post(url, form_data(key, name, quantity=0))
    assert invalid.status_code == 200
    assert b"errorlist" in invalid.content
    assert not IdempotencyRecord.objects.filter(key=key, state="completed").exists()
    assert not Widget.objects.filter(key=key).exists()

    corrected = client.post(url, form_data(key, name, quantity=3))
    assert corrected.status_code == 200
    assert "Idempotent-Replayed" not in corrected
    assert b"Thank you" in corrected.content
    assert Widget.objects.get(key=key).name.endswith("x3")


# S12: a takeover checks the fingerprint first, on every path.


def fail_after_the_charge(client, key, name):
    """A first attempt that charged (a recovery point) and then raised (T2)."""
    failed = post(client, "/eo/steps/", key, {"name": name}, HTTP_X_FAIL="1")
    assert failed.status_code == 500
    record = record_of(key)
    assert record.state == IdempotencyRecord.State.IN_PROGRESS
    assert set(record.recovery_points) == {"charge"}
    assert effects[f"charge:{name}"] == 1
    return record


# The same key with another request, at the same durable view or at an atomic one
# (which takes the locked path on PostgreSQL, or with the cache lock backend).
OTHER_REQUEST_URLS = ["/eo/steps/", "/eo/atomic/"]


@pytest.mark.django_db
@pytest.mark.parametrize("url", OTHER_REQUEST_URLS)
def test_S12_released_key_with_recovery_points_refuses_another_request(
    client, new_key, name, lock_backend, url
):
    key = new_key()
    before = fail_after_the_charge(client, key, name)

    other = post(client, url, key, {"name": f"{name}-other"})
    assert other.status_code == 422
    after = record_of(key)
    assert after.recovery_points == before.recovery_points
    assert after.fingerprint == before.fingerprint
    assert effects[f"atomic:{name}-other"] == 0
    assert not Widget.objects.filter(name__endswith=f"{name}-other").exists()

    # The original request resumes after its recovery point: no second charge.
    resumed = post(client, "/eo/steps/", key, {"name": name})
    assert resumed.status_code == 201
    assert resumed.json()["charge"] == before.recovery_points["charge"]
    assert effects[f"charge:{name}"] == 1
    assert Widget.objects.filter(name=f"charge {name}").count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("url", OTHER_REQUEST_URLS)
def test_S12_dead_holders_reservation_refuses_another_request(
    client, new_key, name, lock_backend, url
):
    key = new_key()
    fail_after_the_charge(client, key, name)
    # As a holder killed mid-run leaves it: its owner, and a lease that ran out.
    IdempotencyRecord.objects.filter(key=key).update(
        owner="dead", locked_until=timezone.now() - timedelta(seconds=1)
    )
    before = record_of(key)

    other = post(client, url, key, {"name": f"{name}-other"})
    assert other.status_code == 422
    after = record_of(key)
    assert after.recovery_points == before.recovery_points
    assert (after.owner, after.fingerprint) == ("dead", before.fingerprint)
    assert effects[f"atomic:{name}-other"] == 0

    resumed = post(client, "/eo/steps/", key, {"name": name})
    assert resumed.status_code == 201
    assert resumed.json()["charge"] == before.recovery_points["charge"]
    assert effects[f"charge:{name}"] == 1


def hide_records_once(monkeypatch):
    """The next read of a record finds nothing, as if it was committed just after it.

    That is the race a reservation INSERT loses: another attempt commits the key
    between this attempt's read and its insert.
    """
    real = RecordManager.lookup
    hidden = [True]

    def lookup(self, using, scope, key):
        if hidden:
            hidden.pop()
            return None
        return real(self, using, scope, key)

    monkeypatch.setattr(RecordManager, "lookup", lookup)


@pytest.mark.django_db
def test_S12_reservation_losing_the_insert_race_replays(client, new_key, name, monkeypatch):
    key = new_key()
    first = post(client, "/eo/nonatomic/", key, {"name": name})
    assert first.status_code == 201

    hide_records_once(monkeypatch)
    again = post(client, "/eo/nonatomic/", key, {"name": name})
    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert effects[f"nonatomic:{name}"] == 1


@pytest.mark.django_db
def test_S12_reservation_losing_the_insert_race_to_another_request_gets_422(
    client, new_key, name, monkeypatch
):
    key = new_key()
    assert post(client, "/eo/nonatomic/", key, {"name": name}).status_code == 201

    hide_records_once(monkeypatch)
    other = post(client, "/eo/nonatomic/", key, {"name": f"{name}-other"})
    assert other.status_code == 422
    assert effects[f"nonatomic:{name}-other"] == 0


@pytest.mark.django_db
def test_S12_reservation_losing_the_insert_race_to_a_live_holder_gets_409(
    client, new_key, name, monkeypatch
):
    key = new_key()
    assert post(client, "/eo/nonatomic/", key, {"name": name}).status_code == 201
    IdempotencyRecord.objects.filter(key=key).update(
        state="in_progress", owner="holder", locked_until=timezone.now() + timedelta(seconds=30)
    )

    hide_records_once(monkeypatch)
    busy = post(client, "/eo/nonatomic/", key, {"name": name})
    assert busy.status_code == 409
    assert effects[f"nonatomic:{name}"] == 1


# S11: transient answers are never kept.


@pytest.mark.django_db
@pytest.mark.parametrize("code", [408, 409, 425, 429, 503])
def test_S11_transient_status_is_never_kept(client, new_key, name, settings, code):
    settings.IDEMPOTENT_POST_STORE_SERVER_ERRORS = True
    key = new_key()
    first = post(client, f"/eo/status/{code}/", key, {"name": name})
    assert first.status_code == code
    assert first.content == f"status {code}".encode()
    if code in (429, 503):
        assert first["Retry-After"] == "7"
    assert not IdempotencyRecord.objects.filter(key=key).exists()
    # The view's writes are rolled back with the error.
    assert not Widget.objects.filter(name=f"transient {code}").exists()

    retried = post(client, f"/eo/status/{code}/", key, {"name": name})
    assert retried.status_code == code
    assert "Idempotent-Replayed" not in retried
    assert effects[f"transient:{name}"] == 2


# E3: X-Retry-Count is bounded.


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/eo/atomic/", "/eo/nonatomic/"])
@pytest.mark.parametrize(
    ("header", "recorded"),
    [
        ("3000000000", MAX_RETRY_COUNT),
        ("99999999999999999999", MAX_RETRY_COUNT),
        ("-5", 0),
        ("abc", 0),
    ],
)
def test_E3_out_of_range_retry_count_is_bounded(client, new_key, url, header, recorded):
    key = new_key()
    response = post(client, url, key, HTTP_X_RETRY_COUNT=header)
    assert response.status_code == 201
    assert record_of(key).retry_count == recorded
    assert post(client, url, key, HTTP_X_RETRY_COUNT=header)["Idempotent-Replayed"] == "true"


# T2, K4: recovery points on a request without a key.


@pytest.mark.django_db
def test_T2_K4_step_runs_on_a_request_without_a_key(client, name):
    response = post(client, "/eo/steps/", body={"name": name})
    assert response.status_code == 201
    assert effects[f"charge:{name}"] == 1
    assert response.json()["charge"] == Widget.objects.get(name=f"charge {name}").pk
    assert not IdempotencyRecord.objects.exists()


# O1, S9: a released key is free, not taken over.


@pytest.fixture
def taken_over():
    seen: list[dict] = []

    def receiver(sender, **kwargs):
        seen.append(kwargs)

    signals.lease_taken_over.connect(receiver)
    yield seen
    signals.lease_taken_over.disconnect(receiver)


def takeover_warnings(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and "takes over" in r.getMessage()
    ]


@pytest.mark.django_db
def test_O1_S9_retry_after_the_views_own_failure_is_no_takeover(
    client, new_key, name, taken_over, caplog
):
    key = new_key()
    fail_after_the_charge(client, key, name)
    caplog.clear()

    retried = post(client, "/eo/steps/", key, {"name": name})
    assert retried.status_code == 201
    assert taken_over == []
    assert takeover_warnings(caplog) == []


@pytest.mark.django_db
def test_O1_S9_dead_holder_is_taken_over(client, new_key, name, taken_over, caplog):
    key = new_key()
    fail_after_the_charge(client, key, name)
    IdempotencyRecord.objects.filter(key=key).update(
        owner="dead", locked_until=timezone.now() - timedelta(seconds=1)
    )
    caplog.clear()

    retried = post(client, "/eo/steps/", key, {"name": name})
    assert retried.status_code == 201
    assert [seen["attempts"] for seen in taken_over] == [2]
    assert len(takeover_warnings(caplog)) == 1
    assert effects[f"charge:{name}"] == 1


# D5: async responses render off the event loop.


@pytest.mark.django_db(transaction=True)
def test_D5_async_template_response_with_a_lazy_queryset(client, new_key, name):
    key = new_key()
    first = post(client, "/eo/async-page/", key, {"name": name})
    assert first.status_code == 201
    widget = Widget.objects.get(name=name)
    assert first.content == f"{widget.pk}:{name};".encode()

    again = post(client, "/eo/async-page/", key, {"name": name})
    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert Widget.objects.filter(name=name).count() == 1


# T3: ATOMIC_REQUESTS, and durable atomic blocks inside the guard.


@pytest.fixture
def atomic_requests(transactional_db):
    """``ATOMIC_REQUESTS = True`` on the default database, for this test only."""
    configured = django_settings.DATABASES["default"]
    live = connections["default"].settings_dict
    saved = configured.get("ATOMIC_REQUESTS", False), live.get("ATOMIC_REQUESTS", False)
    configured["ATOMIC_REQUESTS"] = live["ATOMIC_REQUESTS"] = True
    yield
    configured["ATOMIC_REQUESTS"], live["ATOMIC_REQUESTS"] = saved


def test_T3_recovery_point_commits_under_atomic_requests(
    atomic_requests, client, new_key, name, gate
):
    key = new_key()
    held = gate()
    first, answered = run_in_thread(
        lambda: post(
            client, "/eo/gated-steps/", key, {"name": name}, HTTP_X_GATE=held.name, HTTP_X_FAIL="1"
        )
    )
    try:
        assert held.entered.wait(timeout=30)
        # The reservation and the recovery point are committed while the view runs.
        assert set(record_of(key).recovery_points) == {"charge"}
        duplicate, duplicated = run_in_thread(
            lambda: post(Client(), "/eo/gated-steps/", key, {"name": name})
        )
        # "At once": the duplicate does not wait for the first attempt to end.
        duplicate.join(timeout=15)
        answered_at_once = not duplicate.is_alive()
    finally:
        held.release()
        first.join(timeout=60)
    duplicate.join(timeout=60)
    assert answered_at_once
    assert duplicated[0].status_code == 409
    assert answered[0].status_code == 500

    assert set(record_of(key).recovery_points) == {"charge"}
    retried = post(client, "/eo/gated-steps/", key, {"name": name})
    assert retried.status_code == 201
    assert effects[f"charge:{name}"] == 1
    assert Widget.objects.filter(name=f"charge {name}").count() == 1


def test_T3_drf_view_inside_atomic_requests_is_refused_with_the_fix(atomic_requests, new_key):
    strict = Client(raise_request_exception=True)
    with pytest.raises(ImproperlyConfigured, match="non_atomic_requests"):
        post(strict, "/eo/drf/", new_key())
    assert not Widget.objects.exists()


def test_T3_drf_view_out_of_atomic_requests_works(atomic_requests, client, new_key):
    key = new_key()
    first = post(client, "/eo/drf-non-atomic/", key, {"name": "drf"})
    assert first.status_code == 201
    again = post(client, "/eo/drf-non-atomic/", key, {"name": "drf"})
    assert again["Idempotent-Replayed"] == "true"
    assert Widget.objects.filter(name="drf").count() == 1


def test_T3_durable_atomic_block_in_the_guard_is_refused_with_the_fix(transactional_db, new_key):
    strict = Client(raise_request_exception=True)
    key = new_key()
    with pytest.raises(ImproperlyConfigured, match="atomic=False"):
        post(strict, "/eo/durable/", key)
    # The key was given back: the same request gets the same clear error, not a 409.
    with pytest.raises(ImproperlyConfigured, match="atomic=False"):
        post(strict, "/eo/durable/", key)
    assert not Widget.objects.exists()


def test_T3_durable_atomic_block_works_with_atomic_false(transactional_db, client, new_key):
    key = new_key()
    first = post(client, "/eo/durable-non-atomic/", key, {"name": "durable"})
    assert first.status_code == 201
    again = post(client, "/eo/durable-non-atomic/", key, {"name": "durable"})
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert Widget.objects.filter(name="durable").count() == 1


# T4: records on another database than the view's writes.

BOTH_DATABASES = pytest.mark.django_db(transaction=True, databases=["default", "records"])


@pytest.fixture(params=["default", "records"])
def records_alias(request, settings):
    """The records on the view's database, then on another (IDEMPOTENT_POST_DATABASE)."""
    settings.IDEMPOTENT_POST_DATABASE = request.param
    return request.param


def records_in(alias, key):
    return IdempotencyRecord.objects.using(alias).filter(key=key)


@BOTH_DATABASES
def test_T4_success_commits_the_views_writes_and_the_record(client, new_key, name, records_alias):
    key = new_key()
    first = post(client, "/eo/atomic/", key, {"name": name})
    assert first.status_code == 201
    assert Widget.objects.filter(name=name).count() == 1
    assert records_in(records_alias, key).get().state == IdempotencyRecord.State.COMPLETED
    assert post(client, "/eo/atomic/", key, {"name": name})["Idempotent-Replayed"] == "true"
    assert effects[f"atomic:{name}"] == 1


@BOTH_DATABASES
def test_T4_error_status_rolls_back_both_databases(client, new_key, name, records_alias):
    key = new_key()
    assert post(client, "/eo/server-error/", key, {"name": name}).status_code == 500
    assert not Widget.objects.filter(name=name).exists()
    assert not records_in(records_alias, key).exists()
    retried = post(client, "/eo/server-error/", key, {"name": name})
    assert retried.status_code == 500
    assert "Idempotent-Replayed" not in retried


def hide_records_until_the_view_ran(monkeypatch, effect):
    """Every read before the view runs finds nothing: another attempt, past a lost lock,
    commits the key after this attempt read it under its lock.
    """
    runs = effects[effect]
    real_lookup, real_lock_and_lookup = RecordManager.lookup, RecordManager.lock_and_lookup

    def hidden() -> bool:
        return effects[effect] == runs

    def lookup(self, using, scope, key):
        return None if hidden() else real_lookup(self, using, scope, key)

    def lock_and_lookup(self, using, number, scope, key):
        held, record = real_lock_and_lookup(self, using, number, scope, key)
        return held, (None if hidden() else record)

    monkeypatch.setattr(RecordManager, "lookup", lookup)
    monkeypatch.setattr(RecordManager, "lock_and_lookup", lock_and_lookup)


@BOTH_DATABASES
def test_T4_S12_run_losing_at_the_insert_rolls_back_and_replays(
    client, new_key, name, records_alias, lock_backend, monkeypatch, settings
):
    if lock_backend == "database" and connections[records_alias].vendor == "sqlite":
        pytest.skip("SQLite has no database lock: its durable reservation loses before the view")
    key = new_key()
    first = post(client, "/eo/atomic/", key, {"name": name})
    assert first.status_code == 201
    if lock_backend == "cache":
        # The first left its lock to expire; Redis loses it (a restart, an eviction).
        free_cache_lock(
            settings.IDEMPOTENT_POST_CACHE, records_in(records_alias, key).get().scope, key
        )

    hide_records_until_the_view_ran(monkeypatch, f"atomic:{name}")
    duplicate = post(client, "/eo/atomic/", key, {"name": name})
    assert effects[f"atomic:{name}"] == 2  # the duplicate's view did run
    assert duplicate.status_code == 201
    assert duplicate["Idempotent-Replayed"] == "true"
    assert duplicate.content == first.content
    # Its writes were rolled back with the record it could not insert.
    assert Widget.objects.filter(name=name).count() == 1
    assert records_in(records_alias, key).count() == 1


# S6, T1: on a DRF view, an exception that DRF answers is the view's answer.


def raising(client, key, name, raises, url="/eo/drf-raising/", **extra):
    return post(client, url, key, body={"name": name, "raise": raises}, **extra)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("raises", "status"), [("invalid", 400), ("missing", 404)])
def test_S6_T1_drf_4xx_raised_by_the_view_is_kept_and_its_writes_undone(
    client, new_key, name, lock_backend, raises, status
):
    key = new_key()
    first = raising(client, key, name, raises)
    assert first.status_code == status
    assert "Idempotent-Replayed" not in first
    assert not Widget.objects.filter(name=name).exists()  # written, then rolled back
    again = raising(client, key, name, raises)
    assert again.status_code == status
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert again["Content-Type"] == first["Content-Type"] == "application/json"
    assert effects[f"raised:{name}"] == 1  # the retry did not run the view
    assert record_of(key).status_code == status
    assert not Widget.objects.filter(name=name).exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("raises", "status"), [("throttled", 429), ("crash", 500)])
def test_S6_S11_drf_transient_or_unanswered_exception_is_not_kept(
    client, new_key, name, lock_backend, raises, status
):
    key = new_key()
    assert raising(client, key, name, raises).status_code == status
    again = raising(client, key, name, raises)
    assert again.status_code == status
    assert "Idempotent-Replayed" not in again
    assert effects[f"raised:{name}"] == 2  # released: the retry ran the view again
    assert not IdempotencyRecord.objects.filter(key=key).exists()
    assert not Widget.objects.filter(name=name).exists()


@pytest.mark.django_db(transaction=True)
def test_S6_drf_4xx_raised_by_an_atomic_false_view_is_kept_with_its_writes(client, new_key, name):
    # Without a transaction there is nothing to undo: what the view wrote stays, as any
    # atomic=False view's writes do.
    key = new_key()
    url = "/eo/drf-raising-non-atomic/"
    assert raising(client, key, name, "invalid", url).status_code == 400
    again = raising(client, key, name, "invalid", url)
    assert again["Idempotent-Replayed"] == "true"
    assert effects[f"raised:{name}"] == 1
    assert Widget.objects.filter(name=name).count() == 1


@pytest.mark.django_db(transaction=True)
def test_S6_a_raised_4xx_whose_key_was_taken_meanwhile_is_answered_not_kept(
    postgres, client, new_key, name, lock_backend, gate
):
    # Between the rollback of the view's writes and the keeping of its answer, another
    # attempt's record for the key commits (here: written directly): that one stays.
    key = new_key()
    held = gate()
    thread, result = run_in_thread(
        lambda: raising(
            Client(raise_request_exception=False), key, name, "invalid", HTTP_X_GATE=held.name
        )
    )
    assert held.entered.wait(10)
    IdempotencyRecord.objects.create(
        scope="anonymous",
        key=key,
        state=IdempotencyRecord.State.COMPLETED,
        fingerprint="another request",
        status_code=201,
        response_body=b"{}",
        expires_at=timezone.now() + timedelta(hours=1),
    )
    held.release()
    thread.join(10)
    assert result[0].status_code == 400
    assert "Idempotent-Replayed" not in result[0]
    assert record_of(key).fingerprint == "another request"
    assert not Widget.objects.filter(name=name).exists()
