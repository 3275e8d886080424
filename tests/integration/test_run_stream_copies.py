"""Issue 11: ``client.run`` / ``run_on_scheduler``, the task stream, ``replicate`` and
``rebalance`` on a real cluster."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest

from shoal import Client, get_task_stream

from ._helpers import wait_for

pytestmark = pytest.mark.integration


# --- client.run ------------------------------------------------------------------------------


def _address_of(dask_worker: Any) -> str:
    return str(dask_worker.address)


async def _async_plus(x: int, dask_worker: Any = None) -> tuple[int, bool]:
    await asyncio.sleep(0.01)
    # Awaited on the worker's own loop, the thread that runs the worker's I/O.
    return x + 1, asyncio.get_running_loop() is dask_worker._executor._loop


def _fail(x: int) -> None:
    raise ZeroDivisionError(f"run failed with {x}")


def test_run_gives_the_worker_to_a_function_with_a_dask_worker_parameter(client: Client) -> None:
    out = client.run(_address_of)
    assert out == {a: a for a in out}
    assert len(out) == 2


def test_run_passes_args_and_kwargs_and_limits_to_workers(client: Client) -> None:
    first = sorted(client.scheduler_info()["workers"])[0]
    assert client.run(divmod, 7, 2, workers=[first]) == {first: (3, 1)}


def test_run_awaits_an_async_function_on_the_workers_loop(client: Client) -> None:
    out = client.run(_async_plus, 1)
    assert set(out.values()) == {(2, True)}


async def _mark_later(dask_worker: Any, token: str) -> None:
    await asyncio.sleep(0.05)
    dask_worker._h11_mark = token


def _mark(dask_worker: Any) -> Any:
    return getattr(dask_worker, "_h11_mark", None)


def test_run_without_wait_starts_an_async_function_and_returns_none(client: Client) -> None:
    token = f"t{time.time()}"
    assert client.run(_mark_later, token=token, wait=False) is None
    wait_for(lambda: set(client.run(_mark).values()) == {token})


async def _kill_own_process() -> None:
    os.kill(os.getpid(), 9)


@pytest.mark.timeout(240)  # starts a cluster of its own
def test_run_without_wait_answers_before_the_function_starts(make_client) -> None:
    # dask's chaos idiom: an async function that kills its worker, started with wait=False,
    # returns None; shoal's worker started it before its answer left and run() raised.
    c = make_client(n_workers=1)
    [victim] = c.scheduler_info()["workers"]
    assert c.run(_kill_own_process, wait=False) is None
    wait_for(lambda: victim not in c.scheduler_info()["workers"], timeout=60)


def test_run_without_wait_of_a_plain_function_raises_and_runs_nothing(client: Client) -> None:
    # dask: wait=False is for async functions only; a plain one fails ("Combination not
    # supported") with on_error="raise", and gives None otherwise, running nothing.
    token = f"p{time.time()}"
    with pytest.raises(ValueError, match="wait=False"):
        client.run(_set_mark, token=token, wait=False)
    assert client.run(_set_mark, token=token, wait=False, on_error="ignore") is None
    assert token not in set(client.run(_mark).values())


def _set_mark(dask_worker: Any, token: str) -> None:
    dask_worker._h11_mark = token


def test_run_on_error_raise_return_and_ignore(client: Client) -> None:
    with pytest.raises(ZeroDivisionError, match="run failed with 3"):
        client.run(_fail, 3)
    returned = client.run(_fail, 4, on_error="return")
    assert len(returned) == 2
    assert all(isinstance(e, ZeroDivisionError) for e in returned.values())
    assert client.run(_fail, 5, on_error="ignore") == {}
    with pytest.raises(ValueError, match="on_error"):
        client.run(os.getpid, on_error="explode")


def _die_on(address: str, dask_worker: Any = None) -> int:
    if dask_worker.address == address:
        os._exit(1)  # this worker's process dies during the run
    return 1


def test_run_on_a_worker_that_dies_during_it_is_an_oserror_as_in_dask(make_client) -> None:
    # dask: the dead worker's entry is a CommClosedError (an OSError), raised with "raise"
    client = make_client(n_workers=2)
    first, second = sorted(client.scheduler_info()["workers"])
    returned = client.run(_die_on, first, on_error="return")
    assert returned[second] == 1
    assert isinstance(returned[first], OSError), repr(returned[first])
    assert "died during run" in str(returned[first])
    wait_for(lambda: len(client.scheduler_info()["workers"]) == 2, timeout=60)
    victim = sorted(client.scheduler_info()["workers"])[0]
    with pytest.raises(OSError, match="died during run"):
        client.run(_die_on, victim)


def _nanny_kind(dask_worker: Any) -> tuple[str, int]:
    return type(dask_worker).__name__, os.getpid()


def test_run_on_the_nannies_runs_in_the_process_holding_them(client: Client) -> None:
    out = client.run(_nanny_kind, nanny=True)
    assert set(out) == set(client.scheduler_info()["workers"])
    assert set(out.values()) == {("Nanny", os.getpid())}


def test_run_on_the_nannies_of_a_remote_cluster_says_why_it_cannot(client: Client) -> None:
    with (Client(client.scheduler_address, set_as_default=False) as remote,
          pytest.raises(NotImplementedError, match="nannies are not reachable")):
        remote.run(os.getpid, nanny=True)


def _count_workers(dask_scheduler: Any, plus: int = 0) -> int:
    return len(dask_scheduler.workers) + plus


async def _async_count(dask_scheduler: Any) -> int:
    await asyncio.sleep(0.01)
    return len(dask_scheduler.workers)


def test_run_on_scheduler_gives_the_scheduler_and_awaits_async_functions(client: Client) -> None:
    assert client.run_on_scheduler(_count_workers, plus=10) == 12
    assert client.run_on_scheduler(_async_count) == 2


def test_run_on_scheduler_raises_the_functions_exception(client: Client) -> None:
    with pytest.raises(ZeroDivisionError, match="run failed with 9"):
        client.run_on_scheduler(_fail, 9)


# --- the task stream -------------------------------------------------------------------------


def _inc(x: int) -> int:
    return x + 1


def _boom(x: int) -> int:
    raise ValueError("boom")


def test_get_task_stream_records_what_ran_inside_the_block(client: Client) -> None:
    with get_task_stream(client=client) as ts:
        client.gather(client.map(_inc, range(5), key=[f"ts-inc-{i}" for i in range(5)]))
        bad = client.submit(_boom, 1, key="ts-boom")
        with pytest.raises(ValueError):
            bad.result()
    computes = [r for r in ts.data if r["startstops"][0]["action"] == "compute"]
    assert {r["key"] for r in computes} == {*(f"ts-inc-{i}" for i in range(5)), "ts-boom"}
    workers = set(client.scheduler_info()["workers"])
    for r in computes:
        assert {"key", "worker", "status", "nbytes", "thread", "startstops", "type"} <= set(r)
        assert r["worker"] in workers
        (ss,) = r["startstops"]
        assert ss["start"] <= ss["stop"]
    assert [r["status"] for r in computes if r["key"] == "ts-boom"] == ["error"]
    assert {r["status"] for r in computes if r["key"] != "ts-boom"} == {"OK"}


def test_client_get_task_stream_by_count_and_time(client: Client) -> None:
    client.gather(client.map(_inc, range(10, 14)))
    last = client.get_task_stream(count=3)
    assert len(last) == 3
    recent = client.get_task_stream(start="60s")
    assert len(recent) >= 4
    assert client.get_task_stream(start=time.time() + 3600) == ()  # a tuple, as dask's
    with pytest.raises(NotImplementedError, match="bokeh"):
        client.get_task_stream(plot=True)


def test_get_task_stream_uses_the_default_client(client: Client) -> None:
    with get_task_stream() as ts:
        client.submit(_inc, 100, key="ts-default").result()
    assert "ts-default" in {r["key"] for r in ts.data}


# --- replicate and rebalance -------------------------------------------------------------------


def _blob(i: int) -> bytes:
    return bytes(10_000 + i)


def test_replicate_puts_copies_on_n_workers_and_who_has_shows_them(client: Client) -> None:
    futs = client.map(_blob, range(4), key=[f"rep-{i}" for i in range(4)])
    client.gather(futs)
    client.replicate(futs, n=2)
    who = client.who_has(futs)
    assert all(len(holders) == 2 for holders in who.values()), who
    assert client.gather(futs) == [_blob(i) for i in range(4)]
    client.replicate(futs, n=1)  # fewer copies than there are: a reduction
    assert all(len(h) == 1 for h in client.who_has(futs).values())
    assert client.gather(futs) == [_blob(i) for i in range(4)]


def test_replicate_refuses_bad_n_and_failed_futures(client: Client) -> None:
    fut = client.submit(_inc, 1, key="rep-bad-n")
    with pytest.raises(ValueError, match="n is the number"):
        client.replicate([fut], n=0)
    bad = client.submit(_boom, 1, key="rep-failed")
    with pytest.raises(ValueError, match="rep-failed"):
        client.replicate([bad])
    with pytest.raises(ValueError, match="unknown workers"):
        client.replicate([fut], workers=["tcp://127.0.0.1:1"])


def test_a_replicated_result_survives_the_death_of_its_first_holder(make_client: Any) -> None:
    c = make_client(2)
    fut = c.submit(_blob, 7, key="rep-survives")
    fut.result()
    c.replicate([fut])
    (first, *_), = c.who_has([fut]).values()
    pid = c.run(os.getpid, workers=[first])[first]
    os.kill(pid, 9)
    wait_for(lambda: first not in c.scheduler_info()["workers"])
    assert fut.result() == _blob(7)
    assert c.story(fut.key)[-1][3] == "memory"  # still in memory: never recomputed


def test_rebalance_moves_data_off_the_worker_holding_it_all(make_client: Any) -> None:
    c = make_client(2)
    workers = sorted(c.scheduler_info()["workers"])
    data = c.scatter([bytes(10_000 + i) for i in range(10)], workers=[workers[0]])
    assert all(h == (workers[0],) for h in c.who_has(data).values())
    c.rebalance()

    def held() -> dict[str, int]:
        out = dict.fromkeys(workers, 0)
        for _key, holders in c.who_has(data).items():
            for w in holders:
                out[w] += 1
        return out

    counts = held()
    assert abs(counts[workers[0]] - counts[workers[1]]) <= 1, counts
    assert sum(counts.values()) == 10  # moved, not copied
    assert c.gather(data) == [bytes(10_000 + i) for i in range(10)]
    assert {w: len(k) for w, k in c.has_what().items()} == counts


def test_rebalance_of_some_futures_moves_only_those(make_client: Any) -> None:
    c = make_client(2)
    workers = sorted(c.scheduler_info()["workers"])
    data = c.scatter([bytes(10_000 + i) for i in range(6)], workers=[workers[0]])
    c.rebalance(data[:2])
    who = c.who_has(data)
    assert all(who[f.key] == (workers[0],) for f in data[2:])
    assert any(who[f.key] == (workers[1],) for f in data[:2])


# --- one implementation, two faces ------------------------------------------------------------


def test_the_operations_are_awaitable_for_an_asynchronous_client(make_client: Any) -> None:
    c = make_client(1)
    c.asynchronous = True  # what Client(asynchronous=True) sets; its own core comes later

    async def main() -> tuple[Any, ...]:
        fut = c.submit(_blob, 3, key="two-faces")
        pids = await c.run(os.getpid)
        here = await c.run_on_scheduler(_count_workers)
        await c.replicate([fut])
        stream = await c.get_task_stream(count=1)
        async with get_task_stream(client=c) as ts:
            await c.run(os.getpid)
            assert await c.submit(_inc, 41, key="two-faces-inside") == 42
        assert [r["key"] for r in ts.data] == ["two-faces-inside"]
        return pids, here, stream

    try:
        pids, here, stream = asyncio.run(main())
    finally:
        c.asynchronous = False
    assert len(pids) == 1 and here == 1
    assert [r["key"] for r in stream] == ["two-faces"]
