"""The scheduler's records as plugins and ``client.run_on_scheduler`` functions read them:
dask's ``TaskState``, ``WorkerState``, ``ClientState``, ``TaskPrefix``, ``TaskGroup`` and
``MemoryState``, with dask's attribute names, types and meanings, over shoal's own state.

Owns: read-only views made on access (``Scheduler.tasks[key]``, ``.workers``,
``.clients``, ``.task_prefixes``, ``.task_groups``), each wrapping one record of the state
and reading it live. Nothing here is kept per task or updated as tasks move: a view costs
one small object when read and nothing otherwise, so the scheduler's hot path does not
know it exists. A view compares equal to (and hashes as) the record it wraps, so
``ts in ws.processing`` holds whichever way either was reached. What dask's records have
and shoal does not keep raises an ``AttributeError`` that says so and what to read instead
(an ``AttributeError``, so ``getattr(ts, name, default)`` and ``hasattr`` still work).

Must not change the state, nor be used by the state machine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shoal._status import Status
from shoal.scheduler._state_base import task_group

if TYPE_CHECKING:
    from shoal.scheduler._server import Scheduler

# dask's task states, in which its collections count their tasks (``TaskCollection.states``).
_DASK_STATES = ("released", "waiting", "no-worker", "queued", "processing", "memory",
                "erred", "forgotten")

_PER_TASK_SUMS = ("shoal keeps no per-{kind} sums of its tasks' sizes, types or run times "
                  "(the scheduler's hot path would pay for them on every move); add them up "
                  "from scheduler.tasks (ts.nbytes, ts.typename) or a transition hook's "
                  "startstops")

_NOT_KEPT: dict[str, dict[str, str]] = {
    "TaskState": {
        "run_spec": "shoal's scheduler keeps a task's call pickled, as the client sent it, "
                    "and never unpickles it; read ts.key, ts.prefix.name or the tasks "
                    "update_graph is given",
        "metadata": "use client.set_metadata / get_metadata",
        "host_restrictions": "shoal keeps one set of allowed workers (addresses or names): "
                             "ts.annotations.get('workers')",
        "worker_restrictions": "read ts.annotations.get('workers')",
        "resource_restrictions": "read ts.annotations.get('resources')",
        "loose_restrictions": "read ts.annotations.get('allow_other_workers', False)",
        "erred_on": "read ts.exception_blame and the scheduler's story "
                    "(client.story(key))",
        "waiters": "read ts.dependents (and their .state)",
        "has_lost_dependencies": "read the .state of ts.dependencies",
        "group_key": "read ts.group.name",
    },
    "WorkerState": {
        "metrics": "use client.scheduler_info()['workers'][address]['metrics'], or "
                   "ws.memory and ws.executing",
        "versions": "use client.get_versions()",
        "bandwidth": "shoal measures no per-worker bandwidth",
        "time_delay": "shoal measures no per-worker clock offset",
        "actors": "read ts.actor of the tasks in ws.has_what",
        "needs_what": "shoal's scheduler does not track the inputs a worker is fetching",
        "services": "shoal's workers serve no extra ports",
        "nanny": "shoal's nanny serves no address",
        "local_directory": "use client.run(lambda dask_worker: dask_worker.local_directory)",
        "extra": "shoal's workers register no extra fields",
        "server_id": "use ws.address",
    },
    "ClientState": {
        "last_seen": "shoal's scheduler watches a client's connection rather than "
                     "heartbeats: a client present here is connected",
        "versions": "use client.get_versions()",
    },
}
for _kind in ("TaskPrefix", "TaskGroup"):
    _NOT_KEPT[_kind] = dict.fromkeys(
        ("nbytes_total", "all_durations", "duration", "types"),
        _PER_TASK_SUMS.format(kind=_kind[4:].lower()))
_NOT_KEPT["TaskPrefix"].update(
    max_exec_time=_PER_TASK_SUMS.format(kind="prefix"),
    suspicious="read ts.suspicious of its tasks",
    state_counts="read .states (counts of the tasks the scheduler has now)")
_NOT_KEPT["TaskGroup"].update(
    dependencies="read ts.dependencies of its tasks (shoal links tasks, not groups)",
    start="read the startstops a transition hook is given",
    stop="read the startstops a transition hook is given",
    last_worker="shoal places root tasks without a group's last worker",
    last_worker_tasks_left="shoal places root tasks without a group's last worker",
    span_id="read scheduler.extensions['spans']")


def _missing(view: object, kind: str, name: str) -> AttributeError:
    hint = _NOT_KEPT.get(kind, {}).get(name)
    if hint is None:
        return AttributeError(f"{kind!r} object has no attribute {name!r}")
    return AttributeError(f"shoal's {kind} has no {name!r} (dask's has): {hint}")


class _View:
    """A read-only view of one state record (``_of``), compared and hashed as that record."""

    __slots__ = ("_of", "_sched")
    _kind = "record"

    def __init__(self, of: Any, sched: Scheduler) -> None:
        object.__setattr__(self, "_of", of)
        object.__setattr__(self, "_sched", sched)

    def __getattr__(self, name: str) -> Any:
        # Only names this class does not define: the record's own (state, nbytes...).
        if name in ("_of", "_sched"):  # (not set: a copy made without __init__)
            raise AttributeError(name)
        if name in _NOT_KEPT.get(self._kind, ()) or name.startswith("__"):
            raise _missing(self, self._kind, name)
        try:
            return getattr(self._of, name)
        except AttributeError:
            raise _missing(self, self._kind, name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"shoal's {self._kind} records are read-only views of the "
                             f"scheduler's state: {name!r} cannot be set")

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _View):
            return self._of is other._of
        return self._of is other

    def __hash__(self) -> int:
        return hash(self._of)

    def __repr__(self) -> str:
        return repr(self._of)

    def __reduce__(self) -> Any:
        raise TypeError(f"shoal's {self._kind} records are views of the scheduler's live "
                        "state and do not pickle: return what you read of them (ts.key, "
                        "ts.state, ws.address...) from run_on_scheduler")


class TaskStateView(_View):
    """dask's scheduler ``TaskState``: shoal's task record with ``prefix`` and ``group``
    as objects, ``annotations``, and its links to other records as views too."""

    __slots__ = ()
    _kind = "TaskState"

    @property
    def prefix(self) -> TaskPrefixView:
        return TaskPrefixView(self._of.prefix, self._sched)

    @property
    def group(self) -> TaskGroupView:
        return TaskGroupView(task_group(self._of), self._sched)

    @property
    def annotations(self) -> dict[str, Any]:
        """The annotations the scheduler acts on, as they were given (``priority``,
        ``retries``, ``workers``, ``resources``, ``allow_other_workers``); a client's own
        ``dask.annotate`` names reach plugins in ``update_graph(annotations=)`` only."""
        ts = self._of
        out: dict[str, Any] = {}
        priority = ts.priority
        if priority and priority[0]:
            out["priority"] = -priority[0]
        if ts.rare is None:
            return out
        if ts.retries:
            out["retries"] = ts.retries
        if ts.workers is not None:
            out["workers"] = list(ts.workers)
        if ts.resources is not None:
            out["resources"] = dict(ts.resources)
        if ts.loose:
            out["allow_other_workers"] = True
        return out

    @property
    def dependencies(self) -> set[TaskStateView]:
        return {TaskStateView(t, self._sched) for t in self._of.dependencies}

    @property
    def dependents(self) -> set[TaskStateView]:
        return {TaskStateView(t, self._sched) for t in self._of.dependents}

    @property
    def waiting_on(self) -> set[TaskStateView]:
        return {TaskStateView(t, self._sched) for t in self._of.waiting_on}

    @property
    def who_has(self) -> set[WorkerStateView]:
        return {WorkerStateView(ws, self._sched) for ws in self._of.who_has}

    @property
    def processing_on(self) -> WorkerStateView | None:
        ws = self._of.processing_on
        return None if ws is None else WorkerStateView(ws, self._sched)

    @property
    def who_wants(self) -> set[ClientStateView]:
        """The clients that want it (and pseudo-clients: ``"fire-and-forget"``, a published
        dataset's holder), each equal to its ``client_key`` too."""
        return {_client(self._sched, session) for session in self._of.who_wants}

    @property
    def type(self) -> str | None:
        """Its result's type name once in memory (dask's ``TaskState.type``)."""
        return self._of.typename or None


class WorkerStateView(_View):
    """dask's scheduler ``WorkerState``: ``status``, ``memory`` (a ``MemoryState``),
    ``processing``/``has_what``/``long_running`` as sets of task records."""

    __slots__ = ()
    _kind = "WorkerState"

    @property
    def status(self) -> Status:
        """``Status.running``, ``paused`` (memory past its pause threshold) or
        ``closing_gracefully`` (being retired)."""
        ws = self._of
        if ws.address in self._sched.retiring:
            return Status.closing_gracefully
        return Status.paused if ws.paused else Status.running

    @property
    def memory(self) -> MemoryState:
        ws = self._of
        # (as the dashboard counts it: in memory, or what the tasks' sizes say before the
        # first heartbeat)
        managed = ws.memory_managed if ws.memory_spilled else max(ws.nbytes, ws.memory_managed)
        process = max(ws.memory_process, managed)
        return MemoryState(process=process, unmanaged_old=process - managed, managed=managed,
                           spilled=ws.memory_spilled_disk)

    @property
    def processing(self) -> set[TaskStateView]:
        return {TaskStateView(t, self._sched) for t in self._of.processing}

    @property
    def long_running(self) -> set[TaskStateView]:
        return {TaskStateView(t, self._sched) for t in self._of.long_running}

    @property
    def has_what(self) -> set[TaskStateView]:
        return {TaskStateView(t, self._sched) for t in self._of.has_what}

    @property
    def used_resources(self) -> dict[str, float]:
        """How much of each resource its processing tasks hold."""
        ws = self._of
        return {name: total - ws.free.get(name, 0.0) for name, total in ws.resources.items()}

    def __lt__(self, other: WorkerStateView) -> bool:
        return bool(self._of.address < other.address)


class MemoryState:
    """dask's ``MemoryState``: a worker's memory as its last heartbeat said, in bytes.
    ``process`` (RSS) = ``managed`` (its values in memory) + ``unmanaged``; ``spilled`` is
    the bytes of its values on disk. shoal keeps no history of unmanaged memory: all of it
    counts as ``unmanaged_old`` (``unmanaged_recent`` is 0)."""

    __slots__ = ("managed", "process", "spilled", "unmanaged_old")

    def __init__(self, *, process: int, unmanaged_old: int, managed: int,
                 spilled: int) -> None:
        self.process = process
        self.managed = min(process, managed)
        self.spilled = spilled
        self.unmanaged_old = min(unmanaged_old, process - self.managed)

    @staticmethod
    def sum(*infos: MemoryState) -> MemoryState:
        return MemoryState(process=sum(m.process for m in infos),
                           unmanaged_old=sum(m.unmanaged_old for m in infos),
                           managed=sum(m.managed for m in infos),
                           spilled=sum(m.spilled for m in infos))

    @property
    def managed_total(self) -> int:
        return self.managed + self.spilled

    @property
    def unmanaged(self) -> int:
        return self.process - self.managed

    @property
    def unmanaged_recent(self) -> int:
        return self.process - self.managed - self.unmanaged_old

    @property
    def optimistic(self) -> int:
        return self.managed + self.unmanaged_old

    def __repr__(self) -> str:
        return (f"<MemoryState process={self.process} managed={self.managed} "
                f"unmanaged={self.unmanaged} spilled={self.spilled}>")


class ClientStateView:
    """dask's ``ClientState``: ``client_key`` (the ``Client.id``, or a pseudo-client's
    name) and ``wants_what``. Equal to (and hashed as) its ``client_key``, as
    ``str(client_state)`` is."""

    __slots__ = ("_sched", "_sessions", "client_key")

    def __init__(self, client_key: str, sessions: tuple[str, ...], sched: Scheduler) -> None:
        self.client_key = client_key
        self._sessions = sessions
        self._sched = sched

    @property
    def wants_what(self) -> set[TaskStateView]:
        clients = self._sched.state.clients
        return {TaskStateView(ts, self._sched)
                for session in self._sessions for ts in clients.get(session, ())}

    def __getattr__(self, name: str) -> Any:
        raise _missing(self, "ClientState", name)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ClientStateView):
            return self.client_key == other.client_key
        return isinstance(other, str) and self.client_key == other

    def __lt__(self, other: object) -> bool:
        return self.client_key < str(other)

    def __hash__(self) -> int:
        return hash(self.client_key)

    def __str__(self) -> str:
        return self.client_key

    def __repr__(self) -> str:
        return f"<Client {self.client_key!r}>"

    def __reduce__(self) -> Any:
        return str, (self.client_key,)  # (sent from the scheduler: its key)


