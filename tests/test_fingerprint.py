"""The request fingerprint (F1-F3): what makes a retry "the same request"."""

from __future__ import annotations

import json
import os
from urllib.parse import urlencode

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.http import HttpRequest, JsonResponse
from django.test import Client, RequestFactory
from rest_framework.test import APIClient

from idempotent_post import fingerprint, idempotent
from idempotent_post.fingerprint import fingerprint_for
from idempotent_post.models import IdempotencyRecord
from tests.testapp.models import Widget

PROBLEM = "application/problem+json"
MISMATCH_TYPE = "urn:idempotent-post:key-reused"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def client():
    return Client(raise_request_exception=False)


@pytest.fixture
def rf():
    return RequestFactory()


def post(client, key="k", url="/t/plain/", body=b'{"name": "w"}', content_type=None):
    return client.post(
        url,
        body,
        content_type=content_type or "application/json",
        headers={"Idempotency-Key": key},
    )


def assert_mismatch(response):
    assert response.status_code == 422
    assert response["Content-Type"] == PROBLEM
    problem = json.loads(response.content)
    assert problem["status"] == 422
    assert problem["type"] == MISMATCH_TYPE


def json_fp(rf, body, path="/t/plain/", method="post", content_type="application/json"):
    return fingerprint.default(getattr(rf, method)(path, body, content_type=content_type))


# F1: method, path with query string, and body.


def test_f1_fingerprint_covers_method_path_query_and_body(rf):
    base = json_fp(rf, b'{"name": "w"}')
    assert json_fp(rf, b'{"name": "w"}') == base
    assert json_fp(rf, b'{"name": "x"}') != base
    assert json_fp(rf, b'{"name": "w"}', path="/t/other/") != base
    assert json_fp(rf, b'{"name": "w"}', path="/t/plain/?page=2") != base
    assert json_fp(rf, b'{"name": "w"}', method="put") != base
    assert len(base) == 64


@pytest.mark.django_db
@pytest.mark.parametrize(
    "second",
    [
        lambda c: post(c, body=b'{"name": "other"}'),
        lambda c: post(c, url="/t/plain/?x=1"),
        lambda c: post(c, url="/t/status/201/"),
        lambda c: c.put(
            "/t/plain/",
            b'{"name": "w"}',
            content_type="application/json",
            headers={"Idempotency-Key": "k"},
        ),
        lambda c: c.patch(
            "/t/plain/",
            b'{"name": "w"}',
            content_type="application/json",
            headers={"Idempotency-Key": "k"},
        ),
    ],
    ids=["body", "query-string", "path", "method-put", "method-patch"],
)
def test_f1_same_key_different_request_is_422_and_view_does_not_run(client, second):
    first = post(client)
    assert first.status_code == 201
    assert_mismatch(second(client))
    assert Widget.objects.count() == 1
    # The key still belongs to the first request.
    assert post(client)["Idempotent-Replayed"] == "true"


@pytest.mark.django_db
def test_f1_mismatch_on_drf_view():
    api = APIClient()
    headers = {"Idempotency-Key": "k"}
    assert api.post("/t/drf/", {"name": "a"}, format="json", headers=headers).status_code == 201
    assert_mismatch(api.post("/t/drf/", {"name": "b"}, format="json", headers=headers))
    assert Widget.objects.count() == 1


# F2: canonical bodies.


def test_f2_json_key_order_and_whitespace_do_not_matter(rf):
    compact = json_fp(rf, b'{"a":1,"b":{"x":[1,2],"y":null}}')
    spread = b'\n{ "b" : { "y" : null ,\n "x" : [ 1 , 2 ] } ,\t"a" : 1 }\n'
    assert json_fp(rf, spread) == compact


def test_f2_json_values_still_matter(rf):
    base = json_fp(rf, b'{"a": [1, 2]}')
    assert json_fp(rf, b'{"a": [2, 1]}') != base
    assert json_fp(rf, b'{"a": [1, 2], "b": 0}') != base
    assert json_fp(rf, b'{"a": "[1, 2]"}') != base


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=utf-8", "Application/JSON", "application/merge-patch+json"],
)
def test_f2_json_canonical_for_every_json_content_type(rf, content_type):
    one = json_fp(rf, b'{"a": 1, "b": 2}', content_type=content_type)
    two = json_fp(rf, b'{"b":2,"a":1}', content_type=content_type)
    assert one == two


def test_f2_malformed_json_falls_back_to_bytes(rf):
    assert json_fp(rf, b'{"a": ') == json_fp(rf, b'{"a": ')
    assert json_fp(rf, b'{"a": ') != json_fp(rf, b'{"a":  ')


