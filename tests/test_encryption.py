"""Encryption at rest (C4): stored headers and bodies are Fernet tokens, rotation, lost keys."""

from __future__ import annotations

import io
import json
import logging
import tracemalloc

import pytest
from cryptography.fernet import Fernet
from django.core.files.storage import storages
from django.core.management import CommandError, call_command
from django.core.signals import request_finished
from django.db import close_old_connections
from django.http import HttpResponse, StreamingHttpResponse
from django.test import Client

from idempotent_post import responses
from idempotent_post.models import IdempotencyRecord
from tests.testapp.models import Widget

OLD = Fernet.generate_key().decode()
NEW = Fernet.generate_key().decode()
NAME = "a confidential widget name"


@pytest.fixture
def client():
    return Client(raise_request_exception=False)


@pytest.fixture
def encrypted(settings):
    settings.IDEMPOTENT_POST_ENCRYPTION_KEYS = [OLD]
    return settings


@pytest.fixture
def storage(settings, tmp_path):
    """A file-system response storage, and a row limit that sends bodies there."""
    settings.STORAGES = {
        **settings.STORAGES,
        "tests-responses": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "responses")},
        },
    }
    settings.IDEMPOTENT_POST_RESPONSE_STORAGE = "tests-responses"
    settings.IDEMPOTENT_POST_MAX_RESPONSE_SIZE = 10
    return storages["tests-responses"]


def post(client, key="k"):
    return client.post(
        "/t/plain/",
        json.dumps({"name": NAME}),
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=key,
    )


def close(response):
    """Close ``response`` (its files) without ending a request, as tests/test_responses.py."""
    request_finished.disconnect(close_old_connections)
    try:
        response.close()
    finally:
        request_finished.connect(close_old_connections)


def body(response):
    if response.streaming:
        data = b"".join(response.streaming_content)
        close(response)
        return data
    return response.content


def assert_replays(client, first, key="k"):
    again = post(client, key)
    assert again.status_code == first.status_code
    assert again["Idempotent-Replayed"] == "true"
    assert body(again) == first.content
    assert again["Content-Type"] == first["Content-Type"]
    assert again["Location"] == first["Location"]
    assert Widget.objects.count() == 1
    return again


def raw_row():
    """The record's columns as the database holds them, not through the model."""
    record = IdempotencyRecord.objects.get()
    return json.dumps(record.response_headers).encode(), bytes(record.response_body or b"")


def rotate(*args):
    out = io.StringIO()
    call_command("idempotent_post_rotate_keys", *args, stdout=out)
    return out.getvalue()


def assert_unreadable(response):
    assert response.status_code == 410
    assert response["Content-Type"] == "application/problem+json"
    problem = json.loads(response.content)
    assert problem["type"] == "urn:idempotent-post:response-unreadable"
    assert problem["status"] == 410
    assert "201" in problem["detail"]
    assert response["Idempotent-Replayed"] == "true"
    assert NAME.encode() not in response.content


@pytest.mark.django_db
def test_C4_a_record_is_stored_encrypted_and_replays_byte_for_byte(client, encrypted):
    first = post(client)
    assert first.status_code == 201
    headers, row = raw_row()
    assert NAME.encode() not in row
    assert b"widgets" not in headers  # the Location value
    assert b"application/json" not in headers
    assert json.loads(headers)[0][0] == responses.ENCRYPTED_HEADERS
    assert len(json.loads(headers)) == 1
    assert_replays(client, first)


@pytest.mark.django_db
def test_C4_rotation_new_key_first_then_the_command_then_the_old_key_removed(
    client, encrypted, caplog
):
    first = post(client)
    encrypted.IDEMPOTENT_POST_ENCRYPTION_KEYS = [NEW, OLD]
    assert_replays(client, first)
    before = raw_row()
    out = rotate()
    assert "1 live idempotency records: 1 re-encrypted under the first key" in out
    assert raw_row() != before
    encrypted.IDEMPOTENT_POST_ENCRYPTION_KEYS = [NEW]
    assert_replays(client, first)
    # A second run has nothing left to do.
    assert "1 already under the first key" in rotate()


