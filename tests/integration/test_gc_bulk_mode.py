"""The GC policy on a real run (shoal/_gc.py): a large map puts the process in bulk mode
(the heap frozen, young objects collected by the keeper thread), and cyclic garbage made
by user code before, during or after the run is still collected."""

from __future__ import annotations

import gc
import weakref
from dataclasses import replace

import pytest

from shoal import Client, wait
from shoal._gc import SHOAL_THRESHOLDS, keeper

from ._helpers import wait_for

pytestmark = pytest.mark.integration


# The tests' sizes and the keeper's thresholds are its defaults divided by this.
SCALE = 10


class Cycle:
    def __init__(self) -> None:
        self.me = self


def test_a_large_map_runs_in_gc_bulk_mode_and_user_cycles_are_still_collected(
    client: Client,
) -> None:
    k = keeper()
    wait_for(lambda: not k.bulk, timeout=60)  # what earlier tests held is gone
    settings = k.settings
    # A tenth of the default thresholds (enter at 50k held, leave below 20k) and of the
    # map: the same path at a tenth of the cost (the thresholds: tests/test_gc_policy.py).
    k.settings = replace(settings, enter_at=settings.enter_at // SCALE,
                         leave_at=settings.leave_at // SCALE)
    try:
        entered = k.stats["entered"]
        before_run = Cycle()
        dead_before = weakref.ref(before_run)
        n = 50_000 // SCALE
        futures = client.map(abs, range(-n, 0))  # n futures + n scheduler tasks held
        wait_for(lambda: k.bulk, timeout=60)
        wait(futures, timeout=120)
        assert k.stats["entered"] == entered + 1
        assert gc.get_freeze_count() > 0 and gc.get_threshold() == SHOAL_THRESHOLDS
        del before_run  # frozen with the heap when bulk mode started: waits there
        during = Cycle()
        dead_during = weakref.ref(during)
        del during  # young garbage: a keeper tick collects it while the futures are held
        wait_for(lambda: dead_during() is None, timeout=30)
        assert k.bulk and dead_before() is not None
        assert sum(f.result() for f in futures[:10]) == sum(range(n + 1 - 10, n + 1))
        # The run ends. Were the frozen heap big (a graph the user still holds), it would
        # stay frozen until small or the last close (tests/test_gc_policy.py); this
        # process's heap counts as small here, so leaving thaws it and takes the frozen cycle.
        k.settings = replace(k.settings, thaw_blocks=10**12, thaw_objects=10**12)
        del futures
        wait_for(lambda: not k.bulk and not k.lingering, timeout=60)
    finally:
        k.settings = settings
    assert dead_before() is None
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == SHOAL_THRESHOLDS


def test_a_big_collection_enters_gc_bulk_mode_while_its_graph_is_built(
    client: Client, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import dask
    import dask.array as da

    k = keeper()
    wait_for(lambda: not k.bulk, timeout=60)
    entries: list[bool] = []  # whether each entry came while a graph was being built
    enter = k._enter

    def recording_enter() -> None:
        entries.append(k._building > 0)
        enter()

    monkeypatch.setattr(k, "_enter", recording_enter)
    # A tenth of the default build threshold (200k objects) and of the collection: the
    # held count (~8k tasks) stays far below enter_at, so only the build can enter.
    monkeypatch.setattr(k, "settings", replace(k.settings,
                                               build_enter=k.settings.build_enter // SCALE))
    total = da.ones(40_000 // SCALE, chunks=1).sum()  # ~8k tasks: >20k objects to build
    with dask.config.set(scheduler=client):
        assert total.compute() == 40_000 // SCALE
    assert entries and entries[0]  # before the tasks were counted: during the build
    wait_for(lambda: not k.bulk, timeout=60)
