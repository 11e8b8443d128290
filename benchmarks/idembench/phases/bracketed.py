"""What the overhead and replay phases share: guarded slots measured between bare ones.

The noise of a shared machine comes and goes over seconds; a slot compared with the bare
slots right before and after it sheds most of it. ``measure`` runs the rounds;
``ratio_rows`` turns what they measured into table rows and results.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..plan import BARE, LABELS
from ..report import fmt, say
from ..stats import Sample, bracket_ratio, median, percentile, ratio_range

if TYPE_CHECKING:
    from ..bench import Bench
    from ..processes import Server

HEADERS = (
    "implementation",
    "req/s",
    "x bare",
    "rounds",
    "pooled",
    "p50 ms",
    "p99 ms",
    "non-2xx",
)


def rotation(guarded: list[str], number: int) -> list[str]:
    """The order of the guarded variants in round ``number``: one further along each round."""
    shift = number % len(guarded)
    return guarded[shift:] + guarded[:shift]


def measure(
    bench: Bench,
    servers: dict[str, Server],
    modes: dict[str, str],
    seconds: float,
    rounds: int,
    keys: dict[str, list[list[tuple[str, int]]]] | None = None,
) -> tuple[dict[str, Sample], dict[str, list[float]]]:
    """Measure each guarded variant between two slots of bare first executions.

    Each round visits every variant in ``modes`` (name: ``fresh`` or ``replay``), starting
    one further along than the round before. Returns the pooled sample of every variant,
    bare included, and per guarded variant its throughput over the mean of the two bare
    slots around it, one ratio per round.
    """
    guarded = list(modes)
    samples = {name: Sample() for name in [BARE, *guarded]}
    ratios: dict[str, list[float]] = {name: [] for name in guarded}
    for number in range(rounds):
        before = bench.measure(servers[BARE], "fresh", seconds)
        samples[BARE].add(before)
        line = [f"bare {before.rps:.0f}"]
        for name in rotation(guarded, number):
            sample = bench.measure(servers[name], modes[name], seconds, (keys or {}).get(name))
            after = bench.measure(servers[BARE], "fresh", seconds)
            samples[name].add(sample)
            samples[BARE].add(after)
            ratios[name].append(bracket_ratio(sample, before, after))
            line.append(f"{name} {sample.rps:.0f}, bare {after.rps:.0f}")
            before = after
        say(f"  round {number + 1}/{rounds}: " + "; ".join(line) + " req/s")
    return samples, ratios


def ratio_rows(
    samples: dict[str, Sample], ratios: dict[str, list[float]], label_bare: str
) -> tuple[list[list[Any]], dict[str, Any]]:
    """Table rows (``HEADERS``) and results for a bracketed measurement.

    Per guarded variant: its pooled throughput, the median and range of its per-round
    ratios, and its pooled throughput over bare's pooled throughput.
    """
    bare = samples[BARE]
    rows = [
        [
            label_bare,
            fmt(bare.rps),
            "1.00",
            "",
            "",
            fmt(percentile(bare.latencies, 50), 2),
            fmt(percentile(bare.latencies, 99), 2),
            bare.failed,
        ]
    ]
    found: dict[str, Any] = {BARE: bare.summary()}
    for name, values in ratios.items():
        sample = samples[name]
        found[name] = sample.summary() | {
            "ratio_median": round(median(values), 3),
            "ratio_per_round": [round(r, 3) for r in values],
            "ratio_pooled": round(sample.rps / bare.rps, 3),
        }
        rows.append(
            [
                LABELS[name],
                fmt(sample.rps),
                f"{median(values):.2f}",
                ratio_range(values),
                f"{sample.rps / bare.rps:.2f}",
                fmt(percentile(sample.latencies, 50), 2),
                fmt(percentile(sample.latencies, 99), 2),
                sample.failed,
            ]
        )
    return rows, found
