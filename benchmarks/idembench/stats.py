"""Statistics of measured requests: percentiles, medians, pooled samples and ratios.

Pure functions and a plain data class; nothing here measures anything.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile ``q`` (0-100) of ``values``; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    """The median of ``values``; NaN when empty."""
    return statistics.median(values) if values else math.nan


@dataclass
class Sample:
    """Requests of one variant in one or more rounds."""

    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    @property
    def failed(self) -> int:
        return sum(self.statuses.values()) - self.ok

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds else math.nan

    def add(self, other: Sample) -> None:
        self.seconds += other.seconds
        self.latencies += other.latencies
        self.statuses.update(other.statuses)
        self.errors += other.errors[: max(0, 3 - len(self.errors))]

    def summary(self) -> dict[str, Any]:
        return {
            "requests": sum(self.statuses.values()),
            "ok": self.ok,
            "failed": self.failed,
            "seconds": round(self.seconds, 2),
            "rps": round(self.rps, 1),
            "p50_ms": round(percentile(self.latencies, 50), 2),
            "p99_ms": round(percentile(self.latencies, 99), 2),
            "max_ms": round(max(self.latencies, default=math.nan), 2),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": self.errors,
        }


def bracket_ratio(slot: Sample, before: Sample, after: Sample) -> float:
    """The throughput of ``slot`` over the mean of the bare slots right before and after it."""
    return slot.rps / ((before.rps + after.rps) / 2)


def ratio_range(values: Iterable[float]) -> str:
    """``min-max`` of the ratios, two decimals, NaNs left out; empty when none is left."""
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return ""
    return f"{min(values):.2f}-{max(values):.2f}"
