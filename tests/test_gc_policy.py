"""The GC policy (shoal/_gc.py): the pure decision, and the keeper's effect on CPython's
collector (thresholds, bulk mode's freezing, cyclic garbage still collected)."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

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

# (late_after: no tick of these tests is ever late, however loaded the machine)
SETTINGS = GcSettings(enter_at=1_000, leave_at=100, measure_every=2, growth=2.0,
                      build_enter=50_000, late_after=10**9)


# --- the decision ------------------------------------------------------------------------------


def test_bulk_mode_starts_at_enter_at_held() -> None:
    assert decide(GcView(held=999, bulk=False), SETTINGS) == "keep"
    assert decide(GcView(held=1_000, bulk=False), SETTINGS) == "enter"


def test_bulk_mode_does_not_end_while_expected_tasks_arrive() -> None:
    assert decide(GcView(held=0, bulk=True, expecting=True), SETTINGS) != "leave"


def test_a_tick_while_a_graph_is_built_freezes_its_young_objects_without_walking_them() -> None:
    # what the build made since the last tick may hold a graph-sized dict (one young
    # pass over dask's took 167 ms of the loop at 1M): never walked on the loop then
    for held in (0, 5_000, SETTINGS.enter_at * 2):
        assert decide(GcView(held=held, bulk=True, expecting=True), SETTINGS) == "freeze"
    assert decide(GcView(held=5_000, bulk=True), SETTINGS) == "young"  # once arrived


def test_a_graph_being_built_is_never_examined() -> None:
    # dask's graph grows the heap before expect() says how big it is: what an
    # examination would walk is that graph (a 0.7 s collection at 300k tasks, measured)
    view = GcView(held=0, bulk=True, heap=10_000_000, heap_at_exam=1_000_000, expecting=True)
    assert decide(view, SETTINGS) == "freeze"


def test_a_late_tick_freezes_the_young_objects_without_walking_them() -> None:
    late = SETTINGS.late_after + 1
    assert decide(GcView(held=5_000, bulk=True, since_frozen=late), SETTINGS) == "freeze"
    assert decide(GcView(held=0, bulk=True, expecting=True, since_frozen=late),
                  SETTINGS) == "freeze"
    on_time = GcView(held=5_000, bulk=True, since_frozen=SETTINGS.late_after)
    assert decide(on_time, SETTINGS) == "young"


def test_bulk_mode_ends_only_below_leave_at() -> None:
    assert decide(GcView(held=500, bulk=True), SETTINGS) == "young"  # between: no flapping
    assert decide(GcView(held=100, bulk=True), SETTINGS) == "young"
    assert decide(GcView(held=99, bulk=True), SETTINGS) == "leave"


def test_heap_growth_that_held_growth_explains_is_not_examined() -> None:
    # 9,000 more tasks held since: up to 64 blocks each may have come with them
    view = GcView(held=10_000, bulk=True, heap=1_000_000, heap_at_exam=100_000,
                  held_at_exam=1_000)
    assert decide(view, SETTINGS) == "young"


def test_heap_growth_beyond_held_growth_is_examined() -> None:
    # the same held count, but the heap more than doubled: cyclic garbage may be waiting
    # in the permanent generation
    view = GcView(held=1_000, bulk=True, heap=200_001, heap_at_exam=100_000,
                  held_at_exam=1_000)
    assert decide(view, SETTINGS) == "examine"


def test_a_graph_announced_by_expect_explains_heap_growth_after_its_tasks_are_gone() -> None:
    # a 1M-task graph announced: the user's collection keeps its objects alive after the
    # tasks finish, and walking them (a second of GIL) finds nothing
    view = GcView(held=2_000, bulk=True, heap=40_000_000, heap_at_exam=1_000_000,
                  held_at_exam=0, peak=1_000_000)
    assert decide(view, SETTINGS) == "young"


def test_falling_held_count_does_not_shrink_what_the_heap_may_be() -> None:
    # frozen objects die by reference counting; a smaller held count alone is no reason
    # to walk the permanent generation
    view = GcView(held=200, bulk=True, heap=150_000, heap_at_exam=100_000, held_at_exam=1_000)
    assert decide(view, SETTINGS) == "young"


def test_an_unmeasured_tick_never_examines() -> None:
    view = GcView(held=1_000, bulk=True, heap=None, heap_at_exam=1, held_at_exam=1_000)
    assert decide(view, SETTINGS) == "young"


def test_a_heap_still_big_when_bulk_mode_ends_stays_frozen() -> None:
    # the user's collection still references the graph: one full collection of it is
    # the 0.6 s loop step of a 1M-task array run
    view = GcView(held=0, bulk=False, heap=30_000_000, heap_at_exam=1_000_000,
                  lingering=True)
    assert decide(view, SETTINGS) == "keep"


def test_a_lingering_heap_is_counted_once_small_and_thawed_if_few_objects_are_frozen() -> None:
    small = SETTINGS.thaw_blocks
    lingering = GcView(held=0, bulk=False, heap=small, heap_at_exam=10**7, lingering=True)
    assert decide(lingering, SETTINGS) == "count"
    assert decide(replace(lingering, frozen=SETTINGS.thaw_objects), SETTINGS) == "thaw"
    assert decide(replace(lingering, frozen=SETTINGS.thaw_objects + 1), SETTINGS) == "keep"
    # a bigger heap is not counted (the count walks every frozen object)
    assert decide(replace(lingering, heap=small + 1), SETTINGS) == "keep"
    # counted before and not shrunk by a tenth since: not counted again
    assert decide(replace(lingering, heap_at_count=small), SETTINGS) == "keep"
    assert decide(replace(lingering, heap=small - 1, heap_at_count=small + small // 9),
                  SETTINGS) == "count"
    # not lingering (nothing of shoal's frozen), or not measured: nothing to thaw
    assert decide(replace(lingering, lingering=False), SETTINGS) == "keep"
    assert decide(replace(lingering, heap=None), SETTINGS) == "keep"


def test_a_lingering_heap_is_never_examined_for_growth() -> None:
    # nothing is frozen while lingering: the user's new objects are CPython's as usual,
    # and the cyclic garbage frozen can only shrink
    view = GcView(held=0, bulk=False, heap=10**9, heap_at_exam=1_000, lingering=True)
    assert decide(view, SETTINGS) == "keep"


def test_a_big_run_while_lingering_enters_bulk_mode_again() -> None:
    view = GcView(held=1_000, bulk=False, heap=30_000_000, heap_at_exam=1_000_000,
                  lingering=True)
    assert decide(view, SETTINGS) == "enter"


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


def is_frozen(obj: object) -> bool:
    """``obj`` is in the collector's permanent generation: tracked, in no generation."""
    return gc.is_tracked(obj) and not any(o is obj for g in range(3) for o in gc.get_objects(g))


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
    # (any heap counts as small here: the tick after leaving thaws it)
    k = GcKeeper(replace(SETTINGS, thaw_blocks=10**12, thaw_objects=10**12), hook=False)
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
    assert k.step() == "thaw"
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
    heap = [1_000_000]  # the heap's size as the keeper reads it (allocated blocks)
    k = GcKeeper(SETTINGS, hook=False, heap_size=lambda: heap[0])
    k.acquire()
    k.watch(holder := Holder(5_000), "items")
    assert k.step() == "enter"
    cycles = [Cycle() for _ in range(1_000)]
    dead = weakref.ref(cycles[0])
    assert k.step() == "young"  # survivors frozen
    del cycles
    heap[0] = 2_000_001  # the held count is the same: the growth is unexplained
    assert k.step() == "examine"
    assert dead() is None and k.bulk and holder.items
    assert gc.get_freeze_count() > 0  # the live heap frozen again
    heap[0] = 1_500_000
    assert k.step() == "young" and k.step() == "young"  # measured against the new size
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
    # (any heap counts as small here: the tick after leaving thaws it)
    k = GcKeeper(GcSettings(enter_at=1_000, leave_at=100, tick=0.01, linger_tick=0.01,
                            thaw_blocks=10**12, thaw_objects=10**12, late_after=10**9))
    k.acquire(loop)
    holder = Holder(0)
    k.watch(holder, "items")
    try:
        holder.items = list(range(5_000))
        wait_for(lambda: gc.collect(0) >= 0 and k.bulk, timeout=10)  # any collection's hook
        assert gc.get_freeze_count() > 0
        wait_for(lambda: k.stats["young"] >= 2, timeout=10)
        holder.items = []
        wait_for(lambda: not k.bulk and not k.lingering, timeout=10)  # left, then thawed
        assert gc.get_freeze_count() == 0 and k.stats["thawed"] == 1
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
        survivors = [Cycle() for _ in range(1_000)]
        frozen = gc.get_freeze_count()
        gc.collect(0)  # the middle generation gets nothing to pile up
        # Frozen objects that other code frees by refcount leave the count meanwhile: a
        # margin of a tenth of the survivors, which are all frozen when this works.
        assert gc.get_freeze_count() >= frozen + len(survivors) * 9 // 10
    finally:
        k.release()
    assert gc.get_freeze_count() == 0 and holder.items


