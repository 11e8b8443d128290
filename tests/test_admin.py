"""O4: the read-only admin for idempotency records."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.urls import path, reverse
from django.utils import timezone

from idempotent_post.admin import IdempotencyRecordAdmin, body_preview
from idempotent_post.models import IdempotencyRecord

# tests/urls.py has no admin; this module serves as the URLconf of its own tests.
urlpatterns = [path("admin/", admin.site.urls)]

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

CHANGELIST = "admin:idempotent_post_idempotencyrecord_changelist"


def make_record(key: str, **fields) -> IdempotencyRecord:
    now = timezone.now()
    values = {
        "scope": "user:1",
        "fingerprint": "f" * 64,
        "expires_at": now + timedelta(hours=1),
        "method": "POST",
        "path": "/api/orders/",
    }
    values.update(fields)
    return IdempotencyRecord.objects.create(key=key, **values)


@pytest.fixture
def records():
    return [
        make_record(
            "key-alpha",
            state=IdempotencyRecord.State.COMPLETED,
            status_code=201,
            response_headers=[["Content-Type", "application/json"]],
            response_body=b'{"order": "A-1"}',
        ),
        make_record("key-beta", scope="user:2"),
        make_record(
            "key-gamma",
            scope="session:xyz",
            state=IdempotencyRecord.State.COMPLETED,
            status_code=422,
            response_body=b"rejected",
        ),
    ]


def changelist_keys(response) -> set[str]:
    return {record.key for record in response.context["cl"].result_list}


def test_O4_changelist_loads_for_superuser(admin_client, records):
    response = admin_client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    assert changelist_keys(response) == {"key-alpha", "key-beta", "key-gamma"}
    content = response.content.decode()
    assert "key-alpha" in content
    assert "user:2" in content


def test_O4_search_by_key(admin_client, records):
    response = admin_client.get(reverse(CHANGELIST), {"q": "key-beta"})
    assert changelist_keys(response) == {"key-beta"}


def test_O4_search_by_scope(admin_client, records):
    response = admin_client.get(reverse(CHANGELIST), {"q": "session:xyz"})
    assert changelist_keys(response) == {"key-gamma"}


def test_O4_filter_by_state(admin_client, records):
    response = admin_client.get(reverse(CHANGELIST), {"state__exact": "completed"})
    assert changelist_keys(response) == {"key-alpha", "key-gamma"}
    response = admin_client.get(reverse(CHANGELIST), {"state__exact": "in_progress"})
    assert changelist_keys(response) == {"key-beta"}


def test_O4_filter_by_status_code(admin_client, records):
    response = admin_client.get(reverse(CHANGELIST), {"status_code": "422"})
    assert changelist_keys(response) == {"key-gamma"}


def test_O4_add_is_forbidden(admin_client, records):
    response = admin_client.get(reverse("admin:idempotent_post_idempotencyrecord_add"))
    assert response.status_code == 403


def test_O4_change_is_forbidden_but_view_shows_the_record(admin_client, records):
    record = records[0]
    url = reverse("admin:idempotent_post_idempotencyrecord_change", args=[record.pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    content = response.content.decode()
    # Read-only: no form to save, the body shown decoded (and escaped), never as bytes.
    assert 'name="_save"' not in content
    assert "{&quot;order&quot;: &quot;A-1&quot;}" in content
    assert "b&#x27;" not in content

    response = admin_client.post(url, {"key": "changed", "scope": "changed"})
    assert response.status_code == 403
    record.refresh_from_db()
    assert record.key == "key-alpha"


def test_O4_delete_is_forbidden(admin_client, records):
    record = records[0]
    url = reverse("admin:idempotent_post_idempotencyrecord_delete", args=[record.pk])
    assert admin_client.post(url, {"post": "yes"}).status_code == 403
    response = admin_client.post(
        reverse(CHANGELIST),
        {"action": "delete_selected", "_selected_action": [record.pk], "post": "yes"},
    )
    assert IdempotencyRecord.objects.filter(pk=record.pk).exists()
    assert response.status_code in (200, 302)


def test_O4_permissions(rf, admin_user):
    model_admin = IdempotencyRecordAdmin(IdempotencyRecord, admin.site)
    request = rf.get("/")
    request.user = admin_user
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request)
    assert not model_admin.has_delete_permission(request)
    assert model_admin.has_view_permission(request)


def test_O4_staff_with_view_permission_sees_records(client, records):
    user = User.objects.create_user("staff", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_idempotencyrecord"))
    client.force_login(user)
    response = client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    assert changelist_keys(response) == {"key-alpha", "key-beta", "key-gamma"}


def test_O4_body_preview_decodes_with_the_stored_charset():
    record = IdempotencyRecord(
        response_body="café".encode("latin-1"),
        response_headers=[["Content-Type", "text/plain; charset=latin-1"]],
    )
    assert body_preview(record) == "café"


def test_O4_body_preview_memoryview_as_postgresql_returns_it():
    record = IdempotencyRecord(response_body=memoryview(b"hello"))
    assert body_preview(record) == "hello"


def test_O4_body_preview_truncates_long_bodies():
    record = IdempotencyRecord(response_body=b"x" * 50)
    preview = body_preview(record, limit=10)
    assert preview.startswith("x" * 10 + "\n")
    assert "truncated: 50 characters" in preview


def test_O4_body_preview_describes_binary_missing_and_unstored_bodies():
    assert body_preview(IdempotencyRecord(response_body=b"\xff\xfe\x00\x81")) == (
        "(4 bytes of binary data)"
    )
    assert body_preview(IdempotencyRecord(response_body=None)) == "(none)"
    assert body_preview(IdempotencyRecord(response_body=b"")) == "(empty)"
    assert body_preview(IdempotencyRecord(body_stored=False)).startswith("(not stored")


def test_O4_unknown_charset_falls_back_to_utf8():
    record = IdempotencyRecord(
        response_body="ok ✓".encode(),
        response_headers=[["Content-Type", "text/plain; charset=no-such-charset"]],
    )
    assert body_preview(record) == "ok ✓"
