"""What the scheduler's cluster fuzzer and the worker's fuzzer share: the defect they
raise, one fuzzed life (steps, drain, liveness) with a failure that says how to replay it,
the chunks of seeds their tests run, and the summary of failing sequences a fuzz test
prints."""

from __future__ import annotations

import os
from typing import Any

import pytest


class Defect(AssertionError):
    """A broken invariant or promise of the machine under fuzzing."""


def run_fuzzed(sim: Any, *, seed: int, steps: int, features: frozenset[str], label: str,
               replay: str) -> Any:
    """``steps`` random actions of ``sim``, then a faithful drain and its liveness checks.
    Raises ``Defect`` naming the seed and the call (``replay``) that reproduces it."""
    try:
        for _ in range(steps):
            sim.step()
        sim.drain()
        sim.check_live()
    except Exception as exc:
        # The machines iterate some sets of keys, whose order follows str hashing.
        hashseed = os.environ.get("PYTHONHASHSEED", "<random: set it to replay exactly>")
        tail = "\n".join(map(said, sim.trace[-40:]))
        raise Defect(
            f"{label} seed {seed} (steps={steps}, features={sorted(features)}) failed: "
            f"{type(exc).__name__}: {exc}\n"
            f"reproduce (PYTHONHASHSEED={hashseed}): "
            f"{replay}({seed}, {steps}, frozenset({sorted(features)}))\n"
            f"last events:\n{tail}"
        ) from exc
    return sim


def said(entry: str | tuple[str, Any]) -> str:
    """One line of a fuzzed life's trace: a note, or (who, message) written out only now
    that a failure shows it (a repr of every message as it passes costs the fuzzers about
    a tenth of their time)."""
    if isinstance(entry, str):
        return entry
    who, msg = entry
    return f"{who}{msg!r}"[:300]


def report(messages: list[str]) -> str:
    """The failing sequences' seeds and the first failure in full."""
    seeds = [m.split(" failed:")[0] for m in messages]
    return f"{len(messages)} failing sequences: {seeds[:20]}\nfirst:\n{messages[0]}"


def chunks(runs: tuple[tuple[Any, ...], ...], first_seed: int, scale: float,
           size: int) -> list[Any]:
    """``pytest.param(features, columns, first, stop)``: each run's seeds (a run is
    ``(features, count)`` or ``(features, count, columns)``) in chunks of ``size``, one test
    each. pytest-xdist spreads the chunks over its processes like any other tests (a
    module-wide fixture running them all ran in one process, and again in each process
    that got a test needing it)."""
    out = []
    for features, count, *rest in runs:
        columns = bool(rest and rest[0])
        stop = first_seed + int(count * scale)
        name = f"{'hostile' if features else 'faithful'}{'-columns' if columns else ''}"
        for first in range(first_seed, stop, size):
            out.append(pytest.param(features, columns, first, min(first + size, stop),
                                    id=f"{name}-{first}"))
    return out


def grouped(found: dict[str, list[str]]) -> str:
    """``report`` of each cause's failing sequences: new defects first, then the known
    (fixed) items of issue 9 whose symptoms they show."""
    order = sorted(found, key=lambda cause: (cause != "new", cause))
    return "\n".join(f"{cause}: {report(found[cause])}" for cause in order)
