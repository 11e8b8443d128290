"""O5: ``manage.py idempotent_post_purge`` deletes expired records in batches."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings
from django.utils import timezone

from idempotent_post.models import IdempotencyRecord

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
