"""The benchmark's pure functions: statistics, the purge's latency bucketing, ratios, tables.

No server, database or network: each test feeds a few exact values and checks exact results.
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from pathlib import Path

import pytest

# benchmarks/ is not a package of the project: its code is imported as run.py imports it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from idembench import plan, report, stats
from idembench.load import ClientResult
from idembench.phases import (
    bracketed,
    memory,
    profile,
    purge,
    queries,
    replay,
    scale,
    storm,
)
from idembench.stats import Sample


def sample(seconds: float, ok: int, failed: int = 0, latencies: list[float] | None = None):
    return Sample(
        seconds=seconds,
        latencies=latencies or [],
        statuses=Counter({201: ok, 500: failed}) if failed else Counter({201: ok}),
    )


# ---- stats


def test_percentile_is_nearest_rank_of_unsorted_values():
    values = [7.0, 1.0, 10.0, 3.0, 2.0, 9.0, 4.0, 8.0, 6.0, 5.0]
    assert stats.percentile(values, 50) == 5.0
    assert stats.percentile(values, 90) == 9.0
    assert stats.percentile(values, 91) == 10.0
    assert stats.percentile(values, 99) == 10.0
    assert stats.percentile(values, 0) == 1.0


def test_percentile_and_median_of_nothing_are_nan():
    assert math.isnan(stats.percentile([], 50))
    assert math.isnan(stats.median([]))


def test_median_of_an_even_count_is_the_mean_of_the_middle_two():
    assert stats.median([4.0, 1.0, 3.0, 2.0]) == 2.5


def test_sample_counts_2xx_as_ok_everything_else_as_failed():
    s = Sample(seconds=2.0, statuses=Counter({201: 3, 200: 1, 409: 1, 0: 2}))
    assert (s.ok, s.failed, s.rps) == (4, 3, 2.0)


def test_sample_rps_without_seconds_is_nan():
    assert math.isnan(Sample(statuses=Counter({201: 5})).rps)


def test_sample_add_pools_seconds_latencies_statuses_and_at_most_three_errors():
    pooled = Sample(seconds=1.0, latencies=[1.0], statuses=Counter({201: 1}), errors=["a", "b"])
    pooled.add(
        Sample(
            seconds=2.0, latencies=[2.0, 3.0], statuses=Counter({201: 1, 409: 1}), errors=["c", "d"]
        )
    )
    assert pooled.seconds == 3.0
    assert pooled.latencies == [1.0, 2.0, 3.0]
    assert pooled.statuses == Counter({201: 2, 409: 1})
    assert pooled.errors == ["a", "b", "c"]


def test_sample_summary():
    s = Sample(
        seconds=4.0,
        latencies=[10.0, 20.0, 30.0, 40.004],
        statuses=Counter({409: 1, 201: 3}),
        errors=["409 b'busy'"],
    )
    assert s.summary() == {
        "requests": 4,
        "ok": 3,
        "failed": 1,
        "seconds": 4.0,
        "rps": 0.8,
        "p50_ms": 20.0,
        "p99_ms": 40.0,
        "max_ms": 40.0,
        "statuses": {"201": 3, "409": 1},
        "errors": ["409 b'busy'"],
    }


def test_bracket_ratio_is_the_slot_over_the_mean_of_its_two_bare_slots():
    assert stats.bracket_ratio(sample(2, 90), sample(2, 40), sample(2, 80)) == 1.5
    assert stats.bracket_ratio(sample(1, 30), sample(1, 60), sample(1, 60)) == 0.5


def test_ratio_range_leaves_out_nan():
    assert stats.ratio_range([0.8, math.nan, 0.604, 0.7]) == "0.60-0.80"
    assert stats.ratio_range([math.nan]) == ""
    assert stats.ratio_range([]) == ""


# ---- report


def test_fmt():
    assert report.fmt(1.25) == "1.2"
    assert report.fmt(1.256, 2) == "1.26"
    assert report.fmt(204.6, 0) == "205"
    assert report.fmt(math.nan) == "-"
    assert report.fmt(None) == "-"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("1,234", True),
        ("0.98x", True),
        ("4.5 MB", True),
        ("12.0 ms", True),
        ("34.7 s", True),
        ("50%", True),
        ("-", True),
        ("-3.5", True),
        ("0/5", False),
        ("201x42 409x8", False),
        ("no", False),
        ("", False),
    ],
)
def test_numeric_cells(cell, expected):
    assert report.numeric(cell) is expected


def test_table_left_aligns_text_right_aligns_numbers_not_headers():
    text = report.table(
        "Title",
        ["name", "req/s", "note"],
        [["bare", "180.9", "ok"], ["idempotent-post", "5.0", ""], ["x", "-", "1/2"]],
    )
    assert text == (
        "Title\n"
        "-----\n"
        "name             req/s  note\n"
        "---------------  -----  ----\n"
        "bare             180.9  ok\n"
        "idempotent-post    5.0\n"
        "x                    -  1/2"
    )


ENVIRONMENT = {
    "machine": {"nproc": 2, "cpu": "CPU", "memory_gb": 23.5, "os": "Debian", "kernel": "6.1"},
    "python": "3.11.7",
    "packages": {"Django": "5.2", "missing": None, "gunicorn": "23.0"},
    "postgresql": "15.2",
    "postgresql_fsync": "on",
    "postgresql_synchronous_commit": "on",
    "postgresql_shared_buffers": "128MB",
    "redis": "7.0.15",
    "load_average_at_start": [0.7, 1.0, 1.25],
}


def test_describe_leaves_out_packages_without_a_version():
    assert report.describe(ENVIRONMENT) == (
        "Machine: 2 CPUs (CPU), 23.5 GB, Debian, kernel 6.1\n"
        "Python 3.11.7; Django 5.2, gunicorn 23.0\n"
        "PostgreSQL 15.2 (fsync=on, synchronous_commit=on, shared_buffers=128MB); Redis 7.0.15"
    )


def test_summary_repeats_every_table_after_the_machine_and_load():
    results = {"environment": ENVIRONMENT, "load_average_at_end": [1.7, 1.5, 1.0]}
    text = report.summary(results, ["table one", "table two"], 14.06)
    assert text.split("\n") == [
        "=" * 100,
        "Results (14.1 min)",
        *report.describe(ENVIRONMENT).split("\n"),
        "Load average (1, 5, 15 min) at start: 0.7, 1.0, 1.25; at end: 1.7, 1.5, 1.0",
        "",
        "table one",
        "",
        "table two",
        "",
    ]


# ---- plan


def test_token_of_is_forty_characters():
    assert plan.token_of(3) == "bench-token-0003" + "0" * 24
    assert len(plan.token_of(1234)) == 40


def test_make_plan_quick_with_overrides():
    made = plan.make_plan(True, {"rounds": 1, "seconds": 1.0, "clients": None, "json": "x"})
    assert made == plan.Plan(
        rounds=1,
        seconds=1.0,
        warmup=1.0,
        replay_rounds=2,
        replay_seconds=2.0,
        storm_keys=5,
        scale_sizes=(10_000,),
        scale_rounds=2,
        scale_seconds=2.0,
        purge_records=10_000,
        purge_baseline_seconds=2.0,
        memory_repeats=1,
        profile_requests=40,
    )


def test_make_plan_full_by_default():
    made = plan.make_plan(False, {"clients": 8, "workers": None})
    assert (made.clients, made.workers, made.rounds, made.purge_records) == (8, 2, 8, 1_000_000)


def test_select_phases():
    assert plan.select_phases("", False) == (list(plan.PHASES), [])
    assert plan.select_phases(" replay, overhead ,", False) == (["replay", "overhead"], [])
    assert plan.select_phases("", True) == (
        ["queries", "profile", "overhead", "replay", "storm", "memory"],
        [],
    )
    assert plan.select_phases("purge,zz,aa", True) == (["zz", "aa"], ["aa", "zz"])


# ---- purge


def client(*requests: tuple[float, float, int]) -> ClientResult:
    """A client's result from (start, latency ms, status) triples."""
    return ClientResult(
        starts=[r[0] for r in requests],
        latencies=[r[1] for r in requests],
        statuses=[r[2] for r in requests],
    )


