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

On a DRF view whose permission, throttle or parser read the request stream before the
guard ran, the raw body cannot be read any more (E4): the fingerprint then covers what
DRF parsed (``request.data``), canonically in the same way as JSON. Which of the two a
request gets depends on the view, not on the request, so retries agree.
"""

from __future__ import annotations

import contextlib
import hashlib
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
            # Sorted by key only: the values of a repeated key stay in their order.
            members = sorted(
                ((_canonical(key, ignored), each) for key, each in pairs), key=itemgetter(0)
            )
            parts = [b"{"]
            for index, (key, each) in enumerate(members):
                parts.append(b"," + key + b":" if index else key + b":")
                parts.append((each, depth + 1))
            parts.append(b"}")
        pending.extend(reversed(parts))
    return b"".join(out)


def _update_json(digest: Any, body: bytes) -> None:
    try:
        parsed = json.loads(
            body,
            parse_int=_json_int,
            parse_float=_json_float,
            parse_constant=_Number,
            object_pairs_hook=_Object,
        )
        canonical = _canonical(parsed, set(), MAX_JSON_DEPTH)
    except (ValueError, RecursionError, _TooDeep):
        # Not JSON after all (or too deep to canonicalise): the bytes are the fingerprint.
        digest.update(body)
        return
    digest.update(canonical)


# F2, F4: form bodies by their bytes, repeated fields in order.


def _unquote(text: bytes) -> bytes:
    return unquote_to_bytes(text.replace(b"+", b" "))


def _update_form(digest: Any, body: bytes) -> None:
    # Split as Django's QueryDict does (on "&" only, "a" meaning "a="), but keep bytes:
    # decoding is where non-UTF-8 input used to fail.
    ignored = {_text(name) for name in _ignored_fields()}
    fields = []
    for field in body.split(b"&"):
        if field:
            name, _, value = field.partition(b"=")
            fields.append((_unquote(name), _unquote(value)))
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


def _update_parsed(digest: Any, request: Any) -> None:
    """E4: what DRF parsed, for a body that something read before the guard."""
    digest.update(b"parsed\n" + _canonical(request.data, _ignored_fields()))


def default(request: Any) -> str:
    """SHA-256 over method, full path and canonical body."""
    digest = hashlib.sha256()
    digest.update(request.method.encode() + b"\n")
    digest.update(_text(request.get_full_path()) + b"\n")
    content_type, _ = parse_header_parameters(request.META.get("CONTENT_TYPE", ""))
    if content_type == "multipart/form-data":
        _update_multipart(digest, request)
        return digest.hexdigest()
    try:
        body = _django_request(request).body
    except RawPostDataException:
        # A DRF request whose stream a permission, throttle or parser read first: only
        # DRF still has the body, parsed. A Django request read by someone else has
        # nothing left to fingerprint, and guessing could replay another request.
        if request is _django_request(request):
            raise
        _update_parsed(digest, request)
        return digest.hexdigest()
    if content_type == "application/json" or content_type.endswith("+json"):
        _update_json(digest, body)
    elif content_type == "application/x-www-form-urlencoded":
        _update_form(digest, body)
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
