"""dask's ``Cluster`` methods on ``LocalCluster``: ``scale_up`` / ``scale_down``,
``get_logs``, ``get_client``, ``name`` and ``asynchronous``."""

from __future__ import annotations

import logging

import pytest

from shoal import Client, LocalCluster

pytestmark = pytest.mark.integration


def test_scale_up_and_scale_down_by_name_or_address(make_client):
    c = make_client(n_workers=1)
    cluster = c.cluster
    cluster.scale_up(2)
    assert len(c.scheduler_info()["workers"]) == 2
    assert sorted(cluster.workers) == [0, 1]
    cluster.scale_down([1])
    assert sorted(cluster.workers) == [0]
    assert [w["name"] for w in c.scheduler_info()["workers"].values()] == [0]
    cluster.scale_up(n=2)
    (address,) = [a for a, w in c.scheduler_info()["workers"].items() if w["name"] == 2]
    cluster.scale_down([address])
    assert sorted(cluster.workers) == [0]
    with pytest.raises(ValueError, match="no worker named"):
        cluster.scale_down(["nope"])
    assert c.submit(lambda: 5, pure=False).result(timeout=120) == 5


def test_plan_requested_and_observed_follow_scaling(make_client):
    c = make_client(n_workers=1)
    cluster = c.cluster
    assert cluster.plan == cluster.requested == cluster.observed == {0}
    cluster.scale(2)
    assert cluster.plan == cluster.requested == cluster.observed == {0, 1}
    cluster.scale_down([0])
    assert cluster.plan == cluster.requested == cluster.observed == {1}


def test_get_logs_per_source(make_client):
    c = make_client(n_workers=1)
    cluster = c.cluster

    def log_on_worker() -> None:
        logging.getLogger("shoal.worker").warning("cluster-logs-worker-line")

    c.run(log_on_worker)
    c.run_on_scheduler(lambda: logging.getLogger("shoal.scheduler").warning("cluster-logs-sched"))
    logging.getLogger("shoal.cluster").warning("cluster-logs-cluster-line")
    logs = cluster.get_logs()
    (address,) = c.scheduler_info()["workers"]
    assert set(logs) == {"Cluster", "Scheduler", address}
    assert "cluster-logs-cluster-line" in logs["Cluster"]
    assert "cluster-logs-sched" in logs["Scheduler"]
    assert "cluster-logs-worker-line" in logs[address]
    assert set(cluster.get_logs(cluster=False, workers=False)) == {"Scheduler"}
    assert set(cluster.get_logs(scheduler=False, cluster=False, workers=[address])) == {address}


def test_get_client_name_and_asynchronous():
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None,
                      name="extras") as cluster:
        assert cluster.name == "extras"
        assert cluster.asynchronous is False
        c = cluster.get_client()
        try:
            assert isinstance(c, Client) and c.cluster is cluster
            assert cluster.get_client() is c  # the open one, not a second
            assert c.submit(lambda: 1, pure=False).result(timeout=120) == 1
        finally:
            c.close()


_WARM_PROGRAM = """
import sys
import dask.bag  # imported by the program: its workers import it too, in the background
from shoal import Client

def loaded():
    return sorted(m for m in ("dask.bag", "dask.dataframe", "pandas") if m in sys.modules)

if __name__ == "__main__":
    assert "pandas" not in sys.modules and "dask.dataframe" not in sys.modules
    # (a task is unpickled once the worker's background imports are done)
    for limit in (0, "1GiB"):
        with Client(n_workers=1, threads_per_worker=1, dashboard_address=None,
                    memory_limit=limit) as client:
            print("warm", limit, client.submit(loaded, pure=False).result(timeout=60),
                  flush=True)
"""


def test_workers_import_the_collections_their_program_imported(tmp_path):
    """A notebook's first ``.compute()`` of an array should not wait for each worker to import
    dask.array: workers of a LocalCluster import, once registered, the collections' modules
    the program has imported (and only those: dask.dataframe would cost pandas' import),
    unless their memory limit is small."""
    import subprocess
    import sys

    program = tmp_path / "warm.py"
    program.write_text(_WARM_PROGRAM)
    done = subprocess.run([sys.executable, str(program)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, (done.stdout, done.stderr[-3000:])
    assert "warm 0 ['dask.bag']\n" in done.stdout, (done.stdout, done.stderr[-3000:])
    # A worker with less than 2 GiB cannot spare what it may never need (dask.array: ~100 MB)
    assert "warm 1GiB []\n" in done.stdout, (done.stdout, done.stderr[-3000:])
