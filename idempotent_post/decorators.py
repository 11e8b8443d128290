"""``idempotent(...)``: the decorator that guards a view (D1, D2), the API adapter.

The decorator reads the key from the header, hands the request to the engine, and turns
the engine's outcome into an HTTP answer: the view's response, a replay, 409 or 422.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from inspect import isclass, iscoroutinefunction
from typing import Any, TypeVar, overload

from django.http.response import HttpResponseBase

from idempotent_post.conf import conf
from idempotent_post.engine import (
    EVERY_DATABASE,
    Busy,
    Executed,
    Guard,
    Idempotency,
    Mismatch,
    Options,
    Outcome,
    Refused,
    Replay,
    running,
)
from idempotent_post.keys import InvalidKey, key_from_header, parse_key
from idempotent_post.responses import (
    IN_PROGRESS,
    INVALID_KEY,
    MISMATCH,
    MISSING_KEY,
    problem_response,
)

F = TypeVar("F", bound=Callable[..., Any])

#: Methods that are safe by definition and pass through unguarded (QUERY: RFC 10008, C1).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "QUERY"})

_ORDER_HELP = """idempotent() must be placed below @api_view, so that DRF authenticates the
request before the key is scoped to its user:

    @api_view(["POST"])
    @idempotent(required=True)
    def create_order(request): ...

