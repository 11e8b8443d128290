"""The request fingerprint (F1-F4): what makes a retry "the same request".

The default hashes the method, the path with its query string and the body, so that two
requests a view can tell apart never share a fingerprint (F4), while spellings of the
same request that no view sees differently (key order, whitespace) do:

- JSON (``application/json`` and ``*+json``) canonically: object keys in order, no
  whitespace. Numbers keep their exact value as written rather than what a float makes
  of them: ``0.1`` and ``0.10000000000000001`` differ, as do ``1e400`` and ``2e400``
  and, since ``json.loads`` reads one as an ``int`` and the other as a ``float``, ``1``
  and ``1.0``. Two numbers of the same kind with the same exact value are alike however
  they are written: ``1.0``, ``1.00`` and ``10e-1``; ``100.0`` and ``1E2``; ``0`` and
  ``-0`` (only a float keeps the sign of zero, so ``0.0`` and ``-0.0`` differ). A key
  repeated in one object keeps its values in their order. A body that is not JSON, or
  is nested deeper than ``MAX_JSON_DEPTH``, is hashed by its bytes.
- Form bodies (``application/x-www-form-urlencoded``) field by field, each name and value
  by its bytes after percent-decoding, so any bytes work, text or not. Fields are sorted
  by name only: a repeated field keeps its values in their order. The CSRF token and the
  form key (G3) do not count.
- Multipart uploads by their fields as Django decodes them and by streaming each file in
  chunks, never reading the upload whole (F2). The CSRF token and the form key do not
  count here either.
- Any other body by its bytes.

On a DRF view, a permission, throttle or authentication may parse the body before the
guard runs (DRF's CSRF check does for session auth), and on DRF 3.15, or with a parser
of the view's own on any version, that reads the stream: the raw body is gone (E4). The
fingerprint then covers what DRF parsed (``request.data``), written the way the raw body
would have been, so that the same request fingerprints alike whichever path it took (by
session or by token, say). The two agree for every form body in UTF-8 and every JSON
body with no repeated key whose numbers, trailing zeros aside, have no more digits than
the float they make needs (``0.5``, ``0.50``, ``1e16``; not ``0.10000000000000001``,
nor ``1e400``, which no float holds); past that, only the raw body tells such requests
apart, and a retry that took the other path gets a 422 rather than another's answer.
For other content types a DRF view's body counts as its parser reads it, from a copy
when DRF has not parsed it yet; a body the parser refuses counts by its bytes (the view
answers it with a 400 or 415 anyway).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from operator import itemgetter
from typing import Any
from urllib.parse import unquote_to_bytes

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.http.request import RawPostDataException
from django.utils.datastructures import MultiValueDict
from django.utils.http import parse_header_parameters

from idempotent_post.conf import conf
from idempotent_post.keys import resolve_callable

CSRF_FIELD = "csrfmiddlewaretoken"
FORM = "application/x-www-form-urlencoded"

# Deeper JSON is hashed by its bytes. Whether Python could canonicalise it would depend on
# how deep the stack already is when the guard runs, and every retry must agree.
MAX_JSON_DEPTH = 200

_JSON_FLOAT = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?(?:[eE]([-+]?[0-9]+))?")


def _django_request(request: Any) -> Any:
    # DRF wraps the Django request; uploads must be read from the Django one.
    return getattr(request, "_request", request)


def _ignored_fields() -> set[str]:
    return {CSRF_FIELD, conf.FORM_FIELD}


def _text(value: str) -> bytes:
    # Lone surrogates (from JSON "\ud800" escapes or odd file names) encode too.
    return value.encode("utf-8", "surrogatepass")


# F4: JSON by exact value.


class _Number:
    """A number in its canonical spelling; never confused with a string or another kind."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class _Object(list[tuple[str, Any]]):
    """A JSON object as its (key, value) pairs in body order, repeated keys included."""


class _TooDeep(Exception):
    pass


# A body the view's DRF parsers cannot read.
_UNREADABLE = object()


def _json_int(text: str) -> _Number:
    # JSON spells an integer one way only, but for the sign of zero.
    return _Number("0" if text == "-0" else text)


