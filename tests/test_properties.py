"""Property tests (Hypothesis) for the key parser (K1, K2) and for bad input (E2)."""

from __future__ import annotations

import contextlib
import json

import pytest
from django.test import Client
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

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


@quick
@given(value=st.one_of(st.text(), KEYISH))
def test_k2_parse_key_raises_only_invalid_key(value):
    # Anything else (IndexError, KeyError, ...) escapes and fails the test.
    with contextlib.suppress(InvalidKey):
        parse_key(value)


@quick
@given(value=KEYISH, max_length=st.integers(min_value=1, max_value=300))
def test_k2_accepted_keys_are_short_visible_ascii(value, max_length):
    try:
        key = parse_key(value, max_length=max_length)
    except InvalidKey:
        return
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
    if one != two:
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
@given(value=KEYISH)
def test_k2_accepted_bare_key_has_no_comma(value):
    try:
        key = parse_key(value)
    except InvalidKey:
        return
    if not value.strip(" \t").startswith('"'):
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
BODIES = st.one_of(
    st.binary(max_size=512),
    st.text(max_size=200).map(str.encode),
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    st.sampled_from([b"", b"{", b"[]", b"null", b"a=1&a=2&csrfmiddlewaretoken=x", b"--xyz--"]),
)
KEYS = st.one_of(st.none(), st.sampled_from(["k", '"k"', "k, k", "j"]), KEYISH)


def send(client, url, key, body, content_type):
    headers = {} if key is None else {"Idempotency-Key": key}
    return client.post(url, body, content_type=content_type, headers=headers)


@pytest.mark.django_db
@through_http
@given(key=KEYS, body=BODIES, content_type=CONTENT_TYPES)
def test_e2_guarded_view_never_500(key, body, content_type):
    # Multipart to a view that reads request.body is a known failure: see
    # test_fingerprint.test_f2_multipart_to_view_reading_body_is_not_500.
    if "multipart" in content_type.lower():
        return
    client = Client(raise_request_exception=False)
    assert send(client, "/t/plain/", key, body, content_type).status_code < 500


@pytest.mark.django_db
@through_http
@given(key=KEYS, body=BODIES, content_type=st.one_of(CONTENT_TYPES, MULTIPART_TYPES))
def test_e2_guard_never_500(key, body, content_type):
    # The status view never reads the body: only the guard does.
    client = Client(raise_request_exception=False)
    assert send(client, "/t/status/201/", key, body, content_type).status_code < 500
