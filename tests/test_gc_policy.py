"""The GC policy (shoal/_gc.py): the pure decision, and the keeper's effect on CPython's
collector (thresholds, bulk mode's freezing, cyclic garbage still collected)."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from collections.abc import Iterator

import pytest
from _waiting import wait_for

from shoal._gc import (
    CPYTHON_DEFAULT_THRESHOLDS,
    SHOAL_THRESHOLDS,
    GcKeeper,
    GcSettings,
    GcView,
    decide,
    keeper,
    user_owns_collector,
)

SETTINGS = GcSettings(enter_at=1_000, leave_at=100, count_every=2, growth=2.0)


# --- the decision ------------------------------------------------------------------------------


def test_bulk_mode_starts_at_enter_at_held() -> None:
    assert decide(GcView(held=999, bulk=False), SETTINGS) == "keep"
    assert decide(GcView(held=1_000, bulk=False), SETTINGS) == "enter"


def test_bulk_mode_does_not_end_while_expected_tasks_arrive() -> None:
    assert decide(GcView(held=0, bulk=True, expecting=True), SETTINGS) == "young"


def test_bulk_mode_ends_only_below_leave_at() -> None:
    assert decide(GcView(held=500, bulk=True), SETTINGS) == "young"  # between: no flapping
    assert decide(GcView(held=100, bulk=True), SETTINGS) == "young"
    assert decide(GcView(held=99, bulk=True), SETTINGS) == "leave"


def test_frozen_growth_that_held_growth_explains_is_not_examined() -> None:
    # 9,000 more tasks held since: up to 4 objects each may have been frozen with them
    view = GcView(held=10_000, bulk=True, frozen=80_000, frozen_at_exam=10_000,
                  held_at_exam=1_000)
    assert decide(view, SETTINGS) == "young"


def test_frozen_growth_beyond_held_growth_is_examined() -> None:
    # the same held count, but the permanent generation more than doubled: cyclic garbage
    # may be waiting there
    view = GcView(held=1_000, bulk=True, frozen=20_001, frozen_at_exam=10_000,
                  held_at_exam=1_000)
    assert decide(view, SETTINGS) == "examine"


def test_falling_held_count_does_not_shrink_what_the_frozen_count_may_be() -> None:
    # frozen objects die by reference counting; a smaller held count alone is no reason
    # to walk the permanent generation
    view = GcView(held=200, bulk=True, frozen=15_000, frozen_at_exam=10_000, held_at_exam=1_000)
    assert decide(view, SETTINGS) == "young"


def test_an_uncounted_tick_never_examines() -> None:
    view = GcView(held=1_000, bulk=True, frozen=None, frozen_at_exam=1, held_at_exam=1_000)
    assert decide(view, SETTINGS) == "young"


def test_the_user_owns_the_collector_when_they_changed_it() -> None:
    assert not user_owns_collector(True, CPYTHON_DEFAULT_THRESHOLDS, 0)
    assert user_owns_collector(False, CPYTHON_DEFAULT_THRESHOLDS, 0)
    assert user_owns_collector(True, (700, 50, 10), 0)
    assert user_owns_collector(True, CPYTHON_DEFAULT_THRESHOLDS, 12)


# --- the keeper on the real collector ----------------------------------------------------------


@pytest.fixture
def pristine_gc() -> Iterator[None]:
    """CPython's defaults, nothing frozen; put back afterwards (other tests' clients). The
    process's own keeper (a session Client of the integration tests may hold it) is kept
    out of the way: out of bulk mode, its hook removed meanwhile."""
    wait_for(lambda: not keeper().bulk, timeout=60)
    hooks = [cb for cb in gc.callbacks if getattr(cb, "__self__", None) is keeper()]
    for cb in hooks:
        gc.callbacks.remove(cb)
    saved, enabled = gc.get_threshold(), gc.isenabled()
    frozen = gc.get_freeze_count()
    gc.unfreeze()
    gc.set_threshold(*CPYTHON_DEFAULT_THRESHOLDS)
    gc.enable()
    yield
    gc.set_threshold(*saved)
    if frozen:
        gc.freeze()
    if not enabled:
        gc.disable()
    gc.callbacks.extend(hooks)


class Holder:
    """Stands in for a Client or SchedulerState: the keeper counts ``len(items)``."""

    def __init__(self, n: int) -> None:
        self.items = list(range(n))


class Cycle:
    def __init__(self) -> None:
        self.me = self


pytestmark = pytest.mark.usefixtures("pristine_gc")


def test_acquire_raises_thresholds_and_the_last_release_restores_them() -> None:
    k = GcKeeper(SETTINGS, hook=False)
    k.acquire()
    k.acquire()
    assert gc.get_threshold() == SHOAL_THRESHOLDS
    k.release()
    assert gc.get_threshold() == SHOAL_THRESHOLDS  # one user left
    k.release()
    assert gc.get_threshold() == CPYTHON_DEFAULT_THRESHOLDS


def test_thresholds_the_user_set_before_are_left_alone_and_nothing_is_frozen() -> None:
    gc.set_threshold(5_000, 7, 3)
    k = GcKeeper(SETTINGS, hook=False)
    k.acquire()
    k.watch(holder := Holder(5_000), "items")
    assert gc.get_threshold() == (5_000, 7, 3)
    assert k.step() == "keep" and not k.bulk
    assert gc.get_freeze_count() == 0 and holder.items
    k.release()
    assert gc.get_threshold() == (5_000, 7, 3)


def test_thresholds_the_user_changed_while_acquired_are_not_overwritten_at_release() -> None:
    k = GcKeeper(SETTINGS, hook=False)
    k.acquire()
    gc.set_threshold(3_000, 5, 5)
    k.release()
    assert gc.get_threshold() == (3_000, 5, 5)


def test_bulk_mode_freezes_the_heap_and_its_end_collects_cycles_that_waited_frozen() -> None:
    k = GcKeeper(SETTINGS, hook=False)
    k.acquire()
    holder = Holder(5_000)
    k.watch(holder, "items")
    garbage = Cycle()
    dead = weakref.ref(garbage)
    assert k.step() == "enter" and k.bulk
    assert gc.get_freeze_count() > 0  # the heap, the cycle included, is out of the walks
    del garbage  # user code drops its cycle during the big run
    assert k.step() == "young"
    gc.collect()
    assert dead() is not None  # frozen: no collection walks it while the run is big
    holder.items = []  # the run ends
    assert k.step() == "leave" and not k.bulk
    assert dead() is None  # collected by the keeper, no gc.collect() of the test's
    assert gc.get_freeze_count() == 0
    k.release()


def test_young_cycles_made_during_bulk_mode_are_collected_by_its_ticks() -> None:
    k = GcKeeper(SETTINGS, hook=False)
    k.acquire()
    k.watch(holder := Holder(5_000), "items")
    assert k.step() == "enter"
    dead = weakref.ref(Cycle())  # garbage at once, young
    assert k.step() == "young"
    assert dead() is None
    assert holder.items
    k.release()


def test_cyclic_garbage_piling_up_frozen_is_examined_while_the_run_is_still_big() -> None:
    k = GcKeeper(SETTINGS, hook=False)
    k.acquire()
    k.watch(holder := Holder(5_000), "items")
    assert k.step() == "enter"
    frozen = gc.get_freeze_count()
    cycles = [Cycle() for _ in range(2 * frozen + 1_000)]  # well over the whole heap
    dead = weakref.ref(cycles[0])
    assert k.step() == "young"  # survivors frozen
    del cycles
    assert k.step() == "examine"
    assert dead() is None and k.bulk and holder.items
    assert gc.get_freeze_count() < 2 * frozen + 1_000
    k.release()


def test_release_ends_bulk_mode_and_unfreezes() -> None:
    k = GcKeeper(SETTINGS, hook=False)
    k.acquire()
    k.watch(holder := Holder(5_000), "items")
    assert k.step() == "enter"
    k.release()
    assert holder.items
    assert not k.bulk and gc.get_freeze_count() == 0
    assert gc.get_threshold() == CPYTHON_DEFAULT_THRESHOLDS


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running in a thread, as shoal's own."""
    lp = asyncio.new_event_loop()
    thread = threading.Thread(target=lp.run_forever, daemon=True)
    thread.start()
    yield lp
    lp.call_soon_threadsafe(lp.stop)
    thread.join(timeout=10)
    lp.close()


