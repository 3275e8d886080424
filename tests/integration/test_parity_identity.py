"""dask.distributed's behaviour where shoal differed from it, on what names and types a user
reads back (each checked against the installed distributed): ``Client.id``, ``Future.type``,
worker names of any msgpack-able type, an asynchronous client's ``scheduler_info()``.
"""

from __future__ import annotations

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
                      dashboard_address=None) as c:
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
