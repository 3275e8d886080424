"""What the scheduler knows about one task and one worker. Plain records, no behaviour
beyond small derived views."""

from __future__ import annotations

from collections.abc import Iterable, MutableSet
from typing import Any

from shoal.protocol._serialize import Serialized, call_head

Key = Any

# Most tasks never fill some of their sets (no inputs, no dependents, no second holder):
# until the first element arrives they share this one empty frozenset, since an empty set
# costs 216 bytes and a million-task graph would carry five per task. Code that adds to
# one of them replaces it first when it is empty (``if s: s.add(x) else: ts.s = {x}``);
# nothing may call ``discard``/``add`` on it while it is empty.
EMPTY: Any = frozenset()

# queue_key's layout (see _transitions.queue_key): the first item (biased) in 12 bits,
# then 26 and 22 bits for the next two (each stored + 1, so that a missing item, 0, sorts
# first): 60 bits, an int of two digits (32 bytes, as small as an int past 2**30 gets).
_A_BIAS, _B_SLOT, _C_SLOT = 1 << 11, 1 << 26, 1 << 22


def unpack_priority(packed: int) -> tuple[int, ...]:
    """The priority tuple that ``queue_key`` packed into ``packed``."""
    c = packed & (_C_SLOT - 1)
    rest = packed >> 22
    b = rest & (_B_SLOT - 1)
    a = (rest >> 26) - _A_BIAS
    if c:
        return (a, b - 1, c - 1)
    return (a, b - 1) if b else (a,)


_PACKED_ZERO = _A_BIAS * _B_SLOT * _C_SLOT  # (0,), a task's priority until it has one


