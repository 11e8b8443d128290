"""Store and replay responses (P1-P4), and the problem+json errors (E1)."""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import json
import logging
import secrets
import struct
import tempfile
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import IO, TYPE_CHECKING, Any, cast
from urllib.parse import urldefrag

from asgiref.sync import async_to_sync
from django.core.exceptions import DisallowedRedirect, ImproperlyConfigured
from django.core.files.base import ContentFile, File
from django.core.files.storage import storages
from django.http import FileResponse, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase

from idempotent_post.conf import conf
from idempotent_post.http import HttpResponseSeeOther

if TYPE_CHECKING:
    from cryptography.fernet import Fernet, MultiFernet

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
# C4: the request was processed, but no key of ENCRYPTION_KEYS decrypts its stored
# response (a key removed too soon, a corrupt copy). 410 for the same reasons, and no 5xx:
# a retrying client (O6 retries 5xx) would repeat it forever, or give up and send a new key.
RESPONSE_UNREADABLE = Problem(
    410, "urn:idempotent-post:response-unreadable", "Stored response unreadable"
)

# C4: the stored header list of an encrypted record is this one pair: the marker and a
# Fernet token of the JSON header list. A name with a colon is no HTTP field name (RFC
# 9110 tokens hold none), so no plain header list is ever taken for an envelope.
ENCRYPTED_HEADERS = ":encrypted"
# An encrypted body file: this magic, then frames, each a 4-byte big-endian length and a
# Fernet token in binary form (base64-decoded). The first frame holds the body's size (8
# bytes), each next one its number (8 bytes) and up to CHUNK_SIZE bytes of the body.
_FILE_MAGIC = b"idempotent-post fernet-chunks 1\n"
_LENGTH = struct.Struct(">I")
_NUMBER = struct.Struct(">Q")
# A binary Fernet token: version, timestamp and IV, the ciphertext (the plaintext padded
# to a whole number of 16-byte blocks, at least one more byte), the HMAC.
_TOKEN_OVERHEAD = 1 + 8 + 16 + 32
_HEADER_FRAME = _TOKEN_OVERHEAD + 16
_MAX_FRAME = _TOKEN_OVERHEAD + _NUMBER.size + CHUNK_SIZE + 16


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


