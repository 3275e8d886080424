"""A task that returns Futures (made inside it with ``get_client`` or ``worker_client``):
the caller gets Futures of its own client, whose ``result()`` works.

dask.distributed (2026.8) hands back Futures it cannot use when its workers are processes
("object not properly initialized"); with threads it gives the worker client's own objects.
shoal gives working Futures bound to the client that read the result, both ways.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shoal import Client, Future, get_client, worker_client

from ._helpers import scheduler_tasks, wait_for

pytestmark = pytest.mark.integration


def inc(x: int) -> int:
    return x + 1


def list_of_futures() -> list[Future]:
    return [get_client().submit(inc, 1)]


def one_future_from_worker_client() -> Future:
    with worker_client() as c:
        return c.submit(inc, 5)


def nested_futures() -> dict[str, object]:
    c = get_client()
    return {"a": c.submit(inc, 2), "b": (c.submit(inc, 3),), "n": 7}


def _check_returned_futures(client: Client) -> None:
    got = client.submit(list_of_futures, pure=False).result(timeout=30)
    assert type(got) is list and isinstance(got[0], Future)
    assert got[0].client is client
    assert got[0].result(timeout=30) == 2

    one = client.submit(one_future_from_worker_client, pure=False).result(timeout=30)
    assert isinstance(one, Future) and one.result(timeout=30) == 6

    nested = client.gather(client.submit(nested_futures, pure=False))
    assert isinstance(nested["a"], Future) and isinstance(nested["b"][0], Future)
    assert client.gather([nested["a"], nested["b"][0]]) == [3, 4]
    assert nested["n"] == 7


def test_futures_returned_by_a_task_are_usable_futures(client: Client) -> None:
    _check_returned_futures(client)


@pytest.fixture(scope="module")
def threaded() -> Iterator[Client]:
    with Client(processes=False, n_workers=1, threads_per_worker=2,
                dashboard_address=None) as c:
        yield c


def test_futures_returned_by_a_task_are_usable_with_threaded_workers(threaded: Client) -> None:
    _check_returned_futures(threaded)


def test_a_returned_future_outlives_the_task_that_made_it(client: Client) -> None:
    outer = client.submit(list_of_futures, pure=False)
    (inner,) = outer.result(timeout=30)
    key, outer_key = inner.key, outer.key
    del outer  # the worker's copy of the list (and its worker client's hold on key) goes
    wait_for(lambda: outer_key not in scheduler_tasks(client), timeout=30)
    assert key in scheduler_tasks(client)  # held by the reader now (it may still run)
    assert inner.result(timeout=30) == 2
    assert client.gather(inner) == 2 and inner.key == key


def test_a_future_passed_to_a_task_is_still_its_value_there(client: Client) -> None:
    x = client.submit(inc, 10)
    assert client.submit(lambda v: v + 1, x).result(timeout=30) == 12
    assert client.submit(lambda vs: sum(vs), [x, x]).result(timeout=30) == 22


def test_a_pickled_future_names_the_mark_the_worker_looks_for(client: Client) -> None:
    import pickle

    from shoal.worker._execute import _FUTURE_MARK

    fut = client.submit(inc, 20)
    assert _FUTURE_MARK in pickle.dumps(fut)
    assert _FUTURE_MARK not in pickle.dumps([1, "x", {"k": 2.0}])


def test_a_future_unpickled_by_the_users_code_is_unbound_and_says_so(threaded: Client) -> None:
    """dask's: ``pickle.loads`` outside a client's reading of results gives a Future bound to
    no client (even with one open), whose ``result()`` raises at once; it still names its
    key as a task's argument. shoal's also binds with ``bind_client``."""
    import pickle

    fut = threaded.submit(inc, 30)
    assert fut.result(timeout=30) == 31
    back = pickle.loads(pickle.dumps(fut))
    assert isinstance(back, Future) and back.key == fut.key and back.client is None
    with pytest.raises(RuntimeError, match=r"not bound to a client.*bind_client"):
        back.result(timeout=5)
    assert threaded.submit(inc, back).result(timeout=30) == 32  # a dependency, as in dask
    back.bind_client(threaded)
    assert back.client is threaded and back.result(timeout=30) == 31
