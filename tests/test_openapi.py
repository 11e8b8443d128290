"""The OpenAPI schema of guarded operations (D3, C3), on the demo's API."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"


@pytest.fixture
def schema():
    response = Client().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def operation(schema, path, method):
    return schema["paths"][path][method]


def test_C3_the_key_header_states_its_lifetime(schema, settings):
    create = operation(schema, "/api/orders/", "post")
    header = next(p for p in create["parameters"] if p["name"] == "Idempotency-Key")
    assert header["in"] == "header"
    assert header["required"] is True
    assert "86400 seconds" in header["description"]


def test_C3_the_guards_answers_stand_beside_the_views_own(schema):
    responses = operation(schema, "/api/orders/", "post")["responses"]
    # The view's own validation 400 (application/json) and the guard's (problem+json).
    assert {"application/json", PROBLEM} <= set(responses["400"]["content"])
    for code in ("409", "410", "413", "422"):
        assert PROBLEM in responses[code]["content"], code
    assert "Retry-After" in responses["409"]["headers"]
    assert "Idempotent-Replayed" in responses["201"]["headers"]
    assert "503" not in responses  # the lock store cannot fail closed with these settings


def test_C3_503_is_documented_where_the_lock_store_can_fail_closed(settings):
    settings.IDEMPOTENT_POST_LOCK_BACKEND = "cache"
    settings.IDEMPOTENT_POST_CACHE_FALLBACK = False
    schema = Client().get("/api/schema/", {"format": "json"}).json()
    responses = operation(schema, "/api/orders/", "post")["responses"]
    assert PROBLEM in responses["503"]["content"]
    assert "Retry-After" in responses["503"]["headers"]


def test_C3_operations_guarded_through_the_mixin_are_documented(schema):
    # tests/testapp's MixinWidgetViewSet guards create through IdempotentMixin.
    create = operation(schema, "/api/mixin-widgets/", "post")
    assert any(p["name"] == "Idempotency-Key" for p in create["parameters"])
    assert PROBLEM in create["responses"]["409"]["content"]


def test_C3_unguarded_operations_are_left_alone(schema):
    comments = operation(schema, "/api/comments/", "post")
    assert not any(p["name"] == "Idempotency-Key" for p in comments.get("parameters", []))
    assert "409" not in comments["responses"]
