"""The checkout form in a real browser (G4, G5): double clicks, reloads, back and resubmit.

Each test counts what reaches the server (the live server runs in this process), so a
test can tell "the browser sent one request" from "the server placed one order".
"""

from __future__ import annotations

import re
import threading
import time
from io import StringIO

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from demo_project.shop import forms as shop_forms
from demo_project.shop.management.commands.seed_demo import STOCK
from demo_project.shop.models import Order, Product
from demo_project.shop.views import CheckoutView

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ORDER_PAGE = re.compile(r"/orders/(\d+)/$")
REPLAY_MESSAGE = "You already placed this order."
SCREENSHOT = "/tmp/idempotent-post-order-page.png"


class Hits:
    """The checkout requests the server received, and how it answered the POSTs."""

    def __init__(self) -> None:
        self.gets: list[str] = []
        self.posts: list[str] = []
        self.answers: list[tuple[int, str | None]] = []
        self._lock = threading.Lock()

    def settle(self, timeout: float = 10) -> None:
        """Wait until every POST the server received has been answered."""
        deadline = time.monotonic() + timeout
        while len(self.answers) < len(self.posts):
            assert time.monotonic() < deadline, "the server did not answer every POST"
            time.sleep(0.02)


@pytest.fixture
def hits(monkeypatch):
    seen = Hits()
    real_get, real_post = CheckoutView.get, CheckoutView.post

    def get(self, request, *args, **kwargs):
        seen.gets.append(request.get_full_path())
        return real_get(self, request, *args, **kwargs)

    def post(self, request, *args, **kwargs):
        seen.posts.append(request.POST.get("idempotency_key", ""))
        response = real_post(self, request, *args, **kwargs)
        seen.answers.append((response.status_code, response.get("Idempotent-Replayed")))
        return response

    monkeypatch.setattr(CheckoutView, "get", get)
    monkeypatch.setattr(CheckoutView, "post", post)
    return seen


@pytest.fixture
def mug(live_server):
    call_command("seed_demo", stdout=StringIO())
    return Product.objects.get(name="Ceramic mug")


@pytest.fixture
def slow_checkout(monkeypatch):
    """Make placing an order take half a second, time enough for an impatient user."""
    real = shop_forms.place_order

    def place_order(order):
        time.sleep(0.5)
        return real(order)

    monkeypatch.setattr(shop_forms, "place_order", place_order)


def fill_checkout(page, live_server, product) -> str:
    """Open the checkout, fill it in, and return the form's hidden key."""
    page.goto(f"{live_server.url}/checkout/")
    page.select_option("#id_product", label=product.name)
    page.fill("#id_quantity", "2")
    page.fill("#id_email", "guest@example.com")
    return page.input_value("input[name=idempotency_key]")


def on_order_page(page) -> int:
    """Wait for the confirmation page; return the order id in its URL."""
    expect(page).to_have_url(ORDER_PAGE)
    page.wait_for_selector("#order-number")
    match = ORDER_PAGE.search(page.url)
    assert match
    return int(match.group(1))


def stock(product: Product) -> int:
    product.refresh_from_db(fields=["stock"])
    return product.stock


def test_g4_double_click_places_one_order(live_server, page, mug, hits):
    key = fill_checkout(page, live_server, mug)
    page.dblclick("button:has-text('Place order')")
    order_id = on_order_page(page)
    hits.settle()
    # Chromium may send the second click's submit or drop it; either way, one order.
    assert hits.posts and set(hits.posts) == {key}
    order = Order.objects.get()
    assert order.pk == order_id
    assert page.text_content("#order-number") == order.order_number
    assert stock(mug) == STOCK - 2


