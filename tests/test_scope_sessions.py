"""K5: an anonymous visitor's scope is stable for the life of the session, on every engine.

A small shop runs here on its own URLs: a cart that writes to the session, and a guarded
checkout that empties it, as a real checkout does. With signed-cookie sessions every such
write changes the session key, so a scope made of the session key would change under a
visitor between a submit and its back-and-resubmit. The scope is also no credential: the
session key never shows up in the stored scope or in a log line.
"""

from __future__ import annotations

import logging
from importlib import import_module

import pytest
from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.test import Client, RequestFactory
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from idempotent_post import idempotent, keys
from idempotent_post.models import IdempotencyRecord
from tests.testapp.models import Widget

ENGINES = [
    "django.contrib.sessions.backends.db",
    "django.contrib.sessions.backends.cache",
    "django.contrib.sessions.backends.cached_db",
    "django.contrib.sessions.backends.file",
    "django.contrib.sessions.backends.signed_cookies",
]


def add_to_cart(request):
    request.session["cart"] = [*request.session.get("cart", []), "book"]
    return HttpResponse("added")


def cycle(request):
    # What login() does to the session of a visitor who had one.
    request.session.cycle_key()
    return HttpResponse("cycled")


def current_scope(request):
    return JsonResponse({"scope": keys.scope_for(request, "user_or_session")})


def checkout_form(request):
    # What the form mixin does when it renders a form.
    keys.ensure_scope(request)
    return HttpResponse("<form method=post>...</form>")


@csrf_exempt
@idempotent(scope="user_or_session")
def checkout(request):
    widget = Widget.objects.create(name="order")
    request.session["cart"] = []
    return JsonResponse({"id": widget.pk}, status=201)


urlpatterns = [
    path("cart/", add_to_cart),
    path("cycle/", cycle),
    path("scope/", current_scope),
    path("checkout/form/", checkout_form),
    path("checkout/", checkout),
]

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]


@pytest.fixture(params=ENGINES, ids=lambda engine: engine.rsplit(".", 1)[1])
def engine(request, settings, tmp_path):
    settings.SESSION_ENGINE = request.param
    settings.SESSION_FILE_PATH = str(tmp_path)
    return request.param


def scope_of(client):
    return client.get("/scope/").json()["scope"]


def order(client, key, body=b"{}", **headers):
    return client.post(
        "/checkout/",
        body,
        content_type="application/json",
        headers={"Idempotency-Key": key, **headers},
    )


def session_key_of(client):
    return client.cookies[settings.SESSION_COOKIE_NAME].value


@pytest.mark.parametrize("touch", ["/cart/", "/cycle/"], ids=["write", "cycle_key"])
def test_K5_scope_is_the_same_before_and_after_a_view_writes_to_the_session(engine, touch):
    client = Client()
    client.get("/cart/")
    before = scope_of(client)
    key_before = session_key_of(client)
    client.get(touch)
    after = scope_of(client)
    assert before.startswith("session:")
    assert after == before
    signed = engine.endswith("signed_cookies")
    if signed == (touch == "/cart/"):
        # The session key did change (a signed cookie changes with its data, the other
        # engines on cycle_key): the scope does not follow it.
        assert session_key_of(client) != key_before


def test_K5_back_and_resubmit_after_checkout_empties_the_cart_places_one_order(engine):
    client = Client()
    client.get("/cart/")
    first = order(client, "order-1")
    again = order(client, "order-1")
    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert Widget.objects.count() == 1
    assert IdempotencyRecord.objects.count() == 1


def test_K5_ensure_scope_makes_the_first_submit_of_a_new_visitor_stable(engine):
    client = Client()
    client.get("/checkout/form/")
    assert settings.SESSION_COOKIE_NAME in client.cookies
    rendered = scope_of(client)
    first = order(client, "order-1")
    again = order(client, "order-1")
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert Widget.objects.count() == 1
    assert IdempotencyRecord.objects.get().scope == rendered


def test_K5_the_stored_and_logged_scope_is_not_the_session_key(engine, caplog):
    caplog.set_level(logging.DEBUG)
    client = Client()
    client.get("/cart/")
    session_keys = {session_key_of(client)}
    order(client, "order-1")
    session_keys.add(session_key_of(client))
    order(client, "order-1", **{"X-Retry-Count": "1"})  # replay, logged with its retry
    order(client, "order-1", body=b'{"other": 1}')  # mismatch, logged
    session_keys.add(session_key_of(client))

    scope = IdempotencyRecord.objects.get().scope
    visitor = client.session[keys.SESSION_VISITOR_KEY]
    assert scope == f"session:{visitor}"
    assert scope == scope_of(client)
    messages = [record.getMessage() for record in caplog.records]
    assert any(scope in message for message in messages)
    for session_key in session_keys:
        assert session_key not in scope
        assert not [message for message in messages if session_key in message]


def test_K5_two_requests_of_one_session_agree_on_a_new_visitor_id(engine):
    # Two requests of a session made before the visitor id existed (a double click on a
    # form rendered without the mixin) read the session before either saves it.
    client = Client()
    client.get("/cart/")
    session_key = session_key_of(client)
    store = import_module(engine).SessionStore
    scopes = []
    for _ in range(2):
        request = RequestFactory().post("/checkout/")
        request.session = store(session_key)
        scopes.append(keys.scope_for(request, "user_or_session"))
    assert scopes[0] == scopes[1]
    assert session_key not in scopes[0]


def test_K5_a_request_without_a_session_keeps_the_shared_anonymous_scope(engine):
    # An API caller that keeps no cookies: a new visitor id per request would give each
    # retry a scope of its own, and the retry would run the view again.
    first = order(Client(), "api-1")
    again = order(Client(), "api-1")
    assert again["Idempotent-Replayed"] == "true"
    assert Widget.objects.count() == 1
    assert again.json() == first.json()
    assert IdempotencyRecord.objects.get().scope == keys.ANONYMOUS_SCOPE
    # Working out the scope creates no session either.
    response = Client().get("/scope/")
    assert response.json()["scope"] == keys.ANONYMOUS_SCOPE
    assert settings.SESSION_COOKIE_NAME not in response.cookies
