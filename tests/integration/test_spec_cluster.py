"""``SpecCluster``, as dask documents it: specs ``{"cls": ..., "options": {...}}`` with
shoal's ``Scheduler``/``Worker``/``Nanny`` (or dask's dotted names for them), ``scale``
from the ``worker`` template, ``scale_down``, ``adapt``, ``Client(cluster)``, and the
asynchronous form. One cluster (in-process workers and one nanny) for the module."""

from __future__ import annotations

import asyncio
import datetime
import os
from collections.abc import Iterator

import distributed
import pytest

from shoal import Adaptive, Client, Nanny, Scheduler, SpecCluster, SubprocessCluster, Worker
from shoal.cluster import _spec
from shoal.cluster._spec import resolve_class
from shoal.cluster._subprocess import SubprocessScheduler, SubprocessWorker

from ._helpers import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]  # starts processes

SCHEDULER = {"cls": Scheduler, "options": {"dashboard": False}}
TEMPLATE = {"cls": Worker, "options": {"nthreads": 1}}


@pytest.fixture(scope="module")
def cluster() -> Iterator[SpecCluster]:
    workers = {"thread": {"cls": Worker, "options": {"nthreads": 1}},
               "proc": {"cls": "distributed.Nanny", "options": {"nthreads": 1}}}
    with SpecCluster(workers=workers, scheduler=SCHEDULER, worker=TEMPLATE) as c:
        yield c


@pytest.fixture(scope="module")
def client(cluster: SpecCluster) -> Iterator[Client]:
    with Client(cluster) as c:
        yield c


def names(client: Client) -> set[str]:
    return {str(w["name"]) for w in client.scheduler_info()["workers"].values()}


def test_the_spec_becomes_servers_named_by_its_keys(cluster, client):
    assert isinstance(cluster.workers["thread"], Worker)
    assert isinstance(cluster.workers["proc"], Nanny)  # "distributed.Nanny" is shoal's
    assert cluster.scheduler_address.startswith("tcp://")
    assert client.cluster is cluster
    assert names(client) == {"thread", "proc"}
    assert client.submit(lambda x: x + 1, 1).result() == 2
    info = cluster.scheduler_info
    assert {w["name"] for w in info["workers"].values()} == {"thread", "proc"}
    assert "workers=2" in repr(cluster)


def test_wait_for_workers_takes_dask_durations_and_checks_its_arguments(cluster, client):
    assert cluster.wait_for_workers(2, timeout="1 minute") is None
    assert cluster.wait_for_workers(2, timeout=datetime.timedelta(seconds=60)) is None
    with pytest.raises(TimeoutError, match="only 2 of 3 workers"):
        cluster.wait_for_workers(3, timeout="100ms")
    with pytest.raises(ValueError, match="n_workers"):
        cluster.wait_for_workers(0)
    with pytest.raises(ValueError, match="not a duration"):
        cluster.wait_for_workers(1, timeout="soon")


def test_get_logs_per_source(cluster, client):
    logs = cluster.get_logs(workers=[cluster.workers["thread"].address])
    assert set(logs) == {"Cluster", "Scheduler", cluster.workers["thread"].address}
    assert all(isinstance(text, str) for text in logs.values())


def test_scale_adds_from_the_template_and_removes_the_newest(cluster, client):
    assert cluster.new_worker_spec() == {0: TEMPLATE}
    cluster.scale(4)
    assert list(cluster.worker_spec) == ["thread", "proc", 0, 1]
    assert cluster.worker_spec[0] == TEMPLATE
    assert set(cluster.workers) == {"thread", "proc", 0, 1}
    assert names(client) == {"thread", "proc", "0", "1"}
    assert cluster.plan == cluster.requested == {"thread", "proc", 0, 1}
    cluster.scale(3)
    assert list(cluster.worker_spec) == ["thread", "proc", 0]
    wait_for(lambda: names(client) == {"thread", "proc", "0"}, timeout=30)
    cluster.scale_down([0])  # by name (an address works too)
    assert list(cluster.workers) == ["thread", "proc"]
    wait_for(lambda: names(client) == {"thread", "proc"}, timeout=30)


def test_scale_by_cores_reads_the_template(cluster, client):
    with pytest.raises(ValueError, match="non-negative integer"):
        cluster.scale(-1)
    with pytest.raises(ValueError, match="memory_limit"):
        cluster.scale(memory="1GB")
    cluster.scale(cores=3)  # one thread each: three workers
    assert len(cluster.worker_spec) == 3
    cluster.scale(2)
    wait_for(lambda: names(client) == {"thread", "proc"}, timeout=30)


class Wanted(Adaptive):
    wanted = 3

    async def target(self) -> int:
        return self.wanted


def test_adapt_drives_the_spec_up_and_down(cluster, client):
    adaptive = cluster.adapt(Adaptive=Wanted, minimum=0, maximum=5, interval="20ms",
                             wait_count=1)
    try:
        wait_for(lambda: len(names(client)) == 3, timeout=30)
        assert adaptive.log[0][1] == {"status": "up", "n": 3}
        assert len(cluster.worker_spec) == 3
        adaptive.wanted = 2  # an idle worker is retired, and leaves the spec
        wait_for(lambda: len(names(client)) == 2 and len(cluster.worker_spec) == 2, timeout=30)
        assert adaptive.log[-1][1]["status"] == "down"
        assert set(cluster.workers) == set(cluster.worker_spec)
    finally:
        adaptive.stop()
    cluster.scale(2)  # (whichever idle worker the policy retired: the last test of it)
    wait_for(lambda: len(names(client)) == 2, timeout=30)


