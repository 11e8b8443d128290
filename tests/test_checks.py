"""System checks (L4): one id per problem, each with its own test."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings

from idempotent_post.checks import check_settings


def ids():
    return [message.id for message in check_settings()]


@pytest.fixture
def other_database(monkeypatch):
    """Add a database alias without overriding DATABASES (Django warns on that).

    The check only reads the alias's settings; nothing connects to it.
    """

    def add(alias, **config):
        monkeypatch.setitem(django_settings.DATABASES, alias, config)
        return alias

    return add


class RecordsRouter:
    """Sends the records to the ``records`` alias, as a project's router may (T4)."""

    def db_for_write(self, model, **hints):
        return "records" if model._meta.app_label == "idempotent_post" else None


def test_L4_default_settings_pass():
    assert ids() == []


def test_L4_E001_unknown_lock_backend(settings):
    settings.IDEMPOTENT_POST_LOCK_BACKEND = "redis"
    assert ids() == ["idempotent_post.E001"]


def test_L4_E002_cache_alias_missing(settings):
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
def test_L4_E003_non_shared_cache_refused_as_lock_backend(settings, backend):
    settings.CACHES = {"default": {"BACKEND": backend, "LOCATION": "x"}}
    settings.IDEMPOTENT_POST_LOCK_BACKEND = "cache"
    settings.IDEMPOTENT_POST_CACHE = "default"
    messages = check_settings()
    assert [m.id for m in messages] == ["idempotent_post.E003"]
    assert "django_redis" in messages[0].hint


def test_L4_django_redis_cache_accepted(settings):
    settings.CACHES = {
        "default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": "redis://x"}
    }
    settings.IDEMPOTENT_POST_LOCK_BACKEND = "cache"
    assert ids() == []


@pytest.mark.parametrize("name", ["SCOPE", "FINGERPRINT"])
@pytest.mark.parametrize("value", ["no_such_alias", "no.such.module", 42])
def test_L4_E004_unknown_scope_or_fingerprint(settings, name, value):
    setattr(settings, f"IDEMPOTENT_POST_{name}", value)
    assert ids() == ["idempotent_post.E004"]


@pytest.mark.parametrize(
    ("name", "value"), [("LEASE", 0), ("TTL", -1), ("LEASE", "30"), ("TTL", True)]
)
def test_L4_E005_durations_not_positive(settings, name, value):
    setattr(settings, f"IDEMPOTENT_POST_{name}", value)
    assert ids() == ["idempotent_post.E005"]


@pytest.mark.parametrize(
    "name", ["REQUIRED", "ATOMIC", "STORE_SERVER_ERRORS", "REPLAY_CREATED_AS_OK", "CACHE_FALLBACK"]
)
def test_L4_E006_booleans(settings, name):
    setattr(settings, f"IDEMPOTENT_POST_{name}", "yes")
    assert ids() == ["idempotent_post.E006"]


@pytest.mark.parametrize("name", ["HEADER", "FORM_FIELD", "RETRY_COUNT_HEADER"])
@pytest.mark.parametrize("value", ["", None])
def test_L4_E007_names(settings, name, value):
    setattr(settings, f"IDEMPOTENT_POST_{name}", value)
    assert ids() == ["idempotent_post.E007"]


@pytest.mark.parametrize("value", [0, 256, "64", True, 64.0])
def test_L4_E008_key_max_length(settings, value):
    settings.IDEMPOTENT_POST_KEY_MAX_LENGTH = value
    assert ids() == ["idempotent_post.E008"]


@pytest.mark.parametrize("value", ["Content-Type", [1], 5, None, b"ETag"])
def test_L4_E009_replay_headers_not_a_list_of_names(settings, value):
    settings.IDEMPOTENT_POST_REPLAY_HEADERS = value
    assert ids() == ["idempotent_post.E009"]


@pytest.mark.parametrize("value", ["elsewhere", ["default"]])
def test_L4_E010_unknown_database(settings, value):
    settings.IDEMPOTENT_POST_DATABASE = value
    assert ids() == ["idempotent_post.E010"]


@pytest.mark.parametrize(
    ("name", "value"),
    [("WAIT", -1), ("FORM_WAIT", None), ("DOUBLE_SUBMIT_WINDOW", "0.5"), ("WAIT", False)],
)
def test_L4_E011_durations_negative(settings, name, value):
    setattr(settings, f"IDEMPOTENT_POST_{name}", value)
    assert ids() == ["idempotent_post.E011"]


def test_L4_zero_waits_accepted(settings):
    settings.IDEMPOTENT_POST_WAIT = 0
    settings.IDEMPOTENT_POST_FORM_WAIT = 0.0
    settings.IDEMPOTENT_POST_DOUBLE_SUBMIT_WINDOW = 0
    assert ids() == []


@pytest.mark.parametrize("name", ["MAX_RESPONSE_SIZE", "MAX_STORED_FILE_SIZE"])
@pytest.mark.parametrize("value", [-1, True, 1.5, "1024", None])
def test_L4_E012_byte_sizes(settings, name, value):
    setattr(settings, f"IDEMPOTENT_POST_{name}", value)
    assert ids() == ["idempotent_post.E012"]


def test_L4_zero_byte_sizes_accepted(settings):
    settings.IDEMPOTENT_POST_MAX_RESPONSE_SIZE = 0
    settings.IDEMPOTENT_POST_MAX_STORED_FILE_SIZE = 0
    assert ids() == []


@pytest.mark.parametrize("value", [0, -5, True, "1000"])
def test_L4_E013_purge_batch_size(settings, value):
    settings.IDEMPOTENT_POST_PURGE_BATCH_SIZE = value
    assert ids() == ["idempotent_post.E013"]


