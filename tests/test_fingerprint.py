"""The request fingerprint (F1-F3): what makes a retry "the same request"."""

from __future__ import annotations

import io
import json
import os
import re
from urllib.parse import urlencode

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.http import HttpRequest, JsonResponse
from django.test import Client, RequestFactory
from rest_framework.test import APIClient

from demo_project.shop.models import Order, Product
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


# F4: requests a view can tell apart have different fingerprints.


def raw_form_fp(rf, body, path="/t/plain/"):
    return fingerprint.default(rf.post(path, body, content_type=FORM))


def test_F4_repeated_form_field_keeps_its_order(rf):
    assert raw_form_fp(rf, b"item=a&item=b") != raw_form_fp(rf, b"item=b&item=a")
    # The order across different names does not matter: request.POST cannot show it.
    assert raw_form_fp(rf, b"item=a&x=1&item=b") == raw_form_fp(rf, b"x=1&item=a&item=b")
    assert raw_form_fp(rf, b"a=1&b=2") == raw_form_fp(rf, b"b=2&a=1")


def test_F4_form_spellings_the_view_cannot_tell_apart_are_alike(rf):
    # request.POST decodes "+" and percent-escapes and reads "a" as "a=".
    assert raw_form_fp(rf, b"name=a+b&x") == raw_form_fp(rf, b"name=a%20b&x=")
    assert raw_form_fp(rf, b"name=%41") == raw_form_fp(rf, b"name=A")
    assert raw_form_fp(rf, b"a=1&&b=2") == raw_form_fp(rf, b"a=1&b=2")


@pytest.mark.django_db
def test_F4_repeated_form_field_in_other_order_is_a_mismatch(client):
    first = post(client, body=b"item=a&item=b", content_type=FORM)
    assert first.status_code == 201
    assert_mismatch(post(client, body=b"item=b&item=a", content_type=FORM))
    assert post(client, body=b"item=a&item=b", content_type=FORM)["Idempotent-Replayed"] == "true"
    assert Widget.objects.count() == 1


@pytest.mark.parametrize(
    ("one", "two"),
    [
        ("0.1", "0.1000000000000000055511151231257827"),
        ("0.1", "0.10000000000000001"),
        ("1e400", "2e400"),
        ("1E400", "1e401"),
        ("1", "1.0"),
        ("1", "1e0"),
        ("0.0", "-0.0"),
        ("1", '"1"'),
        ("1.5", '"1.5"'),
        ("1e400", "Infinity"),
        ("NaN", '"NaN"'),
        ("9" * 5000, "9" * 4999 + "8"),
        ("0." + "0" * 5000 + "1", "0." + "0" * 5000 + "2"),
    ],
)
def test_F4_json_numbers_compare_by_exact_value(rf, one, two):
    assert json_fp(rf, f'{{"n": {one}}}'.encode()) != json_fp(rf, f'{{"n": {two}}}'.encode())
    assert json_fp(rf, f"[{one}]".encode()) != json_fp(rf, f"[{two}]".encode())


@pytest.mark.parametrize(
    ("one", "two"),
    [
        ("1.0", "1.00"),
        ("1.5", "15e-1"),
        ("100.0", "1E2"),
        ("0.0", "0e7"),
        ("-0.0", "-0E-3"),
        ("0", "-0"),
        ("1e400", "10e399"),
    ],
)
def test_F4_json_numbers_of_equal_value_and_type_are_alike(rf, one, two):
    assert json_fp(rf, f'{{"n": {one}}}'.encode()) == json_fp(rf, f'{{"n": {two}}}'.encode())


def test_F4_json_key_order_and_whitespace_still_do_not_matter(rf):
    big = "9" * 5000
    one = f'{{"a": 0.1000000000000000055511151231257827, "b": [1, 2.50, {big}], "c": 1e400}}'
    two = f'{{ "c":1E+400 ,"b":[ 1,2.5,{big}] ,\n"a":0.1000000000000000055511151231257827 }}'
    assert json_fp(rf, one.encode()) == json_fp(rf, two.encode())


def test_F4_json_repeated_keys_keep_their_order(rf):
    # json.loads keeps the last value: the view sees 2 in one and 1 in the other.
    assert json_fp(rf, b'{"a": 1, "a": 2}') != json_fp(rf, b'{"a": 2, "a": 1}')
    assert json_fp(rf, b'{"a": 1, "b": 0, "a": 2}') == json_fp(rf, b'{"b": 0, "a": 1, "a": 2}')


