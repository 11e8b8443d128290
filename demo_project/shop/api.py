"""The shop's JSON API (Django REST framework)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from demo_project.shop.models import Comment, Order, Product
from demo_project.shop.serializers import (
    CommentSerializer,
    OrderSerializer,
    ProductSearchSerializer,
    ProductSerializer,
)
from idempotent_post import idempotent

# DRF's own error bodies: {"field": ["message", ...]} or {"detail": "message"}.
VALIDATION_ERRORS = {"type": "object", "additionalProperties": True}


class ProductViewSet(viewsets.ReadOnlyModelViewSet):
    """`/api/products/`: list and read products; search them by POST (M4)."""

    queryset = Product.objects.all()
    serializer_class = ProductSerializer
    # QUERY (RFC 10008), the safe search with a body, beside POST (C1). It is routed here
    # rather than declared on the action: OpenAPI 3.0 has no QUERY operation to show.
    http_method_names = [*viewsets.ReadOnlyModelViewSet.http_method_names, "query"]

    def query(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """``QUERY /api/products/`` or ``/api/products/search/``: the search of :meth:`search`."""
        if kwargs:
            return self.http_method_not_allowed(request, *args, **kwargs)
        return self.search(request)

    @extend_schema(request=ProductSearchSerializer, responses=ProductSerializer(many=True))
    @action(detail=False, methods=["post"])
    def search(self, request: Request) -> Response:
        """Products whose name contains `q`.

        A search that changes nothing, with its criteria in the body (they could be long
        or private): by QUERY, the method made for it, or by POST for clients that cannot
        send QUERY. Safe to repeat and unguarded: no `Idempotency-Key` needed.
        """
        query = ProductSearchSerializer(data=request.data)
        query.is_valid(raise_exception=True)
        products = self.get_queryset().filter(name__icontains=query.validated_data["q"])
        return Response(ProductSerializer(products, many=True).data)


class OrderViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """`/api/orders/`: the caller's orders; placing one needs an `Idempotency-Key` (M2)."""

    serializer_class = OrderSerializer
    permission_classes = [IsAuthenticated]

    def get_queryset(self) -> QuerySet[Order]:
        # drf-spectacular builds the schema without a real user.
        if getattr(self, "swagger_fake_view", False):
            return Order.objects.none()
        return Order.objects.filter(user=self.request.user).select_related("product")

    # required=True: a client that forgets the key gets a 400 rather than an order that a
    # network retry could silently duplicate.
    @extend_schema(
        responses={
            201: OrderSerializer,
            400: OpenApiResponse(VALIDATION_ERRORS, description="The order is not valid."),
            401: OpenApiResponse(VALIDATION_ERRORS, description="No credentials were given."),
            403: OpenApiResponse(VALIDATION_ERRORS, description="The credentials are wrong."),
        }
    )
    @idempotent(required=True)
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Place an order; a retry with the same key replays the first answer."""
        return super().create(request, *args, **kwargs)

    def perform_create(self, serializer: OrderSerializer) -> None:  # type: ignore[override]
        serializer.save(user=self.request.user)

    def get_success_headers(self, data: Any) -> dict[str, str]:
        return {"Location": reverse("api:order-detail", kwargs={"pk": data["id"]})}


class CommentViewSet(mixins.CreateModelMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    """`/api/comments/`: every POST adds a comment (M3).

    Deliberately unguarded, to show what a plain non-idempotent POST does on retry.
    """

    queryset = Comment.objects.all()
    serializer_class = CommentSerializer

    def perform_create(self, serializer: CommentSerializer) -> None:  # type: ignore[override]
        user = self.request.user
        serializer.save(user=user if user.is_authenticated else None)
