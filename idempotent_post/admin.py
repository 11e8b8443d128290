"""A read-only admin for idempotency records (O4), with one way to forget a key (C7)."""

from __future__ import annotations

import codecs
from email.message import Message
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.html import format_html

from idempotent_post.models import IdempotencyRecord
from idempotent_post.operations import forget

#: How many characters of a stored response body the admin shows.
BODY_PREVIEW_LENGTH = 2000


def _charset(headers: Any) -> str:
    """The charset named by a stored ``Content-Type`` header, if Python knows it, else UTF-8."""
    for name, value in headers or ():
        if str(name).lower() == "content-type":
            message = Message()
            message["Content-Type"] = str(value)
            charset = message.get_content_charset()
            if charset:
                try:
                    return codecs.lookup(charset).name
                except LookupError:
                    break
    return "utf-8"


def body_preview(record: IdempotencyRecord, limit: int = BODY_PREVIEW_LENGTH) -> str:
    """The stored response body of ``record`` as text, cut at ``limit`` characters.

    Bodies that do not decode in their charset are described, never shown as raw bytes.
    """
    if not record.body_stored:
        return "(not stored: a streaming or file response, or larger than the size limit)"
    if record.response_body is None:
        return "(none)"
    # PostgreSQL hands BinaryField values back as memoryview.
    body = bytes(record.response_body)
    if not body:
        return "(empty)"
    try:
        text = body.decode(_charset(record.response_headers))
    except UnicodeDecodeError:
        return f"({len(body)} bytes of binary data)"
    if len(text) > limit:
        return f"{text[:limit]}\n… (truncated: {len(text)} characters in all)"
    return text


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(admin.ModelAdmin):
    """Lets staff look records up by key or scope; adds and changes nothing.

    Records are the engine's memory of what already ran, so the admin is read-only:
    no add, no change, no delete view and no "Delete selected" action. Deleting a
    completed record lets a retry with the same key run the view a second time, the
    very thing this app exists to prevent; a stuck in-progress record usually needs no
    hand (a retry takes it over once its lease ends, S5); expired records are removed
    by ``manage.py idempotent_post_purge`` (O5).

    The one way to delete is on purpose (C7): the "Forget selected keys" action, for
    users with the model's delete permission, asks for confirmation on a page that
    lists the keys, then deletes them and records each in the admin log under the
    user who confirmed.

    Key and scope searches are exact (case-insensitive) matches: the table holds a day of
    POSTs, and a key is copied from a log or a request, not typed in part.
    """

    list_display = (
        "key",
        "scope",
        "state",
        "status_code",
        "attempts",
        "retry_count",
        "created_at",
        "expires_at",
    )
    list_filter = ("state", "status_code")
    search_fields = ("=key", "=scope")
    ordering = ("-created_at",)
    # Counting a large table on every page costs more than the number is worth.
    show_full_result_count = False
    fields = (
        "scope",
        "key",
        "state",
        "method",
        "path",
        "fingerprint",
        "owner",
        "locked_until",
        "attempts",
        "retry_count",
        "status_code",
        "response_headers",
        "response_body_text",
        "recovery_points",
        "created_at",
        "completed_at",
        "expires_at",
    )
    readonly_fields = fields
    actions = ["forget_selected"]
    forget_selected_confirmation_template = (
        "admin/idempotent_post/idempotencyrecord/forget_selected_confirmation.html"
    )

    @admin.display(description="response body")
    def response_body_text(self, record: IdempotencyRecord) -> str:
        """The stored body decoded as text and truncated (see ``body_preview``)."""
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', body_preview(record))

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Records are made by the engine only."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Records are read-only; staff with the view permission still see them."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Deleting a record could let a retry run twice; see the class docstring."""
        return False

    def has_forget_permission(self, request: HttpRequest) -> bool:
        """Forgetting keys (C7) takes the model's delete permission, though no delete view."""
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.delete_{opts.model_name}")

    @admin.action(permissions=["forget"], description="Forget selected keys")
    def forget_selected(
        self, request: HttpRequest, queryset: QuerySet[IdempotencyRecord]
    ) -> TemplateResponse | None:
        """Delete the selected records on purpose after a confirmation page (C7).

        Like Django's "Delete selected": the first POST shows what will be forgotten,
        the confirming one (``post=yes``) forgets each record and logs it under
        ``request.user``, then the change list shows again.
        """
        if not self.has_forget_permission(request):
            raise PermissionDenied
        records = list(queryset)
        if request.POST.get("post") == "yes":
            forgotten = sum(
                forget(record, request.user, via="the admin action") for record in records
            )
            if forgotten:
                self.message_user(
                    request,
                    f"Forgot {forgotten} idempotency key{'' if forgotten == 1 else 's'}.",
                    messages.SUCCESS,
                )
            if forgotten < len(records):
                gone = len(records) - forgotten
                self.message_user(
                    request,
                    f"{gone} of the selected keys {'was' if gone == 1 else 'were'} gone already.",
                    messages.WARNING,
                )
            return None
        request.current_app = self.admin_site.name
        context = {
            **self.admin_site.each_context(request),
            "title": "Forget idempotency keys",
            "subtitle": None,
            "records": records,
            "opts": self.opts,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        return TemplateResponse(request, self.forget_selected_confirmation_template, context)
