"""Messages into :class:`~shoal.scheduler._server.Scheduler`, as events.

Owns: connections (the ``Hello`` handshake, local in-process clients), client messages
(graphs with their function blobs, releases, cancels, retries, scatters, requests,
coordination and side-machine messages), worker messages (registration and admission,
task reports, heartbeats), and a worker's connection closing. Each message becomes an
event for the state (applied by ``_server_commands``) or goes to the part that owns it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any

from shoal._versions import required_versions
from shoal.comm import Connection, inproc_pair
from shoal.comm._tcp import TCPConnection
from shoal.protocol._errors import scheduler_error
from shoal.protocol._messages import (
    PROTOCOL_VERSION,
    CancelKeys,
    DatasetGet,
    DatasetList,
    DatasetPublish,
    DatasetUnpublish,
    FireAndForget,
    GraphAnnotations,
    Heartbeat,
    Hello,
    KeyErred,
    MemoryPaused,
    MemoryTerminated,
    Message,
    MissingData,
    NannyMemoryTerminated,
    NannyWorkerExited,
    PluginSetup,
    Register,
    RegisterReply,
    ReleaseKeys,
    Request,
    Response,
    RetireAsked,
    RetryKeys,
    Scatter,
    ScatterStored,
    SpanTasks,
    TaskDone,
    TaskErred,
    TaskRescheduled,
    TasksDone,
    TaskSeceded,
    TasksStarted,
    TopicGet,
    TopicLog,
    TopicSubscribe,
    Transfer,
    UpdateGraph,
    WorkerGoodbye,
)
from shoal.protocol._serialize import check_function_blob
from shoal.scheduler import _topics as topics
from shoal.scheduler._events import (
    ClientJoined,
    ClientLeft,
    DataMissing,
    DataScattered,
    ExecutionStarted,
    FireAndForgetAsked,
    GraphSubmitted,
    HeartbeatReceived,
    KeysCancelled,
    KeysReleased,
    KeysRetried,
    RescheduleAsked,
    ScatterAcked,
    Seceded,
    SpanSubmitted,
    TaskFailed,
    TaskFinished,
    TasksFinished,
    TransferDone,
    WorkerJoined,
    WorkerLeft,
    WorkerMemoryKilled,
    WorkerPaused,
    WorkerRetiring,
)
from shoal.scheduler._server_base import ShellBase
from shoal.scheduler.coordination._shell import CHANNEL_ROLE
from shoal.scheduler.coordination._shell import MESSAGES as COORDINATION_MESSAGES

# How a scatter that found no worker to hold its data fails (the client raises TimeoutError).
NO_WORKERS_TO_SCATTER = "No valid workers found to hold the scattered data"


def _connect_timeout() -> float:
    """dask's ``distributed.comm.timeouts.connect`` (30 s by default)."""
    import dask.config
    from dask.utils import parse_timedelta

    value = dask.config.get("distributed.comm.timeouts.connect", "30s")
    return float(parse_timedelta(value, default="s") or 30.0)


logger = logging.getLogger("shoal.scheduler")

# Messages handled by the topics and datasets machines rather than the task state.
_SIDE_MESSAGES = frozenset({TopicLog, TopicSubscribe, TopicGet, DatasetPublish,
                            DatasetUnpublish, DatasetGet, DatasetList})


def _restrictions(
    rows: list[tuple[Any, Any, Any]] | None,
) -> dict[Any, tuple[dict[str, float] | None, bool]]:
    """UpdateGraph's (key, resources, allow_other_workers) rows as GraphSubmitted wants them."""
    return {key: (dict(need) if need else None, bool(loose)) for key, need, loose in rows or ()}


# Reports of a worker's batch handled per step (10-100 µs each: a finished task frees its
# inputs and sends its dependents; a turn takes steps up to its budget, see _turns): a
# message counts one, a TasksDone one per row.
WORKER_STEP = 200


