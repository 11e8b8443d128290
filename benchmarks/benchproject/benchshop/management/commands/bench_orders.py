"""``bench_orders``: how many orders carry each note (the storm's keys), as JSON."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand
from django.db.models import Count

from benchproject.benchshop.models import Order


class Command(BaseCommand):
    help = "Read a JSON list of notes on stdin; print {note: number of orders} as JSON."

    def handle(self, *args: Any, **options: Any) -> None:
        notes = json.load(sys.stdin)
        counts = dict.fromkeys(notes, 0)
        rows = (
            Order.objects.filter(note__in=notes).values("note").annotate(n=Count("id")).order_by()
        )
        for row in rows:
            counts[row["note"]] = row["n"]
        self.stdout.write(json.dumps(counts))
