"""Ratios, target checks and the results table. Pure: strings in, strings out."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace

from benchmarks._repeat import Spread, format_spread, summarize
from benchmarks._spec import SYSTEM_TITLES, Metric, Size, Workload

RATIO_HEADER = "shoal vs dask (>1 = shoal better)"
SPREAD_HEADER = "Spread: max/min (runs), dask / shoal"
HEADER = (
    "Workload", "Metric", "dask.distributed", "shoal", RATIO_HEADER, SPREAD_HEADER,
    "Target (shoal)", "Met",
)  # fmt: skip


@dataclass(slots=True)
class Outcome:
    """What one system produced for one workload (possibly merged from several runs).

    ``metrics`` holds the figure the table shows; after ``merge_runs``, the median of the
    repetitions, whose figures ``samples`` keeps in run order. A figure without samples is
    one run's.
    """

    metrics: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    samples: dict[str, list[float]] = field(default_factory=dict)

    def absorb(self, other: Outcome, prefix: str = "") -> None:
        """Merge a run's outcome into this one, its metric keys prefixed."""
        self.metrics.update({prefix + k: v for k, v in other.metrics.items()})
        self.errors.extend(other.errors)
        self.skipped.extend(other.skipped)
        self.notes.extend(other.notes)

    def spread(self, key: str) -> Spread | None:
        """The median, extremes and number of runs of one figure; None when no run had it."""
        if key in self.samples:
            return summarize(self.samples[key])
        if key in self.metrics:
            return summarize([self.metrics[key]])
        return None


def merge_runs(runs: Sequence[Outcome], exact: Collection[str] = ()) -> Outcome:
    """One system's repetitions of a workload as one outcome.

    Each figure becomes the median of the runs that produced it, all of them kept in
    ``samples``. A run's errors and notes are kept, marked ``run i of n`` when there were
    several runs; a reason for not running is kept once. A figure named in ``exact`` (a
    count the parameters fix) that differs between runs gets a note listing the values.
    """
    merged = Outcome()
    for i, run in enumerate(runs, 1):
        tag = f"run {i} of {len(runs)}: " if len(runs) > 1 else ""
        for key, value in run.metrics.items():
            merged.samples.setdefault(key, []).append(value)
        merged.errors.extend(tag + error for error in run.errors)
        merged.notes.extend(tag + note for note in run.notes)
        merged.skipped.extend(r for r in run.skipped if r not in merged.skipped)
    for key, values in merged.samples.items():
        merged.metrics[key] = summarize(values).median
        if key in exact and len(set(values)) > 1:
            shown = ", ".join(format_value(v) for v in values)
            merged.notes.append(f"{key} differed between runs ({shown}); the median is shown")
    return merged


def merge_repetitions(
    workloads: Sequence[Workload], runs: Mapping[tuple[str, str, int], Outcome]
) -> dict[tuple[str, str], Outcome]:
    """The table's outcomes, keyed by (workload, system), from each repetition's outcome,
    keyed by (workload, system, repetition) and already merged over the workload's variants.

    Figures a workload derives from its variants' (``Workload.derive``) are derived within
    each repetition, then the repetitions are merged (``merge_runs``): a derived ratio is the
    median of the repetitions' ratios.
    """
    by_name = {w.name: w for w in workloads}
    grouped: dict[tuple[str, str], list[tuple[int, Outcome]]] = {}
    for (name, system, rep), outcome in runs.items():
        grouped.setdefault((name, system), []).append((rep, outcome))
    merged = {}
    for (name, system), reps in grouped.items():
        workload = by_name[name]
        ordered = [outcome for _, outcome in sorted(reps, key=lambda pair: pair[0])]
        if derive := workload.derive:
            ordered = [replace(o, metrics={**o.metrics, **derive(o.metrics)}) for o in ordered]
        exact = {m.key for m in (*workload.metrics, *workload.references) if m.exact}
        merged[(name, system)] = merge_runs(ordered, exact)
    return merged


