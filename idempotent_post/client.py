"""A ``requests`` client that retries POSTs safely (O6).

One logical operation, one key: every ``post()`` call sends a fresh ``Idempotency-Key``
and every retry of that call sends the same key again, with ``X-Retry-Count: N``
(N = 1, 2, ...). Connection errors, read timeouts, 409 (the first attempt is still
running), 429 and 5xx are retried with exponential backoff and jitter, and a
``Retry-After`` header is honoured up to a cap (a minute by default); a malformed one is
ignored in favour of the backoff. The backoff and ``Retry-After`` arithmetic is urllib3's
``Retry``; the loop lives in ``IdempotentAdapter.send``, because urllib3 resends the very
same headers on its own retries and so cannot say which retry a request is.

This module needs no Django: ``pip install "idempotent-post[client]"`` and::

    from idempotent_post.client import IdempotentSession

    with IdempotentSession(retries=5) as session:
        response = session.post("https://shop.example/api/orders/", json={"product": 1})
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Self

try:
    import requests
    import urllib3
    from requests.adapters import HTTPAdapter
    from requests.exceptions import ChunkedEncodingError, RetryError, SSLError
    from requests.structures import CaseInsensitiveDict
    from requests.utils import rewind_body
    from urllib3.exceptions import MaxRetryError
    from urllib3.util.retry import Retry
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "idempotent_post.client needs requests: pip install 'idempotent-post[client]'"
    ) from error

if int(urllib3.__version__.split(".")[0]) < 2:  # pragma: no cover - depends on the environment
    raise ImportError("idempotent_post.client needs urllib3 2.0 or later (for backoff jitter).")

__all__ = [
    "DEFAULT_RETRY_AFTER_CAP",
    "DEFAULT_STATUS_FORCELIST",
    "IdempotentAdapter",
    "IdempotentRetry",
    "IdempotentSession",
    "new_key",
    "post",
]

logger = logging.getLogger("idempotent_post.client")

#: Statuses worth another try with the same key: 409 (the first attempt is still in
#: progress), 429 (rate limited) and the server errors a retry may get past.
DEFAULT_STATUS_FORCELIST = frozenset({409, 429, 500, 502, 503, 504})

#: Methods that get a key unless the caller sends one.
DEFAULT_KEY_METHODS = frozenset({"POST", "PATCH"})

#: The longest wait a ``Retry-After`` header can ask for, in seconds. A server that says
#: "come back tomorrow" should not hold a caller's thread for a day; a caller who is
#: happy to wait longer says so with ``retry_after_cap``.
DEFAULT_RETRY_AFTER_CAP = 60.0

# Retrying these is safe without a key; any other method is retried only with one.
# QUERY (RFC 10008) is safe and idempotent like GET: retried without a key (C1).
_IDEMPOTENT_METHODS = Retry.DEFAULT_ALLOWED_METHODS | {"QUERY"}

_RETRYABLE_ERRORS = (requests.ConnectionError, requests.Timeout, ChunkedEncodingError)


def new_key() -> str:
    """A fresh idempotency key: a random UUID, as Stripe's clients send."""
    return str(uuid.uuid4())


def _cause(error: requests.RequestException) -> Exception:
    # requests wraps urllib3's errors, sometimes inside a MaxRetryError; Retry sorts
    # urllib3's own errors into connect, read and other retries.
    cause = error.args[0] if error.args else None
    if isinstance(cause, MaxRetryError):
        cause = cause.reason
    return cause if isinstance(cause, Exception) else error


def _discard(response: requests.Response) -> None:
    # Read what is left so the connection goes back to the pool, as requests does
    # before it follows a redirect.
    with contextlib.suppress(requests.RequestException, RuntimeError):
        response.content  # noqa: B018
    response.close()


