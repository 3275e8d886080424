"""What dask's ``LocalCluster`` keywords do on a running shoal cluster: ``ip``,
``interface``, ``start``, ``loop``, ``worker_class``, ``scheduler_kwargs``,
``worker_dashboard_address``, ``silence_logs`` (here and in worker processes), and the
attributes programs read (``loop``, ``scheduler_info``, ``wait_for_workers``). The
refusals are in tests/cluster/test_local_cluster_keywords.py."""

from __future__ import annotations

import logging
import os
import socket

import distributed
import pytest

from shoal import Client, LocalCluster, _loop

from ._helpers import descendants

pytestmark = pytest.mark.integration

START = 180  # start-up deadline (worker processes on a loaded 2-core machine)



def shoal_level() -> int:
    return logging.getLogger("shoal").level


def test_ip_is_the_old_name_of_host(no_leftovers):
    with pytest.warns(DeprecationWarning, match="`ip` parameter"):
        cluster = LocalCluster(n_workers=0, ip="127.0.0.1", dashboard_address=None)
    with cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")


def test_interface_binds_the_scheduler_and_workers_to_its_address(no_leftovers):
    with LocalCluster(n_workers=1, processes=False, interface="lo", dashboard_address=None,
                      timeout=START) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        (worker,) = cluster.scheduler_info["workers"]
        assert worker.startswith("tcp://127.0.0.1:")


def test_start_and_loop_are_accepted_as_dask_accepts_them(no_leftovers):
    with pytest.warns(DeprecationWarning, match="`start` parameter"):
        cluster = LocalCluster(n_workers=0, start=False, loop=object(), dashboard_address=None)
    with cluster:
        assert cluster.status == "running"  # start has no effect, as in dask
        assert cluster.loop is _loop.get_loop()
        assert cluster.asynchronous is False


def test_worker_class_worker_runs_threads_here_and_nanny_processes(no_leftovers):
    before = descendants()
    with LocalCluster(n_workers=1, worker_class=distributed.Worker, threads_per_worker=1,
                      dashboard_address=None, timeout=START) as cluster, Client(cluster) as c:
        assert cluster.processes is False
        assert set(c.run(os.getpid).values()) == {os.getpid()}
        assert descendants() - before == set()
    with LocalCluster(n_workers=1, worker_class=distributed.Nanny, threads_per_worker=1,
                      dashboard_address=None, timeout=START) as cluster, Client(cluster) as c:
        assert cluster.processes is True
        assert set(c.run(os.getpid).values()) <= descendants() - before


def test_scheduler_kwargs_reach_the_scheduler(no_leftovers):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with LocalCluster(n_workers=0, scheduler_kwargs={
            "port": port, "allowed_failures": 7, "worker_ttl": "1 minute",
            "bandwidth": "50MB", "dashboard_address": None}) as cluster:
        assert cluster.scheduler_address == f"tcp://127.0.0.1:{port}"
        state = cluster.scheduler.state
        assert (state.allowed_failures, state.worker_ttl, state.bandwidth) == (7, 60.0, 50e6)
        assert cluster.dashboard_link is None


def test_worker_dashboard_address_warns_that_workers_have_no_dashboard(no_leftovers):
    with pytest.warns(UserWarning, match="serve no dashboard of their own"):
        cluster = LocalCluster(n_workers=0, worker_dashboard_address=":0",
                               dashboard_address=None)
    cluster.close()


def test_silence_logs_sets_shoals_level_here_and_in_worker_processes(no_leftovers):
    assert shoal_level() == logging.NOTSET
    with LocalCluster(n_workers=1, threads_per_worker=1, silence_logs=logging.ERROR,
                      dashboard_address=None, timeout=START) as cluster, Client(cluster) as c:
        assert shoal_level() == logging.ERROR
        assert list(c.run(shoal_level).values()) == [logging.ERROR]
    assert shoal_level() == logging.NOTSET  # given back at close


def test_silence_logs_false_or_dasks_default_leave_logging_alone(no_leftovers):
    for value in (False, logging.WARN):
        with LocalCluster(n_workers=1, threads_per_worker=1, silence_logs=value,
                          dashboard_address=None, timeout=START) as cluster, Client(cluster) as c:
            assert shoal_level() == logging.NOTSET
            assert list(c.run(shoal_level).values()) == [logging.NOTSET]


def test_wait_for_workers_and_scheduler_info_of_a_synchronous_cluster(no_leftovers):
    with LocalCluster(n_workers=1, processes=False, threads_per_worker=1,
                      dashboard_address=None, timeout=START) as cluster:
        assert cluster.wait_for_workers(1, timeout=60) is None
        assert cluster.wait_for_workers(1, timeout="1 minute") is None  # dask's durations
        with pytest.raises(TimeoutError, match=r"only 1 of 2 workers registered within 0\.2 s"):
            cluster.wait_for_workers(2, timeout=0.2)
        with pytest.raises(ValueError, match="n_workers must be a positive integer"):
            cluster.wait_for_workers(0)
        info = cluster.scheduler_info
        assert info["address"] == cluster.scheduler_address
        assert [w["name"] for w in info["workers"].values()] == [0]


def test_threads_only_cluster_is_one_worker_with_every_core_as_in_dask(no_leftovers):
    from shoal.cluster._sizing import cpu_count

    with LocalCluster(processes=False, dashboard_address=None, timeout=START) as cluster:
        workers = list(cluster.scheduler_info["workers"].values())
        assert [w["nthreads"] for w in workers] == [cpu_count()]
