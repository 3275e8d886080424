"""Programs that meet trouble (on clusters of their own, with a GPU resource): a restart while futures are held, a worker killed in the
middle of a computation (recomputed) or by every try of its task (KilledWorker), a large
graph cancelled while it runs, a client closed while its tasks run. Each ends with the
cluster still usable and the outcome dask.distributed gives."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import time

import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from shoal import Client, KilledWorker, wait

from .._helpers import gated, wait_for

pytestmark = pytest.mark.integration


def inc(x: int) -> int:
    return x + 1


def slow(x: int) -> int:
    time.sleep(0.2)
    return x


def slow_block(b: np.ndarray) -> np.ndarray:
    time.sleep(0.002)
    return b


def scheduler_task_count(client: Client) -> int:
    return client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))


def test_restart_with_held_futures_then_worker_killed_mid_run(make_client):
    client = make_client(resources={"GPU": 1})
    assert [w["resources"] for w in client.scheduler_info()["workers"].values()] == [{"GPU": 1}] * 2
    gpu = client.map(inc, range(4), resources={"GPU": 1}, key=[f"gpu-{i}" for i in range(4)])
    assert client.gather(gpu) == [1, 2, 3, 4]
    held = client.map(inc, range(5))
    array = client.persist(da.arange(40, chunks=10) * 2)
    wait([held, array], timeout=30)
    client.restart()
    assert {f.status for f in held} == {"cancelled"}
    with pytest.raises(concurrent.futures.CancelledError):
        held[0].result(timeout=10)
    with pytest.raises(concurrent.futures.CancelledError):
        array.sum().compute()
    assert client.submit(inc, 100).result(timeout=30) == 101

    # A worker dies while a map runs: its tasks are computed again on the other.
    futs = client.map(slow, range(8), pure=False)
    wait_for(lambda: any(f.status == "finished" for f in futs), timeout=30)
    pids = client.run(os.getpid)
    os.kill(pids[sorted(pids)[0]], signal.SIGKILL)
    assert sorted(client.gather(futs)) == list(range(8))
    client.wait_for_workers(2, timeout=60)  # the nanny starts a fresh one


def test_a_shuffle_survives_a_killed_worker_and_a_task_that_kills_every_worker_fails(make_client):
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):  # two deaths, not four
        client = make_client()
    pdf = pd.DataFrame({"a": np.arange(20000) % 97, "b": np.arange(20000)})
    slowed = dd.from_pandas(pdf, npartitions=20).map_partitions(lambda p: (time.sleep(0.05), p)[1])
    total = client.compute(slowed.shuffle("a", shuffle_method="tasks").b.sum())
    wait_for(lambda: scheduler_task_count(client) > 0 and any(client.processing().values()),
             timeout=30)
    pids = client.run(os.getpid)
    os.kill(pids[sorted(pids)[1]], signal.SIGKILL)
    assert total.result(timeout=120) == pdf.b.sum()

    client.wait_for_workers(2, timeout=60)
    with pytest.raises(KilledWorker):
        client.submit(kill_my_worker, pure=False).result(timeout=120)
    client.wait_for_workers(2, timeout=60)
    assert client.submit(inc, 1, pure=False).result(timeout=60) == 2


def kill_my_worker() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def test_cancelling_a_large_graph_mid_run_lets_the_cluster_forget_it(client):
    x = da.ones((3000, 3000), chunks=(30, 30)).map_blocks(slow_block)
    fut = client.compute((x + x.T).sum())
    wait_for(lambda: scheduler_task_count(client) > 10_000, timeout=30)
    fut.cancel()
    assert fut.cancelled() and fut.status == "cancelled"
    with pytest.raises(concurrent.futures.CancelledError):
        fut.result(timeout=10)
    wait_for(lambda: scheduler_task_count(client) == 0, timeout=30)
    assert client.submit(inc, 1, pure=False).result(timeout=30) == 2


def test_a_client_closed_while_its_tasks_run(client, tmp_path):
    gate = tmp_path / "gate"
    other = Client(client.cluster, set_as_default=False)
    futs = other.map(gated, [str(gate)] * 4, range(4), pure=False)
    wait_for(lambda: any(client.processing().values()), timeout=30)
    started = time.monotonic()
    other.close()
    assert time.monotonic() - started < 10
    assert [f.status for f in futs] == ["cancelled"] * 4
    with pytest.raises(concurrent.futures.CancelledError, match="closed"):
        futs[0].result(timeout=5)
    with pytest.raises(RuntimeError, match="closed"):
        other.submit(inc, 1)
    gate.touch()
    wait_for(lambda: scheduler_task_count(client) == 0, timeout=30)