class TaskState:
    """One task on the scheduler. ``state`` is one of
    released, waiting, queued, no-worker, processing, memory, erred, forgotten."""

    __slots__ = (
        "dependencies",
        "dependents",
        "est",
        "fids",
        "key",
        "nbytes",
        "payload",
        "prefix",
        "prio",
        "processing_on",
        "rare",
        "run",
        "started",
        "state",
        "typename",
        "waiting_on",
        "who_has",
        "who_wants",
    )

    def __init__(self, key: Key, prefix: str) -> None:
        self.key = key
        self.prefix = prefix
        self.state = "released"
        # What the worker calls: a one-frame payload is kept as its bytes alone (88 bytes
        # less per held task than the Serialized around it), and without the call's
        # constant head when it has one (``_CUT``: 56 bytes less for ``noop(i)``);
        # ``payload_of`` rebuilds it.
        self.payload: Serialized | bytes | None = None
        self.fids: tuple[str, ...] = ()
        # Fixed once the graph is in (a tuple: 56 bytes for two inputs, a set 216).
        self.dependencies: tuple[TaskState, ...] = ()
        # A tuple while short (most tasks feed one or two others: 56 bytes, not a 216-byte
        # set), a set past ``_FEW`` (a task feeding thousands); see ``add_dependent``.
        self.dependents: tuple[TaskState, ...] | set[TaskState] = ()
        # MutableSet, not set: it is EMPTY (a frozenset) while empty, which compiled code
        # (mypyc, see README) would reject for an attribute declared a set.
        self.waiting_on: MutableSet[TaskState] = EMPTY
        # Immutable too (see ``hold``/``unhold``): most results live on one worker, and
        # tasks share that worker's one-element frozenset (``WorkerState.alone``).
        self.who_has: frozenset[WorkerState] = EMPTY
        # Immutable and shared: the clients that want a task are nearly always the same
        # one, so tasks share an interned frozenset per client (``StateBase._wanting``).
        self.who_wants: frozenset[str] = EMPTY
        self.processing_on: WorkerState | None = None
        # The number of its latest assignment to a worker (``SendCompute.run``, unique in
        # the scheduler's life): a worker's report on it counts only if it echoes this.
        # 0 while it is not processing (no run is numbered 0).
        self.run = 0
        self.started = False  # its worker reported running it (not just holding it queued)
        # Its priority, compactly: while every priority the scheduler was given packs
        # (``SchedulerState._packed_priorities``), the one int ``queue_key`` makes of it
        # (32 bytes; the client's tuple and its order int cost 92), else the tuple.
        # Compare ``prio`` with ``prio``; read the tuple as ``priority``.
        self.prio: Any = _PACKED_ZERO
        self.nbytes = -1
        self.typename = ""
        self.est = 0.0
        # What few tasks have (restrictions, retries, an error, an actor's mark...): one
        # ``RareFields`` made on the first such write, None for the rest (seven slots, 56
        # bytes, saved per task). Read them as the properties below; hot paths test
        # ``rare is None`` once instead.
        self.rare: RareFields | None = None

    # --- the rarely set fields (see ``rare``): read the default while ``rare`` is None; a
    # write of the default makes no ``RareFields``.

    @property
    def actor(self) -> bool:
        """An actor: its result is a live object on one worker, which cannot be recomputed
        elsewhere; losing that worker errs it (as in dask.distributed)."""
        rare = self.rare
        return False if rare is None else rare.actor

    @actor.setter
    def actor(self, value: bool) -> None:
        if value or self.rare is not None:
            self._rare().actor = value

    @property
    def error(self) -> dict[str, Any] | None:
        """Its error, once erred (pickled exception, traceback, the key to blame)."""
        rare = self.rare
        return None if rare is None else rare.error

    @error.setter
    def error(self, value: dict[str, Any] | None) -> None:
        if value is not None or self.rare is not None:
            self._rare().error = value

    @property
    def held_on(self) -> WorkerState | None:
        """The worker whose scheduler-side queue holds this restricted task (queued)."""
        rare = self.rare
        return None if rare is None else rare.held_on

    @held_on.setter
    def held_on(self, value: WorkerState | None) -> None:
        if value is not None or self.rare is not None:
            self._rare().held_on = value

    @property
    def killed_on(self) -> tuple[str, ...]:
        """The workers that died while running it (a tuple, replaced when it grows);
        ``suspicious`` counts them."""
        rare = self.rare
        return () if rare is None else rare.killed_on

    @killed_on.setter
    def killed_on(self, value: tuple[str, ...]) -> None:
        if value or self.rare is not None:
            self._rare().killed_on = value

    @property
    def loose(self) -> bool:
        """``workers=`` is only a preference (dask's ``allow_other_workers``)."""
        rare = self.rare
        return False if rare is None else rare.loose

    @loose.setter
    def loose(self, value: bool) -> None:
        if value or self.rare is not None:
            self._rare().loose = value

    @property
    def recompute_on(self) -> str | None:
        """A worker that needs this key but could not fetch it from its holder: its
        recompute runs there, once, if allowed (see ``_dispatch._place_where_needed``)."""
        rare = self.rare
        return None if rare is None else rare.recompute_on

    @recompute_on.setter
    def recompute_on(self, value: str | None) -> None:
        if value is not None or self.rare is not None:
            self._rare().recompute_on = value

    @property
    def resources(self) -> dict[str, float] | None:
        """Abstract resources it holds on its worker while it runs ({"GPU": 1})."""
        rare = self.rare
        return None if rare is None else rare.resources

    @resources.setter
    def resources(self, value: dict[str, float] | None) -> None:
        if value is not None or self.rare is not None:
            self._rare().resources = value

    @property
    def retries(self) -> int:
        """How many more times it may be rerun after failing."""
        rare = self.rare
        return 0 if rare is None else rare.retries

    @retries.setter
    def retries(self, value: int) -> None:
        if value or self.rare is not None:
            self._rare().retries = value

    @property
    def workers(self) -> frozenset[str | int] | None:
        """The workers it may run on (``workers=``), or None for any."""
        rare = self.rare
        return None if rare is None else rare.workers

    @workers.setter
    def workers(self, value: frozenset[str | int] | None) -> None:
        if value is not None or self.rare is not None:
            self._rare().workers = value

    def _rare(self) -> RareFields:
        rare = self.rare
        if rare is None:
            rare = self.rare = RareFields()
        return rare

    @property
    def suspicious(self) -> int:
        """How many workers died while running this task (dask's ``suspicious``)."""
        return len(self.killed_on)

    @property
    def exception(self) -> BaseException | None:
        """The exception this task itself raised (rebuilt from its pickled form), or None.
        Tasks that failed because an input failed have ``exception_blame`` instead."""
        if self.error is None or self.error.get("key") != self.key:
            return None
        from shoal.protocol._errors import error_to_exception

        return error_to_exception(self.error)

    @property
    def exception_blame(self) -> Any:
        """The key of the task whose failure made this one fail, or None."""
        return None if self.error is None else self.error.get("key")

    @property
    def exception_text(self) -> str:
        return "" if self.error is None else str(self.error.get("message", ""))

    @property
    def traceback_text(self) -> str:
        return "" if self.error is None else str(self.error.get("tb_text", ""))

    def __repr__(self) -> str:
        return f"<TaskState {self.key!r} {self.state}>"

    @property
    def priority(self) -> Any:
        """Its priority as given (dask's tuple: ``(-priority, generation, order)``)."""
        prio = self.prio
        return unpack_priority(prio) if type(prio) is int else prio

    def __lt__(self, other: TaskState) -> bool:  # heap ties
        return bool(self.prio < other.prio)


