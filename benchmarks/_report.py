"""Ratios, target checks and the results table. Pure: strings in, strings out."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from benchmarks._spec import SYSTEM_TITLES, Metric, Size, Workload

RATIO_HEADER = "shoal vs dask (>1 = shoal better)"
HEADER = ("Workload", "Metric", "dask.distributed", "shoal", RATIO_HEADER, "Target (shoal)", "Met")


@dataclass(slots=True)
class Outcome:
    """What one system produced for one workload (possibly merged from several runs)."""

    metrics: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def absorb(self, other: Outcome, prefix: str = "") -> None:
        """Merge a run's outcome into this one, its metric keys prefixed."""
        self.metrics.update({prefix + k: v for k, v in other.metrics.items()})
        self.errors.extend(other.errors)
        self.skipped.extend(other.skipped)
        self.notes.extend(other.notes)


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


def table_rows(
    workloads: Sequence[Workload], outcomes: Mapping[tuple[str, str], Outcome]
) -> list[list[str]]:
    """The results table: one row per metric; ``outcomes`` is keyed by (workload, system)."""
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
) -> str:
    """The whole of ``benchmarks/RESULTS.md``."""
    parts = [
        "# shoal vs dask.distributed",
        "",
        f"Generated by `{command}` (size: {size}). Each workload ran on each system in a fresh "
        "subprocess, same machine, same parameters, in this one run. Absolute times are noisy "
        "on a shared machine; compare the ratios. Ratio column: how many times better shoal is "
        "(throughputs: shoal / dask; times: dask / shoal), so > 1 means shoal is better. "
        "Targets apply to shoal's figure.",
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
        parts.append(f"- **{w.name}** (issue {w.issue}; {params}): {w.method}")
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