def _json_float(text: str) -> _Number:
    """``text`` as ``<sign><digits>e<exponent>``, with no leading or trailing zero digits.

    Equal values share one spelling; the ``e`` keeps them apart from every integer.
    """
    match = _JSON_FLOAT.fullmatch(text)
    if match is None:
        raise ValueError(f"Not a JSON number: {text!r}")
    sign, whole, fraction, exponent = match.groups()
    fraction = fraction or ""
    digits = (whole + fraction).lstrip("0")
    if not digits:
        return _Number(f"{sign}0e0")
    significant = digits.rstrip("0")
    power = int(exponent or "0") - len(fraction) + len(digits) - len(significant)
    return _Number(f"{sign}{significant}e{power}")


def _python_number(value: Any) -> _Number:
    """A float or Decimal that a parser produced, spelled as :func:`_json_float` would."""
    text = repr(value) if isinstance(value, float) else str(value)
    if _JSON_FLOAT.fullmatch(text):
        return _json_float(text)
    # Infinities and NaN, spelled as JSON spells them.
    return _Number({"inf": "Infinity", "-inf": "-Infinity"}.get(text.lower(), "NaN"))


def _scalar(value: Any) -> bytes | None:
    """The canonical form of a value with no parts, ``None`` for a container."""
    if isinstance(value, _Number):
        return value.text.encode()
    if value is None or isinstance(value, (bool, str)):
        return json.dumps(value).encode()
    if isinstance(value, int):
        # Hexadecimal past what Python agrees to print in decimal (sys.int_info).
        with contextlib.suppress(ValueError):
            return b"%d" % value
        return b"%#x" % value
    if isinstance(value, (float, Decimal)):
        return _python_number(value).text.encode()
    if isinstance(value, bytes):
        return b"b" + json.dumps(value.hex()).encode()
    if isinstance(value, UploadedFile):
        digest = hashlib.sha256()
        for chunk in value.chunks():
            digest.update(chunk)
        value.seek(0)
        name = json.dumps(value.name or "").encode()
        return b"file(%s,%d,%s)" % (name, value.size or 0, digest.hexdigest().encode())
    if isinstance(value, (_Object, Mapping, list, tuple)):
        return None
    # A custom parser's own type: its type and text are the best there is.
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    return b"?" + json.dumps([kind, str(value)]).encode()


def _canonical(value: Any, ignored: set[str], max_depth: int | None = None) -> bytes:
    """The canonical form of a parsed body: compact JSON with sorted keys, near enough.

    Takes what ``json.loads`` gives with the hooks of :func:`_update_json` and what DRF
    parsers give: mappings (form data without the ``ignored`` fields), sequences, strings,
    numbers, uploaded files (hashed in chunks). Works without recursion, so any depth the
    parser managed is fine; past ``max_depth`` it raises :class:`_TooDeep`.
    """
    out: list[bytes] = []
    # Each entry is bytes to write as they are, or a (value, depth) still to write.
    pending: list[bytes | tuple[Any, int]] = [(value, 0)]
    while pending:
        entry = pending.pop()
        if isinstance(entry, bytes):
            out.append(entry)
            continue
        item, depth = entry
        scalar = _scalar(item)
        if scalar is not None:
            out.append(scalar)
            continue
        if max_depth is not None and depth >= max_depth:
            raise _TooDeep
        parts: list[bytes | tuple[Any, int]]
        if isinstance(item, (list, tuple)) and not isinstance(item, _Object):
            parts = [b"["]
            for index, each in enumerate(item):
                parts.extend([b","] if index else [])
                parts.append((each, depth + 1))
            parts.append(b"]")
        else:
            if isinstance(item, MultiValueDict):
                pairs = [(key, each) for key, items in item.lists() for each in items]
                pairs = [pair for pair in pairs if pair[0] not in ignored]
            else:
                pairs = list(item.items()) if isinstance(item, Mapping) else item
            # Sorted by key only, text keys as ``json.dumps(sort_keys=True)`` sorts them
            # (see _plain_json): the values of a repeated key stay in their order.
            members = sorted(
                (
                    (_member_order(key, ignored), _canonical(key, ignored), each)
                    for key, each in pairs
                ),
                key=itemgetter(0),
            )
            parts = [b"{"]
            for index, (_, key, each) in enumerate(members):
                parts.append(b"," + key + b":" if index else key + b":")
                parts.append((each, depth + 1))
            parts.append(b"}")
        pending.extend(reversed(parts))
    return b"".join(out)


