"""The request fingerprint (F1-F3): what makes a retry "the same request".

The default hashes the method, the path with its query string and the body:
JSON canonically (key order and whitespace do not matter), form bodies without the
CSRF token and the form key, multipart uploads by streaming each file in chunks.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from django.conf import settings
from django.http.request import RawPostDataException
from django.utils.http import parse_header_parameters

from idempotent_post.conf import conf
from idempotent_post.keys import resolve_callable

CSRF_FIELD = "csrfmiddlewaretoken"


def _django_request(request: Any) -> Any:
    # DRF wraps the Django request; uploads must be read from the Django one.
    return getattr(request, "_request", request)


def _ignored_fields() -> set[str]:
    return {CSRF_FIELD, conf.FORM_FIELD}


def _update_json(digest: Any, body: bytes) -> None:
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"))
    except (ValueError, RecursionError):
        # Not JSON after all (or too deep to canonicalise): the bytes are the fingerprint.
        digest.update(body)
        return
    digest.update(canonical.encode())


def _update_form(digest: Any, body: bytes) -> None:
    ignored = {name.encode() for name in _ignored_fields()}
    pairs = sorted(
        pair for pair in parse_qsl(body, keep_blank_values=True) if pair[0] not in ignored
    )
    for name, value in pairs:
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
            digest.update(f"{len(name)}:{name}={len(value)}:{value};".encode())
    for name, files in sorted(django_request.FILES.lists()):
        for upload in files:
            digest.update(f"file:{name}:{upload.name}:{upload.size};".encode())
            # chunks() streams from memory or from the temporary file on disk.
            for chunk in upload.chunks():
                digest.update(chunk)
            upload.seek(0)


def default(request: Any) -> str:
    """SHA-256 over method, full path and canonical body."""
    digest = hashlib.sha256()
    digest.update(request.method.encode() + b"\n")
    digest.update(request.get_full_path().encode() + b"\n")
    content_type, _ = parse_header_parameters(request.META.get("CONTENT_TYPE", ""))
    if content_type == "multipart/form-data":
        _update_multipart(digest, request)
    else:
        body = _django_request(request).body
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
