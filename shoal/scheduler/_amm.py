"""The Active Memory Manager (dask's ``distributed.active_memory_manager``), pure: which
extra copies of in-memory keys to drop, and from which workers.

Owns: one pass at a time over the keys with more holders than wanted (the task state's
``replicated_tasks``), cut into bounded steps. The copies users asked for (``replicate``,
``scatter(broadcast=True)``) are the state's ``replicas_wanted``, and kept (dask's
``ReduceReplicas`` undoes them). Must not know: sockets, timers, config or the
clock (the shell, ``_amm_shell``, reads ``distributed.scheduler.active-memory-manager.*``
and runs a pass every ``interval``). It reads the task state through a :class:`View` and
changes nothing there but pruning ``replicated_tasks``: its ``DropReplicas`` orders become ``ReplicasDropped`` events of
``SchedulerState``, which takes the holder off ``who_has`` and tells the worker to free
its copy (the worker keeps a copy a task of its own still reads, until that task ends).

The policy is dask's ``ReduceReplicas``: a key keeps one copy (or as many as were asked
for), plus one per place where a dependent still to run will run; the copies to drop come
from paused or retiring workers first, then from the worker using the most memory. Never
dropped: the last copy, a copy on a worker where a dependent is processing, and the last
copy on a running worker (one neither paused nor retiring) while the others are on
paused or retiring workers, which may soon be gone.

Where copies come from in shoal: not from inputs fetched for a task (a worker drops those
once its last task reading them ends, so a persisted dataset read by many computations is
held once whether the AMM runs or not), but from ``DataCopied`` (copies of a retirement that
did not finish), and copies made on purpose. So by default the AMM rarely finds anything to
drop; it is there for dask's interface (``client.amm``, the config) and as a safety net.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from shoal.scheduler._tasks import Key, TaskState, WorkerState

# Work units per step: a key costs FULL plus one per dependent. A step holds the loop for
# about 12 ms (2,500 keys without dependents; measured: RESULTS.md), then the shell yields.
STEP = 25_000
FULL = 10

# dask's ``MemoryState`` measures the config may name; each maps to what shoal's scheduler
# knows of a worker (``_memory``).
MEASURES = frozenset({"managed", "managed_total", "optimistic", "process", "spilled",
                      "unmanaged", "unmanaged_old", "unmanaged_recent"})

REDUCE_REPLICAS = "ReduceReplicas"
# The policy classes the config may name for ReduceReplicas (dask's and shoal's spelling).
POLICY_NAMES = {
    "distributed.active_memory_manager.ReduceReplicas": REDUCE_REPLICAS,
    "shoal.ReduceReplicas": REDUCE_REPLICAS,
    "shoal.scheduler.ReduceReplicas": REDUCE_REPLICAS,
    REDUCE_REPLICAS: REDUCE_REPLICAS,
}

_PENDING = frozenset({"waiting", "queued", "no-worker"})


class View(NamedTuple):
    """What the AMM reads; ``SchedulerState`` provides all but ``retiring``. It changes
    nothing in them but one thing: it takes out of ``replicated_tasks`` a task it finds
    with no more holders than wanted, or out of memory (the state adds tasks there, and
    prunes on release and on drops; others, such as a worker leaving, are pruned here)."""

    replicated_tasks: set[TaskState]  # every in-memory task with more holders than wanted
    workers: dict[str, WorkerState]
    replicas_wanted: Mapping[TaskState, int] = MappingProxyType({})  # copies asked for
    retiring: frozenset[str] = frozenset()  # addresses the shell is retiring


# --- events ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PassAsked:
    """Start a pass over the copied keys (the timer, or ``client.amm.run_once()``); a pass
    already under way goes on instead."""


@dataclass(frozen=True, slots=True)
class StepAsked:
    """Go on with the pass (after ``ContinuePass``, on a later loop step)."""


Event = PassAsked | StepAsked


# --- commands --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DropReplicas:
    """Take ``worker``'s copies of ``keys`` off (a ``ReplicasDropped`` of the task state)."""

    worker: str
    keys: list[Key]


@dataclass(frozen=True, slots=True)
class ContinuePass:
    """Work is left in the pass: feed ``StepAsked`` on a later loop step."""


@dataclass(frozen=True, slots=True)
class PassDone:
    """The pass ended; it dropped ``dropped`` copies of ``keys`` keys in all."""

    keys: int
    dropped: int


Command = DropReplicas | ContinuePass | PassDone


@dataclass(slots=True)
class _Pass:
    todo: list[TaskState]  # replicated_tasks when the pass began
    keys: int = 0
    dropped: int = 0
    drops: dict[str, list[Key]] = field(default_factory=dict)