def _client(sched: Scheduler, session: str) -> ClientStateView:
    return ClientStateView(sched.state._client_id(session), (session,), sched)


def clients(sched: Scheduler) -> dict[str, ClientStateView]:
    """``Scheduler.clients``: by ``Client.id`` (a client's sessions, one per connection it
    made, are one client), with the pseudo-clients that hold keys."""
    state = sched.state
    sessions: dict[str, list[str]] = {}
    for session in state.clients:
        sessions.setdefault(state._client_id(session), []).append(session)
    return {key: ClientStateView(key, tuple(s), sched) for key, s in sessions.items()}


def _counts(counts: dict[str, int] | None) -> dict[str, int]:
    """A row of the state's per-group counts in dask's states (``scattering`` is data on
    its way into memory)."""
    out = dict.fromkeys(_DASK_STATES, 0)
    if counts:
        for state, n in counts.items():
            if state == "scattering":
                out["memory"] += n
            elif state in out:
                out[state] += n
    return out


class _CountedByName:
    """What dask's ``TaskGroup`` and ``TaskPrefix`` share here: a name on the scheduler, the
    counts of its tasks by state (``states``, from the subclass), equality by name."""

    __slots__ = ("_sched", "name")
    _dask_name = ""

    def __init__(self, name: Any, sched: Scheduler) -> None:
        self.name = name
        self._sched = sched

    @property
    def states(self) -> dict[str, int]:
        raise NotImplementedError

    def __len__(self) -> int:
        return sum(self.states.values())

    def __getattr__(self, name: str) -> Any:
        raise _missing(self, self._dask_name, name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _CountedByName) and type(other) is type(self) and (
            self.name == other.name)

    def __hash__(self) -> int:
        return hash((self._dask_name, self.name))

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}: {v}" for k, v in sorted(self.states.items()) if v)
        return f"<{self.name}: {shown}>"


