"""A thin driver for ``SchedulerState``: builds events with sensible defaults so tests read
as scenarios. It only constructs events; every decision stays in the state machine."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from shoal.protocol._errors import exception_to_error
from shoal.protocol._serialize import Serialized
from shoal.scheduler._events import (
    ClientJoined,
    Command,
    DataMissing,
    DataScattered,
    ExecutionStarted,
    GraphSubmitted,
    KeysCancelled,
    KeysReleased,
    KeysRetried,
    LogEvent,
    ScatterAcked,
    Seceded,
    SendCompute,
    SendStore,
    TaskFailed,
    TaskFinished,
    WorkerJoined,
    WorkerLeft,
    WorkerRetiring,
)
from shoal.scheduler._state import SchedulerState

PAYLOAD = Serialized([b"x"])


def row(
    key: Any,
    deps: Sequence[Any] = (),
    *,
    priority: Any = (0,),
    retries: int = 0,
    workers: Sequence[str] | None = None,
    prefix: str | None = None,
    fids: Sequence[str] = (),
    payload: Serialized | None = PAYLOAD,
) -> tuple[Any, ...]:
    """One task row as the client submits it."""
    return (key, payload, list(deps), tuple(fids), priority, retries, workers, prefix)


def error_for(key: Any, exc: BaseException | None = None, worker: str = "w1") -> dict[str, Any]:
    """The error dict a worker sends when ``key`` raised ``exc``."""
    exc = exc if exc is not None else ZeroDivisionError("division by zero")
    try:
        raise exc
    except BaseException as caught:
        return exception_to_error(caught, caught.__traceback__, key, worker, 1.0)


def computes(cmds: Iterable[Command]) -> list[tuple[str, Any]]:
    """(worker, key) of every SendCompute, in order."""
    return [(c.worker, c.key) for c in cmds if isinstance(c, SendCompute)]


def of(cmds: Iterable[Command], kind: type) -> list[Any]:
    return [c for c in cmds if isinstance(c, kind)]


def tasks_only(cmds: list[Command]) -> list[Command]:
    """``cmds`` but the events said for ``get_events`` (membership, client actions: their
    own tests read them)."""
    return [c for c in cmds if type(c) is not LogEvent]


class Sim:
    """Feeds events to one ``SchedulerState`` on behalf of client ``c`` and workers."""

    def __init__(self, state: SchedulerState, client: str = "c") -> None:
        self.state = state
        self.client = client
        self.now = 0.0
        state.handle(ClientJoined(client))

    # join, leave and retire return their commands without the membership events
    # (LogEvent, tested in test_membership_events.py): the tests here are about tasks.

    def join(
        self, address: str, nthreads: int = 1, name: str | None = None, *,
        host: str = "host", resources: dict[str, float] | None = None, ready: bool = True,
    ) -> list[Command]:
        """A worker joins; ``ready``: it then says it is ready to run tasks (a worker
        process's empty start notice once its background imports are done)."""
        out = tasks_only(self.state.handle(
            WorkerJoined(address, name or address, nthreads, 2**30, 1, host, self.now, resources)
        ))
        if ready:
            out += tasks_only(self.state.handle(ExecutionStarted(address, [], [])))
        return out

    def leave(self, address: str, reason: str = "gone") -> list[Command]:
        return tasks_only(self.state.handle(WorkerLeft(address, reason, self.now)))

    def retire(self, address: str, reason: str = "closing") -> list[Command]:
        return tasks_only(self.state.handle(WorkerRetiring(address, reason)))

    def started(self, worker: str, *keys: Any, runs: Sequence[int] | None = None
                ) -> list[Command]:
        """``worker`` began running ``keys``, for ``runs`` (by default: their current runs)."""
        if runs is None:
            runs = [self.run_of(k) for k in keys]
        return self.state.handle(ExecutionStarted(worker, list(keys), list(runs)))

    def submit(
        self, rows: Sequence[tuple[Any, ...]], wanted: Sequence[Any] | None = None,
        restrictions: dict[Any, tuple[dict[str, float] | None, bool]] | None = None,
    ) -> list[Command]:
        if wanted is None:
            wanted = [r[0] for r in rows]
        return tasks_only(self.state.handle(
            GraphSubmitted(self.client, list(rows), list(wanted), [], restrictions or {})
        ))

    def finish(
        self,
        key: Any,
        worker: str | None = None,
        *,
        nbytes: int = 8,
        duration: float = 0.001,
        typename: str = "int",
        inline: Serialized | None = None,
        run: int | None = None,
    ) -> list[Command]:
        """``worker`` (by default: the one running it) reports ``key`` done, for ``run`` (by
        default: the key's current run, as a faithful worker would)."""
        if worker is None:
            ws = self.state.tasks[key].processing_on
            assert ws is not None, f"{key!r} is not processing"
            worker = ws.address
        start = self.now
        self.now += duration
        return self.state.handle(
            TaskFinished(worker, key, nbytes, typename, start, self.now, 0, inline,
                         self.run_of(key) if run is None else run)
        )

    def fail(
        self, key: Any, worker: str | None = None, exc: BaseException | None = None,
        run: int | None = None,
    ) -> list[Command]:
        if worker is None:
            ws = self.state.tasks[key].processing_on
            assert ws is not None, f"{key!r} is not processing"
            worker = ws.address
        error = error_for(key, exc, worker)
        return self.state.handle(TaskFailed(worker, key, error, self.now, self.now + 0.001, 0,
                                            self.run_of(key) if run is None else run))

    def seceded(self, worker: str, key: Any, duration: float, run: int | None = None
                ) -> list[Command]:
        """``key``'s run on ``worker`` left its thread (by default: its current run)."""
        return self.state.handle(
            Seceded(worker, key, duration, self.run_of(key) if run is None else run)
        )

    def run_of(self, key: Any) -> int:
        """The run id of ``key``'s latest assignment (0 for a key the scheduler forgot)."""
        ts = self.state.tasks.get(key)
        return 0 if ts is None else ts.run

    def release(self, *keys: Any) -> list[Command]:
        return self.state.handle(KeysReleased(self.client, list(keys)))

    def cancel(self, *keys: Any, force: bool = False) -> list[Command]:
        return tasks_only(self.state.handle(KeysCancelled(self.client, list(keys), force)))

    def retry(self, *keys: Any) -> list[Command]:
        return tasks_only(self.state.handle(KeysRetried(self.client, list(keys))))

    def scatter(
        self,
        items: Sequence[tuple[Any, int]],
        workers: Sequence[str] | None = None,
        broadcast: bool = False,
        ack: bool = True,
    ) -> list[Command]:
        """The client scatters ``(key, nbytes)`` items; with ``ack`` every worker told to
        store one acknowledges it at once (the commands of both steps are returned)."""
        rows = [(k, nb, "ndarray") for k, nb in items]
        out = tasks_only(self.state.handle(
            DataScattered(self.client, rows, list(workers) if workers else None, broadcast)
        ))
        if ack:
            for cmd in of(out, SendStore):
                out = out + self.ack(cmd.worker, cmd.key)
        return out

    def ack(self, worker: str, key: Any, error: dict[str, Any] | None = None) -> list[Command]:
        """``worker`` reports that it holds scattered ``key`` (or could not load it)."""
        return self.state.handle(ScatterAcked(worker, key, error))

    def missing(self, worker: str, key: Any, holder: str, for_key: Any) -> list[Command]:
        return self.state.handle(DataMissing(worker, key, holder, for_key))

    def states(self, *keys: Any) -> list[str]:
        return [self.state.tasks[k].state if k in self.state.tasks else "forgotten" for k in keys]
