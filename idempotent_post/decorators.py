"""``idempotent(...)``: the decorator that guards a view (D1, D2)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from inspect import isclass, iscoroutinefunction
from typing import Any, TypeVar, overload

from django.http.response import HttpResponseBase

from idempotent_post.engine import Guard
from idempotent_post.keys import InvalidKey, key_from_header
from idempotent_post.responses import INVALID_KEY, problem_response

F = TypeVar("F", bound=Callable[..., Any])

#: Methods that are safe by definition and pass through unguarded.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

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


def _finalized(request: Any, response: HttpResponseBase) -> HttpResponseBase:
    if type(request).__module__.startswith("rest_framework"):
        from idempotent_post.drf import finalize_response

        return finalize_response(request, response)
    return response


def _key_or_problem(request: Any) -> tuple[str | None, HttpResponseBase | None]:
    try:
        return key_from_header(request), None
    except InvalidKey as error:
        return None, problem_response(INVALID_KEY, str(error))


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
) -> Any:
    """Guard a view with the ``Idempotency-Key`` header.

    The first request with a key runs the view and stores its response; a retry with
    the same key gets the stored response (``Idempotent-Replayed: true``) without
    running the view; a retry while the first still runs gets 409, or waits up to
    ``wait`` seconds; the key reused for a different request gets 422. Safe methods
    (GET, HEAD, OPTIONS, TRACE) pass through. Options left ``None`` follow the
    ``IDEMPOTENT_POST_*`` settings.

    Works on plain Django function views, on async views, on DRF ``@api_view``
    functions (placed below ``@api_view``) and on ``APIView``/``ViewSet`` methods.
    """

    def decorate(func: F) -> F:
        _refuse_wrong_order(func)
        guard = Guard(
            required=required,
            scope=scope,
            fingerprint=fingerprint,
            lease=lease,
            ttl=ttl,
            wait=wait,
            atomic=atomic,
            sender=func,
        )

        if iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                request = _request_of(args)
                if request.method in SAFE_METHODS:
                    return await func(*args, **kwargs)
                key, problem = _key_or_problem(request)
                if problem is not None:
                    return problem
                return await guard.ahandle(request, key, lambda: func(*args, **kwargs))

            async_wrapper.idempotent_guard = guard  # type: ignore[attr-defined]
            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            request = _request_of(args)
            if request.method in SAFE_METHODS:
                return func(*args, **kwargs)
            key, problem = _key_or_problem(request)
            if problem is not None:
                return problem
            return guard.handle(request, key, lambda: _finalized(request, func(*args, **kwargs)))

        wrapper.idempotent_guard = guard  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    if view is not None:
        return decorate(view)
    return decorate
