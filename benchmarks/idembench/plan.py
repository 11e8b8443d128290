"""What the benchmark runs: the phases, their sizes and durations, the variants, the paths.

Nothing here starts a process or touches a database; ``Plan`` is a frozen value, and the
helpers at the end turn the command-line options into a plan and a list of phases.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

# benchmarks/: the servers and manage.py commands run from here (benchproject is in it).
BENCHMARKS = Path(__file__).resolve().parents[1]
ROOT = BENCHMARKS.parent
VENV = BENCHMARKS / ".venv"

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
    # The purges compared, each on records of its own: pacing off, then the command's
    # default pause (None: no --pause).
    purge_pauses: tuple[str | None, ...] = ("0", None)
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

# The options that override a field of the plan of the same name.
OVERRIDABLE = ("clients", "workers", "rounds", "seconds")


def token_of(index: int) -> str:
    """The API token of benchmark user ``index``, as ``bench_seed`` creates it."""
    return f"bench-token-{index:04d}".ljust(40, "0")


def make_plan(quick: bool, options: Mapping[str, Any]) -> Plan:
    """The full or the quick plan, with every ``OVERRIDABLE`` option that is not ``None``."""
    plan = QUICK if quick else Plan()
    overrides = {name: options[name] for name in OVERRIDABLE if options.get(name) is not None}
    return replace(plan, **overrides)


def select_phases(only: str, skip_scale: bool) -> tuple[list[str], list[str]]:
    """The phases to run (``--only``, comma separated; all when empty) and the unknown names.

    ``--skip-scale`` drops the scale and purge phases. The order is the one asked for.
    """
    phases = [p.strip() for p in only.split(",") if p.strip()] or list(PHASES)
    unknown = sorted(set(phases) - set(PHASES))
    if skip_scale:
        phases = [p for p in phases if p not in {"scale", "purge"}]
    return phases, unknown
