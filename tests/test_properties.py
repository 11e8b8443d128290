"""Property tests (Hypothesis) for the key parser (K1, K2), the fingerprint (F2, F4) and
for bad input (E2)."""

from __future__ import annotations

import contextlib
import json
from decimal import Decimal
from urllib.parse import quote_from_bytes, urlencode

import pytest
from django.test import Client, RequestFactory
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from idempotent_post import fingerprint
from idempotent_post.keys import InvalidKey, parse_key

VISIBLE = "".join(chr(code) for code in range(0x21, 0x7F))
BARE = VISIBLE.replace(",", "")

# Text that often holds what matters to the parser: quotes, escapes, commas, blanks.
KEYISH = st.text(
    st.one_of(st.sampled_from(list('a"\\, \t')), st.sampled_from(list(VISIBLE)), st.characters()),
    max_size=300,
)

quick = settings(max_examples=200, deadline=None, database=None)
through_http = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def sf_quote(key: str) -> str:
    """``key`` as a Structured-Field string (RFC 8941)."""
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def is_valid_key(key: str, max_length: int = 255) -> bool:
    return 1 <= len(key) <= max_length and all("\x21" <= char <= "\x7e" for char in key)


def parsed_or_none(value: str, **kwargs: int) -> str | None:
    try:
        return parse_key(value, **kwargs)
    except InvalidKey:
        return None


# Header values that parse often enough to test what an accepted key looks like.
KEYISH_OR_VALID = st.one_of(
    KEYISH,
    st.text(st.sampled_from(VISIBLE), min_size=1, max_size=300),
    st.text(st.sampled_from(VISIBLE), min_size=1, max_size=40).map(lambda key: f" {key}\t"),
)


@quick
@given(value=st.one_of(st.text(), KEYISH))
def test_k2_parse_key_raises_only_invalid_key(value):
    # Anything else (IndexError, KeyError, ...) escapes and fails the test.
    with contextlib.suppress(InvalidKey):
        parse_key(value)


@quick
@given(value=KEYISH_OR_VALID, max_length=st.integers(min_value=1, max_value=300))
def test_k2_accepted_keys_are_short_visible_ascii(value, max_length):
    key = parsed_or_none(value, max_length=max_length)
    assume(key is not None)
    assert is_valid_key(key, max_length)


@quick
@given(key=st.text(st.sampled_from(VISIBLE), min_size=1, max_size=255))
def test_k1_sf_string_round_trip(key):
    assert parse_key(sf_quote(key)) == key


@quick
@given(key=st.text(st.sampled_from(VISIBLE), min_size=256, max_size=300))
def test_k2_too_long_in_any_form(key):
    for value in (key.replace(",", "x"), sf_quote(key)):
        with pytest.raises(InvalidKey):
            parse_key(value)


@quick
@given(one=st.text(st.sampled_from(BARE.replace('"', "")), min_size=1, max_size=20))
def test_k2_repeated_header_is_one_key(one):
    assert parse_key(f"{one}, {one}") == one
    assert parse_key(f"{one},{sf_quote(one)}") == one


@quick
@given(
    one=st.text(st.sampled_from(BARE.replace('"', "")), min_size=1, max_size=20),
    two=st.text(st.sampled_from(BARE.replace('"', "")), min_size=1, max_size=20),
)
def test_k2_two_different_headers_are_refused(one, two):
    assume(one != two)
    with pytest.raises(InvalidKey):
        parse_key(f"{one},{two}")


@quick
@example(key='a"b')
@example(key='a\\"')
@given(key=st.text(st.sampled_from(BARE), min_size=1, max_size=255).filter(lambda k: k[0] != '"'))
def test_k1_bare_token_round_trip(key):
    # Any visible ASCII without a comma, not starting with a quote, is a bare token.
    assert parse_key(key) == key
    assert parse_key(sf_quote(key)) == key


@quick
@example(value='x"1,2"y')
@given(value=KEYISH_OR_VALID)
def test_k2_accepted_bare_key_has_no_comma(value):
    assume(not value.strip(" \t").startswith('"'))
    key = parsed_or_none(value)
    assume(key is not None)
    assert "," not in key