@pytest.mark.django_db
def test_C4_a_record_under_a_lost_key_is_a_problem_and_an_error_log(client, encrypted, caplog):
    post(client)
    encrypted.IDEMPOTENT_POST_ENCRYPTION_KEYS = [NEW]
    with caplog.at_level(logging.ERROR, logger="idempotent_post"):
        assert_unreadable(post(client))
    assert "cannot be decrypted" in caplog.text
    assert Widget.objects.count() == 1
    # The same without any key at all (encryption turned off too early).
    encrypted.IDEMPOTENT_POST_ENCRYPTION_KEYS = []
    assert_unreadable(post(client))
    assert Widget.objects.count() == 1


@pytest.mark.django_db
def test_C4_a_corrupt_token_is_a_problem_not_garbage(client, encrypted):
    post(client)
    record = IdempotencyRecord.objects.get()
    row = bytearray(record.response_body)
    row[40] ^= 1
    IdempotencyRecord.objects.update(response_body=bytes(row))
    assert_unreadable(post(client))


@pytest.mark.django_db
def test_C4_plain_records_stored_before_encryption_still_replay(client, settings):
    first = post(client)
    assert NAME.encode() in raw_row()[1]
    settings.IDEMPOTENT_POST_ENCRYPTION_KEYS = [OLD]
    assert_replays(client, first)
    # The command encrypts them.
    assert "1 encrypted (stored before encryption was turned on)" in rotate()
    assert NAME.encode() not in raw_row()[1]
    assert_replays(client, first)


@pytest.mark.django_db
def test_C4_a_large_body_is_encrypted_in_its_file_and_replayed(
    client, encrypted, storage, django_capture_on_commit_callbacks
):
    first = post(client)
    record = IdempotencyRecord.objects.get()
    assert record.body_file
    assert record.response_body is None
    with storage.open(record.body_file) as file:
        data = file.read()
    assert NAME.encode() not in data
    assert data.startswith(b"idempotent-post fernet-chunks 1\n")
    again = assert_replays(client, first)
    assert again["Content-Length"] == str(len(first.content))

    encrypted.IDEMPOTENT_POST_ENCRYPTION_KEYS = [NEW, OLD]
    with django_capture_on_commit_callbacks(execute=True):
        rotate("--batch-size", "1")
    rotated = IdempotencyRecord.objects.get().body_file
    assert rotated != record.body_file
    assert not storage.exists(record.body_file)
    encrypted.IDEMPOTENT_POST_ENCRYPTION_KEYS = [NEW]
    assert_replays(client, first)
    with storage.open(rotated) as file:
        assert NAME.encode() not in file.read()


@pytest.mark.django_db
def test_C4_a_body_file_under_a_lost_key_is_a_problem(client, encrypted, storage):
    post(client)
    encrypted.IDEMPOTENT_POST_ENCRYPTION_KEYS = [NEW, OLD]
    # Headers readable, file not: the file is checked before anything is answered.
    fresh, _ = responses.capture(HttpResponse(b"x" * 50))
    IdempotencyRecord.objects.update(response_headers=fresh.headers)
    encrypted.IDEMPOTENT_POST_ENCRYPTION_KEYS = [NEW]
    response = post(client)
    assert response.status_code == 410
    assert json.loads(response.content)["type"] == "urn:idempotent-post:response-unreadable"


@pytest.mark.parametrize("damage", ["truncate", "swap"])
def test_C4_a_damaged_body_file_never_replays_another_body(storage, encrypted, damage):
    data = bytes(index % 251 for index in range(3 * responses.CHUNK_SIZE + 5))
    stored, _ = responses.capture(HttpResponse(data))
    path = storage.path(stored.body_file)
    with open(path, "rb") as file:
        raw = file.read()
    magic = len(b"idempotent-post fernet-chunks 1\n")
    frames, at = [], magic
    while at < len(raw):
        length = int.from_bytes(raw[at : at + 4], "big")
        frames.append(raw[at : at + 4 + length])
        at += 4 + length
    if damage == "truncate":
        frames = frames[:-1]
    else:
        frames[1], frames[2] = frames[2], frames[1]
    with open(path, "wb") as file:
        file.write(raw[:magic] + b"".join(frames))
    replayed = responses.replay(stored)
    assert replayed["Content-Length"] == str(len(data))
    with pytest.raises(responses.UnreadableResponse):
        b"".join(replayed.streaming_content)
    close(replayed)