class IdempotentRetry(Retry):
    """urllib3's ``Retry`` with a cap on ``Retry-After`` and no error for a malformed one.

    A ``Retry-After`` longer than ``retry_after_cap`` seconds waits ``retry_after_cap``
    seconds (urllib3's own ``retry_after_max``, where the installed release has one, still
    applies too). A header that is neither delay-seconds nor an HTTP date reads as absent,
    so the retry waits the backoff instead of raising ``InvalidHeader``.
    """

    def __init__(
        self, *args: Any, retry_after_cap: float = DEFAULT_RETRY_AFTER_CAP, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.retry_after_cap = retry_after_cap

    def new(self, **kw: Any) -> Self:
        """The next ``Retry`` (see ``increment``), with the same cap."""
        # Retry.new() lists the arguments it passes on, so it drops this one.
        kw.setdefault("retry_after_cap", self.retry_after_cap)
        return super().new(**kw)

    def parse_retry_after(self, retry_after: str) -> float:
        """Seconds to wait for a ``Retry-After`` value, at most ``retry_after_cap``."""
        seconds = super().parse_retry_after(retry_after)
        if seconds > self.retry_after_cap:
            logger.info(
                "Retry-After of %s s capped at %s s (retry_after_cap).",
                seconds,
                self.retry_after_cap,
            )
            return self.retry_after_cap
        return seconds

    def get_retry_after(self, response: Any) -> float | None:
        """The response's ``Retry-After`` in seconds, ``None`` when absent or malformed."""
        try:
            return super().get_retry_after(response)
        # The header is the server's text: whatever its parse raises (InvalidHeader, a
        # date out of range, an integer too long to read), the retry still goes ahead.
        except Exception as error:
            logger.warning("Retry-After not usable, backing off instead: %s", error)
            return None


class IdempotentAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` that retries with urllib3's ``Retry`` and counts the retries.

    Each retry resends the same prepared request, key included, with the retry count
    header set to 1, 2, ...; the first try goes without it. Between tries it sleeps as
    ``Retry.sleep`` says: the ``Retry-After`` header if the server sent one, else the
    exponential backoff with jitter. A ``Retry-After`` that the retry object cannot read
    (a plain ``Retry`` given a malformed one) gets the backoff instead of an exception.

    A method outside urllib3's idempotent methods (``POST``, ``PATCH``) is retried only
    when the request carries the idempotency key header: retrying a keyless POST could
    place a second order. A body that cannot be sent again (a generator, a stream that
    cannot seek) is sent once, without retries.

    When the retries are spent, the last response is returned (``raise_on_status=False``,
    the default here) or ``requests.exceptions.RetryError`` raised; the last connection
    error or timeout is raised as it came.
    """

    __attrs__ = [*HTTPAdapter.__attrs__, "retry", "header", "retry_count_header"]

    def __init__(
        self,
        retry: Retry,
        header: str = "Idempotency-Key",
        retry_count_header: str = "X-Retry-Count",
        **kwargs: Any,
    ) -> None:
        # The base adapter keeps urllib3 from retrying by itself: this class does.
        kwargs.pop("max_retries", None)
        super().__init__(**kwargs)
        self.retry = retry
        self.header = header
        self.retry_count_header = retry_count_header

    def _may_retry(self, request: requests.PreparedRequest) -> bool:
        method = (request.method or "").upper()
        if method not in _IDEMPOTENT_METHODS and self.header not in request.headers:
            return False
        body = request.body
        if body is None or isinstance(body, (bytes, str)):
            return True
        return getattr(request, "_body_position", None) is not None and hasattr(body, "seek")

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        """Send ``request``, retrying it as ``self.retry`` allows."""
        if not self._may_retry(request):
            return super().send(request, **kwargs)
        method = (request.method or "").upper()
        retry = self.retry
        request.headers.pop(self.retry_count_header, None)
        while True:
            count = len(retry.history)
            if count:
                request.headers[self.retry_count_header] = str(count)
                if not isinstance(request.body, (bytes, str, type(None))):
                    rewind_body(request)
            try:
                response = super().send(request, **kwargs)
                if not kwargs.get("stream"):
                    # Read the body here, so that a connection lost half-way is retried too.
                    response.content  # noqa: B018
            except SSLError:
                raise
            except _RETRYABLE_ERRORS as error:
                cause = _cause(error)
                try:
                    retry = retry.increment(method, request.url, error=cause)
                except Exception as stop:
                    if stop is cause or isinstance(stop, MaxRetryError):
                        raise error from None
                    raise
                logger.info(
                    "Retry %d of %s %s (key %s) after %s.",
                    len(retry.history),
                    method,
                    request.url,
                    request.headers.get(self.header),
                    error,
                )
                retry.sleep()
                continue

            has_retry_after = "Retry-After" in response.headers
            if not retry.is_retry(method, response.status_code, has_retry_after):
                return response
            try:
                retry = retry.increment(method, request.url, response=response.raw)
            except MaxRetryError as exhausted:
                if retry.raise_on_status:
                    response.close()
                    raise RetryError(exhausted, request=request) from None
                return response
            logger.info(
                "Retry %d of %s %s (key %s) after status %d.",
                len(retry.history),
                method,
                request.url,
                request.headers.get(self.header),
                response.status_code,
            )
            _discard(response)
            try:
                retry.sleep(response.raw)
            # A plain Retry raises on a Retry-After it cannot read (IdempotentRetry reads
            # it as absent): back off instead, as for a response without one.
            except Exception as error:
                logger.warning("Retry-After not usable, backing off instead: %s", error)
                retry.sleep()


class IdempotentSession(requests.Session):
    """A ``requests.Session`` whose POSTs are safe to retry.

    Every ``POST`` and ``PATCH`` made through it gets a fresh idempotency key, unless the
    call passes one (``idempotency_key=`` or the header itself); the mounted
    ``IdempotentAdapter`` then retries that request with the same key.

    :param retries: how many retries after the first try, or a ``urllib3`` ``Retry`` to
        use as it is (the other retry arguments are then ignored; an ``IdempotentRetry``
        keeps the ``Retry-After`` cap).
    :param backoff_factor: seconds; the n-th retry waits ``backoff_factor * 2 ** (n - 1)``
        (urllib3 skips the wait before the first retry).
    :param backoff_max: the longest backoff wait, in seconds.
    :param backoff_jitter: up to this many seconds are added at random to each wait, so
        that clients that failed together do not retry together.
    :param status_forcelist: the response statuses that are retried.
    :param respect_retry_after: wait as long as a ``Retry-After`` header says, up to
        ``retry_after_cap``. A malformed header is ignored: the backoff applies.
    :param retry_after_cap: the longest wait a ``Retry-After`` header gets, in seconds.
    :param header: the idempotency key header (the server's ``IDEMPOTENT_POST_HEADER``).
    :param retry_count_header: the header that carries the retry number.
    :param key_methods: the methods that get a key.
    :param timeout: the default ``(connect, read)`` timeout in seconds of every request;
        without one a stalled server is never retried. A call's own ``timeout`` wins.
    """

    def __init__(
        self,
        retries: int | Retry = 5,
        *,
        backoff_factor: float = 0.2,
        backoff_max: float = 10.0,
        backoff_jitter: float = 0.2,
        status_forcelist: Collection[int] = DEFAULT_STATUS_FORCELIST,
        respect_retry_after: bool = True,
        retry_after_cap: float = DEFAULT_RETRY_AFTER_CAP,
        header: str = "Idempotency-Key",
        retry_count_header: str = "X-Retry-Count",
        key_methods: Collection[str] = DEFAULT_KEY_METHODS,
        timeout: float | tuple[float, float] | None = (5.0, 30.0),
    ) -> None:
        super().__init__()
        self.header = header
        self.key_methods = frozenset(method.upper() for method in key_methods)
        self.timeout = timeout
        if isinstance(retries, Retry):
            retry = retries
        else:
            retry = IdempotentRetry(
                total=retries,
                backoff_factor=backoff_factor,
                backoff_max=backoff_max,
                backoff_jitter=backoff_jitter,
                status_forcelist=status_forcelist,
                allowed_methods=_IDEMPOTENT_METHODS | self.key_methods,
                respect_retry_after_header=respect_retry_after,
                raise_on_status=False,
                retry_after_cap=retry_after_cap,
            )
        adapter = IdempotentAdapter(retry, header=header, retry_count_header=retry_count_header)
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        """Prepare ``request`` and give it a fresh key if its method needs one and has none.

        ``Session.request`` prepares once per call; redirects and retries reuse the
        prepared request, so they keep its key.
        """
        prepared = super().prepare_request(request)
        if (prepared.method or "").upper() in self.key_methods and self.header not in (
            prepared.headers
        ):
            prepared.headers[self.header] = new_key()
        return prepared

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        """Send ``request`` with the session's default timeout unless one is given."""
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return super().send(request, **kwargs)

    def post(  # type: ignore[override]
        self,
        url: str | bytes,
        data: Any = None,
        json: Any = None,
        *,
        idempotency_key: str | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """POST to ``url``: one call is one operation with one key, kept across retries.

        ``idempotency_key`` sends a key of the caller's choosing, for instance one saved
        before a crash so that the operation can be finished after a restart.
        """
        if idempotency_key is not None:
            headers = CaseInsensitiveDict(kwargs.get("headers") or {})
            headers[self.header] = idempotency_key
            kwargs["headers"] = headers
        return self.request("POST", url, data=data, json=json, **kwargs)

    def query(self, url: str | bytes, data: Any = None, json: Any = None, **kwargs: Any) -> Any:
        """QUERY ``url`` (RFC 10008): a safe search with a body, retried like a GET (C1)."""
        return self.request("QUERY", url, data=data, json=json, **kwargs)


def post(
    url: str | bytes,
    data: Any = None,
    json: Any = None,
    *,
    idempotency_key: str | None = None,
    **kwargs: Any,
) -> requests.Response:
    """POST once through a new ``IdempotentSession`` with the default retry policy.

    For other retry settings, or to reuse connections, use an ``IdempotentSession``.
    """
    with IdempotentSession() as session:
        return session.post(url, data=data, json=json, idempotency_key=idempotency_key, **kwargs)
