"""Store and replay responses (P1-P3), and the problem+json errors (E1)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from django.core.files.storage import storages
from django.http import HttpResponse
from django.http.response import HttpResponseBase

from idempotent_post.conf import conf

logger = logging.getLogger("idempotent_post")

REPLAYED_HEADER = "Idempotent-Replayed"
# Bodies kept in the response storage (P3) live under this prefix, each with a random name.
FILE_PREFIX = "idempotent-post/"
PROBLEM_CONTENT_TYPE = "application/problem+json"


@dataclass(frozen=True)
class Problem:
    """One kind of error the app answers with (RFC 9457)."""

    status: int
    type: str
    title: str


INVALID_KEY = Problem(400, "urn:idempotent-post:invalid-key", "Invalid idempotency key")
MISSING_KEY = Problem(400, "urn:idempotent-post:missing-key", "Idempotency key required")
BAD_BODY = Problem(400, "urn:idempotent-post:bad-request-body", "Unreadable request body")
IN_PROGRESS = Problem(409, "urn:idempotent-post:in-progress", "Request in progress")
BODY_TOO_LARGE = Problem(413, "urn:idempotent-post:body-too-large", "Request body too large")
MISMATCH = Problem(422, "urn:idempotent-post:key-reused", "Idempotency key reused")
UNAVAILABLE = Problem(503, "urn:idempotent-post:lock-unavailable", "Idempotency store unavailable")


def problem_response(problem: Problem, detail: str, **headers: str) -> HttpResponse:
    """An ``application/problem+json`` response for ``problem``."""
    body = {
        "type": problem.type,
        "title": problem.title,
        "status": problem.status,
        "detail": detail,
    }
    response = HttpResponse(
        json.dumps(body), status=problem.status, content_type=PROBLEM_CONTENT_TYPE
    )
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


@dataclass
class StoredResponse:
    """What of a response is kept: status, allow-listed headers and (if it fits) the body."""

    status_code: int
    headers: list[list[str]]
    body: bytes | None


def capture(response: HttpResponseBase) -> StoredResponse:
    """Take from ``response`` what a replay needs (P1, P2, P3).

    Streaming and file responses, and bodies over ``MAX_RESPONSE_SIZE``, keep their
    status and headers only: a replay answers them with an empty body.
    """
    allowed = {name.lower() for name in conf.REPLAY_HEADERS}
    headers = [[name, value] for name, value in response.items() if name.lower() in allowed]
    body: bytes | None = None
    if not response.streaming:
        content = response.content  # type: ignore[attr-defined]
        if len(content) <= conf.MAX_RESPONSE_SIZE:
            body = bytes(content)
    return StoredResponse(response.status_code, headers, body)


def replay(status_code: int, headers: list[Any], body: bytes | None) -> HttpResponse:
    """Build the replay of a stored response, marked ``Idempotent-Replayed: true``."""
    if status_code == 201 and conf.REPLAY_CREATED_AS_OK:
        status_code = 200
    response = HttpResponse(body or b"", status=status_code)
    if not any(name.lower() == "content-type" for name, _ in headers):
        del response["Content-Type"]
    for name, value in headers:
        response[name] = value
    response[REPLAYED_HEADER] = "true"
    if "Location" in response:
        # Like Django's redirect responses, so test clients can follow a replayed redirect.
        response.url = response["Location"]  # type: ignore[attr-defined]
    return response


def discard(name: str) -> None:
    """Delete the stored body file ``name`` from the response storage (P3).

    A missing file is fine, and a storage error is logged, never raised: a body
    file left behind costs space, while an exception here would fail a purge.
    Names outside the app's own prefix are left alone.
    """
    if not name:
        return
    if not name.startswith(FILE_PREFIX):
        logger.warning("Not deleting %r: it is not a stored response body.", name)
        return
    try:
        storages[conf.RESPONSE_STORAGE].delete(name)
    except Exception:
        logger.exception("Could not delete the stored response body %r.", name)