# E2 through HTTP: whatever arrives, the guarded view never answers 500.

CONTENT_TYPES = st.one_of(
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "application/problem+json",
            "application/x-www-form-urlencoded",
            "text/plain",
            "application/octet-stream",
            "",
        ]
    ),
    st.text(max_size=60),
)
MULTIPART_TYPES = st.sampled_from(
    [
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "multipart/form-data; boundary=xyz",
        'multipart/form-data; boundary="x y"',
    ]
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8).filter(lambda k: k != "name"), inner, max_size=4)
    ),
    max_leaves=10,
)
# Form bodies as browsers send them (percent-encoded UTF-8) and as they should not.
FORM_FIELDS = st.lists(st.tuples(st.text(max_size=10), st.text(max_size=20)), max_size=4)
FORM_BODIES = st.one_of(
    FORM_FIELDS.map(lambda fields: urlencode(fields).encode()),
    st.binary(max_size=64).map(lambda raw: b"name=" + quote_from_bytes(raw).encode()),
    st.binary(max_size=64).map(lambda raw: b"a=" + raw + b"&a=1"),
)
BODIES = st.one_of(
    st.binary(max_size=512),
    st.text(max_size=200).map(str.encode),
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    JSON_VALUES.map(lambda value: json.dumps(value, ensure_ascii=False).encode()),
    FORM_BODIES,
    st.sampled_from([b"", b"{", b"[]", b"null", b"a=1&a=2&csrfmiddlewaretoken=x", b"--xyz--"]),
)
KEYS = st.one_of(st.none(), st.sampled_from(["k", '"k"', "k, k", "j"]), KEYISH)


def send(client, url, key, body, content_type):
    headers = {} if key is None else {"Idempotency-Key": key}
    return client.post(url, body, content_type=content_type, headers=headers)


@pytest.mark.django_db
@through_http
@given(key=KEYS, body=BODIES, content_type=st.one_of(CONTENT_TYPES, MULTIPART_TYPES))
def test_e2_guarded_view_never_500(key, body, content_type):
    client = Client(raise_request_exception=False)
    assert send(client, "/t/plain/", key, body, content_type).status_code < 500


@pytest.mark.django_db
@through_http
@given(key=KEYS, body=BODIES, content_type=st.one_of(CONTENT_TYPES, MULTIPART_TYPES))
def test_e2_guard_never_500(key, body, content_type):
    # The status view never reads the body: only the guard does.
    client = Client(raise_request_exception=False)
    assert send(client, "/t/status/201/", key, body, content_type).status_code < 500


@pytest.mark.django_db
@through_http
@given(body=FORM_BODIES, charset=st.sampled_from(["", "; charset=utf-8", "; charset=latin-1"]))
def test_E2_keyed_form_post_never_500(body, charset):
    client = Client(raise_request_exception=False)
    content_type = "application/x-www-form-urlencoded" + charset
    # generic() sends the bytes as they are, whatever the charset says.
    response = client.generic(
        "POST", "/t/status/201/", body, content_type, headers={"Idempotency-Key": "k"}
    )
    assert response.status_code < 500


# E2, F2, F4: the fingerprint of any body, text or bytes, never raises and never varies.

FORM = "application/x-www-form-urlencoded"
factory = RequestFactory()


def fingerprint_twice(body: bytes, content_type: str) -> tuple[str, str]:
    """The fingerprint of two requests with the same body, each built afresh."""
    first, second = (
        fingerprint.default(factory.generic("POST", "/p/", body, content_type)) for _ in range(2)
    )
    return first, second


ANY_TEXT = st.text(max_size=200)
ANY_BYTES = st.binary(max_size=300)


@quick
@given(body=st.one_of(ANY_TEXT.map(str.encode), ANY_BYTES, FORM_BODIES))
def test_E2_form_fingerprint_of_any_body(body):
    first, second = fingerprint_twice(body, FORM)
    assert first == second