class UnreadableResponse(Exception):
    """A stored response that no key of ``ENCRYPTION_KEYS`` decrypts, or a corrupt one (C4)."""


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

    With ``ENCRYPTION_KEYS`` set, what is returned is encrypted under the first key (C4):
    the headers as an envelope, the body as a Fernet token, a body file as a sequence of
    tokens. A key setting that cannot work raises ``ImproperlyConfigured`` rather than
    store the response in the clear (the system checks say so at startup).
    """
    fernet = _fernet()
    stored = StoredResponse(response.status_code, _replay_headers(response), None)
    if response.streaming:
        response = _capture_stream(response, stored)  # type: ignore[arg-type]
    else:
        content = bytes(response.content)  # type: ignore[attr-defined]
        if len(content) <= conf.MAX_RESPONSE_SIZE:
            stored.body = content
        elif len(content) <= conf.MAX_STORED_FILE_SIZE:
            _save(ContentFile(content), stored)
        else:
            stored.kept = False
    if fernet is not None:
        stored.headers = _seal_headers(stored.headers, fernet)
        if stored.body is not None:
            stored.body = _encrypt(fernet, stored.body)
    return stored, response


def replay(stored: StoredResponse) -> HttpResponseBase:
    """Build the replay of ``stored``, marked ``Idempotent-Replayed: true`` (P1-P4).

    The body is the original byte for byte, from the row or streamed from the
    response storage. A body that was not kept, or whose file is gone from the
    storage, is never answered as an empty success: the replay is a ``303 See Other``
    to the original ``Location`` when a 2xx or 3xx response had one, else a 410
    ``urn:idempotent-post:response-not-kept`` problem (P3).

    An encrypted record is decrypted (C4); one that cannot be is never answered: the
    replay is a 410 ``urn:idempotent-post:response-unreadable`` problem, and an error is
    logged for the operator.
    """
    sealed = is_encrypted(stored)
    try:
        stored = decrypted(stored)
    except UnreadableResponse as error:
        return _unreadable(stored, error)
    status_code = stored.status_code
    if status_code == 201 and conf.REPLAY_CREATED_AS_OK:
        status_code = 200
    response: HttpResponseBase
    if not stored.kept:
        return _not_kept(stored, "it was larger than the largest response kept")
    if stored.body is not None:
        response = HttpResponse(stored.body, status=status_code)
    elif stored.body_file and sealed:
        try:
            opened_sealed = _open_sealed(stored.body_file, status_code)
        except UnreadableResponse as error:
            return _unreadable(stored, error)
        if opened_sealed is None:
            return _not_kept(stored, "its stored copy is missing")
        response = opened_sealed
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
    """Keep ``content`` in the response storage under a random, unguessable name.

    With ``ENCRYPTION_KEYS`` set, an encrypted copy is kept instead (C4), written to a
    temporary file a chunk at a time, so memory stays bounded (P3).
    """
    try:
        storage = storages[conf.RESPONSE_STORAGE]
        fernet = _fernet()
        if fernet is None:
            stored.body_file = storage.save(_new_name(), content, max_length=255)
        else:
            with _write_sealed(content.chunks(CHUNK_SIZE), fernet) as sealed:
                stored.body_file = storage.save(_new_name(), File(sealed), max_length=255)
    except Exception:
        logger.exception("Could not keep a response body in the response storage.")
        stored.kept = False


def _new_name() -> str:
    return f"{FILE_PREFIX}{secrets.token_urlsafe(32)}"


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


def _unreadable(stored: StoredResponse, error: UnreadableResponse) -> HttpResponseBase:
    """The replay of a response that cannot be decrypted (C4): never the response itself."""
    logger.error(
        "A stored response (status %s%s) cannot be decrypted: %s. Its retries get a 410 "
        "response-unreadable problem until a key in IDEMPOTENT_POST_ENCRYPTION_KEYS "
        "decrypts it again, or the record expires or is forgotten.",
        stored.status_code,
        f", body file {stored.body_file!r}" if stored.body_file else "",
        error,
    )
    response = problem_response(
        RESPONSE_UNREADABLE,
        f"The request with this idempotency key was already processed (status "
        f"{stored.status_code}), but its stored response cannot be read. Do not repeat the "
        "request with a new key; look its result up instead.",
    )
    response[REPLAYED_HEADER] = "true"
    return response


# C4: encryption at rest.


def is_encrypted(stored: StoredResponse) -> bool:
    """Whether ``stored`` was encrypted at capture (its headers are the envelope)."""
    headers = stored.headers
    return (
        isinstance(headers, list)
        and len(headers) == 1
        and isinstance(headers[0], list | tuple)
        and len(headers[0]) == 2
        and headers[0][0] == ENCRYPTED_HEADERS
    )


def decrypted(stored: StoredResponse) -> StoredResponse:
    """``stored`` with its headers and row body in the clear (C4).

    A plain ``stored`` (encryption off, or a record kept before it was turned on) is
    returned as it is. A body file stays as stored: :func:`replay` decrypts it while it
    streams it. Raises :class:`UnreadableResponse` where no key of ``ENCRYPTION_KEYS``
    decrypts it, or it is corrupt.
    """
    if not is_encrypted(stored):
        return stored
    fernet = _fernet_to_read()
    plain = _decrypt_token(fernet, _token(stored.headers[0][1]))
    try:
        headers = json.loads(plain)
    except ValueError:
        raise UnreadableResponse("its headers are corrupt") from None
    if not isinstance(headers, list) or not all(
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, str) for v in pair)
        for pair in headers
    ):
        raise UnreadableResponse("its headers are corrupt")
    body = None if stored.body is None else _decrypt(fernet, stored.body)
    return replace(stored, headers=headers, body=body)


def reencrypt(stored: StoredResponse) -> StoredResponse | None:
    """``stored`` encrypted under the first key of ``ENCRYPTION_KEYS``; None if it already is.

    An encrypted record is re-encrypted with ``MultiFernet.rotate``; a plain one (kept
    before encryption was turned on) is encrypted. A body file is copied, encrypted under
    the first key, to a new name: the caller deletes the old file once the record names
    the new one, or the new one where the record could not be updated. Raises
    :class:`UnreadableResponse` where no key decrypts ``stored``, and
    ``ImproperlyConfigured`` without keys.
    """
    ciphers = _ciphers()
    if ciphers is None:
        raise ImproperlyConfigured(
            "IDEMPOTENT_POST_ENCRYPTION_KEYS is empty: there is no key to encrypt under."
        )
    fernet, primary = ciphers
    sealed = is_encrypted(stored)
    if sealed:
        token = _token(stored.headers[0][1])
        if _is_current(primary, token):
            return None
        headers = [[ENCRYPTED_HEADERS, _rotate(fernet, token).decode("ascii")]]
        body = None
        if stored.body is not None:
            body = base64.urlsafe_b64decode(_rotate(fernet, base64.urlsafe_b64encode(stored.body)))
    else:
        headers = _seal_headers(stored.headers, fernet)
        body = None if stored.body is None else _encrypt(fernet, stored.body)
    body_file = stored.body_file
    if body_file:
        body_file = _copy_sealed(body_file, sealed, fernet)
    return replace(stored, headers=headers, body=body, body_file=body_file)


def _ciphers() -> tuple[MultiFernet, Fernet] | None:
    """The ``MultiFernet`` of ``ENCRYPTION_KEYS`` and the ``Fernet`` of its first key.

    None when the setting is empty; ``ImproperlyConfigured`` when it cannot work.
    """
    keys = conf.ENCRYPTION_KEYS
    if not keys:
        return None
    if isinstance(keys, str | bytes):
        raise ImproperlyConfigured(
            "IDEMPOTENT_POST_ENCRYPTION_KEYS must be a list of Fernet keys, not one string."
        )
    try:
        return _build_ciphers(tuple(keys))
    except TypeError:
        raise ImproperlyConfigured(
            "IDEMPOTENT_POST_ENCRYPTION_KEYS must be a list of Fernet keys (str or bytes)."
        ) from None


@functools.lru_cache(maxsize=8)
def _build_ciphers(keys: tuple[Any, ...]) -> tuple[MultiFernet, Fernet]:
    try:
        from cryptography.fernet import Fernet, MultiFernet
    except ImportError:
        raise ImproperlyConfigured(
            "IDEMPOTENT_POST_ENCRYPTION_KEYS needs the cryptography package: "
            'pip install "idempotent-post[encryption]".'
        ) from None
    fernets = []
    for position, key in enumerate(keys, 1):
        try:
            fernets.append(Fernet(key))
        except (TypeError, ValueError):
            # Never the key itself in a message: it is a secret.
            raise ImproperlyConfigured(
                f"IDEMPOTENT_POST_ENCRYPTION_KEYS: key {position} is not a Fernet key "
                "(32 url-safe base64-encoded bytes, as Fernet.generate_key() makes)."
            ) from None
    return MultiFernet(fernets), fernets[0]


def _fernet() -> MultiFernet | None:
    ciphers = _ciphers()
    return None if ciphers is None else ciphers[0]


def _fernet_to_read() -> MultiFernet:
    try:
        fernet = _fernet()
    except ImproperlyConfigured as error:
        raise UnreadableResponse(str(error)) from None
    if fernet is None:
        raise UnreadableResponse("it is encrypted and IDEMPOTENT_POST_ENCRYPTION_KEYS is empty")
    return fernet


def _token(value: Any) -> bytes:
    if not isinstance(value, str) or not value.isascii():
        raise UnreadableResponse("its headers are corrupt")
    return value.encode("ascii")


def _seal_headers(headers: list[list[str]], fernet: MultiFernet) -> list[list[str]]:
    token = fernet.encrypt(json.dumps(headers).encode())
    return [[ENCRYPTED_HEADERS, token.decode("ascii")]]


def _encrypt(fernet: MultiFernet, data: bytes) -> bytes:
    """A Fernet token in binary form: three quarters of its base64 size."""
    return base64.urlsafe_b64decode(fernet.encrypt(data))


def _decrypt(fernet: MultiFernet, raw: bytes) -> bytes:
    return _decrypt_token(fernet, base64.urlsafe_b64encode(raw))


def _decrypt_token(fernet: MultiFernet, token: bytes) -> bytes:
    from cryptography.fernet import InvalidToken

    try:
        return fernet.decrypt(token)
    except InvalidToken:
        raise UnreadableResponse(
            "no key of IDEMPOTENT_POST_ENCRYPTION_KEYS decrypts it, or it is corrupt"
        ) from None


def _rotate(fernet: MultiFernet, token: bytes) -> bytes:
    from cryptography.fernet import InvalidToken

    try:
        return fernet.rotate(token)
    except (InvalidToken, binascii.Error):
        raise UnreadableResponse(
            "no key of IDEMPOTENT_POST_ENCRYPTION_KEYS decrypts it, or it is corrupt"
        ) from None


def _is_current(primary: Fernet, token: bytes) -> bool:
    """Whether ``token`` was made with the first key (its HMAC checks, nothing decrypted)."""
    from cryptography.fernet import InvalidToken

    try:
        primary.extract_timestamp(token)
    except InvalidToken:
        return False
    return True


def _write_sealed(chunks: Iterable[bytes], fernet: MultiFernet) -> IO[bytes]:
    """An encrypted body file of ``chunks``, in a temporary file positioned at its start.

    The size frame comes first, but the size is known only at the end: its token has a
    fixed length, so its place is kept and it is written last.
    """
    out = tempfile.SpooledTemporaryFile(max_size=4 * CHUNK_SIZE)  # noqa: SIM115
    try:
        out.write(_FILE_MAGIC)
        out.write(bytes(_LENGTH.size + _HEADER_FRAME))
        size = number = 0
        for chunk in chunks:
            for start in range(0, len(chunk), CHUNK_SIZE):
                part = chunk[start : start + CHUNK_SIZE]
                _write_frame(out, _encrypt(fernet, _NUMBER.pack(number) + part))
                number += 1
                size += len(part)
        header = _encrypt(fernet, _NUMBER.pack(size))
        if len(header) != _HEADER_FRAME:
            raise AssertionError("unexpected Fernet token length")
        out.seek(len(_FILE_MAGIC))
        _write_frame(out, header)
        out.seek(0)
    except BaseException:
        out.close()
        raise
    return out


def _write_frame(out: IO[bytes], raw: bytes) -> None:
    out.write(_LENGTH.pack(len(raw)))
    out.write(raw)


def _read_exactly(file: IO[bytes], size: int) -> bytes:
    """``size`` bytes, fewer only at the end of ``file`` (some storages read short)."""
    data = b""
    while len(data) < size:
        part = file.read(size - len(data))
        if not part:
            break
        data += part
    return data


def _frames(file: IO[bytes]) -> Iterator[bytes]:
    if _read_exactly(file, len(_FILE_MAGIC)) != _FILE_MAGIC:
        raise UnreadableResponse("its body file is not an encrypted body")
    while prefix := _read_exactly(file, _LENGTH.size):
        if len(prefix) != _LENGTH.size:
            raise UnreadableResponse("its body file is truncated")
        (length,) = _LENGTH.unpack(prefix)
        if not 0 < length <= _MAX_FRAME:
            raise UnreadableResponse("its body file is corrupt")
        frame = _read_exactly(file, length)
        if len(frame) != length:
            raise UnreadableResponse("its body file is truncated")
        yield frame


def _open_body(file: IO[bytes], fernet: MultiFernet) -> tuple[int, Iterator[bytes]]:
    """The size of the encrypted body in ``file``, and its chunks decrypted one at a time.

    The size frame is read and decrypted here, so a body no key decrypts raises before
    anything is sent. The chunks are checked in order, and their total against the
    size: a frame moved, dropped or added raises instead of sending another body.
    """
    frames = _frames(file)
    header = _decrypt(fernet, next(frames, b""))
    if len(header) != _NUMBER.size:
        raise UnreadableResponse("its body file is corrupt")
    (size,) = _NUMBER.unpack(header)

    def chunks() -> Iterator[bytes]:
        total = 0
        for number, frame in enumerate(frames):
            plain = _decrypt(fernet, frame)
            if len(plain) < _NUMBER.size or _NUMBER.unpack_from(plain)[0] != number:
                raise UnreadableResponse("its body file is corrupt")
            total += len(plain) - _NUMBER.size
            if total > size:
                raise UnreadableResponse("its body file is corrupt")
            yield plain[_NUMBER.size :]
        if total != size:
            raise UnreadableResponse("its body file is truncated")

    return size, chunks()


def _open_sealed(name: str, status_code: int) -> StreamingHttpResponse | None:
    """A response streaming the encrypted body ``name`` decrypted; None where it is missing.

    Raises :class:`UnreadableResponse` where it cannot be decrypted.
    """
    fernet = _fernet_to_read()
    try:
        file = storages[conf.RESPONSE_STORAGE].open(name, "rb")
    except Exception:
        logger.warning("The stored response body %r cannot be read.", name, exc_info=True)
        return None
    try:
        size, chunks = _open_body(file, fernet)
    except UnreadableResponse:
        file.close()
        raise
    except Exception:
        file.close()
        logger.warning("The stored response body %r cannot be read.", name, exc_info=True)
        return None
    response = StreamingHttpResponse(_SealedBody(file, chunks, name), status=status_code)
    # The size the client must get: a body cut short by a corrupt frame shows as such.
    response["Content-Length"] = str(size)
    return response


class _SealedBody:
    """An encrypted stored body, decrypted as it is sent."""

    def __init__(self, file: IO[bytes], chunks: Iterator[bytes], name: str) -> None:
        self.file = file
        self.chunks = chunks
        self.name = name

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self.chunks
        except UnreadableResponse as error:
            # Too late for a problem answer: the client sees the body cut short.
            logger.error("The stored response body %r broke off: %s.", self.name, error)
            raise

    def close(self) -> None:
        self.file.close()


def _copy_sealed(name: str, sealed: bool, fernet: MultiFernet) -> str:
    """Copy the body file ``name`` encrypted under the first key; return the copy's name."""
    storage = storages[conf.RESPONSE_STORAGE]
    with storage.open(name, "rb") as file:
        chunks = _open_body(cast(IO[bytes], file), fernet)[1] if sealed else file.chunks(CHUNK_SIZE)
        with _write_sealed(chunks, fernet) as copy:
            return storage.save(_new_name(), File(copy), max_length=255)
