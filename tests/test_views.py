"""``PostRedirectGetMixin`` (G2, G4, G5, K3) through the demo shop's checkout form.

The test client renders ``/checkout/`` like a browser would, keeps its cookies (the
session is the scope of an anonymous visitor, K3) and posts the rendered form back,
CSRF token included.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from dataclasses import dataclass
from decimal import Decimal
from http.cookies import SimpleCookie

import pytest
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection
from django.test import Client, RequestFactory

from demo_project.shop import forms as shop_forms
from demo_project.shop.models import Order, Product
from demo_project.shop.views import CheckoutView
from idempotent_post.models import IdempotencyRecord

REPLAY_MESSAGE = "You already placed this order."


@dataclass
class RenderedForm:
    """The checkout form as one GET rendered it: its hidden key and CSRF token."""

    key: str
    csrf: str
    product: Product

    def data(self, **changes: object) -> dict[str, object]:
        data: dict[str, object] = {
            "csrfmiddlewaretoken": self.csrf,
            "idempotency_key": self.key,
            "product": self.product.pk,
            "quantity": 2,
            "email": "guest@example.com",
        }
        data.update(changes)
        return {name: value for name, value in data.items() if value is not None}


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]+)"', html)
    assert match, f"no hidden field {name!r} in the page"
    return match.group(1)


def render_form(client: Client, product: Product) -> RenderedForm:
    response = client.get("/checkout/")
    assert response.status_code == 200
    html = response.content.decode()
    return RenderedForm(
        hidden(html, "idempotency_key"), hidden(html, "csrfmiddlewaretoken"), product
    )


def browser_client() -> Client:
    return Client(enforce_csrf_checks=True, raise_request_exception=False)


def same_browser(client: Client) -> Client:
    """Another connection of the same browser: a new client with the same cookies."""
    other = browser_client()
    other.cookies = SimpleCookie(client.cookies.output(header="", sep="\n"))
    return other


def stock(product: Product) -> int:
    product.refresh_from_db(fields=["stock"])
    return product.stock


def run_together(count, func):
    """Run ``func(i)`` in ``count`` threads released at once by a barrier."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def target(i):
        try:
            barrier.wait()
            results[i] = func(i)
        finally:
            connection.close()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return results


@pytest.fixture
def product(db):
    return Product.objects.create(name="Ceramic mug", price=Decimal("12.50"), stock=10)


@pytest.fixture
def client():
    return browser_client()


# G2: Post/Redirect/Get.


def test_g2_valid_post_answers_303_to_the_order_page(client, product):
    form = render_form(client, product)
    response = client.post("/checkout/", form.data())
    assert response.status_code == 303
    order = Order.objects.get()
    assert response["Location"] == f"/orders/{order.pk}/"
    assert "Idempotent-Replayed" not in response
    assert (order.product, order.quantity, order.email) == (product, 2, "guest@example.com")
    assert stock(product) == 8


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"quantity": 0}, "quantity"), ({"email": None}, "email"), ({"email": "nope"}, "email")],
    ids=["quantity-0", "email-missing", "email-invalid"],
)
def test_g2_invalid_form_rerenders_with_errors_and_stores_nothing(client, product, changes, field):
    form = render_form(client, product)
    response = client.post("/checkout/", form.data(**changes))
    assert response.status_code == 200
    assert field in response.context["form"].errors
    assert 'class="errorlist' in response.content.decode()
    assert not Order.objects.exists()
    assert stock(product) == 10
    assert not IdempotencyRecord.objects.filter(key=form.key).exists()


def test_g2_corrected_form_goes_through_with_the_same_key(client, product):
    # The invalid page is not stored, so correcting the form and submitting it again
    # with the key it still carries places the order rather than replaying the errors.
    form = render_form(client, product)
    assert client.post("/checkout/", form.data(quantity=0)).status_code == 200
    response = client.post("/checkout/", form.data())
    assert response.status_code == 303
    assert Order.objects.count() == 1


class TurboCheckoutView(CheckoutView):
    invalid_status = 422


def factory_post(data: dict[str, object]):
    request = RequestFactory().post("/checkout/", data)
    request.user = AnonymousUser()
    request.session = SessionStore()
    request.session.save()
    request._dont_enforce_csrf_checks = True
    return request


@pytest.mark.parametrize("key", ["form-key-422-abcdefghijklmnopqrstuvwxyz", None])
def test_g2_invalid_status_is_configurable(product, key):
    data = {"product": product.pk, "quantity": 0, "email": "guest@example.com"}
    if key:
        data["idempotency_key"] = key
    response = TurboCheckoutView.as_view()(factory_post(data))
    assert response.status_code == 422
    assert "quantity" in response.context_data["form"].errors
    assert not Order.objects.exists()
    assert not IdempotencyRecord.objects.exists()


def test_g2_invalid_status_leaves_the_valid_answer_a_303(product):
    data = {
        "product": product.pk,
        "quantity": 1,
        "email": "guest@example.com",
        "idempotency_key": "form-key-valid-abcdefghijklmnopqrstuvwxyz",
    }
    response = TurboCheckoutView.as_view()(factory_post(data))
    assert response.status_code == 303
    assert response["Location"] == f"/orders/{Order.objects.get().pk}/"