def test_F4_json_structure_is_unambiguous(rf):
    assert json_fp(rf, b'{"a": {}}') != json_fp(rf, b'{"a": []}')
    assert json_fp(rf, b'[["a", 1]]') != json_fp(rf, b'{"a": 1}')
    assert json_fp(rf, b"[[1], 2]") != json_fp(rf, b"[[1, 2]]")
    assert json_fp(rf, b'{"a": null}') != json_fp(rf, b'{"a": "null"}')
    assert json_fp(rf, b'{"a": true}') != json_fp(rf, b'{"a": 1}')


def test_F4_json_canonical_up_to_max_depth_then_bytes(rf):
    def nested(depth, inner):
        return ('{"a": ' * (depth - 1) + inner + "}" * (depth - 1)).encode()

    depth = fingerprint.MAX_JSON_DEPTH
    assert json_fp(rf, nested(depth, '{"x": 1, "y": 2}')) == json_fp(
        rf, nested(depth, '{"y":2,"x":1}')
    )
    # One level deeper, the bytes are the fingerprint, the same way on every retry.
    deeper = nested(depth + 1, '{"x": 1, "y": 2}')
    assert json_fp(rf, deeper) == json_fp(rf, deeper)
    assert json_fp(rf, deeper) != json_fp(rf, nested(depth + 1, '{"y":2,"x":1}'))


@pytest.mark.django_db
def test_F4_json_number_spelled_more_exactly_is_a_mismatch(client):
    assert post(client, body=b'{"name": "w", "amount": 0.1}').status_code == 201
    assert_mismatch(post(client, body=b'{"name": "w", "amount": 0.10000000000000001}'))
    assert_mismatch(post(client, body=b'{"name": "w", "amount": 1}'))
    replay = post(client, body=b'{"amount": 0.10, "name": "w"}')
    assert replay["Idempotent-Replayed"] == "true"
    assert Widget.objects.count() == 1


# E2 and F2: any bytes in a body fingerprint without an error.


@pytest.mark.parametrize(
    "body",
    [
        b"email=jos%C3%A9%40example.com",
        "email=josé@example.com".encode(),
        "email=josé@example.com".encode("latin-1"),
        b"name=%FF%FE&%E9=1",
        b"\xff\xfe=\x00\x80",
        "name=😀&name=%F0%9F%98%80".encode(),
    ],
)
def test_E2_non_ascii_form_body_fingerprints(rf, body):
    assert raw_form_fp(rf, body) == raw_form_fp(rf, body)


def test_E2_form_values_compare_by_their_bytes(rf):
    assert raw_form_fp(rf, "name=José".encode()) == raw_form_fp(rf, b"name=Jos%C3%A9")
    assert raw_form_fp(rf, b"name=Jos%C3%A9") != raw_form_fp(rf, b"name=Jos%E9")
    # Not UTF-8: the view sees U+FFFD for both, but the bytes still tell them apart.
    assert raw_form_fp(rf, b"name=%FF") != raw_form_fp(rf, b"name=%FE")
    assert raw_form_fp(rf, b"name=\xff") == raw_form_fp(rf, b"name=%FF")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body", [b"name=Jos%C3%A9", "name=José".encode(), b"name=%FF", b"name=\xe9"]
)
def test_E2_non_ascii_form_post_is_not_500(client, body):
    first = post(client, body=body, content_type=FORM)
    assert first.status_code == 201
    again = post(client, body=body, content_type=FORM)
    assert again["Idempotent-Replayed"] == "true"
    assert Widget.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("body", [b"name=Jos%C3%A9", b"name=%E9t%E9"])
def test_E2_non_ascii_form_post_to_drf_view_is_not_500(body):
    api = APIClient(raise_request_exception=False)
    headers = {"Idempotency-Key": "k"}
    first = api.post("/t/drf/", body, content_type=FORM, headers=headers)
    assert first.status_code == 201
    again = api.post("/t/drf/", body, content_type=FORM, headers=headers)
    assert again["Idempotent-Replayed"] == "true"
    assert Widget.objects.count() == 1


def checkout(client, email):
    from django.core.management import call_command

    call_command("seed_demo", stdout=io.StringIO())
    page = client.get("/checkout/").content.decode()
    key = re.search(r'name="idempotency_key" value="([^"]+)"', page).group(1)
    fields = {"product": Product.objects.first().pk, "quantity": 1, "email": email}
    body = urlencode({**fields, "idempotency_key": key})
    return client.post("/checkout/", body, content_type=FORM), body


