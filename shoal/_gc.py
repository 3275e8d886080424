"""The garbage-collection policy of a process that runs a Client or a Scheduler.

Owns CPython's collector settings for shoal: the thresholds while a Client is open, and
"bulk mode" while the process holds many tasks (futures on the client, task states on the
scheduler) or builds a big graph. Knows nothing of tasks beyond how many there are: owners
register a container with :meth:`GcKeeper.watch` and the keeper reads its ``len``.

Why bulk mode: a collection holds the GIL for as long as it walks its generation, and at a
million held futures the process has several million tracked objects. A full collection
then takes about a second, and even a young collection can take hundreds of milliseconds:
CPython starts one when *net* allocations pass the threshold, so while a run frees old
objects as fast as it makes new ones (each finished task), the youngest generation grows
far beyond the threshold. Either stalls the scheduler's loop (issue 14: never more than
100 ms). In bulk mode:

- everything alive when bulk mode starts is frozen (``gc.freeze``: O(1), moved to the
  permanent generation, which no collection walks);
- every collection's survivors are frozen too (a ``gc.callbacks`` hook), and a timer on
  the owner's event loop collects the two young generations every ``tick`` seconds
  (``gc.collect(1)``), so each pass walks only what was allocated since the last tick,
  then freezes the survivors: the old heap is never walked again. (CPython starts a
  collection on *net* allocations, which a run that frees as it allocates never passes:
  hence the timer);
- a Client about to take in a big map or graph says so (``expect``), and one building a
  graph (dask's graph materialisation inside ``get``/``compute``/``persist``) does it
  inside ``building()``: bulk mode starts once the build has added ``build_enter``
  tracked objects, before a middle collection walks them; containers built of existing
  objects (``wait``'s million futures, the client's graph-sized dicts) are frozen as
  soon as they are built (``settle``), before a young collection walks every item.
  While a graph is built or its announced tasks are still arriving, a tick only freezes
  the young objects (O(1)): the build's own containers (dask's graph-sized dicts and
  lists) are among them, and one young pass over them took 167 ms of the loop at 1M.

Frozen objects still die by reference counting; only *cyclic* garbage that outlived one
collection waits in the permanent generation. Walking it again (unfreeze, one full
collection) costs about 0.2-0.4 µs per live object (0.6 s at the end of a 1M-task array
run, while its graph was still referenced; it found nothing), so it is done only when it
is cheap or when memory says it is owed:

- when bulk mode ends (the held count falls below ``leave_at``) the frozen objects stay
  frozen ("lingering"); every ``linger_tick`` seconds the keeper reads the heap's size
  and, once it is small (``thaw_blocks``), counts the frozen objects and thaws them if
  they are few (``thaw_objects``: the full collection is then short), e.g. after the
  user dropped the graph. Nothing is frozen while lingering, so the cyclic garbage
  kept is at most what was frozen, never more;
- in bulk mode the frozen objects are examined (unfreeze, one full collection, freeze)
  when the heap passes ``growth`` times what the held count explains: cyclic garbage
  about as big as the live heap of the largest run since the last examination;
- the last Client or Scheduler to close thaws whatever is frozen.

The heap's size is read as pymalloc's allocated blocks (``sys.getallocatedblocks``: a walk
over pools, 2 ms at 7M blocks, 12-24 ms at 45M), every few seconds, never by counting
frozen objects (``gc.get_freeze_count`` walks them: 50-150 ms at 2-3M).

The decision is :func:`decide`, pure (counts in, action out); :class:`GcKeeper` is the
shell that reads counts, calls ``gc`` and ticks.

The user's settings win: if the collector is disabled, its thresholds are not CPython's
defaults, or objects are frozen when the first Client or Scheduler starts, shoal leaves
the collector alone entirely; bulk mode does not start while the user has disabled the
collector or changed shoal's thresholds since. When the last one closes, shoal's
thresholds are put back to what they were (unless someone changed them meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import operator
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Literal

from shoal import _interrupts

logger = logging.getLogger("shoal.gc")

CPYTHON_DEFAULT_THRESHOLDS = (700, 10, 10)
# Young objects are collected every 20,000 net allocations instead of 700: tracking
# thousands of futures otherwise spends a third of the time in the collector. The middle
# generation every 100 young collections instead of 10: the futures, task states and
# results of a map mostly die (released) before a middle collection would look at them
# (each middle collection of a 20k map cost ~4-5 µs per task).
SHOAL_THRESHOLDS = (20_000, 100, 10)

Action = Literal["keep", "enter", "leave", "count", "thaw", "examine", "young", "freeze"]


@dataclass(frozen=True)
class GcSettings:
    """When bulk mode starts and ends, how often it collects young objects, and when the
    objects it froze are walked again."""

    enter_at: int = 50_000  # held tasks+futures at which bulk mode starts
    leave_at: int = 20_000  # ... and below which it ends (hysteresis: no flapping)
    tick: float = 0.05  # seconds between young collections in bulk mode
    # Bulk-mode ticks between reads of the heap's size (5 s), and seconds between reads
    # while lingering: a read visits every pymalloc pool, 12-24 ms at 2.4 GB of them.
    measure_every: int = 100
    linger_tick: float = 5.0
    growth: float = 2.0  # heap beyond this times what held explains: examine
    # pymalloc blocks a held task or future, or an announced graph task, may bring (a
    # held 1M map is ~1 KB of small objects per future; dask's graph several objects
    # per task): generous, since a needless examination is a long pause.
    per_held: float = 64.0
    # Bulk mode over, the frozen objects are thawed (one full collection of the heap)
    # once they are this few (a 150k-object collection: 40-60 ms measured) ...
    thaw_objects: int = 150_000
    # ... counted (a list walk, 11-55 ns an object) only once the heap is this small (in
    # blocks, ~4 an object), and again only after it shrank by a tenth since the last count.
    thaw_blocks: int = 2_000_000
    # Tracked objects a graph build (inside building()) may add before bulk mode starts
    # (ten young collections at shoal's threshold; ~40-80 ms to walk).
    build_enter: int = 200_000
    # A tick this late after the young objects were last frozen only freezes them: what
    # piled up meanwhile (a loop kept off the GIL or a core while the calling thread
    # builds a graph) took 93-153 ms to walk at 1M; cycles among it wait frozen.
    late_after: float = 0.25


@dataclass(frozen=True)
class GcView:
    """What the keeper knows at one decision: counts, never objects."""

    held: int  # tasks/futures held by the watched owners
    bulk: bool  # in bulk mode now
    heap: int | None = None  # the heap's size (allocated blocks), when read at this decision
    heap_at_exam: int = 0  # ... after the last examination or thaw (or at the entry since)
    held_at_exam: int = 0  # held count then
    peak: int = 0  # the most held (or announced by expect) since then
    expecting: bool = False  # a graph is being built or announced tasks not yet counted
    lingering: bool = False  # objects frozen by a bulk mode that has ended wait frozen
    frozen: int | None = None  # frozen objects, when counted at this decision
    heap_at_count: int | None = None  # the heap's size at the last count while lingering
    since_frozen: float = 0.0  # seconds since the young objects were last frozen


def decide(view: GcView, settings: GcSettings) -> Action:
    """The policy: what to do given the counts.

    - not in bulk mode: ``"enter"`` at ``enter_at`` held; lingering, once the heap is
      under ``thaw_blocks`` (and a tenth smaller than at the last count), ``"count"``
      the frozen objects, and ``"thaw"`` them if they are ``thaw_objects`` at most (a
      full collection that short); else ``"keep"``;
    - in bulk mode: ``"freeze"`` while a graph is being built or tasks announced by
      ``expect`` are still arriving (their growth is not counted yet, and a young pass
      would walk the build's containers); ``"leave"`` below
      ``leave_at``; ``"examine"`` when the heap
      exceeds ``growth`` times what the held count explains (its size at the last
      examination plus ``per_held`` for each task of the largest count held or
      announced since), i.e. when cyclic garbage about as big as the live heap may have
      piled up in the permanent generation; ``"freeze"`` (freeze the young objects
      without walking them) when the last freeze is ``late_after`` seconds old: the
      pile is then too big to walk in one step; else ``"young"`` (collect young
      objects, freeze survivors).

    A lingering heap is never examined for growth: nothing is frozen while lingering,
    so the cyclic garbage it may hold only shrinks.
    """
    if not view.bulk:
        if view.held >= settings.enter_at:
            return "enter"
        if view.lingering and view.heap is not None and view.heap <= settings.thaw_blocks:
            if view.frozen is not None:
                return "thaw" if view.frozen <= settings.thaw_objects else "keep"
            if view.heap_at_count is None or view.heap < 0.9 * view.heap_at_count:
                return "count"
        return "keep"
    if view.expecting:  # a graph's growth, not yet in the held count: no leaving, no
        # examining (what it would walk is the graph), and no young walk either: what
        # the build made since the last tick may hold a graph-sized dict or list (one
        # young pass over dask's: 167 ms on the loop at 1M, issue 14)
        return "freeze"
    if view.held < settings.leave_at:
        return "leave"
    if view.heap is not None:
        grown = max(0, max(view.held, view.peak) - view.held_at_exam)
        explained = view.heap_at_exam + settings.per_held * grown
        if view.heap > settings.growth * explained:
            return "examine"
    return "freeze" if view.since_frozen > settings.late_after else "young"


def user_owns_collector(enabled: bool, thresholds: tuple[int, int, int], frozen: int) -> bool:
    """Whether someone already chose the collector's settings in this process (shoal then
    keeps its hands off): disabled it, changed CPython's default thresholds, or froze
    objects (a worker process does both itself)."""
    return not enabled or tuple(thresholds) != CPYTHON_DEFAULT_THRESHOLDS or frozen > 0


class GcKeeper:
    """The process's policy shell: one per process (:func:`keeper`).

    ``acquire(loop)`` when a Client or Scheduler starts, ``release()`` when it closes;
    ``watch`` the containers whose size is the held count. A ``gc.callbacks`` hook
    (installed while acquired and not hands-off) does the O(1) part on whichever thread
    collects: it reads the held count (a few ``len`` calls), enters bulk mode (a freeze)
    and, in bulk mode, freezes each collection's survivors. The ticks run on ``loop`` (the
    one that runs the scheduler and the client's connection: it is the thread that is busy
    when a run is, so its timer runs on time; a thread of its own was starved of the GIL
    for seconds on a loaded machine). No timer while nothing big is held or frozen.

    ``gc_module``, ``heap_size`` and ``clock`` stand in for :mod:`gc`,
    ``sys.getallocatedblocks`` and ``time.monotonic`` in tests (a fake collector that
    records what each collection would walk).
    """

    def __init__(self, settings: GcSettings | None = None, hook: bool = True,
                 gc_module: Any = gc, heap_size: Callable[[], int] = sys.getallocatedblocks,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings or GcSettings()
        self._hook = hook  # False: no gc.callbacks hook (tests drive step() themselves)
        self._gc = gc_module
        self._heap_size = heap_size
        self._clock = clock
        self._frozen_at = 0.0  # when the keeper last froze the young objects
        # Reentrant: a collection in step() may run a finalizer that releases (a Client
        # garbage-collected), on this same thread.
        self._lock = threading.RLock()
        self._stepping = False  # a step holds the lock: the hook skips its work
        self._users = 0
        self._hands_off = False
        self._saved: tuple[int, int, int] | None = None  # thresholds before shoal's
        self._watched: list[tuple[weakref.ReferenceType[Any], Callable[[Any], Any]]] = []
        self._loops: list[asyncio.AbstractEventLoop] = []  # one per acquire with a loop
        self._chain = 0  # ticks of an older chain (before a release) do nothing
        self._owed = False  # a thaw's full collection has not run yet
        self._expecting = False  # expect()ed tasks not counted yet (no leaving meanwhile)
        self._building = 0  # graph builds in progress (building())
        self._grown = 0  # tracked objects those builds added, as the hook saw
        self._young_at_start = 0  # gen-0 count when the current collection started
        self._ticking = False
        self.bulk = False
        self.lingering = False  # bulk mode ended; what it froze waits frozen
        self._heap_at_exam = 0
        self._held_at_exam = 0
        self._peak = 0
        self._heap_at_count: int | None = None
        self._ticks = 0
        # What happened, for tests and the benchmark (counts only).
        self.stats = {"entered": 0, "left": 0, "examined": 0, "young": 0, "thawed": 0,
                      "late": 0}

    # --- acquire / release ----------------------------------------------------------------

    def acquire(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """A Client or Scheduler starts in this process: apply the policy (unless the user
        owns the collector, decided at the first acquire). Bulk mode's ticks run on
        ``loop``; without one (tests) nothing ticks: call :meth:`step`."""
        with self._lock:
            self._users += 1
            if loop is not None:
                self._loops.append(loop)
            if self._users > 1:
                return
            _interrupts.install()
            g = self._gc
            self._hands_off = user_owns_collector(
                g.isenabled(), g.get_threshold(), g.get_freeze_count())
            if self._hands_off:
                return
            self._saved = g.get_threshold()
            g.set_threshold(*SHOAL_THRESHOLDS)
            if self._hook:
                g.callbacks.append(self._on_collection)

    def release(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """A Client or Scheduler closed; the last one ends bulk mode, thaws what is frozen
        (one full collection: no run is left for it to stall) and puts the user's
        thresholds back if still shoal's."""
        with self._lock:
            self._users -= 1
            if loop is not None and loop in self._loops:
                self._loops.remove(loop)
            if self._users > 0:
                return
            if self._hands_off:
                self._hands_off = False
                return
            g = self._gc
            if self._on_collection in g.callbacks:
                g.callbacks.remove(self._on_collection)
            self._stop_ticking()
            if self.bulk or self.lingering:
                self.bulk = False
                self._thaw()
            self._expecting = False
            if self._saved is not None and g.get_threshold() == SHOAL_THRESHOLDS:
                g.set_threshold(*self._saved)
            self._saved = None

    def watch(self, owner: Any, attr: str) -> None:
        """Count ``len(owner.<attr>)`` in the held count while ``owner`` lives. ``attr`` may
        be dotted (``"state.tasks"``): the owner (weakly referenced) can then be the object
        that owns the container's holder, e.g. a scheduler server for its state's tasks,
        since a compiled ``SchedulerState`` (mypyc) takes no weak references."""
        with self._lock:
            self._watched = [(r, a) for r, a in self._watched if r() is not None]
            self._watched.append((weakref.ref(owner), operator.attrgetter(attr)))

    def held(self) -> int:
        """Tasks and futures held now by the watched owners."""
        total = 0
        for ref, get in self._watched:
            owner = ref()
            if owner is not None:
                total += len(get(owner))
        return total

    def settle(self) -> None:
        """A caller just built a container of many existing objects (``wait``'s list of a
        million futures): in bulk mode, freeze it now (O(1)). Built without allocating
        tracked objects, it would otherwise stay young until a collection walks every
        item (100-250 ms at 1M, measured)."""
        if not self.bulk:
            return
        lock = self._lock
        took = False
        try:
            took = lock.acquire(blocking=False)
        finally:
            # A Ctrl-C is due at the end of the acquire call: when it took the lock, ``took``
            # is still False, and a lock kept for good stopped the loop's next tick.
            if not took and lock._is_owned():  # type: ignore[attr-defined]  # (never nested)
                lock.release()
        if took:
            try:
                if self.bulk:
                    self._freeze()
            finally:
                lock.release()

    def expect(self, n: int) -> None:
        """A caller is about to take in ``n`` tasks (a graph, a map): enter bulk mode now
        if they will make the held count pass ``enter_at``, rather than at the first
        collection after they are counted, by which time building them has made the
        middle generation walk them (a 1.5-2M-object collection at 1M)."""
        if not self._users or self._hands_off:
            return
        held = self.held()
        if held + n < self.settings.enter_at:
            return
        with self._lock:
            self._expecting = True  # until the held count shows them (step)
            self._peak = max(self._peak, held + n)  # their graph is live heap, too
            if not self.bulk and self._users and not self._hands_off:
                self._enter()

    @contextlib.contextmanager
    def building(self) -> Iterator[None]:
        """Around a graph's construction whose size is not known before (dask's graph
        materialisation): bulk mode starts once the build has added ``build_enter``
        tracked objects, and does not end while it runs. Inside, call :meth:`expect`
        with the size once known."""
        with self._lock:
            self._building += 1
            if self._building == 1:
                self._grown = 0
        try:
            yield
        finally:
            with self._lock:
                self._building -= 1

    # --- the hook and the ticks -----------------------------------------------------------

    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        """``gc.callbacks`` hook, at the start and end of every collection (any thread).
        While a graph is built, counts the tracked objects each collection leaves (its
        young objects less those it collected). At the end, enters bulk mode when the
        held count or the build says so, and in bulk mode freezes the collection's
        survivors, so the middle generation never piles up between ticks. Only O(1)
        work (a collection from inside a callback would do nothing anyway). Skipped when
        another thread holds the lock (it is changing modes, and freezes at the end of
        its step)."""
        if phase == "start":
            if self._building:
                self._young_at_start = self._gc.get_count()[0]
            return
        if self._stepping:
            return
        # ``with``, not a try-acquire: a Ctrl-C (run at the next bytecode of the main thread,
        # often in this hook) between ``acquire()`` returning and a ``try`` left the lock
        # held for good, and the loop's next tick blocked on it forever. Entering ``with``
        # takes no such check. A step holding the lock never waits on another thread, so
        # waiting for it here is brief; ``_stepping`` skips the wait while a step runs.
        with self._lock:
            if self.bulk:
                self._freeze()
            elif self._users and not self._hands_off:
                if self._building:
                    self._grown += max(0, self._young_at_start - info.get("collected", 0))
                    self._young_at_start = 0
                if ((self._grown >= self.settings.build_enter and self._building)
                        or self.held() >= self.settings.enter_at):
                    self._enter()

    def _freeze(self) -> None:
        self._gc.freeze()
        self._frozen_at = self._clock()

    def _user_took_over(self) -> bool:
        """The user disabled the collector or set thresholds while shoal was acquired:
        their settings win, bulk mode does not start."""
        return not self._gc.isenabled() or tuple(self._gc.get_threshold()) != SHOAL_THRESHOLDS

    def _enter(self) -> None:
        if self._user_took_over():
            return
        self.bulk = True
        self._ticks = 0
        self._freeze()
        held = self.held()
        if self.lingering:  # the heap since the last examination is still frozen: its
            self.lingering = False  # measure stands, and grows with this run's peak
            self._peak = max(self._peak, held)
            # The pending tick is a linger tick, up to linger_tick away: a new chain ticks
            # now (that one finds its chain old). Else until it came, no young collection
            # ran and each collection froze its survivors, fresh cyclic garbage included.
            self._ticking = False
            self._chain += 1
        else:
            self._heap_at_exam, self._held_at_exam = self._heap_size(), held
            self._peak = max(held, self._peak if self._expecting else 0)
        self.stats["entered"] += 1
        self._start_ticking()

    def _start_ticking(self) -> None:
        if self._loops and not self._ticking:
            self._ticking = True
            try:
                self._loops[-1].call_soon_threadsafe(self._tick, self._chain)
            except RuntimeError:  # the loop closed: its owner's release() is near
                self._ticking = False
                logger.debug("GC bulk mode without ticks: the loop is closed")

    def _tick(self, chain: int) -> None:
        """On the loop: one step, and the next tick while in bulk mode or lingering."""
        with self._lock:
            if not self._ticking or chain != self._chain:
                return
            self.step()
            if not self._loops:
                self._ticking = False
            elif self.bulk or self._owed:
                self._loops[-1].call_later(self.settings.tick, self._tick, chain)
            elif self.lingering:
                self._loops[-1].call_later(self.settings.linger_tick, self._tick, chain)
            else:
                self._ticking = False

    def _stop_ticking(self) -> None:
        """The pending tick (at most one, ``tick`` s away) finds its chain old and does
        nothing: timers are not cancelled from another thread (not thread-safe)."""
        self._ticking = False
        self._chain += 1
        self._owed = False

    def _view(self, held: int, measured: bool) -> GcView:
        return GcView(held, self.bulk, self._heap_size() if measured else None,
                      self._heap_at_exam, self._held_at_exam, self._peak,
                      self._expecting or self._building > 0, self.lingering,
                      heap_at_count=self._heap_at_count,
                      since_frozen=self._clock() - self._frozen_at)

    def _linger(self, view: GcView, action: Action) -> Action:
        """Lingering: count the frozen objects when ``decide`` asks, and thaw them if
        they are few enough."""
        if action == "count":
            self._heap_at_count = view.heap
            counted = replace(view, frozen=self._gc.get_freeze_count())
            action = decide(counted, self.settings)
        if action == "thaw":
            self._thaw()
        return action

    def step(self) -> Action:
        """One decision and its action (a tick's work; tests call it directly)."""
        with self._lock:
            self._stepping = True
            try:
                return self._step()
            finally:
                self._stepping = False

    def _step(self) -> Action:
        """``step``'s work, under ``self._lock``."""
        if self._hands_off or self._users == 0:
            return "keep"
        if self._owed:
            self._owed = not _collect(self._gc, 2)
        self._ticks += 1
        held = self.held()
        if held >= self.settings.enter_at:
            self._expecting = False  # what expect() announced has arrived
        self._peak = max(self._peak, held)
        measured = self.lingering or (
            self.bulk and self._ticks % self.settings.measure_every == 0)
        view = self._view(held, measured)
        action = decide(view, self.settings)
        if action == "enter":
            self._enter()
        elif action == "young":
            _collect(self._gc, 1)  # (a skipped collection is the next tick's)
            if self.bulk:  # (a finalizer run by the collection may have released)
                self._freeze()
            self.stats["young"] += 1
        elif action == "freeze":
            self._freeze()
            self.stats["late"] += 1
        elif action == "examine":
            self._gc.unfreeze()
            _collect(self._gc, 2)
            if self.bulk:
                self._freeze()
                self._reset_measure(held)
            self.stats["examined"] += 1
        elif action == "leave":
            self._leave()
        elif action in ("count", "thaw"):
            action = self._linger(view, action)
        return action

    def _leave(self) -> None:
        """End bulk mode: nothing more is frozen; what is frozen stays so (lingering).
        The next tick, a ``linger_tick`` later, counts and may thaw it: not in this
        step, which the run's release keeps busy (measured: 118 ms between two 10 ms
        ticks of a probe when both fell in one step at the end of a 1M map)."""
        self.lingering = True  # (first: readers on other threads never see neither)
        self.bulk = False
        self._expecting = False
        self._heap_at_count = None
        self.stats["left"] += 1

    def _thaw(self) -> None:
        """Nothing stays frozen, and one full collection takes the cyclic garbage that
        waited there (owed to the next tick if another thread's collection was running)."""
        self._gc.unfreeze()
        self._owed = not _collect(self._gc, 2)
        self.stats["thawed"] += 1
        self._reset_measure(self.held())
        self.lingering = False  # (last: a reader on another thread sees the thaw done)

    def _reset_measure(self, held: int) -> None:
        self._heap_at_exam, self._held_at_exam, self._peak = self._heap_size(), held, held


def _collect(g: Any, generation: int, attempts: int = 5) -> bool:
    """``g.collect(generation)``, which does nothing while another thread's collection runs
    its callbacks or finalizers (Python code: the GIL may pass). Retried a few times, 1 ms
    apart (the loop must not wait long); False if it never ran."""
    for attempt in range(attempts):
        before = g.get_stats()[generation]["collections"]
        g.collect(generation)
        if g.get_stats()[generation]["collections"] != before:
            return True
        if attempt + 1 < attempts:
            time.sleep(0.001)
    return False


_keeper = GcKeeper()


def keeper() -> GcKeeper:
    """This process's :class:`GcKeeper`."""
    return _keeper


def settle() -> None:
    """See :meth:`GcKeeper.settle` (this process's keeper)."""
    _keeper.settle()


def expect(n: int) -> None:
    """See :meth:`GcKeeper.expect` (this process's keeper)."""
    _keeper.expect(n)


def building() -> contextlib.AbstractContextManager[None]:
    """See :meth:`GcKeeper.building` (this process's keeper)."""
    return _keeper.building()
