from django.contrib import admin

from demo_project.shop.models import Charge, Comment, Order, Product, SentEmail


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    """Products, with stock editable from the list."""

    list_display = ["name", "price", "stock"]
    list_editable = ["price", "stock"]
    search_fields = ["name"]


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    """Orders, searchable by number and buyer."""

    list_display = ["order_number", "product", "quantity", "email", "user", "created_at"]
    list_filter = ["product", "created_at"]
    list_select_related = ["product", "user"]
    search_fields = ["order_number", "email", "user__username"]
    readonly_fields = ["order_number", "charge_id", "created_at"]
    raw_id_fields = ["user"]


@admin.register(Comment)
class CommentAdmin(admin.ModelAdmin):
    """Comments, newest first."""

    list_display = ["__str__", "user", "created_at"]
    search_fields = ["text", "user__username"]


@admin.register(Charge)
class ChargeAdmin(admin.ModelAdmin):
    """The fake gateway's charges, searchable by id, reference and key."""

    list_display = ["charge_id", "reference", "amount", "currency", "created_at"]
    search_fields = ["charge_id", "reference", "idempotency_key"]
    readonly_fields = ["charge_id", "created_at"]


@admin.register(SentEmail)
class SentEmailAdmin(admin.ModelAdmin):
    """The e-mails the demo's backend kept."""

    list_display = ["subject", "to", "created_at"]
    search_fields = ["to", "subject"]