def test_ticks_resume_in_a_bulk_mode_after_a_release_and_a_new_acquire(
    loop: asyncio.AbstractEventLoop,
) -> None:
    k = GcKeeper(GcSettings(enter_at=1_000, leave_at=100, tick=0.01, late_after=10**9))
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


def test_a_bulk_mode_entered_while_lingering_ticks_at_once_not_at_the_linger_pace(
    loop: asyncio.AbstractEventLoop,
) -> None:
    # Lingering (a heap too big to thaw stays frozen) ticks every linger_tick. A new run
    # entering bulk mode then waited for that slow tick before its young collections
    # started; meanwhile every collection's survivors were frozen, fresh cyclic garbage
    # included, and a big frozen heap is never thawed: it stayed for good.
    k = GcKeeper(GcSettings(enter_at=1_000, leave_at=100, tick=0.01, linger_tick=3_600,
                            thaw_blocks=0, late_after=10**9))
    k.acquire(loop)
    k.watch(holder := Holder(5_000), "items")
    try:
        wait_for(lambda: gc.collect(0) >= 0 and k.bulk, timeout=10)
        wait_for(lambda: k.stats["young"] >= 1, timeout=10)
        holder.items = []
        wait_for(lambda: k.lingering, timeout=10)  # left; the heap stays frozen
        holder.items = list(range(5_000))
        wait_for(lambda: gc.collect(0) >= 0 and k.bulk, timeout=10)  # a run again
        young = k.stats["young"]
        wait_for(lambda: k.stats["young"] >= young + 3, timeout=10)
    finally:
        k.release(loop)


