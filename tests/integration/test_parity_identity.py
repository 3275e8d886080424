"""dask.distributed's behaviour where shoal differed from it, on what names and types a user
reads back (each checked against the installed distributed): ``Client.id``, ``Future.type``,
worker names of any msgpack-able type, an asynchronous client's ``scheduler_info()``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from shoal import Client, LocalCluster, wait

pytestmark = pytest.mark.integration

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def inc(x: int) -> int:
    return x + 1


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """An in-process cluster (threads): quick to start, its clients connect in-process."""
    with LocalCluster(processes=False, n_workers=1, threads_per_worker=1,
                      dashboard_address=None, resources={"GPU": 1, "MEM": 2.5}) as c:
        yield c


# --- Client.id ---------------------------------------------------------------------------------


def test_client_ids_are_unique_even_for_one_name_and_both_clients_work(
        cluster: LocalCluster) -> None:
    # dask: type(client).__name__, then "-<name>" if named, then "-<uuid>".
    with Client(cluster, name="same") as a, Client(cluster, name="same") as b:
        assert re.fullmatch(f"Client-same-{_UUID}", a.id), a.id
        assert re.fullmatch(f"Client-same-{_UUID}", b.id), b.id
        assert a.id != b.id
        fa, fb = a.submit(inc, 1, key="k-a"), b.submit(inc, 2, key="k-b")
        assert (fa.result(timeout=30), fb.result(timeout=30)) == (2, 3)
        del fa
        assert b.submit(inc, 3).result(timeout=30) == 4  # a's release left b's session alone
        assert fb.result(timeout=30) == 3
    with Client(cluster) as unnamed:
        assert re.fullmatch(f"Client-{_UUID}", unnamed.id), unnamed.id


def test_client_name_config_names_the_client_as_in_dask(cluster: LocalCluster) -> None:
    import dask

    with dask.config.set({"client-name": "from-config"}), Client(cluster) as c:
        assert re.fullmatch(f"Client-from-config-{_UUID}", c.id), c.id


def _own_client_id() -> str:
    from shoal import get_client

    return get_client().id


def test_worker_clients_ids_are_dasks(cluster: LocalCluster) -> None:
    # dask's worker client is Client(name="worker"): "Client-worker-<uuid>".
    with Client(cluster) as c:
        wid = c.submit(_own_client_id, pure=False).result(timeout=30)
        assert re.fullmatch(f"Client-worker-{_UUID}", wid), wid


# --- Future.type -------------------------------------------------------------------------------


class Point:
    pass


def make_point() -> Point:
    return Point()


def nothing() -> None:
    return None


def boom() -> None:
    raise ValueError("boom")


def array() -> Any:
    import numpy as np

    return np.float64(1.0)


def lock() -> Any:
    import threading

    return threading.Lock()


def wait_for_event(name: str) -> int:
    from shoal import Event

    assert Event(name).wait(timeout=30)
    return 1


def test_future_type_is_the_result_class_once_finished_and_none_before(
        cluster: LocalCluster) -> None:
    from shoal import Event

    with Client(cluster) as c:
        ev = Event("parity-type-gate", client=c)
        held = c.submit(wait_for_event, "parity-type-gate")
        assert held.type is None and repr(held) == f"<Future: pending, key: {held.key}>"
        ev.set()
        assert held.result(timeout=30) == 1
        assert held.type is int
        assert repr(held) == f"<Future: finished, type: int, key: {held.key}>"
        for fn, expected, shown in [(make_point, Point, f"{__name__}.Point"),
                                    (nothing, type(None), "NoneType"),
                                    (array, np.float64, "numpy.float64")]:
            fut = c.submit(fn)
            fut.result(timeout=30)
            assert fut.type is expected, fn
            assert repr(fut) == f"<Future: finished, type: {shown}, key: {fut.key}>"
            assert f"type: {shown}" in fut._repr_html_()
        failed = c.submit(boom)
        with pytest.raises(ValueError):
            failed.result(timeout=30)
        assert failed.type is None and repr(failed) == f"<Future: error, key: {failed.key}>"
        scattered = c.scatter(2.5)
        assert scattered.type is float
        assert repr(scattered) == f"<Future: finished, type: float, key: {scattered.key}>"
        # A class the client cannot load by its name: None, as dask's (which cannot pickle it).
        unknown = c.submit(lock)
        wait([unknown], timeout=30)
        assert unknown.status == "finished"
        assert unknown.type is None


# --- worker names of any type dask carries ----------------------------------------------------


def where_am_i() -> Any:
    from shoal import get_worker

    return get_worker().name


NAMES = [1.5, True, ("a", 1), ("t", (2, 3.5)), b"raw"]


def test_worker_names_of_dasks_types_come_back_as_they_were_given() -> None:
    from shoal import Nanny, Scheduler, Worker

    async def main() -> None:
        async with Scheduler(dashboard=False) as s:
            workers = [await Worker(s.address, nthreads=1, name=n) for n in NAMES]
            nanny = await Nanny(s.address, nthreads=1, name=("nanny", 2.5))
            try:
                async with Client(s.address, asynchronous=True) as c:
                    await c.wait_for_workers(len(NAMES) + 1)
                    info = await c.scheduler_info(asynchronous=True)
                    got = {w["name"] for w in info["workers"].values()}
                    assert got == {*NAMES, ("nanny", 2.5)}
                    for name in [*NAMES, ("nanny", 2.5)]:
                        (entry,) = [w for w in info["workers"].values() if w["name"] == name]
                        assert type(entry["name"]) is type(name)
                        ran = await c.submit(where_am_i, workers=[name], pure=False)
                        assert ran == name and type(ran) is type(name)
                    # A scalar that is not a str is one name too, as dask wraps a Number.
                    assert await c.submit(where_am_i, workers=1.5, pure=False) == 1.5
            finally:
                await nanny.close()
                for w in workers:
                    await w.close()

    asyncio.run(asyncio.wait_for(main(), 180))


def test_worker_names_dask_carries_are_accepted_and_others_refused_when_made() -> None:
    from shoal.worker._name import check_worker_name

    for name in [*NAMES, None, "s", 3, np.int64(4), np.float64(0.5)]:
        checked = check_worker_name(name)
        assert checked == name and type(checked) is (type(name) if not isinstance(
            name, np.generic) else type(name.item()))
    for bad in [[1, 2], {"a": 1}, object(), ("ok", [1]), 2**70, float("nan")]:
        with pytest.raises(TypeError, match="name"):
            check_worker_name(bad)


# --- an asynchronous client's scheduler_info() ----------------------------------------------------


def test_async_clients_scheduler_info_is_its_cached_copy_not_an_awaitable(
        cluster: LocalCluster) -> None:
    # dask: "for asynchronous clients this method returns the most recently cached value
    # without a fresh fetch", cluster-wide totals only ("workers" is empty).
    async def main() -> None:
        async with Client(cluster.scheduler_address, asynchronous=True) as c:
            info = c.scheduler_info()
            assert isinstance(info, dict)
            assert info["type"] == "Scheduler" and info["address"] == cluster.scheduler_address
            assert info["n_workers"] == 1 and info["total_threads"] == 1
            assert info["workers"] == {}
            # the full answer is one call away, as with dask's client.scheduler.identity()
            full = await c.scheduler_info(asynchronous=True)
            assert len(full["workers"]) == 1

    asyncio.run(asyncio.wait_for(main(), 60))


# --- resources as given -------------------------------------------------------------------------


def test_worker_resources_are_reported_as_given_int_or_float(cluster: LocalCluster) -> None:
    # dask keeps a worker's resources={"GPU": 1} as given: 1, not 1.0.
    with Client(cluster) as c:
        (w,) = c.scheduler_info()["workers"].values()
        assert w["resources"] == {"GPU": 1, "MEM": 2.5}
        assert type(w["resources"]["GPU"]) is int and type(w["resources"]["MEM"]) is float
        assert c.submit(inc, 1, resources={"GPU": 1}).result(timeout=30) == 2


def test_resources_keep_ints_through_a_nannys_command_line() -> None:
    from shoal.worker._resources import check_resources, format_resources, parse_resources

    given = check_resources({"GPU": 1, "MEM": 1e9, "X": np.int64(2)})
    assert given == {"GPU": 1, "MEM": 1e9, "X": 2} and type(given["X"]) is int
    back = parse_resources(format_resources(given), keep_ints=True)
    assert back == given and [type(v) for v in back.values()] == [int, float, int]
    # dask's `dask worker --resources` gives floats; so does shoal's command
    assert parse_resources("GPU=2") == {"GPU": 2.0} and type(parse_resources("GPU=2")["GPU"]) is float