def test_g4_clicking_again_while_the_first_submit_runs_places_one_order(
    live_server, page, mug, hits, slow_checkout
):
    key = fill_checkout(page, live_server, mug)
    box = page.locator("button[type=submit]").bounding_box()
    assert box
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    # Mouse clicks do not wait for the navigation the first one starts, as a user doesn't.
    page.mouse.click(x, y)
    page.wait_for_timeout(150)
    page.mouse.click(x, y)
    order_id = on_order_page(page)
    hits.settle()
    # A real double submit: both reached the server, with the same key.
    assert hits.posts == [key, key]
    assert len(hits.answers) == 2
    assert set(hits.answers) == {(303, None), (303, "true")}
    order = Order.objects.get()
    assert order.pk == order_id
    assert stock(mug) == STOCK - 2
    # The browser shows the answer to the last submit: the replay, with its message.
    assert REPLAY_MESSAGE in page.text_content("main")
    assert page.text_content("#product-stock") == str(STOCK - 2)
    page.screenshot(path=SCREENSHOT, full_page=True)


def test_g5_reload_of_the_result_page_repeats_the_get_only(live_server, page, mug, hits):
    fill_checkout(page, live_server, mug)
    page.click("button:has-text('Place order')")
    order_id = on_order_page(page)
    for _ in range(2):
        response = page.reload()
        assert response is not None
        assert response.request.method == "GET"
        assert on_order_page(page) == order_id
    hits.settle()
    assert len(hits.posts) == 1
    assert Order.objects.count() == 1
    assert stock(mug) == STOCK - 2


def test_g4_back_and_resubmit_of_the_restored_page_places_one_order(
    live_server, page_with_bfcache, mug, hits
):
    page = page_with_bfcache
    key = fill_checkout(page, live_server, mug)
    page.click("button:has-text('Place order')")
    order_id = on_order_page(page)
    page.go_back(wait_until="commit")
    page.wait_for_selector("button:has-text('Place order')")
    # The back-forward cache restored the very page that was submitted: no new GET.
    assert hits.gets == ["/checkout/"]
    assert page.input_value("input[name=idempotency_key]") == key
    page.click("button:has-text('Place order')")
    assert on_order_page(page) == order_id
    hits.settle()
    assert hits.posts == [key, key]
    assert hits.answers == [(303, None), (303, "true")]
    assert REPLAY_MESSAGE in page.text_content("main")
    assert Order.objects.count() == 1
    assert stock(mug) == STOCK - 2


def test_g4_back_without_bfcache_and_resubmit_places_one_order(live_server, page, mug, hits):
    # Playwright's Chromium has no back-forward cache, and the checkout page varies on the
    # cookie it set, so going back fetches the form again, with a fresh key. The field's
    # script puts back the key the form was submitted with (back/forward navigation only),
    # so the resubmit is a replay: the same order page, one order.
    key = fill_checkout(page, live_server, mug)
    page.click("button:has-text('Place order')")
    first_id = on_order_page(page)
    page.go_back()
    page.wait_for_selector("button:has-text('Place order')")
    assert hits.gets == ["/checkout/", "/checkout/"]
    assert page.input_value("#id_email") == "guest@example.com"
    assert page.input_value("input[name=idempotency_key]") == key
    page.click("button:has-text('Place order')")
    assert on_order_page(page) == first_id
    hits.settle()
    assert hits.posts == [key, key]
    assert hits.answers == [(303, None), (303, "true")]
    assert REPLAY_MESSAGE in page.text_content("main")
    assert Order.objects.count() == 1
    assert stock(mug) == STOCK - 2


def test_g4_a_new_visit_to_the_form_is_a_new_order(live_server, page, mug, hits):
    # The restored key is for back/forward only: opening the form again is a new order.
    first_key = fill_checkout(page, live_server, mug)
    page.click("button:has-text('Place order')")
    first_id = on_order_page(page)
    second_key = fill_checkout(page, live_server, mug)
    assert second_key != first_key
    page.click("button:has-text('Place order')")
    assert on_order_page(page) != first_id
    assert Order.objects.count() == 2
    page.reload()  # the result page again: a GET only
    assert Order.objects.count() == 2