def _member_order(key: Any, ignored: set[str]) -> tuple[int, Any]:
    # Text keys by their text; a custom parser's other keys after them, by their form.
    return (0, key) if isinstance(key, str) else (1, _canonical(key, ignored))


class _NotPlain(Exception):
    """A JSON body the fast path cannot write canonically: it has a float or a repeated key."""


def _not_plain(text: str) -> Any:
    raise _NotPlain


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members = dict(pairs)
    if len(members) != len(pairs):
        raise _NotPlain
    return members


def _plain_json(body: bytes) -> bytes:
    """The canonical form of a JSON body without floats, constants or repeated keys.

    The same bytes as :func:`_canonical` writes for it, by the C encoder: integers parse
    exactly, and ``sort_keys`` sorts text keys as ``_canonical`` does. Raises
    :class:`_NotPlain` or ``ValueError`` for a body it cannot write.
    """
    parsed = json.loads(
        body,
        parse_float=_not_plain,
        parse_constant=_not_plain,
        object_pairs_hook=_unique_members,
    )
    return json.dumps(parsed, sort_keys=True, separators=(",", ":")).encode()


def _update_json(digest: Any, body: bytes) -> None:
    # A retry sends the same bytes again: the form of a small body is remembered by them.
    digest.update(_remembered_json_form(body) if len(body) <= REMEMBERED_BODY else _json_form(body))


def _json_form(body: bytes) -> bytes:
    """What a JSON body's fingerprint hashes: its canonical form, else its bytes."""
    # Fewer brackets than the depth limit: certainly not too deep for the fast path.
    if body.count(b"[") + body.count(b"{") < MAX_JSON_DEPTH:
        with contextlib.suppress(_NotPlain, ValueError, RecursionError):
            # Otherwise (not JSON, say, or an integer past what int() reads) the general
            # path below decides.
            return _plain_json(body)
    try:
        parsed = json.loads(
            body,
            parse_int=_json_int,
            parse_float=_json_float,
            parse_constant=_Number,
            object_pairs_hook=_Object,
        )
        return _canonical(parsed, set(), MAX_JSON_DEPTH)
    except (ValueError, RecursionError, _TooDeep):
        # Not JSON after all (or too deep to canonicalise): the bytes are the fingerprint.
        return body


#: JSON bodies up to this many bytes have their canonical form remembered (at most 256 of
#: them, so at most 2 MB with the bodies themselves): parsing costs more than the hash.
REMEMBERED_BODY = 4096

_remembered_json_form = functools.lru_cache(maxsize=256)(_json_form)


# F2, F4: form bodies by their bytes, repeated fields in order.


def _unquote(text: bytes) -> bytes:
    return unquote_to_bytes(text.replace(b"+", b" "))


def _form_fields(body: bytes) -> list[tuple[bytes, bytes]]:
    # Split as Django's QueryDict does (on "&" only, "a" meaning "a="), but keep bytes:
    # decoding is where non-UTF-8 input used to fail.
    fields = []
    for field in body.split(b"&"):
        if field:
            name, _, value = field.partition(b"=")
            fields.append((_unquote(name), _unquote(value)))
    return fields


def _update_fields(digest: Any, fields: list[tuple[bytes, bytes]]) -> None:
    ignored = {_text(name) for name in _ignored_fields()}
    for name, value in sorted(fields, key=itemgetter(0)):
        if name not in ignored:
            digest.update(b"%d:%s=%d:%s;" % (len(name), name, len(value), value))


def _update_multipart(digest: Any, request: Any) -> None:
    django_request = _django_request(request)
    if int(django_request.META.get("CONTENT_LENGTH") or 0) <= settings.FILE_UPLOAD_MAX_MEMORY_SIZE:
        # Small enough for Django to keep in memory anyway: read the body first, so a
        # view may still use request.body as well as request.POST. Larger uploads are
        # parsed from the stream and hashed in chunks, never read whole.
        with contextlib.suppress(RawPostDataException):  # already parsed by the view's caller
            django_request.body  # noqa: B018
    ignored = _ignored_fields()
    for name, values in sorted(django_request.POST.lists()):
        if name in ignored:
            continue
        for value in values:
            name_bytes, value_bytes = _text(name), _text(value)
            digest.update(
                b"%d:%s=%d:%s;" % (len(name_bytes), name_bytes, len(value_bytes), value_bytes)
            )
    for name, files in sorted(django_request.FILES.lists()):
        for upload in files:
            digest.update(_text(f"file:{name}:{upload.name}:{upload.size};"))
            # chunks() streams from memory or from the temporary file on disk.
            for chunk in upload.chunks():
                digest.update(chunk)
            upload.seek(0)


