"""The idempotency record: one row per (scope, key)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class IdempotencyRecord(models.Model):
    """What the engine knows about one key: its reservation, then its stored outcome.

    The unique constraint on (scope, key) is what makes execution exactly-once (S4);
    every lock backend only speeds up the in-flight check.
    """

    class State(models.TextChoices):
        IN_PROGRESS = "in_progress", "in progress"
        COMPLETED = "completed", "completed"

    scope = models.CharField(max_length=255)
    key = models.CharField(max_length=255)
    state = models.CharField(max_length=16, choices=State.choices, default=State.IN_PROGRESS)
    fingerprint = models.CharField(max_length=64)
    method = models.CharField(max_length=16, blank=True)
    path = models.CharField(max_length=2048, blank=True)
    # The token of the attempt that holds the reservation; a late holder whose lease
    # was taken over can no longer complete or release it.
    owner = models.CharField(max_length=32, blank=True)
    locked_until = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=1)
    retry_count = models.PositiveIntegerField(default=0)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_headers = models.JSONField(default=list, blank=True)
    response_body = models.BinaryField(null=True, blank=True)
    # False where the response could not be stored (streaming, a file, too large: P3).
    body_stored = models.BooleanField(default=True)
    recovery_points = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()

    class Meta:
        verbose_name = "idempotency record"
        constraints = [
            models.UniqueConstraint(fields=["scope", "key"], name="idempotent_post_scope_key"),
        ]
        indexes = [models.Index(fields=["expires_at"], name="idempotent_post_expires")]

    def __str__(self) -> str:
        return f"{self.key} ({self.scope})"

    def is_live(self, now=None) -> bool:
        """Whether the record still counts: not expired and, if in progress, within its lease."""
        now = now or timezone.now()
        if self.expires_at <= now:
            return False
        if self.state == self.State.IN_PROGRESS:
            return self.locked_until is not None and self.locked_until > now
        return True
