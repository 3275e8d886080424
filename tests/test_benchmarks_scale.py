"""``benchmarks._scale``: the scheduler's state machine timed under the collector policy of
a scheduler process, and the process's collector left as it was found."""

from __future__ import annotations

import gc

import pytest
from test_gc_policy import pristine_gc  # noqa: F401  (the fixture: CPython's defaults)

from benchmarks._scale import run
from shoal import _gc

# A scheduler process starts with CPython's defaults; other tests' clients may not leave them.
pytestmark = pytest.mark.usefixtures("pristine_gc")


def _collector() -> tuple[object, ...]:
    return (gc.isenabled(), gc.get_threshold(), gc.get_freeze_count(), list(gc.callbacks))


def test_scale_run_times_the_state_under_the_scheduler_process_gc_policy() -> None:
    # Past the keeper's enter_at held tasks a scheduler process runs in bulk mode, with
    # young collections on its ticks: the simulation does the same.
    # Afterwards the collector is as it was: thresholds, callbacks, nothing left frozen.
    before = _collector()
    n = _gc.GcSettings().enter_at + 10_000
    r = run(2, n, "map", memory=False, gc_policy="shoal")
    assert r["tasks"] == n
    assert r["gc_bulk"] == 1
    assert r["gc_ticks"] >= 1
    assert _collector() == before


def test_scale_run_with_cpython_gc_leaves_the_collector_alone() -> None:
    before = _collector()
    r = run(4, 2_000, "map", memory=False, gc_policy="cpython")
    assert (r["gc_bulk"], r["gc_ticks"]) == (0, 0)
    assert _collector() == before



def test_scale_run_rejects_an_unknown_gc_policy() -> None:
    with pytest.raises(ValueError, match="gc_policy"):
        run(2, 10, "map", memory=False, gc_policy="off")