# G4: the same rendered form submitted twice.


def test_g4_same_form_posted_twice_places_one_order(client, product):
    form = render_form(client, product)
    first = client.post("/checkout/", form.data())
    second = client.post("/checkout/", form.data())
    assert first.status_code == second.status_code == 303
    assert first["Location"] == second["Location"]
    assert "Idempotent-Replayed" not in first
    assert second["Idempotent-Replayed"] == "true"
    assert Order.objects.count() == 1
    assert stock(product) == 8
    assert IdempotencyRecord.objects.filter(key=form.key).count() == 1


def test_g4_replay_lands_on_the_result_page_with_a_message(client, product):
    form = render_form(client, product)
    first = client.post("/checkout/", form.data())
    page = client.get(first["Location"])
    assert REPLAY_MESSAGE not in page.content.decode()
    second = client.post("/checkout/", form.data())
    assert second["Location"] == first["Location"]
    page = client.get(second["Location"])
    assert page.status_code == 200
    assert REPLAY_MESSAGE in page.content.decode()
    assert Order.objects.get().order_number in page.content.decode()


def test_g4_test_client_can_follow_a_replayed_303(client, product):
    form = render_form(client, product)
    client.post("/checkout/", form.data())
    second = client.post("/checkout/", form.data(), follow=True)
    assert second.redirect_chain == [(f"/orders/{Order.objects.get().pk}/", 303)]
    assert REPLAY_MESSAGE in second.content.decode()


def test_g4_the_csrf_token_does_not_make_a_resubmit_a_new_request(client, product):
    # F2: a browser may send a rotated CSRF token with the second submit.
    form = render_form(client, product)
    client.post("/checkout/", form.data())
    other_token = hidden(client.get("/checkout/").content.decode(), "csrfmiddlewaretoken")
    second = client.post("/checkout/", form.data(csrfmiddlewaretoken=other_token))
    assert second.status_code == 303
    assert second["Idempotent-Replayed"] == "true"
    assert Order.objects.count() == 1


def test_g4_the_same_key_with_different_fields_renders_the_form_again(client, product):
    # F1 for forms: back, edit, submit. Not a replay, not a second order, not an error
    # page: the form again, with the user's values, a message and a fresh key.
    form = render_form(client, product)
    client.post("/checkout/", form.data())
    response = client.post("/checkout/", form.data(quantity=3))
    assert response.status_code == 200
    page = response.content.decode()
    assert "already submitted with other values" in page
    fresh_key = hidden(page, "idempotency_key")
    assert fresh_key != form.key
    assert Order.objects.count() == 1
    assert stock(product) == 8
    again = client.post("/checkout/", form.data(quantity=3, idempotency_key=fresh_key))
    assert again.status_code == 303
    assert Order.objects.count() == 2


def test_g4_a_new_rendering_of_the_form_is_a_new_order(client, product):
    first = client.post("/checkout/", render_form(client, product).data())
    second = client.post("/checkout/", render_form(client, product).data())
    assert first.status_code == second.status_code == 303
    assert first["Location"] != second["Location"]
    assert "Idempotent-Replayed" not in second
    assert Order.objects.count() == 2
    assert stock(product) == 6


def test_g4_post_without_the_hidden_field_runs_unguarded_and_warns(client, product, caplog):
    form = render_form(client, product)
    with caplog.at_level(logging.WARNING, logger="idempotent_post"):
        first = client.post("/checkout/", form.data(idempotency_key=None))
        second = client.post("/checkout/", form.data(idempotency_key=None))
    assert first.status_code == second.status_code == 303
    assert first["Location"] != second["Location"]
    # Unguarded: nothing stands between a double submit and a second order.
    assert Order.objects.count() == 2
    # The form kept no key (its email task and gateway call keep their own: M7).
    assert not IdempotencyRecord.objects.filter(path="/checkout/").exists()
    warnings = [r for r in caplog.records if r.name == "idempotent_post"]
    assert len(warnings) == 2
    assert all(r.levelno == logging.WARNING for r in warnings)
    assert "idempotency_key" in warnings[0].getMessage()
    assert "not guarded" in warnings[0].getMessage()


@pytest.mark.parametrize("value", ["two words", "a,b", "x" * 256])
def test_g4_an_invalid_form_key_is_a_400_and_places_nothing(client, product, value):
    form = render_form(client, product)
    response = client.post("/checkout/", form.data(idempotency_key=value))
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert not Order.objects.exists()


# K3: an anonymous visitor's form keys belong to the session.


def test_k3_get_of_the_form_creates_the_session_that_scopes_its_key(client, product):
    form = render_form(client, product)
    session_key = client.cookies["sessionid"].value
    assert session_key
    client.post("/checkout/", form.data())
    scope = IdempotencyRecord.objects.get(key=form.key).scope
    # K5: the visitor's own id, never the session key (a credential).
    assert scope.startswith("session:")
    assert session_key not in scope
    # The submit kept the session, so a second submit is in the same scope.
    assert client.cookies["sessionid"].value == session_key
    assert client.post("/checkout/", form.data())["Idempotent-Replayed"] == "true"


