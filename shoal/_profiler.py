"""The statistical profiler's sampling thread (dask's ``distributed.worker.profile``).

Owns: one daemon thread per profiled server that, every ``interval`` seconds, reads the
stacks of the threads it watches (``sys._current_frames``), counts them into the current
cycle's trees (``_profile_tree``, one tree per group: a task's key prefix) and, every
``cycle`` seconds, files that cycle into a bounded history. Must not know about messages
or task states: what to sample comes from a ``pick`` function given by its owner (the
worker's task threads, or a server's event loop thread).

Cheap by design: while ``busy()`` says nothing runs (an idle worker) it reads no stacks,
after a cycle of that it looks ten times less often, and a cycle without samples leaves
nothing in the history.
"""

from __future__ import annotations

import collections
import functools
import inspect
import logging
import sys
import threading
import time
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any, NamedTuple

from shoal import _profile_tree as trees

logger = logging.getLogger("shoal.profile")

# One stack to count: (group, its frames outermost first).
Sample = tuple[str, list[trees.Frame]]
Pick = Callable[[dict[int, FrameType]], list[Sample]]

# dask's defaults for distributed.worker.profile.* (when its config does not say: shoal
# does not load distributed's config file).
DEFAULT_INTERVAL = "10ms"
DEFAULT_CYCLE = "1000ms"
MAX_CYCLES = 3600  # an hour of 1 s cycles, as dask's worker keeps
# Nodes kept over all cycles (measured ~600 B each: ~15 MB): the oldest cycles go first
# past it. Busy cycles of deep stacks make 50-200 nodes, so this keeps minutes to an hour.
MAX_NODES = 25_000


class Settings(NamedTuple):
    enabled: bool
    interval: float  # seconds between samples
    cycle: float  # seconds per cycle of the history


# Sampling a busy event loop costs it: each sample takes the GIL from the loop and walks a
# deep stack (measured ~1-3 µs CPU per task on the scheduler's process at 100 samples/s,
# 3-10% of its ~28 µs per task). So the loops are sampled only on request (dask samples them
# always): dask's config ``shoal.profile.event-loops: True`` when the cluster starts.
EVENT_LOOPS_KEY = "shoal.profile.event-loops"


def settings_from_config(event_loop: bool = False) -> Settings:
    """dask's ``distributed.worker.profile.{enabled,interval,cycle}``; for an
    ``event_loop`` sampler, enabled only if ``shoal.profile.event-loops`` is True too.

    Raises:
        ValueError: an interval or cycle that is not a positive duration.
    """
    import dask.config
    from dask.utils import parse_timedelta

    def duration(name: str, default: str) -> float:
        value = dask.config.get(f"distributed.worker.profile.{name}", default)
        seconds = parse_timedelta(value, default="ms")
        if seconds is None or seconds <= 0:
            raise ValueError(f"distributed.worker.profile.{name} must be a positive duration "
                             f"like '10ms', got {value!r}")
        return float(seconds)

    enabled = bool(dask.config.get("distributed.worker.profile.enabled", True))
    if event_loop:
        enabled = enabled and bool(dask.config.get(EVENT_LOOPS_KEY, False))
    return Settings(enabled, duration("interval", DEFAULT_INTERVAL),
                    duration("cycle", DEFAULT_CYCLE))


def stack_below(frame: FrameType, stop: CodeType | None) -> list[trees.Frame]:
    """The frames from ``frame`` out to (not including) the first one running ``stop``
    (all of them when None), outermost first."""
    out: list[trees.Frame] = []
    walk: FrameType | None = frame
    while walk is not None:
        code = walk.f_code
        if code is stop:
            break
        out.append((code.co_name, code.co_filename, code.co_firstlineno,
                    walk.f_lineno or code.co_firstlineno))  # None while a frame starts
        walk = walk.f_back
    out.reverse()
    return out