def _drf_parse_copy(request: Any, body: bytes) -> Any:
    """What ``request.data`` will hold, parsed from a copy of ``body`` as DRF would.

    Mirrors ``rest_framework.request.Request._parse`` without touching the request, so a
    view still gets DRF's own answer, errors included. ``_UNREADABLE`` when the view's
    parsers cannot read the body.
    """
    meta = request._request.META
    try:
        length = int(meta.get("CONTENT_LENGTH", meta.get("HTTP_CONTENT_LENGTH", 0)))
    except (ValueError, TypeError):
        length = 0
    if not length:
        # DRF reads no stream then: empty data.
        return {}
    parser = request.negotiator.select_parser(request, request.parsers)
    if parser is None:
        return _UNREADABLE
    try:
        parsed = parser.parse(io.BytesIO(body), request.content_type, request.parser_context)
    except Exception:
        # Whatever the parser raises, DRF answers it to the view's caller (400, 415...).
        return _UNREADABLE
    try:
        data, files = parsed.data, parsed.files
    except AttributeError:
        return parsed
    if files:
        data = data.copy()
        data.update(files)
    return data


def _update_parsed(digest: Any, data: Any, content_type: str) -> None:
    """E4: what a DRF parser made of the body, written as the raw body would have been."""
    if _is_json(content_type):
        digest.update(_canonical(data, set()))
    elif content_type == FORM and isinstance(data, MultiValueDict):
        fields = [(name, value) for name, values in data.lists() for value in values]
        _update_fields(digest, [(_text(str(name)), _text(str(value))) for name, value in fields])
    else:
        digest.update(b"parsed\n" + _canonical(data, _ignored_fields()))


def _is_drf(request: Any) -> bool:
    return request is not _django_request(request) and hasattr(request, "negotiator")


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or content_type.endswith("+json")


def _content_type(request: Any) -> str:
    # Django parsed it when it built the request; a request built otherwise has not.
    parsed = getattr(_django_request(request), "content_type", None)
    if parsed is None:
        parsed, _ = parse_header_parameters(request.META.get("CONTENT_TYPE", ""))
    return parsed  # type: ignore[no-any-return]


def default(request: Any) -> str:
    """SHA-256 over method, full path and canonical body."""
    digest = hashlib.sha256()
    digest.update(request.method.encode() + b"\n")
    digest.update(_text(request.get_full_path()) + b"\n")
    content_type = _content_type(request)
    if content_type == "multipart/form-data":
        # Django's parse, which DRF hands over when it parsed first: alike either way.
        _update_multipart(digest, request)
        return digest.hexdigest()
    try:
        body = _django_request(request).body
    except RawPostDataException:
        # The stream is gone. A DRF request has its parsed data; a Django request read
        # by someone else has nothing left, and guessing could replay another request.
        if not _is_drf(request):
            raise
        _update_parsed(digest, request.data, content_type)
        return digest.hexdigest()
    if _is_json(content_type):
        _update_json(digest, body)
    elif content_type == FORM:
        _update_fields(digest, _form_fields(body))
    elif _is_drf(request) and (data := _drf_parse_copy(request, body)) is not _UNREADABLE:
        # Other types as the view's parser reads them, as when DRF has parsed first.
        _update_parsed(digest, data, content_type)
    else:
        digest.update(body)
    return digest.hexdigest()


FINGERPRINT_ALIASES: dict[str, Callable[[Any], str]] = {"default": default}


def fingerprint_for(request: Any, fingerprint: Any = None) -> str:
    """The fingerprint of ``request`` under the view's option or the setting (F3)."""
    func = resolve_callable(
        conf.FINGERPRINT if fingerprint is None else fingerprint,
        FINGERPRINT_ALIASES,
        "IDEMPOTENT_POST_FINGERPRINT",
    )
    value = str(func(request))
    if len(value) > 64:
        value = hashlib.sha256(value.encode()).hexdigest()
    return value
