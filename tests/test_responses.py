"""Replay (P1-P4) and errors (E1, E2): what the client gets back."""

from __future__ import annotations

import asyncio
import gzip
import json
import tracemalloc
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.core.signals import request_finished
from django.db import close_old_connections
from django.http import FileResponse, HttpResponse, StreamingHttpResponse
from django.middleware.gzip import GZipMiddleware
from django.test import Client, RequestFactory
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.gzip import gzip_page
from rest_framework.test import APIClient

from idempotent_post import fingerprint, idempotent, responses
from idempotent_post.models import IdempotencyRecord
from idempotent_post.responses import StoredResponse
from tests.testapp.models import Widget

PROBLEM = "application/problem+json"
BODY = b'{"name": "w"}'


@pytest.fixture
def client():
    return Client(raise_request_exception=False)


@pytest.fixture
def api():
    client = APIClient()
    client.raise_request_exception = False
    return client


def post(client, url="/t/plain/", key="k", body=BODY, content_type="application/json"):
    headers = {} if key is None else {"Idempotency-Key": key}
    return client.post(url, body, content_type=content_type, headers=headers)


def content(response):
    if not response.streaming:
        return response.content
    if response.is_async:

        async def read():
            return b"".join([part async for part in response])

        return asyncio.run(read())
    return b"".join(response.streaming_content)


def close(response):
    """Close ``response`` as a handler does once it is sent (closing its files).

    Without ending a request: like Django's test client, do not let the
    ``request_finished`` signal close the test's database connection.
    """
    request_finished.disconnect(close_old_connections)
    try:
        response.close()
    finally:
        request_finished.connect(close_old_connections)


def assert_problem(response, status):
    assert response.status_code == status
    assert response["Content-Type"] == PROBLEM
    problem = json.loads(response.content)
    assert set(problem) >= {"type", "title", "status", "detail"}
    assert problem["status"] == response.status_code
    assert problem["type"].startswith("urn:idempotent-post:")
    assert problem["title"]
    assert problem["detail"]
    return problem


# P1: the replay is the original answer, marked.


@pytest.mark.django_db
def test_p1_first_execution_is_not_marked(client):
    response = post(client)
    assert response.status_code == 201
    assert response.get(responses.REPLAYED_HEADER, "false") == "false"


@pytest.mark.django_db
def test_p1_replay_returns_original_status_body_type_and_location(client):
    first = post(client)
    second = post(client)
    assert second.status_code == first.status_code == 201
    assert second.content == first.content
    assert second["Content-Type"] == first["Content-Type"] == "application/json"
    assert second["Location"] == first["Location"]
    assert second["Idempotent-Replayed"] == "true"
    assert Widget.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("code", [200, 202, 302, 400, 404, 422])
def test_p1_replay_keeps_status(client, code):
    first = post(client, f"/t/status/{code}/")
    second = post(client, f"/t/status/{code}/")
    assert first.status_code == second.status_code == code
    assert second.content == f"status {code}".encode()
    assert second["Content-Type"] == "text/plain"
    assert second["Idempotent-Replayed"] == "true"
    assert Widget.objects.count() == 1


