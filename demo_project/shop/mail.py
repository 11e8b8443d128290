"""An e-mail backend that keeps every message as a ``SentEmail`` row, to show on a page."""

from __future__ import annotations

from collections.abc import Sequence

from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend

from demo_project.shop.models import SentEmail


class DatabaseEmailBackend(BaseEmailBackend):
    """``EMAIL_BACKEND = "demo_project.shop.mail.DatabaseEmailBackend"``: the demo's mail server.

    Nothing leaves the machine; ``/payments/`` lists what would have.
    """

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        """Store each message; return how many were "sent"."""
        rows = [
            SentEmail(
                to=", ".join(message.recipients()),
                subject=str(message.subject),
                body=str(message.body),
            )
            for message in email_messages
        ]
        SentEmail.objects.bulk_create(rows)
        return len(rows)