@pytest.mark.django_db
def test_f2_reordered_json_replays(client):
    first = post(client, body=b'{"name": "w", "colour": "red"}')
    second = post(client, body=b'{ "colour" : "red",\n  "name" : "w" }')
    assert second.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert second.content == first.content
    assert Widget.objects.count() == 1


@pytest.mark.django_db
def test_f2_reordered_json_replays_on_drf_view():
    api = APIClient()
    headers = {"Idempotency-Key": "k"}
    json_type = {"content_type": "application/json"}
    first = api.post("/t/drf/", b'{"name": "w", "n": 1}', headers=headers, **json_type)
    second = api.post("/t/drf/", b'{"n":1,"name":"w"}', headers=headers, **json_type)
    assert first.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert Widget.objects.count() == 1


def form_fp(rf, fields, path="/t/plain/"):
    return fingerprint.default(rf.post(path, urlencode(fields), content_type=FORM))


def test_f2_form_ignores_csrf_token_and_form_key(rf):
    one = form_fp(rf, [("name", "w"), ("csrfmiddlewaretoken", "aaa"), ("idempotency_key", "1")])
    two = form_fp(rf, [("csrfmiddlewaretoken", "bbb"), ("name", "w"), ("idempotency_key", "2")])
    three = form_fp(rf, [("name", "w")])
    assert one == two == three
    assert form_fp(rf, [("name", "x"), ("csrfmiddlewaretoken", "aaa")]) != one


def test_f2_form_field_setting(rf, settings):
    settings.IDEMPOTENT_POST_FORM_FIELD = "form_key"
    assert form_fp(rf, [("name", "w"), ("form_key", "1")]) == form_fp(rf, [("name", "w")])
    assert form_fp(rf, [("name", "w"), ("idempotency_key", "1")]) != form_fp(rf, [("name", "w")])


def test_f2_form_value_boundaries_are_unambiguous(rf):
    assert form_fp(rf, [("a", "b=c")]) != form_fp(rf, [("a=b", "c")])
    assert form_fp(rf, [("a", "1"), ("b", "2")]) != form_fp(rf, [("a", "1;b=2")])


@pytest.mark.django_db
def test_f2_form_post_with_new_csrf_token_replays(client):
    body = urlencode({"name": "w", "csrfmiddlewaretoken": "first-token"})
    first = post(client, body=body, content_type=FORM)
    body = urlencode({"csrfmiddlewaretoken": "second-token", "name": "w"})
    second = post(client, body=body, content_type=FORM)
    assert first.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert Widget.objects.count() == 1


def multipart_fp(rf, content, name="a.txt", **fields):
    request = rf.post("/t/upload/", {"file": SimpleUploadedFile(name, content), **fields})
    value = fingerprint.default(request)
    # The upload is rewound for the view.
    assert request.FILES["file"].read() == content
    return value


def test_f2_multipart_same_files_same_fingerprint(rf):
    assert multipart_fp(rf, b"hello", note="x") == multipart_fp(rf, b"hello", note="x")


def test_f2_multipart_different_content_different_fingerprint(rf):
    assert multipart_fp(rf, b"hello") != multipart_fp(rf, b"hellO")
    assert multipart_fp(rf, b"hello", note="x") != multipart_fp(rf, b"hello", note="y")


def test_f2_multipart_ignores_csrf_token_and_form_key(rf):
    one = multipart_fp(rf, b"hello", csrfmiddlewaretoken="a", idempotency_key="1")
    two = multipart_fp(rf, b"hello", csrfmiddlewaretoken="b", idempotency_key="2")
    assert one == two == multipart_fp(rf, b"hello")


@pytest.fixture
def streamed_upload(monkeypatch, settings):
    """Uploads over 1 KiB go to a temporary file; ``request.body`` must never be read."""
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024
    seen = {"handlers": [], "chunks": []}

    def body(request):
        raise AssertionError("request.body was read: the upload was loaded whole")

    monkeypatch.setattr(HttpRequest, "body", property(body))

    new_file = TemporaryFileUploadHandler.new_file

    def spy_new_file(self, *args, **kwargs):
        seen["handlers"].append(type(self))
        return new_file(self, *args, **kwargs)

    monkeypatch.setattr(TemporaryFileUploadHandler, "new_file", spy_new_file)

    chunks = TemporaryUploadedFile.chunks

    def spy_chunks(self, *args, **kwargs):
        for chunk in chunks(self, *args, **kwargs):
            seen["chunks"].append(len(chunk))
            yield chunk

    monkeypatch.setattr(TemporaryUploadedFile, "chunks", spy_chunks)
    return seen