@pytest.mark.django_db
def test_p1_replay_on_drf_view(api):
    first = post(api, "/t/drf/")
    second = post(api, "/t/drf/")
    assert second.status_code == 201
    assert second.json() == first.json()
    assert second["Content-Type"] == first["Content-Type"] == "application/json"
    assert second["Location"] == first["Location"]
    assert second["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first


@pytest.mark.django_db
def test_p1_replay_created_as_ok_setting(client, settings):
    settings.IDEMPOTENT_POST_REPLAY_CREATED_AS_OK = True
    first = post(client)
    second = post(client)
    assert first.status_code == 201
    assert second.status_code == 200
    assert second.content == first.content
    assert second["Location"] == first["Location"]


@pytest.mark.django_db
def test_p1_replay_created_as_ok_leaves_other_statuses(client, settings):
    settings.IDEMPOTENT_POST_REPLAY_CREATED_AS_OK = True
    post(client, "/t/status/202/")
    assert post(client, "/t/status/202/").status_code == 202


def test_p1_replay_without_stored_content_type_has_none():
    response = responses.replay(StoredResponse(204, [], None))
    assert response.status_code == 204
    assert "Content-Type" not in response
    assert response.content == b""
    assert response[responses.REPLAYED_HEADER] == "true"


# P2: allow-listed headers only.


@pytest.mark.django_db
def test_p2_replay_has_no_set_cookie_nor_private_header(client):
    first = post(client)
    assert first.cookies["session-ish"].value == "secret"
    assert first["X-Private"] == "not replayed"
    second = post(client)
    assert second["Idempotent-Replayed"] == "true"
    assert "session-ish" not in second.cookies
    assert not second.has_header("Set-Cookie")
    assert not second.has_header("X-Private")


@pytest.mark.django_db
def test_p2_replay_headers_setting(client, settings):
    settings.IDEMPOTENT_POST_REPLAY_HEADERS = ["content-type", "x-private"]
    first = post(client)
    second = post(client)
    assert second["X-Private"] == "not replayed"
    assert second["Content-Type"] == "application/json"
    assert first.has_header("Location")
    assert not second.has_header("Location")


@pytest.mark.django_db
def test_p2_set_cookie_in_replay_headers_setting_still_not_replayed(client, settings):
    settings.IDEMPOTENT_POST_REPLAY_HEADERS = ["Content-Type", "Set-Cookie"]
    post(client)
    second = post(client)
    assert second["Idempotent-Replayed"] == "true"
    assert "session-ish" not in second.cookies


def test_p2_capture_keeps_allow_listed_headers_only():
    response = HttpResponse(b"x", status=201, content_type="text/plain")
    response["Location"] = "/x/"
    response["X-Private"] = "no"
    response.set_cookie("c", "v")
    stored, sent = responses.capture(response)
    assert sent is response
    assert stored.status_code == 201
    assert stored.body == b"x"
    assert sorted(name.lower() for name, _ in stored.headers) == ["content-type", "location"]


def test_P2_a_set_cookie_header_is_never_stored(settings):
    settings.IDEMPOTENT_POST_REPLAY_HEADERS = ["Content-Type", "Set-Cookie"]
    response = HttpResponse(b"x")
    response["Set-Cookie"] = "session=secret"
    stored, _ = responses.capture(response)
    assert [name for name, _ in stored.headers] == ["Content-Type"]
    assert not responses.replay(stored).has_header("Set-Cookie")


# P3: every body is replayed whole: from the row, or from the response storage.

ROW_LIMIT = 100
FILE_LIMIT = 1000


@pytest.fixture
def storage(settings, tmp_path):
    """A file-system response storage in a temporary directory, and small limits."""
    settings.STORAGES = {
        **settings.STORAGES,
        "tests-responses": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "responses")},
        },
    }
    settings.IDEMPOTENT_POST_RESPONSE_STORAGE = "tests-responses"
    settings.IDEMPOTENT_POST_MAX_RESPONSE_SIZE = ROW_LIMIT
    settings.IDEMPOTENT_POST_MAX_STORED_FILE_SIZE = FILE_LIMIT
    return storages["tests-responses"]


def body_of(size):
    return bytes(index % 251 for index in range(size))


