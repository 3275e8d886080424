"""What the scheduler's cluster fuzzer and the worker's fuzzer share: the defect they
raise, one fuzzed life (steps, drain, liveness) with a failure that says how to replay it,
and the summary of failing sequences a fuzz test prints."""

from __future__ import annotations

import os
from typing import Any


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
        tail = "\n".join(sim.trace[-40:])
        raise Defect(
            f"{label} seed {seed} (steps={steps}, features={sorted(features)}) failed: "
            f"{type(exc).__name__}: {exc}\n"
            f"reproduce (PYTHONHASHSEED={hashseed}): "
            f"{replay}({seed}, {steps}, frozenset({sorted(features)}))\n"
            f"last events:\n{tail}"
        ) from exc
    return sim


def report(messages: list[str]) -> str:
    """The failing sequences' seeds and the first failure in full."""
    seeds = [m.split(" failed:")[0] for m in messages]
    return f"{len(messages)} failing sequences: {seeds[:20]}\nfirst:\n{messages[0]}"
