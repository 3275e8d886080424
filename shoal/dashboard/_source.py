"""The contract between the scheduler and the dashboard.

The dashboard owns nothing of the scheduler's: it reads cheap views that the scheduler's
I/O shell provides (the ``/system`` page measures the process itself, see ``_system``).
This module only declares their shapes; it must not import the scheduler (or anything else in
shoal) so that the views and tests can run against a fake source.

Every method is called on the scheduler's event-loop thread (the aiohttp handlers run on
that same loop), so implementations need no locking, but they must be fast: a snapshot is
O(workers + task prefixes), never O(tasks); the task graph is O(tasks) only up to a limit.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, TypedDict


class SchedulerInfo(TypedDict):
    """Identity and clock of the scheduler."""

    address: str  # e.g. "tcp://127.0.0.1:8786"
    started: float  # unix time the scheduler started
    now: float  # unix time the snapshot was taken (the browser aligns its clock to this)


class WorkerInfo(TypedDict):
    """One worker as the scheduler last heard of it."""

    address: str
    name: str
    nthreads: int
    memory_limit: int  # bytes; 0 means no limit
    memory_managed: int  # bytes of task results the worker holds
    memory_process: int  # RSS of the worker process, bytes (unmanaged = process - managed)
    memory_spilled: int  # bytes of task results spilled to disk (not in memory_managed)
    status: str  # "running", or "paused" (its memory passed the pause threshold)
    cpu: float  # percent of one core, may exceed 100 with several threads
    processing: int  # tasks assigned to the worker and not finished
    in_memory: int  # task results held by the worker
    last_seen: float  # unix time of the last heartbeat


class PrefixCounts(TypedDict):
    """How many tasks of one prefix (``key_split(key)``) are in each scheduler state."""

    released: int
    waiting: int
    queued: int
    processing: int
    memory: int
    erred: int
    no_worker: int  # counted in waiting too: no worker has the resources or name they need


class Totals(TypedDict):
    """Cluster-wide sums, precomputed by the scheduler."""

    tasks: int
    workers: int
    nthreads: int
    memory_limit: int
    memory_managed: int
    memory_process: int
    memory_spilled: int
    paused: int  # workers paused by memory


class Snapshot(TypedDict):
    """Everything ``/status``, ``/workers``, ``/info`` and ``/metrics`` show, aggregated."""

    scheduler: SchedulerInfo
    workers: list[WorkerInfo]
    prefixes: dict[str, PrefixCounts]
    totals: Totals
    tasks_per_second: float


class TaskStreamRecord(TypedDict):
    """One executed task or one transfer, as drawn on the task stream.

    ``thread`` is the index of the worker thread (0 .. nthreads-1) that ran a compute record;
    for a transfer it is the thread slot the receiving worker shows it on (0 is fine).
    """

    key: str
    prefix: str
    worker: str  # address of the worker that ran (or received) it
    thread: int
    start: float  # unix time
    stop: float  # unix time
    kind: Literal["compute", "transfer"]


class GraphDocument(TypedDict, total=False):
    """What ``/graph`` draws (see :meth:`DashboardSource.task_graph`)."""

    tasks: int  # tasks the scheduler holds
    limit: int  # the most it draws
    too_many: bool  # tasks (or edges) past the limit: only ``by_state`` is given
    by_state: dict[str, int]
    edge_count: int | None  # edges between the tasks (None: not counted, too many tasks)
    states: list[str]  # what a state code means
    layout: str  # names the structure below; pass it back as ``known``
    state: list[int]  # one state code per node
    nodes: list[str]  # keys; these four only when the structure is not ``known``
    prefix: list[int]  # per node, an index into ``prefixes``
    prefixes: list[str]
    edges: list[int]  # flat pairs: dependency index, dependent index
    rank: list[int]  # each node's place in priority order


STATES: tuple[str, ...] = ("released", "waiting", "queued", "processing", "memory", "erred")
"""The task states counted in :class:`PrefixCounts`, in display order."""


class DashboardSource(Protocol):
    """What the dashboard reads from the scheduler.

    Implemented by the scheduler's I/O shell; the dashboard never mutates anything through it.
    """

    def snapshot(self) -> Snapshot:
        """Return the current aggregated state.

        Cost must be O(workers + task prefixes), never O(tasks): it is polled about twice a
        second by every open browser tab.
        """
        ...

    def task_stream_since(
        self, cursor: int, limit: int | None = None
    ) -> tuple[int, list[TaskStreamRecord]]:
        """Return ``(new_cursor, records)``: the records produced after ``cursor``, oldest
        first, at most ``limit`` of them (a page: building records costs the scheduler's
        loop), and the cursor after the last one returned.

        A cursor counts records ever produced (the first record has index 0), so
        ``task_stream_since(0)`` returns everything still retained and the new cursor is the
        total number of records produced so far. The source keeps only a bounded number of
        recent records; older ones are silently gone. ``cursor=-1`` asks only for the current
        position and returns ``(current_cursor, [])``: ``performance_report`` uses it to start
        following "from now" without transferring history.
        """
        ...

    def task_graph(self, limit: int, known: str | None = None) -> GraphDocument:
        """The task graph for ``/graph``: every task's key, prefix and state, and the edges
        to its dependencies; only counts by state when it holds more than ``limit`` tasks.

        Called on the scheduler's loop; cost O(tasks + edges) up to ``limit``, O(prefixes)
        past it. ``known`` is the ``layout`` of an earlier answer: when the structure is
        unchanged, the answer carries states only.
        """
        ...

    def task_group_rows(self, limit: int) -> dict[str, Any]:
        """``/api/groups``: ``{"groups": how many, "limit": limit, "rows": [...]}``, the newest
        ``limit`` task groups first, each row ``{"name", "prefix"}`` plus its
        :class:`PrefixCounts`. Cost O(limit), never O(tasks) or O(groups)."""
        ...

    def erred_tasks(self, limit: int) -> dict[str, Any]:
        """``/api/exceptions``: ``{"count", "kept", "limit", "rows": [...]}``, the latest
        ``limit`` tasks that failed themselves, newest first, each row ``{"key", "type",
        "exception", "traceback", "worker", "time"}``; ``kept`` is how many the source
        keeps at most. Cost O(limit)."""
        ...
