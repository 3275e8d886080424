"""Scheduler events (facts that happened) and commands (orders for the I/O shell).

Every event that depends on time carries ``now``: the state machine never reads a clock.

The few built once or more per task are plain slotted dataclasses rather than frozen ones: a
frozen dataclass sets each field through ``object.__setattr__``, 3-5x slower to build.
Nobody mutates them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from shoal._machine import Command, Event
from shoal.protocol._serialize import Serialized

Key = Any

# A task row as the client submits it:
# (key, payload | None, dependencies, fids, priority, retries, workers | None, prefix)
TaskRow = tuple[Any, ...]


# --- events -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientJoined(Event):
    """A client's session began: ``client`` is the session's name (``<id>-<n>``, a new one
    per connection), ``id`` the client's own (``Client.id``; empty: the same as ``client``),
    which dask's events name it by (its topic, and their ``"client"``)."""

    client: str
    id: str = ""


@dataclass(frozen=True, slots=True)
class ClientLeft(Event):
    client: str


@dataclass(slots=True)  # not frozen: built per submission (a round trip's one task too)
class GraphSubmitted(Event):
    client: str
    tasks: list[TaskRow]
    wanted: list[Key]
    actors: list[Key] = field(default_factory=list)  # keys among ``tasks`` that are actors
    # Per key, only for tasks that have them: (resources or None, allow_other_workers).
    restrictions: dict[Key, tuple[dict[str, float] | None, bool]] = field(default_factory=dict)
    # ``stream`` > 0: a piece of this client's graph number ``stream``, sent in pieces.
    # ``more``: not its last piece: its tasks are kept (they run meanwhile) until the last
    # piece has arrived. A whole graph (stream 0) ends no stream's hold.
    more: bool = False
    stream: int = 0
    # With ``more``: the piece's keys that its graph's later pieces use, the only ones kept
    # for them (None: all its keys not in ``wanted``, as when a client cannot tell).
    held: list[Key] | None = None


@dataclass(frozen=True, slots=True)
class SpanSubmitted(Event):
    """``keys`` were submitted in the span ``ids[-1]`` (``SpanTasks``)."""

    names: tuple[str, ...]
    ids: tuple[str, ...]
    keys: list[Key]


@dataclass(frozen=True, slots=True)
class KeysReleased(Event):
    client: str
    keys: list[Key]


@dataclass(frozen=True, slots=True)
class KeysCancelled(Event):
    """``client`` drops its interest in ``keys``; with ``force``, every client's."""

    client: str
    keys: list[Key]
    force: bool = False


@dataclass(frozen=True, slots=True)
class KeysRetried(Event):
    client: str
    keys: list[Key]


@dataclass(frozen=True, slots=True)
class DataScattered(Event):
    """The client hands over data; the state decides where it goes (``Store`` commands)."""

    client: str
    items: list[tuple[Key, int, str]]  # (key, nbytes, typename)
    workers: list[str | int] | None
    broadcast: bool


@dataclass(frozen=True, slots=True)
class ScatterAcked(Event):
    """``worker`` holds scattered ``key`` now, or (``error`` set) could not load it."""

    worker: str
    key: Key
    error: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class WorkerJoined(Event):
    address: str
    name: Any  # str, bytes, bool, int, float or a tuple of them (protocol/_wire_checks)
    nthreads: int
    memory_limit: int
    pid: int
    host: str
    now: float
    resources: dict[str, float] | None = None  # abstract resources it offers ({"GPU": 2})


@dataclass(frozen=True, slots=True)
class WorkerLeft(Event):
    address: str
    reason: str
    now: float


@dataclass(frozen=True, slots=True)
class WorkerRetiring(Event):
    """The worker is closing on purpose: nothing it ran counts against its tasks."""

    address: str
    reason: str


@dataclass(frozen=True, slots=True)
class ExecutionStarted(Event):
    """The worker's threads began running ``keys`` (reported in batches, late is fine)."""

    worker: str
    keys: list[Key]
    runs: list[int]  # per key: which assignment started (``SendCompute.run``)


