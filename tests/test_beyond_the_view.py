"""Webhooks keyed by the body (X3), downstream keys (X4) and ``current()`` (X5)."""

from __future__ import annotations

import json

import pytest
from django.http import JsonResponse
from django.test import Client
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from idempotent_post import current, idempotent
from tests.testapp.models import Widget

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.test_beyond_the_view")]

deliveries: list[str] = []


def event_id(request):
    return json.loads(request.body)["id"]


@csrf_exempt
@idempotent(key=event_id, required=True)
def webhook(request):
    event = json.loads(request.body)
    deliveries.append(event["id"])
    Widget.objects.create(name=event["type"])
    return JsonResponse({"received": event["id"]}, status=201)


@csrf_exempt
@idempotent
def pay(request):
    idempotency = request.idempotency
    assert current() is idempotency
    return JsonResponse(
        {
            "charge_key": idempotency.derive("charge"),
            "refund_key": idempotency.derive("refund"),
            "key": idempotency.key,
        },
        status=201,
    )


urlpatterns = [path("webhook/", webhook), path("pay/", pay)]


@pytest.fixture(autouse=True)
def _clean():
    deliveries.clear()


def deliver(client, body):
    return client.post("/webhook/", data=body, content_type="application/json")


def test_X3_a_webhook_delivered_twice_runs_once(client):
    event = {"id": "evt_123", "type": "payment.succeeded"}
    first = deliver(client, event)
    again = deliver(client, event)
    assert first.status_code == 201
    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert deliveries == ["evt_123"]
    assert Widget.objects.count() == 1


def test_X3_the_same_event_id_with_another_body_is_a_mismatch(client):
    deliver(client, {"id": "evt_1", "type": "a"})
    assert deliver(client, {"id": "evt_1", "type": "b"}).status_code == 422
    assert deliveries == ["evt_1"]


@pytest.mark.parametrize(
    "body",
    [{"type": "no id"}, {"id": "a b"}, {"id": "x" * 300}, [1, 2], "not an object"],
    ids=["missing", "space", "too-long", "a-list", "a-string"],
)
def test_X3_a_body_without_a_usable_key_is_a_400_not_a_500(client, body):
    response = deliver(client, body)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert deliveries == []


def test_X3_unreadable_json_is_a_400(client):
    response = client.post("/webhook/", data=b"{", content_type="application/json")
    assert response.status_code == 400
    assert deliveries == []


def test_X4_derived_keys_are_stable_per_key_and_name_and_differ_otherwise(settings):
    client = Client()
    first = client.post("/pay/", {"n": 1}, "application/json", HTTP_IDEMPOTENCY_KEY="k1").json()
    # The view does not run again on a retry, so ask a second scope-and-key for comparison.
    other = client.post("/pay/", {"n": 1}, "application/json", HTTP_IDEMPOTENCY_KEY="k2").json()
    assert first["charge_key"] != first["refund_key"]
    assert first["charge_key"] != other["charge_key"]
    assert "k1" not in first["charge_key"]
    # After a takeover the view runs again with the same (scope, key): the same keys.
    from idempotent_post.models import IdempotencyRecord

    IdempotencyRecord.objects.filter(key="k1").delete()
    again = client.post("/pay/", {"n": 1}, "application/json", HTTP_IDEMPOTENCY_KEY="k1").json()
    assert again["charge_key"] == first["charge_key"]
    # Keyed with the project's secret: another SECRET_KEY, other keys.
    IdempotencyRecord.objects.filter(key="k1").delete()
    settings.SECRET_KEY = "another-secret"
    rotated = client.post("/pay/", {"n": 1}, "application/json", HTTP_IDEMPOTENCY_KEY="k1").json()
    assert rotated["charge_key"] != first["charge_key"]


def test_X4_without_a_key_each_request_gets_a_fresh_downstream_key():
    client = Client()
    one = client.post("/pay/", {"n": 1}, "application/json").json()
    two = client.post("/pay/", {"n": 1}, "application/json").json()
    assert one["key"] is None
    assert one["charge_key"] != two["charge_key"]


def test_X5_current_is_none_outside_a_guarded_view():
    assert current() is None
    Client().post("/pay/", {"n": 1}, "application/json", HTTP_IDEMPOTENCY_KEY="k3")
    assert current() is None
