"""Shared fixtures.

PostgreSQL and Redis tests run when ``DATABASE_URL`` names a PostgreSQL database and
``REDIS_URL`` a Redis; elsewhere they skip with the reason. A service named in
``TEST_REQUIRE_SERVICES`` (comma-separated: ``postgres,redis,chromium``) fails the test
instead of skipping it: ``.ci/run`` sets it, so CI cannot go green by skipping them.
"""

from __future__ import annotations

import os
import threading
import uuid

import django
import pytest
from django.conf import settings
from django.db import connection

from tests.testapp import views

REQUIRED_SERVICES = set(filter(None, os.environ.get("TEST_REQUIRE_SERVICES", "").split(",")))


def _unavailable(reason: str, service: str) -> None:
    if service in REQUIRED_SERVICES:
        pytest.fail(f"TEST_REQUIRE_SERVICES names {service}, but the test {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def postgres(db):
    """Skip (or fail under CI) unless the tests run on PostgreSQL."""
    if connection.vendor != "postgresql":
        _unavailable("needs PostgreSQL: set DATABASE_URL=postgres://...", "postgres")


@pytest.fixture
def redis_cache():
    """The alias of a reachable django-redis cache, with the engine's keys cleared."""
    if "redis" not in settings.CACHES:
        _unavailable("needs Redis: set REDIS_URL=redis://...", "redis")
    from django_redis import get_redis_connection

    client = get_redis_connection("redis")
    try:
        client.ping()
    except Exception as error:
        _unavailable(f"Redis at {os.environ.get('REDIS_URL')} does not answer: {error}", "redis")
    return "redis"


@pytest.fixture(params=["database", "cache"])
def lock_backend(request, settings):
    """Run a test once per lock backend (L2)."""
    if request.param == "cache":
        alias = request.getfixturevalue("redis_cache")
        settings.IDEMPOTENT_POST_LOCK_BACKEND = "cache"
        settings.IDEMPOTENT_POST_CACHE = alias
    else:
        settings.IDEMPOTENT_POST_LOCK_BACKEND = "database"
    return request.param


@pytest.fixture
def new_key():
    """A fresh key per call, so tests never see each other's records."""
    return lambda: f"test-{uuid.uuid4()}"


@pytest.fixture
def gate():
    """Hold a guarded test view mid-flight: send the header ``X-Gate: <name>``.

    ``entered.wait()`` returns once the view body runs; ``release()`` lets it finish.
    """

    class Gate:
        def __init__(self) -> None:
            self.name = uuid.uuid4().hex
            self.entered = views.entered[self.name] = threading.Event()
            self.opened = views.gates[self.name] = threading.Event()

        def release(self) -> None:
            self.opened.set()

    made: list[Gate] = []

    def make() -> Gate:
        made.append(Gate())
        return made[-1]

    yield make
    for each in made:
        each.release()
        views.entered.pop(each.name, None)
        views.gates.pop(each.name, None)


@pytest.fixture
def database_mail(settings):
    """The demo's e-mail backend (rows on /payments/) instead of the tests' memory one."""
    backend = "demo_project.shop.mail.DatabaseEmailBackend"
    if django.VERSION >= (6, 1):
        settings.MAILERS = {"default": {"BACKEND": backend}}
    else:
        settings.EMAIL_BACKEND = backend