def test_settle_freezes_a_freshly_built_container_only_in_bulk_mode() -> None:
    k = GcKeeper(SETTINGS, hook=False)
    k.acquire()
    k.watch(holder := Holder(0), "items")
    built = list(holder.items)  # outside bulk mode: stays young, the collector's as usual
    k.settle()
    assert gc.get_freeze_count() == 0
    holder.items = list(range(5_000))
    assert k.step() == "enter"
    big = [holder] * 100_000  # made of existing objects: no allocation starts a pass
    assert not is_frozen(big)
    k.settle()
    # No young collection will walk its items. (Asked of the list itself: the freeze count
    # can stand still while threads left by earlier tests free frozen objects.)
    assert is_frozen(big)
    k.release()
    assert built == [] and len(big) == 100_000


class _InterruptedAfter:
    """The keeper's lock, whose non-blocking ``acquire`` answers and is then interrupted:
    what a Ctrl-C due at the end of that call does (CPython checks for signals there)."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        self.real.acquire(blocking, timeout)
        raise KeyboardInterrupt

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_a_ctrl_c_as_settle_takes_the_lock_leaves_it_free() -> None:
    # Held for good, the lock stopped the loop's next tick (and the client's loop with it).
    k = GcKeeper(SETTINGS, hook=False)
    k.acquire()
    try:
        k.watch(holder := Holder(0), "items")
        holder.items = list(range(5_000))
        assert k.step() == "enter"
        real = k._lock
        k._lock = _InterruptedAfter(real)  # type: ignore[assignment]
        with pytest.raises(KeyboardInterrupt):
            k.settle()
        k._lock = real
        took: list[bool] = []

        def take() -> None:
            took.append(real.acquire(timeout=5))
            if took[-1]:
                real.release()

        other = threading.Thread(target=take)
        other.start()
        other.join(10)
        assert took == [True]  # another thread (the loop's tick) can take it
    finally:
        k.release()


def test_expecting_a_big_graph_enters_bulk_mode_before_it_is_counted() -> None:
    k = GcKeeper(SETTINGS, hook=False)
    k.acquire()
    k.watch(holder := Holder(10), "items")
    k.expect(SETTINGS.enter_at - 100)  # not enough with what is held
    assert not k.bulk
    k.expect(SETTINGS.enter_at)
    assert k.bulk and gc.get_freeze_count() > 0
    assert k.step() == "freeze"  # still arriving: no leaving (and no full collection)
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


def test_cycles_made_in_bulk_mode_wait_while_a_big_graph_lives_and_go_when_it_is_dropped() -> None:
    heap = [1_000_000]
    # (the heap's size is the test's; the test process's frozen objects count as few)
    k = GcKeeper(replace(SETTINGS, thaw_objects=10**12), hook=False, heap_size=lambda: heap[0])
    k.acquire()
    k.watch(holder := Holder(5_000), "items")
    assert k.step() == "enter"
    graph = [Holder(1) for _ in range(1_000)]  # the user's collection's graph
    cycle = Cycle()
    dead = weakref.ref(cycle)
    heap[0] = 9_000_000
    assert k.step() == "young"  # the graph and the cycle frozen with the survivors
    del cycle  # cyclic garbage made during the run, frozen
    holder.items = []  # the run ends; the graph is still referenced
    assert k.step() == "leave" and not k.bulk and k.lingering
    assert dead() is not None  # frozen still: one full collection would walk the graph
    assert k.step() == "keep"
    gc.collect()
    assert dead() is not None and gc.get_freeze_count() > 0
    del graph
    heap[0] = 1_100_000  # small again: the frozen objects are counted, few
    assert k.step() == "thaw" and not k.lingering
    assert dead() is None and gc.get_freeze_count() == 0
    k.release()


def test_the_last_release_thaws_a_lingering_heap() -> None:
    heap = [1_000_000]
    k = GcKeeper(SETTINGS, hook=False, heap_size=lambda: heap[0])
    k.acquire()
    k.watch(holder := Holder(5_000), "items")
    assert k.step() == "enter"
    cycle = Cycle()
    dead = weakref.ref(cycle)
    assert k.step() == "young"
    del cycle
    heap[0] = 9_000_000
    holder.items = []
    assert k.step() == "leave" and k.lingering
    assert dead() is not None
    k.release()  # no run left for a full collection to stall
    assert dead() is None and gc.get_freeze_count() == 0 and not k.lingering


def test_a_graph_build_enters_bulk_mode_once_it_has_grown_and_stays_until_it_ends() -> None:
    k = GcKeeper(SETTINGS)  # the hook counts what each collection leaves
    k.acquire()
    k.watch(holder := Holder(0), "items")
    try:
        with k.building():
            graph = [Holder(1) for _ in range(10_000)]  # ~20k tracked objects: small
            gc.collect(0)
            assert not k.bulk
            graph += [Holder(1) for _ in range(SETTINGS.build_enter)]  # grows past it
            assert k.bulk  # entered by the hook, during the build
            frozen = gc.get_freeze_count()
            assert k.step() == "freeze"  # nothing held yet: no leaving while it builds
            k.expect(SETTINGS.enter_at)
        assert k.step() == "freeze"  # announced: still arriving
        holder.items = list(range(SETTINGS.enter_at))
        assert k.step() == "young"
        # Not thawed (that empties the permanent generation); frozen objects freed by
        # refcount meanwhile leave the count, hence the margin.
        assert gc.get_freeze_count() > frozen - 1_000
        holder.items = []
        assert k.step() == "leave"
    finally:
        k.release()
    assert len(graph) == 10_000 + SETTINGS.build_enter


def test_a_small_graph_build_leaves_the_collector_alone() -> None:
    k = GcKeeper(SETTINGS)
    k.acquire()
    k.watch(Holder(0), "items")
    try:
        with k.building():
            graph = [Holder(1) for _ in range(SETTINGS.enter_at // 2)]
            gc.collect(0)
            k.expect(len(graph))
        assert not k.bulk and gc.get_freeze_count() == 0
        assert k.step() == "keep"
    finally:
        k.release()


def test_bulk_mode_does_not_start_once_the_user_changed_the_thresholds() -> None:
    k = GcKeeper(SETTINGS, hook=False)
    k.acquire()
    k.watch(holder := Holder(5_000), "items")
    gc.set_threshold(1_000, 10, 10)  # the user's choice, after the Client started
    assert k.step() == "enter" and not k.bulk
    assert gc.get_freeze_count() == 0 and holder.items
    k.release()
    assert gc.get_threshold() == (1_000, 10, 10)


# --- the longest pause, on a model of the collector -----------------------------------------


class FakeGc:
    """CPython's collector as counts: young and old objects are walked by collections
    (young by ``collect(0|1)``, both by ``collect(2)``), frozen ones by none. Records how
    many objects each collection walked. The heap's size is 3 blocks an object."""

    def __init__(self, objects: int) -> None:
        self.young, self.old, self.frozen = 0, objects, 0
        self.walks: list[tuple[int, int]] = []  # (generation, objects walked)
        self.callbacks: list[object] = []
        self.thresholds = CPYTHON_DEFAULT_THRESHOLDS
        self.collections = [0, 0, 0]

    def heap(self) -> int:
        return 3 * (self.young + self.old + self.frozen)

    def allocate(self, n: int) -> None:
        self.young += n

    def free_frozen(self, n: int) -> None:  # reference counting frees frozen objects too
        self.frozen -= n

    def isenabled(self) -> bool:
        return True

    def get_threshold(self) -> tuple[int, int, int]:
        return self.thresholds

    def set_threshold(self, *t: int) -> None:
        self.thresholds = t  # type: ignore[assignment]

    def get_count(self) -> tuple[int, int, int]:
        return (self.young, 0, 0)

    def get_freeze_count(self) -> int:
        return self.frozen

    def freeze(self) -> None:
        self.frozen += self.young + self.old
        self.young = self.old = 0

    def unfreeze(self) -> None:
        self.old += self.frozen
        self.frozen = 0

    def collect(self, generation: int = 2) -> int:
        walked = self.young + (self.old if generation == 2 else 0)
        self.walks.append((generation, walked))
        self.old += self.young
        self.young = 0
        self.collections[generation] += 1
        return 0

    def get_stats(self) -> list[dict[str, int]]:
        return [{"collections": c} for c in self.collections]