@pytest.mark.django_db
def test_E2_checkout_with_accented_email_is_not_500(client):
    response, _ = checkout(client, "josé@example.com")
    # Django's EmailValidator wants an ASCII local part: a form error, not a crash.
    assert response.status_code == 200
    assert "email" in response.context["form"].errors
    assert not Order.objects.exists()


@pytest.mark.django_db
def test_E2_checkout_with_accented_domain_places_one_order(client):
    first, body = checkout(client, "jose@exämple.com")
    assert first.status_code == 303
    again = client.post("/checkout/", body, content_type=FORM)
    assert again.status_code == 303
    assert again["Location"] == first["Location"]
    assert Order.objects.get().email == "jose@exämple.com"


@pytest.mark.parametrize(
    "body",
    [
        b'{"name": "\xff"}',
        '{"name": "José"}'.encode(),
        '{"name": "José"}'.encode("utf-16"),
        '{"name": "José"}'.encode("latin-1"),
        b'{"name": "\\ud800"}',
        b"\xef\xbb\xbf{}",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a": ' * 150 + b"1e400" + b"}" * 150,
    ],
)
def test_E2_odd_json_body_fingerprints(rf, body):
    assert json_fp(rf, body) == json_fp(rf, body)


# E4: a DRF permission read the request stream before the guard.

READS_DATA = "/t/drf-reads-data/"


@pytest.mark.django_db
def test_E4_json_after_permission_read_data():
    api = APIClient(raise_request_exception=False)
    headers = {"Idempotency-Key": "k"}
    json_type = {"content_type": "application/json"}
    first = api.post(READS_DATA, b'{"name": "w", "n": 1}', headers=headers, **json_type)
    assert first.status_code == 201
    again = api.post(READS_DATA, b'{ "n" : 1, "name" : "w" }', headers=headers, **json_type)
    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert_mismatch(api.post(READS_DATA, b'{"name": "w", "n": 1.0}', headers=headers, **json_type))
    assert_mismatch(api.post(READS_DATA, b'{"name": "x", "n": 1}', headers=headers, **json_type))
    assert Widget.objects.count() == 1
    # Unkeyed requests are refused before the view (required=True), never a 500.
    assert api.post(READS_DATA, b'{"name": "w"}', **json_type).status_code == 400


@pytest.mark.django_db
def test_E4_form_after_permission_read_data():
    api = APIClient(raise_request_exception=False)
    headers = {"Idempotency-Key": "k"}
    first = api.post(READS_DATA, b"name=Jos%C3%A9&tag=a&tag=b", content_type=FORM, headers=headers)
    assert first.status_code == 201
    assert first.json()["name"] == "José"
    again = api.post(READS_DATA, b"tag=a&name=Jos%C3%A9&tag=b", content_type=FORM, headers=headers)
    assert again["Idempotent-Replayed"] == "true"
    assert_mismatch(
        api.post(READS_DATA, b"name=Jos%C3%A9&tag=b&tag=a", content_type=FORM, headers=headers)
    )
    assert Widget.objects.count() == 1


@pytest.mark.django_db
def test_E4_multipart_after_permission_read_data():
    api = APIClient(raise_request_exception=False)
    headers = {"Idempotency-Key": "k"}

    def upload(content, note="x"):
        data = {"file": SimpleUploadedFile("a.bin", content), "note": note}
        return api.post(READS_DATA, data, format="multipart", headers=headers)

    first = upload(b"hello")
    assert first.status_code == 201
    assert first.json()["name"] == "upload-5"
    assert upload(b"hello")["Idempotent-Replayed"] == "true"
    assert_mismatch(upload(b"hellO"))
    assert_mismatch(upload(b"hello", note="y"))
    assert Widget.objects.count() == 1


@pytest.mark.django_db
def test_E4_stream_read_by_a_custom_parser():
    # Even recent DRF versions let a parser of their own read the stream.
    api = APIClient(raise_request_exception=False)
    headers = {"Idempotency-Key": "k"}
    first = api.post(READS_DATA, b"hello", content_type="text/plain", headers=headers)
    assert first.status_code == 201
    assert first.json()["name"] == "hello"
    again = api.post(READS_DATA, b"hello", content_type="text/plain", headers=headers)
    assert again["Idempotent-Replayed"] == "true"
    assert_mismatch(api.post(READS_DATA, b"hellO", content_type="text/plain", headers=headers))
    assert Widget.objects.count() == 1