def test_k3_another_visitor_with_the_same_key_gets_an_order_of_their_own(client, product):
    form = render_form(client, product)
    mine = client.post("/checkout/", form.data())
    stranger = browser_client()
    theirs = stranger.post(
        "/checkout/", render_form(stranger, product).data(idempotency_key=form.key)
    )
    assert theirs.status_code == 303
    assert "Idempotent-Replayed" not in theirs
    assert theirs["Location"] != mine["Location"]
    assert Order.objects.count() == 2


# G5: after the 303, a reload repeats the GET only.


def test_g5_get_of_the_result_page_twice_creates_nothing(client, product):
    form = render_form(client, product)
    location = client.post("/checkout/", form.data())["Location"]
    records = IdempotencyRecord.objects.count()
    order = Order.objects.get()
    for _ in range(2):
        page = client.get(location)
        assert page.status_code == 200
        assert order.order_number in page.content.decode()
    assert Order.objects.count() == 1
    assert stock(product) == 8
    assert IdempotencyRecord.objects.count() == records


# G4 under real concurrency.


@pytest.mark.django_db(transaction=True)
def test_g4_concurrent_double_submit_places_one_order(postgres, lock_backend, product):
    threads = 4
    client = browser_client()
    form = render_form(client, product)
    clients = [same_browser(client) for _ in range(threads)]
    responses = run_together(threads, lambda i: clients[i].post("/checkout/", form.data()))
    assert [r.status_code for r in responses] == [303] * threads
    assert len({r["Location"] for r in responses}) == 1
    assert sum("Idempotent-Replayed" not in r for r in responses) == 1
    order = Order.objects.get()
    assert responses[0]["Location"] == f"/orders/{order.pk}/"
    assert stock(product) == 8


@pytest.fixture
def held_checkout(monkeypatch):
    """Hold ``place_order`` of the checkout until ``release`` is set."""
    entered, release = threading.Event(), threading.Event()
    real = shop_forms.place_order

    def place_order(order):
        entered.set()
        assert release.wait(timeout=30)
        return real(order)

    # The form imported the function by name; patch the name it calls.
    monkeypatch.setattr(shop_forms, "place_order", place_order)
    yield entered, release
    release.set()


@contextlib.contextmanager
def first_submit_in_flight(client, form, held_checkout):
    """Submit ``form`` from another thread and hold it in ``place_order``.

    Yields the list that receives the first submit's answer once the block is left.
    """
    entered, release = held_checkout
    answers: list = []

    def submit():
        try:
            answers.append(same_browser(client).post("/checkout/", form.data()))
        finally:
            connection.close()

    thread = threading.Thread(target=submit)
    thread.start()
    try:
        assert entered.wait(timeout=10)
        yield answers
    finally:
        release.set()
        thread.join(timeout=30)
    assert not thread.is_alive()


@pytest.mark.django_db(transaction=True)
def test_g4_duplicate_past_the_wait_gets_a_page_that_refreshes_to_the_result(
    settings, lock_backend, product, held_checkout
):
    settings.IDEMPOTENT_POST_FORM_WAIT = 0
    client = browser_client()
    form = render_form(client, product)
    with first_submit_in_flight(client, form, held_checkout) as first:
        duplicate = client.post("/checkout/", form.data())

    assert duplicate.status_code == 202
    refresh_url = f"/checkout/?idempotency_key={form.key}"
    html = duplicate.content.decode()
    assert re.search(
        rf'<meta http-equiv="refresh" content="\d+;url={re.escape(refresh_url)}">', html
    )
    assert first[0].status_code == 303
    result = client.get(refresh_url)
    assert result.status_code == 303
    assert result["Location"] == first[0]["Location"] == f"/orders/{Order.objects.get().pk}/"
    assert stock(product) == 8


@pytest.mark.django_db(transaction=True)
def test_g4_refresh_url_keeps_showing_the_processing_page_while_the_first_runs(
    settings, lock_backend, product, held_checkout
):
    # With an in-flight lock (PostgreSQL advisory lock, Redis) the first submit leaves no
    # in-progress row behind; the page must still know the key is taken.
    settings.IDEMPOTENT_POST_FORM_WAIT = 0
    client = browser_client()
    form = render_form(client, product)
    with first_submit_in_flight(client, form, held_checkout):
        pending = client.get(f"/checkout/?idempotency_key={form.key}")
    assert pending.status_code == 202
    assert "Still processing" in pending.content.decode()
    assert 'name="idempotency_key"' not in pending.content.decode()
    assert Order.objects.count() == 1


def test_g4_refresh_url_of_an_unknown_key_shows_the_form(client, product):
    response = client.get("/checkout/?idempotency_key=never-submitted-key")
    assert response.status_code == 200
    assert 'name="idempotency_key"' in response.content.decode()