# Hashed by identity, as the class already is in pure Python: said again for the compiled
# build (mypyc, see README), where a C class defining ``__lt__`` and no ``__hash__`` is
# unhashable. Set after the class so that hashing stays C-speed in both builds (a
# ``def __hash__`` would be a Python call per set operation here); ``setattr`` because mypy
# rejects assigning to a method.
setattr(TaskState, "__hash__", object.__hash__)  # noqa: B010


class RareFields:
    """The fields of a ``TaskState`` that most tasks leave at their defaults (see
    ``TaskState.rare``); the task's properties of the same names read and write them."""

    __slots__ = ("actor", "error", "held_on", "killed_on", "loose", "recompute_on", "resources",
                 "retries", "workers")

    def __init__(self) -> None:
        self.actor = False
        self.error: dict[str, Any] | None = None
        self.held_on: WorkerState | None = None
        self.killed_on: tuple[str, ...] = ()
        self.loose = False
        # A worker that needs this key but could not reach its last holder (a partition
        # between workers): the recompute runs there, once, if the key may run there.
        self.recompute_on: str | None = None
        self.resources: dict[str, float] | None = None
        self.retries = 0
        self.workers: frozenset[str | int] | None = None


# A kept payload starting with this byte is the rest of a call payload after its fid's
# ``call_head``. A pickle starts with PROTO (0x80), so whole payloads do not; one that does
# is kept as its ``Serialized`` (a bytes subclass as the mark would be a GC-tracked object
# of 16 bytes more per task).
_CUT = 0


def compact_payload(payload: Serialized | None, fids: tuple[str, ...]
                    ) -> Serialized | bytes | None:
    """``payload`` as a task calling ``fids`` keeps it (see ``TaskState.payload``)."""
    if payload is None:
        return None
    frames = payload.frames
    if len(frames) != 1 or type(frames[0]) is not bytes:
        return payload
    frame = frames[0]
    if len(fids) == 1:
        head = call_head(fids[0])
        if frame.startswith(head):
            cut = len(head)
            # (a small one sliced, which beats a memoryview's set-up; a big one not copied
            # twice)
            return b"\x00" + (frame[cut:] if len(frame) <= _SLICED else memoryview(frame)[cut:])
    return payload if frame and frame[0] == _CUT else frame


# Payloads up to this many bytes are cut and rebuilt by slicing (two small copies).
_SLICED = 1024


def payload_of(kept: Serialized | bytes, fids: tuple[str, ...]) -> Serialized:
    """The payload a task calling ``fids`` keeps, as a message carries it."""
    if isinstance(kept, Serialized):
        return kept
    if kept and kept[0] == _CUT:
        return Serialized((call_head(fids[0])
                           + (kept[1:] if len(kept) <= _SLICED else memoryview(kept)[1:]),))
    return Serialized((kept,))


_FEW = 8  # dependents kept in a tuple up to this many


def add_dependent(ts: TaskState, dependent: TaskState) -> None:
    """``dependent`` takes ``ts``'s result as an input."""
    deps = ts.dependents
    if type(deps) is tuple:
        if dependent not in deps:
            ts.dependents = (*deps, dependent) if len(deps) < _FEW else {*deps, dependent}
    else:
        deps.add(dependent)  # type: ignore[union-attr]


def drop_dependent(ts: TaskState, dependent: TaskState) -> None:
    """``dependent`` was forgotten: it no longer takes ``ts``'s result."""
    deps = ts.dependents
    if type(deps) is tuple:
        if dependent in deps:
            ts.dependents = tuple(d for d in deps if d is not dependent)
    else:
        deps.discard(dependent)  # type: ignore[union-attr]


