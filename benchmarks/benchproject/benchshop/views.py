"""The two views every implementation guards: placing an order, and a file upload.

Each variant in ``benchshop.variants`` subclasses these and only decorates ``create``, so
the work inside the view is the same code for all of them.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from rest_framework import mixins, status, viewsets
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from benchproject.benchshop.models import Order
from benchproject.benchshop.serializers import OrderSerializer


def health(request: HttpRequest) -> HttpResponse:
    """Answer 200 once the worker has loaded the project."""
    return HttpResponse("ok", content_type="text/plain")


class OrderViewSet(mixins.CreateModelMixin, viewsets.GenericViewSet):
    """``POST``: place an order (201 with the order and a ``Location``), like the demo's API."""

    queryset = Order.objects.all()
    serializer_class = OrderSerializer

    def perform_create(self, serializer: OrderSerializer) -> None:  # type: ignore[override]
        serializer.save(user=self.request.user)

    def get_success_headers(self, data: Any) -> dict[str, str]:
        return {"Location": f"/orders/{data['id']}/"}


class UploadViewSet(viewsets.GenericViewSet):
    """``POST`` a multipart ``file``: read it through in chunks and answer with its size."""

    parser_classes = [MultiPartParser]

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        upload = request.data["file"]
        size = sum(len(chunk) for chunk in upload.chunks())
        return Response({"name": upload.name, "size": size}, status=status.HTTP_201_CREATED)
