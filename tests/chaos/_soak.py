"""The soak driver (``test_soak.py``): one cluster of worker processes with nannies, and a
random sequence, drawn from a seed, of what real programs do, mixed with faults.

Each operation is started (its futures held in ``Soak.pending``) and checked later, so
that kills, restarts and retirements fall while work is in flight; each check asserts
the exact expected result, or the error dask documents for that case. Every blocking
call runs under a deadline (``Soak.bounded``): a call still waiting then is a defect,
reported with what the client and the scheduler were waiting on.

What is expected under faults, after dask.distributed's documentation:
- a task's result survives any SIGKILL (recomputed from lineage; ``allowed-failures`` is
  raised so that no innocent task ends in ``KilledWorker``);
- a scattered value has no lineage: once a kill may have taken its holders, it and its
  dependents are either right or fail with ``LostDataError`` (a ``CancelledError``);
- ``client.restart()`` cancels every future: each raises ``CancelledError``;
- ``retire_workers`` moves the results held there first: nothing is lost.
"""

from __future__ import annotations

import concurrent.futures
import gc
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dask
import dask.array as da
import dask.bag as db
import numpy as np

from shoal import FIRST_COMPLETED, LostDataError, as_completed, wait

from . import _soak_tasks as t
from ._soak_coord import CoordinationOps

DEADLINE = 90.0  # one operation, however loaded the machine: past it, a hang
MAX_KILLS_EACH = 8  # the soak's budget of kills per nanny (each costs a restart)
RECENT = 10.0  # a kill this many seconds ago may not be seen by the scheduler yet
CancelledError = concurrent.futures.CancelledError


class Hang(AssertionError):
    """A wait that did not end within its deadline."""


@dataclass
class Pending:
    """An operation in flight: its futures and the check of its results."""

    name: str
    step: int
    futures: list[Any]
    check: Callable[[], None]
    kills: int  # ``Soak.kills`` when it started: a later kill may lose scattered data
    cancelled: bool = False  # a restart came after it: every future is cancelled


