"""The implementations under test: the same views, bare or guarded one way or another.

``VARIANTS`` maps a variant's name (its URL prefix and ``BENCH_VARIANT``) to its order and
upload views. An alternative package has an entry only when run.py found it installed and
importable and named it in ``BENCH_ALTERNATIVES``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from rest_framework.request import Request
from rest_framework.response import Response

from benchproject.benchshop.views import OrderViewSet, UploadViewSet
from idempotent_post import idempotent


@dataclass(frozen=True)
class Variant:
    """One implementation: its order view and its upload view."""

    orders: type
    upload: type


class IdempotentPostOrders(OrderViewSet):
    """The order view guarded by idempotent-post, as the demo shop guards its own."""

    @idempotent(required=True)
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().create(request, *args, **kwargs)


class IdempotentPostUpload(UploadViewSet):
    """The upload view guarded by idempotent-post (the fingerprint streams the file)."""

    @idempotent(required=True)
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().create(request, *args, **kwargs)


# idempotent-post's lock backend is a setting, so its two variants share their views and
# differ by the server's settings (see benchproject/settings.py).
VARIANTS: dict[str, Variant] = {
    "bare": Variant(OrderViewSet, UploadViewSet),
    "idempotent-post-database": Variant(IdempotentPostOrders, IdempotentPostUpload),
    "idempotent-post-cache": Variant(IdempotentPostOrders, IdempotentPostUpload),
}


if "drf-idempotency" in settings.BENCH_ALTERNATIVES:
    # drf-idempotency works as middleware on this variant's server (see settings.py). Its
    # @idempotent decorator cannot guard a DRF method: it renders the response before DRF
    # has chosen a renderer ("AssertionError: .accepted_renderer not set on Response").
    # The middleware records in its own table (its database backend, the default):
    # reserve, run, complete, each committed on its own.
    VARIANTS["drf-idempotency"] = Variant(OrderViewSet, UploadViewSet)


if "django-idempotency-key" in settings.BENCH_ALTERNATIVES:
    from idempotency_key.decorators import idempotency_key

    # django-idempotency-key: the decorator only marks the method; the middleware looks
    # the key up in the cache before the view and stores the response after it.

    class DjangoIdempotencyKeyOrders(OrderViewSet):
        """The order view, marked for django-idempotency-key's middleware."""

        @idempotency_key
        def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
            return super().create(request, *args, **kwargs)

    class DjangoIdempotencyKeyUpload(UploadViewSet):
        """The upload view, marked for django-idempotency-key's middleware."""

        @idempotency_key
        def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
            return super().create(request, *args, **kwargs)

    VARIANTS["django-idempotency-key"] = Variant(
        DjangoIdempotencyKeyOrders, DjangoIdempotencyKeyUpload
    )


if "djangorestframework-idempotency-key" in settings.BENCH_ALTERNATIVES:
    from rest_framework_idempotency_key.decorators import simple_idempotency_key_method

    # djangorestframework-idempotency-key: the middleware reserves the key (keys must be
    # UUIDs); the decorator runs the view and stores its data in one transaction.

    class DrfIdempotencyKeyOrders(OrderViewSet):
        """The order view under djangorestframework-idempotency-key's decorator."""

        @simple_idempotency_key_method
        def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
            return super().create(request, *args, **kwargs)

    class DrfIdempotencyKeyUpload(UploadViewSet):
        """The upload view under djangorestframework-idempotency-key's decorator."""

        @simple_idempotency_key_method
        def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
            return super().create(request, *args, **kwargs)

    VARIANTS["djangorestframework-idempotency-key"] = Variant(
        DrfIdempotencyKeyOrders, DrfIdempotencyKeyUpload
    )
