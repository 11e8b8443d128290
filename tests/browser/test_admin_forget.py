"""C7 in a real browser: an operator forgets a key through the admin action."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import expect

from idempotent_post.models import IdempotencyRecord

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHANGELIST = "/admin/idempotent_post/idempotencyrecord/"


def make_record(key: str, scope: str) -> IdempotencyRecord:
    return IdempotencyRecord.objects.create(
        scope=scope,
        key=key,
        fingerprint="f" * 64,
        state=IdempotencyRecord.State.COMPLETED,
        status_code=201,
        method="POST",
        path="/api/orders/",
        expires_at=timezone.now() + timedelta(hours=1),
    )


def test_C7_forget_a_key_through_the_admin(page, live_server):
    operator = User.objects.create_superuser("operator", password="operator-password")
    stuck = make_record("stuck-key", "user:1")
    kept = make_record("kept-key", "user:1")

    page.goto(f"{live_server.url}/admin/login/?next={CHANGELIST}")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "operator-password")
    page.click("input[type=submit]")
    expect(page.locator("#result_list")).to_contain_text("stuck-key")

    page.check(f'input[name="_selected_action"][value="{stuck.pk}"]')
    page.select_option('select[name="action"]', "forget_selected")
    page.click('button[name="index"]')

    # The confirmation page lists the selected key, and only it.
    expect(page.locator("h1")).to_have_text("Forget idempotency keys")
    expect(page.locator("#forget-records tbody tr")).to_have_count(1)
    expect(page.locator("#forget-records")).to_contain_text("stuck-key")
    expect(page.locator("#forget-records")).to_contain_text("user:1")
    assert IdempotencyRecord.objects.filter(pk=stuck.pk).exists()

    page.click('input[type=submit][value="Yes, forget it"]')

    expect(page).to_have_url(f"{live_server.url}{CHANGELIST}")
    expect(page.locator("ul.messagelist")).to_have_text("Forgot 1 idempotency key.")
    expect(page.locator("#result_list")).not_to_contain_text("stuck-key")
    expect(page.locator("#result_list")).to_contain_text("kept-key")
    assert list(IdempotencyRecord.objects.values_list("pk", flat=True)) == [kept.pk]
    entry = LogEntry.objects.get()
    assert (entry.user, entry.action_flag, entry.object_id) == (operator, DELETION, str(stuck.pk))
    assert 'key "stuck-key" of scope "user:1"' in entry.get_change_message()