def test_asynchronous_use_and_a_cluster_without_a_template():
    async def main() -> None:
        async with SpecCluster(scheduler=SCHEDULER, asynchronous=True) as c:
            assert c.status == "running" and c.workers == {}
            with pytest.raises(ValueError, match="no worker= spec"):
                c.scale(1)
            c.worker_spec["late"] = TEMPLATE
            await c  # awaiting brings the workers in line with the spec, as dask's
            assert list(c.workers) == ["late"]
            async with Client(c, asynchronous=True) as client:
                assert await client.submit(lambda: 7) == 7
            await c.scale(0)
            assert c.workers == {}
        assert c.status == "closed"

    asyncio.run(main())


class MultiWorker:
    """One spec entry, several workers (as dask's docs' ``MultiWorker`` or a batch job): each
    named by the entry's name and a suffix of its ``"group"``."""

    def __init__(self, scheduler: str, name: object, suffixes: tuple[str, ...] = ("-0", "-1"),
                 **options: object) -> None:
        self.workers = [Worker(scheduler, name=f"{name}{s}", **options) for s in suffixes]

    def __await__(self):
        async def started() -> MultiWorker:
            await asyncio.gather(*self.workers)
            return self

        return started().__await__()

    async def close(self) -> None:
        await asyncio.gather(*(w.close() for w in self.workers))


GROUP = {"cls": MultiWorker, "options": {"nthreads": 1}, "group": ["-0", "-1"]}


def test_a_group_spec_is_one_entry_of_several_named_workers():
    with SpecCluster(workers={0: GROUP}, scheduler=SCHEDULER, worker=GROUP) as cluster, \
            Client(cluster) as client:
        assert names(client) == {"0-0", "0-1"}
        assert cluster.plan == cluster.requested == cluster.observed == {"0-0", "0-1"}
        cluster.scale(2)  # counts entries, as dask's: two more workers
        assert list(cluster.worker_spec) == [0, 1]
        assert cluster.plan == cluster.requested == {"0-0", "0-1", "1-0", "1-1"}
        assert names(client) == {"0-0", "0-1", "1-0", "1-1"}
        assert client.submit(lambda x: x + 1, 1).result() == 2
        cluster.scale_down(["1-0"])  # a member's name takes its whole entry down
        assert list(cluster.worker_spec) == [0] and list(cluster.workers) == [0]
        wait_for(lambda: names(client) == {"0-0", "0-1"}, timeout=30)
        address = next(a for a, w in client.scheduler_info()["workers"].items()
                       if w["name"] == "0-1")
        cluster.scale_down([address])  # and so does a member's address
        assert cluster.worker_spec == {} and cluster.plan == set()
        wait_for(lambda: names(client) == set(), timeout=30)
    assert cluster.status == "closed"
    with pytest.raises(TypeError, match="group"):
        SpecCluster(workers={0: {**GROUP, "group": "-0"}}, scheduler=SCHEDULER)


def test_specs_name_shoal_classes_or_say_what_to_use():
    assert resolve_class("distributed.Nanny", "cls") is Nanny
    assert resolve_class("dask.distributed.Worker", "cls") is Worker
    assert resolve_class("distributed.scheduler.Scheduler", "cls") is Scheduler
    assert resolve_class("shoal.Worker", "cls") is Worker
    with pytest.raises(TypeError, match="from shoal import Nanny"):
        resolve_class(distributed.Nanny, "cls")
    with pytest.raises(TypeError, match="shoal has no such class"):
        resolve_class("distributed.deploy.ssh.Scheduler2", "cls")
    with pytest.raises(TypeError, match="'cls'"):
        SpecCluster(workers={"a": {"options": {}}})


def test_subprocess_cluster_runs_each_server_in_a_process_of_its_own():
    with SubprocessCluster(n_workers=1, threads_per_worker=1, dashboard_address=None,
                           worker_class="distributed.Worker") as cluster:
        assert cluster.name == "SubprocessCluster"
        assert isinstance(cluster.scheduler, SubprocessScheduler)
        assert isinstance(cluster.workers[0], SubprocessWorker)
        pids = {cluster.scheduler.process.pid, cluster.workers[0].process.pid}
        assert os.getpid() not in pids
        cluster.wait_for_workers(1, timeout=60)
        assert repr(cluster).startswith("SubprocessCluster(SubprocessCluster, 'tcp://")
        with Client(cluster) as client:
            assert client.submit(os.getpid).result() == cluster.workers[0].process.pid
            cluster.scale(0)  # retired through the scheduler, then its process stopped
            assert cluster.workers == {} and cluster.scheduler_info["workers"] == {}
        process = cluster.scheduler.process
    assert process.returncode is not None  # the scheduler's process ended with close()


def test_a_worker_that_cannot_start_fails_the_cluster_and_closes_it():
    bad = {"w": {"cls": Worker, "options": {"nthreads": -1}}}
    with pytest.raises(RuntimeError, match="SpecCluster failed to start") as info:
        SpecCluster(workers=bad, scheduler=SCHEDULER)
    assert "nthreads" in str(info.value.__cause__)
    failed = [c for c in _spec._live if c.worker_spec == {} and "w" not in c.workers
              and c.scheduler is not None and c.status == "closed"]
    assert failed and all(c.scheduler.status == "closed" for c in failed)  # nothing left
