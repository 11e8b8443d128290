"""Keys are scoped and replays leak nothing, over real HTTP (K3, P2).

A key belongs to a user: bob sending alice's key places his own order and never sees
hers. A replay carries no ``Set-Cookie`` nor any other per-user or per-connection
header, and the stored record holds no credential.
"""

from __future__ import annotations

import json
import re
import uuid

import pytest
import requests

from demo_project.shop.models import Order
from idempotent_post.models import IdempotencyRecord
from tests.server.conftest import ALICE, BOB, is_replay, order_body, post

pytestmark = [pytest.mark.server, pytest.mark.django_db(transaction=True)]


def test_k3_bob_with_alices_key_gets_his_own_order(shop, gunicorn, new_key):
    server = gunicorn(workers=2)
    key, body = new_key(), order_body(shop.product.pk)

    alice = post(server, "/api/orders/", key, body, auth=ALICE)
    assert alice.status_code == 201, alice.text
    assert not is_replay(alice)
    bob = post(server, "/api/orders/", key, body, auth=BOB)
    assert bob.status_code == 201, bob.text
    assert not is_replay(bob), "bob was answered with the replay of alice's order"
    assert bob.json()["user"] == shop.bob.pk
    assert alice.json()["user"] == shop.alice.pk
    assert bob.json()["id"] != alice.json()["id"]
    assert bob.json()["order_number"] != alice.json()["order_number"]
    assert bob.headers["Location"] != alice.headers["Location"]

    # Each one's retry replays his or her own order, and nobody else's.
    for auth, first in ((ALICE, alice), (BOB, bob), (BOB, bob), (ALICE, alice)):
        again = post(server, "/api/orders/", key, body, auth=auth)
        assert is_replay(again)
        assert again.status_code == 201
        assert again.content == first.content
    assert Order.objects.filter(user=shop.alice).count() == 1
    assert Order.objects.filter(user=shop.bob).count() == 1


def test_k3_anonymous_callers_do_not_share_a_users_key(shop, gunicorn, new_key):
    # The orders API refuses anonymous callers before the guard: no leak through a 401.
    server = gunicorn()
    key, body = new_key(), order_body(shop.product.pk)
    assert post(server, "/api/orders/", key, body, auth=ALICE).status_code == 201
    anonymous = post(server, "/api/orders/", key, body)
    assert anonymous.status_code in (401, 403)
    assert not is_replay(anonymous)
    assert str(shop.alice.pk) not in anonymous.text
    forged = post(server, "/api/orders/", key, body, auth="Token not-a-token")
    assert forged.status_code in (401, 403)
    assert not is_replay(forged)


def test_p2_replay_carries_no_set_cookie_nor_private_headers(gunicorn, new_key):
    server = gunicorn()
    key = new_key()
    first = post(server, "/t/plain/", key)
    assert first.status_code == 201
    assert "session-ish=secret" in first.headers["Set-Cookie"]
    assert first.headers["X-Private"] == "not replayed"

    replay = post(server, "/t/plain/", key)
    assert is_replay(replay)
    assert replay.status_code == 201
    assert "Set-Cookie" not in replay.headers
    assert "X-Private" not in replay.headers
    assert not replay.cookies
    # What is replayed: the body, its type and the Location (P1).
    assert replay.content == first.content
    assert replay.headers["Content-Type"] == first.headers["Content-Type"]
    assert replay.headers["Location"] == first.headers["Location"]


def login(server, username: str) -> requests.Session:
    """A session logged in through DRF's login page (session authentication)."""
    session = requests.Session()
    page = session.get(server.url("/api-auth/login/"), timeout=30)
    assert page.status_code == 200
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    answer = session.post(
        server.url("/api-auth/login/"),
        data={
            "username": username,
            "password": "demo-password",
            "csrfmiddlewaretoken": csrf,
            "next": "/api/products/",
        },
        allow_redirects=False,
        timeout=30,
    )
    assert answer.status_code == 302, answer.text[:500]
    assert "sessionid" in session.cookies
    return session


def test_p2_session_auth_replay_has_no_cookie_and_the_scope_is_the_user(shop, gunicorn, new_key):
    server = gunicorn()
    session = login(server, "alice")
    csrf = session.cookies["csrftoken"]
    key, body = new_key(), order_body(shop.product.pk)

    first = post(server, "/api/orders/", key, body, session=session, X_CSRFToken=csrf)
    assert first.status_code == 201, first.text
    assert first.json()["user"] == shop.alice.pk
    replay = post(server, "/api/orders/", key, body, session=session, X_CSRFToken=csrf)
    assert is_replay(replay)
    assert "Set-Cookie" not in replay.headers
    assert replay.content == first.content
    # The key belongs to alice, not to her credential: her token finds the same order.
    by_token = post(server, "/api/orders/", key, body, auth=ALICE)
    assert is_replay(by_token)
    assert by_token.content == first.content
    assert Order.objects.count() == 1


def test_p2_stored_records_hold_no_credentials(shop, gunicorn, new_key):
    server = gunicorn()
    session = login(server, "bob")
    csrf = session.cookies["csrftoken"]
    body = order_body(shop.product.pk)
    foreign_session = uuid.uuid4().hex
    secrets = {
        foreign_session,
        "demo-token-alice",
        "demo-token-bob",
        "demo-password",
        session.cookies["sessionid"],
        csrf,
        "session-ish",
    }
    answers = [
        post(server, "/api/orders/", new_key(), body, auth=ALICE),
        post(server, "/api/orders/", new_key(), body, auth="Basic Ym9iOmRlbW8tcGFzc3dvcmQ="),
        post(server, "/api/orders/", new_key(), body, session=session, X_CSRFToken=csrf),
        # A view that sets a cookie, called with one.
        post(server, "/t/plain/", new_key(), Cookie=f"sessionid={foreign_session}"),
    ]
    assert [answer.status_code for answer in answers] == [201] * 4, [a.text for a in answers]

    records = list(IdempotencyRecord.objects.all())
    assert len(records) == 4
    for record in records:
        names = {name.lower() for name, _ in record.response_headers}
        assert not names & {"set-cookie", "cookie", "authorization", "x-private"}
        stored = json.dumps(record.response_headers) + bytes(record.response_body).decode()
        stored += record.scope + record.path
        leaked = {secret for secret in secrets if secret in stored}
        assert not leaked, f"record {record.key} holds {leaked}"