class Sampler:
    """Samples what ``pick`` chooses every ``interval`` seconds while ``busy()``.

    ``settings`` is called once, in the sampling thread (reading dask's config may import
    dask; a worker must not import it on its loop), once ``ready()`` (polled every 0.1 s:
    a starting worker process imports dask only after registering); not ``enabled``, the
    thread ends there and the history stays empty. ``lock``, when given, is held while
    ``settings`` runs (a worker's import lock). :meth:`close` stops the thread and waits
    for it.
    """

    def __init__(self, pick: Pick, busy: Callable[[], bool] = lambda: True,
                 settings: Callable[[], Settings] = settings_from_config, *,
                 name: str = "shoal-profile", lock: Any = None,
                 ready: Callable[[], bool] = lambda: True, max_nodes: int = MAX_NODES) -> None:
        self._pick = pick
        self._busy = busy
        self._settings = settings
        self._import_lock = lock
        self._ready = ready
        self._max_nodes = max_nodes
        self._lock = threading.Lock()  # guards the history and the current cycle
        self._history: collections.deque[trees.Cycle] = collections.deque(maxlen=MAX_CYCLES)
        self._history_nodes = 0
        self._recent: dict[str, dict[str, Any]] = {}
        self._recent_begin = time.time()
        self._stop = threading.Event()
        self.settings: Settings | None = None  # known once the thread has read them
        self.samples = 0  # stacks counted so far (for tests and statistics)
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    @property
    def off(self) -> bool:
        """Disabled by its settings (False until they are read, at once when started)."""
        return self.settings is not None and not self.settings.enabled

    def close(self, timeout: float = 5.0) -> None:
        """Stop sampling and wait (at most ``timeout`` s: one sample takes microseconds)
        for the thread to end."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _main(self) -> None:
        while not self._ready():
            if self._stop.wait(0.1):  # ends: ready, or close()
                return
        try:
            if self._import_lock is not None:
                with self._import_lock:
                    settings = self._settings()
            else:
                settings = self._settings()
        except Exception:  # a bad config value: say so, and do not profile
            logger.exception("profiler disabled: could not read its settings")
            return
        self.settings = settings
        if not settings.enabled:
            return
        interval, cycle = settings.interval, settings.cycle
        # Idle for a cycle: look ten times less often (a task starting then loses at most
        # its first tenth of a cycle of samples), so an idle worker costs ~1 wake-up in 10.
        idle_after = max(1, round(cycle / interval))
        idle_interval = min(10 * interval, cycle)
        stopped, wait, sleep = self._stop.is_set, self._stop.wait, time.sleep
        busy, sample = self._busy, self._sample
        with self._lock:
            self._recent_begin = time.time()
        failures = idle = 0
        while True:  # ends: close() (at most one interval later while sampling)
            # A plain sleep costs a third less CPU per wake-up than an Event's wait (its
            # lock and condition): measured 62 vs 83 µs on the 2-core VM, at 100 a second.
            if idle < idle_after:
                sleep(interval)
                if stopped():
                    return
            elif wait(idle_interval):
                return
            now = time.time()
            if now - self._recent_begin >= cycle:
                self._file_cycle(now)
            try:
                if busy():
                    idle = 0
                    sample()
                else:
                    idle += 1
            except Exception:  # a frame in a state not foreseen: skip that sample only
                failures += 1
                if failures == 1:
                    logger.exception("profiler: one sample failed; sampling on (logged once)")

    def _sample(self) -> None:
        picked = self._pick(sys._current_frames())
        if not picked:
            return
        with self._lock:
            recent = self._recent
            for group, stack in picked:
                tree = recent.get(group)
                if tree is None:
                    tree = recent[group] = trees.new()
                trees.add_stack(tree, stack)
            self.samples += len(picked)

    def _file_cycle(self, now: float) -> None:
        with self._lock:
            if self._recent:
                groups = self._recent
                nodes = trees.cycles_size(groups)
                history = self._history
                if len(history) == history.maxlen:
                    self._history_nodes -= trees.cycles_size(history[0][2])
                history.append((self._recent_begin, now, groups))
                self._history_nodes += nodes
                while self._history_nodes > self._max_nodes and len(history) > 1:
                    self._history_nodes -= trees.cycles_size(history.popleft()[2])
                self._recent = {}
            self._recent_begin = now

    def profile(self, start: float | None = None, stop: float | None = None,
                key: str | None = None) -> dict[str, Any]:
        """The merged tree of the samples between ``start`` and ``stop`` (times as
        ``time.time()``; open when None), of the key prefix ``key`` only when given."""
        with self._lock:
            cycles = list(self._history)
            cycles.append((self._recent_begin, time.time(), self._recent))
            return trees.select(cycles, start, stop, key)


# --- what a worker and a server sample --------------------------------------------------------


def task_threads(executor_of: Callable[[], Any]) -> Pick:
    """The stacks of the tasks the executor ``executor_of()`` runs, below the executor's
    own frames, grouped by key prefix.

    Only its task threads are walked: a thread is looked at once (is it running the
    executor's thread loop?) and remembered, so the event loop's deep stack and other
    threads cost nothing per sample."""
    from shoal.scheduler._state_base import key_prefix
    from shoal.worker._execute import Executor

    execute = Executor._execute.__code__
    run = Executor._run.__code__
    prefixes: dict[Any, str] = {}  # the last keys seen (a task is sampled many times)
    kinds: dict[int, Any] = {}  # thread id -> the executor whose task thread it is, or None
    idents: set[int] = set()
    task_idents: set[int] = set()  # of threads named as the executor names its threads

    def executor_of_thread(frame: FrameType) -> Any:
        walk: FrameType | None = frame
        while walk is not None:
            if walk.f_code is run:
                return walk.f_locals.get("self")
            walk = walk.f_back
        return None

    def pick(frames: dict[int, FrameType]) -> list[Sample]:
        executor = executor_of()
        if frames.keys() != idents:  # threads came or went: forget those gone
            for gone in idents - frames.keys():
                kinds.pop(gone, None)
            idents.clear()
            idents.update(frames)
            task_idents.clear()
            task_idents.update(t.ident for t in threading.enumerate()
                               if t.name.startswith("shoal-task-") and t.ident is not None)
        out: list[Sample] = []
        for ident, frame in frames.items():
            if ident not in kinds:
                if ident not in task_idents:
                    kinds[ident] = None
                else:  # a task thread just started is not in its loop yet: look again later
                    owner = executor_of_thread(frame)
                    if owner is None:
                        continue
                    kinds[ident] = owner
            if kinds[ident] is not executor:
                continue  # not a task thread, or another worker's (several in one process)
            below: list[FrameType] = []
            walk: FrameType | None = frame
            while walk is not None and walk.f_code is not execute:
                below.append(walk)
                walk = walk.f_back
            if walk is None or not below:
                continue  # between two tasks
            cmd = walk.f_locals.get("cmd")
            if cmd is None:
                continue
            key = cmd.key
            prefix = prefixes.get(key)
            if prefix is None:
                if len(prefixes) > 1000:
                    prefixes.clear()
                prefix = prefixes[key] = key_prefix(key)
            below.reverse()
            out.append((prefix, [(f.f_code.co_name, f.f_code.co_filename, f.f_code.co_firstlineno,
                                  f.f_lineno or f.f_code.co_firstlineno) for f in below]))
        return out

    return pick


def loop_thread() -> Pick:
    """The stack of the calling thread, which must be a server's event loop thread (call
    it from a coroutine), left out while the loop waits for I/O: the profile shows the
    loop's work, not its idling.

    Waiting shows as the innermost frame in ``selectors`` (asyncio's loop), or as the
    frame outside the calling coroutine's stack (uvloop: its loop is C code, so from the
    sampler's side an idle loop's innermost Python frame is the one that started it)."""
    ident = threading.get_ident()
    frame: FrameType | None = sys._getframe()
    base: CodeType | None = None
    while frame is not None:  # the frame just outside the outermost coroutine frame
        if frame.f_code.co_flags & inspect.CO_COROUTINE:
            base = frame.f_back.f_code if frame.f_back is not None else None
        frame = frame.f_back

    def pick(frames: dict[int, FrameType]) -> list[Sample]:
        frame = frames.get(ident)
        if (frame is None or frame.f_code is base
                or frame.f_code.co_filename.endswith("selectors.py")):
            return []
        return [("", stack_below(frame, None))]

    return pick


loop_settings = functools.partial(settings_from_config, event_loop=True)
