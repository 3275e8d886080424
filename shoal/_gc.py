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
- a keeper thread collects the two young generations every ``tick`` seconds
  (``gc.collect(1)``), so each pass walks only what was allocated since the last tick,
  then freezes the survivors: the old heap is never walked again;
- frozen objects still die by reference counting; only *cyclic* garbage that outlived one
  tick waits in the permanent generation. It is looked at again (unfreeze, one full
  collection, freeze) when the frozen count passes twice what the held count explains
  (cyclic garbage about as big as the live heap: memory stays bounded), and always when
  bulk mode ends (the held count falls below ``leave_at``).

The decision is :func:`decide`, pure (counts in, action out); :class:`GcKeeper` is the
shell that reads counts, calls ``gc`` and runs the keeper thread.

The user's settings win: if the collector is disabled, its thresholds are not CPython's
defaults, or objects are frozen when the first Client or Scheduler starts, shoal leaves
the collector alone entirely. When the last one closes, shoal's thresholds are put back
to what they were (unless someone changed them meanwhile) and bulk mode ends.
"""

from __future__ import annotations

import gc
import logging
import threading
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
    """When bulk mode starts and ends, and how often the keeper thread works in it."""

    enter_at: int = 50_000  # held tasks+futures at which bulk mode starts
    leave_at: int = 20_000  # ... and below which it ends (hysteresis: no flapping)
    tick: float = 0.1  # seconds between young collections in bulk mode
    count_every: int = 50  # ticks between counts of the frozen objects (O(n), ~8 ns each)
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


def decide(view: GcView, settings: GcSettings) -> Action:
    """The policy: what to do given the counts.

    - not in bulk mode: ``"enter"`` at ``enter_at`` held, else ``"keep"``;
    - in bulk mode: ``"leave"`` below ``leave_at``; ``"examine"`` when the frozen objects
      counted now exceed ``growth`` times what the held count explains (the objects frozen
      at the last examination, plus ``per_held`` for each task held beyond the count
      then), i.e. when cyclic garbage about as big as the live heap may have piled up in
      the permanent generation; else ``"young"`` (collect young objects, freeze
      survivors).
    """
    if not view.bulk:
        return "enter" if view.held >= settings.enter_at else "keep"
    if view.held < settings.leave_at:
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

    ``acquire()`` when a Client or Scheduler starts, ``release()`` when it closes; ``watch``
    the containers whose size is the held count. A ``gc.callbacks`` hook (installed while
    acquired and not hands-off) reads the held count after each collection, which costs a
    few ``len`` calls, and wakes the keeper thread when bulk mode should start; the thread
    sleeps on an event otherwise (no wake-ups while nothing big is held).
    """

    def __init__(self, settings: GcSettings | None = None, background: bool = True) -> None:
        self.settings = settings or GcSettings()
        self._background = background  # False: no thread, tests call step() themselves
        # Reentrant: a collection in step() may run a finalizer that releases (a Client
        # garbage-collected), on this same thread.
        self._lock = threading.RLock()
        self._users = 0
        self._hands_off = False
        self._saved: tuple[int, int, int] | None = None  # thresholds before shoal's
        self._watched: list[tuple[weakref.ReferenceType[Any], str]] = []
        self.bulk = False
        self._frozen_at_exam = 0
        self._held_at_exam = 0
        self._ticks = 0
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        # What happened, for tests and the benchmark (counts only).
        self.stats = {"entered": 0, "left": 0, "examined": 0, "young": 0}

    # --- acquire / release ----------------------------------------------------------------

    def acquire(self) -> None:
        """A Client or Scheduler starts in this process: apply the policy (unless the user
        owns the collector, decided at the first acquire)."""
        with self._lock:
            self._users += 1
            if self._users > 1:
                return
            self._hands_off = user_owns_collector(
                gc.isenabled(), gc.get_threshold(), gc.get_freeze_count())
            if self._hands_off:
                return
            self._saved = gc.get_threshold()
            gc.set_threshold(*SHOAL_THRESHOLDS)
            self._stop = False
            if self._background:
                gc.callbacks.append(self._on_collection)
                self._thread = threading.Thread(target=self._run, name="shoal-gc", daemon=True)
                self._thread.start()

    def release(self) -> None:
        """A Client or Scheduler closed; the last one ends bulk mode (one full collection
        of what was frozen) and puts the user's thresholds back if still shoal's."""
        with self._lock:
            self._users -= 1
            if self._users > 0 or self._hands_off:
                self._hands_off = self._hands_off and self._users > 0
                return
            if self._on_collection in gc.callbacks:
                gc.callbacks.remove(self._on_collection)
            self._stop = True
            self._wake.set()
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)
            if thread.is_alive():
                logger.warning("the GC keeper thread did not stop within 30 s")
        with self._lock:
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

    # --- the hook and the thread ----------------------------------------------------------

    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        """``gc.callbacks`` hook: runs inside every collection (any thread), so only counts
        and wakes the thread; the thread acts."""
        if phase == "stop" and not self.bulk and self.held() >= self.settings.enter_at:
            self._wake.set()

    def _run(self) -> None:
        # Waits end: a tick in bulk mode, a wake from the hook, or release() (stop + wake).
        while True:
            self._wake.wait(self.settings.tick if self.bulk else None)
            self._wake.clear()
            if self._stop:
                return
            with self._lock:
                if self._stop:
                    return
                self._step()

    def step(self) -> Action:
        """One decision and its action (the keeper thread's work; tests call it directly)."""
        with self._lock:
            return self._step()

    def _step(self) -> Action:
        if self._hands_off or self._users == 0:
            return "keep"
        bulk = self.bulk
        self._ticks += 1
        counted = bulk and self._ticks % self.settings.count_every == 0
        view = GcView(self.held(), bulk, gc.get_freeze_count() if counted else None,
                      self._frozen_at_exam, self._held_at_exam)
        action = decide(view, self.settings)
        if action == "enter":
            self.bulk = True
            self._ticks = 0
            gc.freeze()
            self._frozen_at_exam, self._held_at_exam = gc.get_freeze_count(), view.held
            self.stats["entered"] += 1
            logger.debug("GC bulk mode: %d held, %d objects frozen", view.held,
                         self._frozen_at_exam)
        elif action == "young":
            gc.collect(1)
            if self.bulk:  # (a finalizer run by the collection may have released)
                gc.freeze()
            self.stats["young"] += 1
        elif action == "examine":
            gc.unfreeze()
            gc.collect()
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
        gc.unfreeze()
        gc.collect()
        self.stats["left"] += 1


_keeper = GcKeeper()


def keeper() -> GcKeeper:
    """This process's :class:`GcKeeper`."""
    return _keeper
