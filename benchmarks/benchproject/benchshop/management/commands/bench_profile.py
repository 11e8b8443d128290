"""``bench_profile``: where the time of a guarded first execution goes, step by step.

Runs first executions through Django's test client in this process, for the bare view and
for idempotent-post with each lock backend, the variants taking turns request by request,
and times each step of the engine with a wrapper around it. It prints, as JSON, the median
and the mean over the requests of the milliseconds each step took.

A diagnostic, not an API: it wraps the engine's private methods by name and skips any that
no longer exist. The wrappers cost about a microsecond each.
"""

from __future__ import annotations

import functools
import importlib
import json
import statistics
import time
import types
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import connection, connections
from django.test import Client, override_settings

from benchproject.benchshop.management.commands.bench_seed import token_of
from benchproject.benchshop.models import Product

# (module, class or None, attribute, label): the steps timed, outermost first.
STEPS = [
    ("rest_framework.views", "APIView", "dispatch", "DRF dispatch, in all"),
    ("idempotent_post.engine", "Guard", "handle", "idempotent-post guard, in all"),
    ("rest_framework.mixins", "CreateModelMixin", "create", "the view (serializer + order)"),
    ("idempotent_post.engine", "Guard", "_read", "record read (SELECT)"),
    ("idempotent_post.locks", "PostgresAdvisoryLock", "acquire", "advisory lock (SELECT)"),
    ("idempotent_post.locks", "CacheLock", "acquire", "Redis lock acquire"),
    ("idempotent_post.locks", "CacheLock", "release", "Redis lock release"),
    ("idempotent_post.engine", "Guard", "_watch_double_submit", "double-submit watch (Redis)"),
    ("idempotent_post.engine", "Guard", "_save", "record write (INSERT)"),
    ("idempotent_post.engine", None, "fingerprint_for", "fingerprint"),
    ("idempotent_post.engine", None, "scope_for", "scope"),
    ("idempotent_post.engine", None, "capture", "response capture"),
]


@contextmanager
def timing(totals: dict[str, float], calls: dict[str, int]) -> Iterator[None]:
    """Wrap every step (and the connection's commit and savepoints) with a timer."""
    restore: list[Callable[[], None]] = []

    def wrap(owner: Any, attribute: str, label: str) -> None:
        function = getattr(owner, attribute)

        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                totals[label] += time.perf_counter() - started
                calls[label] += 1

        if isinstance(owner, type) and attribute not in owner.__dict__:
            restore.append(lambda: delattr(owner, attribute))  # it was inherited
        elif isinstance(owner, (type, types.ModuleType)):
            restore.append(lambda: setattr(owner, attribute, function))
        else:
            restore.append(lambda: delattr(owner, attribute))  # a bound method: unshadow it
        setattr(owner, attribute, timed)

    for module_name, class_name, attribute, label in STEPS:
        module = importlib.import_module(module_name)
        owner = getattr(module, class_name, None) if class_name else module
        if owner is not None and hasattr(owner, attribute):
            wrap(owner, attribute, label)
    database = connections["default"]
    wrap(database, "commit", "COMMIT")
    wrap(database, "savepoint", "SAVEPOINT (nested atomic)")
    wrap(database, "savepoint_commit", "RELEASE SAVEPOINT")
    try:
        yield
    finally:
        for undo in reversed(restore):
            undo()


VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "bare": ("bare", {}),
    "idempotent-post-database": (
        "idempotent-post-database",
        {"IDEMPOTENT_POST_LOCK_BACKEND": "database"},
    ),
    "idempotent-post-cache": ("idempotent-post-cache", {"IDEMPOTENT_POST_LOCK_BACKEND": "cache"}),
    # What the double-submit watch (O2) costs a keyed request: switch it off.
    "idempotent-post-database, DOUBLE_SUBMIT_WINDOW=0": (
        "idempotent-post-database",
        {"IDEMPOTENT_POST_LOCK_BACKEND": "database", "IDEMPOTENT_POST_DOUBLE_SUBMIT_WINDOW": 0},
    ),
}


class Command(BaseCommand):
    help = "Time each step of guarded first executions against the bare view; print JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--requests", type=int, default=400, help="per variant")

    def handle(self, *args: Any, requests: int, **options: Any) -> None:
        products = list(Product.objects.values_list("pk", flat=True)[:100])
        client = Client(HTTP_AUTHORIZATION=f"Token {token_of(0)}")

        def first_execution(path: str, product: int) -> None:
            key = str(uuid.uuid4())
            response = client.post(
                path,
                json.dumps({"product": product, "quantity": 1, "note": key}),
                content_type="application/json",
                HTTP_IDEMPOTENCY_KEY=key,
            )
            assert response.status_code == 201, response.content

        def round_trip() -> None:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")

        # Per variant and step, the milliseconds of each request. The variants take turns
        # request by request, so a burst of load from elsewhere hits them all alike.
        per_request: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        calls: dict[str, int] = defaultdict(int)
        totals: dict[str, float] = defaultdict(float)
        settings = {
            name: override_settings(**overrides) for name, (_, overrides) in VARIANTS.items()
        }
        with timing(totals, calls):
            for index in range(requests + 20):  # the first 20 turns warm up
                product = products[index % len(products)]
                for name, (url_name, _) in VARIANTS.items():
                    with settings[name]:
                        before = dict(totals)
                        started = time.perf_counter()
                        first_execution(f"/{url_name}/orders/", product)
                        elapsed = time.perf_counter() - started
                    if index < 20:
                        continue
                    steps = per_request[name]
                    steps["request, in all (test client)"].append(elapsed * 1000)
                    for label, seconds in totals.items():
                        steps[label].append((seconds - before.get(label, 0.0)) * 1000)
                if index >= 20:
                    started = time.perf_counter()
                    round_trip()
                    per_request["SELECT 1"]["one SQL round trip"].append(
                        (time.perf_counter() - started) * 1000
                    )
        labels = [label for *_, label in STEPS]
        labels[3:3] = ["SAVEPOINT (nested atomic)", "RELEASE SAVEPOINT", "COMMIT"]
        result = {
            "order": ["request, in all (test client)", *labels],
            "requests": requests,
            # A step a variant never takes has zeros only: left out.
            "median_ms": {
                name: {
                    label: round(statistics.median(values), 3)
                    for label, values in steps.items()
                    if any(values)
                }
                for name, steps in per_request.items()
            },
            "mean_ms": {
                name: {
                    label: round(statistics.fmean(values), 3)
                    for label, values in steps.items()
                    if any(values)
                }
                for name, steps in per_request.items()
            },
        }
        self.stdout.write(json.dumps(result))
