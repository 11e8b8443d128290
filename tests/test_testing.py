"""The testing helpers and the off switch (C5), used on the demo shop's API."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.test import Client

from demo_project.shop.models import Order, Product
from idempotent_post.models import IdempotencyRecord
from idempotent_post.testing import assert_conflicts, assert_idempotent, assert_mismatch

pytestmark = pytest.mark.django_db

ALICE = {"HTTP_AUTHORIZATION": "Token demo-token-alice"}


@pytest.fixture
def product():
    call_command("seed_demo", verbosity=0)
    return Product.objects.get(name="Ceramic mug")


@pytest.fixture
def client():
    return Client(raise_request_exception=False)


def order(product, quantity=1):
    return {"product": product.pk, "quantity": quantity}


def test_C5_assert_idempotent_on_the_orders_api(client, product):
    first, replay = assert_idempotent(client, "/api/orders/", order(product), **ALICE)
    assert first.status_code == 201
    assert replay.json() == first.json()
    assert Order.objects.count() == 1


def test_C5_assert_conflicts_on_the_orders_api(client, product):
    conflict = assert_conflicts(client, "/api/orders/", order(product), **ALICE)
    assert conflict.json()["status"] == 409
    assert Order.objects.count() == 1


def test_C5_assert_mismatch_on_the_orders_api(client, product):
    assert_mismatch(client, "/api/orders/", order(product), order(product, 2), **ALICE)
    assert Order.objects.count() == 1


def test_C5_assert_idempotent_fails_on_an_unguarded_endpoint(client, product):
    # The comments API creates a comment every time, on purpose (M3).
    with pytest.raises(AssertionError, match="not a replay"):
        assert_idempotent(client, "/api/comments/", {"body": "hello"}, **ALICE)


def test_C5_assert_conflicts_fails_where_nothing_is_stored(client, product):
    with pytest.raises(AssertionError, match="no record"):
        assert_conflicts(client, "/api/comments/", {"body": "hello"}, **ALICE)


def test_C5_enabled_false_runs_every_guard_off(client, product, settings):
    settings.IDEMPOTENT_POST_ENABLED = False
    key = {"HTTP_IDEMPOTENCY_KEY": "same-key"}
    for _ in range(2):
        response = client.post(
            "/api/orders/", order(product), content_type="application/json", **ALICE, **key
        )
        assert response.status_code == 201
        assert "Idempotent-Replayed" not in response
    assert Order.objects.count() == 2
    assert not IdempotencyRecord.objects.exists()


def test_C5_enabled_false_runs_the_form_unguarded(client, product, settings):
    settings.IDEMPOTENT_POST_ENABLED = False
    data = {"product": product.pk, "quantity": 1, "email": "a@example.com"}
    data["idempotency_key"] = "form-key"
    for _ in range(2):
        assert client.post("/checkout/", data).status_code == 303
    assert Order.objects.count() == 2
    assert not IdempotencyRecord.objects.exists()
