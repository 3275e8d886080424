"""The worker fuzzer: thousands of seeded random lives of one ``WorkerState`` under a
scheduler, executor and peers that race and misbehave (see ``_fuzz.py``), with
``validate()`` after every event and liveness checks after a faithful drain.

Failures are grouped by cause: the symptoms of issue 9 items 5 (a fetch outliving its task)
and 7 (a run missing its inputs), found here before they were fixed, have tests of their
own; any other failure fails ``test_..._beyond_known_items``. Each reports the seed and
how to replay it.

Re-run more or other seeds: ``SHOAL_FUZZ_SCALE=10 SHOAL_FUZZ_SEED=1000 pytest ...``
(with ``PYTHONHASHSEED`` set, a failure replays exactly: the machines iterate some sets);
replay one: ``run_worker_sequence(seed, steps, features)`` from ``_fuzz``.
"""

from __future__ import annotations

import os
from collections import defaultdict

import pytest
from _fuzzing import report

from ._fuzz import HOSTILE, Defect, run_worker_sequence

SCALE = float(os.environ.get("SHOAL_FUZZ_SCALE", "1"))
FIRST_SEED = int(os.environ.get("SHOAL_FUZZ_SEED", "0"))
STEPS = 50
# (features, sequences): a scheduler that keeps its promises, and a hostile one.
RUNS = ((frozenset(), 1000), (HOSTILE, 3000))


def classify(message: str) -> str:
    """Which known item of issue 9 a failure is (by its symptom), or "new"."""
    if "assert key not in self.held" in message:
        return "item 5"  # a fetch left in flight after its task was freed
    if "spurious KeyError" in message or "without inputs" in message or (
        "store lacks them" in message
    ):
        return "item 7"  # a run reads inputs the worker dropped
    return "new"


@pytest.fixture(scope="module")
def failures() -> dict[str, list[str]]:
    found: dict[str, list[str]] = defaultdict(list)
    for features, count in RUNS:
        for seed in range(FIRST_SEED, FIRST_SEED + int(count * SCALE)):
            try:
                run_worker_sequence(seed, STEPS, features)
            except Defect as exc:
                found[classify(str(exc.__cause__))].append(str(exc))
    return found


def test_worker_fuzz_finds_no_defect_beyond_known_items(failures: dict[str, list[str]]) -> None:
    new = failures.get("new", [])
    assert not new, report(new)


def test_worker_fuzz_no_fetch_outlives_its_task(failures: dict[str, list[str]]) -> None:
    stale = failures.get("item 5", [])
    assert not stale, report(stale)


def test_worker_fuzz_no_run_loses_its_inputs(failures: dict[str, list[str]]) -> None:
    lost = failures.get("item 7", [])
    assert not lost, report(lost)
