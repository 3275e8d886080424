"""A fuzzer for one ``WorkerState``: a hostile scheduler, racing executor threads and peers
that may hold, lack or lose data, all driven by a seeded RNG.

The fuzzer plays the worker's shell (data store, executor queue, fetches; a task thread
writes its result before the loop hears of it, so events can come in between) and the rest of
the cluster. The scheduler side sends what a confused or late scheduler could send:
duplicate computes, computes of keys already held, running or being fetched, frees racing
computes and results, frees of unknown keys, scatters of keys being computed, inputs whose
holder list names this worker, a dead peer or nobody. Peers answer fetches with the data,
without it, with keys nobody asked for, or not at all (connection lost).

After every event: ``validate()``, and the state's idea of what it holds matches the store.
At the end, ``drain`` runs everything faithfully; then every task assigned and not freed
since has been answered (done, erred or missing-data with no holder left), nothing waits,
and no value is held that neither the scheduler nor a task needs.
"""

from __future__ import annotations

import random
import traceback
from dataclasses import dataclass, field
from typing import Any

from _fuzzing import Defect, run_fuzzed

from shoal.protocol._messages import (
    Compute,
    MissingData,
    ScatterStored,
    TaskDone,
    TaskErred,
    Transfer,
)
from shoal.protocol._serialize import Serialized
from shoal.worker._state import (
    ComputeAssigned,
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

ME = "tcp://me:1"
PEERS = ("tcp://p1:1", "tcp://p2:1", "tcp://p3:1")
PAYLOAD = Serialized([b"x"])
ERROR = {
    "kind": "exception", "type": "builtins.ValueError", "message": "the task raised",
    "exception": None, "traceback": None, "tb_text": "",
}


def invariant(exc: AssertionError) -> str:
    """The failed ``assert`` line of a ``validate()`` and its message."""
    line = traceback.extract_tb(exc.__traceback__)[-1].line
    return f"`{line}` ({exc})"


@dataclass
class WorkerFuzzer:
    seed: int
    rng: random.Random = field(init=False)
    state: WorkerState = field(init=False)
    store: dict[Any, int] = field(default_factory=dict)  # the shell's data: key -> nbytes
    executor: list[Execute] = field(default_factory=list)
    # Runs whose result is in the store but whose ExecuteDone has not reached the loop yet
    # (a task thread writes the value first): other events may come in between.
    finished: list[ExecuteDone] = field(default_factory=list)
    fetches: list[Fetch] = field(default_factory=list)
    peer_data: dict[str, set[Any]] = field(default_factory=dict)
    dead: set[str] = field(default_factory=set)
    features: frozenset[str] = frozenset()
    mem: dict[Any, set[str]] = field(default_factory=dict)  # the scheduler's who_has
    owed: dict[Any, int] = field(default_factory=dict)  # tasks sent here, not yet answered
    deps_of: dict[Any, list[Any]] = field(default_factory=dict)
    trace: list[str | tuple[str, Any]] = field(default_factory=list)  # _fuzzing.said
    n: int = 0
    # The run id of each key's latest Compute: like the scheduler, only a report echoing it
    # answers the task (an older run's report is ignored, so a worker that failed to adopt
    # the latest run would leave its task owed forever).
    runs: dict[Any, int] = field(default_factory=dict)
    n_runs: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.state = WorkerState(ME)
        self.peer_data = {p: set() for p in PEERS}

    # --- plumbing ---------------------------------------------------------------------------

    def handle(self, ev: Any) -> None:
        self.trace.append(("<- ", ev))
        out = self.state.handle(ev)
        try:
            self.state.validate()
        except AssertionError as exc:
            raise Defect(f"broke a worker invariant: {invariant(exc)}") from exc
        reports: list[Any] = []
        for cmd in out:
            self.trace.append(("-> ", cmd))
            if isinstance(cmd, Execute):
                missing = [d for d in cmd.deps if d not in self.state.held]
                if missing:
                    raise Defect(f"executes {cmd.key!r} without inputs {missing}")
                self.executor.append(cmd)
            elif isinstance(cmd, Fetch):
                if cmd.peer == ME:
                    raise Defect(f"fetches {cmd.keys} from itself")
                self.fetches.append(cmd)
            elif isinstance(cmd, Drop):
                for key in cmd.keys:
                    self.store.pop(key, None)
            elif isinstance(cmd, Report):
                msg = cmd.msg
                if not isinstance(msg, (TaskDone, TaskErred, MissingData, Transfer,
                                        ScatterStored)):
                    raise Defect(f"unexpected report {msg!r}")
                if isinstance(msg, TaskDone) and msg.key not in self.store:
                    raise Defect(f"reports {msg.key!r} done but does not hold it")
                reports.append(msg)
            else:
                raise Defect(f"unexpected command {cmd!r}")
        lost = [k for k in self.state.held if k not in self.store]
        if lost:
            raise Defect(f"believes it holds {lost} but its store lacks them")
        for msg in reports:
            self.on_report(msg)

    def _key(self) -> str:
        self.n += 1
        return f"k{self.n}"

    def known_keys(self) -> list[Any]:
        keys = set(self.state.tasks) | set(self.state.held) | set(self.owed)
        return sorted(keys, key=str)

    # --- the scheduler ---------------------------------------------------------------------
    # It keeps its own view: ``mem`` (key -> holders it believes in) and ``owed`` (tasks it
    # runs here). Faithfully, a task's inputs are in memory somewhere, and it frees a value
    # here only once no task it runs here needs it. Hostile features break those promises.

    def _inputs_of_owed(self) -> set[Any]:
        return {d for k in self.owed for d in self.deps_of.get(k, ())}

    def compute(self, key: Any | None = None) -> None:
        """Send a task here; a key sent before is the same task, with the same inputs."""
        rng = self.rng
        if key is None:
            key = self._key()
        names = self.deps_of.get(key)
        if names is None:
            names = []
            pool = sorted((k for k in self.mem if k != key and k not in self.owed), key=str)
            for _ in range(rng.randint(0, 3)):
                if pool and rng.random() < 0.6:
                    names.append(rng.choice(pool))
                else:  # a value computed elsewhere
                    dep = self._key()
                    self.mem[dep] = set(rng.sample(PEERS, rng.randint(1, 2)))
                    for p in self.mem[dep]:
                        self.peer_data[p].add(dep)
                    names.append(dep)
            names = list(dict.fromkeys(names))
        elif any(d in self.owed for d in names):
            return  # an input is still running here: the scheduler waits for it
        else:
            for dep in names:
                if dep not in self.mem:  # the scheduler computed the lost input elsewhere
                    peer = rng.choice(PEERS)
                    self.mem[dep] = {peer}
                    self.peer_data[peer].add(dep)
        deps = []
        for dep in names:
            holders = sorted(self.mem[dep])
            if "stale-holders" in self.features and rng.random() < 0.3:
                holders = rng.sample([*PEERS, ME], rng.randint(0, 3))
            deps.append((dep, holders, rng.choice([8, 1000])))
        self.n_runs += 1
        self.runs[key] = self.n_runs
        msg = Compute(key, PAYLOAD, deps, {}, (rng.randint(0, 2), self.n), rng.random() < 0.5,
                      "k", self.n_runs)
        self.mem.pop(key, None)
        self.owed[key] = self.owed.get(key, 0) + 1
        self.deps_of[key] = names
        self.handle(ComputeAssigned(msg))
        if "duplicate" in self.features and rng.random() < 0.1:
            self.handle(ComputeAssigned(msg))

    def cancel(self) -> None:
        """A task here is cancelled; sometimes it is submitted again right away."""
        if self.owed:
            key = self.rng.choice(sorted(self.owed, key=str))
            del self.owed[key]
            self.handle(KeysFreed([key]))
            if self.rng.random() < 0.3:
                self.compute(key)

    def resubmit(self) -> None:
        """A task that was cancelled or whose result was released is submitted again."""
        gone = sorted((k for k in self.deps_of if k not in self.owed and k not in self.mem),
                      key=str)
        if gone:
            self.compute(self.rng.choice(gone))

    def release(self) -> None:
        """The scheduler forgets a value held here (faithfully: no task here needs it)."""
        here = [k for k, hs in self.mem.items() if ME in hs]
        if "free-inputs" not in self.features:
            needed = self._inputs_of_owed()
            here = [k for k in here if k not in needed]
        if here:
            key = self.rng.choice(sorted(here, key=str))
            del self.mem[key]
            self.handle(KeysFreed([key]))

    def recompute(self) -> None:
        """A value held here is believed lost and is computed here again (after a free or
        not: the scheduler's view can be stale)."""
        here = [k for k, hs in self.mem.items() if ME in hs]
        if "free-inputs" not in self.features:
            needed = self._inputs_of_owed()
            here = [k for k in here if k not in needed]
        if here:
            here.sort(key=str)
            key = self.rng.choice(here)
            if self.rng.random() < 0.5:
                del self.mem[key]
                self.handle(KeysFreed([key]))
            self.compute(key)

    def lose_input(self) -> None:
        """An input held only by peers is lost with them: the scheduler frees the tasks
        here that wait for it and computes it again, here."""
        elsewhere = sorted((k for k, hs in self.mem.items() if ME not in hs), key=str)
        if not elsewhere:
            return
        key = self.rng.choice(elsewhere)
        del self.mem[key]
        for has in self.peer_data.values():
            has.discard(key)
        users = sorted((k for k in self.owed if key in self.deps_of.get(k, ())), key=str)
        for user in users:
            del self.owed[user]
        if users:
            self.handle(KeysFreed(users))
        self.deps_of.setdefault(key, [])
        self.compute(key)

    def scatter(self) -> None:
        key = self._key()
        self.store[key] = 100
        self.mem[key] = {ME}
        self.handle(DataStored(key, 100))

    def on_report(self, msg: Any) -> None:
        current = isinstance(msg, (TaskDone, TaskErred)) and self.runs.get(msg.key) == msg.run
        if isinstance(msg, TaskDone) and msg.key in self.owed and current:
            del self.owed[msg.key]
            self.mem[msg.key] = {ME}
        elif isinstance(msg, TaskErred) and msg.key in self.owed and current:
            del self.owed[msg.key]
        elif isinstance(msg, MissingData):
            if msg.key in self.mem:
                self.mem[msg.key].discard(msg.worker)
            if msg.for_key in self.owed and msg.for_key not in self.state.tasks:
                del self.owed[msg.for_key]  # given up; a real scheduler sends it again

    # --- the shell -------------------------------------------------------------------------

    def run_one(self, fail: bool) -> None:
        cmd = self.executor.pop(self.rng.randrange(len(self.executor)))
        missing = [d for d in cmd.deps if d not in self.store]
        task = self.state.tasks.get(cmd.key)
        if missing and (task is None or task.state != "cancelled"):
            raise Defect(f"ran {cmd.key!r} but inputs {missing} are gone "
                         "(a spurious KeyError for a correct program)")
        if missing:
            done = ExecuteDone(cmd.key, 0, "", 0.0, 0.0, 0, None,
                               {**ERROR, "type": "builtins.KeyError", "key": cmd.key})
        elif fail:
            done = ExecuteDone(cmd.key, 0, "", 0.0, 0.0, 0, None, {**ERROR, "key": cmd.key})
        else:
            self.store[cmd.key] = 8
            done = ExecuteDone(cmd.key, 8, "int", 0.0, 0.0, 0, None, None)
        if self.rng.random() < 0.5:
            self.handle(done)
        else:
            self.finished.append(done)

    def report_one(self) -> None:
        self.handle(self.finished.pop(self.rng.randrange(len(self.finished))))

    def answer_fetch(self, hostile: bool) -> None:
        rng = self.rng
        fetch = self.fetches.pop(rng.randrange(len(self.fetches)))
        if fetch.peer in self.dead or (hostile and rng.random() < 0.1):
            self.handle(FetchFailed(fetch.peer, list(fetch.keys)))
            return
        has = self.peer_data.setdefault(fetch.peer, set())
        got = {k: 8 for k in fetch.keys if k in has}
        if hostile and rng.random() < 0.1:  # a key nobody asked for (a confused peer)
            got[self._key()] = 8
        for k in got:
            self.store[k] = 8
        missing = [k for k in fetch.keys if k not in got]
        self.handle(FetchDone(fetch.peer, got, missing, 0.0, 0.0))
        if hostile and rng.random() < 0.1:  # the same answer twice
            for k in got:
                self.store[k] = 8
            self.handle(FetchDone(fetch.peer, got, missing, 0.0, 0.0))

    # --- one random step ---------------------------------------------------------------------

    def step(self) -> None:
        rng = self.rng
        action = rng.choice(["compute", "compute", "compute", "cancel", "release", "recompute",
                             "resubmit", "lose-input",
                             "scatter", "run", "run", "run", "fetch", "fetch", "fetch",
                             "peer-dies", "peer-loses"])
        self.trace.append(f"-- {action}")
        if action == "compute":
            self.compute()
        elif action == "cancel":
            self.cancel()
        elif action == "resubmit":
            self.resubmit()
        elif action == "lose-input":
            self.lose_input()
        elif action == "release":
            self.release()
        elif action == "recompute":
            self.recompute()
        elif action == "scatter":
            self.scatter()
        elif action == "run" and self.executor:
            self.run_one(fail=rng.random() < 0.1)
        elif action == "run" and self.finished:
            self.report_one()
        elif action == "fetch" and self.fetches:
            self.answer_fetch(hostile="confused-peers" in self.features)
        elif action == "peer-dies":
            self.dead.add(rng.choice(PEERS))
        elif action == "peer-loses":
            peer = rng.choice(PEERS)
            if self.peer_data[peer]:
                self.peer_data[peer].discard(rng.choice(sorted(self.peer_data[peer], key=str)))

    # --- the end -------------------------------------------------------------------------------

    def drain(self, limit: int = 10_000) -> None:
        """Run and answer everything faithfully, in random order, until nothing moves."""
        self.trace.append("-- drain")
        for _ in range(limit):
            if self.finished and self.rng.random() < 0.5:
                self.report_one()
            elif self.executor and (not self.fetches or self.rng.random() < 0.5):
                self.run_one(fail=False)
            elif self.fetches:
                self.answer_fetch(hostile=False)
            elif self.finished:
                self.report_one()
            else:
                return
        raise Defect(f"still busy after {limit} steps: a livelock")

    def check_live(self) -> None:
        st = self.state
        unanswered = sorted(self.owed, key=str)
        if unanswered:
            raise Defect(f"assigned tasks never answered: {unanswered}")
        if st.tasks or st.in_flight:
            raise Defect(f"still has tasks {sorted(st.tasks, key=str)} / fetches "
                         f"{st.in_flight} with nothing left to happen")
        leaked = [k for k in st.held if k not in st.assigned]
        if leaked:
            raise Defect(f"holds inputs no task needs: {leaked}")
        extra = [k for k in self.store if k not in st.held]
        if extra:
            raise Defect(f"its store keeps values it forgot: {extra}")


HOSTILE = frozenset({
    "duplicate",  # a compute delivered twice
    "stale-holders",  # input holder lists naming this worker, dead peers, or nobody
    "free-inputs",  # the scheduler frees a value here that a task it runs here still needs
    "confused-peers",  # fetches fail at random, answer twice, or bring keys nobody asked for
})


def run_worker_sequence(seed: int, steps: int, features: frozenset[str] = HOSTILE) -> WorkerFuzzer:
    """One fuzzed life of a worker; raises ``Defect`` naming the seed and how to rerun it."""
    unknown = features - HOSTILE
    if unknown:
        raise ValueError(f"unknown fuzz features {sorted(unknown)}; known: {sorted(HOSTILE)}")
    fuzz: WorkerFuzzer = run_fuzzed(WorkerFuzzer(seed, features=features), seed=seed,
                                    steps=steps, features=features, label="worker fuzz",
                                    replay="run_worker_sequence")
    return fuzz
