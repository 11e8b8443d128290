"""Store and replay responses (P1-P4), and the problem+json errors (E1)."""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import IO, cast
from urllib.parse import urldefrag

from asgiref.sync import async_to_sync
from django.core.exceptions import DisallowedRedirect
from django.core.files.base import ContentFile, File
from django.core.files.storage import storages
from django.http import FileResponse, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase

from idempotent_post.conf import conf
from idempotent_post.http import HttpResponseSeeOther

logger = logging.getLogger("idempotent_post")

REPLAYED_HEADER = "Idempotent-Replayed"
# Bodies kept in the response storage (P3) live under this prefix, each with a random name.
FILE_PREFIX = "idempotent-post/"
PROBLEM_CONTENT_TYPE = "application/problem+json"
# Bytes read at a time from a stream or a stored body.
CHUNK_SIZE = 64 * 1024


@dataclass(frozen=True)
class Problem:
    """One kind of error the app answers with (RFC 9457).

    ``type`` is its ``urn:idempotent-post:…`` name; the answer's ``type`` member is
    that, or a URL under ``IDEMPOTENT_POST_DOCS_URL`` (see :func:`problem_type`).
    """

    status: int
    type: str
    title: str

    @property
    def name(self) -> str:
        """The short name, e.g. ``in-progress``: the end of the urn, the fragment of the URL."""
        return self.type.rpartition(":")[2]


INVALID_KEY = Problem(400, "urn:idempotent-post:invalid-key", "Invalid idempotency key")
MISSING_KEY = Problem(400, "urn:idempotent-post:missing-key", "Idempotency key required")
BAD_BODY = Problem(400, "urn:idempotent-post:bad-request-body", "Unreadable request body")
IN_PROGRESS = Problem(409, "urn:idempotent-post:in-progress", "Request in progress")
BODY_TOO_LARGE = Problem(413, "urn:idempotent-post:body-too-large", "Request body too large")
MISMATCH = Problem(422, "urn:idempotent-post:key-reused", "Idempotency key reused")
UNAVAILABLE = Problem(503, "urn:idempotent-post:lock-unavailable", "Idempotency store unavailable")
# P3: the request was processed, but its response was not kept (too large) or is lost.
# 410: the condition is permanent for this key, so a client does not retry it, and it
# is no 409 (retry later), 422 (wrong request) nor 5xx (server fault, retry).
RESPONSE_NOT_KEPT = Problem(
    410, "urn:idempotent-post:response-not-kept", "Stored response not available"
)


# Statuses whose responses have no body, so an absent one is the original (RFC 9110).
_NO_BODY_STATUSES = frozenset({204, 205, 304})
# Headers without which a replayed body cannot be read, whatever REPLAY_HEADERS says
# (P1, P4). Vary goes with Content-Encoding: caches must not serve gzip to others.
_BODY_HEADERS = frozenset({"content-type", "content-encoding"})
# Per-user headers, never replayed whatever REPLAY_HEADERS says (P2).
_NEVER_REPLAYED = frozenset({"set-cookie"})


def problem_type(problem: Problem) -> str:
    """The ``type`` member of ``problem``'s answers (C2).

    With ``IDEMPOTENT_POST_DOCS_URL`` set, the URL of its documentation: that URL with
    the problem's short name as fragment (``https://example.com/errors#in-progress``),
    any fragment of the setting's own replaced. Without it, the ``urn:`` name.
    """
    docs = conf.DOCS_URL
    # A wrong setting must not turn every error answer into a 500 (E2).
    if not docs or not isinstance(docs, str):
        return problem.type
    return f"{urldefrag(docs).url}#{problem.name}"


def problem_response(problem: Problem, detail: str, **headers: str) -> HttpResponse:
    """An ``application/problem+json`` response for ``problem`` (E1).

    ``Cache-Control: no-store`` (C2): an error is about this one request at this moment,
    and a cache that kept a 409 or a 503 would answer it to the retries it asks for.
    ``headers`` are added as given, underscores for hyphens (``Retry_After="2"``).
    """
    body = {
        "type": problem_type(problem),
        "title": problem.title,
        "status": problem.status,
        "detail": detail,
    }
    response = HttpResponse(
        json.dumps(body), status=problem.status, content_type=PROBLEM_CONTENT_TYPE
    )
    response["Cache-Control"] = "no-store"
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


