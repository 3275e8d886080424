"""``shoal.Status``: dask's ``distributed.core.Status``, and comparisons programs write."""

from __future__ import annotations

import pickle

import distributed.core

import shoal
from shoal._status import Status


def test_same_members_and_values_as_dask() -> None:
    ours = {m.name: m.value for m in Status}
    theirs = {m.name: m.value for m in distributed.core.Status}
    assert ours == theirs


def test_compares_as_its_value_and_prints_as_dask() -> None:
    assert Status.running == "running" and Status.closed == "closed"
    assert Status("running") is Status.running
    assert str(Status.running) == f"{Status.running}" == "Status.running"
    assert Status.running.name == Status.running.value == "running"
    assert pickle.loads(pickle.dumps(Status.paused)) is Status.paused


def test_worker_status_is_the_public_status() -> None:
    from shoal.worker._surface import Status as WorkerStatus

    assert WorkerStatus is shoal.Status


def test_local_cluster_status_follows_its_life() -> None:
    with shoal.LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster:
        assert cluster.status is shoal.Status.running
        assert cluster.status == Status.running and cluster.status == "running"
    assert cluster.status is Status.closed
    assert "closed" in repr(cluster) or cluster.status.value == "closed"
