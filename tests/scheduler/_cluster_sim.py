"""A whole cluster in one process, for fuzzing: one ``SchedulerState``, several real
``WorkerState`` machines, and the wires between them, all driven by a seeded RNG.

The simulation plays the I/O shells: it turns scheduler commands into worker events and
worker reports into scheduler events, keeps each worker's data store (key -> nbytes), runs
``Execute`` orders (an "executor" reading its inputs from that store and writing its
result there before the loop hears of it) and answers ``Fetch``
orders from the peer's store. Every message travels on a FIFO wire per (sender, receiver)
pair, as over TCP; which wire moves next, when a task or fetch completes, and when a worker
dies are the RNG's choices, so interleavings across wires are arbitrary.

Hostile orders are opt-in ``features`` (see ``HOSTILE``): duplicated and stale (replayed)
worker reports, reports reordered on one wire, results and failures from runs that were
already freed, and fabricated missing-data reports naming any holder. ``drain`` then
delivers everything faithfully until nothing moves, so a test can check liveness.
"""

from __future__ import annotations

import random
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from _fuzzing import Defect, run_fuzzed

from shoal.protocol._columns import computes, tasks_done
from shoal.protocol._framing import decode, encode
from shoal.protocol._messages import (
    Compute,
    MissingData,
    ScatterStored,
    TaskDone,
    TaskErred,
    Transfer,
)
from shoal.protocol._serialize import Serialized
from shoal.scheduler import _amm as amm_machine
from shoal.scheduler import _placement as placement
from shoal.scheduler._events import (
    ClientJoined,
    ClientLeft,
    CloseWorker,
    Command,
    ContinueWork,
    DataMissing,
    DataScattered,
    DropScattered,
    ForgetFunctions,
    GraphSubmitted,
    HeartbeatReceived,
    KeysCancelled,
    KeysReleased,
    KeysRetried,
    LogEvent,
    ReplicasAdded,
    ReplicasDropped,
    ReportCancelled,
    ReportDone,
    ReportErred,
    ScatterAcked,
    SendCompute,
    SendFree,
    SendStore,
    TaskFailed,
    TaskFinished,
    TasksFinished,
    Tick,
    TransferDone,
    WorkerJoined,
    WorkerLeft,
    WorkResumed,
)
from shoal.scheduler._state import SchedulerState
from shoal.worker._state import (
    ComputeAssigned,
    ComputesAssigned,
    CopiesStored,
    DataStored,
    Drop,
    Execute,
    ExecuteDone,
    Fetch,
    FetchDone,
    FetchFailed,
    KeysFreed,
    Report,
    WorkerState,
)

PIECES = 0.3
PAYLOAD = Serialized([b"x"])
CLIENTS = ("alice", "bob")
ERROR = {
    "kind": "exception", "type": "builtins.ValueError", "message": "the task raised",
    "exception": None, "traceback": None, "tb_text": "",
}

# Hostile features, each one switchable on its own:
HOSTILE = frozenset({
    "duplicate",  # a worker report delivered twice
    "stale",  # an old report of a (possibly dead) worker replayed much later
    "reorder",  # two reports on one worker's wire swapped
    "missing",  # a MissingData report naming a random holder (or none) for a running task
    "freed-result",  # a worker's result or failure of a run freed there since arrives late
})


@dataclass
class SimWorker:
    address: str
    state: WorkerState
    store: dict[Any, int] = field(default_factory=dict)  # the shell's data: key -> nbytes
    executor: list[Execute] = field(default_factory=list)  # Execute orders not yet run
    # Runs whose result is in the store but whose ExecuteDone has not reached the loop yet
    # (a task thread writes the value first): other events may come in between.
    finished: list[ExecuteDone] = field(default_factory=list)
    fetches: list[Fetch] = field(default_factory=list)  # Fetch orders not yet answered
    inbox: deque[Any] = field(default_factory=deque)  # scheduler -> worker wire
    outbox: deque[Any] = field(default_factory=deque)  # worker -> scheduler wire
    freed: set[Any] = field(default_factory=set)  # keys the scheduler freed here (ever)


