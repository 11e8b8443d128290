"""The key: parse the ``Idempotency-Key`` header (K1, K2) and decide its scope (K3, K5)."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.crypto import salted_hmac
from django.utils.module_loading import import_string

from idempotent_post.conf import conf


class InvalidKey(ValueError):
    """The key header is present but unusable; the message says why (K2)."""


def header_meta_name(header: str) -> str:
    """The ``request.META`` name of an HTTP header, as WSGI and ASGI handlers write it."""
    return "HTTP_" + header.upper().replace("-", "_")


def _split_items(value: str) -> list[str]:
    """Split a comma-joined header into its members, keeping commas inside quoted keys.

    A quote opens a quoted key only where a member starts; inside a bare token it is an
    ordinary character.
    """
    items: list[str] = []
    current: list[str] = []
    quoted = escaped = started = False
    for char in value:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"' and (quoted or not started):
            quoted = not quoted
        elif char == "," and not quoted:
            items.append("".join(current))
            current = []
            started = False
            continue
        started = started or char not in " \t"
        current.append(char)
    if quoted:
        raise InvalidKey("The key has an opening quote but no closing one.")
    items.append("".join(current))
    return [item.strip(" \t") for item in items]


def _parse_item(item: str, max_length: int) -> str:
    if item.startswith('"'):
        # A Structured-Field string (RFC 8941): the quotes are not part of the key.
        if len(item) < 2 or not item.endswith('"'):
            raise InvalidKey("A quoted key must end with its closing quote and nothing after it.")
        body, key, escaped = item[1:-1], [], False
        for char in body:
            if escaped:
                if char not in '"\\':
                    raise InvalidKey('Only \\" and \\\\ may be escaped in a quoted key.')
                key.append(char)
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                raise InvalidKey("A quote inside a quoted key must be escaped.")
            else:
                key.append(char)
        if escaped:
            raise InvalidKey("A quoted key cannot end with a backslash.")
        result = "".join(key)
    else:
        result = item
    if not result:
        raise InvalidKey("The key is empty.")
    if len(result) > max_length:
        raise InvalidKey(f"The key is longer than {max_length} characters.")
    if not _VISIBLE_ASCII.fullmatch(result):
        raise InvalidKey("The key may hold visible ASCII characters only (0x21 to 0x7E).")
    return result


_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]+")
# A plain token, as nearly every client sends it: no quote, no comma, no space.
_BARE_KEY = re.compile(r"[\x21\x23-\x2b\x2d-\x7e]+")


def parse_key(value: str, max_length: int | None = None) -> str:
    """Return the key a header value carries, or raise :class:`InvalidKey`.

    Accepts a bare token (``abc-123``) and a Structured-Field string (``"abc-123"``).
    Servers join repeated headers with commas; the same key twice is accepted, two
    different keys are not.
    """
    max_length = conf.KEY_MAX_LENGTH if max_length is None else max_length
    if _BARE_KEY.fullmatch(value) and len(value) <= max_length:
        return value  # the common case, without the general parse below
    keys = {_parse_item(item, max_length) for item in _split_items(value)}
    if len(keys) > 1:
        raise InvalidKey("The request carries more than one key.")
    return keys.pop()


def key_from_header(request: Any, header: str | None = None) -> str | None:
    """The request's key, ``None`` when it has none, or :class:`InvalidKey`."""
    value = request.META.get(header_meta_name(header or conf.HEADER))
    if value is None:
        return None
    return parse_key(value)


# K3: scope functions. Each takes the request and names who the key belongs to.

ANONYMOUS_SCOPE = "anonymous"


def _user_scope(request: Any) -> str | None:
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}"
    return None


def user(request: Any) -> str:
    """The authenticated user, else one shared anonymous scope."""
    return _user_scope(request) or ANONYMOUS_SCOPE


#: The session entry that holds an anonymous visitor's id, the scope of their keys (K5).
SESSION_VISITOR_KEY = "_idempotent_post_visitor"
_VISITOR_SALT = "idempotent_post.keys.visitor"


