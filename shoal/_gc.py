"""The garbage-collection policy of a process that runs a Client or a Scheduler.

Owns CPython's collector settings for shoal: the thresholds while a Client is open, and
"bulk mode" while the process holds many tasks (futures on the client, task states on the
scheduler). Knows nothing of tasks beyond how many there are: owners register a container
with :meth:`GcKeeper.watch` and the keeper reads its ``len``.

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
- a Client about to take in a big map or graph says so (``expect``): bulk mode starts
  before its objects are built; lists built of existing objects (``wait``'s million
  futures) are frozen as soon as they are built (``settle``), before a young collection
  walks every item;
- frozen objects still die by reference counting; only *cyclic* garbage that outlived one
  collection waits in the permanent generation. It is looked at again (unfreeze, one full
  collection, freeze) when the frozen count passes twice what the held count explains
  (cyclic garbage about as big as the live heap: memory stays bounded), and always when
  bulk mode ends (the held count falls below ``leave_at``).

The decision is :func:`decide`, pure (counts in, action out); :class:`GcKeeper` is the
shell that reads counts, calls ``gc`` and ticks.

The user's settings win: if the collector is disabled, its thresholds are not CPython's
defaults, or objects are frozen when the first Client or Scheduler starts, shoal leaves
the collector alone entirely. When the last one closes, shoal's thresholds are put back
to what they were (unless someone changed them meanwhile) and bulk mode ends.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Literal

logger = logging.getLogger("shoal.gc")

CPYTHON_DEFAULT_THRESHOLDS = (700, 10, 10)
# Young objects are collected every 20,000 net allocations instead of 700: tracking
# thousands of futures otherwise spends a third of the time in the collector. The middle
# generation every 100 young collections instead of 10: the futures, task states and
# results of a map mostly die (released) before a middle collection would look at them
# (each middle collection of a 20k map cost ~4-5 µs per task).
SHOAL_THRESHOLDS = (20_000, 100, 10)

Action = Literal["keep", "enter", "leave", "examine", "young"]


@dataclass(frozen=True)
class GcSettings:
    """When bulk mode starts and ends, and how often it collects young objects."""

    enter_at: int = 50_000  # held tasks+futures at which bulk mode starts
    leave_at: int = 20_000  # ... and below which it ends (hysteresis: no flapping)
    tick: float = 0.1  # seconds between young collections in bulk mode
    # Ticks between counts of the frozen objects: a list walk, ~15 ns an object (73 ms at
    # 4.4M on this machine), so rare, and a counting tick collects nothing else.
    count_every: int = 300
    growth: float = 2.0  # frozen beyond this times what held explains: examine
    # Tracked objects a held task or future may bring (a Future, a FutureState, a
    # TaskState; measured: about 1.6 frozen objects per held unit at 300k, heap included).
    per_held: float = 4.0


@dataclass(frozen=True)
class GcView:
    """What the keeper knows at one decision: counts, never objects."""

    held: int  # tasks/futures held by the watched owners
    bulk: bool  # in bulk mode now
    frozen: int | None = None  # objects frozen now, when counted at this decision
    frozen_at_exam: int = 0  # objects frozen after the last examination (or entry)
    held_at_exam: int = 0  # held count then
    expecting: bool = False  # tasks announced by expect() have not all been counted yet


def decide(view: GcView, settings: GcSettings) -> Action:
    """The policy: what to do given the counts.

    - not in bulk mode: ``"enter"`` at ``enter_at`` held, else ``"keep"``;
    - in bulk mode: ``"leave"`` below ``leave_at`` (unless tasks announced by ``expect``
      are still arriving); ``"examine"`` when the frozen objects
      counted now exceed ``growth`` times what the held count explains (the objects frozen
      at the last examination, plus ``per_held`` for each task held beyond the count
      then), i.e. when cyclic garbage about as big as the live heap may have piled up in
      the permanent generation; else ``"young"`` (collect young objects, freeze
      survivors).
    """
    if not view.bulk:
        return "enter" if view.held >= settings.enter_at else "keep"
    if view.held < settings.leave_at and not view.expecting:
        return "leave"
    if view.frozen is not None:
        grown = max(0, view.held - view.held_at_exam)
        explained = view.frozen_at_exam + settings.per_held * grown
        if view.frozen > settings.growth * explained:
            return "examine"
    return "young"


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
    for seconds on a loaded machine). No timer while nothing big is held.
    """

    def __init__(self, settings: GcSettings | None = None, hook: bool = True) -> None:
        self.settings = settings or GcSettings()
        self._hook = hook  # False: no gc.callbacks hook (tests drive step() themselves)
        # Reentrant: a collection in step() may run a finalizer that releases (a Client
        # garbage-collected), on this same thread.
        self._lock = threading.RLock()
        self._users = 0
        self._hands_off = False
        self._saved: tuple[int, int, int] | None = None  # thresholds before shoal's
        self._watched: list[tuple[weakref.ReferenceType[Any], str]] = []
        self._loops: list[asyncio.AbstractEventLoop] = []  # one per acquire with a loop
        self._chain = 0  # ticks of an older chain (before a release) do nothing
        self._owed = False  # the full collection that ends bulk mode has not run yet
        self._expecting = False  # expect()ed tasks not counted yet (no leaving meanwhile)
        self._ticking = False
        self.bulk = False
        self._frozen_at_exam: int | None = 0
        self._held_at_exam = 0
        self._ticks = 0
        # What happened, for tests and the benchmark (counts only).
        self.stats = {"entered": 0, "left": 0, "examined": 0, "young": 0}

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
            self._hands_off = user_owns_collector(
                gc.isenabled(), gc.get_threshold(), gc.get_freeze_count())
            if self._hands_off:
                return
            self._saved = gc.get_threshold()
            gc.set_threshold(*SHOAL_THRESHOLDS)
            if self._hook:
                gc.callbacks.append(self._on_collection)

    def release(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """A Client or Scheduler closed; the last one ends bulk mode (one full collection
        of what was frozen) and puts the user's thresholds back if still shoal's."""
        with self._lock:
            self._users -= 1
            if loop is not None and loop in self._loops:
                self._loops.remove(loop)
            if self._users > 0:
                return
            if self._hands_off:
                self._hands_off = False
                return
            if self._on_collection in gc.callbacks:
                gc.callbacks.remove(self._on_collection)
            self._stop_ticking()
            if self.bulk:
                self._leave()
            if self._saved is not None and gc.get_threshold() == SHOAL_THRESHOLDS:
                gc.set_threshold(*self._saved)
            self._saved = None

    def watch(self, owner: Any, attr: str) -> None:
        """Count ``len(getattr(owner, attr))`` in the held count while ``owner`` lives."""
        with self._lock:
            self._watched = [(r, a) for r, a in self._watched if r() is not None]
            self._watched.append((weakref.ref(owner), attr))

    def held(self) -> int:
        """Tasks and futures held now by the watched owners."""
        total = 0
        for ref, attr in self._watched:
            owner = ref()
            if owner is not None:
                total += len(getattr(owner, attr))
        return total

    def settle(self) -> None:
        """A caller just built a container of many existing objects (``wait``'s list of a
        million futures): in bulk mode, freeze it now (O(1)). Built without allocating
        tracked objects, it would otherwise stay young until a collection walks every
        item (100-250 ms at 1M, measured)."""
        if self.bulk and self._lock.acquire(blocking=False):
            try:
                if self.bulk:
                    gc.freeze()
            finally:
                self._lock.release()

    def expect(self, n: int) -> None:
        """A caller is about to take in ``n`` tasks (a graph, a map): enter bulk mode now
        if they will make the held count pass ``enter_at``, rather than at the first
        collection after they are counted, by which time building them has made the
        middle generation walk them (a 1.5-2M-object collection at 1M)."""
        if (not self._users or self._hands_off
                or self.held() + n < self.settings.enter_at):
            return
        with self._lock:
            self._expecting = True  # until the held count shows them (step)
            if not self.bulk and self._users and not self._hands_off:
                self._enter()

    # --- the hook and the ticks -----------------------------------------------------------

    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        """``gc.callbacks`` hook, at the end of every collection (any thread). Enters bulk
        mode when the held count says so, and in bulk mode freezes the collection's
        survivors, so the middle generation never piles up between ticks. Only O(1) work
        (a collection from inside a callback would do nothing anyway). Skipped when
        another thread holds the lock (it is changing modes, and freezes at the end of
        its step)."""
        if phase != "stop" or not self._lock.acquire(blocking=False):
            return
        try:
            if self.bulk:
                gc.freeze()
            elif self._users and self.held() >= self.settings.enter_at:
                self._enter()
        finally:
            self._lock.release()

    def _enter(self) -> None:
        self.bulk = True
        self._ticks = 0
        gc.freeze()
        self._frozen_at_exam, self._held_at_exam = None, self.held()  # counted at a tick
        self.stats["entered"] += 1
        if self._loops and not self._ticking:
            self._ticking = True
            try:
                self._loops[-1].call_soon_threadsafe(self._tick, self._chain)
            except RuntimeError:  # the loop closed: its owner's release() is near
                self._ticking = False
                logger.debug("GC bulk mode without ticks: the loop is closed")

    def _tick(self, chain: int) -> None:
        """On the loop: one step, and the next tick while in bulk mode."""
        with self._lock:
            if not self._ticking or chain != self._chain:
                return
            self.step()
            if (self.bulk or self._owed) and self._loops:
                self._loops[-1].call_later(self.settings.tick, self._tick, chain)
            else:
                self._ticking = False

    def _stop_ticking(self) -> None:
        """The pending tick (at most one, ``tick`` s away) finds its chain old and does
        nothing: timers are not cancelled from another thread (not thread-safe)."""
        self._ticking = False
        self._chain += 1
        self._owed = False

    def step(self) -> Action:
        """One decision and its action (a tick's work; tests call it directly)."""
        with self._lock:
            if self._hands_off or self._users == 0:
                return "keep"
            if self._owed and not self.bulk:
                self._owed = not _collect(2)
            bulk = self.bulk
            self._ticks += 1
            if bulk and self._frozen_at_exam is None:  # entered in the hook: count now
                self._frozen_at_exam = gc.get_freeze_count()
            counted = bulk and self._ticks % self.settings.count_every == 0
            held = self.held()
            if held >= self.settings.enter_at:
                self._expecting = False  # what expect() announced has arrived
            view = GcView(held, bulk, gc.get_freeze_count() if counted else None,
                          self._frozen_at_exam or 0, self._held_at_exam, self._expecting)
            action = decide(view, self.settings)
            if action == "enter":
                self._enter()
                self._frozen_at_exam = gc.get_freeze_count()
            elif action == "young":
                if not counted:  # (a counting tick spent its time: the next one collects;
                    _collect(1)  # a skipped collection, too, is the next tick's)
                if self.bulk:  # (a finalizer run by the collection may have released)
                    gc.freeze()
                self.stats["young"] += 1
            elif action == "examine":
                gc.unfreeze()
                _collect(2)
                if self.bulk:
                    gc.freeze()
                    self._frozen_at_exam, self._held_at_exam = gc.get_freeze_count(), view.held
                self.stats["examined"] += 1
            elif action == "leave":
                self._leave()
            return action

    def _leave(self) -> None:
        """End bulk mode: nothing stays frozen, and one full collection takes the cyclic
        garbage that waited there (after a run, what is left is small)."""
        self.bulk = False
        self._expecting = False
        gc.unfreeze()
        self._owed = not _collect(2)  # else the next tick does it
        self.stats["left"] += 1


def _collect(generation: int, attempts: int = 5) -> bool:
    """``gc.collect(generation)``, which does nothing while another thread's collection runs
    its callbacks or finalizers (Python code: the GIL may pass). Retried a few times, 1 ms
    apart (the loop must not wait long); False if it never ran."""
    for attempt in range(attempts):
        before = gc.get_stats()[generation]["collections"]
        gc.collect(generation)
        if gc.get_stats()[generation]["collections"] != before:
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