@dataclass
class StoredResponse:
    """What of a response is kept for its replays (P1-P4).

    The body lives in the row when it is at most ``MAX_RESPONSE_SIZE`` bytes, else in
    the response storage under ``body_file`` when it is at most
    ``MAX_STORED_FILE_SIZE``, else nowhere: ``kept`` is then False and a replay says
    so instead of answering an empty body.
    """

    status_code: int
    headers: list[list[str]]
    body: bytes | None
    body_file: str = ""
    kept: bool = True


def capture(response: HttpResponseBase) -> tuple[StoredResponse, HttpResponseBase]:
    """Take from ``response`` what a replay needs; return it and the response to send.

    A streaming response (``FileResponse`` included) is read here, chunk by chunk,
    into a temporary file that spills to disk past ``MAX_RESPONSE_SIZE``, so memory
    stays bounded whatever its size. The response sent is the same object with its
    stream replaced: the bytes already read, then, past ``MAX_STORED_FILE_SIZE``, the
    rest of the original iterator, unread until the client gets it. Its headers,
    cookies and the closing of the original's resources are unchanged.

    An asynchronous stream is read to its end before it is sent.

    A storage that fails is logged, never raised: the body is then not kept, and the
    client still gets the whole response now.
    """
    stored = StoredResponse(response.status_code, _replay_headers(response), None)
    if response.streaming:
        return stored, _capture_stream(response, stored)  # type: ignore[arg-type]
    content = bytes(response.content)  # type: ignore[attr-defined]
    if len(content) <= conf.MAX_RESPONSE_SIZE:
        stored.body = content
    elif len(content) <= conf.MAX_STORED_FILE_SIZE:
        _save(ContentFile(content), stored)
    else:
        stored.kept = False
    return stored, response


def replay(stored: StoredResponse) -> HttpResponseBase:
    """Build the replay of ``stored``, marked ``Idempotent-Replayed: true`` (P1-P4).

    The body is the original byte for byte, from the row or streamed from the
    response storage. A body that was not kept, or whose file is gone from the
    storage, is never answered as an empty success: the replay is a ``303 See Other``
    to the original ``Location`` when a 2xx or 3xx response had one, else a 410
    ``urn:idempotent-post:response-not-kept`` problem (P3).
    """
    status_code = stored.status_code
    if status_code == 201 and conf.REPLAY_CREATED_AS_OK:
        status_code = 200
    response: HttpResponseBase
    if not stored.kept:
        return _not_kept(stored, "it was larger than the largest response kept")
    if stored.body is not None:
        response = HttpResponse(stored.body, status=status_code)
    elif stored.body_file:
        opened = _open(stored.body_file, status_code)
        if opened is None:
            return _not_kept(stored, "its stored copy is missing")
        response = opened
        # FileResponse names the body after the storage's file; the original did not.
        del response["Content-Disposition"]
    elif status_code in _NO_BODY_STATUSES:
        response = HttpResponse(status=status_code)
    else:
        return _not_kept(stored, "its body was not stored")
    if not any(name.lower() == "content-type" for name, _ in stored.headers):
        del response["Content-Type"]
    for name, value in stored.headers:
        response[name] = value
    response[REPLAYED_HEADER] = "true"
    if "Location" in response:
        # Like Django's redirect responses, so test clients can follow a replayed redirect.
        response.url = response["Location"]  # type: ignore[union-attr]
    return response


def discard(name: str) -> None:
    """Delete the stored body file ``name`` from the response storage (P3).

    A missing file is fine, and a storage error is logged, never raised: a body
    file left behind costs space, while an exception here would fail a purge.
    Names that ``capture`` cannot have made are left alone.
    """
    if not name:
        return
    if not _is_body_file(name):
        logger.warning("Not deleting %r: it is not a stored response body.", name)
        return
    try:
        storages[conf.RESPONSE_STORAGE].delete(name)
    except Exception:
        logger.exception("Could not delete the stored response body %r.", name)


def _replay_headers(response: HttpResponseBase) -> list[list[str]]:
    allowed = {name.lower() for name in conf.REPLAY_HEADERS} | _BODY_HEADERS
    if response.has_header("Content-Encoding"):
        allowed.add("vary")
    allowed -= _NEVER_REPLAYED
    return [[name, value] for name, value in response.items() if name.lower() in allowed]


