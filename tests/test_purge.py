"""O5: ``manage.py idempotent_post_purge`` deletes expired records in batches."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models.signals import pre_delete
from django.test.utils import CaptureQueriesContext, override_settings
from django.utils import timezone

from idempotent_post.models import IdempotencyRecord
from idempotent_post.responses import FILE_PREFIX

pytestmark = pytest.mark.django_db


def make_records(prefix: str, count: int, expires_in: timedelta, **fields) -> None:
    now = timezone.now()
    IdempotencyRecord.objects.bulk_create(
        IdempotencyRecord(
            scope="user:1",
            key=f"{prefix}-{n}",
            fingerprint="f" * 64,
            expires_at=now + expires_in,
            **fields,
        )
        for n in range(count)
    )


def purge(*args: str, **options) -> str:
    out = StringIO()
    call_command("idempotent_post_purge", *args, stdout=out, **options)
    return out.getvalue()


def keys() -> set[str]:
    return set(IdempotencyRecord.objects.values_list("key", flat=True))


def delete_queries(captured: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if q["sql"].upper().startswith("DELETE")]


def test_O5_deletes_only_expired_records():
    make_records("old", 3, timedelta(hours=-1))
    make_records("live", 2, timedelta(hours=1))
    output = purge()
    assert keys() == {"live-0", "live-1"}
    assert output == "Deleted 3 expired idempotency records.\n"


def test_O5_expired_in_progress_records_go_too():
    make_records("stale", 1, timedelta(seconds=-1), state=IdempotencyRecord.State.IN_PROGRESS)
    make_records("running", 1, timedelta(hours=1), state=IdempotencyRecord.State.IN_PROGRESS)
    assert purge() == "Deleted 1 expired idempotency record.\n"
    assert keys() == {"running-0"}


def test_O5_deletes_in_batches():
    make_records("old", 5, timedelta(minutes=-5))
    make_records("live", 1, timedelta(minutes=5))
    with CaptureQueriesContext(connection) as captured:
        output = purge("--batch-size", "2")
    assert keys() == {"live-0"}
    assert output == "Deleted 5 expired idempotency records.\n"
    # 2 + 2 + 1, each its own DELETE statement; then one empty look-up ends the run.
    deletes = delete_queries(captured)
    assert len(deletes) == 3
    # The DELETE checks the expiry again: a key taken up anew in between stays.
    assert all("expires_at" in sql for sql in deletes)
    selects = [q for q in captured.captured_queries if q["sql"].upper().startswith("SELECT")]
    assert len(selects) == 4


def test_O5_batch_size_defaults_to_the_setting():
    make_records("old", 3, timedelta(minutes=-5))
    with (
        override_settings(IDEMPOTENT_POST_PURGE_BATCH_SIZE=1),
        CaptureQueriesContext(connection) as captured,
    ):
        purge()
    assert keys() == set()
    assert len(delete_queries(captured)) == 3


def test_O5_max_batches_stops_early():
    make_records("old", 5, timedelta(minutes=-5))
    output = purge("--batch-size", "2", "--max-batches", "2")
    assert output == "Deleted 4 expired idempotency records.\n"
    assert IdempotencyRecord.objects.count() == 1


def test_O5_oldest_expired_go_first():
    make_records("older", 2, timedelta(hours=-2))
    make_records("newer", 2, timedelta(hours=-1))
    purge("--batch-size", "2", "--max-batches", "1")
    assert keys() == {"newer-0", "newer-1"}


def test_O5_verbose_reports_each_batch():
    make_records("old", 3, timedelta(minutes=-5))
    output = purge("--batch-size", "2", verbosity=2)
    assert output.splitlines() == [
        "Batch 1: deleted 2 expired idempotency records.",
        "Batch 2: deleted 1 expired idempotency record.",
        "Deleted 3 expired idempotency records.",
    ]


def test_O5_dry_run_deletes_nothing_and_prints_the_count():
    make_records("old", 4, timedelta(minutes=-5))
    make_records("live", 1, timedelta(minutes=5))
    with CaptureQueriesContext(connection) as captured:
        output = purge("--dry-run")
    assert output == "Would delete 4 expired idempotency records.\n"
    assert IdempotencyRecord.objects.count() == 5
    assert delete_queries(captured) == []


def test_O5_nothing_to_delete():
    make_records("live", 2, timedelta(minutes=5))
    assert purge() == "Deleted 0 expired idempotency records.\n"
    assert IdempotencyRecord.objects.count() == 2


@pytest.mark.parametrize("size", ["0", "-3"])
def test_O5_bad_batch_size_is_a_command_error(size):
    make_records("old", 1, timedelta(minutes=-5))
    with pytest.raises(CommandError, match="--batch-size"):
        purge("--batch-size", size)
    assert IdempotencyRecord.objects.count() == 1


def test_O5_bad_batch_size_through_call_command_keyword():
    with pytest.raises(CommandError, match="--batch-size"):
        purge(batch_size=0)


def test_O5_bad_max_batches_is_a_command_error():
    with pytest.raises(CommandError, match="--max-batches"):
        purge("--max-batches", "0")


def test_O5_non_integer_batch_size_is_a_command_error():
    with pytest.raises(CommandError):
        purge("--batch-size", "many")


def test_O5_unknown_database_is_a_command_error():
    with pytest.raises(CommandError, match="Unknown database alias 'nowhere'"):
        purge("--database", "nowhere")


def test_O5_explicit_database():
    make_records("old", 2, timedelta(minutes=-5))
    assert purge("--database", "default") == "Deleted 2 expired idempotency records.\n"
    assert IdempotencyRecord.objects.count() == 0


@pytest.fixture
def delete_receiver():
    """A project-wide ``pre_delete`` receiver, as audit logging adds one.

    With any such receiver Django's ``QuerySet.delete()`` stops deleting in one
    statement: it reads the rows first, then deletes them by primary key alone.
    """
    seen: list[object] = []

    def receiver(sender, instance, **kwargs):
        seen.append(instance)

    pre_delete.connect(receiver, weak=False, dispatch_uid="tests-audit-log")
    yield seen
    pre_delete.disconnect(dispatch_uid="tests-audit-log")


def retry_before_delete(key: str):
    """A query hook: a retry takes ``key`` up again the moment before the purge's DELETE.

    The record was expired when the purge read it; the retry gives it a fresh expiry
    and lease, as the engine does when it takes an expired key up again (S7).
    """
    done = []

    def hook(execute, sql, params, many, context):
        if not done and sql.lstrip().upper().startswith("DELETE"):
            done.append(sql)
            now = timezone.now()
            IdempotencyRecord.objects.filter(key=key).update(
                state=IdempotencyRecord.State.IN_PROGRESS,
                expires_at=now + timedelta(hours=24),
                locked_until=now + timedelta(seconds=30),
            )
        return execute(sql, params, many, context)

    return connection.execute_wrapper(hook)


def test_O5_a_record_taken_up_again_before_the_delete_stays_whatever_the_receivers(
    delete_receiver,
):
    make_records("old", 3, timedelta(minutes=-5))
    with retry_before_delete("old-1"):
        output = purge()
    assert keys() == {"old-1"}
    assert output == "Deleted 2 expired idempotency records.\n"
    assert IdempotencyRecord.objects.get(key="old-1").is_live()


@pytest.fixture
def response_storage(settings):
    """An in-memory response storage (P3), so body files can be counted."""
    settings.STORAGES = {
        **settings.STORAGES,
        "tests-responses": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }
    settings.IDEMPOTENT_POST_RESPONSE_STORAGE = "tests-responses"
    return storages["tests-responses"]


def make_record_with_body_file(storage, key: str, expires_in: timedelta) -> str:
    name = storage.save(f"{FILE_PREFIX}{key}.bin", ContentFile(b"x" * 64))
    make_records(key, 1, expires_in, body_file=name)
    return name


def test_O5_body_files_of_deleted_records_go_after_the_commit(
    response_storage, django_capture_on_commit_callbacks
):
    old = make_record_with_body_file(response_storage, "old", timedelta(minutes=-5))
    live = make_record_with_body_file(response_storage, "live", timedelta(minutes=5))
    make_records("plain", 2, timedelta(minutes=-5))
    with django_capture_on_commit_callbacks() as callbacks:
        assert purge() == "Deleted 3 expired idempotency records.\n"
        # The rows' deletion is not committed yet: their files are still there.
        assert response_storage.exists(old)
    assert len(callbacks) == 1
    for callback in callbacks:
        callback()
    assert not response_storage.exists(old)
    assert response_storage.exists(live)
    assert keys() == {"live-0"}


def test_O5_the_body_file_of_a_record_taken_up_again_stays(
    delete_receiver, response_storage, django_capture_on_commit_callbacks
):
    old = make_record_with_body_file(response_storage, "old", timedelta(minutes=-5))
    kept = make_record_with_body_file(response_storage, "kept", timedelta(minutes=-5))
    with django_capture_on_commit_callbacks(execute=True), retry_before_delete("kept-0"):
        assert purge() == "Deleted 1 expired idempotency record.\n"
    assert keys() == {"kept-0"}
    assert not response_storage.exists(old)
    assert response_storage.exists(kept)


def test_O5_a_large_batch_stays_within_the_database_parameter_limit():
    make_records("old", 1100, timedelta(minutes=-5))
    sizes: list[int] = []

    def count_parameters(execute, sql, params, many, context):
        if sql.lstrip().upper().startswith("DELETE"):
            sizes.append(len(params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count_parameters):
        output = purge("--batch-size", "1100")
    assert output == "Deleted 1100 expired idempotency records.\n"
    assert keys() == set()
    limit = connection.features.max_query_params
    assert sum(sizes) - len(sizes) == 1100
    assert limit is None or max(sizes) <= limit
