"""The demo's checkout pays and confirms once (M7): a real HTTP gateway, a Celery task.

The shop runs on pytest-django's live server (threaded), and the checkout calls the fake
payment gateway on that same server over HTTP, as ``make demo`` does. Without a broker the
confirmation task runs eagerly, inside the checkout's request. Each test submits the form
as a browser would, over HTTP with its cookies, and counts what reached the world: charges
at the gateway and e-mails kept by the demo's e-mail backend.
"""

from __future__ import annotations

import re
import threading
from io import StringIO

import pytest
import requests
from django.core.management import call_command

from demo_project.shop import gateway, services
from demo_project.shop.management.commands.seed_demo import STOCK
from demo_project.shop.models import Charge, Order, Product, SentEmail
from idempotent_post.client import IdempotentSession

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def mug(live_server, settings, database_mail):
    # Empty: the gateway is this server, at the address the checkout was reached on.
    settings.DEMO_GATEWAY_URL = ""
    call_command("seed_demo", stdout=StringIO())
    return Product.objects.get(name="Ceramic mug")


@pytest.fixture
def gateway_calls(monkeypatch):
    """The charges the checkout asked the gateway for, by key (replays included)."""
    calls: list[str] = []
    real = gateway.charge

    def charge(url, **kwargs):
        calls.append(kwargs["key"])
        return real(url, **kwargs)

    monkeypatch.setattr(gateway, "charge", charge)
    return calls


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]+)"', html)
    assert match, f"no hidden {name} field"
    return match.group(1)


def checkout_form(browser: requests.Session, live_server, product: Product) -> dict[str, object]:
    """The checkout form as one GET rendered it, filled in: what a submit posts."""
    page = browser.get(f"{live_server.url}/checkout/?product={product.pk}", timeout=30)
    assert page.status_code == 200
    return {
        "csrfmiddlewaretoken": hidden(page.text, "csrfmiddlewaretoken"),
        "idempotency_key": hidden(page.text, "idempotency_key"),
        "product": product.pk,
        "quantity": 2,
        "email": "guest@example.com",
    }


def submit(browser: requests.Session, live_server, form: dict[str, object]) -> requests.Response:
    return browser.post(
        f"{live_server.url}/checkout/", data=form, allow_redirects=False, timeout=60
    )


def counts(live_server) -> tuple[int, int]:
    """The charges and e-mails as the payments page shows them to a visitor."""
    html = requests.get(f"{live_server.url}/payments/", timeout=30).text
    charges = re.search(r'id="charge-count">(\d+)<', html)
    emails = re.search(r'id="email-count">(\d+)<', html)
    assert charges and emails
    return int(charges.group(1)), int(emails.group(1))


def assert_paid_and_confirmed_once(live_server) -> Order:
    order = Order.objects.get()
    charge = Charge.objects.get()
    email = SentEmail.objects.get()
    assert order.charge_id == charge.charge_id
    assert charge.reference == order.order_number
    assert charge.amount == order.total
    assert email.to == "guest@example.com"
    assert order.order_number in email.subject
    assert counts(live_server) == (1, 1)
    listed = requests.get(f"{live_server.url}/gateway/charges/", timeout=30).json()["charges"]
    assert [c["id"] for c in listed] == [charge.charge_id]
    return order