def waits_again(lost: Iterable[TaskState]) -> None:
    """The keys ``lost`` are gone from memory: their waiting dependents wait on them again."""
    for ts in lost:
        for dts in ts.dependents:
            if dts.state == "waiting":
                if dts.waiting_on:
                    dts.waiting_on.add(ts)
                else:
                    dts.waiting_on = {ts}


def hold(ts: TaskState, ws: WorkerState) -> None:
    """``ws`` holds ``ts``'s result (``who_has`` is replaced, never changed in place)."""
    has = ts.who_has
    if not has:
        ts.who_has = ws.alone
    elif ws not in has:
        ts.who_has = has | ws.alone


def unhold(ts: TaskState, ws: WorkerState) -> None:
    """``ws`` no longer holds ``ts``'s result."""
    has = ts.who_has
    if ws in has:
        ts.who_has = EMPTY if len(has) == 1 else has - ws.alone


class WorkerState:
    __slots__ = (
        "address",
        "alone",
        "cpu",
        "executing",
        "fids",
        "free",
        "guessed",
        "has_what",
        "held",
        "held_live",
        "host",
        "last_seen",
        "long_running",
        "memory_killed",
        "memory_limit",
        "memory_managed",
        "memory_process",
        "memory_spilled",
        "memory_spilled_disk",
        "name",
        "nbytes",
        "nthreads",
        "occupancy",
        "paused",
        "pid",
        "processing",
        "ready",
        "resources",
        "started",
        "stealable",
    )

    def __init__(
        self, address: str, name: Any, nthreads: int, memory_limit: int, pid: int, host: str,
        now: float, resources: dict[str, float] | None = None,
    ) -> None:
        self.address = address
        self.name = name
        self.nthreads = max(1, nthreads)
        self.memory_limit = memory_limit
        self.pid = pid
        self.host = host
        self.processing: set[TaskState] = set()
        # Seceded tasks: still processing here, but their threads were given back.
        self.long_running: set[TaskState] = set()
        self.has_what: set[TaskState] = set()
        self.occupancy = 0.0
        # The part of occupancy that is guesses: per prefix never measured, the seconds its
        # tasks here were assigned (``unknown_duration`` each). Empty once all are measured.
        self.guessed: dict[str, float] = {}
        self.stealable = 0  # tasks in processing that any worker may run (no workers=)
        self.nbytes = 0
        self.fids: set[str] = set()
        self.last_seen = now
        self.started = now
        self.memory_process = 0
        self.memory_managed = 0
        self.memory_spilled = 0  # the spilled values' size in memory
        self.memory_spilled_disk = 0  # and the bytes of their files
        # (process, limit, fraction): its nanny is killing it for memory (its last words).
        self.memory_killed: tuple[int, int, float] | None = None
        self.paused = False  # memory past its pause threshold: nothing new is placed here
        self.cpu = 0.0
        self.executing = 0
        # It said it runs tasks (a start notice, empty once its background imports are
        # done): until then its queued tasks wait, and its death blames none of them.
        self.ready = False
        # Abstract resources it offers, and what of them its processing tasks leave free.
        self.resources: dict[str, float] = dict(resources or {})
        self.free: dict[str, float] = dict(self.resources)
        # Restricted tasks (workers=, resources=) waiting on the scheduler for room here:
        # a heap of (priority, seq, task); entries whose task moved on are skipped.
        self.held: list[tuple[Any, int, TaskState]] = []
        self.held_live = 0  # tasks in ``held`` still waiting for this worker
        self.alone: frozenset[WorkerState] = frozenset((self,))  # a who_has of just this one

    def __repr__(self) -> str:
        return f"<WorkerState {self.address} processing={len(self.processing)}>"

    def __lt__(self, other: WorkerState) -> bool:
        return self.address < other.address


setattr(WorkerState, "__hash__", object.__hash__)  # noqa: B010 (see TaskState's)


def unguess(ws: WorkerState, ts: TaskState) -> None:
    """``ts`` no longer counts in ``ws``'s occupancy: nor in its guessed part."""
    left = ws.guessed.get(ts.prefix)
    if left is None:
        return
    left -= ts.est
    if left > 1e-9:
        ws.guessed[ts.prefix] = left
    else:
        del ws.guessed[ts.prefix]
