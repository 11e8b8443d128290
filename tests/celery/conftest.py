"""Real Celery workers (child processes) on a real broker, RabbitMQ or Redis, for X2.

Each test gets a queue of its own, a directory where its tasks count their effects, and
workers it starts and kills (SIGKILL, the whole process group: the prefork child too).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import _unavailable
from tests.integration.conftest import ROOT, child_database_url

RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")

#: The longest any condition is waited for: workers start, leases run out.
DEADLINE = 45


def _reachable(url: str) -> Exception | None:
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=2) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as error:
        return error
    return None


@pytest.fixture(params=["rabbitmq", "redis"])
def broker(request) -> str:
    """The broker URL: RabbitMQ, then Redis (``REDIS_URL``)."""
    if request.param == "rabbitmq":
        url = RABBITMQ_URL
    else:
        url = os.environ.get("REDIS_URL", "")
        if not url:
            _unavailable("needs Redis as a broker: set REDIS_URL=redis://...", "redis")
    error = _reachable(url)
    if error is not None:
        _unavailable(f"needs the broker at {url}, which does not answer: {error}", request.param)
    return url


class Worker:
    """``celery worker`` in a child process, on the test database."""

    def __init__(
        self, broker: str, queue: str, directory: Path, name: str, concurrency: int
    ) -> None:
        self.output = directory / f"worker-{name}.log"
        env = dict(
            os.environ,
            DATABASE_URL=child_database_url(),
            CELERY_TEST_BROKER=broker,
            CELERY_TEST_LOG=str(directory / "deliveries.log"),
        )
        with self.output.open("w") as output:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "tests.celery.app",
                    "worker",
                    "--pool=prefork",
                    f"--concurrency={concurrency}",
                    "--queues",
                    queue,
                    "--hostname",
                    f"{name}-{uuid.uuid4().hex[:8]}@%h",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                    "--loglevel=INFO",
                ],
                cwd=ROOT,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                # Its own process group: a SIGKILL takes the prefork child with it.
                start_new_session=True,
            )

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


class Run:
    """One test's broker, queue, effect counters and workers."""

    def __init__(self, broker: str, directory: Path) -> None:
        from tests.celery.app import app

        self.app = app
        self.broker = broker
        self.directory = directory
        self.queue = f"idempotent-post-tests-{uuid.uuid4().hex}"
        self.workers: list[Worker] = []

    def worker(self, name: str, concurrency: int = 1) -> Worker:
        self.workers.append(Worker(self.broker, self.queue, self.directory, name, concurrency))
        return self.workers[-1]

    def publish(self, task, label: str, task_id: str | None = None, **kwargs) -> str:
        """Send ``task(directory, label, **kwargs)``; its effects are counted in ``label``'s."""
        task_id = task_id or str(uuid.uuid4())
        (self.directory / label).mkdir(exist_ok=True)
        with self.app.connection_for_write(self.broker) as connection:
            task.apply_async(
                (str(self.directory / label), label),
                kwargs,
                task_id=task_id,
                queue=self.queue,
                connection=connection,
            )
        return task_id

    def count(self, label: str, name: str) -> int:
        """Lines in ``label``'s effect file ``name`` (``entered``, ``charged``, ...)."""
        path = self.directory / label / name
        return len(path.read_text().splitlines()) if path.exists() else 0

    def deliveries(self, task_id: str, state: str | None = None) -> list[dict]:
        """The finished deliveries of ``task_id`` (in ``state``), oldest first."""
        path = self.directory / "deliveries.log"
        lines = path.read_text().splitlines() if path.exists() else []
        return [
            entry
            for entry in map(json.loads, lines)
            if entry["id"] == task_id and state in (None, entry["state"])
        ]

    def release(self) -> None:
        """Let every blocked task go on."""
        for each in self.directory.iterdir():
            if each.is_dir():
                (each / "release").touch()

    def wait_until(self, condition: Callable[[], object], what: str) -> None:
        """Poll ``condition`` until it holds; fail with the workers' output at the deadline."""
        deadline = time.monotonic() + DEADLINE
        while not condition():
            if time.monotonic() > deadline:
                logs = "\n".join(w.output.read_text()[-4000:] for w in self.workers)
                pytest.fail(f"timed out waiting until {what}\n{logs}")
            time.sleep(0.05)


@pytest.fixture
def celery_run(broker, postgres, transactional_db, tmp_path):
    """A :class:`Run` on ``broker``; its workers are killed at the end.

    On PostgreSQL only: SQLite lets one process write at a time, and worker processes
    racing the test for its lock fail with "database is locked" under load.
    """
    run = Run(broker, tmp_path)
    yield run
    run.release()
    for worker in run.workers:
        worker.kill()
