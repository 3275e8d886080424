"""Resources and restrictions across processes: ``resources=`` limits what runs at once on a
worker, annotations made with ``dask.annotate`` are honoured, and a resource no worker has
leaves the task waiting (and says why)."""

from __future__ import annotations

import itertools
import os
import time

import dask
import pytest

from ._helpers import wait_for

pytestmark = pytest.mark.integration


def stamped(i):
    start = time.time()
    time.sleep(0.15)
    return os.getpid(), start, time.time()


def _overlaps(rows):
    by_pid: dict[int, list[tuple[float, float]]] = {}
    for pid, start, stop in rows:
        by_pid.setdefault(pid, []).append((start, stop))
    n = 0
    for spans in by_pid.values():
        spans.sort()
        n += sum(1 for a, b in itertools.pairwise(spans) if b[0] < a[1])
    return n, len(by_pid)


def test_tasks_needing_a_gpu_never_overlap_on_a_worker(make_client):
    c = make_client(n_workers=2, threads_per_worker=2, resources={"GPU": 1})
    futures = c.map(stamped, range(8), resources={"GPU": 1}, pure=False)
    overlaps, workers = _overlaps(c.gather(futures))
    assert overlaps == 0
    assert workers == 2
    # Without the restriction the same tasks do share a worker's two threads.
    free = c.gather(c.map(stamped, range(8), pure=False))
    assert _overlaps(free)[0] > 0


def test_annotated_collection_holds_its_resources(make_client):
    c = make_client(n_workers=1, threads_per_worker=3, resources={"GPU": 1})
    parts = [dask.delayed(stamped, pure=False)(i) for i in range(4)]
    with dask.annotate(resources={"GPU": 1}):
        rows = dask.compute(*parts)
    assert _overlaps(rows)[0] == 0
    with dask.annotate(resources={"GPU": 1}):
        futures = c.compute(parts)
    assert _overlaps(c.gather(futures))[0] == 0


def test_resource_no_worker_has_waits_in_no_worker_and_explain_says_why(client):
    fut = client.submit(stamped, 0, resources={"TPU": 1}, pure=False)
    state = client.cluster.scheduler.state
    wait_for(lambda: fut.key in state.tasks and state.tasks[fut.key].state == "no-worker",
             timeout=10)
    with pytest.raises(ValueError, match=r"no-worker.*TPU"):
        client.explain(fut)
    fut.release()


def test_workers_resources_come_from_dask_config(make_client):
    with dask.config.set({"distributed.worker.resources": {"MEM": 10e9}}):
        c = make_client(n_workers=1)
    (info,) = c.scheduler_info()["workers"].values()
    assert info["resources"] == {"MEM": 10e9}


def test_workers_restriction_by_host_and_annotate(make_client):
    c = make_client(n_workers=2)
    first = sorted(c.scheduler_info()["workers"])[0]
    with dask.annotate(workers=[first]):
        futures = c.compute([dask.delayed(stamped, pure=False)(i) for i in range(3)])
    c.gather(futures)
    assert {w for ws in c.who_has(futures).values() for w in ws} == {first}
    # A host name matches every worker on that host.
    on_host = c.gather(c.map(stamped, range(4), workers="127.0.0.1", pure=False))
    assert len(on_host) == 4


def test_allow_other_workers_runs_where_the_named_worker_is_not(make_client):
    c = make_client(n_workers=1)
    fut = c.submit(stamped, 0, workers=["tcp://10.255.255.1:1"], allow_other_workers=True,
                   pure=False)
    assert len(fut.result(timeout=120)) == 3


def test_many_tasks_restricted_to_one_worker_all_finish(make_client):
    c = make_client(n_workers=2)
    first = sorted(c.scheduler_info()["workers"])[0]
    futures = c.map(abs, range(-2000, 0), workers=[first])
    assert c.gather(futures) == list(range(2000, 0, -1))
    assert {w for ws in c.who_has(futures).values() for w in ws} == {first}


def test_bad_resources_and_allow_other_workers_fail_before_submitting(client):
    with pytest.raises(TypeError, match="resources="):
        client.submit(stamped, 0, resources={"GPU": -1})
    with pytest.raises(TypeError, match="resources="):
        client.map(stamped, [0], resources=["GPU"])
    with pytest.raises(TypeError, match="allow_other_workers"):
        client.submit(stamped, 0, allow_other_workers="yes")
    assert not client.cluster.scheduler.state.tasks or all(
        not k.startswith("stamped") for k in map(str, client.cluster.scheduler.state.tasks)
    )


def test_no_workers_timeout_fails_a_task_no_worker_can_run_unless_one_joins_in_time():
    """dask's distributed.scheduler.no-workers-timeout: a task whose resource no worker
    offers fails with NoValidWorkerError, rather than wait forever; a worker offering it
    that joins within the timeout runs it."""
    import asyncio

    from shoal import Client, Scheduler, Worker
    from shoal.scheduler import NoValidWorkerError

    async def main() -> None:
        with dask.config.set({"distributed.scheduler.no-workers-timeout": "2s"}):
            s = await Scheduler(dashboard=False)
        workers = [await Worker(s.address, nthreads=1)]  # no GPU
        try:
            async with Client(s.address, asynchronous=True) as client:
                saved = client.submit(stamped, 0, resources={"GPU": 1}, pure=False)
                # it fails two to three ticks (1 s each) after waiting: the worker joins first (2 s:
                # room for the in-process worker to start on a loaded machine)
                workers.append(await Worker(s.address, nthreads=1, resources={"GPU": 1}))
                await asyncio.wait_for(saved, 60)
                doomed = client.submit(stamped, 1, resources={"TPU": 1}, pure=False)
                start = time.monotonic()
                with pytest.raises(NoValidWorkerError, match="TPU"):
                    await asyncio.wait_for(doomed, 30)  # ends: the timeout, 2-3 s
                assert 2.0 <= time.monotonic() - start < 15
        finally:
            for w in workers:
                await w.close()
            await s.close()

    asyncio.run(asyncio.wait_for(main(), 120))