class ActiveMemoryManager:
    """The AMM's decisions. ``policies`` names the policies to run (only ``ReduceReplicas``
    exists); ``measure`` is one of :data:`MEASURES`.

    Raises:
        ValueError: an unknown measure or policy.
    """

    def __init__(self, policies: Iterable[str] = (REDUCE_REPLICAS,),
                 measure: str = "optimistic", step: int = STEP) -> None:
        if measure not in MEASURES:
            raise ValueError(f"distributed.scheduler.active-memory-manager.measure must be one "
                             f"of {', '.join(sorted(MEASURES))}; got {measure!r}")
        self.policies = tuple(policies)
        unknown = [p for p in self.policies if p != REDUCE_REPLICAS]
        if unknown:
            raise ValueError(f"unknown AMM policies {unknown}: shoal has only {REDUCE_REPLICAS}")
        self.measure = measure
        self.step = step
        self._pass: _Pass | None = None
        self.passes = 0  # passes finished (for tests and the logs)

    @property
    def passing(self) -> bool:
        """A pass is under way (it goes on at the next ``StepAsked``)."""
        return self._pass is not None

    def handle(self, view: View, *events: Event) -> list[Command]:
        out: list[Command] = []
        for ev in events:
            if isinstance(ev, PassAsked):
                if self._pass is None:  # a C-level copy; the rest is in steps
                    self._pass = _Pass(list(view.replicated_tasks))
                out.extend(self._step(view))
            elif isinstance(ev, StepAsked):
                if self._pass is not None:
                    out.extend(self._step(view))
            else:
                raise TypeError(f"the active memory manager got an unknown event {ev!r}")
        return out

    def abandon(self) -> None:
        """Drop the pass under way (after a failure in it); the next ``PassAsked`` starts
        afresh."""
        self._pass = None

    # --- one step of a pass ----------------------------------------------------------------

    def _step(self, view: View) -> list[Command]:
        """At most ``step`` work units of the pass: a key costs ``FULL`` plus one per
        dependent."""
        p = self._pass
        assert p is not None
        if REDUCE_REPLICAS not in self.policies:
            p.todo.clear()
        memory = {ws: _memory(ws, self.measure) for ws in view.workers.values()}
        budget = self.step
        todo = p.todo
        while todo and budget > 0:
            ts = todo.pop()
            budget -= FULL + len(ts.dependents)
            droppers = self._reduce(ts, view, memory)
            if droppers:
                p.keys += 1
                p.dropped += len(droppers)
                for ws in droppers:
                    p.drops.setdefault(ws.address, []).append(ts.key)
        out: list[Command] = [DropReplicas(w, keys) for w, keys in p.drops.items()]
        p.drops = {}
        if todo:
            out.append(ContinuePass())
        else:
            self._pass = None
            self.passes += 1
            out.append(PassDone(p.keys, p.dropped))
        return out

    def _reduce(self, ts: TaskState, view: View,
                memory: dict[WorkerState, int]) -> list[WorkerState]:
        """The holders of ``ts`` to drop their copy (ReduceReplicas' rules, see the module
        header); ``memory`` is lowered by each drop decided."""
        has = ts.who_has
        keep = view.replicas_wanted.get(ts, 1)
        if ts.state != "memory" or len(has) <= keep:
            view.replicated_tasks.discard(ts)  # lost its copies since (a worker left)
            return []
        if ts.rare is not None and ts.rare.actor:
            return []
        busy: set[WorkerState] = set()
        places: set[Any] = set()
        for d in ts.dependents:
            state = d.state
            if state == "processing":
                busy.add(d.processing_on)  # type: ignore[arg-type]
                places.add(d.processing_on)
            elif state in _PENDING:
                places.add(d)
        keep = max(keep, len(places))
        extra = len(has) - keep
        if extra <= 0:
            return []
        retiring = view.retiring
        running = {ws for ws in has if not ws.paused and ws.address not in retiring}
        # Paused or retiring workers first, then the most memory; address breaks ties.
        order = sorted((ws for ws in has if ws not in busy),
                       key=lambda ws: (ws in running, -memory.get(ws, 0), ws.address))
        running_left = len(running)
        out: list[WorkerState] = []
        nbytes = max(ts.nbytes, 0)
        for ws in order:
            if len(out) == extra:
                break
            if ws in running:
                if running_left <= 1:
                    continue  # the last copy on a running worker stays
                running_left -= 1
            out.append(ws)
            if ws in memory:
                memory[ws] -= nbytes
        return out

    def validate(self, view: View) -> None:
        """Check the AMM's invariants against ``view``; raises AssertionError."""
        if self._pass is not None:
            assert not self._pass.drops, "drops decided in a step were not handed out"
            assert self._pass.todo, "a pass with nothing left is still under way"
        for ts in view.replicated_tasks:  # pruned lazily: only out-of-date entries may lie
            assert ts.state != "memory" or ts.who_has, (ts.key, "in memory, no holder")


def _memory(ws: WorkerState, measure: str) -> int:
    """Worker memory by dask's measure names, from what the scheduler knows: its own
    count of the bytes of data held (``nbytes``, always current) for the managed and
    optimistic measures, the process size and spilled bytes from heartbeats."""
    if measure == "process":
        return ws.memory_process or ws.nbytes
    if measure == "spilled":
        return ws.memory_spilled
    if measure.startswith("unmanaged"):
        return max(ws.memory_process - ws.nbytes, 0)
    return ws.nbytes
