"""QUERY (RFC 10008), the safe method with a body (C1): unguarded, and the demo's search."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from django.test import Client

from idempotent_post.models import IdempotencyRecord
from tests.testapp.models import Widget

pytestmark = pytest.mark.django_db


@pytest.fixture
def client():
    return Client(raise_request_exception=False)


def query(client, path, body, **extra):
    return client.generic("QUERY", path, json.dumps(body), content_type="application/json", **extra)


def test_C1_query_passes_a_guard_unguarded_even_where_a_key_is_required(client):
    # /t/required/ is @idempotent(required=True): a POST without a key is a 400.
    assert client.post("/t/required/", {}, content_type="application/json").status_code == 400
    response = query(client, "/t/required/", {"name": "q"})
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    assert not IdempotencyRecord.objects.exists()


def test_C1_query_with_a_key_is_not_replayed(client):
    for _ in range(2):
        response = query(client, "/t/plain/", {"name": "q"}, HTTP_IDEMPOTENCY_KEY="k")
        assert "Idempotent-Replayed" not in response
    assert Widget.objects.count() == 2  # the test view is not safe; QUERY says it is
    assert not IdempotencyRecord.objects.exists()


def test_C1_M4_the_demo_searches_by_query_and_by_post(client):
    call_command("seed_demo", verbosity=0)
    by_query = query(client, "/api/products/search/", {"q": "mug"})
    by_post = client.post("/api/products/search/", {"q": "mug"}, content_type="application/json")
    assert by_query.status_code == by_post.status_code == 200
    assert [p["name"] for p in by_query.json()] == ["Ceramic mug"]
    assert by_query.json() == by_post.json()
