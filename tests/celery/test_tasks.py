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


def widgets(label: str) -> int:
    return Widget.objects.filter(key=label).count()


@pytest.mark.parametrize("task", [tasks.charge_then_block, tasks.write_then_block])
def test_x2_redelivery_after_a_killed_worker_runs_the_body_to_one_committed_end(
    celery_run, task
):
    label = uuid.uuid4().hex
    first = celery_run.worker("first")
    task_id = celery_run.publish(task, label)
    celery_run.wait_until(lambda: celery_run.count("entered") == 1, "the first run entered")
    first.kill()

    celery_run.worker("second")
    celery_run.wait_until(
        lambda: celery_run.deliveries(task_id, "SUCCESS"), "the redelivered task succeeded"
    )
    assert widgets(label) == 1
    assert celery_run.count("entered") == 2  # the dead run, and the one that took over
    if task is tasks.charge_then_block:
        # T2: the recovery point before the kill is not repeated by the takeover.
        assert celery_run.count("charged") == 1


@pytest.mark.parametrize("same", ["task_id", "idempotency_key"])
def test_x2_the_same_work_published_twice_runs_once(celery_run, same):
    label = uuid.uuid4().hex
    celery_run.worker("only")
    if same == "task_id":
        task_id = celery_run.publish(tasks.once, label)
        ids = [task_id, celery_run.publish(tasks.once, label, task_id=task_id)]
    else:
        key = f"order-{label}"
        ids = [celery_run.publish(tasks.once, label, idempotency_key=key) for _ in range(2)]
    celery_run.wait_until(
        lambda: len([d for i in set(ids) for d in celery_run.deliveries(i, "SUCCESS")]) == 2,
        "both deliveries succeeded",
    )
    assert celery_run.count("entered") == 1
    assert widgets(label) == 1


def test_x2_autoretry_after_a_failure_commits_once(celery_run):
    label = uuid.uuid4().hex
    celery_run.worker("only")
    task_id = celery_run.publish(tasks.flaky, label)
    celery_run.wait_until(lambda: celery_run.deliveries(task_id, "SUCCESS"), "the retry succeeded")
    assert [d["state"] for d in celery_run.deliveries(task_id)] == ["RETRY", "SUCCESS"]
    assert celery_run.count("entered") == 2
    assert widgets(label) == 1  # the failed run's row was rolled back with it


def test_x2_a_task_longer_than_its_lease_keeps_its_key_against_a_duplicate(celery_run):
    label = uuid.uuid4().hex
    celery_run.worker("first")
    task_id = celery_run.publish(tasks.slow, label)
    celery_run.wait_until(lambda: celery_run.count("entered") == 1, "the first run entered")
    entered_at = float((celery_run.directory / "entered").read_text().split()[0])

    celery_run.worker("second")
    celery_run.publish(tasks.slow, label, task_id=task_id)
    lease = 2
    # S9: the duplicate is turned away (sent again later) for longer than two leases.
    celery_run.wait_until(
        lambda: any(
            d["at"] > entered_at + 2 * lease for d in celery_run.deliveries(task_id, "RETRY")
        ),
        "the duplicate was turned away after two leases",
    )
    assert celery_run.count("entered") == 1
    celery_run.release()
    celery_run.wait_until(
        lambda: len(celery_run.deliveries(task_id, "SUCCESS")) >= 2,
        "the first run and the duplicate succeeded",
    )
    assert celery_run.count("entered") == 1
    assert widgets(label) == 1
