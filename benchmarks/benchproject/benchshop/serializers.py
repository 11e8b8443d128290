"""The order's JSON shape, as in the demo shop."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from benchproject.benchshop.models import Order
from benchproject.benchshop.services import OutOfStock, place_order


class OrderSerializer(serializers.ModelSerializer):
    """An order; on create, ``product``, ``quantity`` and ``note``."""

    user = serializers.PrimaryKeyRelatedField(read_only=True)
    quantity = serializers.IntegerField(min_value=1, max_value=1_000_000)

    class Meta:
        model = Order
        fields = ["id", "order_number", "product", "quantity", "note", "user", "created_at"]
        read_only_fields = ["order_number", "created_at"]

    def create(self, validated_data: dict[str, Any]) -> Order:
        try:
            return place_order(Order(**validated_data))
        except OutOfStock as exc:
            raise serializers.ValidationError({"quantity": ["Out of stock."]}) from exc
