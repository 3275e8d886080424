# mypy: disable-error-code="empty-body"
# (StateBase's method declarations below have no bodies: each is defined in one mixin)
"""What every part of :class:`~shoal.scheduler._state.SchedulerState` shares: the task
states, a few constants, and :class:`StateBase`, which declares the state's attributes and
the methods one part calls on another, with their types.

``SchedulerState`` is one object assembled from mixins, one per concern: ``_transitions``
(moves between states), ``_dispatch`` (placement, queues, stealing), and the event handlers
``_client_handlers``, ``_scatter_handlers``, ``_worker_handlers`` and ``_report_handlers``.
Each mixin derives from :class:`StateBase` so that mypy checks it on its own; the attributes
are set in ``SchedulerState.__init__``.

The mixins and ``StateBase`` are mypyc traits (``@trait``): in the optional compiled build
(README, "Compiled scheduler") a native class may inherit from one other native class and
any number of traits. In pure Python ``trait`` returns the class unchanged.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from mypy_extensions import trait

from shoal.scheduler._events import Command
from shoal.scheduler._functions import FunctionRefs
from shoal.scheduler._room import RoomIndex
from shoal.scheduler._spans import SpansBook
from shoal.scheduler._task_shards import Tasks
from shoal.scheduler._tasks import Key, TaskState, WorkerState

if TYPE_CHECKING:
    from shoal.scheduler._scatter_handlers import _Storing

ACTIVE = frozenset({"waiting", "queued", "no-worker", "processing"})
STATES = (
    "released", "waiting", "queued", "no-worker", "processing", "memory", "erred", "scattering",
)
# The pseudo-client that wants fire-and-forget keys until they finish (dask's name for it).
FIRE_AND_FORGET = "fire-and-forget"


def ingest_holder(client: str) -> str:
    """The pseudo-client that keeps the tasks of ``client``'s graph arriving in pieces
    that a later piece uses (``GraphSubmitted.held``; all of them when not named) until
    its last piece is in."""
    return f"{client} (graph arriving)"


def key_prefix(key: Key) -> str:
    """``('sum-abc123', 0)`` → ``'sum'``; ``'inc-9f2e...'`` → ``'inc'``."""
    name = key[0] if isinstance(key, tuple) and key else key
    words = str(name).split("-")
    # The first word, then the words that follow while they are words (dask's rule): a
    # token or uuid (``inc-270f4f78-3002-...``, hex and digits) ends the name.
    out = words[0]
    for word in words[1:]:
        if not word.isalpha() or (len(word) == 8 and all(c in "abcdef" for c in word)):
            break
        out += "-" + word
    return out or "task"


def task_group(ts: TaskState) -> Any:
    """The task group of ``ts`` (dask's ``TaskGroup``, ``key_split_group``): a tuple key's
    name (``('sum-abc123', 0)`` -> ``'sum-abc123'``, one group per layer of a collection),
    else its prefix. Derived from the key, so a task keeps no field for it; ``_set``
    repeats this test inline (it runs on every move)."""
    key = ts.key
    return key[0] if type(key) is tuple and key else ts.prefix


def prefix_counts(state: Any) -> dict[str, dict[str, int]]:
    """Counts by state per task prefix, summed over the prefix's groups (the state keeps
    counts per group only, so a move updates one row): O(groups), for views and periodic
    checks, never for the per-task path."""
    out: dict[str, dict[str, int]] = {}
    prefixes = state.group_prefix
    for group, counts in state.group_counts.items():
        prefix = prefixes[group]
        total = out.get(prefix)
        if total is None:
            out[prefix] = dict(counts)
        else:
            for name, n in counts.items():
                total[name] += n
    return out


# Events whose stimulus dask names otherwise than by their kind: a graph's moves carry the
# stimulus id its ``update_graph`` plugin hook and "update-graph" event are given.
_DASK_CAUSES = {"GraphSubmitted": "update-graph"}


def stimulus_id(cause: str, now: float) -> str:
    """dask's name for what made a transition: the event's kind and when it arrived
    (``"task-finished-1796232193.38"``), from a story row's cause and time."""
    return f"{_DASK_CAUSES.get(cause) or _kebab(cause)}-{now}"


def _kebab(name: str) -> str:
    """``"TaskFinished"`` -> ``"task-finished"``."""
    return "".join("-" + c.lower() if c.isupper() and i else c.lower()
                   for i, c in enumerate(name))


