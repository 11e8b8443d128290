"""Fixtures of the reliability suite: gunicorn servers on the test database, real HTTP.

``gunicorn(...)`` starts ``python -m gunicorn`` as a child process on 127.0.0.1, on a
port the kernel picks, with ``DJANGO_SETTINGS_MODULE=tests.server.settings`` and
``DATABASE_URL`` naming the test database of this run. The tests talk to it with
``requests``. Servers stop (SIGTERM, then SIGKILL) before the test database is flushed.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from django.core.management import call_command

from tests.integration.conftest import OwnRedis, child_database_url

ROOT = Path(__file__).resolve().parents[2]
# A GET that touches the database: when it answers 200, a worker runs on the test database.
READY_PATH = "/api/products/"
START_TIMEOUT = 90.0
LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def _no_control_socket_flag() -> list[str]:
    # Recent gunicorn releases open a control socket at one fixed path per user; several
    # servers at once must not fight over it. Older releases have neither socket nor flag.
    from gunicorn.config import KNOWN_SETTINGS

    flags = {flag for setting in KNOWN_SETTINGS for flag in (setting.cli or [])}
    return ["--no-control-socket"] if "--no-control-socket" in flags else []


def child_pids(pid: int) -> list[int]:
    """Live child processes of ``pid``, read from /proc (gunicorn's workers of its master)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # The command name is in parentheses and may hold anything: read after the last ')'.
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state not in ("Z", "X"):
            found.append(int(entry))
    return sorted(found)