def test_purge_bucket_sorts_requests_by_start_and_end_around_the_purge():
    # Clients start at 100, the first 2 s are skipped, the purge runs from 110 to 120.
    results = [
        client(
            (101.0, 5.0, 201),  # in the settling time: left out
            (102.0, 10.0, 201),  # starts as the baseline starts: before
            (109.5, 500.0, 201),  # ends exactly as the purge starts: before
            (109.5, 600.0, 500),  # still running when the purge starts: during
        ),
        client(
            (115.0, 250.0, 201),  # during
            (119.75, 1000.0, 201),  # starts before the purge ends: during
            (120.0, 5.0, 201),  # starts as the purge ends: left out
            (125.0, 5.0, 201),  # after: left out
        ),
    ]
    before, during = purge.bucket(results, 100.0, 2.0, 110.0, 120.0)
    assert before.seconds == 8.0
    assert before.latencies == [10.0, 500.0]
    assert before.statuses == Counter({201: 2})
    assert during.seconds == 10.0
    assert during.latencies == [600.0, 250.0, 1000.0]
    assert during.statuses == Counter({201: 2, 500: 1})
    assert (during.failed, during.rps, max(during.latencies)) == (1, 0.2, 1000.0)


def test_purge_bucket_with_no_requests_has_empty_windows():
    before, during = purge.bucket([], 0.0, 2.0, 10.0, 15.0)
    assert (before.seconds, before.latencies, during.seconds, during.latencies) == (
        8.0,
        [],
        5.0,
        [],
    )


