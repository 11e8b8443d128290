from django.db import models


class Widget(models.Model):
    """What the guarded test views create: one row per execution of a view body."""

    name = models.CharField(max_length=100)
    key = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class Execution(models.Model):
    """Counts executions of a view body that commits nothing else (e.g. rolled back ones)."""

    label = models.CharField(max_length=100)

    def __str__(self) -> str:
        return self.label
