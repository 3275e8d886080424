"""Worker names as dask gives them: a LocalCluster's workers are named 0, 1, ... (ints), and
those names work wherever a worker can be named (``workers=``, ``retire_workers(names=)``,
``run(workers=)``, ``cluster.workers``)."""

from __future__ import annotations

import pytest

from shoal import get_worker

from ._helpers import wait_for

pytestmark = pytest.mark.integration


def _name() -> object:
    return get_worker().name


@pytest.mark.parametrize("processes", [True, False])
def test_local_cluster_workers_are_named_by_ints_everywhere(make_client, processes):
    client = make_client(2, processes=processes, threads_per_worker=1)
    info = client.scheduler_info()["workers"]
    assert sorted(w["name"] for w in info.values()) == [0, 1]
    assert sorted(client.cluster.workers) == [0, 1]
    by_name = {w["name"]: a for a, w in info.items()}
    for name in (0, 1):
        # a task restricted by name runs there, and sees the same int name
        assert client.submit(_name, workers=[name], pure=False).result(timeout=20) == name
        assert client.submit(_name, workers=name, pure=False).result(timeout=20) == name
        ran = client.run(lambda dask_worker: dask_worker.name, workers=[name])
        assert ran == {by_name[name]: name}


def test_an_int_name_given_as_text_still_finds_its_worker(client):
    # shoal's names were "0", "1" before; dask would leave this task waiting for good
    assert client.submit(_name, workers=["1"], pure=False).result(timeout=20) == 1
    [placed] = client.scatter([41], workers=["0"])
    assert [client.scheduler_info()["workers"][a]["name"] for a in client.who_has([placed])[placed.key]] == [0]


def test_retire_workers_by_name(make_client):
    client = make_client(2)
    info = client.scheduler_info()["workers"]
    address_of_0 = next(a for a, w in info.items() if w["name"] == 0)
    retired = client.retire_workers(names=[0])
    assert list(retired) == [address_of_0]
    wait_for(lambda: list(client.scheduler_info()["workers"]) != [address_of_0]
             and len(client.scheduler_info()["workers"]) == 1, timeout=20)
    [left] = client.scheduler_info()["workers"].values()
    assert left["name"] == 1
    with pytest.raises(TypeError, match="not both"):
        client.retire_workers(workers=[address_of_0], names=[1])
    with pytest.raises(TypeError, match="names= takes a list"):
        client.retire_workers(names="1")


def test_workers_keyword_refuses_what_cannot_name_a_worker(client):
    for bad in ([object()], [None], [[1, 2]], [{"a": 1}]):  # (a float, bool or tuple may be a name)
        with pytest.raises(TypeError, match="workers= takes worker addresses or names"):
            client.submit(_name, workers=bad)
