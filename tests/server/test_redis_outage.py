"""Redis goes away under traffic (L3, S4, P1).

The servers lock through a Redis the test starts itself, and stops while duplicates
are in flight. With the fallback on (the default) the database lock takes over: no 500,
one order per key, replays go on. With it off, a request that needs the lock gets a
503 problem; a key already completed still replays, for that needs no lock.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from dataclasses import dataclass, field

import pytest
import requests

from demo_project.shop.models import Order
from tests.server.conftest import (
    ALICE,
    assert_problem,
    is_replay,
    order_body,
    own_cache,
    post,
    wait_until,
)

pytestmark = [pytest.mark.server, pytest.mark.django_db(transaction=True)]

CLIENTS = 4  # duplicates of each key, sent together


@dataclass
class Traffic:
    """``CLIENTS`` threads sending key after key, every key by all of them at once."""

    server: object
    body: bytes
    prefix: str
    keys: list[str] = field(default_factory=list)
    answers: list[tuple[str, int, bool, bytes]] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    progress: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        # The barrier's action runs once per round, when all clients are there: it picks the
        # round's key (or none, to stop), so all clients agree on it.
        self.barrier = threading.Barrier(CLIENTS, action=self._next_round, timeout=60)
        self.current: str | None = None
        self.threads = [threading.Thread(target=self._client) for _ in range(CLIENTS)]

    def _next_round(self) -> None:
        self.current = None if self.stopping.is_set() else f"{self.prefix}-{len(self.keys)}"
        if self.current:
            self.keys.append(self.current)

    def _client(self) -> None:
        session = requests.Session()
        while True:
            self.barrier.wait()
            key = self.current
            if key is None:
                return
            try:
                response = post(
                    self.server, "/api/orders/", key, self.body, auth=ALICE, session=session
                )
                answer = (key, response.status_code, is_replay(response), response.content)
            except requests.RequestException as error:
                answer = (key, 0, False, repr(error).encode())
            with self.progress:
                self.answers.append(answer)
                self.progress.notify_all()

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def wait_for_rounds(self, rounds: int) -> None:
        """Wait until ``rounds`` more rounds have been answered in full."""
        with self.progress:
            target = len(self.answers) + rounds * CLIENTS
            assert self.progress.wait_for(lambda: len(self.answers) >= target, timeout=60)

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=60)


def test_l3_redis_stops_mid_traffic_falls_back_without_duplicates(
    postgres, shop, gunicorn, own_redis_server, new_key
):
    server = gunicorn(
        workers=2,
        caches=own_cache(own_redis_server),
        LOCK_BACKEND="cache",
        CACHE="own",
        CACHE_FALLBACK=True,
    )
    stock = shop.stock()
    body = order_body(shop.product.pk)
    traffic = Traffic(server, body, new_key())
    traffic.start()
    try:
        traffic.wait_for_rounds(5)
        stopped_after = len(traffic.keys)
        assert "using the database lock" not in server.output("stderr")  # Redis locked so far
        own_redis_server.stop()  # while the next round is under way
        traffic.wait_for_rounds(5)
    finally:
        traffic.stop()

    failed = [answer for answer in traffic.answers if answer[1] >= 500 or not answer[1]]
    assert not failed, (failed[:3], server.output()[-3000:])
    by_key: dict[str, list[tuple[str, int, bool, bytes]]] = defaultdict(list)
    for answer in traffic.answers:
        by_key[answer[0]].append(answer)
    firsts = {}
    for key, answers in by_key.items():
        fresh = [a for a in answers if a[1] == 201 and not a[2]]
        assert len(fresh) == 1, (key, [(a[1], a[2]) for a in answers])
        firsts[key] = fresh[0][3]
        for _, status, replayed, content in answers:
            assert status in (201, 409), (status, content[:300])
            if status == 201 and replayed:
                assert content == firsts[key]
            if status == 409:
                assert json.loads(content)["status"] == 409
    assert len(firsts) >= stopped_after + 5
    assert Order.objects.count() == len(firsts)
    assert stock - shop.stock() == len(firsts)
    assert "using the database lock" in server.output("stderr")

    # With Redis gone, every key still replays its first answer, whenever it was placed.
    for key, first in firsts.items():
        again = post(server, "/api/orders/", key, body, auth=ALICE)
        assert is_replay(again)
        assert again.content == first
    assert Order.objects.count() == len(firsts)


def test_l3_redis_down_fail_closed_is_503(shop, gunicorn, own_redis_server, new_key):
    server = gunicorn(
        caches=own_cache(own_redis_server),
        LOCK_BACKEND="cache",
        CACHE="own",
        CACHE_FALLBACK=False,
    )
    body = order_body(shop.product.pk)
    placed = new_key()
    first = post(server, "/api/orders/", placed, body, auth=ALICE)
    assert first.status_code == 201

    own_redis_server.stop()
    refused = post(server, "/api/orders/", new_key(), body, auth=ALICE)
    assert_problem(refused, 503)
    assert refused.headers["Retry-After"]
    assert Order.objects.count() == 1

    # A completed key needs no lock: it replays even now.
    again = post(server, "/api/orders/", placed, body, auth=ALICE)
    assert is_replay(again)
    assert again.content == first.content
    wait_until(lambda: "failing closed" in server.output("stderr"), 10, "the log line")