def test_a_collection_starts_bulk_mode_and_the_loop_ticks_until_it_leaves(
    loop: asyncio.AbstractEventLoop,
) -> None:
    k = GcKeeper(GcSettings(enter_at=1_000, leave_at=100, tick=0.01))
    k.acquire(loop)
    holder = Holder(0)
    k.watch(holder, "items")
    try:
        holder.items = list(range(5_000))
        wait_for(lambda: gc.collect(0) >= 0 and k.bulk, timeout=10)  # any collection's hook
        assert gc.get_freeze_count() > 0
        wait_for(lambda: k.stats["young"] >= 2, timeout=10)
        holder.items = []
        wait_for(lambda: not k.bulk, timeout=10)
        assert gc.get_freeze_count() == 0
    finally:
        k.release(loop)
    assert gc.get_threshold() == CPYTHON_DEFAULT_THRESHOLDS


def test_in_bulk_mode_every_collection_freezes_its_survivors() -> None:
    k = GcKeeper(SETTINGS)  # no loop: no ticks
    k.acquire()
    k.watch(holder := Holder(5_000), "items")
    try:
        gc.collect(0)
        assert k.bulk
        survivors = [Cycle() for _ in range(100)]
        frozen = gc.get_freeze_count()
        gc.collect(0)  # the middle generation gets nothing to pile up
        assert gc.get_freeze_count() >= frozen + len(survivors)
    finally:
        k.release()
    assert gc.get_freeze_count() == 0 and holder.items