On class-based DRF views, decorate the method (def create(self, request, ...)) or use
idempotent_post.drf.IdempotentMixin."""


def _request_of(args: tuple[Any, ...]) -> Any:
    # A function view gets the request first; a method gets self, then the request.
    first = args[0]
    if hasattr(first, "META") and hasattr(first, "method"):
        return first
    return args[1]


def _refuse_wrong_order(view: Any) -> None:
    if isclass(view):
        raise TypeError(
            f"idempotent() decorates view functions and methods, not the class {view.__name__}.\n"
            + _ORDER_HELP
        )
    # DRF's @api_view and APIView.as_view() return a function that carries the class.
    drf_class = getattr(view, "cls", None)
    if drf_class is not None and hasattr(drf_class, "authentication_classes"):
        raise TypeError(_ORDER_HELP)


def _answered(request: Any, call: Callable[[], HttpResponseBase]) -> HttpResponseBase:
    """The view's answer, rendered as DRF would render it, so that its body can be stored.

    On a DRF view an exception that DRF answers (a ``ValidationError``'s 400, a 404, a
    throttle's 429) is the view's answer, given here by the view's own
    ``handle_exception``: the engine keeps it like a returned 4xx and undoes the view's
    writes, as for any exception (S6, T1). What DRF does not answer is raised on.

    DRF renders only after the handler returns, in ``APIView.dispatch``; the engine
    stores the body before that, inside the view's transaction. DRF's own second
    ``finalize_response`` then finds the body rendered. Duck-typed: no DRF import here.
    """
    view = (getattr(request, "parser_context", None) or {}).get("view")
    try:
        response = call()
    except Exception as error:
        if view is None:
            raise
        # Marks the response as an exception's answer; raises again what DRF leaves alone.
        response = view.handle_exception(error)
    unrendered = hasattr(response, "data") and not hasattr(response, "accepted_renderer")
    if view is not None and unrendered:
        response = view.finalize_response(request, response)
    return response


def respond(guard: Guard, outcome: Outcome) -> HttpResponseBase:
    """The HTTP answer to an engine outcome (E1, P1, S3, F1)."""
    match outcome:
        case Executed(response) | Refused(response):
            return response
        case Replay():
            return outcome.response()
        case Busy():
            lease = guard.options.resolve().lease
            return problem_response(
                IN_PROGRESS,
                "A request with this idempotency key is still being processed. "
                "Retry after the time given in Retry-After.",
                Retry_After=str(max(1, math.ceil(min(lease, 1.0)))),
            )
        case Mismatch():
            return problem_response(
                MISMATCH,
                "This idempotency key was already used for a different request "
                "(method, path or body differ). Use a new key for a new request.",
            )
    raise AssertionError(f"unexpected outcome {outcome!r}")


def _key_or_problem(
    request: Any, guard: Guard, key_of: Callable[[Any], Any] | None
) -> tuple[str | None, HttpResponseBase | None]:
    """The request's key, or the 400 for a bad key or a missing required one (K2, K4, X3)."""
    try:
        if key_of is None:
            key = key_from_header(request)
        else:
            # X3: the key from the request itself, e.g. a webhook's event id in its body.
            found = _read_key(key_of, request)
            key = None if found in (None, "") else parse_key(str(found))
    except InvalidKey as error:
        return None, problem_response(INVALID_KEY, str(error))
    if key is None and guard.options.resolve().required:
        return None, problem_response(
            MISSING_KEY, f"This endpoint requires the {conf.HEADER} header."
        )
    return key, None


def _read_key(key_of: Callable[[Any], Any], request: Any) -> Any:
    try:
        return key_of(request)
    except (LookupError, TypeError, ValueError, AttributeError) as error:
        # A body without the field, or not the shape the callable expects.
        raise InvalidKey(f"The key cannot be read from the request: {error!r}") from error


@overload
def idempotent(view: F) -> F: ...


@overload
def idempotent(
    view: None = None,
    *,
    required: bool | None = None,
    scope: Any = None,
    fingerprint: Any = None,
    lease: float | None = None,
    ttl: float | None = None,
    wait: float | None = None,
    atomic: bool | None = None,
    store: Callable[[HttpResponseBase], bool] | None = None,
    key: Callable[[Any], Any] | None = None,
) -> Callable[[F], F]: ...


def idempotent(
    view: Any = None,
    *,
    required: bool | None = None,
    scope: Any = None,
    fingerprint: Any = None,
    lease: float | None = None,
    ttl: float | None = None,
    wait: float | None = None,
    atomic: bool | None = None,
    store: Callable[[HttpResponseBase], bool] | None = None,
    key: Callable[[Any], Any] | None = None,
) -> Any:
    """Guard a view with the ``Idempotency-Key`` header.

    The first request with a key runs the view and stores its response; a retry with
    the same key gets the stored response (``Idempotent-Replayed: true``) without
    running the view; a retry while the first still runs gets 409, or waits up to
    ``wait`` seconds; the key reused for a different request gets 422. Safe methods
    (GET, HEAD, OPTIONS, TRACE) pass through. Options left ``None`` follow the
    ``IDEMPOTENT_POST_*`` settings; ``store(response) -> bool`` says which responses
    are kept (default: 2xx-4xx but the transient 408, 409, 425, 429). ``key(request)``
    takes the key from the request instead of the header, e.g. a webhook's event id from
    its body (X3); it may return ``None`` for "no key".

    Works on plain Django function views, on async views, on DRF ``@api_view``
    functions (placed below ``@api_view``) and on ``APIView``/``ViewSet`` methods. A
    decorated function view is taken out of ``ATOMIC_REQUESTS``: the guard runs its
    own transaction (T3).
    """
    key_of = key
    options = Options(
        required=required,
        scope=scope,
        fingerprint=fingerprint,
        lease=lease,
        ttl=ttl,
        wait=wait,
        atomic=atomic,
        store=store,
    )

    def decorate(func: F) -> F:
        _refuse_wrong_order(func)
        guard = Guard(options, sender=func)

        if iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                request = _request_of(args)
                if request.method in SAFE_METHODS:
                    return await func(*args, **kwargs)
                if not conf.ENABLED:
                    request.idempotency = Idempotency()
                    return await func(*args, **kwargs)
                key, problem = _key_or_problem(request, guard, key_of)
                if problem is not None:
                    return problem
                if key is None:
                    with running(guard.unkeyed(request)):
                        return await func(*args, **kwargs)
                outcome = await guard.arun(request, key, lambda: func(*args, **kwargs))
                return respond(guard, outcome)

            wrapper: Any = async_wrapper
        else:

            @functools.wraps(func)
            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                request = _request_of(args)
                if request.method in SAFE_METHODS:
                    return func(*args, **kwargs)
                if not conf.ENABLED:
                    request.idempotency = Idempotency()
                    return func(*args, **kwargs)
                key, problem = _key_or_problem(request, guard, key_of)
                if problem is not None:
                    return problem
                if key is None:
                    with running(guard.unkeyed(request)):
                        return func(*args, **kwargs)
                outcome = guard.run(
                    request, key, lambda: _answered(request, lambda: func(*args, **kwargs))
                )
                return respond(guard, outcome)

            wrapper = sync_wrapper

        wrapper.idempotent_guard = guard
        wrapper._non_atomic_requests = EVERY_DATABASE
        return wrapper  # type: ignore[no-any-return]

    if view is not None:
        return decorate(view)
    return decorate
