"""``idempotent_task``: Celery tasks whose body runs once per key, however often delivered (X2).

Put it under ``@shared_task`` (or ``@app.task``), so that Celery's own wrappers (the
``autoretry_for`` retry among them) sit outside it::

    @shared_task(bind=True, acks_late=True, autoretry_for=(ConnectionError,), max_retries=3)
    @idempotent_task(key="confirmation-{order_id}")
    def send_confirmation(self, order_id): ...

The task is an :func:`~idempotent_post.functions.idempotent_function` whose key defaults
to one that every delivery of the same work shares: the caller's ``idempotency_key=``
(``send_confirmation.apply_async((42,), {"idempotency_key": "..."})``), else the task id,
which Celery keeps on a redelivery and on ``retry()`` / ``autoretry_for``. While another
delivery holds the key, the task does not run its body: it is sent again in ``retry_in``
seconds (the lease by default). By then the holder has finished (the task returns the
kept result) or, if its worker died, its lease has run out and this delivery takes the
key over, resuming after the dead run's recovery points.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from celery import Task, current_task
from celery.exceptions import Retry

from idempotent_post.conf import conf
from idempotent_post.functions import InProgress, Unavailable, idempotent_function

F = TypeVar("F", bound=Callable[..., Any])

#: The keyword argument a caller passes to choose the key of a task without ``key=``.
KEY_ARGUMENT = "idempotency_key"


class _TaskArgument:
    """Stands in for a bound task's ``self`` among the arguments that are fingerprinted.

    The task object's ``repr`` differs from one worker process to the next; its name
    does not, so a redelivery to another worker matches the first delivery's arguments.
    """

    def __init__(self, task: Task) -> None:
        self.name = task.name

    def __str__(self) -> str:
        return f"task:{self.name}"


def idempotent_task(
    func: Any = None,
    *,
    key: Callable[..., Any] | str | None = None,
    scope: Callable[..., Any] | str | None = None,
    ttl: float | None = None,
    lease: float | None = None,
    wait: float | None = None,
    atomic: bool | None = None,
    retry_in: float | None = None,
) -> Any:
    """Run a Celery task's body to a committed end once per key (X2).

    Use it under ``@shared_task`` / ``@app.task``. ``key``: as for
    :func:`~idempotent_post.functions.idempotent_function` (a callable taking the task's
    arguments, ``self`` first on a bound task, or a ``str.format`` template over their
    names); without it, the caller's ``idempotency_key=`` keyword argument, else the task
    id. ``scope`` defaults to ``"task:<task name>"``. ``ttl``, ``lease``, ``wait`` and
    ``atomic`` as for :func:`idempotent_post.idempotent`; recovery points
    (``idempotent_post.current().step``) need ``atomic=False``. ``retry_in``: seconds
    before a delivery that found the key held tries again (default: the lease). The
    result must be JSON-serialisable: a later delivery returns the kept one.
    """
    if isinstance(func, Task):
        raise TypeError(
            "idempotent_task goes under the Celery decorator, not over it:\n\n"
            "    @shared_task(bind=True, acks_late=True)\n"
            "    @idempotent_task\n"
            "    def my_task(self, ...): ..."
        )

    def decorate(body: F) -> F:
        signature = inspect.signature(body)

        @functools.wraps(body)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            caller_key = kwargs.pop(KEY_ARGUMENT, None) if key is None else None
            bound = bool(args) and isinstance(args[0], Task)
            task: Task = args[0] if bound else current_task._get_current_object()
            default = caller_key or (task.request.id if task is not None else None)
            if key is None and not default:
                # Called as a plain function: no delivery to repeat, and no key.
                return body(*args, **kwargs)
            if key is None:
                key_for: Callable[..., Any] | str = _fixed(default)
            else:
                key_for = _fixed(key(*args, **kwargs)) if callable(key) else key
            if scope is None:
                name = task.name if task is not None else f"{body.__module__}.{body.__name__}"
                scope_for: Callable[..., Any] | str = f"task:{name}"
            else:
                scope_for = _fixed(scope(*args, **kwargs)) if callable(scope) else scope

            @functools.wraps(body)
            def run(*_: Any, **__: Any) -> Any:
                return body(*args, **kwargs)

            guarded = idempotent_function(
                run, key=key_for, scope=scope_for, ttl=ttl, lease=lease, wait=wait, atomic=atomic
            )
            fingerprinted = (_TaskArgument(task), *args[1:]) if bound else args
            try:
                return guarded(*fingerprinted, **kwargs)
            except (InProgress, Unavailable) as error:
                retry = _later(task, error, retry_in, lease)
                if retry is None:
                    raise
                raise retry from error

        if key is None:
            # Celery checks a call's arguments against this signature: let the key through.
            parameters = list(signature.parameters.values())
            extra = inspect.Parameter(KEY_ARGUMENT, inspect.Parameter.KEYWORD_ONLY, default=None)
            at = next(
                (i for i, p in enumerate(parameters) if p.kind is inspect.Parameter.VAR_KEYWORD),
                len(parameters),
            )
            parameters.insert(at, extra)
            wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    if func is not None:
        return decorate(func)
    return decorate


def _fixed(value: Any) -> Callable[..., Any]:
    """A callable for ``idempotent_function`` that gives ``value`` whatever the arguments.

    Key and scope callables get the task's own arguments (``self`` the task), computed
    here, not the stand-in the function adapter fingerprints.
    """

    def fixed(*_: Any, **__: Any) -> Any:
        return value

    return fixed


def _later(
    task: Task, error: Exception, retry_in: float | None, lease: float | None
) -> Retry | None:
    """Send this delivery again later, without spending the task's own retries.

    The holder may be alive (the same message published twice, a broker's redelivery of
    a long task) or dead (its worker was killed): either way the key is worth another
    look once a lease has passed. Outside a worker there is nothing to resend: ``None``.
    """
    request = task.request if task is not None else None
    if request is None or request.called_directly or request.is_eager:
        return None
    countdown = retry_in if retry_in is not None else (conf.LEASE if lease is None else lease)
    again = task.signature_from_request(request, countdown=countdown, retries=request.retries)
    again.apply_async()
    return Retry(exc=error, when=countdown, sig=again)