def chunked(data, size=7):
    """A generator over ``data`` in small chunks, as a streaming view returns."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def make(kind, data, tmp_path):
    if kind == "plain":
        return HttpResponse(data, status=201, content_type="application/octet-stream")
    if kind == "streaming":
        return StreamingHttpResponse(
            chunked(data), status=201, content_type="application/octet-stream"
        )
    path = tmp_path / "download.bin"
    path.write_bytes(data)
    return FileResponse(path.open("rb"), status=201, content_type="application/octet-stream")


KINDS = ["plain", "streaming", "file"]


@pytest.mark.parametrize("kind", KINDS)
def test_P3_a_body_below_the_row_limit_is_kept_in_the_row(storage, tmp_path, kind):
    data = body_of(ROW_LIMIT)
    stored, sent = responses.capture(make(kind, data, tmp_path))
    assert content(sent) == data
    assert (stored.body, stored.body_file, stored.kept) == (data, "", True)
    replayed = responses.replay(stored)
    assert replayed.status_code == 201
    assert content(replayed) == data
    assert replayed["Content-Type"] == "application/octet-stream"
    assert replayed[responses.REPLAYED_HEADER] == "true"


@pytest.mark.parametrize("size", [ROW_LIMIT + 1, FILE_LIMIT])
@pytest.mark.parametrize("kind", KINDS)
def test_P3_a_body_between_the_limits_is_kept_in_storage_and_replayed_byte_for_byte(
    storage, tmp_path, kind, size
):
    data = body_of(size)
    stored, sent = responses.capture(make(kind, data, tmp_path))
    assert content(sent) == data
    assert stored.body is None
    assert stored.kept
    assert stored.body_file.startswith(responses.FILE_PREFIX)
    with storage.open(stored.body_file) as file:
        assert file.read() == data
    replayed = responses.replay(stored)
    assert replayed.status_code == 201
    assert replayed.streaming
    assert content(replayed) == data
    assert replayed["Content-Type"] == "application/octet-stream"
    assert replayed[responses.REPLAYED_HEADER] == "true"
    # Only the original's, never one named after the storage's file.
    assert replayed.get("Content-Disposition") == sent.get("Content-Disposition")
    close(replayed)


def test_P3_body_file_names_are_random(storage):
    names = {responses.capture(HttpResponse(body_of(500)))[0].body_file for _ in range(3)}
    assert len(names) == 3
    for name in names:
        assert len(name) >= len(responses.FILE_PREFIX) + 32


def test_P3_a_stored_body_keeps_the_original_headers_of_a_file_response(storage, tmp_path):
    path = tmp_path / "report.csv"
    path.write_bytes(body_of(500))
    stored, sent = responses.capture(FileResponse(path.open("rb"), as_attachment=True))
    assert stored.body_file
    replayed = responses.replay(stored)
    assert replayed["Content-Disposition"] == sent["Content-Disposition"]
    assert replayed["Content-Disposition"] == 'attachment; filename="report.csv"'
    assert replayed["Content-Type"] == sent["Content-Type"] == "text/csv"
    assert content(replayed) == body_of(500)
    close(replayed)


def test_P3_the_original_file_is_closed_with_the_response_sent(storage, tmp_path):
    path = tmp_path / "download.bin"
    path.write_bytes(body_of(500))
    file = path.open("rb")
    _, sent = responses.capture(FileResponse(file))
    assert content(sent) == body_of(500)
    # The WSGI file wrapper must not stream the original file: it was read to its end.
    assert sent.file_to_stream is None
    close(sent)
    assert file.closed


def test_P3_a_replayed_created_as_ok_from_storage(storage, settings):
    settings.IDEMPOTENT_POST_REPLAY_CREATED_AS_OK = True
    stored, _ = responses.capture(HttpResponse(body_of(500), status=201))
    replayed = responses.replay(stored)
    assert replayed.status_code == 200
    assert content(replayed) == body_of(500)
    close(replayed)


@pytest.mark.parametrize("kind", KINDS)
def test_P3_a_body_over_the_file_limit_is_not_kept_and_replayed_as_a_problem(
    storage, tmp_path, kind
):
    data = body_of(FILE_LIMIT + 1)
    stored, sent = responses.capture(make(kind, data, tmp_path))
    assert content(sent) == data
    assert (stored.body, stored.body_file, stored.kept) == (None, "", False)
    assert not list(tmp_path.glob("responses/**/*.*"))
    replayed = responses.replay(stored)
    problem = assert_problem(replayed, 410)
    assert problem["type"] == responses.RESPONSE_NOT_KEPT.type
    assert "201" in problem["detail"]
    assert replayed[responses.REPLAYED_HEADER] == "true"


def test_P3_a_body_over_the_file_limit_with_a_location_replays_a_303_to_it(storage):
    response = HttpResponse(body_of(FILE_LIMIT + 1), status=201)
    response["Location"] = "/orders/5/"
    stored, _ = responses.capture(response)
    assert not stored.kept
    replayed = responses.replay(stored)
    assert replayed.status_code == 303
    assert replayed["Location"] == "/orders/5/"
    assert replayed[responses.REPLAYED_HEADER] == "true"


def test_P3_an_error_over_the_file_limit_is_a_problem_even_with_a_location(storage):
    response = HttpResponse(body_of(FILE_LIMIT + 1), status=400)
    response["Location"] = "/orders/5/"
    stored, _ = responses.capture(response)
    problem = assert_problem(responses.replay(stored), 410)
    assert "400" in problem["detail"]


def test_P3_zero_file_limit_keeps_no_file(storage, settings):
    settings.IDEMPOTENT_POST_MAX_STORED_FILE_SIZE = 0
    stored, sent = responses.capture(StreamingHttpResponse(chunked(body_of(ROW_LIMIT + 1))))
    assert content(sent) == body_of(ROW_LIMIT + 1)
    assert (stored.body_file, stored.kept) == ("", False)
    assert_problem(responses.replay(stored), 410)


def test_P3_capture_at_the_size_limit(storage):
    assert responses.capture(HttpResponse(b"a" * ROW_LIMIT))[0].body == b"a" * ROW_LIMIT
    over = responses.capture(HttpResponse(b"a" * (ROW_LIMIT + 1)))[0]
    assert over.body is None
    assert over.body_file
    assert responses.capture(StreamingHttpResponse(iter([b"a"])))[0].body == b"a"


def test_P3_a_body_file_deleted_from_storage_replays_a_problem_not_a_500(storage):
    stored, _ = responses.capture(HttpResponse(body_of(500), status=201))
    storage.delete(stored.body_file)
    replayed = responses.replay(stored)
    problem = assert_problem(replayed, 410)
    assert problem["type"] == responses.RESPONSE_NOT_KEPT.type
    assert replayed[responses.REPLAYED_HEADER] == "true"


def test_P3_an_unknown_storage_at_replay_is_a_problem_not_a_500(storage, settings):
    stored, _ = responses.capture(HttpResponse(body_of(500)))
    settings.IDEMPOTENT_POST_RESPONSE_STORAGE = "no-such-storage"
    assert_problem(responses.replay(stored), 410)


def test_P3_a_2xx_without_any_body_is_never_replayed_empty():
    assert_problem(responses.replay(StoredResponse(200, [], None)), 410)


def test_P3_a_storage_failure_at_capture_still_sends_the_whole_response(storage, settings):
    settings.IDEMPOTENT_POST_RESPONSE_STORAGE = "no-such-storage"
    data = body_of(500)
    stored, sent = responses.capture(StreamingHttpResponse(chunked(data)))
    assert content(sent) == data
    assert not stored.kept
    assert_problem(responses.replay(stored), 410)


def test_P3_a_stream_past_the_file_limit_is_read_no_further_than_needed(storage):
    read = []

    def view_stream():
        for index in range(1000):
            read.append(index)
            yield b"x" * 100

    stored, sent = responses.capture(StreamingHttpResponse(view_stream()))
    assert not stored.kept
    # Just past the file limit; the rest is read as the client gets it.
    assert len(read) == FILE_LIMIT // 100 + 1
    assert content(sent) == b"x" * 100_000
    assert len(read) == 1000


def test_P3_a_large_stream_is_never_held_whole_in_memory(storage, settings):
    settings.IDEMPOTENT_POST_MAX_RESPONSE_SIZE = 64 * 1024
    settings.IDEMPOTENT_POST_MAX_STORED_FILE_SIZE = 100 * 1024 * 1024
    chunk = b"y" * (64 * 1024)
    count = 50 * 1024 * 1024 // len(chunk)

    def drain(response):
        size = 0
        for part in response.streaming_content:
            size += len(part)
        close(response)
        return size

    tracemalloc.start()
    try:
        stored, sent = responses.capture(StreamingHttpResponse(chunk for _ in range(count)))
        assert drain(sent) == 50 * 1024 * 1024
        replayed = responses.replay(stored)
        assert drain(replayed) == 50 * 1024 * 1024
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stored.body_file
    assert storage.size(stored.body_file) == 50 * 1024 * 1024
    assert peak < 5 * 1024 * 1024


def test_P3_an_async_stream_is_kept_and_sent_on_asynchronously(storage):
    data = body_of(500)

    async def view_stream():
        for part in chunked(data):
            yield part

    stored, sent = responses.capture(StreamingHttpResponse(view_stream()))
    assert sent.is_async

    async def read():
        return b"".join([part async for part in sent])

    assert asyncio.run(read()) == data
    assert stored.body_file
    assert content(responses.replay(stored)) == data


def test_P3_a_failing_stream_fails_the_capture(storage):
    def view_stream():
        yield b"x" * 500
        raise RuntimeError("the view failed half-way")

    with pytest.raises(RuntimeError, match="half-way"):
        responses.capture(StreamingHttpResponse(view_stream()))


def test_P3_discard_deletes_a_body_file(storage):
    stored, _ = responses.capture(HttpResponse(body_of(500)))
    assert storage.exists(stored.body_file)
    responses.discard(stored.body_file)
    assert not storage.exists(stored.body_file)


def test_P3_discard_of_a_missing_name_is_fine(storage):
    responses.discard(f"{responses.FILE_PREFIX}never-stored")
    responses.discard("")


def test_P3_discard_never_raises_on_storage_errors(storage, settings, caplog):
    settings.IDEMPOTENT_POST_RESPONSE_STORAGE = "no-such-storage"
    responses.discard(f"{responses.FILE_PREFIX}some-body")
    assert "Could not delete" in caplog.text


@pytest.mark.parametrize(
    "name",
    ["other/file", f"{responses.FILE_PREFIX}", f"{responses.FILE_PREFIX}../x", "../x"],
)
def test_P3_discard_leaves_names_it_did_not_make(storage, name, caplog):
    storage.save("other/file", ContentFile(b"keep me"))
    responses.discard(name)
    assert storage.exists("other/file")
    assert "not a stored response body" in caplog.text


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "status", "body"),
    [("/t/stream/", 201, b"ab"), ("/t/file/", 200, b"file-body")],
    ids=["streaming", "file"],
)
def test_p3_streaming_and_file_responses(client, storage, url, status, body):
    first = post(client, url)
    assert first.status_code == status
    assert first.streaming
    assert content(first) == body
    assert "Idempotent-Replayed" not in first
    second = post(client, url)
    assert second.status_code == status
    assert second["Idempotent-Replayed"] == "true"
    assert content(second) == body
    assert second["Content-Type"] == first["Content-Type"]
    assert Widget.objects.count() == 1
    record = IdempotencyRecord.objects.get()
    assert record.state == IdempotencyRecord.State.COMPLETED
    assert record.body_stored is True


@pytest.mark.django_db
def test_p3_body_over_max_response_size(client, settings, storage):
    settings.IDEMPOTENT_POST_MAX_RESPONSE_SIZE = 10
    first = post(client)
    assert first.status_code == 201
    assert len(first.content) > 10
    second = post(client)
    assert second.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert content(second) == first.content
    assert second["Location"] == first["Location"]
    assert Widget.objects.count() == 1
    record = IdempotencyRecord.objects.get()
    assert record.body_stored is True
    assert record.body_file
    assert storage.exists(record.body_file)


@pytest.mark.django_db
def test_P3_a_body_over_the_file_limit_through_the_guard(client, settings, storage):
    settings.IDEMPOTENT_POST_MAX_RESPONSE_SIZE = 5
    settings.IDEMPOTENT_POST_MAX_STORED_FILE_SIZE = 10
    first = post(client)
    assert first.status_code == 201
    second = post(client)
    assert second.status_code == 303
    assert second["Location"] == first["Location"]
    assert second["Idempotent-Replayed"] == "true"
    assert Widget.objects.count() == 1
    assert IdempotencyRecord.objects.get().body_stored is False


# P4: a replay carries every header needed to read its body.

TEXT = b"An order confirmation, long enough to be worth compressing. " * 20


def gzip_request():
    return RequestFactory().post("/", headers={"Accept-Encoding": "gzip"})


def assert_gzip_replay(stored, sent_body):
    replayed = responses.replay(stored)
    assert replayed["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in replayed["Vary"]
    assert replayed["Content-Type"] == "text/plain"
    body = content(replayed)
    assert body == sent_body
    assert gzip.decompress(body) == TEXT
    close(replayed)


@pytest.mark.parametrize("size_setting", ["row", "storage"])
def test_P4_gzip_page_inside_the_guard_replays_its_content_encoding(
    storage, settings, size_setting
):
    if size_setting == "storage":
        settings.IDEMPOTENT_POST_MAX_RESPONSE_SIZE = 10
    view = gzip_page(lambda request: HttpResponse(TEXT, content_type="text/plain"))
    response = view(gzip_request())
    assert response["Content-Encoding"] == "gzip"
    stored, sent = responses.capture(response)
    assert_gzip_replay(stored, content(sent))


def test_P4_a_compressed_stream_replays_its_content_encoding(storage):
    def view(request):
        return StreamingHttpResponse(chunked(TEXT, 100), content_type="text/plain")

    response = GZipMiddleware(view)(gzip_request())
    assert response.streaming
    assert response["Content-Encoding"] == "gzip"
    stored, sent = responses.capture(response)
    assert_gzip_replay(stored, content(sent))


def test_P4_body_headers_are_kept_whatever_replay_headers_says(settings):
    settings.IDEMPOTENT_POST_REPLAY_HEADERS = ["Location"]
    response = HttpResponse(b"\x1f\x8b...", content_type="application/json")
    response["Content-Encoding"] = "gzip"
    response["Vary"] = "Accept-Encoding"
    stored, _ = responses.capture(response)
    assert sorted(name for name, _ in stored.headers) == [
        "Content-Encoding",
        "Content-Type",
        "Vary",
    ]


def test_P4_vary_is_kept_with_an_encoding_only():
    response = HttpResponse(b"x", content_type="text/plain")
    response["Vary"] = "Cookie"
    stored, _ = responses.capture(response)
    assert [name for name, _ in stored.headers] == ["Content-Type"]


@pytest.mark.django_db
def test_P4_gzip_page_inside_the_guard_through_the_guard():
    @csrf_exempt
    @idempotent
    @gzip_page
    def view(request):
        Widget.objects.create(name="gzip")
        return HttpResponse(TEXT, status=201, content_type="text/plain")

    def send():
        request = RequestFactory().post(
            "/gzip/",
            b"{}",
            content_type="application/json",
            headers={"Accept-Encoding": "gzip", "Idempotency-Key": "k"},
        )
        return view(request)

    first = send()
    second = send()
    assert second[responses.REPLAYED_HEADER] == "true"
    assert second["Content-Encoding"] == first["Content-Encoding"] == "gzip"
    assert content(second) == content(first)
    assert gzip.decompress(content(second)) == TEXT
    assert Widget.objects.count() == 1


# E1: every error is problem+json.


def in_progress(url):
    """An in-flight reservation of ``url`` with key ``k`` by an anonymous caller."""
    request = RequestFactory().post(url, BODY, content_type="application/json")
    now = timezone.now()
    IdempotencyRecord.objects.create(
        scope="anonymous",
        key="k",
        fingerprint=fingerprint.default(request),
        owner="someone-else",
        locked_until=now + timedelta(seconds=60),
        expires_at=now + timedelta(days=1),
    )


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/t/plain/", "/t/drf/"])
def test_e1_invalid_key(client, url):
    problem = assert_problem(post(client, url, key="a b"), 400)
    assert problem["type"] == "urn:idempotent-post:invalid-key"


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/t/required/", "/t/drf/"])
def test_e1_missing_key(client, url):
    problem = assert_problem(post(client, url, key=None), 400)
    assert problem["type"] == "urn:idempotent-post:missing-key"
    assert "Idempotency-Key" in problem["detail"]


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/t/plain/", "/t/drf/"])
def test_e1_in_progress(client, url):
    in_progress(url)
    response = post(client, url)
    problem = assert_problem(response, 409)
    assert problem["type"] == "urn:idempotent-post:in-progress"
    assert int(response["Retry-After"]) >= 1
    assert Widget.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/t/plain/", "/t/drf/"])
def test_e1_mismatch(client, url):
    post(client, url)
    problem = assert_problem(post(client, url, body=b'{"name": "other"}'), 422)
    assert problem["type"] == "urn:idempotent-post:key-reused"


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/t/plain/", "/t/drf/"])
def test_e1_lock_store_down_fail_closed(client, settings, url):
    # A local-memory cache has no Redis client behind it: the lock store is "down".
    settings.IDEMPOTENT_POST_LOCK_BACKEND = "cache"
    settings.IDEMPOTENT_POST_CACHE = "default"
    settings.IDEMPOTENT_POST_CACHE_FALLBACK = False
    response = post(client, url)
    problem = assert_problem(response, 503)
    assert problem["type"] == "urn:idempotent-post:lock-unavailable"
    assert response["Retry-After"]
    assert Widget.objects.count() == 0


def test_e1_problem_response_shape():
    response = responses.problem_response(responses.IN_PROGRESS, "wait", Retry_After="2")
    assert response["Retry-After"] == "2"
    assert json.loads(response.content) == {
        "type": responses.IN_PROGRESS.type,
        "title": responses.IN_PROGRESS.title,
        "status": 409,
        "detail": "wait",
    }


# E2: bad input is never a 500.


@pytest.mark.django_db
def test_e2_malformed_json_is_left_to_the_view(client):
    first = post(client, body=b'{"name": ')
    assert first.status_code == 201  # The test view treats unreadable JSON as {}.
    second = post(client, body=b'{"name": ')
    assert second["Idempotent-Replayed"] == "true"


@pytest.mark.django_db
def test_e2_malformed_json_on_drf_view(client):
    response = post(client, "/t/drf/", body=b'{"name": ')
    assert response.status_code == 400
    assert Widget.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/xml", "application/octet-stream", "", "application/json; x"],
)
@pytest.mark.parametrize("url", ["/t/plain/", "/t/drf/"])
def test_e2_odd_content_types(client, url, content_type):
    response = post(client, url, body=b"\x00\xff<a/>", content_type=content_type)
    assert response.status_code < 500


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/t/plain/", "/t/drf/"])
def test_e2_body_over_data_upload_limit_is_413(client, settings, url):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    body = json.dumps({"name": "w", "pad": "x" * 1000}).encode()
    problem = assert_problem(post(client, url, body=body), 413)
    assert problem["type"] == "urn:idempotent-post:body-too-large"
    assert Widget.objects.count() == 0
    assert IdempotencyRecord.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data", b"garbage"),
        ("multipart/form-data; boundary=", b"garbage"),
        ("multipart/form-data; boundary=\u00e9", b"garbage"),
        (
            "multipart/form-data; boundary=xyz",
            b"--xyz\r\n"
            b'Content-Disposition: form-data; name="f"; filename="f.bin"\r\n'
            b"Content-Transfer-Encoding: base64\r\n\r\n"
            # Undecodable on every Django release ("!!!" decodes to nothing before 5.2.19).
            b"a===\r\n--xyz--\r\n",
        ),
    ],
    ids=["no-boundary", "empty-boundary", "non-ascii-boundary", "bad-base64-file"],
)
@pytest.mark.parametrize("url", ["/t/upload/", "/t/drf/"])
def test_e2_broken_multipart_is_400(client, url, content_type, body):
    problem = assert_problem(post(client, url, body=body, content_type=content_type), 400)
    assert problem["type"] == "urn:idempotent-post:bad-request-body"
    assert IdempotencyRecord.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [b"garbage", b"--xyz\r\ngarbage", b"--xyz\r\n\r\n\r\n--xyz--", b"--xyz--"],
)
def test_e2_multipart_garbage_with_boundary_is_not_500(client, body):
    # The parser finds no parts; the guard lets the view decide.
    response = post(
        client, "/t/status/201/", body=body, content_type="multipart/form-data; boundary=xyz"
    )
    assert response.status_code == 201


@pytest.mark.django_db
def test_e2_deeply_nested_json_is_not_500(client):
    # json.loads raises RecursionError here, which is no ValueError.
    first = post(client, "/t/status/201/", body=b"[" * 100_000)
    assert first.status_code == 201
    second = post(client, "/t/status/201/", body=b"[" * 100_000)
    assert second["Idempotent-Replayed"] == "true"
    assert_problem(post(client, "/t/status/201/", body=b"[" * 99_999), 422)


@pytest.mark.django_db
def test_e2_json_with_lone_surrogate_is_not_500(client):
    # Valid JSON whose string cannot be encoded to UTF-8 as it stands.
    first = post(client, "/t/status/201/", body=b'{"x": "\\ud800"}')
    assert first.status_code == 201
    second = post(client, "/t/status/201/", body=b'{ "x" : "\\ud800" }')
    assert second["Idempotent-Replayed"] == "true"