def test_purge_bucket_refuses_a_client_result_of_uneven_lengths():
    with pytest.raises(ValueError):
        purge.bucket([ClientResult([1.0, 2.0], [5.0], [201])], 0.0, 0.0, 10.0, 20.0)


def test_purge_waits_in_keeps_waits_overlapping_the_window_split_by_type():
    waits = [
        {"seen_at": 108.0, "ms": 1500.0, "type": "Lock"},  # ends 109.5: before the window
        {"seen_at": 105.0, "ms": 5000.0, "type": "Lock"},  # ends as the window starts
        {"seen_at": 112.0, "ms": 20.0, "type": "IO"},
        {"seen_at": 120.0, "ms": 40.0, "type": "LWLock"},  # seen as the window ends
        {"seen_at": 120.5, "ms": 20.0, "type": "Lock"},  # after the window
    ]
    found = purge.waits_in(waits, 110.0, 120.0)
    assert found == {
        "lock": [waits[1]],
        "other": [waits[2], waits[3]],
    }


def test_purge_longest_wait_in_whole_ms():
    assert purge.longest([]) == "0"
    assert purge.longest([{"ms": 20.4}, {"ms": 204.6}, {"ms": 30.0}]) == "205"


def test_purge_deleted_count_from_the_command_output():
    output = "Batch 1: deleted 1000 expired idempotency records.\nDeleted 1000000 expired ..."
    assert purge.deleted_count(output) == 1_000_000


def test_purge_facts():
    before = {"total": 2_002_641.0, "expired": 1_000_000.0, "seconds": 3.0}
    after = {"total": 1_002_641.0, "expired": 0.0, "seconds": 0.1}
    assert purge.facts(before, after, 1_000_000, 34.7, 1.06) == [
        ["records before (expired)", "2,002,641 (1,000,000)"],
        ["deleted; expired left", "1,000,000; 0"],
        ["duration (with ~1 s of Django start-up)", "34.7 s"],
        ["rows deleted per second", "28,818"],
        ["--dry-run (count only) duration", "1.1 s"],
    ]


def test_purge_window_rows():
    windows = {
        "before the purge": (
            sample(2.0, 4, latencies=[30.0, 10.0, 20.0, 40.0]),
            {"lock": [{"ms": 20.0}], "other": []},
        ),
        "during the purge": (
            sample(1.0, 1, failed=1, latencies=[392.66, 60.0]),
            {"lock": [], "other": [{"ms": 204.0}, {"ms": 50.0}]},
        ),
    }
    assert purge.window_rows("--pause 0", windows) == [
        ["--pause 0", "before the purge", "2", "20.0", "40.0", "40.0", 0, 1, "20", 0, "0"],
        ["--pause 0", "during the purge", "1", "60.0", "392.7", "392.7", 1, 0, "0", 2, "204"],
    ]
    assert len(purge.HEADERS) == len(purge.window_rows("--pause 0", windows)[0])


