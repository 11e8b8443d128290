"""``idempotent_function``: the engine for plain functions, sync and async (X1).

The function adapter: the key comes from the function's arguments, the result is kept
as JSON on the same table, and the engine's outcomes become a return value or an
exception instead of an HTTP answer::

    @idempotent_function(key="charge-{order_id}")
    def charge(order_id, amount):
        return gateway.charge(order_id, amount)["id"]

The first call with a key runs the function (inside ``transaction.atomic()`` with the
record, by default) and keeps its result; a later call returns the kept result without
running; a concurrent call waits up to ``wait`` seconds, then raises
:class:`InProgress`; the same key with other arguments raises :class:`KeyMismatch`. An
exception is not kept and frees the key. ``IDEMPOTENT_POST_ENABLED = False`` runs the
function as if undecorated (C5). Inside, ``idempotent_post.current()`` gives
recovery points (``step``, with ``atomic=False``) and downstream keys (``derive``).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
from collections.abc import Callable
from typing import Any, TypeVar

from django.http import HttpResponse
from django.http.response import HttpResponseBase

from idempotent_post.conf import conf
from idempotent_post.engine import (
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
from idempotent_post.keys import InvalidKey, parse_key
from idempotent_post.responses import decrypted

F = TypeVar("F", bound=Callable[..., Any])


class InProgress(Exception):
    """Another call with the same key is still running (S3)."""


class KeyMismatch(Exception):
    """The key was used before with other arguments (F1)."""


class Unavailable(Exception):
    """The lock store is down and ``IDEMPOTENT_POST_CACHE_FALLBACK`` is off (L3)."""


def _arguments(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    bound = inspect.signature(func).bind(*args, **kwargs)
    bound.apply_defaults()
    return bound.arguments


def _key_of(
    key: Any, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> str:
    if callable(key):
        value = key(*args, **kwargs)
    elif isinstance(key, str):
        value = key.format(**_arguments(func, args, kwargs))
    else:
        raise TypeError("idempotent_function(key=...) takes a callable or a str.format template")
    try:
        return parse_key(str(value))
    except InvalidKey as error:
        raise ValueError(f"{func.__qualname__}: unusable key {value!r}: {error}") from error


def _fingerprint(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """The arguments as canonical JSON (``str()`` for what JSON cannot hold), hashed."""
    canonical = json.dumps(
        _arguments(func, args, kwargs), sort_keys=True, separators=(",", ":"), default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _kept(result: Any) -> HttpResponseBase:
    # The result travels through the engine as a JSON response: it is kept and replayed
    # like any other; a result JSON cannot hold raises here, inside the run, and frees the key.
    return HttpResponse(json.dumps(result), content_type="application/json")


def _result(outcome: Outcome, ran: list[Any], name: str) -> Any:
    match outcome:
        case Executed():
            return ran[0]
        case Replay():
            # Raises UnreadableResponse where no key of ENCRYPTION_KEYS decrypts it (C4).
            return json.loads(decrypted(outcome.stored()).body or b"null")
        case Busy():
            raise InProgress(f"{name}: a call with this key is still running")
        case Mismatch():
            raise KeyMismatch(f"{name}: this key was used before with other arguments")
        case Refused():
            raise Unavailable(f"{name}: the idempotency lock store is unavailable")
    raise AssertionError(f"unexpected outcome {outcome!r}")


def idempotent_function(
    func: Any = None,
    *,
    key: Callable[..., Any] | str,
    scope: Callable[..., Any] | str | None = None,
    ttl: float | None = None,
    lease: float | None = None,
    wait: float | None = None,
    atomic: bool | None = None,
) -> Any:
    """Run the decorated function once per key, and return its kept result after (X1).

    ``key``: a callable taking the function's arguments, or a ``str.format`` template
    over their names (``"charge-{order_id}"``). ``scope`` (the same forms, default: the
    function's qualified name) keeps different functions' keys apart. ``ttl``,
    ``lease``, ``wait`` and ``atomic`` as for :func:`idempotent_post.idempotent`. The
    result must be JSON-serialisable; a replay returns it as JSON gives it back (a
    tuple comes back a list).
    """

    def decorate(function: F) -> F:
        name = f"{function.__module__}.{function.__qualname__}"
        guard = Guard(Options(ttl=ttl, lease=lease, wait=wait, atomic=atomic), sender=function)

        def attempt_for(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            if scope is None:
                scope_value = f"function:{name}"
            elif callable(scope):
                scope_value = str(scope(*args, **kwargs))
            else:
                scope_value = scope.format(**_arguments(function, args, kwargs))
            return guard.attempt(
                scope_value[:255],
                _key_of(key, function, args, kwargs),
                _fingerprint(function, args, kwargs),
                name[:2048],
            )

        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                from asgiref.sync import sync_to_async

                if not conf.ENABLED:
                    with running(Idempotency()):
                        return await function(*args, **kwargs)

                attempt = await sync_to_async(attempt_for)(args, kwargs)
                ran: list[Any] = []

                async def call() -> HttpResponseBase:
                    ran.append(await function(*args, **kwargs))
                    return _kept(ran[0])

                return _result(await guard.aexecute(attempt, call), ran, name)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not conf.ENABLED:
                with running(Idempotency()):
                    return function(*args, **kwargs)
            attempt = attempt_for(args, kwargs)
            ran: list[Any] = []

            def call() -> HttpResponseBase:
                ran.append(function(*args, **kwargs))
                return _kept(ran[0])

            return _result(guard.execute(attempt, call), ran, name)

        return wrapper  # type: ignore[return-value]

    if func is not None:
        return decorate(func)
    return decorate
