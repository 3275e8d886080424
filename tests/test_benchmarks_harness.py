"""The benchmark harness's pure parts: arguments, plans, ratios, targets, tables. Nothing timed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# benchmarks/ is a top-level package of the repository, not part of the installed shoal.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from benchmarks._cli import parse_args  # noqa: E402
from benchmarks._profile import round_trip_lines  # noqa: E402
from benchmarks._report import (  # noqa: E402
    HEADER,
    Outcome,
    format_speedup,
    format_value,
    kept_sections,
    markdown_table,
    one_line,
    results_markdown,
    speedup,
    table_rows,
    verdict,
)
from benchmarks._spec import (  # noqa: E402
    WORKLOADS,
    Metric,
    Target,
    plan,
    rosenbrock_evaluations,
    rosenbrock_ideal_seconds,
)
from benchmarks._watched import block_sides  # noqa: E402
from benchmarks._workloads import CLUSTER_WORKLOADS, memory_figures  # noqa: E402


def test_no_arguments_selects_every_workload_on_both_systems() -> None:
    args = parse_args([])
    assert args.workloads == list(WORKLOADS)
    assert args.systems == ("dask", "shoal")
    assert args.size == "default"


def test_chosen_workloads_keep_order_and_drop_repeats() -> None:
    args = parse_args(["throughput", "latency", "throughput", "--quick", "--only", "shoal"])
    assert args.workloads == ["throughput", "latency"]
    assert args.systems == ("shoal",)
    assert args.size == "quick"


def test_unknown_workload_exits_naming_the_valid_ones(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["thruput"])
    err = capsys.readouterr().err
    assert "unknown workload(s) thruput" in err
    assert "throughput" in err


def test_quick_and_full_are_exclusive() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--quick", "--full"])


def test_plan_runs_dask_then_shoal_and_adds_the_numpy_reference() -> None:
    runs = plan(["persist"], "full", ("dask", "shoal"))
    assert [r.system for r in runs] == ["dask", "shoal", "numpy"]
    assert all(r.params["n"] == 1_000_000_000 for r in runs)


def test_plan_dashboard_is_shoal_only_with_two_variants() -> None:
    assert plan(["dashboard"], "quick", ("dask",)) == []
    runs = plan(["dashboard"], "quick", ("dask", "shoal"))
    assert [(r.system, r.prefix, r.params["dashboard"]) for r in runs] == [
        ("shoal", "off_", False),
        ("shoal", "on_", True),
    ]


def test_size_without_its_own_parameters_falls_back_to_default() -> None:
    assert WORKLOADS["throughput"].params("full") == {"n_tasks": 20_000}
    assert WORKLOADS["throughput"].params("quick") == {"n_tasks": 2_000}


def test_speedup_direction_depends_on_the_metric() -> None:
    assert speedup(20_000, 400, higher_is_better=True) == 50
    assert speedup(0.5, 12.0, higher_is_better=False) == 24
    assert speedup(None, 400, higher_is_better=True) is None
    assert speedup(1.0, 0.0, higher_is_better=True) is None


def test_speedup_of_a_non_positive_memory_figure_is_meaningless() -> None:
    assert speedup(-3.0, 4_000.0, higher_is_better=False) is None  # shoal's growth is noise
    assert speedup(100.0, -5.0, higher_is_better=False) is None  # dask's growth is noise
    assert speedup(1_000.0, 4_000.0, higher_is_better=False) == 4


def test_rosenbrock_count_replays_the_seed_loop() -> None:
    assert rosenbrock_evaluations() == 848
    assert rosenbrock_evaluations(stop=1.8) == 102
    with pytest.raises(ValueError, match="factor"):
        rosenbrock_evaluations(factor=1.0)


def test_rosenbrock_ideal_is_bound_by_the_fewer_of_slots_and_in_flight() -> None:
    assert rosenbrock_ideal_seconds(848, 10, 8, 0.1) == pytest.approx(10.6)
    assert rosenbrock_ideal_seconds(102, 10, 8, 0.1) == pytest.approx(1.3)  # 13 waves of 8
    assert rosenbrock_ideal_seconds(100, 4, 8, 0.1) == pytest.approx(2.5)


def test_format_value_keeps_about_three_digits() -> None:
    assert format_value(20412.7, "tasks/s") == "20,413 tasks/s"
    assert format_value(848.0) == "848"
    assert format_value(0.41234, "ms") == "0.412 ms"
    assert format_value(11.73, "ms") == "11.7 ms"
    assert format_value(1.234, "s") == "1.23 s"
    assert format_value(1.0113, "x") == "1.011 x"
    assert format_speedup(52.31) == "52.3x"
    assert format_speedup(0.8) == "0.80x"
    assert format_speedup(None) == "—"


def test_verdict_against_target() -> None:
    metric = Metric("median_ms", "median", "ms", False, Target("<=", 0.5))
    assert verdict(metric, 0.4) == "pass"
    assert verdict(metric, 0.6) == "FAIL"
    assert verdict(metric, None) == "—"
    assert verdict(Metric("p99_ms", "p99", "ms", False), 3.0) == ""


def test_table_rows_show_figures_ratio_and_errors() -> None:
    outcomes = {
        ("latency", "dask"): Outcome(metrics={"median_ms": 12.0, "p99_ms": 20.0}),
        ("latency", "shoal"): Outcome(errors=["RuntimeError: scheduler\nnot | ready"]),
    }
    rows = table_rows([WORKLOADS["latency"]], outcomes)
    assert rows[0] == [
        "latency",
        "median round trip",
        "12.0 ms",
        "error: RuntimeError: scheduler not / ready",
        "—",
        "— (1) / —",
        "≤ 0.25 ms",
        "—",
    ]
    assert rows[1][3] == "error"


def test_table_rows_for_a_shoal_only_workload() -> None:
    outcome = Outcome(metrics={"off_tasks_per_s": 20_000.0})
    outcome.skipped.append("chromium is not installed")
    rows = table_rows([WORKLOADS["dashboard"]], {("dashboard", "shoal"): outcome})
    assert {r[2] for r in rows} == {"n/a"}
    off = [r for r in rows if "dashboard_address=None" in r[1]]
    assert [r[3] for r in off] == ["20,000 tasks/s"]
    assert rows[0][3].startswith("not run")
    assert {r[4] for r in rows} == {""}


def test_absorb_prefixes_a_variant_metrics() -> None:
    merged = Outcome()
    merged.absorb(Outcome(metrics={"tasks_per_s": 100.0}), "off_")
    merged.absorb(Outcome(metrics={"watched_over_unwatched": 0.97}, notes=["n"]), "on_")
    assert merged.metrics == {"off_tasks_per_s": 100.0, "on_watched_over_unwatched": 0.97}
    assert merged.notes == ["n"]


def test_dashboard_ratio_compares_sides_of_one_process_not_the_two_variants() -> None:
    """The target is on the watched / unwatched ratio measured within the dashboard-on
    process; the dashboard_address=None process gives a figure for information only."""
    workload = WORKLOADS["dashboard"]
    assert workload.derive is None
    targeted = [m.key for m in workload.metrics if m.target is not None]
    assert targeted == ["on_watched_over_unwatched"]
    assert {m.key for m in workload.metrics if m.key.startswith("off_")} == {"off_tasks_per_s"}
    for size in ("quick", "default"):
        params = workload.params(size)  # type: ignore[arg-type]
        assert params["pairs"] >= 2
    assert workload.params("default")["block_s"] >= 3.0  # several of the page's 1 s polls


def test_dashboard_blocks_alternate_and_balance_the_sides() -> None:
    sides = block_sides(4)
    assert sides == [False, True, True, False, False, True, True, False]
    assert sides.count(True) == sides.count(False) == 4
    # Each side's mean position is the same, so a linear drift of speed weighs on both alike.
    watched = [i for i, side in enumerate(sides) if side]
    unwatched = [i for i, side in enumerate(sides) if not side]
    assert sum(watched) == sum(unwatched)


def test_markdown_table_pads_columns() -> None:
    text = markdown_table(["a", "bb"], [["xyz", "1"]])
    assert text.splitlines() == ["| a   | bb |", "| --- | -- |", "| xyz | 1  |"]


def test_one_line_cuts_long_text() -> None:
    assert one_line("x" * 200, 10) == "x" * 9 + "…"


def test_results_markdown_has_table_method_and_environment() -> None:
    outcomes = {
        ("throughput", "dask"): Outcome(metrics={"tasks_per_s": 800.0, "seconds": 25.0}),
        ("throughput", "shoal"): Outcome(metrics={"tasks_per_s": 48_000.0, "seconds": 0.42}),
    }
    text = results_markdown(
        [WORKLOADS["throughput"]], outcomes, {"CPU": "AMD EPYC"}, "python -m benchmarks", "quick"
    )
    assert "| " + HEADER[0] in text
    assert "| 60.0x " in text
    assert "| pass |" in text
    assert "- CPU: AMD EPYC" in text
    assert "**throughput** (issue 2; n_tasks=2000; fresh-process runs: dask 1, shoal 3)" in text


def test_memory_figures_divide_client_growth_by_tasks_and_report_processes_in_mb() -> None:
    samples = {
        "client_idle": 40e6,
        "client_held": 340e6,
        "client_released": 140e6,
        "client_second": 150e6,
        "workers_idle": 75e6,
        "cluster_idle": 80e6,
        "workers_after": 150e6,
    }
    figures = memory_figures(samples, 100_000)
    assert figures == {
        "held_bytes_per_task": 3_000.0,
        "retained_bytes_per_task": 1_000.0,
        "second_map_bytes_per_task": 100.0,
        "client_idle_mb": 40.0,
        "workers_idle_mb": 75.0,
        "cluster_idle_mb": 80.0,
        "workers_after_mb": 150.0,
    }
    assert {m.key for m in WORKLOADS["memory"].metrics} == set(figures)
    with pytest.raises(ValueError, match="n_tasks"):
        memory_figures(samples, 0)


def test_memory_workload_runs_on_both_systems_and_lower_is_better() -> None:
    assert "memory" in CLUSTER_WORKLOADS
    runs = plan(["memory"], "default", ("dask", "shoal"))
    assert [(r.system, r.params["n_tasks"]) for r in runs] == [
        ("dask", 100_000),
        ("shoal", 100_000),
    ]
    outcomes = {
        ("memory", "dask"): Outcome(metrics={"held_bytes_per_task": 5_600.0}),
        ("memory", "shoal"): Outcome(metrics={"held_bytes_per_task": 2_800.0}),
    }
    row = table_rows([WORKLOADS["memory"]], outcomes)[0]
    assert row[2:5] == ["5,600 B/task", "2,800 B/task", "2.00x"]


def test_fib_workload_counts_one_task_per_call() -> None:
    from benchmarks._workloads import fib_calls

    assert [fib_calls(n) for n in range(5)] == [1, 1, 3, 5, 9]
    assert fib_calls(15) == 1_973
    assert "fib" in CLUSTER_WORKLOADS
    assert WORKLOADS["fib"].issue == 10


def test_tls_workload_runs_tcp_then_tls_on_both_systems_and_derives_slowdowns() -> None:
    from benchmarks._spec import _tls_ratios

    runs = plan(["tls"], "default", ("dask", "shoal"))
    assert [(r.system, r.prefix, r.params["secure"]) for r in runs] == [
        ("dask", "tcp_", False), ("dask", "tls_", True),
        ("shoal", "tcp_", False), ("shoal", "tls_", True),
    ]
    assert runs[0].params["mb"] == 200 and runs[0].params["n_tasks"] == 20_000
    assert "tls" in CLUSTER_WORKLOADS
    ratios = _tls_ratios({"tcp_transfer_s": 0.1, "tls_transfer_s": 0.12,
                          "tcp_tasks_per_s": 1000.0, "tls_tasks_per_s": 800.0,
                          "tcp_median_ms": 1.0, "tls_median_ms": 1.5})
    assert ratios == pytest.approx({"transfer_slowdown": 1.2, "throughput_slowdown": 1.25,
                                    "latency_slowdown": 1.5})
    target = next(m for m in WORKLOADS["tls"].metrics if m.key == "transfer_slowdown").target
    assert target is not None and target.met_by(1.2) and not target.met_by(1.4)


def test_regenerating_results_keeps_the_hand_written_profile_sections() -> None:
    previous = "# table\n\n| a |\n\n## Machine\n\n- x\n\n## Profiles (issue 14)\n\ntext\n"
    assert kept_sections(previous) == "\n## Profiles (issue 14)\n\ntext\n"
    assert kept_sections("# table\n\n## Machine\n") == ""


def test_regenerating_results_keeps_the_hand_written_reading_of_the_run_too() -> None:
    previous = ("# table\n\n## Machine\n\n- x\n\n## Reading the run above (hand-written)\n\n"
                "notes\n\n## Profiles (issue 14)\n\ntext\n")
    assert kept_sections(previous) == (
        "\n## Reading the run above (hand-written)\n\nnotes\n\n## Profiles (issue 14)\n\ntext\n")


def test_round_trip_report_gives_wall_figures_and_cpu_per_round_trip_by_thread() -> None:
    times = [0.001 * k for k in range(1, 11)]  # 1..10 ms
    used = {("worker 0", "shoal-task-0 usr"): 0.0004, ("client+scheduler", "shoal-loop usr"): 0.002,
            ("worker 1", "MainThread sys"): 0.000001}
    lines = round_trip_lines(times, used)
    assert lines[0] == "10 round trips: median 5.500 ms, p10 2.000 ms, mean 5.500 ms"
    assert lines[1].split() == ["client+scheduler", "shoal-loop", "usr", "200.0", "µs",
                                "CPU/round", "trip"]
    assert lines[2].split()[:5] == ["worker", "0", "shoal-task-0", "usr", "40.0"]
    assert len(lines) == 4  # worker 1's 0.1 µs is left out of the rows, not of the sum
    assert lines[3].split()[:3] == ["all", "processes", "240.1"]


def test_loop_turns_report_names_what_ran_in_the_longest_intervals() -> None:
    from benchmarks._loop_turns import Call, Collection, Interval, report

    intervals = [Interval(0.0, 0.1, 0.090), Interval(0.1, 0.2, 0.010)]
    calls = [Call(0.00, 0.04, 0.040, "read", 0), Call(0.00, 0.04, 0.035, "step", 1),
             Call(0.05, 0.08, 0.030, "read", 0), Call(0.15, 0.16, 0.009, "drain", 0)]
    lines = report(intervals, calls, [Collection(0.085, 0.09, 0.005, 2)], top=1)
    assert lines[0] == ("interval: 90.0 ms CPU over 100.0 ms; top-level calls 70.0 ms, "
                        "not covered 20.0 ms; collections 5.0 ms (gen 2: 5.0 ms)")
    assert lines[1].split() == ["read", "2", "calls", "70.0", "ms,", "longest", "40.0", "ms"]
    assert lines[2].split() == ["(inside)", "step", "35.0", "ms,", "longest", "35.0", "ms"]
    assert len(lines) == 3  # the drain ran in the other interval