def _visitor_id(request: Any, create: bool) -> str | None:
    """The anonymous visitor's id, read from the session, else made and kept there.

    The session key is a credential, and some engines change it while the session lives
    (signed cookies on every save, every engine on login), so it is never the scope. The id
    is made once and then read back from the session. A session that exists already gets
    an id derived from its key with the project's secret: requests of that session that
    race (a double click) derive the same id before either one has saved it. A new
    session (only with ``create``) gets a random one.
    """
    session = getattr(request, "session", None)
    if session is None:
        return None
    visitor = session.get(SESSION_VISITOR_KEY)
    if isinstance(visitor, str) and visitor:
        return visitor
    # Read after the session loaded: an unknown or expired session key reads as None.
    session_key = getattr(session, "session_key", None)
    if session_key:
        visitor = salted_hmac(_VISITOR_SALT, session_key, algorithm="sha256").hexdigest()
        visitor = visitor[:32]
    elif create:
        visitor = secrets.token_hex(16)
    else:
        # No session to keep an id in: a caller that sends no cookie would get a new
        # scope on each retry, so it shares the anonymous scope instead.
        return None
    session[SESSION_VISITOR_KEY] = visitor
    return visitor


def user_or_session(request: Any) -> str:
    """The authenticated user, else the visitor's session, else one shared anonymous scope.

    An anonymous visitor with a session is ``session:<id>``, where the id is a value kept
    in the session (never the session key), made on first need: the scope stays the same
    for the life of the session whatever the session engine (K5). A request without a
    session shares the anonymous scope; :func:`ensure_scope` gives a visitor a session
    before their first submit.
    """
    scope = _user_scope(request)
    if scope:
        return scope
    visitor = _visitor_id(request, create=False)
    return f"session:{visitor}" if visitor else ANONYMOUS_SCOPE


def ensure_scope(request: Any) -> None:
    """Give an anonymous visitor the session id that scopes their keys, if they have none.

    Call it when a page renders a form whose submit is guarded: the id is then saved with
    the session (and its cookie sent) with that page, so the first submit and every later
    one share a scope even when the submit's view changes the session. Authenticated users
    and requests without a session are left alone.
    """
    if getattr(request, "session", None) is None or _user_scope(request):
        return
    _visitor_id(request, create=True)


def user_or_ip(request: Any) -> str:
    """The authenticated user, else the client address Django sees (``REMOTE_ADDR``)."""
    return _user_scope(request) or f"ip:{request.META.get('REMOTE_ADDR', '')}"


def shared(request: Any) -> str:
    """One scope for everybody: keys must then be unguessable and unique on their own."""
    return ANONYMOUS_SCOPE


SCOPE_ALIASES: dict[str, Callable[[Any], str]] = {
    "user": user,
    "user_or_session": user_or_session,
    "user_or_ip": user_or_ip,
    "shared": shared,
}


def resolve_callable(
    value: Any, aliases: dict[str, Callable[..., Any]], setting: str
) -> Callable[..., Any]:
    """Turn a callable, an alias or a dotted path into a callable (STYLE 3)."""
    if callable(value):
        return value
    if isinstance(value, str):
        if value in aliases:
            return aliases[value]
        if "." in value:
            try:
                imported = import_string(value)
            except ImportError as error:
                raise ImproperlyConfigured(
                    f"{setting}: cannot import {value!r}: {error}"
                ) from error
            if callable(imported):
                return imported
    raise ImproperlyConfigured(
        f"{setting} must be a callable, a dotted path to one, or one of "
        f"{', '.join(sorted(aliases))}; got {value!r}."
    )


def scope_for(request: Any, scope: Any = None) -> str:
    """The scope of ``request`` under the view's scope option or the setting."""
    func = resolve_callable(
        conf.SCOPE if scope is None else scope, SCOPE_ALIASES, "IDEMPOTENT_POST_SCOPE"
    )
    value = str(func(request))
    if len(value) > 255:
        # Keep the column bounded; a digest names the scope just as well.
        value = "sha256:" + hashlib.sha256(value.encode()).hexdigest()
    return value