def invariant(exc: AssertionError) -> str:
    """The failed ``assert`` line of a ``validate()`` and its message."""
    line = traceback.extract_tb(exc.__traceback__)[-1].line
    return f"`{line}` ({exc})"


class ClusterSim:
    def __init__(self, seed: int, features: frozenset[str] = HOSTILE,
                 columns: bool = False, amm: bool = False) -> None:
        unknown = features - HOSTILE
        if unknown:
            raise ValueError(f"unknown fuzz features {sorted(unknown)}; known: {sorted(HOSTILE)}")
        self.seed = seed
        self.features = features
        # Whether the wires carry the columnar batches, as the real shells send them: a
        # worker's consecutive computes of one scheduler step as one ``Computes``, and
        # consecutive results at the head of a worker's wire as one ``TasksDone`` (both
        # through the real encoder and decoder). Draws nothing from the RNG.
        self.columns = columns
        self.rng = random.Random(seed)
        # Whether a submission is a piece of a larger graph: drawn apart, so that the
        # other draws (and the seeds known to find defects) stay as they were.
        self.piece_rng = random.Random(seed + 0x9E37)
        # The Active Memory Manager: copies made on purpose (``ReplicasAdded``, as for
        # replicate) and passes of the real AMM machine, drawn apart for the same reason.
        self.amm = amm_machine.ActiveMemoryManager(step=3 * amm_machine.FULL) if amm else None
        self.amm_rng = random.Random(seed + 0xA33)
        self.state = SchedulerState(allowed_failures=self.rng.choice([1, 3]), worker_ttl=30.0)
        self.workers: dict[str, SimWorker] = {}
        self.n_keys = 0
        # Per client, the wanted keys of a graph still arriving in pieces (``more=True``):
        # its last piece names them.
        self.arriving: dict[str, list[Any]] = {}
        self.n_workers = 0
        self.now = 0.0
        self.history: list[tuple[str, Any]] = []  # every worker report ever sent (for "stale")
        self.trace: list[str | tuple[str, Any]] = []  # see _fuzzing.said
        self._moved: set[Any] = set()  # keys that entered or left memory in the last batch
        self.handle(*(ClientJoined(c) for c in CLIENTS))

    # --- plumbing ---------------------------------------------------------------------------

    def handle(self, *events: Any) -> None:
        """Feed the scheduler; route its commands; check its invariants."""
        for ev in events:
            self.trace.append(("S<- ", ev))
        before = len(self.state._log)
        out = self.state.handle(*events)
        self._moved = {row[0] for row in list(self.state._log)[before:]
                       if "memory" in (row[1], row[2])}
        try:
            self.state.validate()
        except AssertionError as exc:
            raise Defect(f"the scheduler broke an invariant: {invariant(exc)}") from exc
        self._route(out)

    def _route(self, out: list[Command]) -> None:
        tasks = self.state.tasks
        resume = False
        pending: dict[str, list[SendCompute]] = {}  # columns: a worker's computes so far
        for cmd in out:
            if isinstance(cmd, (SendFree, SendStore, CloseWorker)) and cmd.worker in pending:
                # in order, before the free, store or close (as the scheduler's shell does)
                self._send_computes(pending.pop(cmd.worker))
            if isinstance(cmd, SendCompute):
                sw = self.workers.get(cmd.worker)
                if sw is None:
                    raise Defect(f"compute {cmd.key!r} sent to unknown worker {cmd.worker}")
                if self.columns:
                    pending.setdefault(cmd.worker, []).append(cmd)
                else:
                    msg = Compute(cmd.key, cmd.payload, cmd.deps, {}, cmd.priority,
                                  cmd.send_inline, cmd.prefix, cmd.run, cmd.drop)
                    sw.inbox.append(ComputeAssigned(msg))
                sw.freed.discard(cmd.key)
            elif isinstance(cmd, SendFree):
                sw = self.workers.get(cmd.worker)
                if sw is not None:
                    sw.inbox.append(KeysFreed(list(cmd.keys)))
                    sw.freed.update(cmd.keys)
            elif isinstance(cmd, SendStore):
                sw = self.workers.get(cmd.worker)
                if sw is None:
                    raise Defect(f"store {cmd.key!r} sent to unknown worker {cmd.worker}")
                sw.inbox.append(DataStored(cmd.key, 100))  # every scatter here is 100 bytes
                sw.freed.discard(cmd.key)
            elif isinstance(cmd, ReportDone):
                ts = tasks.get(cmd.key)
                # In memory now, or it was during this batch (and was lost again since).
                if (ts is None or ts.state != "memory") and cmd.key not in self._moved:
                    raise Defect(f"client told {cmd.key!r} is done but it is not in memory")
            elif isinstance(cmd, ReportErred):
                if not cmd.error.get("message"):
                    raise Defect(f"error report without a message for {cmd.key!r}")
            elif isinstance(cmd, CloseWorker):
                self._kill(cmd.worker, deliver=0, tell=False)
            elif isinstance(cmd, ContinueWork):  # the shell hands it back on a later step
                resume = True
            elif isinstance(cmd, LogEvent):  # membership said on topics, in dask's shapes
                if not cmd.topics or not cmd.msg.get("action"):
                    raise Defect(f"membership event without a topic or action: {cmd!r}")
            elif not isinstance(cmd, (ReportCancelled, DropScattered, ForgetFunctions)):
                raise Defect(f"unexpected scheduler command {cmd!r}")
        for cmds in pending.values():
            self._send_computes(cmds)
        if resume:
            self.handle(WorkResumed())

    def _send_computes(self, cmds: list[SendCompute]) -> None:
        """Columns: one worker's computes of one step, as the scheduler's shell sends them."""
        sw = self.workers[cmds[0].worker]
        if len(cmds) == 1:
            cmd = cmds[0]
            sw.inbox.append(ComputeAssigned(Compute(
                cmd.key, cmd.payload, cmd.deps, {}, cmd.priority, cmd.send_inline, cmd.prefix,
                cmd.run, cmd.drop)))
        else:
            sw.inbox.append(ComputesAssigned(through_wire(computes(cmds, {}))))

    def _worker_handle(self, sw: SimWorker, *events: Any) -> None:
        for ev in events:
            self.trace.append((f"{sw.address}<- ", ev))
        out = sw.state.handle(*events)
        try:
            sw.state.validate()
        except AssertionError as exc:
            raise Defect(f"{sw.address} broke a worker invariant: {invariant(exc)}") from exc
        for cmd in out:
            if isinstance(cmd, Execute):
                missing = [d for d in cmd.deps if d not in sw.state.held]
                if missing:
                    raise Defect(f"{sw.address} executes {cmd.key!r} without inputs {missing}")
                sw.executor.append(cmd)
            elif isinstance(cmd, Fetch):
                sw.fetches.append(cmd)
            elif isinstance(cmd, Drop):
                for key in cmd.keys:
                    sw.store.pop(key, None)
            elif isinstance(cmd, Report):
                sw.outbox.append(cmd.msg)
                if not isinstance(cmd.msg, ScatterStored):  # replays are of task reports
                    self.history.append((sw.address, cmd.msg))
            else:
                raise Defect(f"unexpected worker command {cmd!r}")
        lost = [k for k in sw.state.held if k not in sw.store]
        if lost:
            raise Defect(f"{sw.address} believes it holds {lost} but its store lacks them")

    def _to_scheduler(self, address: str, msg: Any) -> Any:
        if isinstance(msg, TaskDone):
            return TaskFinished(address, msg.key, msg.nbytes, msg.typename, msg.start,
                                msg.stop, msg.thread, msg.inline, msg.run, msg.dropped)
        if isinstance(msg, TaskErred):
            return TaskFailed(address, msg.key, dict(msg.error), msg.start, msg.stop, msg.thread,
                              msg.run)
        if isinstance(msg, MissingData):
            return DataMissing(address, msg.key, msg.worker, msg.for_key)
        if isinstance(msg, ScatterStored):
            return ScatterAcked(address, msg.key, None if msg.error is None else dict(msg.error))
        if isinstance(msg, Transfer):
            return TransferDone(address, list(msg.keys), msg.peer, msg.nbytes, msg.start, msg.stop)
        raise Defect(f"unexpected worker report {msg!r}")

    # --- the actors -------------------------------------------------------------------------

    def join(self) -> None:
        self.n_workers += 1
        address = f"tcp://w{self.n_workers}:1"
        self.workers[address] = SimWorker(address, WorkerState(address))
        self.handle(WorkerJoined(address, address, self.rng.randint(1, 3), 2**30, 1, "h",
                                 self.now))

    def _kill(self, address: str, deliver: int, tell: bool = True) -> None:
        """The worker dies; the first ``deliver`` reports it already wrote still arrive."""
        sw = self.workers.get(address)
        if sw is None:
            return
        for _ in range(min(deliver, len(sw.outbox))):
            self.handle(self._to_scheduler(address, sw.outbox.popleft()))
        del self.workers[address]
        if tell:
            self.handle(WorkerLeft(address, "killed", self.now))

    def submit(self, client: str) -> None:
        rng, tasks = self.rng, self.state.tasks
        known = [k for k in tasks if rng.random() < 0.5]
        rows: list[tuple[Any, ...]] = []
        batch: list[Any] = []
        for _ in range(rng.randint(1, 4)):
            self.n_keys += 1
            key = f"{rng.choice('xyz')}-{self.n_keys}"
            pool = known + batch
            deps = rng.sample(pool, k=min(len(pool), rng.randint(0, 3)))
            rows.append((key, PAYLOAD, deps, (), (rng.randint(0, 2), self.n_keys),
                         rng.choice([0, 0, 1]), None, key[0]))
            batch.append(key)
        wanted = [k for k in batch if rng.random() < 0.6] or batch[-1:]
        if self.piece_rng.random() < PIECES:  # a piece of a large graph: the rest comes in later steps
            self.arriving.setdefault(client, []).extend(wanted)
            self.handle(GraphSubmitted(client, rows, [], more=True, stream=1))
        elif client in self.arriving:  # the graph's last piece
            wanted += self.arriving.pop(client)
            self.handle(GraphSubmitted(client, rows, wanted, stream=1))
        else:
            self.handle(GraphSubmitted(client, rows, wanted))

    def resubmit(self, client: str) -> None:
        """The same key again: after release (a new computation) or while held."""
        keys = [k for k in self.state.tasks if self.rng.random() < 0.3] or list(self.state.tasks)
        if not keys:
            return
        key = self.rng.choice(keys)
        ts = self.state.tasks[key]
        deps = [d.key for d in ts.dependencies]
        row = (key, PAYLOAD, deps, (), (0, self.n_keys), 0, None, key[0])
        if self.rng.random() < 0.5:  # release and resubmit in one batch
            self.handle(KeysReleased(client, [key]), GraphSubmitted(client, [row], [key]))
        else:
            self.handle(GraphSubmitted(client, [row], [key]))

    def run_one(self, sw: SimWorker, fail: bool) -> None:
        """The executor runs one queued task (any of them: threads race)."""
        cmd = sw.executor.pop(self.rng.randrange(len(sw.executor)))
        missing = [d for d in cmd.deps if d not in sw.store]
        task = sw.state.tasks.get(cmd.key)
        if missing and (task is None or task.state != "cancelled"):
            raise Defect(f"{sw.address} ran {cmd.key!r} but inputs {missing} are gone "
                         "(a spurious KeyError for a correct program)")
        start, self.now = self.now, self.now + 0.01
        if missing:  # a cancelled run whose inputs were freed: its KeyError goes nowhere
            done = ExecuteDone(cmd.key, 0, "", start, self.now, 0, None,
                               {**ERROR, "type": "builtins.KeyError", "key": cmd.key})
        elif fail:
            done = ExecuteDone(cmd.key, 0, "", start, self.now, 0, None,
                               {**ERROR, "key": cmd.key})
        else:
            nbytes = self.rng.choice([8, 1000, placement.LOCALITY_BYTES * 2])
            sw.store[cmd.key] = nbytes
            done = ExecuteDone(cmd.key, nbytes, "int", start, self.now, 0, None, None)
        if self.rng.random() < 0.5:
            self._worker_handle(sw, done)
        else:
            sw.finished.append(done)

    def report_one(self, sw: SimWorker) -> None:
        self._worker_handle(sw, sw.finished.pop(self.rng.randrange(len(sw.finished))))

    def answer_fetch(self, sw: SimWorker) -> None:
        fetch = sw.fetches.pop(self.rng.randrange(len(sw.fetches)))
        peer = self.workers.get(fetch.peer)
        if peer is None:
            self._worker_handle(sw, FetchFailed(fetch.peer, list(fetch.keys)))
            return
        got = {k: peer.store[k] for k in fetch.keys if k in peer.store}
        for k, nb in got.items():
            sw.store[k] = nb
        missing = [k for k in fetch.keys if k not in got]
        self._worker_handle(sw, FetchDone(fetch.peer, got, missing, self.now, self.now))

    def deliver_to_worker(self, sw: SimWorker) -> None:
        ev = sw.inbox.popleft()
        if isinstance(ev, DataStored):
            sw.store[ev.key] = ev.nbytes
        self._worker_handle(sw, ev)

    def deliver_to_scheduler(self, sw: SimWorker) -> None:
        out = sw.outbox
        if self.columns and len(out) > 1 and type(out[0]) is TaskDone is type(out[1]):
            done = []
            while out and type(out[0]) is TaskDone:
                done.append(out.popleft())
            msg = through_wire(tasks_done(done))
            self.handle(TasksFinished(sw.address, *msg._fields_of(msg)))
            return
        self.handle(self._to_scheduler(sw.address, out.popleft()))

    # --- one random step ----------------------------------------------------------------------

    def step(self) -> None:
        if self.amm is not None and self.amm_rng.random() < 0.3:
            self._amm_step()
        rng = self.rng
        self.now += rng.random() * 0.1
        client = rng.choice(CLIENTS)
        live = list(self.workers.values())
        actions = ["submit", "deliver", "deliver", "deliver", "deliver", "run", "run", "run",
                   "fetch", "fetch", "release", "cancel", "retry", "resubmit", "scatter",
                   "join", "kill", "tick", "client"]
        actions.extend(sorted(self.features) * 2)
        action = rng.choice(actions)
        self.trace.append(f"-- {action}")
        if action == "join" or (not live and rng.random() < 0.5):
            if len(self.workers) < 4:
                self.join()
        elif action == "kill" and live and rng.random() < 0.5:
            sw = rng.choice(live)
            self._kill(sw.address, deliver=rng.randint(0, len(sw.outbox)))
        elif action == "submit":
            self.submit(client)
        elif action == "resubmit":
            self.resubmit(client)
        elif action == "deliver" and live:
            sw = rng.choice(live)
            if rng.random() < 0.5 and sw.inbox:
                self.deliver_to_worker(sw)
            elif sw.outbox:
                self.deliver_to_scheduler(sw)
        elif action == "run":
            busy = [sw for sw in live if sw.executor]
            done = [sw for sw in live if sw.finished]
            if done and (not busy or rng.random() < 0.5):
                self.report_one(rng.choice(done))
            elif busy:
                self.run_one(rng.choice(busy), fail=rng.random() < 0.1)
        elif action == "fetch":
            busy = [sw for sw in live if sw.fetches]
            if busy:
                self.answer_fetch(rng.choice(busy))
        elif action == "release":
            held = sorted(self.state.clients.get(client, ()), key=lambda t: str(t.key))
            if held:
                keys = [t.key for t in rng.sample(held, rng.randint(1, len(held)))]
                self.handle(KeysReleased(client, keys))
        elif action == "cancel" and self.state.tasks:
            self.handle(KeysCancelled(client, [rng.choice(list(self.state.tasks))]))
        elif action == "retry":
            erred = [k for k, t in self.state.tasks.items() if t.state == "erred"]
            if erred:
                self.handle(KeysRetried(client, [rng.choice(erred)]))
        elif action == "scatter" and self.workers:
            self.n_keys += 1
            self.handle(DataScattered(client, [(f"s-{self.n_keys}", 100, "ndarray")], None,
                                      rng.random() < 0.3))
        elif action == "tick":
            for sw in live:
                if rng.random() < 0.9:
                    self.handle(HeartbeatReceived(sw.address, 0, 0, 0.0, 0, self.now))
            self.handle(Tick(self.now + rng.choice([0.0, 0.0, 40.0])))
        elif action == "client":
            if rng.random() < 0.3:
                self.arriving.pop(client, None)
                self.handle(ClientLeft(client))
            else:
                self.handle(ClientJoined(client))
        else:
            self._hostile(action, live)

    def _hostile(self, action: str, live: list[SimWorker]) -> None:
        rng = self.rng
        if action == "duplicate" and self.history:
            address, msg = self.history[-1 - rng.randrange(min(3, len(self.history)))]
            if address in self.workers:
                self.handle(self._to_scheduler(address, msg))
        elif action == "stale" and self.history:
            address, msg = rng.choice(self.history)
            self.handle(self._to_scheduler(address, msg))
        elif action == "reorder":
            wires = [sw for sw in live if len(sw.outbox) >= 2]
            if wires:
                out = rng.choice(wires).outbox
                out[0], out[1] = out[1], out[0]
        elif action == "missing":
            # A worker says it could not get an input of a task it runs from some holder:
            # the true holder, a dead or never-holding worker, or itself. (Holder "" is
            # sent only by a worker that dropped the task; the faithful model covers it.)
            running = [t for t in self.state.tasks.values() if t.state == "processing"
                       and t.dependencies]
            if running:
                ts = rng.choice(running)
                dep = rng.choice(sorted(ts.dependencies, key=lambda d: str(d.key)))
                assert ts.processing_on is not None
                reporter = ts.processing_on.address
                holders = sorted(w.address for w in dep.who_has)
                holders += [reporter, "tcp://w1:1", "tcp://nobody:1"]
                holder = rng.choice(holders)
                sw = self.workers.get(reporter)
                # Never a report the worker's own state contradicts: it does not say a peer
                # lacks a key while it still waits for that peer to send it.
                if sw is None or sw.state.in_flight.get(dep.key) != holder:
                    self.handle(DataMissing(reporter, dep.key, holder, ts.key))
        elif action == "freed-result":
            # A real report that arrives late: a result or failure of a run the scheduler
            # has freed on that worker since.
            late = [(a, m) for a, m in self.history[-30:]
                    if isinstance(m, (TaskDone, TaskErred)) and a in self.workers
                    and m.key in self.workers[a].freed]
            if late:
                address, msg = rng.choice(late)
                self.handle(self._to_scheduler(address, msg))

    def _amm_step(self) -> None:
        """A copy of an in-memory key made on a worker that lacks it (its wire idle, as a
        ``CopyKeys`` answered in order), or one step of an AMM pass, its drops applied."""
        rng, tasks = self.amm_rng, self.state.tasks
        assert self.amm is not None
        if rng.random() < 0.5:
            held = sorted((k for k, t in tasks.items() if t.state == "memory"), key=str)
            idle = [sw for sw in self.workers.values() if not sw.inbox]
            if not held or not idle:
                return
            key, sw = rng.choice(held), rng.choice(idle)
            ts = tasks[key]
            if any(w.address == sw.address for w in ts.who_has) or key in sw.state.tasks:
                return
            self.trace.append(f"-- copy {key!r} to {sw.address}")
            sw.store[key] = max(ts.nbytes, 0)
            self._worker_handle(sw, CopiesStored({key: max(ts.nbytes, 0)}))
            self.handle(ReplicasAdded(sw.address, [key]))
            return
        self.trace.append("-- amm")
        view = amm_machine.View(self.state.replicated_tasks, self.state.workers,
                                self.state.replicas_wanted)
        event: Any = amm_machine.StepAsked() if self.amm.passing else amm_machine.PassAsked()
        for cmd in self.amm.handle(view, event):
            if isinstance(cmd, amm_machine.DropReplicas):
                self.handle(ReplicasDropped(cmd.worker, cmd.keys))
        self.amm.validate(view)

    # --- the end -------------------------------------------------------------------------------

    def drain(self, limit: int = 20_000) -> None:
        """Deliver and run everything faithfully (no new failures, no hostile orders) until
        nothing moves; at least one worker stays up. Which wire or thread moves next is
        still random: the workers' executors run while messages flow."""
        if not self.workers:
            self.join()
        self.trace.append("-- drain")
        for client, wanted in sorted(self.arriving.items()):  # graphs' last pieces
            self.handle(GraphSubmitted(client, [], wanted))
        self.arriving = {}
        rng = self.rng
        for _ in range(limit):
            self.now += 0.01
            moves = [(kind, sw) for sw in self.workers.values()
                     for kind, todo in (("in", sw.inbox), ("out", sw.outbox),
                                        ("fetch", sw.fetches), ("run", sw.executor),
                                        ("done", sw.finished)) if todo]
            if not moves:
                return
            kind, sw = rng.choice(moves)
            if kind == "in":
                self.deliver_to_worker(sw)
            elif kind == "out":
                self.deliver_to_scheduler(sw)
            elif kind == "fetch":
                self.answer_fetch(sw)
            elif kind == "done":
                self.report_one(sw)
            else:
                self.run_one(sw, fail=False)
        raise Defect(f"still busy after {limit} deliveries: a livelock")

    def check_live(self) -> None:
        """After a drain: every wanted key is in memory or erred, nothing runs, and the
        scheduler's idea of who holds what is true."""
        stuck = [ts for ts in self.state.tasks.values()
                 if ts.who_wants and ts.state not in ("memory", "erred")]
        if stuck:
            raise Defect(f"wanted keys never finish: {stuck}; story of the first: "
                         f"{self.state.story(stuck[0].key)}")
        running = [ts for ts in self.state.tasks.values() if ts.state == "processing"]
        if running:
            raise Defect(f"tasks processing on workers that will never answer: {running}")
        for sw in self.workers.values():
            if sw.state.tasks or sw.state.in_flight:
                raise Defect(f"{sw.address} still has tasks {list(sw.state.tasks)} / "
                             f"fetches {sw.state.in_flight} with nothing left to happen")
        for ts in self.state.tasks.values():
            for ws in ts.who_has:
                if ts.key not in self.workers[ws.address].store:
                    raise Defect(f"scheduler thinks {ws.address} holds {ts.key!r}; it does not")


def through_wire(msg: Any) -> Any:
    """``msg`` encoded and decoded again (checked as a peer's would be)."""
    (out,) = decode(encode([msg])[1:])
    return out


def run_sequence(seed: int, steps: int, features: frozenset[str] = HOSTILE,
                 columns: bool = False, amm: bool = False) -> ClusterSim:
    """One fuzzed life of a cluster: ``steps`` random actions, then a faithful drain and
    the liveness checks. Raises ``Defect`` (or the machines' own errors) naming the seed."""
    sim: ClusterSim = run_fuzzed(ClusterSim(seed, features, columns, amm), seed=seed,
                                 steps=steps, features=features,
                                 label="fuzz (amm)" if amm else "fuzz", replay="run_sequence")
    return sim
