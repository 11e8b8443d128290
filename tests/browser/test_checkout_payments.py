"""The checkout's payment and e-mail in a real browser (M7): a double click, one of each."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from demo_project.shop.models import Charge, Order, Product, SentEmail

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def mug(live_server, settings, database_mail):
    # Empty: the checkout calls the gateway on this live server, over HTTP.
    settings.DEMO_GATEWAY_URL = ""
    call_command("seed_demo", stdout=StringIO())
    return Product.objects.get(name="Ceramic mug")


def test_M7_double_click_place_order_shows_one_charge_and_one_email(live_server, page, mug):
    page.goto(f"{live_server.url}/checkout/")
    page.select_option("#id_product", label=mug.name)
    page.fill("#id_quantity", "2")
    page.fill("#id_email", "guest@example.com")
    page.dblclick("button:has-text('Place order')")
    expect(page).to_have_url(re.compile(r"/orders/\d+/$"))
    expect(page.locator("#order-charge")).to_contain_text("paid")

    page.click("nav >> text=Payments")
    expect(page).to_have_url(re.compile(r"/payments/$"))
    expect(page.locator("#charge-count")).to_have_text("1")
    expect(page.locator("#email-count")).to_have_text("1")
    order = Order.objects.get()
    expect(page.locator("#charges")).to_contain_text(order.order_number)
    expect(page.locator("#emails")).to_contain_text("guest@example.com")
    assert Charge.objects.get().charge_id == order.charge_id
    assert SentEmail.objects.count() == 1