def test_purge_window_rows_of_an_empty_window():
    windows = {"during the purge": (Sample(seconds=0.0), {"lock": [], "other": []})}
    assert purge.window_rows("default pause", windows) == [
        ["default pause", "during the purge", "-", "-", "-", "-", 0, 0, "0", 0, "0"]
    ]


def test_purge_arguments_leave_the_pause_to_the_command_unless_given():
    assert purge.purge_arguments(1000, None) == ["--batch-size", "1000"]
    assert purge.purge_arguments(500, "0") == ["--batch-size", "500", "--pause", "0"]
    assert (purge.pacing(None), purge.pacing("0")) == ("default pause", "--pause 0")


def test_purge_plan_compares_pacing_off_with_the_default():
    assert plan.Plan().purge_pauses == ("0", None)
    assert plan.QUICK.purge_pauses == ("0", None)


def test_purge_side_by_side_puts_each_purge_in_a_column():
    paced = [["duration", "70.0 s"], ["rows deleted per second", "14,286"]]
    unpaced = [["duration", "35.0 s"], ["rows deleted per second", "28,571"]]
    assert purge.side_by_side([unpaced, paced]) == [
        ["duration", "35.0 s", "70.0 s"],
        ["rows deleted per second", "28,571", "14,286"],
    ]


# ---- overhead and replay


def test_rotation_starts_one_further_along_each_round():
    assert bracketed.rotation(["a", "b", "c"], 0) == ["a", "b", "c"]
    assert bracketed.rotation(["a", "b", "c"], 1) == ["b", "c", "a"]
    assert bracketed.rotation(["a", "b", "c"], 5) == ["c", "a", "b"]


def test_ratio_rows():
    samples = {
        plan.BARE: sample(4.0, 400, latencies=[10.0, 20.0]),
        plan.IP_DATABASE: sample(2.0, 130, failed=2, latencies=[30.0, 50.0]),
    }
    ratios = {plan.IP_DATABASE: [0.6, 0.7, math.nan]}
    rows, found = bracketed.ratio_rows(samples, ratios, "bare")
    assert rows == [
        ["bare", "100.0", "1.00", "", "", "10.00", "20.00", 0],
        [
            "idempotent-post, database lock",
            "65.0",
            "0.70",
            "0.60-0.70",
            "0.65",
            "30.00",
            "50.00",
            2,
        ],
    ]
    assert found[plan.BARE]["rps"] == 100.0
    assert found[plan.IP_DATABASE]["ratio_pooled"] == 0.65
    assert found[plan.IP_DATABASE]["ratio_per_round"][:2] == [0.6, 0.7]


def test_view_reran_when_a_replayed_key_has_other_than_one_order():
    keys = [[("k1", 1)], [("k2", 2)]]
    assert replay.view_reran({"k1": 1, "k2": 1}, keys) is False
    assert replay.view_reran({"k1": 1, "k2": 2}, keys) is True
    assert replay.view_reran({"k1": 0, "k2": 1}, keys) is True


# ---- storm


def test_storm_tally():
    counts = {"a": 1, "b": 3, "c": 0, "d": 2}
    assert storm.tally(list(counts), counts, Counter({409: 8, 201: 42})) == {
        "keys": 4,
        "keys_duplicated": 2,
        "extra_orders": 3,
        "keys_without_order": 1,
        "max_orders_per_key": 3,
        "statuses": {"201": 42, "409": 8},
    }


def test_storm_answers_name_a_failed_connection():
    assert storm.answers(Counter({409: 8, 201: 42, 0: 2})) == "conn-errorx2 201x42 409x8"


# ---- scale


def test_scale_database_url_appends_the_size_to_the_name():
    url = "postgres://postgres:pw@127.0.0.1:5432/idempotent_post_bench?sslmode=disable"
    assert scale.database_url(url, 10_000) == (
        "postgres://postgres:pw@127.0.0.1:5432/idempotent_post_bench_10000?sslmode=disable"
    )


