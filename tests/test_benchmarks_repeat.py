"""Repeated benchmark runs: the alternating order, and the medians, ratios and spreads the
table reports from the runs' figures. Fake workloads and figures; nothing is run or timed."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

# benchmarks/ is a top-level package of the repository, not part of the installed shoal.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from benchmarks._cli import parse_args  # noqa: E402
from benchmarks._repeat import Spread, alternate, format_spread, summarize  # noqa: E402
from benchmarks._report import (  # noqa: E402
    HEADER,
    SPREAD_HEADER,
    Outcome,
    merge_repetitions,
    merge_runs,
    results_markdown,
    table_rows,
)
from benchmarks._spec import WORKLOADS, Metric, Run, Target, Variant, Workload, plan  # noqa: E402

FAKE = Workload(
    name="fake",
    title="a fake workload",
    issue=0,
    metrics=(
        Metric("tasks_per_s", "tasks/s", "tasks/s", True, Target(">=", 15.0)),
        Metric("seconds", "wall time", "s", False),
        Metric("tasks", "tasks", "", True, compare=False, exact=True),
    ),
    sizes={"default": {"n": 1}},
    timeout_s=1,
    method="nothing",
    repeat={"dask": 3, "shoal": 3},
)


def _runs(system: str, *figures: dict[str, float]) -> dict[tuple[str, str, int], Outcome]:
    return {("fake", system, i): Outcome(metrics=dict(f)) for i, f in enumerate(figures)}


# --- the order of the runs ---


def test_equal_counts_alternate_dask_first() -> None:
    assert alternate({"dask": 3, "shoal": 3}) == [
        ("dask", 0), ("shoal", 0), ("dask", 1), ("shoal", 1), ("dask", 2), ("shoal", 2),
    ]  # fmt: skip


def test_one_run_each_is_dask_then_shoal_as_before_repetitions() -> None:
    assert alternate({"dask": 1, "shoal": 1}) == [("dask", 0), ("shoal", 0)]


def test_fewer_dask_runs_sit_between_shoal_runs() -> None:
    assert alternate({"dask": 2, "shoal": 3}) == [
        ("shoal", 0), ("dask", 0), ("shoal", 1), ("dask", 1), ("shoal", 2),
    ]  # fmt: skip
    assert alternate({"dask": 1, "shoal": 3}) == [
        ("shoal", 0), ("dask", 0), ("shoal", 1), ("shoal", 2),
    ]  # fmt: skip


def test_one_system_or_none_runs_in_sequence() -> None:
    assert alternate({"shoal": 3}) == [("shoal", 0), ("shoal", 1), ("shoal", 2)]
    assert alternate({"dask": 0, "shoal": 2}) == [("shoal", 0), ("shoal", 1)]
    assert alternate({}) == []
    with pytest.raises(ValueError, match="negative"):
        alternate({"dask": -1})


def test_plan_alternates_a_short_workload_by_its_default_counts() -> None:
    runs = plan(["throughput"], "default", ("dask", "shoal"))
    assert [(r.system, r.rep) for r in runs] == [
        ("shoal", 0), ("dask", 0), ("shoal", 1), ("shoal", 2),
    ]  # fmt: skip
    assert all(r.params == {"n_tasks": 20_000} for r in runs)


def test_plan_with_repeat_one_is_one_run_per_system() -> None:
    runs = plan(["throughput", "latency", "persist"], "quick", ("dask", "shoal"), repeat=1)
    assert [(r.workload, r.system, r.rep) for r in runs] == [
        ("throughput", "dask", 0), ("throughput", "shoal", 0),
        ("latency", "dask", 0), ("latency", "shoal", 0),
        ("persist", "dask", 0), ("persist", "shoal", 0), ("persist", "numpy", 0),
    ]  # fmt: skip


def test_plan_repeat_applies_to_every_workload_and_each_repetition_runs_all_variants() -> None:
    runs = plan(["tls"], "quick", ("dask", "shoal"), repeat=2)
    assert [(r.system, r.prefix, r.rep) for r in runs] == [
        ("dask", "tcp_", 0), ("dask", "tls_", 0), ("shoal", "tcp_", 0), ("shoal", "tls_", 0),
        ("dask", "tcp_", 1), ("dask", "tls_", 1), ("shoal", "tcp_", 1), ("shoal", "tls_", 1),
    ]  # fmt: skip


def test_plan_for_one_system_repeats_it_alone_and_references_run_once() -> None:
    assert [(r.system, r.rep) for r in plan(["latency"], "default", ("shoal",))] == [
        ("shoal", 0), ("shoal", 1), ("shoal", 2),
    ]  # fmt: skip
    runs = plan(["persist"], "quick", ("dask", "shoal"), repeat=2)
    assert [r.system for r in runs] == ["dask", "shoal", "dask", "shoal", "numpy"]
    with pytest.raises(ValueError, match="at least 1"):
        plan(["latency"], "quick", ("shoal",), repeat=0)


def test_default_run_repeats_the_short_workloads_and_runs_the_long_ones_once() -> None:
    short = {"throughput", "latency", "lock", "queue", "tree", "delayed_tree", "fib",
             "startup", "restart"}  # fmt: skip
    for name, workload in WORKLOADS.items():
        shoal_runs = workload.runs("shoal")
        assert shoal_runs == (3 if name in short else 1), name
        assert 1 <= workload.runs("dask") <= shoal_runs, name
    assert WORKLOADS["latency"].runs("dask") == 3
    assert WORKLOADS["throughput"].runs("dask") == 1  # 40 s a run
    assert WORKLOADS["persist"].runs("shoal", repeat=4) == 4


def test_repeat_option_is_parsed_and_checked(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_args([]).repeat is None
    assert parse_args(["latency", "--repeat", "5", "--only", "shoal"]).repeat == 5
    with pytest.raises(SystemExit):
        parse_args(["--repeat", "0"])
    assert "--repeat must be at least 1" in capsys.readouterr().err


# --- medians and spreads ---


def test_summary_is_median_extremes_and_count() -> None:
    assert summarize([3.0, 1.0, 2.0]) == Spread(2.0, 1.0, 3.0, 3)
    assert summarize([1.0, 4.0]).median == 2.5
    assert summarize([2.0, 3.0]).max_over_min == 1.5
    assert summarize([-1.0, 3.0]).max_over_min is None  # a negative growth is noise
    with pytest.raises(ValueError, match="no figures"):
        summarize([])


def test_spread_text_is_max_over_min_and_run_count() -> None:
    assert format_spread(summarize([20.0, 29.0, 25.0])) == "1.45 (3)"
    assert format_spread(summarize([1.0, 12.59])) == "12.6 (2)"
    assert format_spread(summarize([4.0])) == "— (1)"
    assert format_spread(summarize([0.0, 1.0])) == "— (2)"
    assert format_spread(None) == "—"


def test_merged_runs_report_each_figure_median_and_keep_every_run() -> None:
    merged = merge_runs(
        [
            Outcome(metrics={"tasks_per_s": 30.0, "tasks": 7.0}),
            Outcome(metrics={"tasks_per_s": 10.0, "tasks": 7.0}),
            Outcome(metrics={"tasks_per_s": 20.0, "tasks": 7.0}),
        ],
        exact={"tasks"},
    )
    assert merged.metrics == {"tasks_per_s": 20.0, "tasks": 7.0}
    assert merged.samples == {"tasks_per_s": [30.0, 10.0, 20.0], "tasks": [7.0, 7.0, 7.0]}
    assert merged.notes == [] and merged.errors == []


def test_a_count_that_differs_between_runs_is_reported_not_averaged_away() -> None:
    merged = merge_runs(
        [Outcome(metrics={"tasks": 7.0}), Outcome(metrics={"tasks": 6.0})], exact={"tasks"}
    )
    assert merged.notes == ["tasks differed between runs (7, 6); the median is shown"]


def test_a_failed_run_leaves_the_others_figures_and_is_named_by_its_number() -> None:
    merged = merge_runs(
        [
            Outcome(metrics={"seconds": 2.0}),
            Outcome(errors=["TimeoutError: hung"], notes=["killed 2 processes"]),
            Outcome(metrics={"seconds": 4.0}),
        ]
    )
    assert merged.metrics == {"seconds": 3.0}
    assert merged.errors == ["run 2 of 3: TimeoutError: hung"]
    assert merged.notes == ["run 2 of 3: killed 2 processes"]
    spread = merged.spread("seconds")
    assert spread is not None and spread.runs == 2
    one = merge_runs([Outcome(errors=["boom"])])
    assert one.errors == ["boom"] and one.metrics == {}


def test_a_reason_not_to_run_is_kept_once() -> None:
    merged = merge_runs([Outcome(skipped=["no chromium"]), Outcome(skipped=["no chromium"])])
    assert merged.skipped == ["no chromium"]


def test_table_figures_are_medians_and_the_ratio_is_the_ratio_of_medians() -> None:
    runs = {
        **_runs("dask", {"tasks_per_s": 1.0}, {"tasks_per_s": 4.0}, {"tasks_per_s": 2.0}),
        **_runs("shoal", {"tasks_per_s": 30.0}, {"tasks_per_s": 20.0}, {"tasks_per_s": 10.0}),
    }
    row = table_rows([FAKE], merge_repetitions([FAKE], runs))[0]
    assert HEADER[5] == SPREAD_HEADER
    # Medians 2 and 20: 10x (the median of the three pairs' ratios, 30, 5 and 5, would be 5).
    assert row == [
        "fake", "tasks/s", "2 tasks/s", "20 tasks/s", "10.0x", "4.00 (3) / 3.00 (3)",
        "≥ 15 tasks/s", "pass",
    ]  # fmt: skip


def test_counts_show_their_agreement_and_get_no_ratio() -> None:
    runs = {
        **_runs("dask", {"tasks": 4095.0}, {"tasks": 4095.0}),
        **_runs("shoal", {"tasks": 4095.0}, {"tasks": 4095.0}, {"tasks": 4095.0}),
    }
    outcomes = merge_repetitions([FAKE], runs)
    row = table_rows([FAKE], outcomes)[2]
    assert row[2:6] == ["4,095", "4,095", "", "1.00 (2) / 1.00 (3)"]
    assert outcomes[("fake", "shoal")].notes == []


def test_derived_figures_are_derived_per_repetition_then_take_the_median() -> None:
    def on_over_off(m: dict[str, float]) -> dict[str, float]:
        return {"on_over_off": m["on_tasks_per_s"] / m["off_tasks_per_s"]}

    workload = Workload(
        name="fake",
        title="variants",
        issue=0,
        metrics=(Metric("on_over_off", "on / off", "x", True),),
        sizes={"default": {}},
        timeout_s=1,
        method="nothing",
        systems=("shoal",),
        variants=(Variant("off_"), Variant("on_")),
        derive=on_over_off,
    )
    figures = [(100.0, 90.0), (50.0, 60.0), (80.0, 80.0)]
    runs = _runs("shoal", *({"off_tasks_per_s": off, "on_tasks_per_s": on} for off, on in figures))
    merged = merge_repetitions([workload], runs)[("fake", "shoal")]
    assert merged.samples["on_over_off"] == pytest.approx([0.9, 1.2, 1.0])
    assert merged.metrics["on_over_off"] == pytest.approx(1.0)
    assert runs[("fake", "shoal", 0)].metrics == {"off_tasks_per_s": 100.0, "on_tasks_per_s": 90.0}
    row = table_rows([workload], {("fake", "shoal"): merged})[0]
    assert row[2] == "n/a" and row[5] == "n/a / 1.33 (3)"


def test_results_name_each_workload_runs_per_system() -> None:
    outcomes = merge_repetitions(
        [WORKLOADS["throughput"]],
        {
            ("throughput", "dask", 0): Outcome(metrics={"tasks_per_s": 400.0}),
            ("throughput", "shoal", 0): Outcome(metrics={"tasks_per_s": 24_000.0}),
        },
    )
    text = results_markdown([WORKLOADS["throughput"]], outcomes, {}, "python -m benchmarks", "quick")
    assert "**throughput** (issue 2; n_tasks=2000; fresh-process runs: dask 1, shoal 3)" in text
    assert "median" in text.split("##")[0]
    once = results_markdown(
        [WORKLOADS["latency"]], {}, {}, "python -m benchmarks --repeat 1", "quick", repeat=1
    )
    assert "**latency** (issue 2; n=100, warmup=20; fresh-process runs: dask 1, shoal 1)" in once
    assert "once per system" in once and "several times" not in once
    shoal_only = results_markdown(
        [WORKLOADS["latency"]],
        {("latency", "shoal"): Outcome(metrics={"median_ms": 0.3})},
        {},
        "python -m benchmarks latency --only shoal",
        "default",
    )
    assert "fresh-process runs: shoal 3)" in shoal_only and "several times" in shoal_only


# --- the parent's loop, with a fake subprocess ---


class _FakeChildren:
    """Stands in for ``_cli.execute``: records each run and answers from a script."""

    def __init__(self, figures: dict[tuple[str, int], dict[str, float]]) -> None:
        self.figures = figures
        self.calls: list[tuple[str, str, int]] = []

    def __call__(self, run: Run, workdir: Path, timeout_s: float, extra: object) -> Outcome:
        self.calls.append((run.workload, run.system, run.rep))
        metrics = self.figures.get((run.system, run.rep))
        if metrics is None:
            return Outcome(errors=["RuntimeError: the cluster did not start"])
        return Outcome(metrics=dict(metrics))


@pytest.fixture
def fake_children(monkeypatch: pytest.MonkeyPatch) -> Callable[..., _FakeChildren]:
    from benchmarks import _cli, _machine

    monkeypatch.setattr(_machine, "environment", lambda: {"CPU": "fake"})

    def install(figures: dict[tuple[str, int], dict[str, float]]) -> _FakeChildren:
        children = _FakeChildren(figures)
        monkeypatch.setattr(_cli, "execute", children)
        return children

    return install


def _latency(median_ms: float) -> dict[str, float]:
    return {"median_ms": median_ms, "p99_ms": 2 * median_ms}


def test_the_run_alternates_and_reports_medians(
    fake_children: Callable[..., _FakeChildren], capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks._cli import main

    children = fake_children({
        ("dask", 0): _latency(10.0), ("dask", 1): _latency(12.0), ("dask", 2): _latency(11.0),
        ("shoal", 0): _latency(0.3), ("shoal", 1): _latency(0.5), ("shoal", 2): _latency(0.4),
    })  # fmt: skip
    assert main(["latency", "--no-write"]) == 0
    assert [(s, r) for _, s, r in children.calls] == [
        ("dask", 0), ("shoal", 0), ("dask", 1), ("shoal", 1), ("dask", 2), ("shoal", 2),
    ]  # fmt: skip
    out = capsys.readouterr().out
    assert "latency on shoal, run 2 of 3 ..." in out
    row = next(line for line in out.splitlines() if line.startswith("| latency"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2:6] == ["11.0 ms", "0.4 ms", "27.5x", "1.20 (3) / 1.67 (3)"]


def test_repeat_one_runs_each_system_once(fake_children: Callable[..., _FakeChildren]) -> None:
    from benchmarks._cli import main

    children = fake_children({("dask", 0): _latency(10.0), ("shoal", 0): _latency(0.4)})
    assert main(["latency", "--repeat", "1", "--no-write"]) == 0
    assert children.calls == [("latency", "dask", 0), ("latency", "shoal", 0)]


def test_a_failed_run_ends_its_systems_repetitions_and_the_other_system_goes_on(
    fake_children: Callable[..., _FakeChildren], tmp_path: Path
) -> None:
    from benchmarks._cli import main

    children = fake_children({("dask", 0): _latency(10.0), ("dask", 1): _latency(12.0),
                              ("dask", 2): _latency(14.0)})  # fmt: skip
    output = tmp_path / "RESULTS.md"
    output.write_text("# old\n\n## Reading the run above (hand-written)\n\nnotes\n")
    assert main(["latency", "--output", str(output)]) == 0
    assert [(s, r) for _, s, r in children.calls] == [
        ("dask", 0), ("shoal", 0), ("dask", 1), ("dask", 2),
    ]  # fmt: skip
    text = output.read_text()
    assert "| 12.0 ms " in text and "| 1.40 (3) / — " in text
    assert "- latency on shoal: error: RuntimeError: the cluster did not start" in text
    assert "- latency on shoal: failed, so the 2 later run(s) were not made" in text
    assert text.endswith("## Reading the run above (hand-written)\n\nnotes\n")
