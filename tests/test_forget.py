"""C7: forgetting a key on purpose (``idempotent_post_forget``) and ``idempotent_post.lookup``."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType
from django.core.files.storage import storages
from django.core.management import CommandError, call_command, execute_from_command_line
from django.http import HttpResponse
from django.utils import timezone

import idempotent_post
from idempotent_post import operations, responses
from idempotent_post.models import IdempotencyRecord

pytestmark = pytest.mark.django_db

COMMAND = "idempotent_post_forget"


def make_record(key: str, scope: str = "user:1", using: str = "default", **fields):
    values = {
        "fingerprint": "f" * 64,
        "expires_at": timezone.now() + timedelta(hours=1),
        "state": IdempotencyRecord.State.COMPLETED,
        "status_code": 201,
        "method": "POST",
        "path": "/api/orders/",
    }
    values.update(fields)
    return IdempotencyRecord.objects.using(using).create(scope=scope, key=key, **values)


@pytest.fixture
def operator():
    return User.objects.create_user("operator", password="pw", is_staff=True)


def forget(*args: str) -> str:
    out = StringIO()
    call_command(COMMAND, *args, stdout=out)
    return out.getvalue()


def remaining() -> set[tuple[str, str]]:
    return set(IdempotencyRecord.objects.values_list("scope", "key"))


# The command.


def test_C7_forget_deletes_exactly_that_record(operator):
    target = make_record("order-1")
    make_record("order-1", scope="user:2")
    make_record("order-2")

    output = forget("--scope", "user:1", "--key", "order-1", "--user", "operator")

    assert not IdempotencyRecord.objects.filter(pk=target.pk).exists()
    assert remaining() == {("user:2", "order-1"), ("user:1", "order-2")}
    assert (
        output
        == 'Forgot the idempotency key "order-1" of scope "user:1" (completed, status 201).\n'
    )


def test_C7_forget_is_recorded_in_the_admin_log_with_who_and_when(operator):
    target = make_record("order-1", scope="session:abc", state="in_progress", status_code=None)
    before = timezone.now()

    forget("--scope", "session:abc", "--key", "order-1", "--user", "operator")

    entry = LogEntry.objects.get()
    assert entry.user == operator
    assert entry.action_flag == DELETION
    assert before <= entry.action_time <= timezone.now()
    assert entry.content_type == ContentType.objects.get_for_model(IdempotencyRecord)
    assert entry.object_id == str(target.pk)
    assert entry.object_repr == "order-1 (session:abc)"
    assert entry.get_change_message() == (
        'Forgot the idempotency key "order-1" of scope "session:abc" (in progress) '
        "through manage.py idempotent_post_forget."
    )


def test_C7_forget_refuses_an_unknown_key(operator):
    make_record("order-1")
    make_record("order-2", scope="user:2")

    with pytest.raises(CommandError) as error:
        forget("--scope", "user:2", "--key", "order-1", "--user", "operator")

    assert str(error.value) == (
        'No idempotency record with key "order-1" in scope "user:2" (database \'default\'). '
        "Keys and scopes are case-sensitive."
    )
    assert remaining() == {("user:1", "order-1"), ("user:2", "order-2")}
    assert not LogEntry.objects.exists()


def test_C7_forget_compares_keys_case_sensitively(operator):
    make_record("Order-1")
    with pytest.raises(CommandError, match="No idempotency record"):
        forget("--scope", "user:1", "--key", "order-1", "--user", "operator")
    assert remaining() == {("user:1", "Order-1")}


# Through manage.py, which on Django 6 runs the database checks on every database.
@pytest.mark.django_db(databases="__all__")
def test_C7_forget_exits_non_zero_on_an_unknown_key(operator, capsys):
    with pytest.raises(SystemExit) as exit_info:
        execute_from_command_line(
            ["manage.py", COMMAND, "--scope", "user:1", "--key", "nope", "--user", "operator"]
        )
    assert exit_info.value.code == 1
    assert 'No idempotency record with key "nope" in scope "user:1"' in capsys.readouterr().err


def test_C7_forget_needs_an_existing_user(operator):
    make_record("order-1")
    with pytest.raises(CommandError, match="the following arguments are required: --user"):
        forget("--scope", "user:1", "--key", "order-1")
    with pytest.raises(CommandError) as error:
        forget("--scope", "user:1", "--key", "order-1", "--user", "nobody")
    assert str(error.value) == (
        "No user 'nobody': --user names the operator, an existing user, for the admin log."
    )
    assert remaining() == {("user:1", "order-1")}
    assert not LogEntry.objects.exists()


def test_C7_forget_refuses_an_unknown_database(operator):
    make_record("order-1")
    with pytest.raises(CommandError, match="Unknown database alias 'nowhere'"):
        forget(
            "--scope", "user:1", "--key", "order-1", "--user", "operator", "--database", "nowhere"
        )
    assert remaining() == {("user:1", "order-1")}


@pytest.mark.django_db(databases=["default", "records"])
def test_C7_forget_on_another_database(operator):
    on_records = make_record("order-1", using="records")
    make_record("order-1")

    forget("--scope", "user:1", "--key", "order-1", "--user", "operator", "--database", "records")

    assert not IdempotencyRecord.objects.using("records").filter(pk=on_records.pk).exists()
    assert remaining() == {("user:1", "order-1")}
    assert LogEntry.objects.get().user == operator


@pytest.mark.django_db(databases=["default", "records"])
def test_C7_forget_uses_the_records_database_setting(operator, settings):
    settings.IDEMPOTENT_POST_DATABASE = "records"
    make_record("order-1", using="records")
    make_record("order-1")

    forget("--scope", "user:1", "--key", "order-1", "--user", "operator")

    assert not IdempotencyRecord.objects.using("records").exists()
    assert remaining() == {("user:1", "order-1")}


@pytest.fixture
def storage(settings, tmp_path):
    """A file-system response storage in a temporary directory, with a small row limit."""
    settings.STORAGES = {
        **settings.STORAGES,
        "tests-responses": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "responses")},
        },
    }
    settings.IDEMPOTENT_POST_RESPONSE_STORAGE = "tests-responses"
    settings.IDEMPOTENT_POST_MAX_RESPONSE_SIZE = 100
    return storages["tests-responses"]


def kept_in_a_file() -> str:
    stored, _ = responses.capture(HttpResponse(b"x" * 500, status=201))
    assert stored.body is None
    assert stored.body_file
    return stored.body_file


def test_C7_forget_deletes_the_kept_body_file_after_the_commit(
    operator, storage, django_capture_on_commit_callbacks
):
    mine, other = kept_in_a_file(), kept_in_a_file()
    make_record("order-1", body_file=mine)
    make_record("order-1", scope="user:2", body_file=other)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        forget("--scope", "user:1", "--key", "order-1", "--user", "operator")
        # Not before the commit: a rolled-back deletion keeps a record that needs it.
        assert storage.exists(mine)

    assert len(callbacks) == 1
    assert not storage.exists(mine)
    assert storage.exists(other)
    assert remaining() == {("user:2", "order-1")}


# lookup()


def test_C7_lookup_is_public():
    assert idempotent_post.lookup is operations.lookup
    assert "lookup" in idempotent_post.__all__


def test_C7_lookup_finds_the_record_of_scope_and_key():
    target = make_record("order-1")
    make_record("order-1", scope="user:2")

    found = idempotent_post.lookup("user:1", "order-1")

    assert isinstance(found, IdempotencyRecord)
    assert found.pk == target.pk
    assert (found.scope, found.key, found.status_code) == ("user:1", "order-1", 201)


def test_C7_lookup_misses_answer_none():
    make_record("order-1")
    assert idempotent_post.lookup("user:1", "order-2") is None
    assert idempotent_post.lookup("user:3", "order-1") is None
    assert idempotent_post.lookup("user:1", "ORDER-1") is None


def test_C7_lookup_returns_an_expired_record_as_stored():
    expired = make_record("order-1", expires_at=timezone.now() - timedelta(seconds=1))
    found = idempotent_post.lookup("user:1", "order-1")
    assert found is not None
    assert found.pk == expired.pk
    assert not found.is_live()


@pytest.mark.django_db(databases=["default", "records"])
def test_C7_lookup_reads_the_records_database(settings):
    on_records = make_record("order-1", using="records")
    assert idempotent_post.lookup("user:1", "order-1") is None
    assert idempotent_post.lookup("user:1", "order-1", using="records").pk == on_records.pk
    settings.IDEMPOTENT_POST_DATABASE = "records"
    assert idempotent_post.lookup("user:1", "order-1").pk == on_records.pk