@pytest.mark.parametrize(
    "value", [["Content-Type", "Set-Cookie"], ("authorization",), ["SET-COOKIE"]]
)
def test_L4_E014_credentials_never_replayed(settings, value):
    settings.IDEMPOTENT_POST_REPLAY_HEADERS = value
    assert ids() == ["idempotent_post.E014"]


@pytest.mark.parametrize("value", ["nowhere", None, ["default"]])
def test_L4_E015_response_storage_unknown(settings, value):
    settings.IDEMPOTENT_POST_RESPONSE_STORAGE = value
    assert ids() == ["idempotent_post.E015"]


def test_L4_E015_reads_storages_as_overridden(settings):
    settings.IDEMPOTENT_POST_RESPONSE_STORAGE = "responses"
    assert ids() == ["idempotent_post.E015"]
    settings.STORAGES = {
        **settings.STORAGES,
        "responses": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }
    assert ids() == []


FERNET_KEY = "x" * 43 + "="  # 32 url-safe base64-encoded bytes


@pytest.mark.parametrize("value", [None, [], ()])
def test_C4_no_encryption_keys_accepted(settings, value):
    settings.IDEMPOTENT_POST_ENCRYPTION_KEYS = value
    assert ids() == []


def test_C4_fernet_keys_accepted(settings):
    settings.IDEMPOTENT_POST_ENCRYPTION_KEYS = [FERNET_KEY, FERNET_KEY.encode()]
    assert ids() == []


@pytest.mark.parametrize("value", [FERNET_KEY, FERNET_KEY.encode(), [1], 5])
def test_C4_E016_encryption_keys_not_a_list_of_keys(settings, value):
    settings.IDEMPOTENT_POST_ENCRYPTION_KEYS = value
    assert ids() == ["idempotent_post.E016"]


def test_C4_E017_encryption_keys_without_cryptography(settings, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "cryptography.fernet", None)
    settings.IDEMPOTENT_POST_ENCRYPTION_KEYS = [FERNET_KEY]
    assert ids() == ["idempotent_post.E017"]


def test_C4_E018_not_a_fernet_key(settings):
    settings.IDEMPOTENT_POST_ENCRYPTION_KEYS = [FERNET_KEY, "too-short", "x" * 44]
    messages = check_settings()
    assert [message.id for message in messages] == ["idempotent_post.E018"] * 2
    assert "key 2 " in messages[0].msg
    assert "too-short" not in messages[0].msg


def test_L4_W001_records_on_another_database(settings, other_database):
    settings.IDEMPOTENT_POST_DATABASE = other_database(
        "records_elsewhere", ENGINE="django.db.backends.sqlite3", NAME=":memory:"
    )
    messages = check_settings()
    assert [m.id for m in messages] == ["idempotent_post.W001"]
    assert "not in two phases" in messages[0].msg
    assert "'records_elsewhere'" in messages[0].msg


def test_L4_W001_records_routed_to_another_database(settings, other_database):
    other_database("records", ENGINE="django.db.backends.sqlite3", NAME=":memory:")
    settings.DATABASE_ROUTERS = [f"{__name__}.RecordsRouter"]
    assert ids() == ["idempotent_post.W001"]


def test_L4_W001_not_for_the_default_database(settings):
    settings.IDEMPOTENT_POST_DATABASE = "default"
    assert ids() == []


@pytest.mark.parametrize("level", ["REPEATABLE_READ", "SERIALIZABLE"])
def test_L4_W002_postgresql_records_above_read_committed(settings, other_database, level):
    psycopg_any = pytest.importorskip("django.db.backends.postgresql.psycopg_any")
    settings.IDEMPOTENT_POST_DATABASE = other_database(
        "records_pg",
        ENGINE="django.db.backends.postgresql",
        NAME="records",
        OPTIONS={"isolation_level": getattr(psycopg_any.IsolationLevel, level)},
    )
    messages = check_settings()
    # W001 too: the records are not on "default".
    assert [m.id for m in messages] == ["idempotent_post.W001", "idempotent_post.W002"]
    assert level.replace("_", " ") in messages[1].msg
    assert "unique constraint" in messages[1].msg


@pytest.mark.parametrize("level", ["READ_COMMITTED", "READ_UNCOMMITTED", None])
def test_L4_W002_not_at_read_committed(settings, other_database, level):
    """PostgreSQL runs READ UNCOMMITTED as READ COMMITTED: nothing to warn about."""
    psycopg_any = pytest.importorskip("django.db.backends.postgresql.psycopg_any")
    options = (
        {} if level is None else {"isolation_level": getattr(psycopg_any.IsolationLevel, level)}
    )
    settings.IDEMPOTENT_POST_DATABASE = other_database(
        "records_pg", ENGINE="django.db.backends.postgresql", NAME="records", OPTIONS=options
    )
    assert ids() == ["idempotent_post.W001"]


def test_L4_W002_only_for_postgresql(settings, other_database):
    settings.IDEMPOTENT_POST_DATABASE = other_database(
        "records_mysql",
        ENGINE="django.db.backends.mysql",
        NAME="records",
        OPTIONS={"isolation_level": "serializable"},
    )
    assert ids() == ["idempotent_post.W001"]


# Django 6's check command also runs the database checks, on every database.
@pytest.mark.django_db(databases="__all__")
def test_L4_checks_run_through_manage_py_check(settings):
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    settings.IDEMPOTENT_POST_LOCK_BACKEND = "nope"
    with pytest.raises(SystemCheckError, match=r"idempotent_post\.E001"):
        call_command("check")