def test_no_collection_of_the_keeper_walks_a_graph_the_user_still_holds() -> None:
    """The 1M-task array run as counts: 100k objects before it, 3M of graph and rows built
    and held, 1M futures and tasks held, then released while the user's collection
    keeps the graph (2M objects). While a Client is open, no collection the keeper
    makes walks more than the young objects of one tick or the heap it started with."""
    fake = FakeGc(objects=100_000)
    settings = GcSettings(enter_at=50_000, leave_at=20_000, measure_every=1, late_after=10**9)
    k = GcKeeper(settings, hook=False, gc_module=fake, heap_size=fake.heap)
    k.acquire()
    k.watch(holder := Holder(0), "items")
    k.expect(1_000_000)
    assert k.bulk
    for _ in range(30):  # the graph is built and submitted, 100k objects a tick
        fake.allocate(100_000)
        assert k.step() == "freeze"  # frozen, never walked
    holder.items = list(range(1_000_000))
    for _ in range(10):  # the run
        fake.allocate(50_000)
        assert k.step() == "young"
    holder.items = []  # the run ends: futures, tasks, messages die, the graph not
    fake.free_frozen(1_500_000)
    assert k.step() == "leave" and k.lingering
    for _ in range(5):
        fake.allocate(10_000)
        assert k.step() == "keep"
    assert max(walked for _, walked in fake.walks) <= 100_000
    fake.free_frozen(2_000_000)  # the user drops the collection
    assert k.step() == "thaw"
    assert fake.walks[-1] == (2, 100_000 + 50_000)  # the heap of before, and what is new
    assert fake.frozen == 0
    k.release()


def test_a_tick_late_after_a_pile_of_young_objects_walks_none_of_them() -> None:
    """The loop kept off the GIL while the calling thread builds: a second of young
    objects piles up; the late tick freezes them (O(1)) instead of walking them."""
    fake = FakeGc(objects=100_000)
    now = [0.0]
    settings = GcSettings(enter_at=50_000, leave_at=20_000, tick=0.05, late_after=0.25)
    k = GcKeeper(settings, hook=False, gc_module=fake, heap_size=fake.heap,
                 clock=lambda: now[0])
    k.acquire()
    k.watch(holder := Holder(60_000), "items")
    assert k.step() == "enter"
    fake.allocate(20_000)
    now[0] += 0.05  # on time: collected and frozen
    assert k.step() == "young" and fake.walks[-1] == (1, 20_000)
    fake.allocate(800_000)
    now[0] += 1.0  # late
    walks = len(fake.walks)
    assert k.step() == "freeze"
    assert len(fake.walks) == walks and fake.young == 0  # frozen, not walked
    fake.allocate(10_000)
    now[0] += 0.05
    assert k.step() == "young" and fake.walks[-1] == (1, 10_000)
    k.release()
    assert holder.items