@quick
@given(
    name=ANY_TEXT,
    values=st.lists(ANY_TEXT, min_size=2, max_size=4, unique=True),
    others=st.lists(st.tuples(ANY_TEXT, ANY_TEXT), max_size=4),
    data=st.data(),
)
def test_F4_form_fingerprint_ignores_order_across_names_only(name, values, others, data):
    assume(name not in ("csrfmiddlewaretoken", "idempotency_key"))
    fields = [(name, value) for value in values] + [f for f in others if f[0] != name]
    shuffled = data.draw(st.permutations(fields))
    by_name = sorted(shuffled, key=lambda field: field[0])
    one, _ = fingerprint_twice(urlencode(shuffled).encode(), FORM)
    two, _ = fingerprint_twice(urlencode(by_name).encode(), FORM)
    assert one == two
    # The same fields with the repeated field's values in another order: request.POST
    # gives the view another list.
    others_first = [field for field in by_name if field[0] != name]
    reordered = others_first + [(name, value) for value in reversed(values)]
    in_order = others_first + [(name, value) for value in values]
    three, _ = fingerprint_twice(urlencode(reordered).encode(), FORM)
    four, _ = fingerprint_twice(urlencode(in_order).encode(), FORM)
    assert three != four


# Bytes with no meaning in a form body, so that they can be sent without escaping.
PLAIN_BYTES = st.lists(
    st.sampled_from([byte for byte in range(256) if byte not in b"&+%"]), max_size=100
).map(bytes)


@quick
@given(raw=PLAIN_BYTES)
def test_E2_form_values_that_are_not_text_compare_by_their_bytes(raw):
    encoded, _ = fingerprint_twice(b"name=" + quote_from_bytes(raw).encode(), FORM)
    as_is, _ = fingerprint_twice(b"name=" + raw, FORM)
    assert encoded == as_is


@quick
@given(
    body=st.one_of(
        ANY_TEXT.map(str.encode),
        ANY_BYTES,
        JSON_VALUES.map(lambda value: json.dumps(value).encode()),
        JSON_VALUES.map(lambda value: json.dumps(value, ensure_ascii=False).encode("utf-16")),
    ),
    content_type=st.sampled_from(["application/json", "application/merge-patch+json"]),
)
def test_E2_json_fingerprint_of_any_body(body, content_type):
    first, second = fingerprint_twice(body, content_type)
    assert first == second


@quick
@given(value=JSON_VALUES, indent=st.one_of(st.none(), st.integers(0, 4)))
def test_F2_json_fingerprint_ignores_key_order_and_whitespace(value, indent):
    def reordered(item):
        if isinstance(item, dict):
            return {key: reordered(item[key]) for key in reversed(list(item))}
        if isinstance(item, list):
            return [reordered(each) for each in item]
        return item

    compact, _ = fingerprint_twice(
        json.dumps(value, separators=(",", ":")).encode(), "application/json"
    )
    spread, _ = fingerprint_twice(
        json.dumps(reordered(value), indent=indent, ensure_ascii=False).encode(), "application/json"
    )
    assert compact == spread


# Any text, lone surrogates included, as keys and values; integers of any size.
PLAIN_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