@dataclass
class Soak(CoordinationOps):
    seed: int
    cluster: Any
    client: Any
    scratch: str
    n_workers: int
    rng: random.Random = field(init=False)
    trace: list[str] = field(default_factory=list)
    pending: list[Pending] = field(default_factory=list)
    kills: int = 0
    last_kill_step: int = -100
    last_kill_time: float = -1e9  # time.monotonic() of the last kill
    kills_by_name: dict[str, int] = field(default_factory=dict)
    step_no: int = 0
    cleanups: list[Callable[[], Any]] = field(default_factory=list)  # run at the end

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    # --- the run ------------------------------------------------------------------------

    def run(self, steps: int, only: set[str] | None = None) -> None:
        """``steps`` operations drawn by weight; ``only``: names of the operations to draw
        from (``op_guarded``, ``op_kill``...), to hunt in one part of the API."""
        ops = [(self.op_map_chain, 4), (self.op_delayed, 2), (self.op_array, 2),
               (self.op_bag, 2), (self.op_errors, 2), (self.op_cancel, 2),
               (self.op_scatter, 2), (self.op_retries, 2), (self.op_nested, 1),
               (self.op_as_completed, 2), (self.op_big_transfer, 2), (self.op_kill, 3),
               (self.op_check, 4), (self.op_restart, 1), (self.op_retire, 1),
               (self.op_pure, 2), (self.op_release, 1), (self.op_scale, 1),
               (self.op_first_completed, 1), (self.op_retry_future, 1),
               (self.op_kill_two, 1), (self.op_restart_workers, 1), (self.op_copies, 1),
               (self.op_guarded, 2), (self.op_lease_killed, 1), (self.op_queue, 1),
               (self.op_event, 1), (self.op_variable, 1), (self.op_dataset, 1),
               (self.op_run, 1), (self.op_fire_and_forget, 1), (self.op_as_completed_add, 1),
               (self.op_async_client, 1), (self.op_worker_client, 1), (self.op_actor, 1),
               (self.op_retries_kill, 1)]
        if only:
            ops = [(f, w) for f, w in ops if f.__name__ in only]
            assert ops, f"no operation named in {sorted(only)}"
        funcs = [f for f, _ in ops]
        weights = [w for _, w in ops]
        for self.step_no in range(steps):
            if len(self.pending) >= 4:
                self.op_check()
                continue
            op = self.rng.choices(funcs, weights)[0]
            op()
        while self.pending:
            self.op_check()
        for cleanup in self.cleanups:
            self.bounded(cleanup, "a clean-up")
        self.whole()
        assert self.bounded(lambda: self.client.submit(t.inc, 1, pure=False).result(
            timeout=DEADLINE), "a last task") == 2
        self.forgotten()
        self.no_lease_held()

    def no_lease_held(self) -> None:
        """Every lease of a Lock or Semaphore and every MultiLock is returned: the
        sections ended, and those whose holders were killed were given back."""
        state = self.cluster.scheduler.coordination.state
        deadline = time.monotonic() + DEADLINE

        def held() -> list[str]:
            return ([f"{name}: {sorted(sem.leases)}, {len(sem.waiters)} waiting"
                     for name, sem in state.semaphores.semaphores.items()
                     if sem.leases or sem.waiters]
                    + [f"multilock {lock_id}" for lock_id in state.multilocks.requests])

        while held():
            if time.monotonic() > deadline:
                raise AssertionError(f"leases still held {DEADLINE} s after the end: {held()}")
            time.sleep(0.02)
        shell = self.cluster.scheduler.coordination
        with shell._lock:  # the loop handles the machine under it
            shell.state.validate()
        leftover = {"queues": list(state.queues.queues), "holds": list(state.holds.counts)}
        assert not any(leftover.values()), f"coordination state left behind: {leftover}"

    def forgotten(self) -> None:
        """With every future released, the scheduler forgets every task (none is left
        held, to be handed out stale to a later submission of its key)."""
        gc.collect()
        state = self.cluster.scheduler.state
        deadline = time.monotonic() + DEADLINE
        while state.tasks:
            if time.monotonic() > deadline:
                left = list(state.tasks.values())[:5]
                lines = [row for ts in left for row in describe_task(state, ts, "  ")]
                raise AssertionError(f"{len(state.tasks)} tasks still on the scheduler "
                                     f"{DEADLINE} s after every future was released:\n"
                                     + "\n".join(lines))
            time.sleep(0.02)

    def note(self, text: str) -> None:
        self.trace.append(f"{self.step_no}: {text}")

    def start(self, name: str, futures: list[Any], check: Callable[[], None]) -> None:
        self.note(f"start {name}")
        self.pending.append(Pending(name, self.step_no, futures, check, self.kills))

    def bounded(self, call: Callable[[], Any], what: str, futures: Any = ()) -> Any:
        """``call()`` in a thread of its own, waited for at most ``DEADLINE`` s."""
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = call()
            except BaseException as exc:  # handed to the caller, which re-raises it
                box["error"] = exc

        thread = threading.Thread(target=target, name=f"soak-{what}", daemon=True)
        thread.start()
        thread.join(DEADLINE)  # ends: the deadline
        if thread.is_alive():
            raise Hang(f"{what} still waiting after {DEADLINE} s\n{self.explain(futures)}")
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def settle(self, p: Pending) -> None:
        """Wait for every future of ``p`` to be done (any outcome)."""
        deadline = time.monotonic() + DEADLINE
        for fut in p.futures:  # one by one: wait() raises CancelledError for a cancelled one
            try:
                wait(fut, timeout=max(0.0, deadline - time.monotonic()))
            except CancelledError:
                continue
            except TimeoutError:
                raise Hang(f"{p.name} (started at step {p.step}) not done after {DEADLINE} "
                           f"s\n{self.explain(p.futures)}") from None

    # --- what was waiting on what, for a hang -----------------------------------------------

    def explain(self, futures: Any) -> str:
        state = self.cluster.scheduler.state
        lines = [f"workers: {sorted(state.workers)}",
                 f"nanny pids: {[n.pid for n in self.cluster.nannies]}"]
        for fut in list(futures)[:8]:
            if fut.done():
                continue
            lines.append(f"future {fut.key!r}: client status {fut.status}")
            ts = state.tasks.get(fut.key)
            lines.extend(describe_task(state, ts, "  "))
            for dep in list(getattr(ts, "waiting_on", ()))[:4]:
                lines.extend(describe_task(state, dep, "    waits on "))
        return "\n".join(lines)

    # --- faults ----------------------------------------------------------------------------

    def kill(self, address: str | None = None, pid: int | None = None) -> str | None:
        """SIGKILL one worker process: the one at ``address`` or of ``pid``, else of those
        running one killed least so far."""
        alive = [n for n in self.cluster.nannies
                 if not n.stopped and n.process is not None and n.process.returncode is None]
        if pid is not None:
            alive = [n for n in alive if n.pid == pid]
        if address is not None:
            ws = self.cluster.scheduler.state.workers.get(address)
            alive = [n for n in alive if ws is not None and str(n.name) == str(ws.name)]
        if not alive:
            return None
        fewest = min(self.kills_by_name.get(str(n.name), 0) for n in alive)
        choices = sorted((n for n in alive if self.kills_by_name.get(str(n.name), 0) == fewest),
                         key=lambda n: str(n.name))
        nanny = self.rng.choice(choices)
        if self.kills_by_name.get(str(nanny.name), 0) >= MAX_KILLS_EACH:
            return None  # a nanny gives up past 10 restarts a minute
        try:
            os.kill(nanny.pid, signal.SIGKILL)
        except (ProcessLookupError, TypeError):  # it just died (or its pid went): no kill
            return None
        self.kills += 1
        self.last_kill_step = self.step_no
        self.last_kill_time = time.monotonic()
        self.kills_by_name[str(nanny.name)] = self.kills_by_name.get(str(nanny.name), 0) + 1
        return str(nanny.name)

    def kill_soon(self) -> threading.Timer:
        """A kill in 0-300 ms, while the caller waits on something."""
        delay = self.rng.uniform(0, 0.3)
        timer = threading.Timer(delay, lambda: self.note(f"killed worker {self.kill()} "
                                                         f"after {delay:.2f} s"))
        timer.start()
        return timer

    def whole(self) -> None:
        """Wait until the cluster is back to ``n_workers`` (restarted after kills)."""
        state = self.cluster.scheduler.state
        deadline = time.monotonic() + DEADLINE
        while len(state.workers) < self.n_workers:
            if time.monotonic() > deadline:
                raise Hang(f"the cluster has {len(state.workers)} of {self.n_workers} workers "
                           f"after {DEADLINE} s\n{self.explain(())}")
            time.sleep(0.02)

    def op_kill(self) -> None:
        self.note(f"kill worker {self.kill()}")

    def op_restart(self) -> None:
        """``client.restart()``, perhaps with a kill during it, perhaps while another
        thread gathers large results (which then arrive, or raise ``CancelledError``)."""
        during = self.rng.random() < 0.5
        gathering = self.rng.random() < 0.5
        self.note(f"restart (kill during: {during}, gather during: {gathering})")
        big: list[Any] = []
        gatherer = None
        if gathering:
            big = self.client.map(t.big, [4] * 6, range(6), pure=False)
            self.settle(Pending("large results", self.step_no, big, lambda: None, self.kills))
            box: dict[str, Any] = {}

            def gather_big() -> None:
                try:
                    box["value"] = [len(v) for v in self.client.gather(big)]
                except CancelledError as exc:
                    box["value"] = exc

            gatherer = threading.Thread(target=gather_big, name="soak-gatherer", daemon=True)
            gatherer.start()
        timer = self.kill_soon() if during else None
        try:
            self.bounded(lambda: self.client.restart(timeout=DEADLINE), "client.restart()")
        finally:
            if timer is not None:
                timer.join()  # ends: the timer's delay
        for p in self.pending:
            p.cancelled = True
        if gatherer is not None:
            gatherer.join(DEADLINE)  # ends: the deadline
            if gatherer.is_alive():
                raise Hang(f"a gather of large results still waiting {DEADLINE} s after a "
                           f"restart\n{self.explain(big)}")
            got = box["value"]
            assert isinstance(got, CancelledError) or got == [4 << 20] * 6, got

    def op_retire(self) -> None:
        self.whole()
        workers = sorted(self.cluster.scheduler.state.workers)
        victim = self.rng.choice(workers)
        name = str(self.cluster.scheduler.state.workers[victim].name)
        during = self.rng.random() < 0.3
        self.note(f"retire {victim} (kill during: {during})")
        timer = self.kill_soon() if during else None
        try:
            out = self.bounded(lambda: self.client.retire_workers([victim]), "retire_workers")
        finally:
            if timer is not None:
                timer.join()  # ends: the timer's delay
        assert set(out) <= {victim}, out

        def back() -> bool:
            """Killed while retiring, or just before (its death not yet seen by the
            scheduler), the worker was restarted by its nanny, which knew nothing of the
            retirement."""
            return any(str(ws.name) == name and a != victim
                       for a, ws in self.cluster.scheduler.state.workers.items())

        # As in dask, the cluster learns of the retirement when the worker's process has
        # ended (dask: after distributed.deploy.lost-worker-timeout); then scale() replaces it.
        deadline = time.monotonic() + DEADLINE
        while len(self.cluster.workers) > self.n_workers - len(out) and not back():
            if time.monotonic() > deadline:
                raise Hang(f"the cluster still counts {len(self.cluster.workers)} workers "
                           f"{DEADLINE} s after retiring {list(out)}")
            time.sleep(0.02)
        self.bounded(lambda: self.cluster.scale(self.n_workers), "cluster.scale()")
        self.whole()

    def op_kill_two(self) -> None:
        self.note(f"kill workers {self.kill()} and {self.kill()} at once")

    def op_scale(self) -> None:
        """Scale down by one (a graceful retirement), then back up."""
        self.whole()
        during = self.rng.random() < 0.3
        self.note(f"scale to {self.n_workers - 1} and back (kill during: {during})")
        timer = self.kill_soon() if during else None
        try:
            self.bounded(lambda: self.cluster.scale(self.n_workers - 1), "scale down")
        finally:
            if timer is not None:
                timer.join()  # ends: the timer's delay
        self.bounded(lambda: self.cluster.scale(self.n_workers), "scale up")
        self.whole()

    def op_restart_workers(self) -> None:
        """Restart one worker through its nanny: its tasks run elsewhere or after, the
        results it held are recomputed, no future is cancelled."""
        self.whole()
        victim = self.rng.choice(sorted(self.cluster.scheduler.state.workers))
        self.note(f"restart_workers {victim}")
        try:
            out = self.bounded(lambda: self.client.restart_workers([victim], timeout=DEADLINE),
                               "restart_workers")
        except ValueError:  # it left meanwhile (killed, restarted under a new address)
            return
        assert out == {victim: "OK"}, out
        self.kills += 1  # its data is gone with it, as with a kill
        self.last_kill_step = self.step_no
        self.last_kill_time = time.monotonic()

    def op_copies(self) -> None:
        """``replicate`` or ``rebalance`` the results in flight (copies; nothing lost)."""
        futures = [f for p in self.pending if not p.cancelled for f in p.futures
                   if f.status == "finished"]
        how = self.rng.choice(["replicate", "rebalance"])
        self.note(f"{how} {len(futures)} futures")
        if not futures:
            return
        try:
            if how == "replicate":
                self.bounded(lambda: self.client.replicate(futures, n=2), "replicate", futures)
            else:
                self.bounded(lambda: self.client.rebalance(futures), "rebalance", futures)
        except ValueError as exc:  # (dask raises KeyError) a result lost is being recomputed
            assert "not in memory" in str(exc) and self.kills, exc
            self.note(f"{how}: {exc}")

    def op_release(self) -> None:
        """Drop an operation's futures unchecked, perhaps mid-compute."""
        if self.pending:
            p = self.pending.pop(self.rng.randrange(len(self.pending)))
            self.note(f"release {p.name} of step {p.step} unchecked")

    # --- checks ----------------------------------------------------------------------------

    def op_check(self) -> None:
        if not self.pending:
            return
        p = self.pending.pop(self.rng.randrange(len(self.pending)))
        self.note(f"check {p.name} of step {p.step}")
        self.settle(p)
        if p.cancelled:
            for fut in p.futures:
                assert fut.status == "cancelled", (p.name, fut.key, fut.status)
                try:
                    fut.result(timeout=DEADLINE)
                except CancelledError:
                    continue
                raise AssertionError(f"{p.name}: {fut.key} gave a result after a restart")
            return
        p.check()

    def result(self, fut: Any) -> Any:
        return self.bounded(lambda: fut.result(timeout=DEADLINE), f"result of {fut.key!r}",
                            [fut])

    def gather(self, futures: list[Any], errors: str = "raise") -> Any:
        return self.bounded(lambda: self.client.gather(futures, errors=errors), "gather",
                            futures)

    def lost_or(self, kills: int, fut: Any, expected: Any) -> None:
        """``fut`` is ``expected``, or (only if a kill came since ``Soak.kills`` was
        ``kills``) failed with ``LostDataError``: scattered data has no lineage."""
        try:
            got = self.result(fut)
        except LostDataError:
            assert self.kills > kills, f"{fut.key} lost with no worker killed"
            return
        assert got == expected, (fut.key, got, expected)

    # --- operations ------------------------------------------------------------------------

    def op_map_chain(self) -> None:
        rng, c = self.rng, self.client
        xs = [rng.randrange(1000) for _ in range(rng.randrange(5, 60))]
        delay = rng.choice([0.0, 0.005, 0.05])
        a = c.map(t.slow_inc, xs, delay=delay, pure=False)
        b = c.map(t.add, a, a[1:] + a[:1], pure=False)
        s = c.submit(t.total, *b, pure=False)
        want_b = [x + 1 + y + 1 for x, y in zip(xs, xs[1:] + xs[:1], strict=True)]
        if rng.random() < 0.5:  # and a kill while it is computing
            self.note(f"kill worker {self.kill()} mid-compute")

        def check() -> None:
            assert self.gather(b) == want_b
            assert self.result(s) == sum(want_b)

        self.start(f"map chain of {len(xs)}", [*a, *b, s], check)

    def op_delayed(self) -> None:
        rng = self.rng
        leaves = [dask.delayed(t.slow_inc)(rng.randrange(100), 0.002)
                  for _ in range(rng.randrange(4, 30))]
        level = leaves
        while len(level) > 1:
            level = [dask.delayed(t.add)(level[i], level[i + 1]) if i + 1 < len(level)
                     else level[i] for i in range(0, len(level), 2)]
        root = level[0]
        want = dask.compute(root, scheduler="sync")[0]
        fut = self.client.compute(root)
        self.start("delayed tree", [fut], lambda: self.expect(fut, want))

    def expect(self, fut: Any, want: Any) -> None:
        got = self.result(fut)
        if isinstance(want, np.ndarray):
            assert np.array_equal(got, want)
        else:
            assert got == want, (fut.key, got, want)

    def op_array(self) -> None:
        rng, c = self.rng, self.client
        n, k = rng.randrange(1_000, 60_000), rng.randrange(1, 9)
        x = da.arange(n, chunks=rng.choice([500, 2_000, 10_000])) * k
        if rng.random() < 0.5:
            x = c.persist(x)
            futs = list(x.__dask_graph__().values())
            self.note(f"persist array of {n}")
        else:
            futs = []
        y = (x + 1).sum()
        fut = c.compute(y)
        want = int((np.arange(n) * k + 1).sum())
        self.start(f"array of {n}", [*futs, fut], lambda: self.expect(fut, want))

    def op_bag(self) -> None:
        rng, c = self.rng, self.client
        seq = [rng.randrange(50) for _ in range(rng.randrange(10, 400))]
        b = db.from_sequence(seq, npartitions=rng.randrange(1, 8))
        out = b.map(t.inc).filter(lambda v: v % 3 != 0).frequencies()
        want = dict(dask.compute(out, scheduler="sync")[0])
        fut = c.compute(out)

        def check() -> None:
            assert dict(self.result(fut)) == want

        self.start("bag frequencies", [fut], check)

    def op_errors(self) -> None:
        rng, c = self.rng, self.client
        xs = list(range(rng.randrange(3, 30)))
        bad = frozenset(rng.sample(xs, rng.randrange(1, len(xs))))
        futs = c.map(t.fail_on, xs, bad=bad, pure=False)
        after = c.submit(t.total, *futs, pure=False)
        errors = rng.choice(["raise", "skip"])

        def check() -> None:
            if errors == "skip":
                assert self.gather(futs, errors="skip") == [x * 2 for x in xs if x not in bad]
            else:
                try:
                    self.gather(futs)
                except ValueError as exc:
                    assert "soak: bad input" in str(exc)
                else:
                    raise AssertionError("gather(errors='raise') of erred futures gave values")
            for fut, x in zip(futs, xs, strict=True):
                assert fut.status == ("error" if x in bad else "finished"), (fut.key, fut.status)
            try:
                self.result(after)
            except ValueError as exc:
                assert "soak: bad input" in str(exc)
            else:
                raise AssertionError("a dependent of erred tasks gave a value")

        self.start(f"errors ({errors})", [*futs, after], check)

    def op_cancel(self) -> None:
        rng, c = self.rng, self.client
        xs = [rng.randrange(1000) for _ in range(rng.randrange(2, 20))]
        futs = c.map(t.slow_inc, xs, delay=0.05, pure=False)
        gone = sorted(rng.sample(range(len(futs)), rng.randrange(1, len(futs))))
        # a dependent of a cancelled future is cancelled with it (dask's cancel)
        dependent = c.submit(t.inc, futs[gone[0]], pure=False)
        self.bounded(lambda: c.cancel([futs[i] for i in gone]), "cancel", futs)
        # cancel, then submit the same key again: a fresh, right result
        key = f"soak-again-{self.seed}-{self.step_no}"
        first = c.submit(t.slow_inc, 5, 0.05, key=key)
        self.bounded(lambda: c.cancel([first]), "cancel", [first])
        again = c.submit(t.slow_inc, 5, 0.05, key=key)

        def check() -> None:
            for i, (fut, x) in enumerate(zip(futs, xs, strict=True)):
                if i in gone:
                    assert fut.status == "cancelled", (fut.key, fut.status)
                    try:
                        self.result(fut)
                    except CancelledError:
                        continue
                    raise AssertionError(f"cancelled {fut.key} gave a result")
                assert self.result(fut) == x + 1
            assert first.status == "cancelled"
            assert self.result(again) == 6
            assert dependent.status == "cancelled", dependent.status
            try:
                self.result(dependent)
            except CancelledError:
                pass
            else:
                raise AssertionError("a dependent of a cancelled future gave a result")

        self.start(f"cancel {len(gone)} of {len(futs)}", [*futs, first, again, dependent],
                   check)

    def op_scatter(self) -> None:
        rng, c = self.rng, self.client
        values = [rng.randrange(1000) for _ in range(rng.randrange(1, 8))]
        broadcast = rng.random() < 0.4
        kills = self.kills
        during = rng.random() < 0.3
        timer = self.kill_soon() if during else None
        try:
            scattered = self.bounded(lambda: c.scatter(values, broadcast=broadcast), "scatter")
        except LostDataError:
            # The workers it was stored on died before the scatter returned (killed during
            # it, or just before, their deaths not yet seen), and no other could take it.
            # Steps are no clock (some take milliseconds): a kill in the last seconds.
            assert time.monotonic() - self.last_kill_time < RECENT, \
                "scatter lost with no recent kill"
            self.note("scatter lost its data to a kill")
            return
        finally:
            if timer is not None:
                timer.join()  # ends: the timer's delay
        outs = c.map(t.inc, scattered, pure=False)

        def check() -> None:
            for fut, v in zip(scattered, values, strict=True):
                self.lost_or(kills, fut, v)
            for fut, v in zip(outs, values, strict=True):
                self.lost_or(kills, fut, v + 1)

        self.start(f"scatter of {len(values)} (broadcast {broadcast}, kill during {during})",
                   [*scattered, *outs],
                   check)
        if rng.random() < 0.3:  # perhaps the only copy
            self.note(f"kill worker {self.kill()} after a scatter")

    def op_retries(self) -> None:
        rng, c = self.rng, self.client
        failures = rng.randrange(0, 4)
        retries = rng.randrange(0, 4)
        path = os.path.join(self.scratch, f"flaky-{self.seed}-{self.step_no}")
        fut = c.submit(t.flaky, path, failures, 7, retries=retries, pure=False)

        def check() -> None:
            if retries >= failures:
                assert self.result(fut) == 7
                return
            try:
                self.result(fut)
            except OSError as exc:
                assert "soak: flaky attempt" in str(exc)
            else:
                raise AssertionError(f"{failures} failures and {retries} retries gave a value")

        self.start(f"{failures} failures, retries={retries}", [fut], check)

    def op_nested(self) -> None:
        rng, c = self.rng, self.client
        n = rng.randrange(2, 20)
        how = rng.choice([t.fan_out, t.seceded_fan_out])
        fut = c.submit(how, n, pure=False)
        want = sum(range(1, n + 1))
        self.start(f"{how.__name__}({n})", [fut], lambda: self.expect(fut, want))

    def op_as_completed(self) -> None:
        rng, c = self.rng, self.client
        xs = [rng.randrange(1000) for _ in range(rng.randrange(1, 30))]
        futs = c.map(t.slow_inc, xs, delay=rng.choice([0.0, 0.02]), pure=False)
        if rng.random() < 0.5:
            self.note(f"kill worker {self.kill()} before as_completed")

        def check() -> None:
            got = self.bounded(lambda: sorted(
                r for _, r in as_completed(futs, with_results=True, timeout=DEADLINE)),
                "as_completed", futs)
            assert got == sorted(x + 1 for x in xs)

        self.start(f"as_completed of {len(xs)}", futs, check)

    def op_pure(self) -> None:
        """Keys shared between operations (pure=True): the same tasks asked for again,
        perhaps while an earlier operation's copies are being released or recomputed."""
        rng, c = self.rng, self.client
        first = rng.randrange(0, 40)
        xs = list(range(first, first + rng.randrange(1, 20)))
        a = c.map(t.slow_inc, xs, delay=0.01)
        s = c.submit(t.total, *a)
        want = sum(x + 1 for x in xs)

        def check() -> None:
            assert self.gather(a) == [x + 1 for x in xs]
            assert self.result(s) == want

        self.start(f"pure map of {xs[0]}..{xs[-1]}", [*a, s], check)

    def op_first_completed(self) -> None:
        rng, c = self.rng, self.client
        xs = [rng.randrange(1000) for _ in range(rng.randrange(1, 10))]
        futs = c.map(t.slow_inc, xs, delay=0.02, pure=False)

        def check() -> None:
            done, _ = self.bounded(lambda: wait(futs, timeout=DEADLINE,
                                                return_when=FIRST_COMPLETED),
                                   "wait(FIRST_COMPLETED)", futs)
            assert done and done <= set(futs)
            assert self.gather(futs) == [x + 1 for x in xs]

        self.start(f"wait first of {len(xs)}", futs, check)

    def op_retry_future(self) -> None:
        """A task that fails once, then ``Future.retry()``: the second run's value."""
        c = self.client
        path = os.path.join(self.scratch, f"retry-{self.seed}-{self.step_no}")
        fut = c.submit(t.flaky, path, 1, 11, pure=False)

        def check() -> None:
            try:
                self.result(fut)
            except OSError:
                pass
            else:
                raise AssertionError("a task failing its first run gave a value")
            self.bounded(fut.retry, "Future.retry()", [fut])
            assert self.result(fut) == 11

        self.start("Future.retry()", [fut], check)

    def op_big_transfer(self) -> None:
        """A large result moved to another worker, or to the client, while its holder or
        the reader is killed."""
        rng, c = self.rng, self.client
        mb, fill = rng.choice([8, 32]), rng.randrange(256)
        workers = sorted(self.cluster.scheduler.state.workers)
        if len(workers) < 2:
            return
        holder, reader = rng.sample(workers, 2)
        src = c.submit(t.big, mb, fill, workers=[holder], allow_other_workers=True, pure=False)
        out = c.submit(t.measure, src, workers=[reader], allow_other_workers=True, pure=False)
        to_client = rng.random() < 0.5
        self.note(f"big transfer {mb} MB (to client: {to_client})")
        state = self.cluster.scheduler.state
        deadline = time.monotonic() + DEADLINE
        target = src if to_client else out

        def moving() -> bool:
            ts = state.tasks.get(src.key)
            return (ts is not None and ts.state == "memory") or src.done()

        while not moving() and time.monotonic() < deadline:
            time.sleep(0.002)
        if to_client:
            timer = self.kill_soon()
            try:
                got = self.bounded(lambda: src.result(timeout=DEADLINE), "big result", [src])
            finally:
                timer.join()  # ends: the timer's delay
            assert len(got) == mb << 20 and got[-1] == fill % 256
        else:
            victim = rng.choice([holder, reader])
            self.note(f"kill worker {self.kill(victim)} mid-transfer")
        self.start(f"big transfer of {mb} MB", [target, out],
                   lambda: self.expect(out, (mb << 20, fill % 256)))


def describe_task(state: Any, ts: Any, prefix: str) -> list[str]:
    if ts is None:
        return [f"{prefix}(not on the scheduler)"]
    on = getattr(ts.processing_on, "address", None)
    holders = sorted(ws.address for ws in ts.who_has)
    lines = [f"{prefix}{ts.key!r}: {ts.state}, processing on {on}, held by {holders}, "
             f"wanted by {sorted(ts.who_wants)}"]
    lines.extend(f"{prefix}  story: {row}"[:300] for row in state.story(ts.key)[-8:])
    return lines
