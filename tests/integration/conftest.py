"""Helpers for tests with real concurrency: threads, child processes, a Redis of our own."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from tests.conftest import _unavailable

ROOT = Path(__file__).resolve().parents[2]


def child_database_url() -> str:
    """The URL of the database this test runs on (the test database, not the real one)."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{Path(s['NAME']).resolve()}"
    scheme = {"postgresql": "postgres", "mysql": "mysql"}[connection.vendor]
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"{scheme}://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or ''}/{s['NAME']}"


class Worker:
    """One child process holding one request, released by :meth:`go`."""

    def __init__(self, url: str, key: str, headers: dict[str, str], options: dict) -> None:
        env = dict(os.environ, DATABASE_URL=child_database_url())
        env.update({f"IDEMPOTENT_POST_{k}": json.dumps(v) for k, v in options.items()})
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.worker", url, key]
            + [f"{k}={v}" for k, v in headers.items()],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.readline() == "READY"

    def readline(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def result(self) -> dict:
        line = self.readline()
        self.process.wait(timeout=60)
        return json.loads(line)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=30)


@pytest.fixture
def spawn():
    workers: list[Worker] = []

    def make(url: str, key: str, headers: dict[str, str] | None = None, **options) -> Worker:
        workers.append(Worker(url, key, headers or {}, options))
        return workers[-1]

    yield make
    for worker in workers:
        if worker.process.poll() is None:
            worker.kill()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OwnRedis:
    """A redis-server this test starts on a free port, and may stop mid-test (L3)."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            _unavailable("needs the redis-server binary to start a Redis of its own", "redis")
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def own_redis(settings):
    """A Redis of the test's own, wired as the cache lock backend under alias ``own``."""
    server = OwnRedis()
    settings.CACHES = {
        **settings.CACHES,
        "own": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": server.url,
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
        },
    }
    settings.IDEMPOTENT_POST_LOCK_BACKEND = "cache"
    settings.IDEMPOTENT_POST_CACHE = "own"
    yield server
    server.stop()
