"""QUERY (RFC 10008) through a real server: gunicorn passes the method through (C1)."""

from __future__ import annotations

import pytest
import requests

pytestmark = [pytest.mark.server, pytest.mark.django_db(transaction=True)]


def test_C1_query_through_gunicorn(shop, gunicorn):
    server = gunicorn()
    response = requests.request(
        "QUERY", server.url("/api/products/search/"), json={"q": "mug"}, timeout=30
    )
    assert response.status_code == 200, response.text
    assert [p["name"] for p in response.json()] == ["Ceramic mug"]
