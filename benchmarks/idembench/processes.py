"""The processes the benchmark starts, and what it reads about them and the machine.

``Server`` is one gunicorn server of the benchmark project for one variant; the other
helpers run a command, find a free port, list a process's children, read a process's peak
memory and describe the machine, all through the standard library and ``/proc``.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import load
from .plan import BENCHMARKS

if TYPE_CHECKING:
    from .bench import Bench


class BenchError(Exception):
    """Something the benchmark needs failed; the message says what."""


def run(command: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, text=True, capture_output=True, **kwargs)


def tail(text: str, lines: int = 8) -> str:
    """The last ``lines`` lines of ``text``, surrounding blank space stripped."""
    return "\n".join(text.strip().splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((load.HOST, 0))
        return sock.getsockname()[1]


def children_of(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (gunicorn's workers, for its master)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                # The command name may hold spaces; the fields after its ")" do not.
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def vm_hwm_kb(pid: int) -> int:
    """The peak resident set size of ``pid`` in kB (``VmHWM``)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise BenchError(f"no VmHWM for pid {pid}")


def machine() -> dict[str, Any]:
    """CPU, memory and OS of this machine, as the results docs record them."""
    cpu = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next(
                (
                    line.split(":", 1)[1].strip()
                    for line in cpuinfo
                    if line.startswith("model name")
                ),
                "",
            )
        with open("/proc/meminfo") as meminfo:
            memory_kb = int(meminfo.readline().split()[1])
    except OSError:
        memory_kb = 0
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(memory_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": os_name(),
    }


def os_name() -> str:
    try:
        return platform.freedesktop_os_release().get("PRETTY_NAME", "")
    except OSError:
        return platform.system()


class Server:
    """A gunicorn server of the benchmark project, for one variant."""

    def __init__(
        self,
        bench: Bench,
        variant: str,
        workers: int,
        database_url: str | None = None,
        **extra_env: str,
    ) -> None:
        self.bench = bench
        self.variant = variant
        self.workers = workers
        self.port = free_port()
        # The name its PostgreSQL connections carry (see bench_lockwatch).
        self.application_name = f"bench-{variant}-{self.port}"
        self.env = bench.env(
            variant, database_url, BENCH_APPLICATION_NAME=self.application_name, **extra_env
        )
        self.log_path = bench.workdir / f"gunicorn-{variant}-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        command = [
            str(self.bench.python),
            "-m",
            "gunicorn",
            "benchproject.wsgi:application",
            "--bind",
            f"{load.HOST}:{self.port}",
            "--workers",
            str(self.workers),
            "--worker-class",
            "sync",
            "--timeout",
            "300",
            "--graceful-timeout",
            "5",
            "--log-level",
            "warning",
        ]
        with open(self.log_path, "ab") as log:
            # A session of its own, so that stop() can end the master and its workers
            # together, and Ctrl-C in the terminal reaches run.py only.
            self.process = subprocess.Popen(
                command,
                cwd=BENCHMARKS,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.bench.servers.append(self)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(
                    f"gunicorn for {self.variant} exited:\n{tail(self.log_path.read_text())}"
                )
            if load.get(self.port, "/health/") == 200 and len(self.worker_pids()) == self.workers:
                return self
            time.sleep(0.1)
        raise BenchError(f"gunicorn for {self.variant} did not answer within 60 s")

    def worker_pids(self) -> list[int]:
        return children_of(self.process.pid) if self.process else []

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
        # Workers that outlived their master are in its process group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    def path(self, kind: str = "orders") -> str:
        return f"/{self.variant}/{kind}/"