@quick
@example(value={"z": 1, "\u00e9": 2, "\ud800": 3, "\x7f": [], "": None}, ensure_ascii=True)
@given(value=PLAIN_JSON, ensure_ascii=st.booleans())
def test_F4_json_fast_path_writes_what_the_general_path_writes(value, ensure_ascii):
    # A body without floats or repeated keys is written by the C encoder (_plain_json);
    # whichever path a body takes, its canonical form must be the same bytes.
    body = json.dumps(value, ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass")
    try:
        general = fingerprint._canonical(
            json.loads(
                body,
                parse_int=fingerprint._json_int,
                parse_float=fingerprint._json_float,
                object_pairs_hook=fingerprint._Object,
            ),
            set(),
        )
    except ValueError:
        assume(False)  # not UTF-8 (a lone surrogate written raw): no JSON path at all
    assert fingerprint._plain_json(body) == general


DECIMALS = st.decimals(allow_nan=False, allow_infinity=False)


@quick
@example(one=Decimal("0.1"), two=Decimal("0.10000000000000001"), zeros=0)
@example(one=Decimal("1E+400"), two=Decimal("2E+400"), zeros=3)
@example(one=Decimal("0"), two=Decimal("-0"), zeros=1)
@given(one=DECIMALS, two=DECIMALS, zeros=st.integers(0, 5))
def test_F4_json_numbers_are_alike_exactly_when_their_values_are(one, two, zeros):
    # Written as floats (with an exponent, so never as integers), in two spellings each.
    def body(number):
        return f'{{"n": {number:E}}}'.encode()

    def respelled(number):
        sign, digits, exponent = number.as_tuple()
        text = "".join(map(str, digits))
        minus = "-" if sign else ""
        return f'{{"n": {minus}0.{text}{"0" * zeros}e{exponent + len(text)}}}'.encode()

    def same(left, right):
        return (
            fingerprint_twice(left, "application/json")[0]
            == fingerprint_twice(right, "application/json")[0]
        )

    assert same(body(one), respelled(one))
    assert same(body(one), body(two)) == (one == two and one.is_signed() == two.is_signed())


MULTIPART = "multipart/form-data; boundary=BoUnDaRy-7f3a9c"
FIELD_NAMES = st.text(
    st.characters(blacklist_characters='"\r\n\\', blacklist_categories=["Cs"]), max_size=10
)


def multipart_body(fields: list[tuple[str, bytes]], files: list[tuple[str, str, bytes]]) -> bytes:
    """A well-formed multipart body: each part holds arbitrary bytes."""
    parts = []
    for name, value in fields:
        disposition = f'form-data; name="{name}"'.encode()
        parts.append(b"Content-Disposition: " + disposition + b"\r\n\r\n" + value)
    for name, filename, content in files:
        disposition = f'form-data; name="{name}"; filename="{filename}"'.encode()
        parts.append(
            b"Content-Disposition: "
            + disposition
            + b"\r\nContent-Type: application/octet-stream\r\n\r\n"
            + content
        )
    boundary = b"--BoUnDaRy-7f3a9c"
    return b"".join(boundary + b"\r\n" + part + b"\r\n" for part in parts) + boundary + b"--\r\n"


@quick
@given(
    fields=st.lists(
        st.tuples(FIELD_NAMES, st.one_of(ANY_BYTES, ANY_TEXT.map(str.encode))), max_size=4
    ),
    files=st.lists(st.tuples(FIELD_NAMES, FIELD_NAMES, ANY_BYTES), max_size=3),
)
def test_E2_multipart_fingerprint_of_any_parts(fields, files):
    body = multipart_body(fields, files)
    assume(b"BoUnDaRy-7f3a9c" not in b"".join(value for _, value in fields))
    assume(b"BoUnDaRy-7f3a9c" not in b"".join(content for *_, content in files))
    first, second = fingerprint_twice(body, MULTIPART)
    assert first == second


# E4: whether DRF parsed the body before the guard or not, the fingerprint is the same.

FINITE_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


def drf_fingerprint(body: bytes, content_type: str, parsed_first: bool) -> str:
    from rest_framework.parsers import FormParser, JSONParser
    from rest_framework.request import Request

    request = Request(
        factory.generic("POST", "/p/", body, content_type),
        parsers=[JSONParser(), FormParser()],
    )
    if parsed_first:
        request.data  # noqa: B018
    return fingerprint.default(request)


@quick
@given(
    body=st.one_of(
        FINITE_JSON.map(lambda value: (json.dumps(value).encode(), "application/json")),
        FINITE_JSON.map(
            lambda value: (
                json.dumps(value, ensure_ascii=False, indent=1).encode(),
                "application/json",
            )
        ),
        FORM_FIELDS.map(lambda fields: (urlencode(fields).encode(), FORM)),
    )
)
def test_E4_drf_parsed_first_or_not_fingerprints_alike(body):
    raw, content_type = body
    assert drf_fingerprint(raw, content_type, True) == drf_fingerprint(raw, content_type, False)
