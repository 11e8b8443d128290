"""X2: a Celery task's body runs to a committed end once per key, however often delivered.

Real workers (child processes, prefork) on a real broker (RabbitMQ and Redis), killed
with SIGKILL; effects counted in the database and in files outside any transaction.
"""

from __future__ import annotations

import uuid

import pytest

from tests.celery import tasks
from tests.testapp.models import Widget

pytestmark = pytest.mark.celery

#: The lease the tasks are decorated with.
LEASE = 2


def widgets(label: str) -> int:
    return Widget.objects.filter(key=label).count()


def test_x2_redelivery_after_a_killed_worker_runs_the_body_to_one_committed_end(celery_run):
    # Two tasks, both killed mid-run: one on the durable path with a recovery point
    # before the kill (T2), one whose writes share the guard's transaction (T1).
    resumable, atomic = uuid.uuid4().hex, uuid.uuid4().hex
    first = celery_run.worker("first", concurrency=2)
    ids = {
        resumable: celery_run.publish(tasks.charge_then_block, resumable),
        atomic: celery_run.publish(tasks.write_then_block, atomic),
    }
    celery_run.wait_until(
        lambda: all(celery_run.count(label, "entered") == 1 for label in ids),
        "both first runs entered",
    )
    first.kill()

    celery_run.worker("second", concurrency=2)
    celery_run.wait_until(
        lambda: all(celery_run.deliveries(task_id, "SUCCESS") for task_id in ids.values()),
        "both redelivered tasks succeeded",
    )
    for label in ids:
        assert widgets(label) == 1
        assert celery_run.count(label, "entered") == 2  # the dead run, and the takeover
    # The recovery point before the kill is not repeated by the takeover.
    assert celery_run.count(resumable, "charged") == 1


def test_x2_the_same_work_published_twice_runs_once(celery_run):
    by_id, by_key = uuid.uuid4().hex, uuid.uuid4().hex
    celery_run.worker("only")
    task_id = celery_run.publish(tasks.once, by_id)
    celery_run.publish(tasks.once, by_id, task_id=task_id)
    # Other task ids, one key given by the caller.
    keyed = [celery_run.publish(tasks.once, by_key, idempotency_key=f"k-{by_key}") for _ in "ab"]
    celery_run.wait_until(
        lambda: (
            len(celery_run.deliveries(task_id, "SUCCESS")) == 2
            and all(celery_run.deliveries(each, "SUCCESS") for each in keyed)
        ),
        "every delivery succeeded",
    )
    for label in (by_id, by_key):
        assert celery_run.count(label, "entered") == 1
        assert widgets(label) == 1


def test_x2_autoretry_after_a_failure_commits_once(celery_run):
    label = uuid.uuid4().hex
    celery_run.worker("only")
    task_id = celery_run.publish(tasks.flaky, label)
    celery_run.wait_until(lambda: celery_run.deliveries(task_id, "SUCCESS"), "the retry succeeded")
    assert [d["state"] for d in celery_run.deliveries(task_id)] == ["RETRY", "SUCCESS"]
    assert celery_run.count(label, "entered") == 2
    assert widgets(label) == 1  # the failed run's row was rolled back with it


def test_x2_a_task_longer_than_its_lease_keeps_its_key_against_a_duplicate(celery_run):
    label = uuid.uuid4().hex
    celery_run.worker("first")
    task_id = celery_run.publish(tasks.slow, label)
    celery_run.wait_until(lambda: celery_run.count(label, "entered") == 1, "the first run entered")
    entered_at = float((celery_run.directory / label / "entered").read_text().split()[0])

    celery_run.worker("second")
    celery_run.publish(tasks.slow, label, task_id=task_id)
    # S9: the duplicate is turned away (sent again later) for longer than two leases.
    celery_run.wait_until(
        lambda: any(
            d["at"] > entered_at + 2 * LEASE for d in celery_run.deliveries(task_id, "RETRY")
        ),
        "the duplicate was turned away after two leases",
    )
    assert celery_run.count(label, "entered") == 1
    celery_run.release()
    celery_run.wait_until(
        lambda: len(celery_run.deliveries(task_id, "SUCCESS")) >= 2,
        "the first run and the duplicate succeeded",
    )
    assert celery_run.count(label, "entered") == 1
    assert widgets(label) == 1


def test_x2_over_the_celery_decorator_is_a_type_error_showing_the_order():
    from idempotent_post.celery import idempotent_task

    with pytest.raises(TypeError, match="under the Celery decorator"):
        idempotent_task(tasks.once)


def test_x2_the_callers_key_is_part_of_the_task_signature():
    # Celery checks a call's arguments against it when the message is sent.
    import inspect

    assert "idempotency_key" in inspect.signature(tasks.once.run).parameters
    with pytest.raises(TypeError):
        tasks.once.apply_async(("d", "label"), {"unknown": 1}, connection=None)
