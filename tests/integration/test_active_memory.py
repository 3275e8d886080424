"""The Active Memory Manager on a real cluster: ``client.amm``, its config, what a pass does
to copies of a persisted array, and that nothing is lost when workers go afterwards."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import dask
import dask.array as da
import numpy as np

from shoal import Client, futures_of, wait

from ._helpers import wait_for

AMM = "distributed.scheduler.active-memory-manager"


def _holders(c: Client, futures: list[Any]) -> dict[Any, tuple[str, ...]]:
    return c.who_has(futures)


def _held_by_workers(c: Client) -> dict[str, set[Any]]:
    """The keys each worker process really holds (not what the scheduler believes)."""
    return {w: set(keys) for w, keys in c.run(lambda dask_worker: list(dask_worker.data)).items()}


async def _leave_copies(dask_scheduler: Any) -> int:
    """Copy every held key to one other worker through the path a retirement takes
    (``CopyKeys`` to the destination, ``DataCopied`` recorded), without removing the source:
    the copies a retirement that did not finish leaves behind. Answers how many."""
    from shoal.scheduler._membership import _copy
    from shoal.scheduler._retire import Move

    addresses = sorted(dask_scheduler.state.workers)
    moves = []
    for ts in dask_scheduler.state.tasks.values():
        if ts.state == "memory" and len(ts.who_has) == 1:
            (src,) = (w.address for w in ts.who_has)
            dest = addresses[(addresses.index(src) + 1) % len(addresses)]
            moves.append(Move(ts.key, src, dest, ts.nbytes))
    await _copy(dask_scheduler, moves, 60)
    return len(moves)


def _persisted(c: Client) -> tuple[Any, list[Any]]:
    x = da.random.RandomState(0).random((400, 400), chunks=(100, 100)).persist()
    futures = futures_of(x)
    wait(futures)
    return x, futures


def test_a_persisted_array_read_across_workers_is_held_once_even_without_the_amm(
        make_client: Any) -> None:
    # Why shoal's AMM rarely finds work: a worker drops an input it fetched once its last
    # task reading it ends, where dask's keeps it until the AMM takes it away.
    c = make_client(3)
    c.amm.stop()
    x, futures = _persisted(c)
    expected = (x.compute() @ x.compute().T).sum()
    assert np.isclose((x @ x.T).sum().compute(), expected)  # every block meets every other
    assert all(len(h) == 1 for h in _holders(c, futures).values())
    keys = {f.key for f in futures}
    wait_for(lambda: sum(len(held & keys) for held in _held_by_workers(c).values()) == len(keys))


def test_a_pass_leaves_exactly_one_holder_of_each_persisted_chunk(make_client: Any) -> None:
    c = make_client(3)
    c.amm.stop()
    x, futures = _persisted(c)
    total = x.compute().sum()
    assert c.run_on_scheduler(_leave_copies) == len(futures)
    before = _holders(c, futures)
    assert all(len(h) == 2 for h in before.values())  # stopped: the copies stay
    keys = {f.key for f in futures}
    assert sum(len(held & keys) for held in _held_by_workers(c).values()) == 2 * len(keys)

    c.amm.run_once()
    assert all(len(h) == 1 for h in _holders(c, futures).values())
    # and the workers really let them go (the frees follow the scheduler's decision)
    wait_for(lambda: sum(len(held & keys) for held in _held_by_workers(c).values()) == len(keys))
    assert np.isclose(x.sum().compute(), total)


def test_the_amm_runs_by_itself_every_interval(make_client: Any) -> None:
    with dask.config.set({f"{AMM}.interval": "100ms"}):
        c = make_client(2)
    assert c.amm.running()
    c.amm.stop()
    _, futures = _persisted(c)
    c.run_on_scheduler(_leave_copies)
    assert all(len(h) == 2 for h in _holders(c, futures).values())
    c.amm.start()
    wait_for(lambda: all(len(h) == 1 for h in _holders(c, futures).values()))


def test_config_start_false_leaves_it_stopped_and_start_stop_switch_it(make_client: Any) -> None:
    with dask.config.set({f"{AMM}.start": False}):
        c = make_client(1)
    assert c.amm.running() is False
    c.amm.start()
    assert c.amm.running() is True
    c.amm.stop()
    assert c.amm.running() is False
    assert c.amm.run_once() is None  # runs although stopped


def test_copies_asked_for_are_kept_unlike_dask(make_client: Any) -> None:
    # dask's ReduceReplicas undoes replicate() and scatter(broadcast=True) (its docs say to
    # stop the AMM first); shoal's keeps what was asked for.
    c = make_client(3)
    fut = c.submit(lambda: b"x" * 1000, key="asked-for")
    fut.result()
    c.replicate([fut], n=2)
    [s] = c.scatter([b"y" * 1000], broadcast=True)
    c.amm.run_once()
    assert len(_holders(c, [fut])[fut.key]) == 2
    assert len(_holders(c, [s])[s.key]) == 3
    c.replicate([fut], n=1)  # a reduction, which also withdraws the wish
    c.amm.run_once()
    assert len(_holders(c, [fut])[fut.key]) == 1


def test_nothing_is_lost_when_workers_retire_and_die_after_a_pass(make_client: Any) -> None:
    c = make_client(3)
    c.amm.stop()
    x, futures = _persisted(c)
    total = x.compute().sum()
    [s] = c.scatter([b"z" * 1000], broadcast=True)
    c.run_on_scheduler(_leave_copies)
    c.amm.run_once()
    assert all(len(h) == 1 for h in _holders(c, futures).values())
    workers = sorted(c.scheduler_info()["workers"])
    c.retire_workers([workers[0]])
    pid = c.run(os.getpid, workers=[workers[1]])[workers[1]]
    os.kill(pid, 9)
    wait_for(lambda: workers[1] not in c.scheduler_info()["workers"])
    values = c.gather(futures)
    assert np.isclose(sum(v.sum() for v in values), total)
    assert s.result() == b"z" * 1000
    assert np.isclose(x.sum().compute(), total)


def test_client_amm_is_awaitable_on_an_asynchronous_client(make_client: Any) -> None:
    c = make_client(1)
    c.asynchronous = True  # what Client(asynchronous=True) sets

    async def go() -> tuple[Any, ...]:
        await c.amm.stop()
        stopped = await c.amm.running()
        await c.amm.start()
        return stopped, await c.amm.running(), await c.amm.run_once()

    try:
        assert asyncio.run(go()) == (False, True, None)
    finally:
        c.asynchronous = False


def test_passes_racing_a_computation_that_reads_the_copies_lose_nothing(make_client: Any) -> None:
    # The AMM drops copies every 50 ms while tasks on other workers fetch them (the fetch of
    # a dropped copy fails over to another holder) and while tasks on the holders read them.
    with dask.config.set({f"{AMM}.interval": "50ms"}):
        c = make_client(3)
    x, futures = _persisted(c)
    local = x.compute()
    expected = (local @ local.T).sum()
    for _ in range(4):
        c.run_on_scheduler(_leave_copies)
        assert np.isclose((x @ x.T).sum().compute(), expected)
    wait_for(lambda: all(len(h) == 1 for h in _holders(c, futures).values()))
    keys = {f.key for f in futures}
    wait_for(lambda: sum(len(held & keys) for held in _held_by_workers(c).values()) == len(keys))