@dataclass(slots=True)  # not frozen: built per task (see the header)
class TaskFinished(Event):
    worker: str
    key: Key
    nbytes: int
    typename: str
    start: float
    stop: float
    thread: int
    inline: Serialized | None
    run: int  # which assignment of the key this answers (``SendCompute.run``)
    dropped: tuple[Key, ...] = ()  # inputs the worker dropped as the task ended (``drop``)
    pickled_type: bytes | None = None  # (``TaskDone``'s: forwarded to the wanting clients)


@dataclass(slots=True)  # not frozen: built per batch of results
class TasksFinished(Event):
    """Several :class:`TaskFinished` of one worker as columns (its ``TasksDone``), row
    ``i`` of each for ``keys[i]``, in the order the worker reported them. Handled exactly
    as those events one after the other, without an event object per task."""

    worker: str
    keys: Sequence[Key]
    nbytes: Sequence[int]
    typenames: Sequence[str]
    starts: Sequence[float]
    stops: Sequence[float]
    threads: Sequence[int]
    inlines: Sequence[Serialized | None]
    runs: Sequence[int]
    dropped: Sequence[tuple[Key, ...]]
    pickled_types: Sequence[bytes | None]

    def rows(self) -> list[TaskFinished]:
        """The same reports, one event each."""
        return [TaskFinished(self.worker, *row) for row in zip(
            self.keys, self.nbytes, self.typenames, self.starts, self.stops, self.threads,
            self.inlines, self.runs, [tuple(d) for d in self.dropped], self.pickled_types,
            strict=True)]


@dataclass(frozen=True, slots=True)
class TaskFailed(Event):
    worker: str
    key: Key
    error: dict[str, Any]
    start: float
    stop: float
    thread: int
    run: int  # which assignment of the key this answers (``SendCompute.run``)


@dataclass(frozen=True, slots=True)
class RescheduleAsked(Event):
    """The task raised ``Reschedule`` on ``worker``: place it again (no retry used)."""

    worker: str
    key: Key
    run: int  # the assignment this answers (see TaskFinished)


@dataclass(frozen=True, slots=True)
class DataMissing(Event):
    worker: str
    key: Key
    holder: str
    for_key: Key


@dataclass(frozen=True, slots=True)
class TransferDone(Event):
    worker: str
    keys: list[Key]
    peer: str
    nbytes: int
    start: float
    stop: float


@dataclass(frozen=True, slots=True)
class HeartbeatReceived(Event):
    worker: str
    memory_process: int
    memory_managed: int
    cpu: float
    executing: int
    now: float
    memory_spilled: int = 0  # the spilled values' size in memory
    memory_spilled_disk: int = 0  # the bytes their spill files take


@dataclass(frozen=True, slots=True)
class WorkerMemoryKilled(Event):
    """The worker's last words: its nanny is killing it for memory (its process took
    ``process`` bytes, past ``fraction`` of its ``limit``). Its loss follows; tasks that
    then fail with KilledWorker say so."""

    worker: str
    process: int
    limit: int
    fraction: float


@dataclass(frozen=True, slots=True)
class WorkResumed(Event):
    """The shell's answer to :class:`ContinueWork`, on a later step of its loop: do the
    next bounded part of the work left over."""


@dataclass(frozen=True, slots=True)
class Tick(Event):
    """Time passed; workers silent for longer than ``worker_ttl`` are considered lost."""

    now: float


@dataclass(frozen=True, slots=True)
class WorkerPaused(Event):
    """``worker``'s memory passed its pause threshold (``paused``) or fell back below it:
    no work is placed there meanwhile; its queued tasks may be stolen."""

    worker: str
    paused: bool


@dataclass(frozen=True, slots=True)
class Seceded(Event):
    """A task running on ``worker`` left its thread slot (``secede()``): it stays assigned
    there but no longer counts as busy. ``duration``: seconds it computed before that."""

    worker: str
    key: Key
    duration: float
    run: int  # which assignment of the key seceded (``SendCompute.run``)