def _capture_stream(response: StreamingHttpResponse, stored: StoredResponse) -> HttpResponseBase:
    row_limit = conf.MAX_RESPONSE_SIZE
    file_limit = conf.MAX_STORED_FILE_SIZE
    # A bounded buffer: in memory while it could fit the row, on disk beyond. It
    # outlives this function: the response sent reads it and closes it.
    spool = tempfile.SpooledTemporaryFile(max_size=max(row_limit, 1))  # noqa: SIM115
    rest: Iterator[bytes] | None = None
    try:
        if response.is_async:
            size = async_to_sync(_drain)(
                cast(AsyncIterator[bytes], response.streaming_content), spool
            )
        else:
            rest = iter(cast(Iterator[bytes], response.streaming_content))
            size = _read_until(rest, spool, max(row_limit, file_limit))
        spool.seek(0)
        if size <= row_limit:
            stored.body = spool.read()
        elif size <= file_limit:
            _save(File(spool), stored)
        else:
            stored.kept = False
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    if response.is_async:
        response.streaming_content = _AsyncBody(spool)
    else:
        response.streaming_content = _Body(spool, rest)
    return response


def _read_until(chunks: Iterator[bytes], spool: IO[bytes], limit: int) -> int:
    """Copy ``chunks`` into ``spool`` until past ``limit`` bytes; the rest stays unread."""
    size = 0
    for chunk in chunks:
        spool.write(chunk)
        size += len(chunk)
        if size > limit:
            break
    return size


async def _drain(chunks: AsyncIterator[bytes], spool: IO[bytes]) -> int:
    size = 0
    async for chunk in chunks:
        spool.write(chunk)
        size += len(chunk)
    return size


class _Body:
    """A captured stream sent on: the bytes read into ``spool``, then the unread rest."""

    def __init__(self, spool: IO[bytes], rest: Iterator[bytes] | None) -> None:
        self.spool = spool
        self.rest = rest

    def __iter__(self) -> Iterator[bytes]:
        yield from iter(lambda: self.spool.read(CHUNK_SIZE), b"")
        if self.rest is not None:
            yield from self.rest

    def close(self) -> None:
        self.spool.close()


class _AsyncBody:
    """A captured asynchronous stream sent on, still asynchronous for ASGI servers."""

    def __init__(self, spool: IO[bytes]) -> None:
        self.spool = spool

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while chunk := self.spool.read(CHUNK_SIZE):
            yield chunk

    def close(self) -> None:
        self.spool.close()


def _save(content: File, stored: StoredResponse) -> None:
    """Keep ``content`` in the response storage under a random, unguessable name."""
    name = f"{FILE_PREFIX}{secrets.token_urlsafe(32)}"
    try:
        stored.body_file = storages[conf.RESPONSE_STORAGE].save(name, content, max_length=255)
    except Exception:
        logger.exception("Could not keep a response body in the response storage.")
        stored.kept = False


def _open(name: str, status_code: int) -> FileResponse | None:
    """A response streaming the stored body ``name``, or None where it cannot be read."""
    try:
        file = storages[conf.RESPONSE_STORAGE].open(name, "rb")
    except Exception:
        logger.warning("The stored response body %r cannot be read.", name, exc_info=True)
        return None
    try:
        return FileResponse(file, status=status_code)
    except Exception:
        file.close()
        logger.warning("The stored response body %r cannot be read.", name, exc_info=True)
        return None


def _is_body_file(name: str) -> bool:
    rest = name[len(FILE_PREFIX) :]
    return name.startswith(FILE_PREFIX) and bool(rest) and "/" not in rest and ".." not in rest


def _not_kept(stored: StoredResponse, reason: str) -> HttpResponseBase:
    """The replay of a response whose body cannot be sent again (P3)."""
    location = next((value for name, value in stored.headers if name.lower() == "location"), "")
    response: HttpResponseBase | None = None
    if location and 200 <= stored.status_code < 400:
        with contextlib.suppress(DisallowedRedirect):
            response = HttpResponseSeeOther(location)
    if response is None:
        response = problem_response(
            RESPONSE_NOT_KEPT,
            f"The request with this idempotency key was already processed (status "
            f"{stored.status_code}), but its response cannot be sent again: {reason}. "
            "Do not repeat the request with a new key; look its result up instead.",
        )
    response[REPLAYED_HEADER] = "true"
    return response