class TaskGroupView(_CountedByName):
    """dask's ``TaskGroup``: the tasks of one layer of a collection (a tuple key's name),
    or of one prefix of plain keys. ``states`` counts the tasks the scheduler has now."""

    __slots__ = ()
    _dask_name = "TaskGroup"

    @property
    def prefix(self) -> TaskPrefixView:
        state = self._sched.state
        from shoal.scheduler._state_base import key_prefix

        prefix = state.group_prefix.get(self.name)
        return TaskPrefixView(key_prefix(self.name) if prefix is None else prefix, self._sched)

    @property
    def states(self) -> dict[str, int]:
        return _counts(self._sched.state.group_counts.get(self.name))

    @property
    def done(self) -> bool:
        """No task of it is waiting, queued or processing."""
        return all(n == 0 or s in ("memory", "erred", "released", "forgotten")
                   for s, n in self.states.items())


class TaskPrefixView(_CountedByName):
    """dask's ``TaskPrefix``: the tasks whose keys share a name (``"inc"`` for
    ``"inc-<token>"``), with ``duration_average`` (seconds; -1 until one ran), ``states``
    and ``groups``."""

    __slots__ = ()
    _dask_name = "TaskPrefix"

    def _groups(self) -> list[Any]:
        return [g for g, p in self._sched.state.group_prefix.items() if p == self.name]

    @property
    def groups(self) -> list[TaskGroupView]:
        return [TaskGroupView(g, self._sched) for g in self._groups()]

    @property
    def states(self) -> dict[str, int]:
        counts = self._sched.state.group_counts
        total = dict.fromkeys(_DASK_STATES, 0)
        for g in self._groups():
            for s, n in _counts(counts.get(g)).items():
                total[s] += n
        return total

    @property
    def duration_average(self) -> float:
        """The scheduler's estimate of one task's run time, in seconds (-1: none ran)."""
        return float(self._sched.state._durations.get(self.name, -1.0))



def task_groups(sched: Scheduler) -> dict[Any, TaskGroupView]:
    """``Scheduler.task_groups``: the groups the scheduler has tasks of, by name."""
    return {g: TaskGroupView(g, sched) for g in sched.state.group_counts}


def task_prefixes(sched: Scheduler) -> dict[str, TaskPrefixView]:
    """``Scheduler.task_prefixes``: the prefixes the scheduler has tasks of, by name."""
    return {p: TaskPrefixView(p, sched) for p in dict.fromkeys(sched.state.group_prefix.values())}