def test_ticks_resume_in_a_bulk_mode_after_a_release_and_a_new_acquire(
    loop: asyncio.AbstractEventLoop,
) -> None:
    k = GcKeeper(GcSettings(enter_at=1_000, leave_at=100, tick=0.01))
    k.acquire(loop)
    k.watch(holder := Holder(5_000), "items")
    gc.collect(0)
    wait_for(lambda: k.stats["young"] >= 1, timeout=10)
    k.release(loop)
    k.acquire(loop)
    # (the hook only tries the lock: a stale tick of the old chain may hold it a moment)
    wait_for(lambda: gc.collect(0) >= 0 and k.bulk, timeout=10)
    young = k.stats["young"]
    wait_for(lambda: k.stats["young"] >= young + 20, timeout=10)
    k.release(loop)
    assert not k.bulk and holder.items and gc.get_freeze_count() == 0


def test_settle_freezes_a_freshly_built_container_only_in_bulk_mode() -> None:
    k = GcKeeper(SETTINGS, hook=False)
    k.acquire()
    k.watch(holder := Holder(0), "items")
    built = list(holder.items)  # outside bulk mode: stays young, the collector's as usual
    k.settle()
    assert gc.get_freeze_count() == 0
    holder.items = list(range(5_000))
    assert k.step() == "enter"
    frozen = gc.get_freeze_count()
    big = [holder] * 100_000  # made of existing objects: no allocation starts a pass
    k.settle()
    assert gc.get_freeze_count() > frozen  # no young collection will walk its items
    k.release()
    assert built == [] and len(big) == 100_000


def test_expecting_a_big_graph_enters_bulk_mode_before_it_is_counted() -> None:
    k = GcKeeper(SETTINGS, hook=False)
    k.acquire()
    k.watch(holder := Holder(10), "items")
    k.expect(SETTINGS.enter_at - 100)  # not enough with what is held
    assert not k.bulk
    k.expect(SETTINGS.enter_at)
    assert k.bulk and gc.get_freeze_count() > 0
    assert k.step() == "young"  # still arriving: no leaving (and no full collection)
    holder.items = list(range(SETTINGS.enter_at))  # arrived...
    assert k.step() == "young"
    holder.items = []  # ... and released
    assert k.step() == "leave"
    k.release()


def test_an_owner_that_is_gone_counts_nothing() -> None:
    k = GcKeeper(SETTINGS, hook=False)
    holder = Holder(5_000)
    k.watch(holder, "items")
    assert k.held() == 5_000
    del holder
    assert k.held() == 0
