"""The scheduler's task logic as a pure state machine: ``handle(*events) -> commands``.

Owns: every task's state and the transitions between states, which worker holds or runs
what, who wants which result, lineage for recomputation, retries and worker-death limits.
Must not know: sockets, event loops, threads, clocks or configuration files. Time comes in
events; settings come in the constructor; data bytes stay opaque (``Serialized``).

States: released → waiting → queued | no-worker → processing → memory | erred, and
forgotten when nothing refers to a task any more. Scattered data goes released →
scattering → memory once a worker acknowledges holding it (or erred if none could). Every allowed move is listed in
``_TRANSITIONS``; anything else raises :class:`InvalidTransition` with the task's story.

This module holds the entry point, the constructor and the views; the rest of the class
comes from one mixin per concern (see ``_state_base``): ``_transitions``, ``_dispatch``,
``_client_handlers``, ``_scatter_handlers``, ``_worker_handlers`` and ``_report_handlers``.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from typing import Any

from mypy_extensions import mypyc_attr

from shoal.scheduler import _placement as placement
from shoal.scheduler._client_handlers import ClientHandlers
from shoal.scheduler._dispatch import DURATIONS_KEPT as DURATIONS_KEPT
from shoal.scheduler._dispatch import Dispatch
from shoal.scheduler._events import (
    ClientJoined,
    ClientLeft,
    ClusterReset,
    Command,
    DataCopied,
    DataMissing,
    DataScattered,
    Event,
    ExecutionStarted,
    FireAndForgetAsked,
    ForgetWatched,
    GraphSubmitted,
    HeartbeatReceived,
    KeysCancelled,
    KeysReleased,
    KeysRetried,
    ReplicasAdded,
    ReplicasDropped,
    ReplicasWanted,
    RescheduleAsked,
    ScatterAcked,
    Seceded,
    SpanSubmitted,
    TaskFailed,
    TaskFinished,
    TasksFinished,
    Tick,
    TransferDone,
    WorkerJoined,
    WorkerLeft,
    WorkerMemoryKilled,
    WorkerPaused,
    WorkerRetiring,
    WorkResumed,
)
from shoal.scheduler._functions import FunctionRefs
from shoal.scheduler._no_workers import check_timeout
from shoal.scheduler._report_handlers import ReportHandlers
from shoal.scheduler._room import RoomIndex
from shoal.scheduler._scatter_handlers import ScatterHandlers, _Storing
from shoal.scheduler._spans import SpansBook
from shoal.scheduler._state_base import ACTIVE as ACTIVE
from shoal.scheduler._state_base import FIRE_AND_FORGET as FIRE_AND_FORGET
from shoal.scheduler._state_base import STATES, task_group
from shoal.scheduler._state_base import key_prefix as key_prefix
from shoal.scheduler._state_base import stimulus_id as stimulus_id
from shoal.scheduler._stealing import find_victims
from shoal.scheduler._task_shards import Tasks
from shoal.scheduler._tasks import Key, TaskState, WorkerState
from shoal.scheduler._transitions import _TRANSITIONS as _TRANSITIONS
from shoal.scheduler._transitions import TIDY_STEP, Transitions
from shoal.scheduler._transitions import InvalidTransition as InvalidTransition
from shoal.scheduler._worker_handlers import WorkerHandlers


@mypyc_attr(native_class=False)  # compiled: an exception stays a Python class
class EventsFailed(RuntimeError):
    """Handling some events raised (a shoal bug). The state changes made are kept, and
    ``commands`` holds every command decided in the batch: carry them out, or workers and
    clients wait for answers that never come."""

    def __init__(self, failures: list[tuple[Any, BaseException]], commands: list[Command]) -> None:
        lines = "\n".join(
            f"  {type(exc).__name__}: {exc} (handling {event!r})" for event, exc in failures
        )
        super().__init__(f"{len(failures)} scheduler event(s) failed:\n{lines}")
        self.failures = failures
        self.commands = commands


class SchedulerState(
    Transitions, Dispatch, ClientHandlers, ScatterHandlers, WorkerHandlers, ReportHandlers
):
    """All scheduling decisions. Feed events to :meth:`handle`; carry out what it returns."""

    def __init__(
        self,
        *,
        allowed_failures: int = 3,
        worker_ttl: float = 300.0,
        bandwidth: float = placement.BANDWIDTH,
        task_stream_size: int = 100_000,
        story_size: int | None = 100_000,
        unknown_duration: float = placement.UNKNOWN_DURATION,
        erred_history: int = 100,
        work_stealing: bool = True,
        no_workers_timeout: float | None = None,
    ) -> None:
        self.tasks: Tasks = {}
        # ``span`` blocks' records (dask's extensions["spans"]); read the tasks' states here
        self.spans = SpansBook(self._task_table)
        self.workers: dict[str, WorkerState] = {}
        self.clients: dict[str, set[TaskState]] = {}
        # clients that joined (ClientJoined), not holders: session name -> Client.id
        self._joined: dict[str, str] = {}
        self.allowed_failures = allowed_failures
        self.worker_ttl = worker_ttl
        self.bandwidth = bandwidth
        # Entries (ts.prio, ts): the task's own packed int (or tuple), see _waiting_queued.
        self._queue: list[tuple[Any, ...]] = []
        # Whether every task's ``prio`` is its priority packed by ``queue_key`` (an int);
        # False for good once one did not pack (``_unpack_priorities``): tuples then.
        self._packed_priorities = True
        self._seq = itertools.count()
        self._runs = itertools.count(1)  # assignment numbers (TaskState.run)
        self._no_worker: dict[TaskState, float | None] = {}  # see _no_workers
        # dask's distributed.scheduler.no-workers-timeout (seconds; None: wait forever)
        self.no_workers_timeout = check_timeout(no_workers_timeout)
        self._no_workers_since: float | None = None
        self._actors: set[TaskState] = set()  # tasks marked actor, until forgotten
        self._went_idle: set[WorkerState] = set()  # workers to find stolen work for
        # dask's distributed.scheduler.work-stealing: False leaves queued tasks where placed
        self.work_stealing = work_stealing
        self._no_victims = False  # a steal scan found none, and no backlog was made since
        self._paused: set[WorkerState] = set()  # workers placed nothing (memory)
        self._freed: set[WorkerState] = set()  # workers with held tasks that gained room
        self._room = RoomIndex()  # the least busy worker with room, for queued tasks
        self._storing: dict[Key, _Storing] = {}  # scattered keys awaiting workers' acks
        # (key, worker): acks still owed for stores a free undid (see _scatter_handlers).
        self._undone: dict[tuple[Key, str], int] = {}
        self.functions = FunctionRefs()  # which function blobs tasks still use
        self._durations: dict[str, float] = {}  # per prefix: the estimate (``_measured``)
        # per prefix: its last measurement, while it was an outlier (waiting for the next)
        self._outlying: dict[str, float] = {}
        # Assumed for a prefix never measured (dask's distributed.scheduler.unknown-task-duration).
        self.unknown_duration = unknown_duration
        # Counts by state per task group (``task_group``: a collection's layer, or the
        # prefix of plain keys), in the order groups appeared: the dashboard's /groups
        # reads the newest few without looking at the rest. Per prefix: ``prefix_counts``
        # sums them (O(groups)), with each group's prefix here.
        self.group_counts: dict[Any, dict[str, int]] = {}
        self.group_prefix: dict[Any, str] = {}
        # The latest failures, newest first (dask's ``erred_tasks``, its
        # distributed.diagnostics.erred-tasks.max-history): (key, error) of each task that
        # failed itself, not of those that failed because an input did.
        self.erred_tasks: deque[tuple[Key, dict[str, Any]]] = deque(maxlen=erred_history)
        self.task_stream: deque[tuple[Any, ...]] = deque(maxlen=task_stream_size)
        self.task_stream_total = 0
        self.completed_total = 0
        self._log: deque[tuple[Any, ...]] = deque(maxlen=story_size)
        self._out: list[Command] = []
        self._fired_done: list[TaskState] = []  # fire-and-forget keys that just finished
        self._forget_watch: set[Key] = set()  # keys whose task's forgetting is to be said
        self._cause = ""
        self._now = 0.0  # the time the events being handled arrived (``handle``'s ``now``)
        self._wanting: dict[str, frozenset[str]] = {}
        self._arriving: dict[tuple[str, int], str] = {}
        self._full_holds: dict[tuple[str, int], list[str]] = {}
        self._ending: dict[str, None] = {}
        self._tidying: list[TaskState] = []
        self._tidy_step = TIDY_STEP  # tasks ``_tidy`` looks at per handle call
        self._tidy_budget = TIDY_STEP
        self._resuming = False
        self._frees: dict[str, list[Key]] | None = None
        # Tasks with more holders than wanted (dask's ``replicated_tasks``, less the copies
        # users asked for), for the Active Memory Manager (``_amm``): it looks at these
        # only, never at every key. Added where a holder is recorded off the per-task path
        # (copies, replicas, broadcast scatters) or a wish shrinks; taken out when the key
        # leaves memory, on a drop down to what is wanted, or lazily by the AMM.
        self.replicated_tasks: set[TaskState] = set()
        # Copies users asked for (``replicate``, broadcast scatters), by task: 2 or more.
        self.replicas_wanted: dict[TaskState, int] = {}
        self._handlers: dict[type, Callable[[Any], None]] = {
            ClientJoined: self._on_client_joined,
            ClientLeft: self._on_client_left,
            GraphSubmitted: self._on_graph,
            SpanSubmitted: self._on_span_submitted,
            KeysReleased: self._on_released,
            KeysCancelled: self._on_cancelled,
            KeysRetried: self._on_retried,
            DataScattered: self._on_scattered,
            ScatterAcked: self._on_scatter_acked,
            WorkerJoined: self._on_worker_joined,
            WorkerLeft: self._on_worker_left,
            WorkerRetiring: self._on_worker_retiring,
            ExecutionStarted: self._on_started,
            TaskFinished: self._on_finished,
            TasksFinished: self._on_finished_many,
            TaskFailed: self._on_failed,
            RescheduleAsked: self._on_rescheduled,
            DataMissing: self._on_missing,
            TransferDone: self._on_transfer,
            HeartbeatReceived: self._on_heartbeat,
            Tick: self._on_tick,
            Seceded: self._on_seceded,
            WorkerPaused: self._on_worker_paused,
            WorkerMemoryKilled: self._on_worker_memory_killed,
            FireAndForgetAsked: self._on_fire_and_forget,
            ClusterReset: self._on_reset,
            DataCopied: self._on_copied,
            ReplicasAdded: self._on_replicas_added,
            ReplicasDropped: self._on_replicas_dropped,
            ReplicasWanted: self._on_replicas_wanted,
            WorkResumed: self._on_resumed,
            ForgetWatched: self._on_forget_watched,
        }

    # --- entry point -------------------------------------------------------------------------

    def handle(self, *events: Event, now: float = 0.0) -> list[Command]:
        """Apply events in order; return the commands they lead to, in order. ``now``: when
        they arrived (``time.time()``, from the shell), the time of their story rows.

        Raises:
            EventsFailed: an event (or the placement after them) raised; the other events
                were applied, and the exception carries every command decided.
        """
        failures: list[tuple[Event | None, BaseException]] = []
        self._tidy_budget = self._tidy_step
        self._now = now
        for event in events:
            self._cause = type(event).__name__
            try:
                self._handlers[type(event)](event)
            except Exception as exc:
                failures.append((event, exc))
        try:
            if self._fired_done:
                done, self._fired_done = self._fired_done, []
                self._tidy(done)
            self._fill()
            if self._went_idle:
                if self.work_stealing:
                    self._steal()
                else:
                    self._went_idle.clear()
        except Exception as exc:
            failures.append((None, exc))
        out, self._out = self._out, []
        if failures:
            raise EventsFailed(failures, out)
        return out

    def story(self, key: Key) -> list[tuple[Any, ...]]:
        """Every recorded transition of ``key``: (key, start, finish, cause, time), where
        ``cause`` names the event that made it and ``time`` is when that event arrived."""
        return [row for row in self._log if row[0] == key]

    def stimulus_story(self, stimulus: str) -> list[tuple[Any, ...]]:
        """The recorded transitions one event made (its ``stimulus_id``, as ``story`` rows)."""
        return [row for row in self._log if stimulus_id(row[3], row[4]) == stimulus]

    # --- views -------------------------------------------------------------------------------

    def needed(self, ts: TaskState) -> bool:
        """Whether a client or a task to run (or a failure being kept) still needs ``ts``."""
        return self._needed(ts)

    def task_stream_since(
        self, cursor: int, limit: int | None = None
    ) -> tuple[int, list[dict[str, Any]]]:
        """The records after ``cursor`` (a count of records ever made), oldest first, at most
        ``limit`` of them, and the cursor to ask next. Records older than the retained ring
        are gone; ``cursor < 0`` asks only for the current position."""
        total = self.task_stream_total
        if cursor < 0:  # "from now on"
            return total, []
        first = max(cursor, total - len(self.task_stream))
        n = max(total - first, 0)
        if limit is not None:
            n = min(n, max(limit, 0))
        # Walked from the newest end: a page of new records costs O(new), never O(ring).
        newer = max(total - first - n, 0)  # retained records after the page
        rows = list(itertools.islice(reversed(self.task_stream), newer, newer + n))
        rows.reverse()
        items = [
            {"key": str(k), "prefix": p, "worker": w, "thread": t, "start": a, "stop": b, "kind": kind}
            for k, p, w, t, a, b, kind in rows
        ]
        return min(first + n, total), items

    def first_failure(self, key: Key) -> TaskState | None:
        """The task whose exception made ``key`` fail (itself or an erred ancestor)."""
        ts = self.tasks.get(key)
        if ts is None or ts.error is None:
            return None
        origin = ts.error.get("key")
        return self.tasks.get(origin, ts)

    def validate(self) -> None:
        """Check every invariant; raises AssertionError naming the task. For tests."""
        assert self._paused == {ws for ws in self.workers.values() if ws.paused}, "paused set"
        assert self._outlying.keys() <= self._durations.keys(), "outliers of unmeasured prefixes"
        for ws in self.workers.values():
            guessed: dict[str, float] = {}
            for t in ws.processing:
                if t.prefix not in self._durations and t.est:
                    guessed[t.prefix] = guessed.get(t.prefix, 0.0) + t.est
            assert guessed.keys() == ws.guessed.keys(), (ws.address, guessed, ws.guessed)
            assert all(abs(guessed[p] - g) < 1e-6 for p, g in ws.guessed.items()), ws.address
        for key, ts in self.tasks.items():
            assert ts.key == key, key
            assert ts.state in STATES, (key, ts.state)
            assert not ts.started or ts.state == "processing", key
            # priorities all packed ints, or (a scattered task's default aside) all tuples
            assert (type(ts.prio) is int) == self._packed_priorities or not ts.payload, key
            if ts.state == "processing":
                assert ts.processing_on is not None, key
                assert ts in ts.processing_on.processing, key
                assert ts.processing_on.address in self.workers, key
            else:
                assert ts.processing_on is None, (key, ts.state)
            if ts.state == "memory":
                assert ts.who_has, key
                for ws in ts.who_has:
                    assert ts in ws.has_what, key
                assert (len(ts.who_has) <= self.replicas_wanted.get(ts, 1)
                        or ts in self.replicated_tasks), (key, "surplus copies untracked")
            else:
                assert not ts.who_has, (key, ts.state)
            if ts.state == "waiting":
                assert ts.waiting_on, key
                assert all(d.state != "memory" for d in ts.waiting_on), key
            if ts.state in ACTIVE:
                assert all(d.key in self.tasks for d in ts.dependencies), key
            if ts.state == "erred":
                assert ts.error is not None, key
            if ts.actor and ts.state == "memory":
                assert len(ts.who_has) == 1, (key, "an actor lives on exactly one worker")
            assert ts.actor == (ts in self._actors), (key, "actor set out of date")
            if ts.state == "scattering":
                assert key in self._storing, key
            for dep in ts.dependencies:
                assert ts in dep.dependents, (key, dep.key)
            for client in ts.who_wants:
                assert ts in self.clients.get(client, set()), (key, client)
        assert self._no_worker.keys() == {
            ts for ts in self.tasks.values() if ts.state == "no-worker"}, "no-worker set"
        for prio, ts in self._queue:  # each entry shares its task's prio (_waiting_queued)
            assert prio is ts.prio, (ts.key, "queue entry's priority is not its task's")
        for ts, n in self.replicas_wanted.items():
            assert n > 1 and self.tasks.get(ts.key) is ts, (ts.key, n, "stale wish")
            assert ts.state in ("memory", "scattering"), (ts.key, ts.state, "wish kept")
        for ts in self._actors:
            assert self.tasks.get(ts.key) is ts, (ts.key, "forgotten actor still counted")
        for (key, address), owed in self._undone.items():
            assert owed > 0 and address in self.workers, (key, address, "ack owed by nobody")
        assert self._resuming or not (self._tidying or self._ending), "work left, no resume"
        kept = [*self._arriving.values(), *(h for hs in self._full_holds.values() for h in hs)]
        for hold in (*kept, *self._ending):
            assert hold in self.clients, (hold, "a graph hold without its tasks' set")
        assert not set(kept) & set(self._ending), "a hold both kept and ended"
        assert self._full_holds.keys() <= self._arriving.keys(), "full holds of no graph"
        for client, alone in self._wanting.items():  # shared who_wants: never changed
            assert alone == frozenset((client,)), (client, alone)
        for ws in self.workers.values():
            for ts in ws.processing:
                assert ts.processing_on is ws and ts.state == "processing", ts.key
            assert ws.long_running <= ws.processing, ws.address
            assert ws.stealable == sum(t.workers is None for t in ws.processing), ws
            for r, total in ws.resources.items():
                taken = sum((t.resources or {}).get(r, 0.0) for t in ws.processing)
                assert abs(ws.free.get(r, 0.0) - (total - taken)) < 1e-9, (ws.address, r)
            for _, _, ts in ws.held:
                assert ts.held_on is not ws or ts.state == "queued", (ts.key, ts.state)
            live = {t for _, _, t in ws.held if t.held_on is ws}
            assert ws.held_live == len(live), (ws.address, ws.held_live, len(live))
            for ts in ws.has_what:
                assert ws in ts.who_has, ts.key
        self._room.validate(self.workers)
        if self._no_victims:  # the steal scan skipped is one that would find nothing
            assert not find_victims(self.workers.values()), "steal victims unnoticed"
        used: dict[str, int] = {}
        for ts in self.tasks.values():
            for fid in ts.fids:
                used[fid] = used.get(fid, 0) + 1
        assert used == self.functions.refs, (used, self.functions.refs)
        self.functions.validate()
        by_group: dict[Any, dict[str, int]] = {}
        for ts in self.tasks.values():
            c = by_group.setdefault(task_group(ts), dict.fromkeys(STATES, 0))
            c[ts.state] += 1
        # (A group's prefix is its first task's: the per-prefix sums, ``prefix_counts``,
        # count each group under that one, as dask's TaskGroup belongs to one TaskPrefix.)
        assert self.group_prefix.keys() == self.group_counts.keys(), "groups without a prefix"
        assert self.group_counts == by_group, "group counts differ from the tasks' states"
