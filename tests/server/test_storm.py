"""Exactly once under a storm of duplicates, across two servers (S4, M0, P1).

Two gunicorn instances, three sync workers each, share PostgreSQL and Redis.
Every key is sent by twelve clients at once (a barrier per key), split across both
servers. Whatever the interleaving: one order per key, the stock down once per key,
no 5xx, and every duplicate either the replay of the first answer or a 409 problem.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import requests

from demo_project.shop.models import Order
from tests.server.conftest import ALICE, order_body, post, wait_until

pytestmark = [pytest.mark.server, pytest.mark.django_db(transaction=True)]

KEYS = 24
CLIENTS_PER_KEY = 12
POOL = 48


@dataclass
class Answer:
    key: str
    client: int
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def replayed(self) -> bool:
        return self.headers.get("Idempotent-Replayed") == "true"


@pytest.mark.parametrize("backend", ["database", "cache"])
def test_s4_storm_across_two_servers_places_one_order_per_key(
    postgres, shop, gunicorn, lock_options, backend, new_key
):
    options = lock_options(backend)
    servers = [gunicorn(workers=3, ready=False, **options) for _ in range(2)]
    for server in servers:
        server.wait_ready()
    stock = shop.stock()
    body = order_body(shop.product.pk)
    keys = [new_key() for _ in range(KEYS)]
    # One barrier per key: its twelve clients fire together. The pool takes jobs in order,
    # so a key's twelve jobs are picked up together and no barrier waits on a queued job.
    barriers = {key: threading.Barrier(CLIENTS_PER_KEY, timeout=120) for key in keys}
    local = threading.local()

    def headers(key: str) -> dict[str, str]:
        return {"Authorization": ALICE, "Content-Type": "application/json", "Idempotency-Key": key}

    def send(job: tuple[str, int]) -> Answer:
        key, client = job
        if not hasattr(local, "session"):
            local.session = requests.Session()
        server = servers[client % len(servers)]
        barriers[key].wait()
        try:
            response = local.session.post(
                server.url("/api/orders/"), data=body, headers=headers(key), timeout=120
            )
        except requests.RequestException as error:
            # No answer at all counts as a failure like a 5xx; keep it for the report.
            return Answer(key, client, 0, {}, repr(error).encode())
        return Answer(key, client, response.status_code, dict(response.headers), response.content)

    jobs = [(key, client) for key in keys for client in range(CLIENTS_PER_KEY)]
    with ThreadPoolExecutor(POOL) as pool:
        answers = list(pool.map(send, jobs))

    failed = [a for a in answers if a.status >= 500 or not a.status]
    assert not failed, (failed[:3], [server.output()[-3000:] for server in servers])

    by_key: dict[str, list[Answer]] = defaultdict(list)
    for answer in answers:
        by_key[answer.key].append(answer)
    firsts = {}
    for key, sent in by_key.items():
        fresh = [a for a in sent if a.status == 201 and not a.replayed]
        assert len(fresh) == 1, (key, [(a.status, a.replayed) for a in sent])
        first = firsts[key] = fresh[0]
        for duplicate in sent:
            if duplicate is first:
                continue
            if duplicate.status == 409:
                assert duplicate.headers["Content-Type"] == "application/problem+json"
                assert json.loads(duplicate.body)["status"] == 409
                assert duplicate.headers["Retry-After"]
                continue
            assert duplicate.replayed, (duplicate.status, duplicate.body[:300])
            assert duplicate.status == 201
            assert duplicate.body == first.body
            assert duplicate.headers["Location"] == first.headers["Location"]
            assert duplicate.headers["Content-Type"] == first.headers["Content-Type"]

    orders = Order.objects.all()
    assert orders.count() == KEYS
    assert {order.pk for order in orders} == {json.loads(a.body)["id"] for a in firsts.values()}
    assert stock - shop.stock() == KEYS

    # Afterwards every key replays its first answer on either server.
    session = requests.Session()
    for key, first in firsts.items():
        for server in servers:
            again = session.post(
                server.url("/api/orders/"), data=body, headers=headers(key), timeout=30
            )
            assert again.headers.get("Idempotent-Replayed") == "true"
            assert again.content == first.body
    assert Order.objects.count() == KEYS


# The first guarded requests of a fresh threaded worker import the Redis client in
# several threads at once. Whether that goes wrong is a race, so the test gives it a few
# rounds of fresh workers (SIGHUP makes the master replace them all) and fails at the first
# request that fails.
ROUNDS = 4
WORKERS, THREADS = 8, 4


def replace_workers(server) -> None:
    """SIGHUP: the master starts fresh workers and retires the old ones."""
    old = set(server.workers())
    os.kill(server.process.pid, signal.SIGHUP)

    def replaced() -> bool:
        now = set(server.workers())
        return len(now) == WORKERS and not now & old

    wait_until(replaced, 60, "the master to replace its workers")


def burst(server, clients: int, new_key) -> list[int]:
    """``clients`` guarded POSTs, each with a key of its own, released together."""
    barrier = threading.Barrier(clients, timeout=60)

    def send(number: int) -> int:
        barrier.wait()
        try:
            return post(server, "/t/plain/", new_key()).status_code
        except requests.RequestException:
            return 0

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(send, range(clients)))


def test_s4_cache_backend_survives_the_first_requests_of_threaded_workers(
    postgres, gunicorn, lock_options, new_key
):
    server = gunicorn(
        workers=WORKERS,
        threads=THREADS,
        switch_interval=1e-6,
        preload=True,
        **lock_options("cache"),
    )
    for round_ in range(ROUNDS):
        if round_:
            replace_workers(server)
        statuses = burst(server, WORKERS * THREADS, new_key)
        assert statuses == [201] * len(statuses), (
            round_,
            statuses,
            server.output("stderr")[-3000:],
        )
