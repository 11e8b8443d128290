"""O4: the read-only admin for idempotency records; C7: its "Forget selected keys" action."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib import admin
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.auth.models import Permission, User
from django.contrib.contenttypes.models import ContentType
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


# C7: the "Forget selected keys" action, the one way to delete a record here.


def forget_action(client, *records, confirm: bool = False):
    data = {"action": "forget_selected", "_selected_action": [record.pk for record in records]}
    if confirm:
        data["post"] = "yes"
    return client.post(reverse(CHANGELIST), data)


def test_C7_the_action_is_offered_and_delete_selected_is_not(admin_client, records):
    response = admin_client.get(reverse(CHANGELIST))
    choices = dict(response.context["action_form"].fields["action"].choices)
    choices.pop("")  # the empty choice, whose label differs between Django releases
    assert choices == {"forget_selected": "Forget selected keys"}


def test_C7_the_action_asks_for_confirmation_first(admin_client, records):
    alpha, beta, _ = records
    response = forget_action(admin_client, alpha, beta)

    assert response.status_code == 200
    assert response.templates[0].name == (
        "admin/idempotent_post/idempotencyrecord/forget_selected_confirmation.html"
    )
    assert {record.pk for record in response.context["records"]} == {alpha.pk, beta.pk}
    content = response.content.decode()
    assert "Forget 2 idempotency keys?" in content
    for record in (alpha, beta):
        assert f"<td>{record.key}</td><td>{record.scope}</td>" in content
        assert f'name="_selected_action" value="{record.pk}"' in content
    assert "key-gamma" not in content
    assert '<input type="hidden" name="action" value="forget_selected">' in content
    assert '<input type="hidden" name="post" value="yes">' in content
    assert 'value="Yes, forget them"' in content
    # Nothing forgotten yet.
    assert IdempotencyRecord.objects.count() == 3
    assert not LogEntry.objects.exists()


def test_C7_confirming_forgets_and_logs_each_key(admin_client, admin_user, records):
    alpha, beta, gamma = records
    before = timezone.now()
    response = forget_action(admin_client, alpha, beta, confirm=True)

    assert response.status_code == 302
    assert response["Location"] == reverse(CHANGELIST)
    assert list(IdempotencyRecord.objects.values_list("pk", flat=True)) == [gamma.pk]
    entries = {entry.object_id: entry for entry in LogEntry.objects.all()}
    assert set(entries) == {str(alpha.pk), str(beta.pk)}
    for entry in entries.values():
        assert entry.user == admin_user
        assert entry.action_flag == DELETION
        assert before <= entry.action_time <= timezone.now()
        assert entry.content_type == ContentType.objects.get_for_model(IdempotencyRecord)
    assert entries[str(alpha.pk)].object_repr == "key-alpha (user:1)"
    assert entries[str(alpha.pk)].get_change_message() == (
        'Forgot the idempotency key "key-alpha" of scope "user:1" (completed, status 201) '
        "through the admin action."
    )
    assert entries[str(beta.pk)].get_change_message() == (
        'Forgot the idempotency key "key-beta" of scope "user:2" (in progress) '
        "through the admin action."
    )
    page = admin_client.get(response["Location"])
    assert [str(m) for m in page.context["messages"]] == ["Forgot 2 idempotency keys."]
    assert changelist_keys(page) == {"key-gamma"}


def test_C7_a_key_gone_meanwhile_is_reported(admin_client, records):
    alpha, beta, _ = records
    IdempotencyRecord.objects.filter(pk=beta.pk).delete()
    response = forget_action(admin_client, alpha, beta, confirm=True)
    page = admin_client.get(response["Location"])
    assert [str(m) for m in page.context["messages"]] == ["Forgot 1 idempotency key."]
    assert [entry.object_id for entry in LogEntry.objects.all()] == [str(alpha.pk)]


def test_C7_a_non_staff_user_cannot_forget(client, admin_user, records):
    user = User.objects.create_user("visitor", password="pw")
    user.user_permissions.add(Permission.objects.get(codename="delete_idempotencyrecord"))
    client.force_login(user)
    response = forget_action(client, records[0], confirm=True)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    assert IdempotencyRecord.objects.count() == 3
    assert not LogEntry.objects.exists()
    # The same request from a staff user forgets the key: it was the user that was refused.
    client.force_login(admin_user)
    forget_action(client, records[0], confirm=True)
    assert IdempotencyRecord.objects.count() == 2
    assert LogEntry.objects.get().user == admin_user


def test_C7_staff_without_the_delete_permission_cannot_forget(client, rf, records):
    user = User.objects.create_user("staff", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_idempotencyrecord"))
    request = rf.post("/")
    request.user = user
    model_admin = IdempotencyRecordAdmin(IdempotencyRecord, admin.site)
    assert not model_admin.has_forget_permission(request)
    assert "forget_selected" not in model_admin.get_actions(request)
    client.force_login(user)
    response = client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    assert response.context["action_form"] is None
    for confirm in (False, True):
        forget_action(client, records[0], confirm=confirm)
    assert IdempotencyRecord.objects.count() == 3
    assert not LogEntry.objects.exists()


def test_C7_staff_with_the_delete_permission_forget_but_have_no_delete_view(client, records):
    user = User.objects.create_user("staff", password="pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["view_idempotencyrecord", "delete_idempotencyrecord"]
        )
    )
    client.force_login(user)
    record = records[0]
    delete_view = reverse("admin:idempotent_post_idempotencyrecord_delete", args=[record.pk])
    assert client.post(delete_view, {"post": "yes"}).status_code == 403
    forget_action(client, record, confirm=True)
    assert not IdempotencyRecord.objects.filter(pk=record.pk).exists()
    assert LogEntry.objects.get().user == user
