"""Django REST framework integration: the only module that imports ``rest_framework``."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from rest_framework.request import Request

from idempotent_post.engine import EVERY_DATABASE, Guard, Options


class IdempotentMixin:
    """Guard the unsafe handlers of an ``APIView`` or ``ViewSet`` at class level.

    ``idempotency_options`` holds the keyword arguments of
    :func:`idempotent_post.idempotent`. The guard is put on after DRF's ``initial()``,
    so authentication and throttling run first and the key is scoped to the user.
    """

    idempotency_methods: ClassVar[tuple[str, ...]] = ("post", "put", "patch", "delete")
    idempotency_options: ClassVar[dict[str, Any]] = {}

    @classmethod
    def as_view(cls, *args: Any, **kwargs: Any) -> Any:
        """The view, taken out of ``ATOMIC_REQUESTS``: the guard runs its own transaction (T3)."""
        view = super().as_view(*args, **kwargs)  # type: ignore[misc]
        view._non_atomic_requests = EVERY_DATABASE
        return view

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        from idempotent_post.decorators import idempotent

        method = (request.method or "").lower()
        handler = getattr(self, method, None)
        if method in self.idempotency_methods and handler is not None:
            setattr(self, method, idempotent(**self.idempotency_options)(handler))


def guard_of(view: Any, method: str) -> Any:
    """The :class:`~idempotent_post.engine.Guard` that answers ``method`` on ``view``, if any.

    A decorated handler carries its guard; an :class:`IdempotentMixin` view puts its guard
    on at request time, so the schema builds the same one from its options.
    """
    if isinstance(view, IdempotentMixin) and method.lower() in view.idempotency_methods:
        fields = {field.name for field in dataclasses.fields(Options)}
        options = {k: v for k, v in view.idempotency_options.items() if k in fields}
        return Guard(Options(**options), sender=type(view))
    action = getattr(view, "action", None)
    handler = getattr(view, action or method.lower(), None)
    guard = getattr(handler, "idempotent_guard", None)
    if guard is None and handler is not None:
        # @api_view wraps the function in a handler of its own that only calls it.
        for cell in getattr(handler, "__closure__", None) or ():
            guard = getattr(cell.cell_contents, "idempotent_guard", None)
            if guard is not None:
                break
    return guard


def _problems(options: Any) -> dict[str, str]:
    """The guard's own answers that an operation can give, by status (C3)."""
    from idempotent_post.conf import conf

    problems = {
        "400": "The key is malformed, or missing where it is required, or the body cannot be read.",
        "409": "A request with this key is still in progress; retry after Retry-After.",
        "410": "The request was processed, but its response was not kept (too large) "
        "and cannot be replayed; look the result up instead.",
        "413": "The request body is larger than the server accepts.",
        "422": "The key was already used for a different request.",
    }
    if conf.LOCK_BACKEND == "cache" and not conf.CACHE_FALLBACK:
        problems["503"] = "The idempotency lock store is unavailable; retry after Retry-After."
    return problems


try:
    from drf_spectacular.openapi import AutoSchema
except ImportError:  # drf-spectacular is optional
    pass
else:

    class IdempotentAutoSchema(AutoSchema):
        """drf-spectacular schema that documents guarded operations (D3).

        Set ``REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"]`` to this class: every operation
        guarded by :func:`idempotent_post.idempotent` or :class:`IdempotentMixin` gains
        the ``Idempotency-Key`` header parameter (with the key's lifetime), the
        ``Idempotent-Replayed`` response header on its 2xx answers, and the guard's
        problem+json answers (400, 409, 410, 413, 422, and 503 where the lock store can
        fail closed) beside the view's own answers with the same status (C3).
        """

        def get_operation(self, *args: Any, **kwargs: Any) -> Any:
            operation = super().get_operation(*args, **kwargs)
            guard = guard_of(self.view, self.method)
            if operation is None or guard is None:
                return operation
            from idempotent_post.conf import conf

            options = guard.options.resolve()
            operation.setdefault("parameters", []).append(
                {
                    "in": "header",
                    "name": conf.HEADER,
                    "required": bool(options.required),
                    "schema": {"type": "string", "minLength": 1, "maxLength": conf.KEY_MAX_LENGTH},
                    "description": "A unique key per logical operation (a UUID will do). A "
                    "retry with the same key gets the first answer again, without running "
                    f"the operation twice. A key is kept for {options.ttl:g} seconds after "
                    "its first answer; used again after that, it runs the operation anew.",
                }
            )
            responses = operation.setdefault("responses", {})
            replayed = {
                "Idempotent-Replayed": {
                    "schema": {"type": "string", "enum": ["true"]},
                    "description": "Present on a replay of a stored response.",
                }
            }
            for code, response in responses.items():
                if str(code).startswith("2"):
                    response.setdefault("headers", {}).update(replayed)
            retry_after = {
                "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}
            }
            problem = {"schema": PROBLEM_SCHEMA}
            for code, description in _problems(options).items():
                response = responses.get(code)
                if response is None:
                    response = responses[code] = {"description": description, "content": {}}
                else:
                    # Beside the view's own answer with this status (a validation 400).
                    response["description"] = f"{response.get('description', '')} {description}"
                response.setdefault("content", {})["application/problem+json"] = problem
                if code in ("409", "503"):
                    response.setdefault("headers", {}).update(retry_after)
            return operation


PROBLEM_SCHEMA = {
    "type": "object",
    "description": "RFC 9457 problem details.",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
    },
    "required": ["type", "title", "status", "detail"],
}