def test_scale_order_alternates():
    assert scale.order([10, 1000], 0) == [10, 1000]
    assert scale.order([10, 1000], 1) == [1000, 10]


def test_scale_size_rows():
    rows = scale.size_rows(
        "10,000 -> 12,622",
        {"fresh": sample(2.0, 292, latencies=[24.8, 83.57]), "replay": sample(2.0, 0, 3)},
    )
    assert rows == [
        ["10,000 -> 12,622", "first execution", "146.0", "24.80", "83.57", 0],
        ["10,000 -> 12,622", "replay", "0.0", "-", "-", 3],
    ]


def test_scale_ratio_rows_are_largest_over_smallest():
    small = {
        "size": 10_000,
        "fresh": {"rps": 146.3, "p50_ms": 24.8, "p99_ms": 83.57},
        "replay": {"rps": 400.0, "p50_ms": 8.0, "p99_ms": 20.0},
    }
    large = {
        "size": 1_000_000,
        "fresh": {"rps": 143.5, "p50_ms": 25.15, "p99_ms": 85.89},
        "replay": {"rps": 376.0, "p50_ms": 8.16, "p99_ms": 26.2},
    }
    assert scale.ratio_rows(small, large) == [
        ["1,000,000 / 10,000", "first execution", "0.98x", "1.01x", "1.03x", ""],
        ["1,000,000 / 10,000", "replay", "0.94x", "1.02x", "1.31x", ""],
    ]


# ---- queries, profile, memory


def test_queries_row():
    counts = {
        "first": {"sql": 10, "commits": 1, "redis": 3},
        "replay": {"sql": 2, "commits": 0, "redis": 0},
    }
    assert queries.row("label", counts) == ["label", 10, 1, 3, 2, 0, 0]


def test_profile_rows():
    found = {
        "order": [profile.REQUEST, "record read (SELECT)", "never seen", "COMMIT"],
        "median_ms": {
            plan.BARE: {profile.REQUEST: 10.0, "COMMIT": 0.7},
            plan.IP_DATABASE: {
                profile.REQUEST: 16.0,
                "record read (SELECT)": 2.69,
                "COMMIT": 0.744,
            },
            "SELECT 1": {"one SQL round trip": 0.35},
        },
    }
    names, rows = profile.rows(found)
    assert names == [plan.BARE, plan.IP_DATABASE]
    assert rows == [
        [profile.REQUEST, "10.00", "16.00"],
        ["record read (SELECT)", "-", "2.69"],
        ["COMMIT", "0.70", "0.74"],
        ["guard's cost (request - bare request)", "0.00", "6.00"],
        ["x bare throughput, in-process", "1.00", "0.62"],
    ]


def test_memory_cases_measure_each_alternative_with_and_without_the_body_limit():
    assert memory.cases(["alt"]) == [
        (plan.BARE, "unguarded", {}),
        (plan.IP_DATABASE, "guarded", {}),
        ("alt", "guarded, Django defaults", {}),
        (
            "alt",
            "guarded, DATA_UPLOAD_MAX_MEMORY_SIZE=None",
            {"BENCH_DATA_UPLOAD_MAX_MEMORY_SIZE": "none"},
        ),
    ]


def test_memory_summarize_takes_medians_in_mb():
    cases = [(plan.BARE, "unguarded", {}), (plan.IP_DATABASE, "guarded", {})]
    measured = {
        0: [
            {"idle_kb": 64512, "peak_kb": 69120, "status": 201},
            {"idle_kb": 64512, "peak_kb": 70144, "status": 201},
        ],
        1: [
            {"idle_kb": 65536, "peak_kb": 66560, "status": 0},
            {"idle_kb": 65536, "peak_kb": 66560, "status": 400},
        ],
    }
    rows, found = memory.summarize(cases, measured)
    assert rows == [
        ["bare view (no idempotency)", "unguarded", "201", "63.0 MB", "68.0 MB", "5.0 MB"],
        [
            "idempotent-post, database lock",
            "guarded",
            "conn-error/400",
            "64.0 MB",
            "65.0 MB",
            "1.0 MB",
        ],
    ]
    assert (found[0]["idle_mb"], found[0]["peak_mb"]) == (63.0, 68.0)