@dataclass(frozen=True, slots=True)
class FireAndForgetAsked(Event):
    """Hold ``keys`` (and so their inputs) until each has finished, wanted or not."""

    keys: list[Key]


@dataclass(frozen=True, slots=True)
class ClusterReset(Event):
    """``client.restart()``: every task is forgotten and every worker dropped (fresh ones
    register afterwards); every client is told, once."""

    reason: str


@dataclass(frozen=True, slots=True)
class ForgetWatched(Event):
    """Say (:class:`WatchedKeysForgotten`) when a task of one of ``keys`` is forgotten: a
    feature beside the core keeps something per task key (``set_metadata``) until then."""

    keys: list[Key]


@dataclass(frozen=True, slots=True)
class DataCopied(Event):
    """``worker`` now holds copies of these keys (moved off a retiring worker)."""

    worker: str
    items: list[tuple[Key, int]]  # (key, nbytes)


@dataclass(frozen=True, slots=True)
class ReplicasAdded(Event):
    """``worker`` confirmed it now holds copies of ``keys`` (``replicate``/``rebalance``)."""

    worker: str
    keys: list[Key]


@dataclass(frozen=True, slots=True)
class ReplicasWanted(Event):
    """A user asked for ``n`` copies of each of ``keys`` (``replicate``, a broadcast
    ``scatter``): the active memory manager keeps that many; ``n`` of 1 or less withdraws
    the wish. The wish goes when the key leaves memory."""

    keys: list[Key]
    n: int


@dataclass(frozen=True, slots=True)
class ReplicasDropped(Event):
    """Asked (``replicate``/``rebalance``): ``worker`` is to forget its copies of ``keys``;
    the last copy of a key is never dropped."""

    worker: str
    keys: list[Key]


# --- commands -------------------------------------------------------------------------------


@dataclass(slots=True)  # not frozen: built per task (see the header)
class SendCompute(Command):
    worker: str
    key: Key
    payload: Serialized
    deps: list[tuple[Key, list[str], int]]
    fids: tuple[str, ...]
    priority: Any
    send_inline: bool
    prefix: str
    run: int  # this assignment's number, echoed in the worker's reports
    drop: tuple[Key, ...] = ()  # inputs on the worker this task reads last (``Compute.drop``)


@dataclass(frozen=True, slots=True)
class SendFree(Command):
    worker: str
    keys: list[Key]


@dataclass(frozen=True, slots=True)
class SendStore(Command):
    worker: str
    key: Key


@dataclass(frozen=True, slots=True)
class DropScattered(Command):
    """No worker will be sent these scattered keys any more: forget their bytes."""

    keys: list[Key]


@dataclass(frozen=True, slots=True)
class WatchedKeysForgotten(Command):
    """Tasks of these watched keys (:class:`ForgetWatched`) were forgotten; each key is
    watched no more."""

    keys: list[Key]


@dataclass(frozen=True, slots=True)
class ForgetFunctions(Command):
    """No task has used these function ids for a while: drop their blobs everywhere."""

    fids: list[str]


@dataclass(slots=True)  # not frozen: built per task (see the header)
class ReportDone(Command):
    client: str
    key: Key
    nbytes: int
    typename: str
    inline: Serialized | None
    pickled_type: bytes | None = None


@dataclass(frozen=True, slots=True)
class ReportErred(Command):
    client: str
    key: Key
    error: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ReportCancelled(Command):
    client: str
    key: Key
    reason: str


@dataclass(frozen=True, slots=True)
class LogEvent(Command):
    """Log ``msg`` under each of ``topics`` (dask's ``Scheduler.log_event``: workers and
    clients coming and going, in dask's message shapes)."""

    topics: list[str]
    msg: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CloseWorker(Command):
    worker: str
    reason: str


@dataclass(frozen=True, slots=True)
class ReportRestarted(Command):
    client: str
    reason: str


@dataclass(frozen=True, slots=True)
class ContinueWork(Command):
    """Work is left over (a long walk cut into bounded steps): hand back
    :class:`WorkResumed` on a later step of the loop, after what is waiting now."""