@pytest.mark.django_db
def test_E4_big_multipart_after_permission_read_data(settings):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024
    api = APIClient(raise_request_exception=False)
    content = os.urandom(64 * 1024)

    def upload(data):
        files = {"file": SimpleUploadedFile("big.bin", data)}
        return api.post(READS_DATA, files, format="multipart", headers={"Idempotency-Key": "k"})

    first = upload(content)
    assert first.status_code == 201
    assert first.json()["name"] == f"upload-{len(content)}"
    assert upload(content)["Idempotent-Replayed"] == "true"
    assert_mismatch(upload(content[:-1] + bytes([content[-1] ^ 1])))
    assert Widget.objects.count() == 1


@pytest.mark.django_db
def test_E4_deep_json_after_permission_read_data():
    api = APIClient(raise_request_exception=False)
    headers = {"Idempotency-Key": "k"}

    def deep(leaf):
        return ('{"a": ' * 300 + leaf + "}" * 300).encode()

    first = api.post(READS_DATA, deep("1"), content_type="application/json", headers=headers)
    assert first.status_code == 201
    again = api.post(READS_DATA, deep("1"), content_type="application/json", headers=headers)
    assert again["Idempotent-Replayed"] == "true"
    assert_mismatch(
        api.post(READS_DATA, deep("2"), content_type="application/json", headers=headers)
    )
    assert Widget.objects.count() == 1


@pytest.mark.django_db
def test_E4_same_request_by_session_and_by_token_replays():
    # DRF's CSRF check for session auth reads request.POST, which parses the body before
    # the guard; token auth does not. The key is alice's either way (K3).
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    alice = get_user_model().objects.create_user("alice", password="pw")
    Token.objects.create(user=alice, key="alice-token")
    body = b'{"name": "w", "n": 0.5}'
    csrf = "a" * 32
    by_session = APIClient(enforce_csrf_checks=True, raise_request_exception=False)
    by_session.login(username="alice", password="pw")
    by_session.cookies["csrftoken"] = csrf
    first = by_session.post(
        "/t/drf/",
        body,
        content_type="application/json",
        headers={"Idempotency-Key": "k", "X-CSRFToken": csrf},
    )
    assert first.status_code == 201
    by_token = APIClient(raise_request_exception=False)
    again = by_token.post(
        "/t/drf/",
        b'{"n": 0.5, "name": "w"}',
        content_type="application/json",
        headers={"Idempotency-Key": "k", "Authorization": "Token alice-token"},
    )
    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert Widget.objects.count() == 1


def drf_fp(rf, body, content_type, parsed_first):
    from rest_framework.parsers import FormParser, JSONParser
    from rest_framework.request import Request

    from tests.testapp.views import PlainTextParser

    django_request = rf.post("/t/drf/", body, content_type=content_type)
    request = Request(django_request, parsers=[JSONParser(), FormParser(), PlainTextParser()])
    if parsed_first:
        # As a permission, a throttle or DRF's CSRF check for session auth would.
        request.data  # noqa: B018
    return fingerprint.default(request)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (
            b'{"name": "w", "n": [1, 0.5, 0.1, -0.0, 1e16, 1.50, "x", null, true]}',
            "application/json",
        ),
        ('{"é": {"b": 2, "a": "José"}}'.encode(), "application/json; charset=utf-8"),
        (b"", "application/json"),
        (b"name=Jos%C3%A9&tag=b&tag=a&csrfmiddlewaretoken=x", FORM),
        ("name=José&tag=b".encode(), FORM),
        ("hello, José".encode(), "text/plain"),
    ],
)
def test_E4_parsed_first_or_not_fingerprints_alike(rf, body, content_type):
    assert drf_fp(rf, body, content_type, True) == drf_fp(rf, body, content_type, False)


def test_F4_a_remembered_json_form_is_the_form_of_those_bytes(rf):
    # A retry sends the same bytes: their form is remembered, never another body's.
    one, two = b'{"b": 1, "a": [1, 2]}', b'{"a": [1, 2], "b": 2}'
    first = json_fp(rf, one)
    assert json_fp(rf, two) != first
    assert json_fp(rf, one) == first
    assert fingerprint._remembered_json_form(one) == fingerprint._json_form(one)
    assert fingerprint._remembered_json_form(b"not json") == b"not json"


def test_F4_only_small_json_bodies_are_remembered_and_only_so_many(rf):
    remembered = fingerprint._remembered_json_form
    remembered.cache_clear()
    large = b'{"a": "' + b"x" * fingerprint.REMEMBERED_BODY + b'"}'
    json_fp(rf, large)
    assert remembered.cache_info().currsize == 0
    for n in range(remembered.cache_info().maxsize + 10):
        json_fp(rf, b'{"n": %d}' % n)
    assert remembered.cache_info().currsize == remembered.cache_info().maxsize == 256
