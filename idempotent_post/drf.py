"""Django REST framework integration: the only module that imports ``rest_framework``."""

from __future__ import annotations

from typing import Any, ClassVar

from django.http.response import HttpResponseBase
from rest_framework.request import Request
from rest_framework.response import Response


def finalize_response(request: Request, response: HttpResponseBase) -> HttpResponseBase:
    """Give a DRF ``Response`` its renderer now, so its body can be stored.

    DRF renders a response only after the view returns, in ``APIView.dispatch``; the
    engine stores it before that, inside the view's transaction. Rendering twice is
    harmless: DRF's second ``finalize_response`` finds the body already rendered.
    """
    if isinstance(response, Response) and not getattr(response, "accepted_renderer", None):
        view = (request.parser_context or {}).get("view")
        if view is not None:
            response = view.finalize_response(request, response)
    return response


class IdempotentMixin:
    """Guard the unsafe handlers of an ``APIView`` or ``ViewSet`` at class level.

    ``idempotency_options`` holds the keyword arguments of
    :func:`idempotent_post.idempotent`. The guard is put on after DRF's ``initial()``,
    so authentication and throttling run first and the key is scoped to the user.
    """

    idempotency_methods: ClassVar[tuple[str, ...]] = ("post", "put", "patch", "delete")
    idempotency_options: ClassVar[dict[str, Any]] = {}

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        from idempotent_post.decorators import idempotent

        method = (request.method or "").lower()
        handler = getattr(self, method, None)
        if method in self.idempotency_methods and handler is not None:
            setattr(self, method, idempotent(**self.idempotency_options)(handler))
