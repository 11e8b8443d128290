"""System checks (L4): every refused setting has its own test."""

from __future__ import annotations

import pytest

from idempotent_post.checks import check_settings


def ids():
    return [message.id for message in check_settings()]


def test_l4_default_settings_pass():
    assert ids() == []


def test_l4_e001_unknown_lock_backend(settings):
    settings.IDEMPOTENT_POST_LOCK_BACKEND = "redis"
    assert ids() == ["idempotent_post.E001"]


def test_l4_e002_cache_alias_missing(settings):
    settings.IDEMPOTENT_POST_LOCK_BACKEND = "cache"
    settings.IDEMPOTENT_POST_CACHE = "nowhere"
    assert ids() == ["idempotent_post.E002"]


@pytest.mark.parametrize(
    "backend",
    [
        "django.core.cache.backends.locmem.LocMemCache",
        "django.core.cache.backends.dummy.DummyCache",
        "django.core.cache.backends.filebased.FileBasedCache",
    ],
)
def test_l4_e003_non_shared_cache_refused_as_lock_backend(settings, backend):
    settings.CACHES = {"default": {"BACKEND": backend, "LOCATION": "x"}}
    settings.IDEMPOTENT_POST_LOCK_BACKEND = "cache"
    settings.IDEMPOTENT_POST_CACHE = "default"
    messages = check_settings()
    assert [m.id for m in messages] == ["idempotent_post.E003"]
    assert "django_redis" in messages[0].hint


def test_l4_django_redis_cache_accepted(settings):
    settings.CACHES = {
        "default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": "redis://x"}
    }
    settings.IDEMPOTENT_POST_LOCK_BACKEND = "cache"
    assert ids() == []


@pytest.mark.parametrize("name", ["SCOPE", "FINGERPRINT"])
@pytest.mark.parametrize("value", ["no_such_alias", "no.such.module", 42])
def test_l4_e004_unknown_scope_or_fingerprint(settings, name, value):
    setattr(settings, f"IDEMPOTENT_POST_{name}", value)
    assert ids() == ["idempotent_post.E004"]


@pytest.mark.parametrize(
    ("name", "value"),
    [("LEASE", 0), ("TTL", -1), ("LEASE", "30"), ("WAIT", -1), ("FORM_WAIT", None), ("TTL", True)],
)
def test_l4_e005_bad_durations(settings, name, value):
    setattr(settings, f"IDEMPOTENT_POST_{name}", value)
    assert ids() == ["idempotent_post.E005"]


@pytest.mark.parametrize("name", ["REQUIRED", "ATOMIC", "CACHE_FALLBACK"])
def test_l4_e006_booleans(settings, name):
    setattr(settings, f"IDEMPOTENT_POST_{name}", "yes")
    assert ids() == ["idempotent_post.E006"]


@pytest.mark.parametrize("name", ["HEADER", "FORM_FIELD", "RETRY_COUNT_HEADER"])
def test_l4_e007_names(settings, name):
    setattr(settings, f"IDEMPOTENT_POST_{name}", "")
    assert ids() == ["idempotent_post.E007"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KEY_MAX_LENGTH", 0),
        ("KEY_MAX_LENGTH", 256),
        ("MAX_RESPONSE_SIZE", -1),
        ("PURGE_BATCH_SIZE", 0),
    ],
)
def test_l4_e008_whole_numbers(settings, name, value):
    setattr(settings, f"IDEMPOTENT_POST_{name}", value)
    assert ids() == ["idempotent_post.E008"]


@pytest.mark.parametrize("value", ["Content-Type", ["Content-Type", "Set-Cookie"], [1]])
def test_l4_e009_replay_headers(settings, value):
    settings.IDEMPOTENT_POST_REPLAY_HEADERS = value
    assert ids() == ["idempotent_post.E009"]


def test_l4_e010_unknown_database(settings):
    settings.IDEMPOTENT_POST_DATABASE = "elsewhere"
    assert ids() == ["idempotent_post.E010"]


@pytest.mark.django_db  # Django 6's check command also runs the database checks
def test_l4_checks_run_through_manage_py_check(settings):
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    settings.IDEMPOTENT_POST_LOCK_BACKEND = "nope"
    with pytest.raises(SystemCheckError, match=r"idempotent_post\.E001"):
        call_command("check")


def test_d4_settings_are_read_lazily(settings):
    """D4: one namespace, read on access, so override_settings applies at once."""
    from idempotent_post.conf import conf

    assert conf.TTL == 24 * 60 * 60
    settings.IDEMPOTENT_POST_TTL = 5
    assert conf.TTL == 5