def one_line(text: str, limit: int = 90) -> str:
    """Collapse whitespace and cut to ``limit`` characters, for a table cell."""
    flat = " ".join(text.split()).replace("|", "/")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def speedup(shoal: float | None, dask: float | None, higher_is_better: bool) -> float | None:
    """How many times better shoal's figure is than dask's (>1: shoal better).

    Throughputs divide shoal by dask; times divide dask by shoal. None when a side is missing or
    the division is meaningless: a zero or negative divisor, a negative dividend (a memory growth
    that came out below zero is noise), or a non-finite figure.
    """
    if shoal is None or dask is None:
        return None
    num, den = (shoal, dask) if higher_is_better else (dask, shoal)
    if den <= 0 or num < 0 or not (math.isfinite(num) and math.isfinite(den)):
        return None
    return num / den


def format_value(value: float, unit: str = "") -> str:
    """A figure with about three significant digits and its unit: ``20,412 tasks/s``, ``0.42 ms``."""
    if not math.isfinite(value):
        text = str(value)
    elif unit == "x":
        text = f"{value:.3f}"  # ratios near a target such as 1.01 need the third decimal
    elif value == int(value) and abs(value) >= 1 and unit in ("", "tasks/s"):
        text = f"{int(value):,}"
    elif abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    elif abs(value) >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}" if unit else text


def format_speedup(ratio: float | None) -> str:
    if ratio is None:
        return "—"
    return f"{ratio:.1f}x" if ratio >= 10 else f"{ratio:.2f}x"


def target_text(metric: Metric) -> str:
    if metric.target is None:
        return ""
    op = "≥" if metric.target.op == ">=" else "≤"
    return f"{op} {format_value(metric.target.bound, metric.unit)}"


def verdict(metric: Metric, value: float | None) -> str:
    """``pass``/``FAIL`` for shoal's figure against the metric's target; blank without a target."""
    if metric.target is None:
        return ""
    if value is None:
        return "—"
    return "pass" if metric.target.met_by(value) else "FAIL"


def cell(outcome: Outcome | None, metric: Metric, first_row: bool) -> str:
    """One system's figure for one metric, or why there is none."""
    if outcome is None:
        return "—"
    if metric.key in outcome.metrics:
        return format_value(outcome.metrics[metric.key], metric.unit)
    if outcome.errors:
        return "error: " + one_line(outcome.errors[0]) if first_row else "error"
    if outcome.skipped:
        return "not run: " + one_line(outcome.skipped[0]) if first_row else "not run"
    return "—"


def spread_cell(workload: Workload, dask: Outcome | None, shoal: Outcome | None, key: str) -> str:
    """``1.04 (3) / 1.29 (3)``: how far apart each system's runs were on one figure."""
    sides = []
    for system, outcome in (("dask", dask), ("shoal", shoal)):
        if system not in workload.systems:
            sides.append("n/a")
        else:
            sides.append(format_spread(outcome.spread(key) if outcome else None))
    return " / ".join(sides)


def table_rows(
    workloads: Sequence[Workload], outcomes: Mapping[tuple[str, str], Outcome]
) -> list[list[str]]:
    """The results table: one row per metric; ``outcomes`` is keyed by (workload, system).

    Figures are the medians of the runs (``merge_runs``) and the ratio is the ratio of
    those medians; the spread column says how far apart each system's runs were.
    """
    rows = []
    for workload in workloads:
        dask = outcomes.get((workload.name, "dask"))
        shoal = outcomes.get((workload.name, "shoal"))
        for i, metric in enumerate(workload.metrics):
            dask_cell = cell(dask, metric, i == 0) if "dask" in workload.systems else "n/a"
            shoal_value = shoal.metrics.get(metric.key) if shoal else None
            dask_value = dask.metrics.get(metric.key) if dask else None
            ratio = (
                speedup(shoal_value, dask_value, metric.higher_is_better)
                if metric.compare
                else None
            )
            rows.append(
                [
                    workload.name if i == 0 else "",
                    metric.label,
                    dask_cell,
                    cell(shoal, metric, i == 0),
                    format_speedup(ratio) if metric.compare and "dask" in workload.systems else "",
                    spread_cell(workload, dask, shoal, metric.key),
                    target_text(metric),
                    verdict(metric, shoal_value),
                ]
            )
    return rows