def test_C4_a_large_encrypted_stream_is_never_held_whole_in_memory(storage, settings):
    settings.IDEMPOTENT_POST_ENCRYPTION_KEYS = [OLD]
    settings.IDEMPOTENT_POST_MAX_RESPONSE_SIZE = 64 * 1024
    chunk = b"y" * (64 * 1024)
    count = 16 * 1024 * 1024 // len(chunk)

    def drain(response):
        size = sum(len(part) for part in response.streaming_content)
        close(response)
        return size

    tracemalloc.start()
    try:
        stored, sent = responses.capture(StreamingHttpResponse(chunk for _ in range(count)))
        assert drain(sent) == 16 * 1024 * 1024
        assert drain(responses.replay(stored)) == 16 * 1024 * 1024
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert storage.size(stored.body_file) > 16 * 1024 * 1024
    assert peak < 5 * 1024 * 1024


def test_C4_capture_refuses_keys_that_cannot_work(settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.IDEMPOTENT_POST_ENCRYPTION_KEYS = ["not a key"]
    with pytest.raises(ImproperlyConfigured, match="key 1 is not a Fernet key"):
        responses.capture(HttpResponse(b"x"))


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-size", "0"], "--batch-size must be a positive integer"),
        (["--database", "nope"], "Unknown database alias 'nope'"),
    ],
)
def test_C4_rotate_command_refuses_bad_options(encrypted, args, message):
    with pytest.raises(CommandError, match=message):
        rotate(*args)


@pytest.mark.django_db
def test_C4_rotate_command_refuses_to_run_without_keys(settings):
    with pytest.raises(CommandError, match="ENCRYPTION_KEYS is empty"):
        rotate()
    settings.IDEMPOTENT_POST_ENCRYPTION_KEYS = ["not a key"]
    with pytest.raises(CommandError, match="not a Fernet key"):
        rotate()


@pytest.mark.django_db
def test_C4_rotate_command_skips_a_record_changed_meanwhile(
    client, encrypted, storage, monkeypatch
):
    first = post(client)
    record = IdempotencyRecord.objects.get()
    reencrypt = responses.reencrypt
    made = []

    def then_a_retry_takes_the_record(stored):
        new = reencrypt(stored)
        made.append(new.body_file)
        # What a takeover or a forget-and-retry does between the read and the UPDATE.
        IdempotencyRecord.objects.update(completed_at=record.completed_at.replace(year=2001))
        return new

    monkeypatch.setattr(responses, "reencrypt", then_a_retry_takes_the_record)
    encrypted.IDEMPOTENT_POST_ENCRYPTION_KEYS = [NEW, OLD]
    assert "1 skipped: changed while the command ran" in rotate()
    after = IdempotencyRecord.objects.get()
    assert (after.response_headers, after.body_file) == (record.response_headers, record.body_file)
    # Its copy is gone, its own file stays.
    assert not storage.exists(made[0])
    assert storage.exists(record.body_file)
    assert_replays(client, first)


@pytest.mark.django_db
def test_C4_rotate_command_leaves_unreadable_and_expired_records(client, encrypted, caplog):
    post(client, "a")
    post(client, "b")
    from django.utils import timezone

    IdempotencyRecord.objects.filter(key="b").update(expires_at=timezone.now())
    encrypted.IDEMPOTENT_POST_ENCRYPTION_KEYS = [NEW]
    with caplog.at_level(logging.ERROR, logger="idempotent_post"):
        out = rotate()
    assert "1 live idempotency records" in out
    assert "1 skipped: no key decrypts them" in out
    assert "cannot be re-encrypted" in caplog.text
