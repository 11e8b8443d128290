"""The state of one benchmark run: its set-up, the load it drives, and what the phases found.

``Bench`` builds the servers' environment and interpreter (``benchmarks/.venv`` for the
alternative packages), resets and seeds the database, runs the project's ``manage.py``
commands, drives the client processes against a server for a time window, and collects the
phases' tables and raw results. The phases themselves are in ``idembench.phases``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

from . import load
from .plan import (
    ALTERNATIVES,
    BARE,
    BENCHMARKS,
    CORE_PACKAGES,
    IP_CACHE,
    IP_DATABASE,
    LABELS,
    ROOT,
    VENV,
    Plan,
    token_of,
)
from .processes import BenchError, Server, machine, run, tail
from .report import describe, say, table
from .stats import Sample


class Bench:
    """Set-up, the load, and what the phases found."""

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
            PYTHONPATH=os.pathsep.join([str(BENCHMARKS), str(ROOT)]),
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
            cwd=BENCHMARKS,
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

    def jobs(
        self,
        server: Server,
        mode: str,
        start_at: float,
        stop_at: float,
        keys: list[list[tuple[str, int]]] | None = None,
        stop_file: str | None = None,
    ) -> list[load.Job]:
        """One job per client against ``server``, client i with the token of user i."""
        return [
            load.Job(
                port=server.port,
                path=server.path(),
                token=token_of(index),
                mode=mode,
                start_at=start_at,
                stop_at=stop_at,
                products=self.products,
                keys=keys[index] if keys else [],
                stop_file=stop_file,
            )
            for index in range(self.plan.clients)
        ]

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
        jobs = self.jobs(server, mode, start_at, start_at + seconds, keys)
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

    def fill(self, count: int, *flags: str, database_url: str | None = None) -> dict[str, float]:
        """Bulk-insert records (bench_fill); return its counts: total, expired, seconds."""
        out = self.manage("bench_fill", str(count), *flags, database_url=database_url)
        return {k: float(v) for k, v in (pair.split("=") for pair in out.splitlines()[-1].split())}

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

    # Output.

    def show(self, text: str) -> None:
        """Print a phase's table now, and keep it for the closing summary."""
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
