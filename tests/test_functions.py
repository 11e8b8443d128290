"""``idempotent_function`` (X1): the engine for plain functions, sync and async."""

from __future__ import annotations

import asyncio
import threading

import pytest
from django.db import connections

from idempotent_post import InProgress, KeyMismatch, current, idempotent_function
from idempotent_post.models import IdempotencyRecord
from tests.testapp.models import Widget

calls: list[tuple] = []


@idempotent_function(key="order-{order_id}")
def charge(order_id, amount):
    calls.append(("charge", order_id, amount))
    Widget.objects.create(name=f"charge-{order_id}")
    return {"charge": f"ch_{order_id}", "amount": amount}


@idempotent_function(key=lambda order_id, **_: f"mail-{order_id}")
def failing(order_id, fail):
    calls.append(("failing", order_id))
    Widget.objects.create(name="failing")
    if fail:
        raise RuntimeError("the mail server is down")
    return "sent"


crash_after_charge = threading.Event()


@idempotent_function(key="steps-{order_id}", atomic=False)
def with_steps(order_id):
    idempotency = current()
    charge_id = idempotency.step("charge", lambda: calls.append(("step", order_id)) or "ch_1")
    if crash_after_charge.is_set():
        raise RuntimeError("crash after the charge")
    return {"charge": charge_id, "gateway_key": idempotency.derive("gateway")}


@idempotent_function(key="async-{n}")
async def async_double(n):
    calls.append(("async", n))
    return n * 2


@pytest.fixture(autouse=True)
def _clean():
    calls.clear()


pytestmark = pytest.mark.django_db


def test_X1_the_first_call_runs_and_a_later_one_returns_the_kept_result():
    assert charge(7, 100) == {"charge": "ch_7", "amount": 100}
    assert charge(7, 100) == {"charge": "ch_7", "amount": 100}
    assert calls == [("charge", 7, 100)]
    assert Widget.objects.count() == 1
    record = IdempotencyRecord.objects.get(key="order-7")
    assert record.scope == "function:tests.test_functions.charge"
    assert record.state == IdempotencyRecord.State.COMPLETED


def test_X1_keyword_and_positional_calls_are_the_same_call():
    charge(8, 5)
    assert charge(order_id=8, amount=5)["charge"] == "ch_8"
    assert len(calls) == 1


def test_X1_the_same_key_with_other_arguments_raises_key_mismatch():
    charge(9, 100)
    with pytest.raises(KeyMismatch):
        charge(9, 200)
    assert calls == [("charge", 9, 100)]


def test_X1_an_exception_is_not_kept_and_frees_the_key():
    with pytest.raises(RuntimeError):
        failing(1, fail=True)
    assert not IdempotencyRecord.objects.filter(key="mail-1").exists()
    assert Widget.objects.count() == 0  # rolled back with the failed run (T1)
    # The key is free again, but its arguments are part of the request: same arguments.
    with pytest.raises(RuntimeError):
        failing(1, fail=True)
    assert len(calls) == 2


def test_X1_a_call_while_another_holds_the_key_raises_in_progress():
    charge(10, 1)
    IdempotencyRecord.objects.filter(key="order-10").update(
        state="in_progress", owner="someone", locked_until="2999-01-01T00:00:00Z"
    )
    with pytest.raises(InProgress):
        charge(10, 1)


def test_X1_X4_recovery_points_and_derived_keys_inside_a_function():
    crash_after_charge.set()
    try:
        with pytest.raises(RuntimeError):
            with_steps(3)
    finally:
        crash_after_charge.clear()
    result = with_steps(3)
    assert calls == [("step", 3)]  # the charge step ran once
    again = with_steps(3)
    assert again == result
    assert len(result["gateway_key"]) == 64


# The engine's database work runs in sync_to_async's thread, on a connection of its own
# that commits outside the test's transaction: a transactional test cleans up after it.
@pytest.mark.django_db(transaction=True)
def test_X1_async_functions():
    assert asyncio.run(async_double(21)) == 42
    assert asyncio.run(async_double(21)) == 42
    assert calls == [("async", 21)]


def test_X1_a_result_json_cannot_hold_is_an_error_and_keeps_nothing():
    @idempotent_function(key="bad")
    def bad():
        return object()

    with pytest.raises(TypeError):
        bad()
    assert not IdempotencyRecord.objects.filter(key="bad").exists()


@pytest.mark.django_db(transaction=True)
def test_X1_S4_threads_calling_at_once_run_it_once(postgres, lock_backend):
    barrier = threading.Barrier(6)
    results: list = []

    def call():
        barrier.wait()
        try:
            results.append(charge(11, 5))
        except InProgress:
            results.append("in progress")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=call) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert [c for c in calls if c[0] == "charge"] == [("charge", 11, 5)]
    assert Widget.objects.filter(name="charge-11").count() == 1
    assert set(map(str, results)) <= {str({"charge": "ch_11", "amount": 5}), "in progress"}


def test_C5_enabled_false_runs_functions_as_if_undecorated(settings):
    settings.IDEMPOTENT_POST_ENABLED = False
    charge(12, 1)
    charge(12, 1)
    assert calls == [("charge", 12, 1), ("charge", 12, 1)]
    assert not IdempotencyRecord.objects.exists()
