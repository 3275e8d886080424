"""dask.distributed's behaviour where shoal differed from it (each checked against the
installed distributed): using a closed Client, Future equality, ``gather(errors="skip")``'s
result shape, what ``compute``/``persist`` return for containers, what ``get_worker()``
offers a task (and that it is the public ``Worker`` started by hand), and
``Client.benchmark_hardware()``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import dask
import pytest
from dask._task_spec import TaskRef

from shoal import Client, Future, Scheduler, Worker, get_client, get_worker
from shoal.client import ClosedClientError

pytestmark = pytest.mark.integration


def inc(x: int) -> int:
    return x + 1


def boom(x: int) -> int:
    raise ValueError(f"boom {x}")


@pytest.fixture(scope="module")
def local() -> Iterator[Client]:
    """An in-process cluster (threads): quick to start, and its workers share this process."""
    with Client(processes=False, n_workers=2, threads_per_worker=1,
                dashboard_address=None) as c:
        yield c


# --- 1. a closed client -----------------------------------------------------------------------


def test_closed_client_raises_closed_client_error_naming_the_fix() -> None:
    c = Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None)
    fut = c.submit(inc, 1)
    assert fut.result(timeout=30) == 2
    c.close()
    attempts = {
        "submit": lambda: c.submit(inc, 2),
        "map": lambda: c.map(inc, [3, 4]),
        "compute": lambda: c.compute(dask.delayed(inc)(5)),
        "persist": lambda: c.persist(dask.delayed(inc)(6)),
        "gather": lambda: c.gather([fut]),
        "scatter": lambda: c.scatter(7),
        "cancel": lambda: c.cancel([fut]),
        "run": lambda: c.run(inc, 1),
        "dask.compute": lambda: dask.delayed(inc)(8).compute(scheduler=c),
    }
    for what, attempt in attempts.items():
        with pytest.raises(ClosedClientError, match=r"closed.*Client\(\)") as info:
            attempt()
        assert type(info.value).__name__ == "ClosedClientError", what


def test_closed_client_error_pickles_and_stays_a_runtime_error() -> None:
    import pickle

    err = ClosedClientError("this Client is closed")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is ClosedClientError and str(back) == str(err)
    assert isinstance(err, RuntimeError)  # what shoal raised before: old handlers still work


# --- 2. Future equality ----------------------------------------------------------------------


def test_futures_are_equal_and_hash_equal_only_to_themselves(local: Client) -> None:
    a = local.submit(inc, 10)
    b = local.submit(inc, 10)  # pure: the same key, another Future object
    again = Future(a.key, local)
    assert a.key == b.key == again.key
    assert a == a and hash(a) == hash(a)
    assert a != b and a != again and (a == b) is False
    assert len({a, b, again}) == 3
    assert {a: 1}[a] == 1 and b not in {a: 1}
    assert a != TaskRef(a.key) and TaskRef(a.key) != a
    assert a != a.key
    assert a.result(timeout=30) == b.result(timeout=30) == 11


# --- 3. gather(errors="skip") ----------------------------------------------------------------


def test_gather_skip_drops_failures_from_a_list_and_puts_none_elsewhere(local: Client) -> None:
    a, bad, d = local.submit(inc, 1), local.submit(boom, 2), local.submit(inc, 20)
    with pytest.raises(ValueError, match="boom 2"):
        bad.result(timeout=30)
    skip = {"errors": "skip"}
    assert local.gather([a, bad, d], **skip) == [2, 21]
    assert local.gather([bad, bad, a], **skip) == [2]
    assert local.gather([a, 5, "x", bad], **skip) == [2, 5, "x"]
    assert local.gather((a, bad, d), **skip) == (2, None, 21)
    assert local.gather({"a": a, "b": bad, "d": d}, **skip) == {"a": 2, "b": None, "d": 21}
    assert local.gather({a, bad}, **skip) == {2, None}
    assert local.gather(bad, **skip) is None
    assert list(local.gather(iter([a, bad, d]), **skip)) == [2, None, 21]
    nested = {"x": [a, bad], "y": (bad, d), "z": {"q": bad, "r": a}, "w": [[bad], a]}
    assert local.gather(nested, **skip) == {
        "x": [2, None], "y": (None, 21), "z": {"q": None, "r": 2}, "w": [[None], 2]}
    # Only a failed future directly in the top-level list is dropped (dask's own fails on
    # a nested list or dict there, with TypeError: unhashable).
    assert local.gather([[bad], a, (bad,), {"k": bad}], **skip) == [[None], 2, (None,),
                                                                    {"k": None}]


def test_gather_skip_treats_a_cancelled_future_as_failed(local: Client) -> None:
    a = local.submit(inc, 30)
    gone = local.submit(inc, 31, key="parity-cancelled")
    gone.cancel()
    assert a.result(timeout=30) == 31
    assert local.gather([a, gone], errors="skip") == [31]
    assert local.gather({"g": gone}, errors="skip") == {"g": None}


# --- 4. compute / persist of containers ------------------------------------------------------


def test_compute_and_persist_of_a_tuple_or_set_return_a_list(local: Client) -> None:
    x, y = dask.delayed(inc)(1), dask.delayed(inc)(2)
    for given in ((x, y), [x, y], {x, y}, frozenset([x, y])):
        futures = local.compute(given)
        assert type(futures) is list and len(futures) == 2, type(given)
        assert all(isinstance(f, Future) for f in futures)
        assert sorted(local.gather(futures)) == [2, 3]
        assert type(local.compute(given, sync=True)) is list
        persisted = local.persist(given)
        assert type(persisted) is list and len(persisted) == 2, type(given)
        assert sorted(dask.compute(*persisted, scheduler=local)) == [2, 3]
    assert local.compute(()) == [] and local.compute([]) == []
    assert local.compute((x, 5), sync=True) == [2, 5]
    # One collection stays one; a dict is computed as one delayed container.
    assert isinstance(local.compute(x), Future)
    whole = local.compute({"a": x, "b": y})
    assert isinstance(whole, Future) and whole.result(timeout=30) == {"a": 2, "b": 3}


# --- 5. get_worker() inside a task -----------------------------------------------------------


def _worker_surface() -> dict[str, Any]:
    w = get_worker()
    missing = {}
    for name in ("executor", "executors", "loop", "io_loop", "nanny", "rpc", "batched_stream"):
        try:
            getattr(w, name)
            missing[name] = "present"
        except AttributeError as exc:
            missing[name] = str(exc)
    mm = w.memory_manager
    return {
        "id": w.id, "ip": w.ip, "host": w.host, "port": w.port, "address": w.address,
        "listen_address": w.listen_address, "worker_address": w.worker_address,
        "contact_address": w.contact_address,
        "name": w.name, "nthreads": w.nthreads, "scheduler": w.scheduler.address,
        "memory_limit": mm.memory_limit, "fractions": (
            mm.memory_target_fraction, mm.memory_spill_fraction, mm.memory_pause_fraction),
        "mm_data_is_data": mm.data is w.data,
        "status": (w.status == "running", w.status.name),
        "keys": (type(held := w.keys()) is list, w.get_current_task() in held),
        "client_is_get_client": w.client is get_client(),
        "local_directory": os.path.isdir(w.local_directory),
        "identity": w.identity(), "missing": missing,
    }


def test_get_worker_offers_what_task_code_reads_with_dask_types(client: Client) -> None:
    held = client.scatter(41, broadcast=True)
    info = client.submit(_worker_surface, pure=False).result(timeout=60)
    workers = client.scheduler_info()["workers"]
    assert info["address"] in workers
    assert info["id"].startswith("Worker-") and len(info["id"]) > len("Worker-")
    host, port = info["address"].rsplit("://", 1)[1].rsplit(":", 1)
    assert info["ip"] == info["host"] == host and info["port"] == int(port)
    assert info["listen_address"] == info["worker_address"] == info["contact_address"] \
        == info["address"]
    assert info["name"] == workers[info["address"]]["name"] and info["nthreads"] == 1
    assert info["scheduler"] == client.scheduler_address
    assert info["memory_limit"] == workers[info["address"]]["memory_limit"]
    assert all(isinstance(f, (float, bool)) for f in info["fractions"])
    assert info["mm_data_is_data"] and info["status"] == (True, "running")
    assert info["keys"] == (True, False) and info["client_is_get_client"] and info["local_directory"]
    assert info["identity"]["type"] == "Worker" and info["identity"]["id"] == info["id"]
    assert info["identity"]["nthreads"] == 1
    for name, message in info["missing"].items():
        assert message != "present" and "use " in message, (name, message)
    assert held.result(timeout=30) == 41


def _keys_of_worker() -> list[Any]:
    return list(get_worker().keys())


def test_get_worker_keys_lists_the_values_it_holds(client: Client) -> None:
    held = client.scatter([1, 2], broadcast=True)
    keys = client.submit(_keys_of_worker, pure=False).result(timeout=60)
    assert {f.key for f in held} <= set(keys)


# --- 6. get_worker() is the public Worker started by hand ------------------------------------

_handles: dict[str, Any] = {}


def _is_that_worker() -> tuple[bool, str, Any, Any, Any]:
    w = get_worker()
    return (w is _handles["w"], w.address, w.id, w.get_current_task(),
            w.memory_manager.data is w.data)


def test_get_worker_is_the_worker_started_by_hand() -> None:
    async def main() -> None:
        async with Scheduler(dashboard_address=None) as s, Worker(s.address, nthreads=1) as w, \
                Client(s.address, asynchronous=True) as c:
            _handles["w"] = w
            try:
                fut = c.submit(_is_that_worker, pure=False)
                same, address, wid, key, data_read_through = await fut
            finally:
                _handles.clear()
            assert same and address == w.address and wid == w.id and key == fut.key
            assert data_read_through
            assert w.ip == w.address.rsplit("://", 1)[1].rsplit(":", 1)[0]

    asyncio.run(asyncio.wait_for(main(), 120))


def test_worker_started_by_hand_says_to_await_it_before_reading_its_worker() -> None:
    w = Worker("tcp://127.0.0.1:1", nthreads=1)
    with pytest.raises(AttributeError, match="await it first"):
        _ = w.id
    with pytest.raises(AttributeError, match="_secret"):
        _ = w._secret


# --- 7. Client.benchmark_hardware() ----------------------------------------------------------


def test_benchmark_hardware_measures_disk_memory_and_network(local: Client, monkeypatch) -> None:
    from shoal.client import _benchmark

    # Short and small (the workers here are threads of this process, so this reaches them);
    # dask's own sizes and durations are the defaults.
    monkeypatch.setattr(_benchmark, "DISK", (("1 kiB", "100 kiB"), 0.02))
    monkeypatch.setattr(_benchmark, "MEMORY", (("2 kiB", "10 kiB"), 0.02))
    monkeypatch.setattr(_benchmark, "NETWORK", (("1 kiB", "10 kiB"), 0.02))
    out = local.benchmark_hardware()
    assert set(out) == {"disk", "memory", "network"}
    assert list(out["disk"]) == ["1 kiB", "100 kiB"]
    assert list(out["memory"]) == ["2 kiB", "10 kiB"]
    assert list(out["network"]) == ["1 kiB", "10 kiB"]
    for kind in out.values():
        assert all(isinstance(v, float) and v > 0 for v in kind.values())


def test_benchmark_hardware_defaults_are_dasks() -> None:
    from shoal.client import _benchmark

    assert _benchmark.DISK == (("1 kiB", "100 kiB", "1 MiB", "10 MiB", "100 MiB"), 1.0)
    assert _benchmark.MEMORY == (("2 kiB", "10 kiB", "100 kiB", "1 MiB", "10 MiB"), 0.2)
    assert _benchmark.NETWORK == (("1 kiB", "10 kiB", "100 kiB", "1 MiB", "10 MiB", "50 MiB"),
                                  1.0)


def test_computing_a_collection_whose_persisted_futures_were_cancelled_raises_future_cancelled(
        local: Client) -> None:
    # dask: FutureCancelledError ("lost dependencies"); shoal's LostDataError is one.
    import dask.array as da

    from shoal import LostDataError, futures_of
    from shoal.client import FutureCancelledError

    x = local.persist(da.arange(20, chunks=5))
    assert int(local.compute(x.sum()).result(timeout=30)) == 190
    local.cancel(futures_of(x))
    with pytest.raises(FutureCancelledError) as info:
        local.compute((x + 1).sum()).result(timeout=30)
    assert isinstance(info.value, LostDataError)


def test_blocked_handlers_refuse_client_run_with_dasks_valueerror() -> None:
    # dask: distributed.scheduler.blocked-handlers lists Scheduler.handlers names;
    # client.run is the scheduler's "broadcast", refused with a ValueError.
    with (dask.config.set({"distributed.scheduler.blocked-handlers": ["broadcast"]}),
          Client(processes=False, n_workers=1, threads_per_worker=1,
                 dashboard_address=None) as c):
        with pytest.raises(ValueError, match=r"'broadcast' handler .*blocked-handlers"):
            c.run(os.getpid)
        assert c.submit(inc, 1).result(timeout=30) == 2


# --- 8. an async function as a task ------------------------------------------------------------


async def _scaled(x: int) -> int:
    await asyncio.sleep(0.01)
    return x * 10


async def _async_boom(x: int) -> int:
    await asyncio.sleep(0)
    raise ValueError(f"async boom {x}")


def test_an_async_function_submitted_as_a_task_is_awaited_on_the_worker(client: Client) -> None:
    # dask's workers run a coroutine function's task on their event loop: its value is
    # the task's result (shoal returned the coroutine, which it then could not send back).
    assert client.submit(_scaled, 2).result(timeout=30) == 20
    assert client.gather(client.map(_scaled, [1, 2]), asynchronous=False) == [10, 20]
    assert client.submit(_scaled, client.submit(_scaled, 1)).result(timeout=30) == 100
    assert dask.delayed(_scaled)(3).compute() == 30
    with pytest.raises(ValueError, match="async boom 4"):
        client.submit(_async_boom, 4).result(timeout=30)


async def _where() -> str:
    await asyncio.sleep(0)
    return get_worker().address


def test_get_worker_inside_an_async_task_is_its_worker(client: Client) -> None:
    f = client.submit(_where, pure=False)
    assert f.result(timeout=30) == client.who_has([f])[f.key][0]