def first_step(batch: list[Message]) -> tuple[list[Message], list[Message] | None]:
    """The first ``WORKER_STEP`` reports of a worker's batch, and the rest (None if there is
    none); a ``TasksDone`` across the cut is cut between its rows."""
    if len(batch) == 1 and type(batch[0]) is not TasksDone:  # a lone report (a round trip's)
        return batch, None
    weight = 0
    for i, msg in enumerate(batch):
        weight += len(msg.keys) if type(msg) is TasksDone else 1  # type: ignore[attr-defined]
        if weight > WORKER_STEP:
            if type(msg) is not TasksDone:
                return batch[:i], batch[i:]
            assert isinstance(msg, TasksDone)
            keep = len(msg.keys) - (weight - WORKER_STEP)
            head, tail = split_done(msg, keep)
            return [*batch[:i], head], [tail, *batch[i + 1:]]
    return batch, None


def split_done(msg: TasksDone, k: int) -> tuple[TasksDone, TasksDone]:
    """``msg``'s first ``k`` rows, and the others (0 < k < rows)."""
    cols = msg._fields_of(msg)
    return TasksDone(*(c[:k] for c in cols)), TasksDone(*(c[k:] for c in cols))


class ServerMessages(ShellBase):
    """Connections and the messages arriving on them."""

    # --- connections --------------------------------------------------------------------------

    def connect_local_client(self, name: str) -> Connection:
        """An in-process connection for a client living in this process and loop."""
        client_end, server_end = inproc_pair(name, "scheduler")
        server_end.info["role"] = "client"
        server_end.info["name"] = name
        server_end.info["client_id"] = name
        self._clients[name] = server_end
        server_end.set_handler(self._on_client_message)
        logger.info("receive client connection: %s", name)
        self._apply([ClientJoined(name)])
        self._apply_side(self.topics, [topics.SubscriberJoined(name)])
        self._hook("add_client", scheduler=self, client=name)
        return client_end

    def _on_connection(self, conn: TCPConnection) -> None:
        conn.set_handler(self._on_first_message)

    def _on_first_message(self, conn: Connection, batch: list[Message] | None) -> None:
        if batch is None:
            return
        first, rest = batch[0], batch[1:]
        if not isinstance(first, Hello) or first.version != PROTOCOL_VERSION:
            logger.error(
                "closing connection from %s: expected a shoal hello (protocol %d), got %r",
                conn.peer, PROTOCOL_VERSION, first,
            )
            conn.close()
            return
        if first.role == "worker":
            conn.info["role"] = "worker"
            conn.set_handler(self._on_worker_batch)
        elif first.role == "client":
            name = f"{first.name}-{next(self._ids)}"
            # A reconnect: its old session goes first; and any attempt (the first
            # connection's too) drops the sessions of earlier attempts never welcomed.
            self._client_reconnected(first.name, first.previous, name)
            conn.info["role"] = "client"
            conn.info["name"] = name
            conn.info["client_id"] = first.name
            conn.info["previous"] = first.previous  # (see _client_reconnected)
            self._clients[name] = conn
            conn.set_handler(self._on_client_message)
            logger.info("receive client connection: %s", name)
            self._apply([ClientJoined(name, first.name)])
            self._apply_side(self.topics, [topics.SubscriberJoined(name)])
            self._hook("add_client", scheduler=self, client=first.name)  # dask names it by Client.id
            conn.send(Response(0, True, {"client": name, "address": self.address,
                                         "packages": required_versions()}))
        elif first.role == "nanny":  # a nanny's word about its worker process
            conn.info["role"] = "nanny"
            conn.set_handler(self._on_nanny_message)
        elif first.role == CHANNEL_ROLE:  # a task thread's Lock/Semaphore channel
            self.coordination.accept_channel(conn, first, f"{first.name}-{next(self._ids)}")
        else:
            logger.error("closing connection from %s: unknown role %r", conn.peer, first.role)
            conn.close()
            return
        if rest:
            conn._handler(conn, rest)  # type: ignore[misc]

    def _on_nanny_message(self, conn: Connection, batch: list[Message] | None) -> None:
        """A nanny is killing its worker for memory: noted (the worker's KilledWorker says
        so), then answered, so that the kill, and the worker's loss, come after. Or its
        worker's process exited unasked: removed now if it was not yet, then the nanny is
        told whether it was retired (and so is not to be restarted); from then on a
        ``retire_workers`` no longer sees it, so the two never disagree."""
        for msg in batch or ():
            if isinstance(msg, NannyWorkerExited):
                ws = self.state.workers.get(msg.worker)
                if msg.worker in self._workers and ws is not None and ws.pid == msg.pid:
                    self._worker_gone(msg.worker, "its nanny saw its process exit")
                conn.send(Response(msg.request_id, True, msg.worker in self.retired))
                continue
            if not isinstance(msg, NannyMemoryTerminated):
                logger.error("closing nanny connection from %s: a nanny may not send %r",
                             conn.peer, msg.tag)
                conn.close()
                return
            if msg.worker in self._workers:
                self._apply([WorkerMemoryKilled(msg.worker, msg.process, msg.limit,
                                                msg.fraction)])
            conn.send(Response(msg.request_id, True, None))

    # --- client messages ------------------------------------------------------------------------

    def _client_reconnected(self, client_id: str, previous: str, name: str) -> None:
        """Client ``client_id`` opens session ``name`` in place of its session ``previous``.
        If that one is still here, its connection still looks open: a half-open link (the
        client's host saw it drop; this side hears of it only from TCP keepalive, ~30 s),
        meanwhile holding its keys, running its work and keeping its leases. It is dropped
        now, as if its connection had closed, and the connection closed; anything that
        still arrives on it is ignored (``_on_client_message``). Never another client's
        session: one whose client id differs is left alone.

        So are the sessions of this client's earlier attempts to reconnect whose welcome
        never reached it: every attempt of one outage names the same ``previous`` (the last
        session welcomed), so a session of the same client id opened naming it is one of
        those (the client never learnt its name); only that client could name ``previous``,
        a name the scheduler gave its welcome alone. The same holds for the attempts of a
        client's first connection (no ``previous``): a client's id is unique to it
        (``Client-<uuid>``), and it opens one session at a time."""
        old = self._clients.get(previous) if previous else None
        if old is not None and old.info.get("client_id") != client_id:
            logger.warning("client %s named session %s, which another client opened, as its "
                           "previous session; leaving that session alone", client_id, previous)
            return
        stale = [] if old is None else [previous]
        stale += [n for n, c in self._clients.items()
                  if c.info.get("previous") == previous and c.info.get("client_id") == client_id]
        for gone in stale:
            conn = self._clients[gone]
            logger.warning("client %s connected again (new session %s) while the connection "
                           "of its session %s still looked open (a half-open link%s); dropping "
                           "that session and its work now", client_id, name, gone,
                           "" if gone == previous else ", of an attempt whose welcome was lost")
            conn.info["replaced_by"] = name
            self._client_gone(gone)
            conn.close()

    def _client_gone(self, name: str) -> None:
        """Client session ``name`` ended: its keys, leases, subscriptions and hooks go."""
        conn = self._clients.pop(name, None)  # before the holder leaves: see receive_direct
        self._client_fids.pop(name, None)
        self.coordination.holder_left(name)
        logger.info("remove client %s", name)
        self._apply([ClientLeft(name)])
        self.plugin_host.graphs.forget(name)
        self._apply_side(self.topics, [topics.SubscriberLeft(name)])
        self._hook("remove_client", scheduler=self,
                   client=name if conn is None else conn.info.get("client_id", name))

    def _on_client_message(self, conn: Connection, batch: list[Message] | None) -> None:
        info = conn.info
        name = info["name"]
        if "replaced_by" in info:  # a session dropped for its client's new one
            if batch is not None:
                logger.warning("closing the old connection of client session %s, dropped "
                               "when its client reconnected as %s: it sent %d message(s) "
                               "after that, ignored", name, info["replaced_by"], len(batch))
                conn.close()
            return
        if batch is None:
            self._client_gone(name)
            return
        events: list[Any] = []
        try:
            for msg in batch:
                if isinstance(msg, UpdateGraph):
                    if msg.functions:
                        self._client_fids.setdefault(name, set()).update(msg.functions)
                        for fid, blob in msg.functions.items():
                            if fid not in self._functions:
                                check_function_blob(fid, blob)  # else: closes this connection
                                self._functions[fid] = blob
                    tasks = self._with_known_functions(conn, list(msg.tasks))
                    events.append(GraphSubmitted(name, tasks, list(msg.wanted),
                                                 list(msg.actors or ()),
                                                 _restrictions(msg.restrictions), msg.more,
                                                 msg.stream, msg.held))
                    if self.plugin_host.plugins:  # update_graph, once these events are in
                        self.plugin_host.graphs.piece(name, info.get("client_id", name), msg,
                                                      self.state.tasks, events[-1])
                elif isinstance(msg, ReleaseKeys):
                    events.append(KeysReleased(name, list(msg.keys)))
                elif isinstance(msg, CancelKeys):
                    events.append(KeysCancelled(name, list(msg.keys), msg.force))
                elif isinstance(msg, RetryKeys):
                    events.append(KeysRetried(name, list(msg.keys)))
                elif isinstance(msg, SpanTasks):
                    events.append(SpanSubmitted(tuple(msg.names), tuple(msg.ids),
                                                list(msg.keys)))
                elif isinstance(msg, FireAndForget):
                    events.append(FireAndForgetAsked(list(msg.keys)))
                elif type(msg) in _SIDE_MESSAGES:
                    if events:
                        self._apply(events)
                        events = []
                    self._on_side_message(name, msg)
                elif isinstance(msg, Scatter):
                    if events:
                        self._apply(events)
                        events = []
                    self._spawn(self._scatter(conn, name, msg))
                elif isinstance(msg, Request):
                    if events:
                        self._apply(events)
                        events = []
                    self._spawn(self._answer(conn, msg))
                elif type(msg) in COORDINATION_MESSAGES:
                    if events:
                        self._apply(events)
                        events = []
                    self.coordination.receive(name, msg)
                elif isinstance(msg, GraphAnnotations):  # (only update_graph reads them)
                    if self.plugin_host.plugins:
                        self.plugin_host.graphs.annotate(name, msg.stream, msg.annotations)
                elif isinstance(msg, Hello):
                    pass
                else:
                    raise TypeError(f"a client may not send {msg.tag!r}")
            if events:
                self._apply(events)
        except Exception as exc:
            logger.exception("closing client connection %s: bad message (%s)", name, exc)
            conn.close()

    def _with_known_functions(self, conn: Connection, rows: list[Any]) -> list[Any]:
        """Rows whose functions the scheduler has. A blob forgotten just before a client's
        submit that relied on it comes back from ``_forgotten``; a row whose function is
        unknown anyway fails its key rather than the whole batch (a shoal bug)."""
        functions = self._functions
        bad: dict[int, str] | None = None
        last: Any = None  # the rows of one call share their fids: looked at once
        missing: str | None = None  # the first of ``last`` the scheduler lacks
        for i, row in enumerate(rows):
            fids = row[3]
            if fids is not last:
                last, missing = fids, None
                for fid in fids:
                    if fid not in functions:
                        blob = self._forgotten.pop(fid, None)
                        if blob is not None:
                            functions[fid] = blob
                        elif missing is None:
                            missing = fid
            if missing is not None:
                bad = bad or {}
                bad[i] = missing
        if not bad:
            return rows
        for i, fid in bad.items():
            key = rows[i][0]
            logger.error("task %r refers to function %s, which the scheduler never received",
                         key, fid)
            conn.send(KeyErred(key, scheduler_error(
                "lost-data", "RuntimeError",
                f"task {key!r} runs function {fid!r}, which never reached the scheduler (a "
                "shoal bug); submit the task again", key,
            )))
        return [row for i, row in enumerate(rows) if i not in bad]

    async def _scatter(self, conn: Connection, name: str, msg: Scatter) -> None:
        if not self.state.workers:  # dask waits for one as long, then fails the same way
            limit = _connect_timeout()
            try:
                await self.wait_for_workers(1, limit)
            except TimeoutError:
                conn.send(Response(msg.request_id, False,
                                   f"{NO_WORKERS_TO_SCATTER} within {limit:g} s "
                                   "('distributed.comm.timeouts.connect'); start workers, or "
                                   "wait for them (client.wait_for_workers), and scatter again"))
                return
        for key, data, nbytes, _typename in msg.items:
            self._scattered[key] = (data, nbytes)
        self._apply([DataScattered(name, [(k, n, t) for k, _, n, t in msg.items],
                                   msg.workers, msg.broadcast)])
        if msg.broadcast:  # copies asked for: the active memory manager keeps them
            self.amm.wanted([k for k, *_ in msg.items],
                            len(msg.workers) if msg.workers else len(self.state.workers))
        conn.send(Response(msg.request_id, True, None))

    # --- worker messages ------------------------------------------------------------------------

    def _on_worker_batch(self, conn: Connection, batch: list[Message] | None) -> None:
        """A worker's batch, handled ``WORKER_STEP`` reports per step, and not past the loop
        turn's budget for reports (``_turns``): a worker running a fast graph reports
        thousands of finished tasks at once, and handling them in one go would hold the
        loop (and everything else waiting on it) for tens of ms. The rest follow in later
        turns (``_worker_steps``); the worker's later batches wait behind them, in order."""
        backlog: collections.deque[list[Message] | None] | None = conn.info.get("backlog")
        if backlog is not None:  # earlier messages of this worker still wait
            backlog.append(batch)
            return
        if batch is None:
            self._on_worker_message(conn, None)
            return
        turn = self._turn
        if turn.over():  # this turn's share is taken: all of it waits
            self._wait_turn(conn, collections.deque([batch]))
            return
        batch, rest = first_step(batch)
        if rest is not None:
            self._wait_turn(conn, collections.deque([rest]))
        since = turn.now()
        self._on_worker_message(conn, batch)
        turn.took(since)

    def _wait_turn(self, conn: Connection,
                   backlog: collections.deque[list[Message] | None]) -> None:
        conn.info["backlog"] = backlog
        self._waiting.append(conn)
        if not self._steps_armed:
            self._steps_armed = True
            asyncio.get_running_loop().call_soon(self._worker_steps)

    def _worker_steps(self) -> None:
        """A step of each waiting worker's reports in turn (round-robin: a worker with a
        long backlog does not hold back the others) until this loop turn's budget is spent;
        the rest in the next turn."""
        self._steps_armed = False
        waiting, turn = self._waiting, self._turn
        turn.open(turn.now())
        # ends: each pass handles a step of one backlog (at least one pass), and the
        # budget ends the turn's passes; nothing is added to a backlog meanwhile
        while waiting:
            conn = waiting.popleft()
            backlog: collections.deque[list[Message] | None] = conn.info["backlog"]
            batch = backlog.popleft()
            if batch is not None:
                batch, rest = first_step(batch)
                if rest is not None:
                    backlog.appendleft(rest)
            if backlog:
                waiting.append(conn)
            else:
                del conn.info["backlog"]
            self._on_worker_message(conn, batch)
            if turn.over():
                break
        if waiting and not self._steps_armed:
            self._steps_armed = True
            asyncio.get_running_loop().call_soon(self._worker_steps)

    def _on_worker_message(self, conn: Connection, batch: list[Message] | None) -> None:
        address = conn.info.get("address")
        if batch is None:
            if address is not None and self._workers.get(address) is conn:
                self._worker_gone(address, "connection closed")
            return
        if address is not None and self._workers.get(address) is not conn:
            return  # a worker already removed (restarted, retired): it has no say any more
        events: list[Any] = []
        joined = False
        try:
            for msg in batch:
                if isinstance(msg, Register):
                    if not self._admit(conn, msg):
                        return
                    address = msg.address
                    self.retired.pop(address, None)  # a new worker where a retired one was
                    joined = True
                    events.append(WorkerJoined(address, msg.name, msg.nthreads, msg.memory_limit,
                                               msg.pid, msg.host, time.monotonic(),
                                               msg.resources))
                    continue
                if address is None:
                    raise TypeError("a worker must register before anything else")
                if type(msg) is TasksDone:
                    if self.plugin_host.watching:  # its plugin hooks read one event per task
                        events.extend(TasksFinished(address, *msg._fields_of(msg)).rows())
                    else:
                        events.append(TasksFinished(address, *msg._fields_of(msg)))
                elif isinstance(msg, TaskDone):
                    events.append(TaskFinished(address, msg.key, msg.nbytes, msg.typename,
                                               msg.start, msg.stop, msg.thread, msg.inline,
                                               msg.run, msg.dropped, msg.pickled_type))
                elif isinstance(msg, TasksStarted):
                    events.append(ExecutionStarted(address, list(msg.keys), list(msg.runs)))
                elif isinstance(msg, WorkerGoodbye):
                    events.append(WorkerRetiring(address, msg.reason))
                elif isinstance(msg, TaskErred):
                    events.append(TaskFailed(address, msg.key, dict(msg.error), msg.start,
                                             msg.stop, msg.thread, msg.run))
                elif isinstance(msg, TaskRescheduled):
                    events.append(RescheduleAsked(address, msg.key, msg.run))
                elif isinstance(msg, Heartbeat):
                    events.append(HeartbeatReceived(address, msg.memory_process,
                                                    msg.memory_managed, msg.cpu, msg.executing,
                                                    time.monotonic(), msg.memory_spilled,
                                                    msg.memory_spilled_disk))
                elif isinstance(msg, MemoryPaused):
                    events.append(WorkerPaused(address, msg.paused))
                elif isinstance(msg, MemoryTerminated):
                    events.append(WorkerMemoryKilled(address, msg.process, msg.limit,
                                                     msg.fraction))
                elif isinstance(msg, ScatterStored):
                    events.append(ScatterAcked(address, msg.key,
                                               None if msg.error is None else dict(msg.error)))
                elif isinstance(msg, MissingData):
                    events.append(DataMissing(address, msg.key, msg.worker, msg.for_key))
                elif isinstance(msg, Transfer):
                    events.append(TransferDone(address, list(msg.keys), msg.peer, msg.nbytes,
                                               msg.start, msg.stop))
                elif isinstance(msg, TaskSeceded):
                    events.append(Seceded(address, msg.key, msg.duration, msg.run))
                elif isinstance(msg, TopicLog):
                    self._on_side_message(address, msg)
                elif isinstance(msg, Response):
                    self._on_run_response(address, msg)
                elif isinstance(msg, RetireAsked):
                    from shoal.scheduler._membership import retire_asked

                    self._spawn(retire_asked(self, address, msg.reason))  # type: ignore[arg-type]
                else:
                    raise TypeError(f"a worker may not send {msg.tag!r}")
        except Exception as exc:
            logger.error("closing worker connection %s: bad message (%s)", conn.peer, exc)
            conn.close()
            return
        if events:
            self._apply(events)
            if joined:
                self._worker_joined.set()
                if self.plugin_host.plugins:
                    for e in events:
                        if type(e) is WorkerJoined:
                            self._hook("add_worker", scheduler=self, worker=e.address)

    def _admit(self, conn: Connection, msg: Register) -> bool:
        """Accept a worker's registration unless another live connection holds its address
        (two processes claiming one address, or a reconnect racing its old connection's
        loss): taking over would hand the old worker's tasks and data to a stranger."""
        address = msg.address
        old = self._workers.get(address)
        if old is conn:
            raise TypeError(f"worker {address} registered twice on one connection")
        if (old is not None and not old.closed and msg.incarnation
                and old.info.get("incarnation") == msg.incarnation):
            # The same worker process reconnecting while its old connection still looks
            # open (half-open after a partition): it re-registers as a fresh worker anyway.
            logger.warning("worker %s reconnected; dropping its stale connection", address)
            old.close()
            self._worker_gone(address, "reconnected on a new connection")
            old = None
        if old is not None and not old.closed:
            reason = (
                f"a worker at {address} is already connected to this scheduler; if that worker "
                "is gone, it is dropped after its connection closes or its heartbeats stop "
                "(distributed.scheduler.worker-ttl)"
            )
            logger.warning("refusing worker registration from %s: %s", conn.peer, reason)
            conn.send(RegisterReply(False, reason))
            conn.close()
            return False
        if old is not None:  # closed, but its loss not handled yet: handle it first
            self._worker_gone(address, "connection closed")
        conn.info["address"] = address
        conn.info["incarnation"] = msg.incarnation
        self._workers[address] = conn
        self._worker_fids[address] = set()
        conn.send(RegisterReply(True, ""))
        logger.info("register worker %s (name %s, %d threads)", address, msg.name, msg.nthreads)
        # Before any task: a joining or restarted worker is set up like the others.
        for name, (plugin, kind) in self.plugin_host.for_workers.items():
            conn.send(PluginSetup(0, name, plugin, kind))
        return True

    def _worker_gone(self, address: str, reason: str) -> None:
        logger.info("remove worker %s: %s", address, reason)
        del self._workers[address]
        self._worker_fids.pop(address, None)
        self._apply([WorkerLeft(address, reason, time.monotonic())])
        self._fail_runs_for(address)
        self._hook("remove_worker", scheduler=self, worker=address, stimulus_id=f"worker-left-{address}")