def memory_kib(pid: int, field: str) -> int:
    """A ``VmRSS``/``VmHWM``-style line of /proc/<pid>/status, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"/proc/{pid}/status has no {field}")


class Server:
    """One gunicorn master and its workers, started by :func:`gunicorn`."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.port = 0
        self.lines: list[tuple[str, str]] = []
        self._changed = threading.Condition()
        self._open_streams = 2
        self.process = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            # Its own process group, so a last-resort SIGKILL reaches the workers too.
            start_new_session=True,
        )
        self._pumps = [
            threading.Thread(target=self._pump, args=(stream, name), daemon=True)
            for stream, name in ((self.process.stdout, "stdout"), (self.process.stderr, "stderr"))
        ]
        for pump in self._pumps:
            pump.start()

    def _pump(self, stream: Any, name: str) -> None:
        # Read the pipes all the time, so a chatty server never blocks on a full pipe.
        for line in stream:
            with self._changed:
                self.lines.append((name, line.rstrip("\n")))
                self._changed.notify_all()
        with self._changed:
            self._open_streams -= 1
            self._changed.notify_all()

    def output(self, stream: str | None = None, start: int = 0) -> str:
        """What the server printed (both streams, or one), from line ``start`` on."""
        with self._changed:
            lines = self.lines[start:]
        return "\n".join(text for name, text in lines if stream in (None, name))

    def mark(self) -> int:
        """A position in the output, for :meth:`wait_for_line` to look after."""
        with self._changed:
            return len(self.lines)

    def wait_for_line(
        self, pattern: str, *, stream: str | None = None, start: int = 0, timeout: float = 30
    ) -> re.Match[str]:
        """Wait for a line matching ``pattern`` printed at or after position ``start``."""
        regex = re.compile(pattern)
        seen = start
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for name, text in self.lines[seen:]:
                    match = regex.search(text)
                    if match and stream in (None, name):
                        return match
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or not self._open_streams:
                    break
                self._changed.wait(left)
        raise AssertionError(
            f"gunicorn printed no line matching {pattern!r} within {timeout}s "
            f"(exit code {self.process.poll()}):\n{self.output()[-4000:]}"
        )

    def wait_ready(self) -> Server:
        """Wait until the server listens and a worker answers a GET on the test database."""
        self.port = int(self.wait_for_line(LISTENING.pattern, timeout=START_TIMEOUT).group(1))
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if requests.get(self.url(READY_PATH), timeout=(2, 30)).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"gunicorn did not answer GET {READY_PATH} with 200 "
                    f"(exit code {self.process.poll()}):\n{self.output()[-4000:]}"
                )
            time.sleep(0.05)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def workers(self) -> list[int]:
        """The pids of the live workers (children of the master)."""
        return child_pids(self.process.pid)

    def terminate(self) -> None:
        """Ask for a graceful shutdown (SIGTERM) without waiting for it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        """Stop the server: SIGTERM, and SIGKILL to its process group if it lingers."""
        if self.process.poll() is None:
            self.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)
        for pump in self._pumps:
            pump.join(timeout=5)


@pytest.fixture
def gunicorn(transactional_db):
    """Start gunicorn servers on this test's (transactional) test database.

    ``gunicorn(workers=3, threads=2, caches={...}, ready=True, LEASE=2, ...)``: keyword
    arguments in capitals become ``IDEMPOTENT_POST_<NAME>`` settings (JSON); ``caches``
    adds cache aliases; ``switch_interval`` sets the workers' ``sys.setswitchinterval``;
    ``preload`` loads Django once in the master, so fresh workers are only a fork away;
    ``ready=False`` returns at once, for starting several servers side by side (then call
    ``wait_ready()`` on each).
    """
    pytest.importorskip("gunicorn", reason="the server tests need gunicorn (extra: test)")
    servers: list[Server] = []
    database_url = child_database_url()

    def start(
        *,
        workers: int = 1,
        threads: int = 1,
        caches: dict[str, Any] | None = None,
        switch_interval: float | None = None,
        preload: bool = False,
        ready: bool = True,
        **options: Any,
    ) -> Server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("IDEMPOTENT_POST_")}
        env.update(
            DJANGO_SETTINGS_MODULE="tests.server.settings",
            DATABASE_URL=database_url,
            PYTHONUNBUFFERED="1",
            TEST_SERVER_CACHES=json.dumps(caches or {}),
        )
        if switch_interval is not None:
            env["TEST_SERVER_SWITCH_INTERVAL"] = str(switch_interval)
        env.update({f"IDEMPOTENT_POST_{k}": json.dumps(v) for k, v in options.items()})
        args = [sys.executable, "-m", "gunicorn", "--bind", "127.0.0.1:0"]
        args += ["--workers", str(workers), "--graceful-timeout", "5", "--timeout", "120"]
        if threads > 1:
            args += ["--threads", str(threads)]
        if preload:
            args.append("--preload")
        args += _no_control_socket_flag()
        args.append("django.core.wsgi:get_wsgi_application()")
        server = Server(args, env)
        servers.append(server)
        return server.wait_ready() if ready else server

    yield start
    for server in servers:
        server.terminate()  # all at once: each takes about a second to wind down
    for number, server in enumerate(servers):
        server.stop()
        # Shown by pytest only when the test fails: what each server logged, tracebacks included.
        print(f"---- gunicorn #{number} (pid {server.process.pid}), last lines ----")
        print("\n".join(server.output().splitlines()[-150:]))


@dataclass
class Shop:
    """The seeded demo shop: users, their API tokens and a product with stock."""

    alice: Any
    bob: Any
    product: Any

    def stock(self) -> int:
        self.product.refresh_from_db(fields=["stock"])
        return self.product.stock


ALICE = "Token demo-token-alice"
BOB = "Token demo-token-bob"


@pytest.fixture
def shop(transactional_db) -> Shop:
    """``seed_demo`` in the test database, which the servers of the test share."""
    from django.contrib.auth import get_user_model

    from demo_project.shop.models import Product

    call_command("seed_demo", stdout=io.StringIO())
    users = get_user_model().objects
    return Shop(
        alice=users.get(username="alice"),
        bob=users.get(username="bob"),
        product=Product.objects.order_by("pk").first(),
    )


@pytest.fixture
def lock_options(request) -> Callable[[str], dict[str, Any]]:
    """The server options of a lock backend (L2): ``lock_options("cache")``.

    The cache backend needs the Redis of ``REDIS_URL`` (alias ``redis``); without it the
    test skips, or fails where ``TEST_REQUIRE_SERVICES`` names redis.
    """

    def options(backend: str) -> dict[str, Any]:
        if backend == "cache":
            return {"LOCK_BACKEND": "cache", "CACHE": request.getfixturevalue("redis_cache")}
        return {"LOCK_BACKEND": "database"}

    return options


@pytest.fixture
def own_redis_server():
    """A redis-server of the test's own, which the test may stop mid-traffic (L3)."""
    server = OwnRedis()
    yield server
    server.stop()


def own_cache(server: OwnRedis) -> dict[str, Any]:
    """Cache settings for a server of ours that uses ``server`` under the alias ``own``."""
    return {
        "own": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": server.url,
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
        }
    }


def order_body(product_id: int, quantity: int = 1) -> bytes:
    return json.dumps({"product": product_id, "quantity": quantity}).encode()


def post(
    server: Server,
    path: str,
    key: str | None,
    body: bytes = b'{"name": "w"}',
    *,
    auth: str | None = None,
    session: requests.Session | None = None,
    content_type: str = "application/json",
    **headers: str,
) -> requests.Response:
    """POST ``body`` to ``server`` with the key (and credentials) given."""
    sent = {"Content-Type": content_type}
    if key is not None:
        sent["Idempotency-Key"] = key
    if auth is not None:
        sent["Authorization"] = auth
    sent.update({name.replace("_", "-"): value for name, value in headers.items()})
    return (session or requests).post(server.url(path), data=body, headers=sent, timeout=60)


def is_replay(response: requests.Response) -> bool:
    return response.headers.get("Idempotent-Replayed") == "true"


def assert_problem(response: requests.Response, status: int) -> dict[str, Any]:
    """``response`` is an RFC 9457 problem with ``status`` (E1)."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert {"type", "title", "detail"} <= problem.keys()
    return problem