def reference_lines(
    workloads: Sequence[Workload], outcomes: Mapping[tuple[str, str], Outcome]
) -> list[str]:
    """Figures from reference runs (numpy alone), one bullet each."""
    lines = []
    for workload in workloads:
        for metric in workload.references:
            outcome = outcomes.get((workload.name, "numpy"))
            text = cell(outcome, metric, True)
            lines.append(f"- {workload.name}: {metric.label}: {text}")
    return lines


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table with columns padded so it also reads in a terminal."""
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def results_markdown(
    workloads: Sequence[Workload],
    outcomes: Mapping[tuple[str, str], Outcome],
    environment: Mapping[str, str],
    command: str,
    size: Size,
    repeat: int | None = None,
) -> str:
    """The whole of ``benchmarks/RESULTS.md``; ``repeat`` is the run's ``--repeat``, if any."""
    runs = {
        w.name: {
            s: w.runs(s, repeat)
            for s in [s for s in w.systems if (w.name, s) in outcomes] or w.systems
        }
        for w in workloads
    }
    repeated = any(n > 1 for counts in runs.values() for n in counts.values())
    parts = [
        "# shoal vs dask.distributed",
        "",
        f"Generated by `{command}` (size: {size}). Each workload ran on each system in fresh "
        "subprocesses, same machine, same parameters, in this one run"
        + (
            "; some ran several times, alternating the systems (the runs per system are "
            "listed under 'How each workload is measured'). "
            if repeated
            else ", once per system. "
        )
        + "Each figure is the median of its system's runs. "
        "Ratio column: the ratio of the two medians, how many times better shoal is "
        "(throughputs: shoal / dask; times: dask / shoal), so > 1 means shoal is better. "
        "Spread column: for each system, its largest figure over its smallest (1.00: the "
        "runs agreed) and, in brackets, how many runs there were. Absolute times are noisy "
        "on a shared machine; compare the ratios. Targets apply to shoal's median.",
        "",
        markdown_table(HEADER, table_rows(workloads, outcomes)),
        "",
    ]
    refs = reference_lines(workloads, outcomes)
    if refs:
        parts += ["## Reference figures", "", *refs, ""]
    problems = []
    for workload in workloads:
        for system in (*workload.systems, "numpy"):
            outcome = outcomes.get((workload.name, system))
            if outcome is None:
                continue
            title = SYSTEM_TITLES.get(system, system)
            for error in outcome.errors:
                problems.append(f"- {workload.name} on {title}: error: {one_line(error, 400)}")
            for reason in outcome.skipped:
                problems.append(f"- {workload.name} on {title}: not run: {one_line(reason, 400)}")
            for note in outcome.notes:
                problems.append(f"- {workload.name} on {title}: {one_line(note, 400)}")
    if problems:
        parts += ["## Errors and notes", "", *problems, ""]
    parts += ["## How each workload is measured", ""]
    for w in workloads:
        params = ", ".join(f"{k}={v!r}" for k, v in w.params(size).items())
        counts = ", ".join(f"{s} {n}" for s, n in runs[w.name].items())
        parts.append(
            f"- **{w.name}** (issue {w.issue}; {params}; fresh-process runs: {counts}): {w.method}"
        )
    parts += ["", "## Machine and versions", ""]
    parts += [f"- {key}: {value}" for key, value in environment.items()]
    return "\n".join(parts) + "\n"


KEPT_HEADINGS = ("## Reading the run above", "## Profiles")


def kept_sections(previous: str) -> str:
    """The hand-written part of an earlier RESULTS.md (from the first of the
    ``KEPT_HEADINGS`` on), which regenerating the table must not erase; empty when there is
    none."""
    found = [at for h in KEPT_HEADINGS if (at := previous.find("\n" + h)) >= 0]
    return previous[min(found):] if found else ""
