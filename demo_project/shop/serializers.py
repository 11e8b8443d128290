"""JSON shapes of the shop API."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from demo_project.shop.models import Comment, Order, Product
from demo_project.shop.services import OutOfStock, place_order


class ProductSerializer(serializers.ModelSerializer):
    """A product as listed by ``GET /api/products/``."""

    class Meta:
        model = Product
        fields = ["id", "name", "price", "stock"]


class ProductSearchSerializer(serializers.Serializer):
    """The body of ``POST /api/products/search/``: ``{"q": "..."}``; blank matches all."""

    q = serializers.CharField(max_length=100, allow_blank=True, required=False, default="")


class OrderSerializer(serializers.ModelSerializer):
    """An order; on create, ``product`` and ``quantity`` (and optionally ``email``)."""

    user = serializers.PrimaryKeyRelatedField(read_only=True)
    quantity = serializers.IntegerField(min_value=1, max_value=1_000_000)

    class Meta:
        model = Order
        fields = ["id", "order_number", "product", "quantity", "email", "user", "created_at"]
        read_only_fields = ["order_number", "created_at"]

    def create(self, validated_data: dict[str, Any]) -> Order:
        try:
            return place_order(Order(**validated_data))
        except OutOfStock as exc:
            raise serializers.ValidationError({"quantity": [str(exc)]}) from exc


class CommentSerializer(serializers.ModelSerializer):
    """A comment; on create, only ``text``."""

    user = serializers.PrimaryKeyRelatedField(read_only=True)

    class Meta:
        model = Comment
        fields = ["id", "text", "user", "created_at"]
