"""What the benchmark prints: numbers, plain-text tables, the machine, the closing summary.

Pure formatting (``say`` aside, which prints and flushes at once, so that progress shows
while a phase runs).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any


def say(message: str = "") -> None:
    print(message, flush=True)


def fmt(value: float, digits: int = 1) -> str:
    """``value`` with ``digits`` decimals; ``-`` for None or NaN."""
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def numeric(text: str) -> bool:
    """Whether a cell reads as a number (``1,234``, ``0.98x``, ``4.5 MB``, ``-``): right-aligned."""
    return bool(re.fullmatch(r"[-+]?[\d.,]+[%x]?( MB| ms| s)?|-", text))


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table, left-aligned text and right-aligned numbers."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [title, "-" * len(title)]
    for index, row in enumerate(cells):
        parts = []
        for i, cell in enumerate(row):
            right = index > 0 and numeric(cell)
            parts.append(cell.rjust(widths[i]) if right else cell.ljust(widths[i]))
        lines.append("  ".join(parts).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def describe(info: dict[str, Any]) -> str:
    """The machine, Python, packages, PostgreSQL and Redis of a run, in three lines."""
    m = info["machine"]
    packages = ", ".join(f"{k} {v}" for k, v in info["packages"].items() if v)
    return (
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gb']} GB, {m['os']}, "
        f"kernel {m['kernel']}\n"
        f"Python {info['python']}; {packages}\n"
        f"PostgreSQL {info['postgresql']} (fsync={info['postgresql_fsync']}, "
        f"synchronous_commit={info['postgresql_synchronous_commit']}, "
        f"shared_buffers={info['postgresql_shared_buffers']}); Redis {info['redis']}"
    )


def summary(results: dict[str, Any], tables: Sequence[str], minutes: float) -> str:
    """The closing report: duration, machine, load averages, then every phase's table again."""
    lines = [
        "=" * 100,
        f"Results ({minutes:.1f} min)",
        describe(results["environment"]),
        "Load average (1, 5, 15 min) at start: "
        + ", ".join(map(str, results["environment"]["load_average_at_start"]))
        + "; at end: "
        + ", ".join(map(str, results["load_average_at_end"])),
        "",
    ]
    for text in tables:
        lines += [text, ""]
    return "\n".join(lines)