def test_M7_double_submit_charges_once_and_emails_once(live_server, mug, gateway_calls):
    browser = requests.Session()
    form = checkout_form(browser, live_server, mug)
    answers: list[requests.Response] = []
    # A double click: two submits of the same form at once, then a reload of the POST.
    threads = [
        threading.Thread(target=lambda: answers.append(submit(browser, live_server, form)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    answers.append(submit(browser, live_server, form))

    assert [answer.status_code for answer in answers] == [303, 303, 303]
    order = assert_paid_and_confirmed_once(live_server)
    assert {answer.headers["Location"] for answer in answers} == {f"/orders/{order.pk}/"}
    assert len(gateway_calls) == 1
    mug.refresh_from_db()
    assert mug.stock == STOCK - 2
    confirmation = browser.get(f"{live_server.url}/orders/{order.pk}/", timeout=30).text
    assert order.charge_id in confirmation


def test_M7_crash_between_charge_and_email_retried_charges_once_and_emails_once(
    live_server, mug, gateway_calls
):
    crashes: list[Order] = []

    def crash_once(sender, order, **kwargs):
        # The server process dies right after the charge, before the e-mail is queued.
        if not crashes:
            crashes.append(order)
            raise RuntimeError("crash between the charge and the e-mail")

    services.order_charged.connect(crash_once, weak=False)
    try:
        browser = requests.Session()
        form = checkout_form(browser, live_server, mug)
        assert submit(browser, live_server, form).status_code == 500
        assert Charge.objects.count() == 1
        assert not SentEmail.objects.exists()

        retry = submit(browser, live_server, form)
    finally:
        services.order_charged.disconnect(crash_once)

    assert retry.status_code == 303
    order = assert_paid_and_confirmed_once(live_server)
    assert retry.headers["Location"] == f"/orders/{order.pk}/"
    assert crashes[0].pk == order.pk
    # The charge is a recovery point: the retry did not call the gateway at all.
    assert len(gateway_calls) == 1
    mug.refresh_from_db()
    assert mug.stock == STOCK - 2


def test_M7_gateway_call_repeated_after_a_crash_gets_the_first_charge_back(
    live_server, mug, gateway_calls, monkeypatch
):
    real = services._paid
    failures: list[str] = []

    def paid(order, charge_id):
        # The charge went through, but the shop died before it recorded it.
        if not failures:
            failures.append(charge_id)
            raise RuntimeError("crash before the charge was recorded")
        return real(order, charge_id)

    monkeypatch.setattr(services, "_paid", paid)
    browser = requests.Session()
    form = checkout_form(browser, live_server, mug)
    assert submit(browser, live_server, form).status_code == 500
    assert submit(browser, live_server, form).status_code == 303

    # Called twice with the same derived key (X4): the gateway replayed the first charge.
    assert len(gateway_calls) == 2
    assert gateway_calls[0] == gateway_calls[1]
    order = assert_paid_and_confirmed_once(live_server)
    assert order.charge_id == failures[0]


def test_M7_gateway_requires_a_key_and_replays_a_repeated_one(live_server, mug):
    url = f"{live_server.url}/gateway/charges/"
    body = {"amount": "12.50", "currency": "EUR", "reference": "ORD-TEST"}
    assert requests.post(url, json=body, timeout=30).status_code == 400
    with IdempotentSession() as session:
        first = session.post(url, json=body, idempotency_key="charge-test-1")
        again = session.post(url, json=body, idempotency_key="charge-test-1")
        other = session.post(url, json={**body, "amount": "13.00"}, idempotency_key="charge-test-1")
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert first.json() == again.json()
    assert other.status_code == 422
    assert Charge.objects.count() == 1
    with IdempotentSession() as session:
        refused = session.post(url, json={**body, "amount": "-1"})
    assert refused.status_code == 400


def test_M7_without_a_gateway_url_the_gateway_is_called_in_process(client, settings, database_mail):
    # The test client has no HTTP server: with DEMO_GATEWAY_URL unset, the same session
    # reaches the same guarded gateway view in-process.
    del settings.DEMO_GATEWAY_URL
    call_command("seed_demo", stdout=StringIO())
    product = Product.objects.get(name="Ceramic mug")
    page = client.get("/checkout/").content.decode()
    form = {
        "csrfmiddlewaretoken": hidden(page, "csrfmiddlewaretoken"),
        "idempotency_key": hidden(page, "idempotency_key"),
        "product": product.pk,
        "quantity": 1,
        "email": "guest@example.com",
    }
    first = client.post("/checkout/", form)
    second = client.post("/checkout/", form)
    assert first.status_code == second.status_code == 303
    assert first["Location"] == second["Location"]
    order = Order.objects.get()
    assert order.charge_id == Charge.objects.get().charge_id
    assert SentEmail.objects.count() == 1
