"""The demo's API documentation in a real browser (C3): Swagger UI shows the guarded operation."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_C3_swagger_ui_documents_the_key_its_lifetime_and_the_guards_answers(page, live_server):
    page.goto(f"{live_server.url}/api/docs/")
    operation = page.locator("#operations-api-api_orders_create")
    expect(operation).to_be_visible(timeout=15_000)
    operation.locator(".opblock-summary").click()
    parameters = operation.locator(".parameters")
    expect(parameters).to_contain_text("Idempotency-Key")
    expect(parameters).to_contain_text("(header)")
    expect(parameters).to_contain_text("kept for 86400 seconds")
    responses = operation.locator(".responses-table").first
    for status in ("201", "400", "409", "410", "413", "422"):
        expect(responses.locator(f"tr.response[data-code='{status}']")).to_be_visible()
    expect(responses).to_contain_text("Idempotent-Replayed")
