"""The checkout form."""

from __future__ import annotations

from typing import Any

from django import forms

from demo_project.shop.models import Order, Product
from demo_project.shop.services import place_order


class CheckoutForm(forms.ModelForm):
    """Product, quantity and e-mail; saving it places the order and takes the stock."""

    class Meta:
        model = Order
        fields = ["product", "quantity", "email"]
        widgets = {
            "quantity": forms.NumberInput(attrs={"min": 1}),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["product"].queryset = Product.objects.all()
        self.fields["product"].empty_label = None
        # Blank is allowed in the model for API orders; a guest buying through the form
        # needs somewhere to receive the confirmation.
        self.fields["email"].required = True

    def save(self, commit: bool = True) -> Order:
        """Place the order (may raise ``OutOfStock``) instead of a bare insert."""
        order = super().save(commit=False)
        if commit:
            place_order(order)
        return order
