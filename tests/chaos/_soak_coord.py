"""The soak's operations on the rest of the API (``test_soak.py``): the coordination
primitives from tasks and from the client, datasets, ``client.run``, ``fire_and_forget``,
``as_completed.add``, an asynchronous client in a thread of its own, ``worker_client``,
actors and ``retries`` under kills. A mixin of ``Soak``, which owns the run.

What is expected under faults, after dask.distributed's documentation:
- a lease (of a ``Lock``, ``Semaphore`` or ``MultiLock``) held by a task whose worker is
  killed is returned: dask returns it once the holder stops refreshing it
  (``distributed.scheduler.locks.lease-timeout``, 30 s), shoal as soon as the holder's
  connection closes; either is within the soak's deadline. No two holders are ever inside
  a section at once while the holders are alive;
- a future put in a ``Queue``, set in a ``Variable`` or published as a dataset keeps its
  key alive after the client drops its own future, and is recomputed after a kill;
- an actor lives on one worker: once that worker is killed, its future and every call
  raise ``RuntimeError("Worker holding Actor was lost")``;
- a kill does not spend a task's ``retries`` (dask counts it against ``allowed-failures``);
- ``client.run`` answers for the workers it reached; with ``on_error="return"``, a worker
  killed during it (or just before, its death not yet seen) is an ``OSError`` in its
  entry (dask's ``CommClosedError``), and it is no worker any more.
A queue delivers at most once: a task killed after its put is run again and puts again,
one killed after its get loses the item. So the queue operation kills only when the client
put the items, futures which are recomputed. Operations whose tasks block (on an event, a
queue, a held lease) finish within the step, so that no blocked task is left holding a
worker thread, and tasks waiting for other tasks ``secede`` as dask advises (with kills
leaving one worker of two threads, two blocked waiters starve the task they wait for).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from shoal import (
    Client,
    Event,
    Queue,
    Variable,
    as_completed,
    fire_and_forget,
)

from . import _soak_tasks as t

DEADLINE = 90.0  # as _soak.DEADLINE
LOST_ACTOR = "Worker holding Actor was lost"


class CoordinationOps:
    """Operations mixed into ``Soak``; they use its rng, client, cluster and helpers."""

    rng: Any
    client: Any
    cluster: Any
    scratch: str
    seed: int
    step_no: int
    kills: int
    cleanups: list[Any]

    # provided by Soak
    bounded: Any
    start: Any
    note: Any
    kill: Any
    kill_soon: Any
    whole: Any
    result: Any
    gather: Any
    expect: Any

    def name(self, what: str) -> str:
        return f"soak-{what}-{self.seed}-{self.step_no}"

    def poll(self, ready: Any, what: str) -> None:
        """Wait until ``ready()``, at most ``DEADLINE`` s."""
        deadline = time.monotonic() + DEADLINE
        while not ready():
            if time.monotonic() > deadline:
                from ._soak import Hang

                raise Hang(f"{what}: not after {DEADLINE} s")
            time.sleep(0.01)

    # --- locks, semaphores, multilocks -------------------------------------------------------

    def op_guarded(self) -> None:
        """Tasks entering a section guarded by a Lock, a Semaphore or a MultiLock: never
        more inside than allowed, whatever is killed."""
        rng, c = self.rng, self.client
        kind = rng.choice(["lock", "semaphore", "multilock"])
        n = rng.randrange(2, 12)
        root = os.path.join(self.scratch, self.name("guard"))
        if kind == "multilock":
            pool = [self.name(f"ml{i}") for i in range(3)]
            names = [sorted(rng.sample(pool, rng.randrange(1, 4))) for _ in range(n)]
            leases = 1
        else:
            names = [[self.name(kind)]] * n
            leases = 1 if kind == "lock" else rng.randrange(1, 4)
        hold = rng.choice([0.0, 0.01, 0.03])
        patience = rng.choice([0.0, 0.0, 0.002, 0.02])  # acquire(timeout=) given up, again
        first = t._guard(kind, names[0], leases) if rng.random() < 0.3 else None
        if first is not None:  # the client holds it while the tasks are submitted
            assert self.bounded(lambda: first.acquire(timeout=DEADLINE), f"{kind} acquire")
        futs = [c.submit(t.guarded, kind, ns, root, str(i), leases, hold, patience,
                         pure=False)
                for i, ns in enumerate(names)]
        if first is not None:
            self.bounded(first.release, f"{kind} release")
        if rng.random() < 0.4:
            self.note(f"kill worker {self.kill()} in guarded sections")

        def check() -> None:
            assert self.gather(futs) == [True] * n, f"two holders inside one {kind}"

        self.start(f"{n} tasks in {kind} sections (leases {leases}, patience {patience}, "
                   f"client first: {first is not None})",
                   futs, check)

    def op_lease_killed(self) -> None:
        """A task holds a Lock's or Semaphore's lease or a MultiLock and its worker is
        killed: the lease is returned (the client takes it), the task runs again and gives its value."""
        rng, c = self.rng, self.client
        kind = rng.choice(["lock", "semaphore", "multilock"])
        name, event = self.name(f"held-{kind}"), self.name("held-event")
        marker = os.path.join(self.scratch, name)
        value = rng.randrange(1000)
        fut = c.submit(t.hold_lease, kind, name, event, marker, value, pure=False)
        self.note(f"{kind} lease held by a task, then its worker killed")
        self.poll(lambda: os.path.exists(marker), f"a task taking {kind} {name}")
        with open(marker) as f:
            pid = int(f.read())
        killed = self.kill(pid=pid)
        self.note(f"killed worker {killed} holding the {kind}")
        guard = t._guard(kind, [name])
        if killed is None:  # no kill left for that worker: let it release, then take it
            Event(event).set()
        got = self.bounded(lambda: guard.acquire(timeout=DEADLINE), f"{kind} of a killed holder")
        assert got is True, f"{kind} {name} not returned after its holder's worker was killed"
        guard.release()
        Event(event).set()
        self.expect(fut, value)

    # --- queues, events, variables, datasets ----------------------------------------------------

    def op_queue(self) -> None:
        """Items and futures put by tasks and the client, taken by a task and the client."""
        rng, c = self.rng, self.client
        name = self.name("queue")
        q = Queue(name)
        if rng.random() < 0.5:
            items = [rng.randrange(1000) for _ in range(rng.randrange(1, 8))]
            mine = [rng.randrange(1000) for _ in range(rng.randrange(0, 4))]
            self.note(f"queue of {len(items)} put by tasks, {len(mine)} by the client")
            puts = c.map(t.queue_put, [name] * len(items), items, pure=False)
            for item in mine:
                self.bounded(lambda item=item: q.put(item, timeout=DEADLINE), "Queue.put")
            taker = c.submit(t.queue_get, name, len(items) + len(mine), pure=False)
            assert sorted(self.result(taker)) == sorted(items + mine)
            assert self.gather(puts) == [None] * len(items)
        else:
            xs = [rng.randrange(1000) for _ in range(rng.randrange(1, 8))]
            self.note(f"queue of {len(xs)} futures")
            futs = c.map(t.slow_inc, xs, delay=0.01, pure=False)
            for fut in futs:
                self.bounded(lambda fut=fut: q.put(fut, timeout=DEADLINE), "Queue.put", [fut])
            keep = rng.random() < 0.5
            if not keep:
                del futs, fut  # the queue holds the keys now
            if rng.random() < 0.4:  # the client put them: a kill duplicates nothing
                self.note(f"kill worker {self.kill()} with futures in a queue")
            if rng.random() < 0.5:
                taker = c.submit(t.queue_sum_futures, name, len(xs), pure=False)
                assert self.result(taker) == sum(xs) + len(xs)
            else:
                got = self.bounded(lambda: q.get(batch=len(xs)), "Queue.get")
                assert [self.result(f) for f in got] == [x + 1 for x in xs]
        assert self.bounded(q.qsize, "Queue.qsize") == 0
        self.bounded(q.close, "Queue.close")

    def op_event(self) -> None:
        """Tasks waiting on an Event set by the client or by a task."""
        rng, c = self.rng, self.client
        name = self.name("event")
        n = rng.randrange(1, 4)
        waiters = c.map(t.event_wait, [name] * n, pure=False)
        by_task = rng.random() < 0.5
        if by_task:
            self.expect(c.submit(t.event_set, name, pure=False), None)
        else:
            self.bounded(Event(name).set, "Event.set")
        if rng.random() < 0.3:
            self.note(f"kill worker {self.kill()} while tasks wait on an event")

        def check() -> None:
            assert self.gather(waiters) == [True] * n
            assert self.bounded(Event(name).is_set, "Event.is_set") is True

        self.start(f"{n} waiting on an event (set by a task: {by_task})", waiters, check)

    def op_variable(self) -> None:
        """A future set in a Variable (the client's own dropped), read by tasks and the
        client; recomputed after a kill."""
        rng, c = self.rng, self.client
        name = self.name("variable")
        v = Variable(name)
        x = rng.randrange(1000)
        by_task = rng.random() < 0.5
        if by_task:
            self.expect(c.submit(t.variable_set_future, name, x, pure=False), None)
        else:
            fut = c.submit(t.slow_inc, x, 0.02, pure=False)
            self.bounded(lambda fut=fut: v.set(fut), "Variable.set", [fut])
            del fut
        readers = c.map(t.variable_read, [name] * rng.randrange(1, 4), pure=False)
        self.cleanups.append(lambda: v.delete())
        if rng.random() < 0.4:
            self.note(f"kill worker {self.kill()} with a future in a variable")

        def check() -> None:
            assert self.gather(readers) == [x + 1] * len(readers)
            got = self.bounded(lambda: v.get(timeout=DEADLINE), "Variable.get")
            self.expect(got, x + 1)

        self.start(f"future in a variable (set by a task: {by_task})", readers, check)

    def op_dataset(self) -> None:
        """Futures published as a dataset (the client's own dropped), read back by a task
        and by the client; recomputed after a kill."""
        rng, c = self.rng, self.client
        name = self.name("dataset")
        xs = [rng.randrange(1000) for _ in range(rng.randrange(1, 5))]
        futs = c.map(t.slow_inc, xs, delay=0.01, pure=False)
        self.bounded(lambda futs=futs: c.publish_dataset(futs[0], name=name),
                     "publish_dataset", futs)
        del futs
        reader = c.submit(t.dataset_read, name, pure=False)
        self.cleanups.append(lambda: c.unpublish_dataset(name))
        if rng.random() < 0.4:
            self.note(f"kill worker {self.kill()} with a published dataset")

        def check() -> None:
            self.expect(reader, xs[0] + 1)
            got = self.bounded(lambda: c.get_dataset(name), "get_dataset")
            self.expect(got, xs[0] + 1)
            assert name in self.bounded(c.list_datasets, "list_datasets")

        self.start("published dataset", [reader], check)

    # --- client.run, fire_and_forget, as_completed.add ---------------------------------------

    def op_run(self) -> None:
        """``client.run`` on every worker, perhaps while one is killed."""
        rng, c = self.rng, self.client
        self.whole()  # (with workers still restarting after kills, it may reach none)
        during = rng.random() < 0.3
        workers = self.cluster.scheduler.state.workers
        before = sorted(workers)
        self.note(f"client.run on {before} (kill during: {during})")
        timer = self.kill_soon() if during else None
        try:
            out = self.bounded(lambda: c.run(t.inc, 1, on_error="return"), "client.run")
        finally:
            if timer is not None:
                timer.join()  # ends: the timer's delay
        assert out, f"client.run reached none of {before} (now {sorted(workers)})"
        for address, value in out.items():
            if isinstance(value, BaseException):
                # only a worker that died (killed during the run, or just before, its
                # death not yet seen by the scheduler) fails it
                self.note(f"client.run on {address}: {type(value).__name__}: {value}")
                assert isinstance(value, OSError), repr(value)  # dask's CommClosedError
                self.poll(lambda address=address: address not in workers,
                          f"client.run failed on {address}, which stays a worker")
            else:
                assert value == 2, (address, value)

    def op_fire_and_forget(self) -> None:
        """A task and its dependency, fired and forgotten: it runs, whatever is killed."""
        rng, c = self.rng, self.client
        path = os.path.join(self.scratch, self.name("fired"))
        x = rng.randrange(1000)
        fire_and_forget(c.submit(t.write_value, path, c.submit(t.slow_inc, x, 0.02,
                                                               pure=False), pure=False))
        if rng.random() < 0.4:
            self.note(f"kill worker {self.kill()} after fire_and_forget")

        def check() -> None:
            def written() -> bool:
                try:
                    with open(path) as f:
                        return f.read() == str(x + 1)
                except FileNotFoundError:
                    return False

            self.poll(written, "a fired and forgotten task")

        self.start("fire_and_forget", [], check)

    def op_as_completed_add(self) -> None:
        """``as_completed`` that is given more futures while it is iterated."""
        rng, c = self.rng, self.client
        xs = [rng.randrange(1000) for _ in range(rng.randrange(1, 8))]
        more = [rng.randrange(1000) for _ in range(rng.randrange(1, 8))]
        futs = c.map(t.slow_inc, xs, delay=0.01, pure=False)
        kill_at = rng.randrange(len(xs) + len(more)) if rng.random() < 0.4 else -1

        def iterate() -> list[int]:
            ac = as_completed(futs, with_results=True, timeout=DEADLINE)
            got, extra = [], list(more)
            for i, (_, value) in enumerate(ac):
                got.append(value)
                if extra:
                    ac.add(c.submit(t.slow_inc, extra.pop(), 0.01, pure=False))
                if i == kill_at:
                    self.note(f"kill worker {self.kill()} during as_completed")
            return sorted(got)

        def check() -> None:
            got = self.bounded(iterate, "as_completed with add", futs)
            assert got == sorted(v + 1 for v in xs + more)

        self.start(f"as_completed of {len(xs)} + {len(more)} added", futs, check)

    # --- another client, tasks submitting tasks, actors, retries -------------------------------

    def op_async_client(self) -> None:
        """An asynchronous client in a thread of its own: submit, gather, close."""
        rng = self.rng
        xs = [rng.randrange(1000) for _ in range(rng.randrange(1, 20))]
        during = rng.random() < 0.3
        address = self.cluster.scheduler_address
        self.note(f"asynchronous client of {len(xs)} (kill during: {during})")

        async def run() -> list[int]:
            async with Client(address, asynchronous=True, set_as_default=False) as ac:
                futs = ac.map(t.slow_inc, xs, delay=0.01, pure=False)
                total = ac.submit(t.total, *futs, pure=False)
                got = await ac.gather(futs)
                assert await total == sum(got)
                return list(got)

        timer = self.kill_soon() if during else None
        try:
            got = self.bounded(lambda: asyncio.run(run()), "asynchronous client")
        finally:
            if timer is not None:
                timer.join()  # ends: the timer's delay
        assert got == [x + 1 for x in xs]

    def op_worker_client(self) -> None:
        """A task submitting a map and its reduction through ``worker_client``."""
        rng, c = self.rng, self.client
        xs = [rng.randrange(1000) for _ in range(rng.randrange(1, 20))]
        fut = c.submit(t.client_chain, xs, pure=False)
        if rng.random() < 0.4:
            self.note(f"kill worker {self.kill()} under a worker_client task")
        self.start(f"worker_client chain of {len(xs)}", [fut],
                   lambda: self.expect(fut, sum(xs) + len(xs)))

    def op_actor(self) -> None:
        """An actor called from the client and from tasks; then perhaps its worker is
        killed: its future and every later call raise dask's "Worker holding Actor was
        lost"."""
        rng, c = self.rng, self.client
        fut = c.submit(t.Counter, actor=True)
        try:
            counter = self.result(fut)
        except RuntimeError as exc:
            # placed on a worker killed just before, its death not yet seen
            assert LOST_ACTOR in str(exc) and self.kills, exc
            self.note(f"actor placed on a dead worker: {exc}")
            return
        k = rng.randrange(1, 6)
        calls = [counter.increment() for _ in range(k)]
        assert [self.bounded(lambda f=f: f.result(timeout=DEADLINE), "actor call")
                for f in calls] == list(range(1, k + 1))
        m = rng.randrange(1, 4)
        bumps = c.map(t.actor_bump, [counter] * m, [k] * m, pure=False)
        runs = self.gather(bumps)
        for run in runs:
            assert run == sorted(run) and len(run) == k, runs
        n = k + k * len(runs)
        assert self.bounded(lambda: counter.n, "actor attribute") == n
        ws = self.cluster.scheduler.state.tasks[fut.key].who_has
        holder = next(iter(ws)).address if ws else None
        if holder is None or rng.random() < 0.5:
            self.note(f"actor of {n} calls")
            return
        killed = self.kill(holder)
        self.note(f"actor of {n} calls, then its worker {killed} killed")
        if killed is None:
            return
        self.poll(lambda: fut.status == "error", "the future of an actor whose worker died")
        for attempt in (lambda: fut.result(timeout=DEADLINE),
                        lambda: counter.increment().result(timeout=DEADLINE)):
            try:
                self.bounded(attempt, "a call to a lost actor")
            except RuntimeError as exc:
                assert LOST_ACTOR in str(exc), exc
            else:
                raise AssertionError("a lost actor answered")

    def op_retries_kill(self) -> None:
        """``retries=n`` on a task failing its first n runs, its worker killed during the
        last, successful one: the kill spends no retry."""
        rng, c = self.rng, self.client
        failures = rng.randrange(0, 3)
        path = os.path.join(self.scratch, self.name("retried"))
        started = path + ".started"
        fut = c.submit(t.flaky_then_slow, path, failures, 5, started, retries=failures,
                       pure=False)
        self.poll(lambda: os.path.exists(started), "a retried task's last run")
        with open(started) as f:
            pid = int(f.read())
        self.note(f"{failures} failures, retries={failures}, then killed worker "
                  f"{self.kill(pid=pid)}")
        self.start(f"retries={failures} with a kill", [fut], lambda: self.expect(fut, 5))
