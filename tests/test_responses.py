"""Replay (P1-P3) and errors (E1, E2): what the client gets back."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.http import HttpResponse, StreamingHttpResponse
from django.test import Client, RequestFactory
from django.utils import timezone
from rest_framework.test import APIClient

from idempotent_post import fingerprint, responses
from idempotent_post.models import IdempotencyRecord
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
    if response.streaming:
        return b"".join(response.streaming_content)
    return response.content


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
    response = responses.replay(204, [], None)
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
    stored = responses.capture(response)
    assert stored.status_code == 201
    assert stored.body == b"x"
    assert sorted(name.lower() for name, _ in stored.headers) == ["content-type", "location"]


# P3: responses that cannot be stored.


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "status", "body"),
    [("/t/stream/", 201, b"ab"), ("/t/file/", 200, b"file-body")],
    ids=["streaming", "file"],
)
def test_p3_streaming_and_file_responses(client, url, status, body):
    first = post(client, url)
    assert first.status_code == status
    assert first.streaming
    assert content(first) == body
    assert "Idempotent-Replayed" not in first
    second = post(client, url)
    assert second.status_code == status
    assert second["Idempotent-Replayed"] == "true"
    assert content(second) == b""
    assert second["Content-Type"] == first["Content-Type"]
    assert Widget.objects.count() == 1
    record = IdempotencyRecord.objects.get()
    assert record.state == IdempotencyRecord.State.COMPLETED
    assert record.body_stored is False


@pytest.mark.django_db
def test_p3_body_over_max_response_size(client, settings):
    settings.IDEMPOTENT_POST_MAX_RESPONSE_SIZE = 10
    first = post(client)
    assert first.status_code == 201
    assert len(first.content) > 10
    second = post(client)
    assert second.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert second.content == b""
    assert second["Location"] == first["Location"]
    assert Widget.objects.count() == 1
    assert IdempotencyRecord.objects.get().body_stored is False


def test_p3_capture_at_the_size_limit(settings):
    settings.IDEMPOTENT_POST_MAX_RESPONSE_SIZE = 3
    assert responses.capture(HttpResponse(b"abc")).body == b"abc"
    assert responses.capture(HttpResponse(b"abcd")).body is None
    assert responses.capture(StreamingHttpResponse(iter([b"a"]))).body is None


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
            b"!!!\r\n--xyz--\r\n",
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
