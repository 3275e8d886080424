"""The worker's task logic as a pure state machine: ``handle(*events) -> commands``.

Owns: which assigned tasks wait for inputs, which inputs to fetch from which peer, when a
task is ready to run, and which held keys may be dropped. Must not know: sockets, threads,
clocks, or the data values themselves (the I/O shell keeps those; this knows keys only).

Task states here: waiting (inputs missing) → executing (handed to the executor's queue,
which runs it when a thread is free) → done (the record goes; the result is held), and
"cancelled" for a task freed while executing (its result is dropped on arrival).

Each task keeps the run id of the latest ``Compute`` for its key (``Compute.run``) and its
reports echo it. A key assigned again while its record is here (a cancelled run resumed,
or a duplicate assignment) takes the new run id: the scheduler only counts reports of
the run it last assigned.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from shoal.protocol._messages import (
    MissingData,
    ScatterStored,
    TaskDone,
    TaskErred,
    TaskRescheduled,
    Transfer,
)
from shoal.protocol._serialize import Serialized
from shoal.worker._events import (
    Command,
    ComputeAssigned,
    ComputesAssigned,
    CopiesStored,
    DataStored,
    Drop,
    Event,
    Execute,
    ExecuteDone,
    Fetch,
    FetchDone,
    FetchFailed,
    KeysFreed,
    Report,
    StoreFailed,
)

Key = Any

__all__ = [
    "Command",
    "ComputeAssigned",
    "ComputesAssigned",
    "CopiesStored",
    "DataStored",
    "Drop",
    "Event",
    "Execute",
    "ExecuteDone",
    "Fetch",
    "FetchDone",
    "FetchFailed",
    "KeysFreed",
    "Report",
    "StoreFailed",
    "WorkerState",
]


class _Task:
    __slots__ = ("deps", "drop", "key", "missing", "payload", "priority", "run",
                 "send_inline", "state")

    def __init__(self, key: Key, payload: Serialized, deps: Any, priority: Any,
                 send_inline: bool, run: int, drop: tuple[Key, ...]) -> None:
        self.key = key
        self.payload = payload
        self.priority = priority
        self.send_inline = send_inline
        self.run = run  # the latest assignment's (see the module's header)
        self.drop = drop  # inputs to drop when it succeeds (``Compute.drop``)
        # most tasks of a map have no inputs: no generator to start
        self.deps: tuple[Key, ...] = tuple([d[0] for d in deps]) if deps else ()
        self.missing: set[Key] = set()
        self.state = "waiting"


# Story rows kept when no length is given: dask's distributed.admin.low-level-log-length.
LOG_LENGTH = 1000


class WorkerState:
    """All of one worker's decisions about its tasks and their inputs."""

    def __init__(self, address: str, log_length: int | None = LOG_LENGTH) -> None:
        self.address = address
        # The story (dask's ``WorkerState.log``): ``(key, start, finish, cause, now)`` per
        # move, newest last; ``cause`` names what moved it and ``now`` is when ``handle``
        # was called. Rows are plain tuples of what is at hand: ``story`` formats them.
        self.log: deque[tuple[Any, str, str, str, float]] = deque(maxlen=log_length)
        self._now = 0.0
        self.tasks: dict[Key, _Task] = {}
        self.held: dict[Key, int] = {}  # key -> nbytes of values the shell stores
        self.assigned: set[Key] = set()  # keys the scheduler knows we hold (our results/scatter)
        self.holders: dict[Key, list[str]] = {}  # where to fetch a missing input from
        self.waiters: dict[Key, set[Key]] = {}  # missing input -> tasks waiting for it
        self.in_flight: dict[Key, str] = {}  # input being fetched -> from which peer
        self.users: dict[Key, set[Key]] = {}  # fetched input -> local tasks still needing it
        self.bad_peers: set[str] = set()
        # Keys whose fetched copy was released while a run of the same key was queued or
        # running here: the run's result replaces it, or (if it fails) its end drops it.
        self.shadowed: set[Key] = set()
        self._out: list[Command] = []

    def handle(self, *events: Event, now: float = 0.0) -> list[Command]:
        """Apply events in order; return the commands they lead to. ``now``: when they
        arrived (``time.time()``, from the shell), the time of their story rows."""
        self._now = now
        for ev in events:
            kind = type(ev)
            if kind is ExecuteDone:
                self._on_done(ev)  # type: ignore[arg-type]
            elif kind is ComputesAssigned:
                m = ev.msg  # type: ignore[attr-defined]
                compute, tasks, held, out = self._compute, self.tasks, self.held, self._out
                told = self.log.append
                for key, payload, deps, priority, inline, run, drop in zip(
                        m.keys, m.payloads, m.deps, m.priorities, m.send_inline, m.runs,
                        m.drops, strict=True):
                    if deps or key in tasks or key in held:
                        compute(key, payload, deps, priority, inline, run, drop)
                        continue
                    # A map's task: new here, no inputs, so straight to the executor (what
                    # _compute and _run do for it, without the two calls per row).
                    ts = tasks[key] = _Task(key, payload, (), priority, inline, run, tuple(drop))
                    ts.state = "executing"
                    out.append(Execute(key, payload, priority, inline, ()))
                    told((key, "released", "executing", "compute-task", now))
            elif kind is ComputeAssigned:
                m = ev.msg  # type: ignore[attr-defined]
                self._compute(m.key, m.payload, m.deps, m.priority, m.send_inline, m.run, m.drop)
            elif kind is FetchDone:
                self._on_fetched(ev)  # type: ignore[arg-type]
            elif kind is FetchFailed:
                self._on_fetch_failed(ev)  # type: ignore[arg-type]
            elif kind is KeysFreed:
                self._on_freed(ev.keys)  # type: ignore[attr-defined]
            elif kind is DataStored:
                self.log.append((ev.key, "released", "memory",  # type: ignore[attr-defined]
                                 "receive-from-scatter", now))
                self.held[ev.key] = ev.nbytes  # type: ignore[attr-defined]
                self.assigned.add(ev.key)  # type: ignore[attr-defined]
                self._out.append(Report(ScatterStored(ev.key, None)))  # type: ignore[attr-defined]
                if ev.key in self.waiters:  # type: ignore[attr-defined]
                    self._arrived_otherwise(ev.key)  # type: ignore[attr-defined]
            elif kind is StoreFailed:
                self._out.append(Report(ScatterStored(ev.key, ev.error)))  # type: ignore[attr-defined]
            elif kind is CopiesStored:
                self.held.update(ev.got)  # type: ignore[attr-defined]
                self.assigned.update(ev.got)  # type: ignore[attr-defined]
                for key in ev.got:  # type: ignore[attr-defined]
                    if key in self.waiters:  # local tasks were fetching it: they take this
                        self._arrived_otherwise(key)
            else:
                raise TypeError(f"worker state got an unknown event {ev!r}")
        out, self._out = self._out, []
        return out

    @property
    def managed_bytes(self) -> int:
        return sum(self.held.values())

    def story(self, *keys_or_stimuli: Any) -> list[tuple[Any, ...]]:
        """The rows about any of these keys or stimulus ids, oldest first, in dask's
        worker transition shape: ``(key, start, finish, final, recommendations,
        stimulus_id, time)`` (``recommendations`` is always ``{}``: moves here cascade
        directly; the stimulus id is ``"<cause>-<time>"``, as the scheduler's)."""
        wanted = set(keys_or_stimuli)
        out: list[tuple[Any, ...]] = []
        for key, start, finish, cause, now in self.log:
            sid = f"{cause}-{now}"
            if key in wanted or sid in wanted:
                out.append((key, start, finish, finish, {}, sid, now))
        return out

    def set_log_length(self, length: int | None) -> None:
        """Keep ``length`` story rows from now on (None: all); the newest stay."""
        if length != self.log.maxlen:
            self.log = deque(self.log, maxlen=length)

    # --- events --------------------------------------------------------------------------------

    def _compute(self, key: Key, payload: Serialized, deps: Any, priority: Any,
                 send_inline: bool, run: int, drop: Any) -> None:
        """One assignment (a ``Compute``, or a row of a ``Computes``)."""
        if key in self.held and key in self.assigned:
            self._out.append(
                Report(TaskDone(key, self.held[key], "", 0.0, 0.0, -1, None, run))
            )
            return
        drop = tuple(drop)
        old = self.tasks.get(key)
        if old is not None:
            old.run = run  # what it reports now answers this assignment
            old.drop = drop  # and its inputs to drop are this assignment's
            old.payload, old.priority, old.send_inline = payload, priority, send_inline
            if old.state == "cancelled":
                old.state = "executing"  # resumed: its result is wanted again
                self.log.append((key, "cancelled", "executing", "compute-task", self._now))
            return
        ts = self.tasks[key] = _Task(key, payload, deps, priority, send_inline, run, drop)
        if not deps:
            self._run(ts, "released", "compute-task")
            return
        fetch_by_peer: dict[str, list[Key]] = {}
        sizes: dict[Key, int] = {}
        lacking: list[Key] = []
        for dep_key, holders, dep_nbytes in deps:
            if dep_key in self.held:  # pinned while the task needs it, even if freed
                self.users.setdefault(dep_key, set()).add(key)
                continue
            if self.address in holders:  # the scheduler's replica here is stale
                lacking.append(dep_key)
                continue
            ts.missing.add(dep_key)
            self.waiters.setdefault(dep_key, set()).add(key)
            known = self.holders.setdefault(dep_key, [])
            for h in holders:
                if h not in known and h != self.address:
                    known.append(h)
            if dep_key not in self.in_flight:
                peer = self._pick_holder(dep_key)
                if peer is not None:
                    fetch_by_peer.setdefault(peer, []).append(dep_key)
                    sizes[dep_key] = dep_nbytes
                    self.in_flight[dep_key] = peer
        if lacking:
            self._lacks_inputs(ts, lacking)
            fetch_by_peer = {p: [k for k in ks if self.in_flight.get(k) == p]
                             for p, ks in fetch_by_peer.items()}
        for peer, keys in fetch_by_peer.items():
            if keys:
                self._out.append(Fetch(peer, keys, {k: sizes[k] for k in keys}))
        if lacking:
            return
        if not ts.missing:  # its inputs are all here: one row, straight to executing
            self._run(ts, "released", "compute-task")
        else:
            self.log.append((key, "released", "waiting", "compute-task", self._now))
            for dep_key in list(ts.missing):
                if dep_key not in self.in_flight:
                    self._give_up(dep_key)

    def _lacks_inputs(self, ts: _Task, keys: list[Key]) -> None:
        """The scheduler listed this worker as holding ``keys``, which it does not: name
        this worker as the holder that lacks them (so the scheduler drops that replica and
        recomputes or fetches elsewhere; naming no one made it send ``ts`` straight back,
        forever) and forget ``ts`` until it is sent again."""
        for dep in keys:
            self._out.append(Report(MissingData(dep, self.address, ts.key)))
        del self.tasks[ts.key]
        for dep in ts.deps:
            self._forget_waiter(dep, ts.key)
            self._unuse(dep, ts.key)

    def _forget_waiter(self, dep: Key, tkey: Key) -> None:
        """``tkey`` no longer waits for input ``dep``. Once nothing does, its fetch is
        forgotten: a later task needing ``dep`` fetches it afresh (from the holders it is
        given) instead of waiting on a fetch nobody tracks; a copy the old fetch still
        brings is dropped on arrival, or ignored if a newer one came first."""
        waiting = self.waiters.get(dep)
        if waiting is None:
            return
        waiting.discard(tkey)
        if not waiting:
            del self.waiters[dep]
            self.holders.pop(dep, None)
            self.in_flight.pop(dep, None)

    def _pick_holder(self, key: Key) -> str | None:
        """A holder that has not failed us before, else any holder still listed (each
        holder is dropped from a key's list after one failed try, so this terminates)."""
        holders = self.holders.get(key, [])
        for h in holders:
            if h not in self.bad_peers:
                return h
        return holders[0] if holders else None

    def _run(self, ts: _Task, start: str = "waiting", cause: str = "gather-dep-success") -> None:
        ts.state = "executing"
        self._out.append(Execute(ts.key, ts.payload, ts.priority, ts.send_inline, ts.deps))
        self.log.append((ts.key, start, "executing", cause, self._now))

    def _on_done(self, ev: ExecuteDone) -> None:
        ts = self.tasks.pop(ev.key, None)
        if ts is None:
            return
        for dep in ts.deps:
            self._unuse(dep, ts.key)
        if ts.state == "cancelled":
            self.log.append((ev.key, "cancelled", "released", "task-finished", self._now))
            # Its result, or the copy it would have replaced; not a fetched copy in use.
            if ev.key not in self.held and (ev.error is None or ev.key in self.shadowed):
                self._out.append(Drop([ev.key]))
            self.shadowed.discard(ev.key)
            return
        if ev.error is not None:
            self.log.append((ev.key, "executing", "error", "task-erred", self._now))
            if ev.key in self.shadowed:  # the copy this run would have replaced goes
                self.shadowed.discard(ev.key)
                self._out.append(Drop([ev.key]))
            if ev.error.get("kind") == "reschedule":  # raised Reschedule: not a failure
                self._out.append(Report(TaskRescheduled(ev.key, ts.run)))
            else:
                self._out.append(Report(TaskErred(ev.key, ev.error, ev.start, ev.stop,
                                                  ev.thread, ts.run)))
            return
        self.shadowed.discard(ev.key)
        self.held[ev.key] = ev.nbytes
        self.assigned.add(ev.key)
        self.log.append((ev.key, "executing", "memory", "task-finished", self._now))
        drop = ts.drop
        self._out.append(
            Report(TaskDone(ev.key, ev.nbytes, ev.typename, ev.start, ev.stop, ev.thread,
                            ev.inline, ts.run, self._drop_read(drop) if drop else (),
                            ev.pickled_type))
        )
        if ev.key in self.waiters:
            self._arrived_otherwise(ev.key)

    def _drop_read(self, keys: tuple[Key, ...]) -> tuple[Key, ...]:
        """Drop the inputs a task that just succeeded read last (``Compute.drop``: the
        scheduler knew of nothing else needing them), unless a local task still uses one
        (assigned here since); returns those dropped, for the task's ``TaskDone``."""
        out = []
        held, assigned, users = self.held, self.assigned, self.users
        for key in keys:
            if key in assigned and key in held and key not in users and key not in self.tasks:
                assigned.discard(key)
                del held[key]
                out.append(key)
        if not out:
            return ()
        self._out.append(Drop(out))
        return tuple(out)

    def _arrived_otherwise(self, key: Key) -> None:
        """``key`` came to be held here while local tasks were fetching it (the scheduler,
        thinking it lost, had it computed or stored here): they take this copy, and the
        fetch's late answer or failure changes nothing."""
        self.in_flight.pop(key, None)
        self.holders.pop(key, None)
        users = self.users.setdefault(key, set())
        for tkey in self.waiters.pop(key, set()):
            ts = self.tasks.get(tkey)
            if ts is None or ts.state != "waiting":
                continue
            users.add(tkey)
            ts.missing.discard(key)
            if not ts.missing:
                self._run(ts)

    def _unuse(self, dep: Key, user: Key) -> None:
        users = self.users.get(dep)
        if users is None:
            return
        users.discard(user)
        if not users:
            del self.users[dep]
            if dep in self.held and dep not in self.assigned:
                del self.held[dep]
                self._drop_copy(dep)

    def _drop_copy(self, key: Key) -> None:
        """Drop a fetched copy of ``key`` nobody here needs, unless a run of ``key`` here
        writes its result into the same slot of the store (maybe already): a Drop now
        could delete that result. Then the result replaces the copy, or the run's failed
        end drops it (``shadowed``)."""
        run = self.tasks.get(key)
        if run is None or run.state == "waiting":
            self._out.append(Drop([key]))
        else:
            self.shadowed.add(key)

    def _on_fetched(self, ev: FetchDone) -> None:
        total = 0
        told, now = self.log.append, self._now
        for key, nbytes in ev.got.items():
            told((key, "flight", "memory", "gather-dep-success", now))
            self.in_flight.pop(key, None)
            total += nbytes
            waiting = self.waiters.pop(key, set())
            self.holders.pop(key, None)
            if key in self.held and not waiting:
                continue  # a second copy of a value held (and maybe in use): keep the first
            if not waiting and key not in self.assigned:
                self._drop_copy(key)
                continue
            self.held[key] = nbytes
            users = self.users.setdefault(key, set())
            for tkey in waiting:
                ts = self.tasks.get(tkey)
                if ts is None or ts.state != "waiting":
                    continue
                users.add(tkey)
                ts.missing.discard(key)
                if not ts.missing:
                    self._run(ts)
            if not users and key not in self.assigned:
                self.users.pop(key, None)
                self.held.pop(key, None)
                self._drop_copy(key)
        if ev.got:
            self._out.append(Report(Transfer(list(ev.got), ev.peer, total, ev.start, ev.stop)))
        for key, error in ev.errors.items():
            self._input_unsendable(key, error)
        self._retry_elsewhere(ev.peer, ev.missing)

    def _input_unsendable(self, key: Key, error: dict[str, Any]) -> None:
        """An input exists but cannot be serialized: the tasks needing it fail with that
        (fetching it again, or recomputing it, would fail the same way)."""
        self.in_flight.pop(key, None)
        for ts in self._drop_waiting_on(key):
            self._out.append(
                Report(TaskErred(ts.key, {**error, "key": ts.key}, 0.0, 0.0, -1, ts.run))
            )

    def _on_fetch_failed(self, ev: FetchFailed) -> None:
        for key in ev.keys:
            self.log.append((key, "flight", "fetch", "gather-dep-failed", self._now))
        self.bad_peers.add(ev.peer)
        self._retry_elsewhere(ev.peer, ev.keys)

    def _retry_elsewhere(self, peer: str, keys: list[Key]) -> None:
        by_peer: dict[str, list[Key]] = {}
        for key in keys:
            if self.in_flight.get(key, peer) != peer:
                continue  # a forgotten fetch failed; the key's current fetch is elsewhere
            self.in_flight.pop(key, None)
            holders = self.holders.get(key, [])
            if peer in holders:
                holders.remove(peer)
                self._report_missing(key, peer)
            if not self.waiters.get(key):
                continue
            nxt = self._pick_holder(key)
            if nxt is None:
                self._give_up(key)
            else:
                self.in_flight[key] = nxt
                by_peer.setdefault(nxt, []).append(key)
        for p, ks in by_peer.items():
            self._out.append(Fetch(p, ks))

    def _report_missing(self, key: Key, holder: str) -> None:
        for tkey in self.waiters.get(key, ()):
            self._out.append(Report(MissingData(key, holder, tkey)))
            break

    def _give_up(self, key: Key) -> None:
        """No holder is left for an input: drop the tasks that need it; the scheduler
        (told by MissingData) recomputes the input and sends the tasks again."""
        for ts in self._drop_waiting_on(key):
            self._out.append(Report(MissingData(key, "", ts.key)))

    def _drop_waiting_on(self, key: Key) -> list[_Task]:
        """Forget the tasks waiting for input ``key`` (and their claims on other inputs);
        returns them."""
        self.holders.pop(key, None)
        dropped = []
        for tkey in self.waiters.pop(key, set()):
            ts = self.tasks.pop(tkey, None)
            if ts is None:
                continue
            dropped.append(ts)
            for dep in ts.deps:
                if dep != key:
                    self._forget_waiter(dep, tkey)
                    self._unuse(dep, tkey)
        return dropped

    def _on_freed(self, keys: list[Key]) -> None:
        told, now = self.log.append, self._now
        for key in keys:  # tasks first: a queued or running task pins its inputs
            ts = self.tasks.get(key)
            if ts is None:
                continue
            told((key, ts.state, "cancelled" if ts.state == "executing" else "released",
                  "free-keys", now))
            if ts.state == "executing":
                # Its inputs stay pinned (users) until it ends: the executor may not have
                # read them yet, and the task may be assigned here again (revived).
                ts.state = "cancelled"
            elif ts.state == "waiting":
                del self.tasks[key]
                for dep in ts.deps:
                    self._forget_waiter(dep, key)
                    self._unuse(dep, key)
        drop = []
        for key in keys:
            self.assigned.discard(key)
            if key in self.held and not self.users.get(key):
                del self.held[key]
                self.users.pop(key, None)
                drop.append(key)
                told((key, "memory", "released", "free-keys", now))
        if drop:
            self._out.append(Drop(drop))

    def validate(self) -> None:
        for key, ts in self.tasks.items():
            assert ts.key == key
            if ts.state == "waiting":
                assert ts.missing, key
                for dep in ts.missing:
                    assert key in self.waiters.get(dep, ()), (key, dep)
        for key in self.in_flight:
            assert key not in self.held, key
            assert self.waiters.get(key), key  # nobody waits: the fetch is forgotten
