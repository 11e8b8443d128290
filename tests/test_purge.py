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

from idempotent_post.management.commands import idempotent_post_purge
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


def is_delete(sql: str) -> bool:
    """Whether ``sql`` deletes records (on PostgreSQL the DELETE sits in a ``WITH``)."""
    return "DELETE FROM" in sql.upper()


def delete_queries(captured: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if is_delete(q["sql"])]


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


def test_O5_records_of_one_expiry_across_batches_all_go():
    # make_records gives the five one expires_at: each batch after the first reads on
    # from the expiry the batch before stopped at, that expiry included.
    make_records("old", 5, timedelta(minutes=-5))
    assert purge("--batch-size", "2") == "Deleted 5 expired idempotency records.\n"
    assert keys() == set()


def test_O5_each_batch_reads_on_from_where_the_batch_before_stopped(postgres):
    # Only on PostgreSQL, which keeps the index entries of deleted rows until a vacuum:
    # elsewhere each batch reads from the oldest record.
    make_records("older", 2, timedelta(hours=-2))
    make_records("newer", 2, timedelta(hours=-1))
    make_records("live", 1, timedelta(hours=1))
    done: list[str] = []

    def backdate_after_the_first_delete(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if not done and is_delete(sql):
            done.append(sql)
            # Only a clock gone backwards gives a record an expiry older than one already
            # purged; the run passed it, the next one takes it.
            IdempotencyRecord.objects.filter(key="live-0").update(
                expires_at=timezone.now() - timedelta(days=1)
            )
        return result

    with connection.execute_wrapper(backdate_after_the_first_delete):
        assert purge("--batch-size", "2") == "Deleted 4 expired idempotency records.\n"
    assert keys() == {"live-0"}
    assert purge() == "Deleted 1 expired idempotency record.\n"


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
        if not done and is_delete(sql):
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
    sent: list[int] = []

    def count_parameters(execute, sql, params, many, context):
        if is_delete(sql):
            sizes.append(len(params))
            # The keys, and the cut-off last; PostgreSQL takes the keys as one array.
            keys_sent = params[:-1]
            sent.append(len(keys_sent[0]) if isinstance(keys_sent[0], list) else len(keys_sent))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count_parameters):
        output = purge("--batch-size", "1100")
    assert output == "Deleted 1100 expired idempotency records.\n"
    assert keys() == set()
    limit = connection.features.max_query_params
    assert sum(sent) == 1100
    assert limit is None or max(sizes) <= limit


class Clock:
    """The purge's clock and sleep: a SELECT takes 1/8 s, a DELETE 1/4 s, a sleep what it asks.

    The times are binary fractions, so the sums compare exactly. ``events`` is the order in
    which the purge deleted and rested.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self.events: list[str | tuple[str, float]] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.events.append(("sleep", seconds))
        self.now += seconds

    def queries(self, execute, sql, params, many, context):
        if is_delete(sql):
            self.events.append("DELETE")
            self.now += 0.25
        elif sql.lstrip().upper().startswith("SELECT"):
            self.now += 0.125
        return execute(sql, params, many, context)

    def pauses(self) -> list[float]:
        return [event[1] for event in self.events if isinstance(event, tuple)]


@pytest.fixture
def clock(monkeypatch):
    """The purge's ``monotonic`` and ``sleep`` replaced by a ``Clock`` its queries advance."""
    fake = Clock()
    monkeypatch.setattr(idempotent_post_purge, "monotonic", fake.monotonic)
    monkeypatch.setattr(idempotent_post_purge, "sleep", fake.sleep)
    with connection.execute_wrapper(fake.queries):
        yield fake


def test_O5_by_default_the_purge_rests_as_long_as_the_batch_before_took(clock):
    make_records("old", 5, timedelta(minutes=-5))
    output = purge("--batch-size", "2")
    assert output == "Deleted 5 expired idempotency records.\n"
    # Each batch reads (1/8 s) and deletes (1/4 s): the rest before the next is as long.
    assert clock.events == ["DELETE", ("sleep", 0.375), "DELETE", ("sleep", 0.375), "DELETE"]


def test_O5_the_default_rest_follows_the_batch_that_just_ran(clock):
    make_records("old", 3, timedelta(minutes=-5))
    slow: list[str] = []

    def first_delete_is_slow(execute, sql, params, many, context):
        if not slow and is_delete(sql):
            slow.append(sql)
            clock.now += 1.0
        return execute(sql, params, many, context)

    with connection.execute_wrapper(first_delete_is_slow):
        purge("--batch-size", "1")
    # The rest is not counted as part of the next batch's time.
    assert clock.pauses() == [1.375, 0.375]


def test_O5_pause_option_rests_that_long_between_batches(clock):
    make_records("old", 5, timedelta(minutes=-5))
    output = purge("--batch-size", "2", "--pause", "0.5")
    assert output == "Deleted 5 expired idempotency records.\n"
    assert clock.events == ["DELETE", ("sleep", 0.5), "DELETE", ("sleep", 0.5), "DELETE"]


def test_O5_pause_zero_turns_the_pacing_off(clock):
    make_records("old", 5, timedelta(minutes=-5))
    purge("--batch-size", "2", "--pause", "0")
    assert clock.events == ["DELETE", "DELETE", "DELETE"]


@pytest.mark.parametrize("pause", [[], ["--pause", "0.5"]], ids=["default", "fixed"])
def test_O5_no_rest_after_the_last_batch_when_the_records_fill_it_exactly(clock, pause):
    make_records("old", 4, timedelta(minutes=-5))
    purge("--batch-size", "2", *pause)
    # The look-up that finds nothing left ends the run at once.
    assert clock.events[-1] == "DELETE"
    assert len(clock.pauses()) == 1
    assert keys() == set()


def test_O5_no_rest_after_the_last_batch_max_batches_allows(clock):
    make_records("old", 5, timedelta(minutes=-5))
    purge("--batch-size", "2", "--max-batches", "2", "--pause", "0.5")
    assert clock.events == ["DELETE", ("sleep", 0.5), "DELETE"]


def test_O5_no_rest_for_a_single_batch_or_nothing_to_delete(clock):
    make_records("old", 2, timedelta(minutes=-5))
    purge("--pause", "3")
    purge("--pause", "3")
    assert clock.events == ["DELETE"]


def test_O5_pause_through_call_command_keyword(clock):
    make_records("old", 3, timedelta(minutes=-5))
    purge(batch_size=1, pause=2)
    assert clock.pauses() == [2, 2]


@pytest.mark.parametrize("pause", ["-1", "nan", "inf", "soon"])
def test_O5_bad_pause_is_a_command_error(clock, pause):
    make_records("old", 1, timedelta(minutes=-5))
    with pytest.raises(CommandError, match="--pause"):
        purge("--pause", pause)
    assert IdempotencyRecord.objects.count() == 1
    assert clock.events == []


@pytest.mark.parametrize("pause", [-0.5, True, "1"])
def test_O5_bad_pause_through_call_command_keyword_is_a_command_error(pause):
    with pytest.raises(CommandError, match="--pause"):
        purge(pause=pause)
