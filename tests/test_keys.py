"""The key (K1-K4): parsing and validating the header, its scope, and its absence.

Each rule is tested twice: on ``parse_key``/the scope functions directly, and through
HTTP with the Django test client, where a bad key must be answered before any lookup.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.cache import SessionStore
from django.core.exceptions import ImproperlyConfigured
from django.http import JsonResponse
from django.test import Client, RequestFactory
from hypothesis import given
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from idempotent_post import idempotent, keys
from idempotent_post.keys import InvalidKey, parse_key, scope_for
from idempotent_post.models import IdempotencyRecord
from tests.testapp.models import Widget

PROBLEM = "application/problem+json"
INVALID_KEY_TYPE = "urn:idempotent-post:invalid-key"
MISSING_KEY_TYPE = "urn:idempotent-post:missing-key"


@pytest.fixture
def client():
    return Client(raise_request_exception=False)


def post(client, key=None, url="/t/plain/", body=b'{"name": "w"}', header="Idempotency-Key"):
    headers = {} if key is None else {header: key}
    return client.post(url, body, content_type="application/json", headers=headers)


def assert_problem(response, status, type_):
    assert response.status_code == status
    assert response["Content-Type"] == PROBLEM
    problem = json.loads(response.content)
    assert problem["status"] == status
    assert problem["type"] == type_
    assert problem["title"]
    assert problem["detail"]


def sf_quote(key):
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


# K1: the header, as a bare token or a Structured-Field string.


def test_k1_accepts_bare_token():
    assert parse_key("abc-123") == "abc-123"


def test_k1_strips_quotes_of_sf_string():
    assert parse_key('"abc-123"') == "abc-123"


@pytest.mark.parametrize(
    ("value", "key"),
    [
        (r'"a\"b"', 'a"b'),
        (r'"a\\b"', "a\\b"),
        (r'"\\\""', '\\"'),
        (r'"a,b"', "a,b"),
    ],
)
def test_k1_unescapes_sf_string(value, key):
    assert parse_key(value) == key


@pytest.mark.parametrize("value", [r'"a\nb"', r'"a\b"', r'"a\tb"', r'"\x41"'])
def test_k1_rejects_escapes_other_than_quote_and_backslash(value):
    with pytest.raises(InvalidKey):
        parse_key(value)


def test_k1_ignores_whitespace_around_the_value():
    assert parse_key(" \tabc-123 \t") == "abc-123"


@pytest.mark.django_db
def test_k1_bare_and_quoted_forms_name_the_same_key(client):
    first = post(client, "abc-123")
    second = post(client, '"abc-123"')
    assert first.status_code == 201
    assert second.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert second.content == first.content
    assert Widget.objects.count() == 1
    assert IdempotencyRecord.objects.get().key == "abc-123"


def test_k1_header_meta_name():
    assert keys.header_meta_name("Idempotency-Key") == "HTTP_IDEMPOTENCY_KEY"
    assert keys.header_meta_name("X-Request-Key") == "HTTP_X_REQUEST_KEY"


@pytest.mark.django_db
def test_k1_header_name_setting(client, settings):
    settings.IDEMPOTENT_POST_HEADER = "X-Request-Key"
    first = post(client, "k1", header="X-Request-Key")
    second = post(client, "k1", header="X-Request-Key")
    assert second["Idempotent-Replayed"] == "true"
    assert second.content == first.content
    assert Widget.objects.count() == 1
    # The default header is now just another header: the view runs unguarded.
    post(client, "k2")
    post(client, "k2")
    assert Widget.objects.count() == 3
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["k1"]


def test_k1_key_from_header_uses_the_setting(settings):
    settings.IDEMPOTENT_POST_HEADER = "X-Request-Key"
    request = RequestFactory().post("/", headers={"X-Request-Key": '"abc"'})
    assert keys.key_from_header(request) == "abc"
    assert keys.key_from_header(RequestFactory().post("/")) is None


# K2: what a valid key is.

INVALID_KEYS = {
    "empty": "",
    "blank": "   ",
    "empty-quoted": '""',
    "space": "a b",
    "tab": "a\tb",
    "newline": "a\nb",
    "nul": "a\x00b",
    "del": "a\x7fb",
    "non-ascii": "clé",
    "non-ascii-quoted": '"clé"',
    "space-quoted": '"a b"',
    "too-long": "k" * 256,
    "too-long-quoted": sf_quote("k" * 256),
    "two-keys": "a,b",
    "two-keys-spaced": "a, b",
    "two-quoted-keys": '"a", "b"',
    "trailing-comma": "a,",
    "lone-comma": ",",
    "unterminated": '"abc',
    "unterminated-escape": '"abc\\"',
    "text-after-quote": '"abc"def',
    "unescaped-inner-quote": '"a"b"c"',
}


@pytest.mark.parametrize("value", INVALID_KEYS.values(), ids=INVALID_KEYS.keys())
def test_k2_parse_key_rejects(value):
    with pytest.raises(InvalidKey) as raised:
        parse_key(value)
    assert str(raised.value)


@pytest.mark.django_db
@pytest.mark.parametrize("value", INVALID_KEYS.values(), ids=INVALID_KEYS.keys())
def test_k2_http_rejects_with_400_before_any_lookup(client, value, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = post(client, value)
    assert_problem(response, 400, INVALID_KEY_TYPE)
    assert Widget.objects.count() == 0
    assert IdempotencyRecord.objects.count() == 0


@pytest.mark.parametrize("value", ["k", "k" * 255, sf_quote("k" * 255), "!~", "a\\b"])
def test_k2_accepts_1_to_255_visible_ascii(value):
    key = parse_key(value)
    assert 1 <= len(key) <= 255


def test_k2_accepts_every_visible_ascii_character_but_comma():
    every = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in ',"')
    assert parse_key(every) == every
    assert parse_key(sf_quote(every + ',"')) == every + ',"'


def test_k2_rejects_comma_in_bare_key():
    with pytest.raises(InvalidKey):
        parse_key("abc,def")


def test_k2_accepts_comma_in_quoted_key():
    assert parse_key('"abc,def"') == "abc,def"


@pytest.mark.parametrize("value", ["a, a", "a,a", '"a", a', '"a","a"', "a ,\ta"])
def test_k2_accepts_the_same_key_twice(value):
    assert parse_key(value) == "a"


@pytest.mark.parametrize("value", ["a,b", "a, b", '"a", b', '"a,b", a'])
def test_k2_rejects_two_different_keys(value):
    with pytest.raises(InvalidKey):
        parse_key(value)


def test_k2_max_length_argument():
    assert parse_key("abc", max_length=3) == "abc"
    with pytest.raises(InvalidKey):
        parse_key("abcd", max_length=3)


def test_k2_key_max_length_setting(settings):
    settings.IDEMPOTENT_POST_KEY_MAX_LENGTH = 8
    assert parse_key("k" * 8) == "k" * 8
    assert parse_key(sf_quote("k" * 8)) == "k" * 8
    with pytest.raises(InvalidKey):
        parse_key("k" * 9)


@pytest.mark.django_db
def test_k2_key_max_length_setting_over_http(client, settings):
    settings.IDEMPOTENT_POST_KEY_MAX_LENGTH = 8
    assert_problem(post(client, "k" * 9), 400, INVALID_KEY_TYPE)
    assert Widget.objects.count() == 0
    assert post(client, "k" * 8).status_code == 201
    assert Widget.objects.count() == 1


@pytest.mark.django_db
def test_k2_comma_inside_quoted_key_over_http(client):
    first = post(client, '"a,b"')
    second = post(client, '"a,b"')
    assert first.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert IdempotencyRecord.objects.get().key == "a,b"


@pytest.mark.django_db
def test_k2_the_same_header_twice_over_http(client):
    # Two identical Idempotency-Key headers, as a server joins them.
    first = post(client, "a, a")
    second = post(client, "a")
    assert first.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert Widget.objects.count() == 1


@pytest.mark.parametrize("key", ['a"b', 'ab"', 'a"b"c', "a\\b"])
def test_k2_accepts_quote_inside_bare_key(key):
    # Only a quote that starts a member opens a Structured-Field string.
    assert parse_key(key) == key
    assert parse_key(f"{key}, {key}") == key


@pytest.mark.parametrize("value", ['x"1,2"y', 'a"b,c', 'a",b"'])
def test_k2_rejects_comma_in_bare_key_with_inner_quotes(value):
    with pytest.raises(InvalidKey):
        parse_key(value)


@pytest.mark.django_db
def test_k2_two_headers_with_inner_quotes_over_http(client):
    # Two headers x"1 and 2"y, joined as gunicorn joins them (a bare comma).
    assert_problem(post(client, 'x"1,2"y'), 400, INVALID_KEY_TYPE)
    assert Widget.objects.count() == 0


# K3: scope.


@pytest.fixture
def rf():
    return RequestFactory()


def member(pk=7):
    return SimpleNamespace(pk=pk, is_authenticated=True)


def test_k3_user_scope(rf):
    request = rf.post("/")
    request.user = member()
    assert keys.user(request) == "user:7"
    request.user = AnonymousUser()
    assert keys.user(request) == keys.ANONYMOUS_SCOPE
    assert keys.user(rf.post("/")) == keys.ANONYMOUS_SCOPE


def test_k3_user_or_session_scope(rf):
    request = rf.post("/")
    request.user = AnonymousUser()
    request.session = SessionStore()
    request.session[keys.SESSION_VISITOR_KEY] = "v1s1t0r"
    assert keys.user_or_session(request) == "session:v1s1t0r"
    request.user = member()
    assert keys.user_or_session(request) == "user:7"
    request.user = AnonymousUser()
    request.session = SessionStore()
    assert keys.user_or_session(request) == keys.ANONYMOUS_SCOPE
    assert keys.user_or_session(rf.post("/")) == keys.ANONYMOUS_SCOPE


def test_k3_user_or_ip_scope(rf):
    request = rf.post("/", REMOTE_ADDR="203.0.113.9")
    request.user = AnonymousUser()
    assert keys.user_or_ip(request) == "ip:203.0.113.9"
    request.user = member()
    assert keys.user_or_ip(request) == "user:7"


def test_k3_default_scope_is_user_or_session(rf):
    request = rf.post("/")
    request.user = AnonymousUser()
    request.session = SessionStore()
    request.session[keys.SESSION_VISITOR_KEY] = "abc"
    assert scope_for(request) == "session:abc"


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("user", "anonymous"),
        ("user_or_session", "anonymous"),
        ("user_or_ip", "ip:198.51.100.1"),
        ("shared", "anonymous"),
        ("idempotent_post.keys.user_or_ip", "ip:198.51.100.1"),
        (lambda request: "tenant:42", "tenant:42"),
    ],
    ids=["user", "user_or_session", "user_or_ip", "shared", "dotted-path", "callable"],
)
def test_k3_scope_forms(rf, scope, expected):
    request = rf.post("/", REMOTE_ADDR="198.51.100.1")
    assert scope_for(request, scope) == expected


def test_k3_scope_setting(rf, settings):
    settings.IDEMPOTENT_POST_SCOPE = "user_or_ip"
    assert scope_for(rf.post("/", REMOTE_ADDR="198.51.100.1")) == "ip:198.51.100.1"
    settings.IDEMPOTENT_POST_SCOPE = "tests.test_keys.tenant_scope"
    assert scope_for(rf.post("/")) == "tenant:x"


def tenant_scope(request):
    return "tenant:x"


def test_k3_long_scope_is_digested(rf):
    scope = scope_for(rf.post("/"), lambda request: "x" * 1000)
    assert scope.startswith("sha256:")
    assert len(scope) <= 255


@pytest.mark.parametrize("bad", ["nope", "", 42, ["user"]])
def test_k3_unknown_scope_is_improperly_configured(rf, bad):
    with pytest.raises(ImproperlyConfigured) as raised:
        scope_for(rf.post("/"), bad)
    message = str(raised.value)
    assert "IDEMPOTENT_POST_SCOPE" in message
    assert "callable" in message
    assert "dotted path" in message
    for alias in ("user", "user_or_session", "user_or_ip"):
        assert alias in message


def test_k3_unknown_scope_setting_is_improperly_configured(rf, settings):
    settings.IDEMPOTENT_POST_SCOPE = "per_tenant"
    with pytest.raises(ImproperlyConfigured, match="user_or_session"):
        scope_for(rf.post("/"))


def test_k3_unimportable_dotted_path_is_improperly_configured(rf):
    with pytest.raises(ImproperlyConfigured, match="cannot import"):
        scope_for(rf.post("/"), "tests.test_keys.no_such_function")


def test_k3_dotted_path_to_non_callable_is_improperly_configured(rf):
    with pytest.raises(ImproperlyConfigured):
        scope_for(rf.post("/"), "idempotent_post.keys.ANONYMOUS_SCOPE")


@pytest.fixture
def alice_and_bob(db):
    users = get_user_model().objects
    return users.create_user("alice", password="x"), users.create_user("bob", password="x")


def test_k3_other_user_with_same_key_gets_a_fresh_execution(alice_and_bob):
    alice, bob = alice_and_bob
    api = APIClient()
    api.force_authenticate(user=alice)
    first = api.post("/t/drf/", {"name": "w"}, format="json", headers={"Idempotency-Key": "k"})
    api.force_authenticate(user=bob)
    other = api.post("/t/drf/", {"name": "w"}, format="json", headers={"Idempotency-Key": "k"})
    assert first.status_code == other.status_code == 201
    assert first.json()["user"] == "alice"
    assert other.json()["user"] == "bob"
    assert other.json()["id"] != first.json()["id"]
    assert "Idempotent-Replayed" not in other
    assert Widget.objects.count() == 2
    # Alice's own retry still replays her response.
    api.force_authenticate(user=alice)
    again = api.post("/t/drf/", {"name": "w"}, format="json", headers={"Idempotency-Key": "k"})
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert Widget.objects.count() == 2
    assert set(IdempotencyRecord.objects.values_list("scope", flat=True)) == {
        f"user:{alice.pk}",
        f"user:{bob.pk}",
    }


def test_k3_scope_follows_drf_token_authentication(alice_and_bob):
    alice, bob = alice_and_bob
    tokens = {user: Token.objects.create(user=user).key for user in (alice, bob)}
    answers = {}
    for user in (alice, bob):
        api = APIClient()
        headers = {"Idempotency-Key": "k", "Authorization": f"Token {tokens[user]}"}
        answers[user] = api.post("/t/drf/", {"name": "w"}, format="json", headers=headers)
    assert answers[alice].json()["user"] == "alice"
    assert answers[bob].json()["user"] == "bob"
    assert "Idempotent-Replayed" not in answers[bob]
    assert Widget.objects.count() == 2


@pytest.mark.django_db
def test_k3_user_or_ip_keeps_anonymous_callers_apart(settings):
    settings.IDEMPOTENT_POST_SCOPE = "user_or_ip"
    one = post(Client(REMOTE_ADDR="192.0.2.1"), "k")
    two = post(Client(REMOTE_ADDR="192.0.2.2"), "k")
    assert "Idempotent-Replayed" not in two
    assert one.json()["id"] != two.json()["id"]
    assert Widget.objects.count() == 2


# K5: the scope of an anonymous visitor, stable for the life of the session, no credential.
# Through HTTP on every session engine: tests/test_scope_sessions.py.


def anonymous_request(rf, session):
    request = rf.post("/")
    request.user = AnonymousUser()
    request.session = session
    return request


def test_K5_ensure_scope_puts_a_random_visitor_id_in_a_new_session(rf):
    request = anonymous_request(rf, SessionStore())
    assert keys.user_or_session(request) == keys.ANONYMOUS_SCOPE
    assert request.session.is_empty()
    keys.ensure_scope(request)
    visitor = request.session[keys.SESSION_VISITOR_KEY]
    assert len(visitor) == 32
    assert keys.user_or_session(request) == f"session:{visitor}"
    keys.ensure_scope(request)
    assert request.session[keys.SESSION_VISITOR_KEY] == visitor
    other = anonymous_request(rf, SessionStore())
    keys.ensure_scope(other)
    assert other.session[keys.SESSION_VISITOR_KEY] != visitor


def test_K5_an_existing_session_gets_a_visitor_id_that_is_not_its_key(rf):
    session = SessionStore()
    session["cart"] = ["book"]
    session.save()
    request = anonymous_request(rf, SessionStore(session.session_key))
    scope = keys.user_or_session(request)
    assert scope.startswith("session:")
    assert session.session_key not in scope
    assert scope == f"session:{request.session[keys.SESSION_VISITOR_KEY]}"
    assert request.session.modified
    # Kept: the id no longer depends on the key once it is in the session.
    request.session.cycle_key()
    assert keys.user_or_session(request) == scope


def test_K5_ensure_scope_leaves_users_and_sessionless_requests_alone(rf):
    request = rf.post("/")
    request.user = member()
    request.session = SessionStore()
    keys.ensure_scope(request)
    assert request.session.is_empty()
    assert not request.session.modified
    sessionless = rf.post("/")
    keys.ensure_scope(sessionless)
    assert not hasattr(sessionless, "session")
    assert keys.user_or_session(sessionless) == keys.ANONYMOUS_SCOPE


# K4: no key.


@pytest.mark.django_db
def test_k4_missing_key_runs_unguarded_by_default(client):
    assert post(client).status_code == 201
    assert post(client).status_code == 201
    assert Widget.objects.count() == 2
    assert IdempotencyRecord.objects.count() == 0


@pytest.mark.django_db
def test_k4_required_view_refuses_missing_key(client):
    assert_problem(post(client, url="/t/required/"), 400, MISSING_KEY_TYPE)
    assert Widget.objects.count() == 0
    assert IdempotencyRecord.objects.count() == 0


@pytest.mark.django_db
def test_k4_required_drf_view_refuses_missing_key():
    response = APIClient().post("/t/drf/", {"name": "w"}, format="json")
    assert_problem(response, 400, MISSING_KEY_TYPE)
    assert Widget.objects.count() == 0


@pytest.mark.django_db
def test_k4_required_setting(client, settings):
    settings.IDEMPOTENT_POST_REQUIRED = True
    assert_problem(post(client), 400, MISSING_KEY_TYPE)
    assert Widget.objects.count() == 0
    assert post(client, "k").status_code == 201


@pytest.mark.django_db
def test_k4_view_option_overrides_required_setting(rf, settings):
    settings.IDEMPOTENT_POST_REQUIRED = True

    @idempotent(required=False)
    def view(request):
        Widget.objects.create(name="optional")
        return JsonResponse({}, status=201)

    assert view(rf.post("/optional/")).status_code == 201
    assert Widget.objects.count() == 1


@pytest.mark.django_db
def test_k4_safe_methods_pass_through_without_key(client):
    response = client.get("/t/required/")
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response


@given(st.text(alphabet=st.characters(min_codepoint=0x09, max_codepoint=0x7F), max_size=40))
def test_K2_the_bare_key_fast_path_agrees_with_the_general_parse(value):
    from idempotent_post.keys import _parse_item, _split_items

    def general():
        keys = {_parse_item(item, 255) for item in _split_items(value)}
        if len(keys) > 1:
            raise InvalidKey("more than one key")
        return keys.pop()

    try:
        expected = general()
    except InvalidKey:
        with pytest.raises(InvalidKey):
            parse_key(value, 255)
    else:
        assert parse_key(value, 255) == expected
