"""Seeded random event sequences: whatever happens, the scheduler's invariants hold after
every step, and its orders refer only to workers and clients it knows."""

from __future__ import annotations

import random
from typing import Any

import pytest

from shoal.scheduler import _placement as placement
from shoal.scheduler._events import (
    ClientJoined,
    ClientLeft,
    CloseWorker,
    Command,
    FireAndForgetAsked,
    HeartbeatReceived,
    ReportDone,
    ReportErred,
    Seceded,
    SendCompute,
    SendStore,
    Tick,
)
from shoal.scheduler._state import SchedulerState

from ._sim import Sim, error_for, row

WORKERS = [f"w{i}" for i in range(4)]


class Fuzzer:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.state = SchedulerState(allowed_failures=2, worker_ttl=30.0)
        self.sims = [Sim(self.state, "alice"), Sim(self.state, "bob")]
        self.n = 0
        self.now = 0.0

    def new_key(self) -> str:
        self.n += 1
        return f"k{self.rng.choice('abc')}-{self.n}"

    def processing(self) -> list[Any]:
        return [k for k, ts in self.state.tasks.items() if ts.state == "processing"]

    def keys_in(self, *states: str) -> list[Any]:
        return [k for k, ts in self.state.tasks.items() if ts.state in states]

    def step(self) -> list[Command]:
        rng, st = self.rng, self.state
        sim = rng.choice(self.sims)
        sim.now = self.now = self.now + rng.random()
        action = rng.choices(
            ["join", "leave", "submit", "finish", "fail", "release", "cancel", "retry",
             "scatter", "missing", "tick", "stale", "client", "secede", "fire", "started",
             "retire", "ack"],
            weights=[3, 1, 6, 10, 2, 3, 1, 1, 1, 1, 1, 1, 1, 2, 1, 4, 1, 2],
        )[0]
        if action == "join":
            return sim.join(rng.choice(WORKERS), nthreads=rng.randint(1, 3))
        if action == "leave" and st.workers:
            return sim.leave(rng.choice(sorted(st.workers)))
        if action == "submit":
            known = list(st.tasks)
            rows, batch = [], []
            for _ in range(rng.randint(1, 5)):
                key = self.new_key()
                pool = known + batch
                deps = rng.sample(pool, k=min(len(pool), rng.randint(0, 3)))
                if rng.random() < 0.05:
                    deps.append("never-submitted")
                workers = [rng.choice(WORKERS)] if rng.random() < 0.1 else None
                rows.append(row(key, deps, priority=(rng.randint(0, 3), self.n),
                                retries=rng.choice([0, 0, 1]), workers=workers,
                                prefix=key.split("-")[0]))
                batch.append(key)
            wanted = [k for k in batch if rng.random() < 0.6] or batch[-1:]
            return sim.submit(rows, wanted)
        if action == "finish" and self.processing():
            key = rng.choice(self.processing())
            nbytes = rng.choice([8, 1000, placement.LOCALITY_BYTES * 2])
            return sim.finish(key, nbytes=nbytes, duration=rng.choice([0.001, 0.01, 1.0]))
        if action == "fail" and self.processing():
            return sim.fail(rng.choice(self.processing()))
        if action == "release":
            held = sorted(st.clients.get(sim.client, ()), key=lambda ts: str(ts.key))
            if held:
                return sim.release(*[ts.key for ts in rng.sample(held, rng.randint(1, len(held)))])
        if action == "cancel" and st.tasks:
            return sim.cancel(rng.choice(list(st.tasks)), force=rng.random() < 0.3)
        if action == "started" and st.workers:
            # a start report, sometimes stale or about a task on another worker
            keys = [*rng.sample(list(st.tasks), k=min(len(st.tasks), 3)), "unknown"]
            return sim.started(rng.choice(sorted(st.workers)), *keys)
        if action == "retire" and st.workers:
            return sim.retire(rng.choice(sorted(st.workers)))
        if action == "retry" and self.keys_in("erred"):
            return sim.retry(rng.choice(self.keys_in("erred")))
        if action == "scatter":
            # a new key, or one being computed; acknowledged now or later ("ack")
            key = self.new_key() if rng.random() < 0.8 or not st.tasks else rng.choice(list(st.tasks))
            return sim.scatter([(key, 100)], broadcast=rng.random() < 0.3, ack=rng.random() < 0.5)
        if action == "ack":
            pending = sorted(st._storing.items(), key=lambda kv: str(kv[0]))
            if pending and rng.random() < 0.9:
                key, store = rng.choice(pending)
                worker = rng.choice(sorted(store.waiting))
            else:  # a duplicate or stale ack
                key, worker = rng.choice(list(st.tasks) or ["unknown"]), rng.choice(WORKERS)
            error = error_for(key, ImportError("cannot load")) if rng.random() < 0.2 else None
            return sim.ack(worker, key, error)
        if action == "missing":
            candidates = [
                (ts, dep) for ts in st.tasks.values() if ts.state == "processing"
                for dep in ts.dependencies if dep.who_has
            ]
            if candidates:
                ts, dep = rng.choice(candidates)
                holder = rng.choice([*sorted(w.address for w in dep.who_has), ""])
                return sim.missing(ts.processing_on.address, dep.key, holder, ts.key)
        if action == "tick":
            for address in sorted(st.workers):
                if rng.random() < 0.8:
                    st.handle(HeartbeatReceived(address, 0, 0, 0.0, 0, now=self.now))
            return st.handle(Tick(now=self.now + rng.choice([0.0, 10.0, 40.0])))
        if action == "stale" and st.workers:
            # a result from a worker that was never asked (or no longer is)
            key = rng.choice(list(st.tasks) or ["unknown"])
            return sim.finish(key, worker=rng.choice(sorted(st.workers)))
        if action == "secede" and self.processing():
            key = rng.choice(self.processing())
            ws = st.tasks[key].processing_on
            return st.handle(Seceded(ws.address, key, rng.random(), st.tasks[key].run))
        if action == "fire" and st.tasks:
            return st.handle(FireAndForgetAsked([rng.choice(list(st.tasks)), "gone"]))
        if action == "client":
            if rng.random() < 0.5:
                return st.handle(ClientLeft(sim.client))
            return st.handle(ClientJoined(sim.client))
        return []

    def check(self, out: list[Command]) -> None:
        self.state.validate()
        closed = {c.worker for c in out if isinstance(c, CloseWorker)}
        for i, cmd in enumerate(out):
            if isinstance(cmd, (SendCompute, SendStore)):
                assert cmd.worker in self.state.workers or cmd.worker in closed, cmd
            if isinstance(cmd, ReportDone):
                # in memory now, unless the batch later lost it (a Tick that closes several
                # workers may settle a scatter with one and lose its data with the next)
                later = any(isinstance(c, ReportErred) and c.key == cmd.key for c in out[i:])
                assert later or closed or self.state.tasks[cmd.key].state == "memory", cmd
            if isinstance(cmd, ReportErred):
                assert cmd.error["message"], cmd


@pytest.mark.parametrize("seed", range(30))
def test_random_event_sequences_keep_invariants(seed: int) -> None:
    fuzz = Fuzzer(seed)
    for _ in range(300):
        fuzz.check(fuzz.step())
    # Drain: with a worker up and everything finishing, nothing wanted stays unfinished.
    fuzz.state.handle(*[])
    sim = fuzz.sims[0]
    for w in WORKERS:
        sim.join(w)
    for _ in range(10_000):
        for key, store in sorted(fuzz.state._storing.items(), key=lambda kv: str(kv[0])):
            for worker in sorted(store.waiting):
                fuzz.check(sim.ack(worker, key))
        busy = fuzz.processing()
        if not busy and not fuzz.state._storing:
            break
        if busy:
            fuzz.check(sim.finish(busy[0]))
    stuck = [ts for ts in fuzz.state.tasks.values()
             if ts.who_wants and ts.state not in ("memory", "erred")]
    assert stuck == [], [(ts, fuzz.state.story(ts.key)) for ts in stuck]
