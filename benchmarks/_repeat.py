"""Repeated runs: the order that alternates the systems, and the median and spread of what the
runs measured. Pure: counts and figures in, order and summaries out.

On a shared machine a single run of a short workload can be off by 1.5x either way, so the
default run repeats the short workloads, each repetition in a fresh subprocess, alternating
the systems so that a change of load hits both, and reports the median of each figure with how
far apart the runs were.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction


def alternate(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    """The order of the runs: ``(system, repetition)`` pairs, ``counts[system]`` per system.

    Each system's runs are spread evenly over the sequence: run ``i`` of a system with ``c``
    runs sits at ``(i + 1/2) / c`` of the way through, ties going in the mapping's order.
    Equal counts alternate strictly (``dask, shoal, dask, shoal``, as one run of each did
    before repetitions); 2 dask and 3 shoal runs give ``shoal, dask, shoal, dask, shoal``, so
    each dask run has a shoal run on either side.
    """
    for system, count in counts.items():
        if count < 0:
            raise ValueError(f"{system}: a negative number of runs ({count})")
    rank = {system: i for i, system in enumerate(counts)}
    slots = [
        (Fraction(2 * i + 1, 2 * count), rank[system], system, i)
        for system, count in counts.items()
        for i in range(count)
    ]
    return [(system, i) for _, _, system, i in sorted(slots)]


@dataclass(frozen=True, slots=True)
class Spread:
    """One metric's figures over the runs of one system: their median, extremes and number."""

    median: float
    low: float
    high: float
    runs: int

    @property
    def max_over_min(self) -> float | None:
        """How many times the largest figure is the smallest (1.0: the runs agreed); None when
        the ratio means nothing (a figure at or below zero, such as a memory growth that came
        out negative)."""
        if self.low <= 0:
            return None
        return self.high / self.low


def summarize(values: Sequence[float]) -> Spread:
    """The median (the mean of the two middle figures for an even count), min, max and count."""
    if not values:
        raise ValueError("no figures to summarize")
    return Spread(statistics.median(values), min(values), max(values), len(values))


def format_spread(spread: Spread | None) -> str:
    """``1.29 (3)``: max/min of the runs and how many there were; ``— (1)`` for a single run."""
    if spread is None:
        return "—"
    if spread.runs == 1:
        return "— (1)"
    ratio = spread.max_over_min
    if ratio is None:
        return f"— ({spread.runs})"
    return f"{ratio:.1f} ({spread.runs})" if ratio >= 10 else f"{ratio:.2f} ({spread.runs})"