@trait
class StateBase:
    """The attributes of the scheduler state (set in ``SchedulerState.__init__``) and the
    methods the parts call across modules. Declarations only: no behaviour lives here."""

    tasks: Tasks  # a plain dict, or shards past a few hundred thousand (``_task_shards``)
    spans: SpansBook  # the ``span`` blocks' records (``_spans.py``)
    workers: dict[str, WorkerState]
    clients: dict[str, set[TaskState]]
    allowed_failures: int
    worker_ttl: float
    bandwidth: float
    _queue: list[tuple[Any, ...]]
    _packed_priorities: bool  # every TaskState.prio is a packed int (see _prio_of)
    _seq: itertools.count[int]
    _runs: itertools.count[int]
    # no-worker tasks, with the Tick time each was first seen there (None until a Tick)
    _no_worker: dict[TaskState, float | None]
    no_workers_timeout: float | None  # dask's distributed.scheduler.no-workers-timeout
    _no_workers_since: float | None  # Tick time since which tasks wait with no running worker
    _actors: set[TaskState]
    _went_idle: set[WorkerState]
    work_stealing: bool
    _no_victims: bool
    _paused: set[WorkerState]
    _freed: set[WorkerState]
    _room: RoomIndex
    _storing: dict[Key, _Storing]
    _undone: dict[tuple[Key, str], int]
    functions: FunctionRefs
    _durations: dict[str, float]
    _outlying: dict[str, float]
    unknown_duration: float
    group_counts: dict[Any, dict[str, int]]
    group_prefix: dict[Any, str]
    erred_tasks: deque[tuple[Key, dict[str, Any]]]
    task_stream: deque[tuple[Any, ...]]
    task_stream_total: int
    completed_total: int
    _log: deque[tuple[Any, ...]]
    _joined: dict[str, str]  # clients that joined (ClientJoined), not pseudo-clients: their ids
    _out: list[Command]
    _fired_done: list[TaskState]
    _forget_watch: set[Key]  # ForgetWatched keys, until a task of theirs is forgotten
    _cause: str
    _now: float
    _wanting: dict[str, frozenset[str]]  # one shared ``who_wants`` per client wanting alone
    # (client, stream) -> the hold of a graph that client is sending in pieces
    _arriving: dict[tuple[str, int], str]
    _full_holds: dict[tuple[str, int], list[str]]  # ... and its earlier holds, full
    _ending: dict[str, None]  # holds of graphs fully arrived, being let go of in steps
    _tidying: list[TaskState]  # what ``_tidy`` has still to look at (bounded steps)
    _tidy_budget: int  # tasks ``_tidy`` may still look at in this ``handle`` call
    _resuming: bool  # a ContinueWork is out: WorkResumed will come
    # While ``_tidy`` runs: worker address -> the keys list of the one SendFree it gets
    # for the whole cascade (None otherwise: a SendFree per release).
    _frees: dict[str, list[Key]] | None
    replicated_tasks: set[TaskState]
    replicas_wanted: dict[TaskState, int]

    # Defined once each, in the module named; declared here so mypy checks the callers (not
    # under ``if TYPE_CHECKING``: mypyc takes no ``if`` in a class body). Each is overridden
    # in SchedulerState's MRO, so these bodies never run.

    # _state
    def story(self, key: Key) -> list[tuple[Any, ...]]: ...
    def stimulus_story(self, stimulus: str) -> list[tuple[Any, ...]]: ...

    # _transitions
    def _go(self, ts: TaskState, finish: str, **kwargs: Any) -> None: ...
    # Moves called directly by hot callers that just checked the start state.
    def _waiting_queued(self, ts: TaskState, push: bool = True) -> None: ...
    def _queued_processing(self, ts: TaskState, worker: WorkerState) -> None: ...
    def _processing_memory(
        self, ts: TaskState, worker: WorkerState, nbytes: int, typename: str) -> None: ...
    def _activate(self, roots: Iterable[TaskState]) -> None: ...
    def _prio_of(self, priority: Any) -> Any: ...
    def count_new(self, ts: TaskState) -> None: ...
    def _err(self, ts: TaskState, error: dict[str, Any], tell_worker: bool = True) -> None: ...
    def _needed(self, ts: TaskState) -> bool: ...
    def _want(self, ts: TaskState, client: str) -> None: ...
    def _unwant(self, ts: TaskState, client: str) -> None: ...
    def _tidy(self, candidates: Iterable[TaskState]) -> None: ...
    def _resume_later(self) -> None: ...
    def _lost_error(self, ts: TaskState) -> dict[str, Any]: ...
    def _killed_error(self, ts: TaskState,
                      memory: tuple[int, int, float] | None = None) -> dict[str, Any]: ...

    # _dispatch
    def _ready(self, ts: TaskState) -> None: ...
    def _unhold(self, ts: TaskState) -> None: ...
    def _estimate(self, prefix: str) -> float: ...
    def _measured(self, prefix: str, duration: float) -> None: ...
    @staticmethod
    def _compact_held(ws: WorkerState) -> None: ...

    # _client_handlers
    def _unfire(self, ts: TaskState) -> None: ...

    # _scatter_handlers
    def _scatters_lost_with(self, address: str, crashed: bool, memory_limit: int) -> None: ...
    def _abandon_scatter(self, key: Key) -> None: ...
    def _owe(self, key: Key, address: str) -> None: ...
    def _settle_scatter(self, key: Key, pending: _Storing) -> None: ...

    # _report_handlers
    def _track_copies(self, ts: TaskState) -> None: ...