@pytest.mark.django_db
def test_f2_big_upload_is_streamed_and_replayed(client, streamed_upload):
    content = os.urandom(200 * 1024)

    def upload(data):
        return client.post(
            "/t/upload/",
            {"file": SimpleUploadedFile("big.bin", data)},
            headers={"Idempotency-Key": "upload"},
        )

    first = upload(content)
    assert first.status_code == 200
    assert first.json() == {"size": len(content), "in_memory": False}
    assert "Idempotent-Replayed" not in first
    assert streamed_upload["handlers"] == [TemporaryFileUploadHandler]
    # Hashed and read in chunks: once by the fingerprint, once by the view.
    assert sum(streamed_upload["chunks"]) == 2 * len(content)
    assert max(streamed_upload["chunks"]) <= 64 * 1024

    second = upload(content)
    assert second.status_code == 200
    assert second["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    assert Widget.objects.count() == 1

    changed = content[:-1] + bytes([content[-1] ^ 1])
    assert_mismatch(upload(changed))
    assert Widget.objects.count() == 1


@pytest.mark.django_db
def test_f2_multipart_to_view_reading_body_is_not_500(client):
    response = client.post("/t/plain/", {"name": "w"}, headers={"Idempotency-Key": "k"})
    assert response.status_code < 500


# F3: pluggable per view and globally.


def method_and_path(request):
    return f"{request.method} {request.path}"


def test_f3_aliases_and_dotted_path(rf):
    request = rf.post("/x/", b"{}", content_type="application/json")
    assert fingerprint_for(request, "default") == fingerprint.default(request)
    assert fingerprint_for(request) == fingerprint.default(request)
    dotted = fingerprint_for(request, "tests.test_fingerprint.method_and_path")
    assert dotted == "POST /x/"


def test_f3_long_fingerprint_is_digested(rf):
    value = fingerprint_for(rf.post("/"), lambda request: "x" * 100)
    assert len(value) == 64
    assert value != "x" * 64


@pytest.mark.django_db
def test_f3_fingerprint_per_view(rf):
    @idempotent(fingerprint=lambda request: "body does not count")
    def view(request):
        widget = Widget.objects.create(name="f3")
        return JsonResponse({"id": widget.pk}, status=201)

    def request(body):
        return rf.post(
            "/f3/", body, content_type="application/json", headers={"Idempotency-Key": "k"}
        )

    first = view(request(b'{"n": 1}'))
    second = view(request(b'{"n": 2}'))
    assert first.status_code == second.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert Widget.objects.count() == 1
    assert IdempotencyRecord.objects.get().fingerprint == "body does not count"


@pytest.mark.django_db
def test_f3_fingerprint_per_view_beats_setting(rf, settings):
    settings.IDEMPOTENT_POST_FINGERPRINT = "no-such-alias"

    @idempotent(fingerprint=method_and_path)
    def view(request):
        return JsonResponse({}, status=201)

    assert view(rf.post("/f3/", headers={"Idempotency-Key": "k"})).status_code == 201


@pytest.mark.django_db
def test_f3_fingerprint_setting(client, settings):
    settings.IDEMPOTENT_POST_FINGERPRINT = "tests.test_fingerprint.method_and_path"
    first = post(client, body=b'{"name": "a"}')
    second = post(client, body=b'{"name": "b"}')
    assert second["Idempotent-Replayed"] == "true"
    assert second.content == first.content
    assert Widget.objects.count() == 1
    assert IdempotencyRecord.objects.get().fingerprint == "POST /t/plain/"


@pytest.mark.parametrize("bad", ["nope", 3, "tests.test_fingerprint.missing"])
def test_f3_unknown_fingerprint_is_improperly_configured(rf, bad):
    with pytest.raises(ImproperlyConfigured, match="IDEMPOTENT_POST_FINGERPRINT"):
        fingerprint_for(rf.post("/"), bad)


def test_f3_unknown_fingerprint_message_names_the_accepted_forms(rf, settings):
    settings.IDEMPOTENT_POST_FINGERPRINT = "sha1"
    with pytest.raises(ImproperlyConfigured) as raised:
        fingerprint_for(rf.post("/"))
    message = str(raised.value)
    assert "callable" in message
    assert "dotted path" in message
    assert "default" in message


@pytest.mark.django_db
def test_f3_unknown_fingerprint_setting_fails_loudly_over_http(settings):
    settings.IDEMPOTENT_POST_FINGERPRINT = "sha1"
    with pytest.raises(ImproperlyConfigured):
        post(Client())
    assert Widget.objects.count() == 0
