#!/usr/bin/env python3
"""Benchmark idempotent-post under gunicorn, PostgreSQL and Redis (issue 4).

    python benchmarks/run.py                      the full run (about 15 minutes)
    python benchmarks/run.py --quick              a smoke run: short rounds, 10k records only
    make bench BENCH_ARGS="--skip-alternatives"   the same through make

Run it on purpose, on a machine as quiet as you can get; it is not a CI pass/fail check.
It sets everything up itself and prints a table per phase, then all of them again:

- queries   SQL statements, writing commits and Redis round trips of one first execution
            and one replay, per implementation (Django's test client, no server).
- profile   where a guarded first execution spends its time, step by step, against the
            bare view (Django's test client, no server; medians of alternated rounds).
- overhead  first executions, a fresh key per request, bare against every guarded
            implementation: each guarded slot runs between two bare slots, round after
            round, so the noise of a shared machine hits both sides of each ratio alike.
- replay    the same key sent again and again, against bare first executions (same way).
- storm     N keys, each sent by M clients at the same instant: orders per key.
- scale     first executions and replays with 10 thousand and 1 million stored records,
            each size in a database of its own with its own server, the sizes alternated.
- purge     idempotent_post_purge deleting 1 million expired records while guarded
            requests flow: its duration and the slowest concurrent request.
- memory    peak RSS (VmHWM) of a fresh gunicorn worker taking a 50 MB multipart upload,
            guarded and unguarded.

What it needs and what it touches:

- PostgreSQL and Redis (``--database-url``, ``--redis-url``). The database is dropped and
  created again, the Redis database flushed: give the benchmark ones of its own.
- The project's virtualenv runs this script. The alternative packages (drf-idempotency,
  django-idempotency-key, djangorestframework-idempotency-key) are installed into
  ``benchmarks/.venv``, never into the project's virtualenv, with Django, DRF and the
  drivers pinned to the project's versions; a package that does not install or import
  next to them is reported as such. ``--skip-alternatives`` needs no second virtualenv.
- idempotent-post itself is imported from this working tree (``PYTHONPATH``).
- Every gunicorn server it starts is stopped when it ends, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import load

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENV = HERE / ".venv"

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/idempotent_post_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"

BARE = "bare"
IP_DATABASE = "idempotent-post-database"
IP_CACHE = "idempotent-post-cache"

# The alternatives, pinned so that a later run measures the same code.
ALTERNATIVES = {
    "drf-idempotency": ("drf-idempotency==1.0.0", "drf_idempotency"),
    "django-idempotency-key": ("django-idempotency-key==1.3.0", "idempotency_key"),
    "djangorestframework-idempotency-key": (
        "djangorestframework-idempotency-key==1.0.3",
        "rest_framework_idempotency_key",
    ),
}

LABELS = {
    BARE: "bare view (no idempotency)",
    IP_DATABASE: "idempotent-post, database lock",
    IP_CACHE: "idempotent-post, Redis lock",
    **{name: spec.replace("==", " ") for name, (spec, _) in ALTERNATIVES.items()},
}

# Pinned to the project's own versions in the benchmark virtualenv.
CORE_PACKAGES = [
    "Django",
    "djangorestframework",
    "django-redis",
    "redis",
    "psycopg",
    "psycopg-binary",
    "gunicorn",
]

PHASES = ("queries", "profile", "overhead", "replay", "storm", "scale", "purge", "memory")


@dataclass(frozen=True)
class Plan:
    """How long and how hard each phase runs."""

    clients: int = 4
    workers: int = 2
    rounds: int = 8
    seconds: float = 3.0
    warmup: float = 2.0
    replay_rounds: int = 6
    replay_seconds: float = 3.0
    storm_keys: int = 20
    storm_clients: int = 10
    scale_sizes: tuple[int, ...] = (10_000, 1_000_000)
    scale_rounds: int = 4
    scale_seconds: float = 4.0
    purge_records: int = 1_000_000
    purge_batch_size: int = 1000
    purge_baseline_seconds: float = 8.0
    upload_megabytes: int = 50
    memory_repeats: int = 2
    profile_requests: int = 400


QUICK = Plan(
    rounds=2,
    seconds=2.0,
    warmup=1.0,
    replay_rounds=2,
    replay_seconds=2.0,
    storm_keys=5,
    scale_sizes=(10_000,),
    scale_rounds=2,
    scale_seconds=2.0,
    purge_records=10_000,
    purge_baseline_seconds=2.0,
    memory_repeats=1,
    profile_requests=40,
)


class BenchError(Exception):
    """Something the benchmark needs failed; the message says what."""


def token_of(index: int) -> str:
    """The API token of benchmark user ``index``, as ``bench_seed`` creates it."""
    return f"bench-token-{index:04d}".ljust(40, "0")


def say(message: str = "") -> None:
    print(message, flush=True)


# ---- statistics


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile ``q`` (0-100) of ``values``; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


@dataclass
class Sample:
    """Requests of one variant in one or more rounds."""

    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    @property
    def failed(self) -> int:
        return sum(self.statuses.values()) - self.ok

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds else math.nan

    def add(self, other: Sample) -> None:
        self.seconds += other.seconds
        self.latencies += other.latencies
        self.statuses.update(other.statuses)
        self.errors += other.errors[: max(0, 3 - len(self.errors))]

    def summary(self) -> dict[str, Any]:
        return {
            "requests": sum(self.statuses.values()),
            "ok": self.ok,
            "failed": self.failed,
            "seconds": round(self.seconds, 2),
            "rps": round(self.rps, 1),
            "p50_ms": round(percentile(self.latencies, 50), 2),
            "p99_ms": round(percentile(self.latencies, 99), 2),
            "max_ms": round(max(self.latencies, default=math.nan), 2),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": self.errors,
        }


def ratio_range(values: Iterable[float]) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return ""
    return f"{min(values):.2f}-{max(values):.2f}"


def fmt(value: float, digits: int = 1) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table, left-aligned text and right-aligned numbers."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def numeric(text: str) -> bool:
        return bool(re.fullmatch(r"[-+]?[\d.,]+[%x]?( MB| ms| s)?|-", text))

    lines = [title, "-" * len(title)]
    for index, row in enumerate(cells):
        parts = []
        for i, cell in enumerate(row):
            right = index > 0 and numeric(cell)
            parts.append(cell.rjust(widths[i]) if right else cell.ljust(widths[i]))
        lines.append("  ".join(parts).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ---- processes


def run(command: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, text=True, capture_output=True, **kwargs)


def tail(text: str, lines: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def free_port() -> int:
    import socket

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
                cwd=HERE,
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


# ---- the benchmark


class Bench:
    """Set-up, the phases, and what they found."""

    def __init__(self, args: argparse.Namespace, plan: Plan) -> None:
        self.args = args
        self.plan = plan
        self.workdir = Path(tempfile.mkdtemp(prefix="idempotent-post-bench-"))
        self.servers: list[Server] = []
        self.python = Path(sys.executable)
        self.alternatives: list[str] = []
        self.not_wired: dict[str, str] = {}
        self.products: list[int] = []
        self.results: dict[str, Any] = {"plan": asdict(plan)}
        self.tables: list[str] = []
        self.pool: ProcessPoolExecutor | None = None
        self.rng = random.Random()

    # Environment.

    def env(
        self, variant: str = BARE, database_url: str | None = None, **extra: str
    ) -> dict[str, str]:
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("BENCH_", "DJANGO_", "IDEMPOTENT_POST_"))
            and name not in {"PYTHONPATH", "DATABASE_URL", "REDIS_URL"}
        }
        env.update(
            PYTHONPATH=os.pathsep.join([str(HERE), str(ROOT)]),
            PYTHONUNBUFFERED="1",
            DJANGO_SETTINGS_MODULE="benchproject.settings",
            BENCH_DATABASE_URL=database_url or self.args.database_url,
            BENCH_REDIS_URL=self.args.redis_url,
            BENCH_VARIANT=variant,
            BENCH_ALTERNATIVES=",".join(self.alternatives),
        )
        env.update(extra)
        return env

    def manage(
        self,
        *arguments: str,
        variant: str = BARE,
        database_url: str | None = None,
        stdin: str | None = None,
        timeout: float = 3600,
        **extra_env: str,
    ) -> str:
        completed = run(
            [str(self.python), "-m", "django", *arguments],
            cwd=HERE,
            env=self.env(variant, database_url, **extra_env),
            input=stdin,
            timeout=timeout,
        )
        if completed.returncode != 0:
            raise BenchError(
                f"manage.py {' '.join(arguments)} failed:\n{tail(completed.stderr, 15)}"
            )
        return completed.stdout.strip()

    def prepare_python(self) -> None:
        """Pick the interpreter of the servers; build benchmarks/.venv for the alternatives."""
        if self.args.skip_alternatives:
            for module in ("gunicorn", "psycopg", "django_redis", "rest_framework"):
                if run([str(self.python), "-c", f"import {module}"]).returncode:
                    raise BenchError(f"{module} is missing from {self.python}: run `make venv`")
            return
        python = VENV / "bin" / "python"
        if not python.exists():
            say(f"Creating the benchmark virtualenv {VENV.relative_to(ROOT)}/ ...")
            created = run([sys.executable, "-m", "venv", str(VENV)])
            if created.returncode:
                raise BenchError(f"python -m venv failed:\n{tail(created.stderr)}")
            # Keep the virtualenv out of git, whatever its name (as `make venv` does).
            (VENV / ".gitignore").write_text("*\n")
        pins = []
        for name in CORE_PACKAGES:
            try:
                pins.append(f"{name}=={metadata.version(name)}")
            except metadata.PackageNotFoundError:
                pins.append(name)
        constraints = VENV / "constraints.txt"
        wanted = "\n".join(pins + [spec for spec, _ in ALTERNATIVES.values()]) + "\n"
        stamp = VENV / ".installed"
        if not stamp.exists() or stamp.read_text() != wanted:
            say("Installing Django, DRF and the drivers (the project's versions) ...")
            constraints.write_text("\n".join(p for p in pins if "==" in p) + "\n")
            pip = [str(python), "-m", "pip", "install", "--quiet", "-c", str(constraints)]
            installed = run([*pip, *pins])
            if installed.returncode:
                raise BenchError(f"pip install {' '.join(pins)} failed:\n{tail(installed.stderr)}")
            # One at a time: one package that cannot live with Django as pinned must not
            # keep the others out. The constraints forbid any change to the pinned core.
            failures = {}
            for name, (spec, _) in ALTERNATIVES.items():
                say(f"Installing {spec} ...")
                installed = run([*pip, spec])
                if installed.returncode:
                    failures[name] = (
                        "cannot be installed next to "
                        + ", ".join(pins[:2])
                        + (": " + tail(installed.stderr, 3).replace("\n", " "))
                    )
            (VENV / "install-failures.json").write_text(json.dumps(failures))
            stamp.write_text(wanted)
        self.python = python
        failures = json.loads((VENV / "install-failures.json").read_text())
        for name, (_, module) in ALTERNATIVES.items():
            if name in failures:
                self.not_wired[name] = failures[name]
                continue
            imported = run([str(python), "-c", f"import {module}"], env=self.env())
            if imported.returncode:
                self.not_wired[name] = "does not import: " + tail(imported.stderr, 1)
            else:
                self.alternatives.append(name)

    def setup(self) -> None:
        self.prepare_python()
        say("Resetting the benchmark database and Redis database ...")
        self.manage("bench_resetdb")
        self.manage("migrate", "--no-input", "-v", "0")
        seeded = self.manage(
            "bench_seed", "--users", str(max(16, self.plan.clients)), "--products", "100"
        )
        first, last = re.search(r"products (\d+)\.\.(\d+)", seeded).groups()  # type: ignore[union-attr]
        self.products = list(range(int(first), int(last) + 1))
        info = json.loads(self.manage("bench_info"))
        info["machine"] = machine()
        info["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
        self.results["environment"] = info
        say(describe(info))
        self.pool = ProcessPoolExecutor(max_workers=max(self.plan.clients, 1))
        # Start the client processes now, not inside the first measured round.
        list(self.pool.map(time.sleep, [0.1] * self.plan.clients))

    def close_servers(self) -> None:
        for server in reversed(self.servers):
            server.stop()
        self.servers.clear()

    def close(self) -> None:
        self.close_servers()
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
            self.pool = None

    def variants(self) -> list[str]:
        return [BARE, IP_DATABASE, IP_CACHE, *self.alternatives]

    def guarded(self, servers: dict[str, Server]) -> list[str]:
        return [name for name in servers if name != BARE]

    # Load.

    def measure(
        self,
        server: Server,
        mode: str,
        seconds: float,
        keys: list[list[tuple[str, int]]] | None = None,
    ) -> Sample:
        """Run the clients against ``server`` for ``seconds``: one round, one Sample.

        ``mode`` is ``fresh`` (a new key per request) or ``replay`` (client i cycles
        through ``keys[i]``).
        """
        assert self.pool is not None
        start_at = time.time() + 0.3
        jobs = [
            load.Job(
                port=server.port,
                path=server.path(),
                token=token_of(index),
                mode=mode,
                start_at=start_at,
                stop_at=start_at + seconds,
                products=self.products,
                keys=keys[index] if keys else [],
            )
            for index in range(self.plan.clients)
        ]
        futures = [self.pool.submit(load.run_client, job) for job in jobs]
        sample = Sample(seconds=seconds)
        for future in futures:
            result = future.result()
            sample.latencies += result.latencies
            sample.statuses.update(result.statuses)
            sample.errors += result.errors[: max(0, 3 - len(sample.errors))]
        return sample

    def first_executions(self, server: Server, count: int, user: int = 0) -> list[tuple[str, int]]:
        """Make ``count`` keys by executing them once; return (key, product) pairs."""
        made = []
        for _ in range(count):
            key, product = str(uuid.uuid4()), self.rng.choice(self.products)
            reply = load.post(
                server.port, server.path(), token_of(user), key, load.order_body(key, product)
            )
            if not 200 <= reply.status < 300:
                raise BenchError(
                    f"{server.variant}: a first execution answered {reply.status}: "
                    f"{reply.body[:300]!r}"
                )
            made.append((key, product))
        return made

    def replay_keys(self, server: Server) -> list[list[tuple[str, int]]]:
        """One executed key per client, each made with that client's own token."""
        return [self.first_executions(server, 1, user=index) for index in range(self.plan.clients)]

    def orders_per_key(self, keys: Iterable[str]) -> dict[str, int]:
        return json.loads(self.manage("bench_orders", stdin=json.dumps(list(keys))))

    def start_servers(self) -> dict[str, Server]:
        """One server per variant, each probed: a first execution, then its replay."""
        servers: dict[str, Server] = {}
        for variant in self.variants():
            say(f"Starting gunicorn ({self.plan.workers} workers) for {LABELS[variant]} ...")
            server = Server(self, variant, self.plan.workers).start()
            key, product = str(uuid.uuid4()), self.rng.choice(self.products)
            body = load.order_body(key, product)
            first = load.post(server.port, server.path(), token_of(0), key, body)
            again = load.post(server.port, server.path(), token_of(0), key, body)
            if not 200 <= first.status < 300 or not 200 <= again.status < 300:
                bad = first if not 200 <= first.status < 300 else again
                self.not_wired[variant] = (
                    f"answers {bad.status} under Django "
                    f"{self.results['environment']['packages']['Django']}: "
                    f"{bad.body[:200].decode(errors='replace')}"
                )
                server.stop()
                continue
            servers[variant] = server
        return servers

    # Phases.

    def phase_queries(self) -> None:
        rows, found = [], {}
        for variant in self.variants():
            try:
                counts = json.loads(self.manage("bench_queries", variant=variant).splitlines()[-1])
            except (BenchError, ValueError, IndexError) as error:
                found[variant] = {"error": str(error)}
                rows.append([LABELS[variant], "error", "", "", "", "", ""])
                continue
            found[variant] = counts
            first, again = counts["first"], counts["replay"]
            rows.append(
                [
                    LABELS[variant],
                    first["sql"],
                    first["commits"],
                    first["redis"],
                    again["sql"],
                    again["commits"],
                    again["redis"],
                ]
            )
        self.results["queries"] = found
        self.show(
            table(
                "Round trips per request (one request, Django test client)",
                [
                    "implementation",
                    "first: SQL",
                    "commits",
                    "Redis",
                    "replay: SQL",
                    "commits",
                    "Redis",
                ],
                rows,
            )
        )

    def phase_profile(self) -> None:
        plan = self.plan
        found = json.loads(
            self.manage("bench_profile", "--requests", str(plan.profile_requests)).splitlines()[-1]
        )
        self.results["profile"] = found
        medians = found["median_ms"]
        names = [name for name in medians if name != "SELECT 1"]
        rows = []
        for label in found["order"]:
            if any(label in medians[name] for name in names):
                rows.append(
                    [label, *(fmt(medians[name].get(label, math.nan), 2) for name in names)]
                )
        bare = medians[BARE]["request, in all (test client)"]
        rows.append(
            [
                "guard's cost (request - bare request)",
                *(fmt(medians[name]["request, in all (test client)"] - bare, 2) for name in names),
            ]
        )
        rows.append(
            [
                "x bare throughput, in-process",
                *(f"{bare / medians[name]['request, in all (test client)']:.2f}" for name in names),
            ]
        )
        round_trip = medians["SELECT 1"]["one SQL round trip"]
        short = {
            BARE: "bare",
            IP_DATABASE: "database lock",
            IP_CACHE: "Redis lock",
            f"{IP_DATABASE}, DOUBLE_SUBMIT_WINDOW=0": "database lock, O2 watch off",
        }
        self.show(
            table(
                f"Where the time goes: ms per first execution, step by step (Django test "
                f"client in one process; median of {plan.profile_requests} requests per variant, "
                f"the variants taking turns request by request; one SELECT 1 round trip: "
                f"{round_trip:.2f} ms)",
                ["step", *(short.get(name, name) for name in names)],
                rows,
            )
        )

    def bracketed(
        self,
        servers: dict[str, Server],
        modes: dict[str, str],
        seconds: float,
        rounds: int,
        keys: dict[str, list[list[tuple[str, int]]]] | None = None,
    ) -> tuple[dict[str, Sample], dict[str, list[float]]]:
        """Measure each guarded variant between two slots of bare first executions.

        The noise of a shared machine comes and goes over seconds; a slot compared with the
        bare slots right before and after it sheds most of it. Each round visits every
        variant in ``modes`` (name: ``fresh`` or ``replay``), starting one further along
        than the round before. Returns the pooled sample of every variant, bare included,
        and per guarded variant its throughput over the mean of the two bare slots around
        it, one ratio per round.
        """
        guarded = list(modes)
        samples = {name: Sample() for name in [BARE, *guarded]}
        ratios: dict[str, list[float]] = {name: [] for name in guarded}
        for number in range(rounds):
            shift = number % len(guarded)
            before = self.measure(servers[BARE], "fresh", seconds)
            samples[BARE].add(before)
            line = [f"bare {before.rps:.0f}"]
            for name in guarded[shift:] + guarded[:shift]:
                sample = self.measure(servers[name], modes[name], seconds, (keys or {}).get(name))
                after = self.measure(servers[BARE], "fresh", seconds)
                samples[name].add(sample)
                samples[BARE].add(after)
                ratios[name].append(sample.rps / ((before.rps + after.rps) / 2))
                line.append(f"{name} {sample.rps:.0f}, bare {after.rps:.0f}")
                before = after
            say(f"  round {number + 1}/{rounds}: " + "; ".join(line) + " req/s")
        return samples, ratios

    def ratio_rows(
        self, samples: dict[str, Sample], ratios: dict[str, list[float]], label_bare: str
    ) -> tuple[list[list[Any]], dict[str, Any]]:
        """Table rows and results for a bracketed measurement."""
        bare = samples[BARE]
        rows = [
            [
                label_bare,
                fmt(bare.rps),
                "1.00",
                "",
                "",
                fmt(percentile(bare.latencies, 50), 2),
                fmt(percentile(bare.latencies, 99), 2),
                bare.failed,
            ]
        ]
        found: dict[str, Any] = {BARE: bare.summary()}
        for name, values in ratios.items():
            sample = samples[name]
            found[name] = sample.summary() | {
                "ratio_median": round(median(values), 3),
                "ratio_per_round": [round(r, 3) for r in values],
                "ratio_pooled": round(sample.rps / bare.rps, 3),
            }
            rows.append(
                [
                    LABELS[name],
                    fmt(sample.rps),
                    f"{median(values):.2f}",
                    ratio_range(values),
                    f"{sample.rps / bare.rps:.2f}",
                    fmt(percentile(sample.latencies, 50), 2),
                    fmt(percentile(sample.latencies, 99), 2),
                    sample.failed,
                ]
            )
        return rows, found

    RATIO_HEADERS = (
        "implementation",
        "req/s",
        "x bare",
        "rounds",
        "pooled",
        "p50 ms",
        "p99 ms",
        "non-2xx",
    )

    def phase_overhead(self, servers: dict[str, Server]) -> None:
        plan = self.plan
        say(f"Warming up {len(servers)} servers ...")
        for server in servers.values():
            self.measure(server, "fresh", plan.warmup)
        samples, ratios = self.bracketed(
            servers,
            dict.fromkeys(self.guarded(servers), "fresh"),
            plan.seconds,
            plan.rounds,
        )
        rows, found = self.ratio_rows(samples, ratios, LABELS[BARE])
        self.results["overhead"] = found
        self.show(
            table(
                f"Overhead: first executions, a fresh key per request ({plan.clients} clients, "
                f"{plan.workers} gunicorn workers, {plan.rounds} rounds x {plan.seconds:g} s "
                "per variant, each slot between two bare slots; x bare = median over the "
                "rounds of slot / mean of its two bare slots)",
                self.RATIO_HEADERS,
                rows,
            )
        )

    def phase_replay(self, servers: dict[str, Server]) -> None:
        plan = self.plan
        guarded = self.guarded(servers)
        keys = {name: self.replay_keys(servers[name]) for name in guarded}
        samples, ratios = self.bracketed(
            servers,
            dict.fromkeys(guarded, "replay"),
            plan.replay_seconds,
            plan.replay_rounds,
            keys,
        )
        # A replay must not run the view: each replayed key still has exactly one order.
        counts = self.orders_per_key(k for name in guarded for ks in keys[name] for k, _ in ks)
        rows, found = self.ratio_rows(samples, ratios, LABELS[BARE] + " (first executions)")
        rows[0].append("-")
        for row, name in zip(rows[1:], guarded, strict=True):
            reran = any(counts[k] != 1 for ks in keys[name] for k, _ in ks)
            found[name]["view_reran"] = reran
            row.append("YES" if reran else "no")
        self.results["replay"] = found
        self.show(
            table(
                f"Replay: the same key again and again, against bare first executions "
                f"({plan.clients} clients, {plan.replay_rounds} rounds x "
                f"{plan.replay_seconds:g} s per variant, each slot between two bare slots)",
                [*self.RATIO_HEADERS, "view re-ran"],
                rows,
            )
        )

    def phase_storm(self, servers: dict[str, Server]) -> None:
        plan = self.plan
        rows, found = [], {}
        for name, server in servers.items():
            statuses: Counter[int] = Counter()
            keys = []
            for _ in range(plan.storm_keys):
                key, product = str(uuid.uuid4()), self.rng.choice(self.products)
                keys.append(key)
                statuses += load.storm(
                    server.port, server.path(), token_of(0), key, product, plan.storm_clients
                )
            counts = self.orders_per_key(keys)
            duplicated = sum(1 for n in counts.values() if n > 1)
            extra = sum(n - 1 for n in counts.values() if n > 1)
            missing = sum(1 for n in counts.values() if n == 0)
            found[name] = {
                "keys": len(keys),
                "keys_duplicated": duplicated,
                "extra_orders": extra,
                "keys_without_order": missing,
                "max_orders_per_key": max(counts.values()),
                "statuses": {str(k): v for k, v in sorted(statuses.items())},
            }
            rows.append(
                [
                    LABELS[name],
                    f"{duplicated}/{len(keys)}",
                    extra,
                    max(counts.values()),
                    missing,
                    " ".join(
                        f"{status or 'conn-error'}x{n}" for status, n in sorted(statuses.items())
                    ),
                ]
            )
            say(f"  {name}: {duplicated} of {len(keys)} keys duplicated")
        self.results["storm"] = found
        self.show(
            table(
                f"Storm: {plan.storm_keys} keys, each sent by {plan.storm_clients} clients "
                f"at once ({plan.workers} gunicorn workers)",
                [
                    "implementation",
                    "keys duplicated",
                    "extra orders",
                    "max orders/key",
                    "keys w/o order",
                    "answers (status x count)",
                ],
                rows,
            )
        )

    def fill(self, count: int, *flags: str, database_url: str | None = None) -> dict[str, float]:
        """Bulk-insert records (bench_fill); return its counts: total, expired, seconds."""
        out = self.manage("bench_fill", str(count), *flags, database_url=database_url)
        return {k: float(v) for k, v in (pair.split("=") for pair in out.splitlines()[-1].split())}

    def scale_database(self, size: int) -> str:
        """A database of its own for ``size`` records, next to the main one."""
        parts = urlsplit(self.args.database_url)
        url = urlunsplit(parts._replace(path=f"{parts.path}_{size}"))
        self.manage("bench_resetdb", "--keep-redis", database_url=url)
        self.manage("migrate", "--no-input", "-v", "0", database_url=url)
        self.manage("bench_seed", "--users", str(max(16, self.plan.clients)), database_url=url)
        return url

    def phase_scale(self) -> tuple[Server, str]:
        """Each size in a database of its own with its own server, the sizes alternated.

        Returns the largest size's server and database, which the purge goes on to use.
        """
        plan = self.plan
        servers: dict[int, Server] = {}
        urls: dict[int, str] = {}
        filled: dict[int, dict[str, float]] = {}
        for size in plan.scale_sizes:
            say(f"A database with {size:,} records ...")
            urls[size] = self.scale_database(size)
            filled[size] = self.fill(size, database_url=urls[size])
            servers[size] = Server(self, IP_DATABASE, plan.workers, urls[size]).start()
            self.measure(servers[size], "fresh", plan.warmup)
        keys = {size: self.replay_keys(server) for size, server in servers.items()}
        samples = {(size, mode): Sample() for size in servers for mode in ("fresh", "replay")}
        sizes = list(servers)
        for number in range(plan.scale_rounds):
            for mode in ("fresh", "replay"):
                # Smallest first in even rounds, largest first in odd ones.
                for size in sizes if number % 2 == 0 else sizes[::-1]:
                    sample = self.measure(servers[size], mode, plan.scale_seconds, keys[size])
                    samples[size, mode].add(sample)
            say(f"  round {number + 1}/{plan.scale_rounds} done")
        rows, found = [], []
        for size in sizes:
            after = self.fill(0, database_url=urls[size])
            entry: dict[str, Any] = {
                "size": size,
                "records_before": int(filled[size]["total"]),
                "records_after": int(after["total"]),
                "fill_seconds": filled[size]["seconds"],
            }
            for mode, label in (("fresh", "first execution"), ("replay", "replay")):
                sample = samples[size, mode]
                entry[mode] = sample.summary()
                rows.append(
                    [
                        f"{int(filled[size]['total']):,} -> {int(after['total']):,}",
                        label,
                        fmt(sample.rps),
                        fmt(percentile(sample.latencies, 50), 2),
                        fmt(percentile(sample.latencies, 99), 2),
                        sample.failed,
                    ]
                )
            found.append(entry)
        if len(sizes) > 1:
            small, large = found[0], found[-1]
            for mode, label in (("fresh", "first execution"), ("replay", "replay")):
                rows.append(
                    [
                        f"{large['size']:,} / {small['size']:,}",
                        label,
                        f"{large[mode]['rps'] / small[mode]['rps']:.2f}x",
                        f"{large[mode]['p50_ms'] / small[mode]['p50_ms']:.2f}x",
                        f"{large[mode]['p99_ms'] / small[mode]['p99_ms']:.2f}x",
                        "",
                    ]
                )
        self.results["scale"] = found
        self.show(
            table(
                f"Scale: {LABELS[IP_DATABASE]}, one database and server per size, "
                f"the sizes alternated ({plan.clients} clients, {plan.scale_rounds} rounds x "
                f"{plan.scale_seconds:g} s per size and kind)",
                ["records (before -> after)", "request", "req/s", "p50 ms", "p99 ms", "non-2xx"],
                rows,
            )
        )
        largest = sizes[-1]
        for size, server in servers.items():
            if size != largest:
                server.stop()
        return servers[largest], urls[largest]

    def phase_purge(self, server: Server, database_url: str | None) -> None:
        plan = self.plan
        say(f"Inserting {plan.purge_records:,} expired records ...")
        before = self.fill(plan.purge_records, "--expired", database_url=database_url)
        started = time.monotonic()
        dry = self.manage("idempotent_post_purge", "--dry-run", database_url=database_url)
        dry_seconds = time.monotonic() - started
        stop_file = self.workdir / "stop-purge-load"
        stop_file.unlink(missing_ok=True)
        assert self.pool is not None
        # Guarded first executions run throughout: a baseline first, then the purge.
        start_at = time.time() + 0.3
        jobs = [
            load.Job(
                port=server.port,
                path=server.path(),
                token=token_of(index),
                mode="fresh",
                start_at=start_at,
                stop_at=start_at + 3 * 3600,
                products=self.products,
                stop_file=str(stop_file),
            )
            for index in range(plan.clients)
        ]
        futures = [self.pool.submit(load.run_client, job) for job in jobs]
        # The watcher samples what the server's backends wait on, baseline included.
        watcher = subprocess.Popen(
            [
                str(self.python),
                "-m",
                "django",
                "bench_lockwatch",
                server.application_name,
                str(stop_file),
            ],
            cwd=HERE,
            env=self.env(database_url=database_url, BENCH_APPLICATION_NAME="bench-watch"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # Requests of the first moments share the CPU with the watcher's start-up: skipped.
        settle = 2.0
        try:
            time.sleep(0.3 + settle + plan.purge_baseline_seconds)
            say(f"Purging (--batch-size {plan.purge_batch_size}) under load ...")
            purge_start = time.time()
            output = self.manage(
                "idempotent_post_purge",
                "--batch-size",
                str(plan.purge_batch_size),
                database_url=database_url,
                BENCH_APPLICATION_NAME="bench-purge",
            )
            purge_end = time.time()
            time.sleep(1.0)
        finally:
            stop_file.touch()
            watched, watch_errors = watcher.communicate(timeout=60)
        results = [future.result() for future in futures]
        if watcher.returncode:
            raise BenchError(f"bench_lockwatch failed:\n{tail(watch_errors)}")
        watch = json.loads(watched.splitlines()[-1])
        after = self.fill(0, database_url=database_url)

        baseline = Sample(seconds=purge_start - start_at - settle)
        during = Sample(seconds=purge_end - purge_start)
        for result in results:
            for start, latency, status in zip(
                result.starts, result.latencies, result.statuses, strict=True
            ):
                if start < start_at + settle:
                    continue
                if start + latency / 1000 <= purge_start:
                    target = baseline
                elif start < purge_end:
                    target = during
                else:
                    continue
                target.latencies.append(latency)
                target.statuses[status] += 1

        def waits_in(begin: float, end: float) -> dict[str, list[dict[str, Any]]]:
            """The server's waits overlapping [begin, end]: row/table locks, and the rest."""
            inside = [
                wait
                for wait in watch["waits"]
                if wait["seen_at"] <= end and wait["seen_at"] + wait["ms"] / 1000 >= begin
            ]
            return {
                "lock": [wait for wait in inside if wait["type"] == "Lock"],
                "other": [wait for wait in inside if wait["type"] != "Lock"],
            }

        windows = {
            "before the purge": (baseline, waits_in(start_at + settle, purge_start)),
            "during the purge": (during, waits_in(purge_start, purge_end)),
        }
        deleted = int(re.search(r"Deleted (\d+)", output).group(1))  # type: ignore[union-attr]
        purge_seconds = purge_end - purge_start
        self.results["purge"] = {
            "records_before": int(before["total"]),
            "expired_before": int(before["expired"]),
            "expired_after": int(after["expired"]),
            "deleted": deleted,
            "batch_size": plan.purge_batch_size,
            "seconds": round(purge_seconds, 2),
            "dry_run_seconds": round(dry_seconds, 2),
            "dry_run_output": dry,
            "watch": {k: v for k, v in watch.items() if k != "waits"},
            **{
                label.replace(" ", "_"): sample.summary() | {"waits": waits}
                for label, (sample, waits) in windows.items()
            },
        }
        facts = [
            ["records before (expired)", f"{int(before['total']):,} ({int(before['expired']):,})"],
            ["deleted; expired left", f"{deleted:,}; {int(after['expired']):,}"],
            ["duration (with ~1 s of Django start-up)", f"{purge_seconds:.1f} s"],
            ["rows deleted per second", f"{deleted / purge_seconds:,.0f}"],
            ["--dry-run (count only) duration", f"{dry_seconds:.1f} s"],
        ]

        def longest(waits: list[dict[str, Any]]) -> str:
            return fmt(max((wait["ms"] for wait in waits), default=0.0), 0)

        rows = [
            [
                label,
                fmt(sample.rps, 0),
                fmt(percentile(sample.latencies, 50), 1),
                fmt(percentile(sample.latencies, 99), 1),
                fmt(max(sample.latencies, default=math.nan), 1),
                sample.failed,
                len(waits["lock"]),
                longest(waits["lock"]),
                len(waits["other"]),
                longest(waits["other"]),
            ]
            for label, (sample, waits) in windows.items()
        ]
        self.show(
            table(
                f"Purge: idempotent_post_purge --batch-size {plan.purge_batch_size} deleting "
                f"{plan.purge_records:,} expired records",
                ["", "value"],
                facts,
            )
            + "\n\n"
            + table(
                f"Guarded first executions ({LABELS[IP_DATABASE]}, {plan.clients} clients) "
                f"around the purge, and what their PostgreSQL backends waited on (sampled every "
                f"{watch['interval_ms']:g} ms: Lock = a row or table lock, other = LWLock, IO ...)",
                [
                    "window",
                    "req/s",
                    "p50 ms",
                    "p99 ms",
                    "max ms",
                    "non-2xx",
                    "Lock waits",
                    "longest ms",
                    "other waits",
                    "longest ms",
                ],
                rows,
            )
        )

    def memory_cases(self) -> list[tuple[str, str, dict[str, str]]]:
        cases = [(BARE, "unguarded", {}), (IP_DATABASE, "guarded", {})]
        for name in self.alternatives:
            cases.append((name, "guarded, Django defaults", {}))
            cases.append(
                (
                    name,
                    "guarded, DATA_UPLOAD_MAX_MEMORY_SIZE=None",
                    {"BENCH_DATA_UPLOAD_MAX_MEMORY_SIZE": "none"},
                )
            )
        return cases

    def phase_memory(self) -> None:
        plan = self.plan
        cases = self.memory_cases()
        measured: dict[int, list[dict[str, Any]]] = {i: [] for i in range(len(cases))}
        for _ in range(plan.memory_repeats):
            for index, (variant, how, extra) in enumerate(cases):
                # A fresh single-worker server per measurement: VmHWM never goes down.
                server = Server(self, variant, 1, **extra).start()
                try:
                    (worker,) = server.worker_pids()
                    idle = vm_hwm_kb(worker)
                    started = time.monotonic()
                    reply = load.upload(
                        server.port,
                        server.path("upload"),
                        token_of(0),
                        str(uuid.uuid4()),
                        plan.upload_megabytes,
                    )
                    seconds = time.monotonic() - started
                    peak = vm_hwm_kb(worker)
                finally:
                    server.stop()
                measured[index].append(
                    {
                        "idle_kb": idle,
                        "peak_kb": peak,
                        "status": reply.status,
                        "seconds": round(seconds, 2),
                        "answer": reply.body[:200].decode(errors="replace"),
                    }
                )
                say(
                    f"  {variant} ({how}): {reply.status}, VmHWM {idle / 1024:.0f} -> "
                    f"{peak / 1024:.0f} MB"
                )
        rows, found = [], []
        for index, (variant, how, _) in enumerate(cases):
            runs = measured[index]
            idle = median([r["idle_kb"] for r in runs]) / 1024
            peak = median([r["peak_kb"] for r in runs]) / 1024
            statuses = sorted({r["status"] for r in runs})
            found.append(
                {"variant": variant, "how": how, "runs": runs, "idle_mb": idle, "peak_mb": peak}
            )
            rows.append(
                [
                    LABELS[variant],
                    how,
                    "/".join(str(s or "conn-error") for s in statuses),
                    f"{idle:.1f} MB",
                    f"{peak:.1f} MB",
                    f"{peak - idle:.1f} MB",
                ]
            )
        self.results["memory"] = found
        self.show(
            table(
                f"Memory: peak RSS (VmHWM) of a fresh gunicorn worker taking one "
                f"{plan.upload_megabytes} MB multipart upload (median of {plan.memory_repeats})",
                ["implementation", "how", "status", "idle", "peak", "growth"],
                rows,
            )
        )

    def show(self, text: str) -> None:
        self.tables.append(text)
        say()
        say(text)
        say()

    def not_wired_table(self) -> None:
        if self.not_wired:
            self.results["not_wired"] = self.not_wired
            self.show(
                table(
                    "Not measured",
                    ["implementation", "why"],
                    [[LABELS.get(n, n), why] for n, why in self.not_wired.items()],
                )
            )


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


def describe(info: dict[str, Any]) -> str:
    m = info["machine"]
    packages = ", ".join(f"{k} {v}" for k, v in info["packages"].items() if v)
    return (
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gb']} GB, {m['os']}, "
        f"kernel {m['kernel']}\n"
        f"Python {info['python']}; {packages}\n"
        f"PostgreSQL {info['postgresql']} (fsync={info['postgresql_fsync']}, "
        f"synchronous_commit={info['postgresql_synchronous_commit']}, "
        f"shared_buffers={info['postgresql_shared_buffers']}); Redis {info['redis']}"
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark idempotent-post under gunicorn, PostgreSQL and Redis.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="short rounds, 10k records only")
    parser.add_argument(
        "--skip-alternatives", action="store_true", help="measure idempotent-post and bare only"
    )
    parser.add_argument("--skip-scale", action="store_true", help="skip the scale and purge phases")
    parser.add_argument(
        "--only", default="", help=f"comma-separated phases to run, of: {', '.join(PHASES)}"
    )
    parser.add_argument("--clients", type=int, help="concurrent clients (default 4)")
    parser.add_argument("--workers", type=int, help="gunicorn workers per server (default 2)")
    parser.add_argument("--rounds", type=int, help="overhead rounds (default 5; --quick 2)")
    parser.add_argument("--seconds", type=float, help="seconds per overhead round (default 8)")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="PostgreSQL database to DROP and create (env BENCH_DATABASE_URL)",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL),
        help="Redis database to FLUSH and use (env BENCH_REDIS_URL)",
    )
    parser.add_argument("--json", type=Path, help="also write the raw results to this file")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    plan = QUICK if args.quick else Plan()
    overrides = {
        name: getattr(args, name)
        for name in ("clients", "workers", "rounds", "seconds")
        if getattr(args, name) is not None
    }
    plan = replace(plan, **overrides)
    phases = [p.strip() for p in args.only.split(",") if p.strip()] or list(PHASES)
    unknown = set(phases) - set(PHASES)
    if unknown:
        say(f"Unknown phase(s): {', '.join(sorted(unknown))}; choose from {', '.join(PHASES)}")
        return 2
    if args.skip_scale:
        phases = [p for p in phases if p not in {"scale", "purge"}]

    bench = Bench(args, plan)
    # SIGTERM (a CI timeout, kill) ends the run through the same clean-up as Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    began = time.monotonic()
    try:
        bench.setup()
        bench.results["command"] = " ".join(["python benchmarks/run.py", *(argv or sys.argv[1:])])
        if "queries" in phases:
            bench.phase_queries()
        if "profile" in phases:
            say("== Profile")
            bench.phase_profile()
        servers: dict[str, Server] = {}
        purge_alone = "purge" in phases and "scale" not in phases
        if {"overhead", "replay", "storm"} & set(phases) or purge_alone:
            servers = bench.start_servers()
            if BARE not in servers or IP_DATABASE not in servers:
                raise BenchError(
                    "the bare or idempotent-post server does not work: "
                    + json.dumps(bench.not_wired)
                )
        if "overhead" in phases:
            say("== Overhead")
            bench.phase_overhead(servers)
        if "replay" in phases:
            say("== Replay")
            bench.phase_replay(servers)
        if "storm" in phases:
            say("== Storm")
            bench.phase_storm(servers)
        # Without the scale phase, the purge goes on the main database and server.
        purge_server, purge_database = servers.get(IP_DATABASE), None
        if "scale" in phases:
            for server in servers.values():
                server.stop()
            say("== Scale")
            purge_server, purge_database = bench.phase_scale()
        if "purge" in phases and purge_server is not None:
            say("== Purge")
            bench.phase_purge(purge_server, purge_database)
        bench.close_servers()
        if "memory" in phases:
            say("== Memory")
            bench.phase_memory()
        bench.not_wired_table()
    except BenchError as error:
        say(f"\nbenchmark failed: {error}")
        say(f"server logs: {bench.workdir}")
        return 1
    finally:
        bench.close()
    minutes = (time.monotonic() - began) / 60
    bench.results["minutes"] = round(minutes, 1)
    bench.results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    say("=" * 100)
    say(f"Results ({minutes:.1f} min)")
    say(describe(bench.results["environment"]))
    say(
        "Load average (1, 5, 15 min) at start: "
        + ", ".join(map(str, bench.results["environment"]["load_average_at_start"]))
        + "; at end: "
        + ", ".join(map(str, bench.results["load_average_at_end"]))
    )
    say()
    for text in bench.tables:
        say(text)
        say()
    if args.json:
        args.json.write_text(json.dumps(bench.results, indent=2, default=str))
        say(f"Raw results: {args.json}")
    shutil.rmtree(bench.workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
