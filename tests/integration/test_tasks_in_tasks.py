"""Issue 10: tasks that launch tasks (``get_client``, ``secede`` / ``rejoin``,
``worker_client``), ``get_worker`` and ``fire_and_forget``, on real clusters."""

from __future__ import annotations

import os
import time

import pytest

from shoal import (
    Client,
    LocalCluster,
    default_client,
    fire_and_forget,
    get_client,
    get_worker,
    rejoin,
    secede,
    worker_client,
)

from ._helpers import gated, wait_for

pytestmark = pytest.mark.integration


def inc(x):
    return x + 1


def fib(n):
    if n < 2:
        return n
    c = get_client()
    a, b = c.submit(fib, n - 1), c.submit(fib, n - 2)
    secede()
    r = a.result() + b.result()
    rejoin()
    return r


def fib_fresh(n):
    """fib with a task per call (pure=False), so nothing is shared between branches."""
    if n < 2:
        return n
    c = get_client()
    a, b = c.submit(fib_fresh, n - 1, pure=False), c.submit(fib_fresh, n - 2, pure=False)
    secede()
    r = a.result() + b.result()
    rejoin()
    return r


def total(n):
    with worker_client() as wc:
        return sum(wc.gather(wc.map(inc, range(n))))


def nested_total(n):
    with worker_client() as wc:
        return sum(wc.gather(wc.map(total, [n] * 3, pure=False)))


def worker_facts(x):
    w = get_worker()
    return w.address, w.name, w.nthreads, sorted(map(str, w.data)), w.scheduler_address


def client_facts():
    c = get_client()
    assert get_client(timeout="5s") is c  # dask's duration strings are accepted
    return c.id, c.scheduler_address


@pytest.fixture
def one_thread(make_client):
    return make_client(n_workers=1, threads_per_worker=1)


# --- get_client / secede / rejoin -----------------------------------------------------------------


def test_fib_submitting_tasks_finishes_on_one_thread(one_thread: Client) -> None:
    assert one_thread.submit(fib, 6).result(timeout=60) == 8


def test_fib_with_a_task_per_call_finishes_on_one_thread(one_thread: Client) -> None:
    assert one_thread.submit(fib_fresh, 7, pure=False).result(timeout=60) == 13


def test_fib_finishes_with_workers_in_this_process(make_client) -> None:
    c = make_client(n_workers=1, threads_per_worker=1, processes=False)
    assert c.submit(fib, 8).result(timeout=60) == 21
    # The worker's client lives in this process too, but it is not the user's.
    assert get_client() is c


def test_worker_client_map_larger_than_the_cluster(one_thread: Client) -> None:
    assert one_thread.submit(total, 50).result(timeout=60) == sum(range(1, 51))


def test_nested_worker_clients_finish_on_one_thread(one_thread: Client) -> None:
    assert one_thread.submit(nested_total, 5).result(timeout=60) == 3 * sum(range(1, 6))


def test_get_client_in_a_task_is_the_workers_cached_client(client: Client) -> None:
    facts = client.gather(client.map(client_facts_n, range(12), pure=False))
    # One client object per worker process, made once and kept (every worker's client
    # has the same name, so the objects are told apart by id() within their process).
    objects: dict[int, set[int]] = {}
    for pid, obj, cid, _ in facts:
        objects.setdefault(pid, set()).add(obj)
        assert cid != client.id
    assert all(len(objs) == 1 for objs in objects.values()), objects
    assert {addr for *_, addr in facts} == {client.scheduler_address}


def client_facts_n(_):
    import os

    c = get_client()
    return (os.getpid(), id(c), *client_facts())


def compute_inside(n):
    import dask

    with worker_client() as c:  # seceded: the inner task may need this very thread
        value = dask.delayed(inc)(n).compute()
        # whether c is its process's dask default (the config names the distributed
        # scheduler, as dask's, while a default client is open)
        return value, dask.config.get("scheduler") == "dask.distributed" and c._is_default


def test_dask_compute_in_a_task_runs_on_the_workers_client(client: Client) -> None:
    assert client.submit(compute_inside, 1, pure=False).result(timeout=30) == (2, True)


def compute_after_worker_client(n):
    import dask

    with worker_client() as c:  # makes the worker's client dask's default in its process
        c.submit(inc, n, pure=False).result()
    # Not seceded here: the compute itself must leave the slot while it waits, as dask's
    # Client.get does (its inner task needs a thread, and every thread is held by such a task).
    return dask.delayed(inc)(n).compute()


def test_compute_in_a_task_that_holds_every_slot_does_not_hang(client: Client) -> None:
    # Two workers of one thread: each runs one of these while its inner tasks wait for a slot.
    futures = client.map(compute_after_worker_client, range(4), pure=False)
    assert [f.result(timeout=30) for f in futures] == [1, 2, 3, 4]


def compute_inside_on(n):
    """compute_inside, with which worker ran it and which client object it used."""
    value, is_default = compute_inside(n)
    return get_worker().name, os.getpid(), id(get_client()), value, is_default


def test_workers_sharing_a_process_share_the_default_client(make_client, tmp_path) -> None:
    # `shoal worker --no-nanny --nworkers 2`: two workers in one process with no user
    # client. Each had a client of its own, the newer taking dask's default from the older:
    # x.compute() in the older worker's tasks ran on the other's client (not the one
    # worker_client() gave them), and once the newer worker retired, on a closed client
    # (ClosedClientError). As in dask, they share one client, the process's default.
    import subprocess
    import sys
    from pathlib import Path

    c = make_client(n_workers=0)
    cli = str(Path(sys.executable).with_name("shoal"))
    with (tmp_path / "workers.log").open("w") as log:
        proc = subprocess.Popen([cli, "worker", c.scheduler_address, "--no-nanny",
                                 "--nworkers", "2", "--nthreads", "1", "--name", "w"],
                                stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        c.wait_for_workers(2, timeout=120)
        by_name = {info["name"]: addr for addr, info in c.scheduler_info()["workers"].items()}

        def on(name):
            return c.submit(compute_inside_on, 1, workers=[by_name[name]],
                            pure=False).result(timeout=60)

        runs = [on("w-0"), on("w-1"), on("w-0")]
        assert [(name, value, is_default) for name, _, _, value, is_default in runs] == [
            ("w-0", 2, True), ("w-1", 2, True), ("w-0", 2, True)]
        assert len({(pid, cid) for _, pid, cid, _, _ in runs}) == 1  # one client, shared
        c.retire_workers([by_name["w-1"]])
        wait_for(lambda: len(c.scheduler_info()["workers"]) == 1, timeout=60)
        assert on("w-0")[3:] == (2, True)  # the retired worker's leaving closed nothing
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_workers_client_in_this_process_leaves_dask_default_alone(make_client) -> None:
    import dask

    c = make_client(n_workers=1, processes=False)
    assert c.submit(compute_inside, 1, pure=False).result(timeout=120) == (2, False)
    assert dask.config.get("scheduler") == "dask.distributed" and default_client() is c


def test_get_client_outside_tasks_is_the_newest_client(client: Client) -> None:
    assert get_client() is client
    assert Client.current() is client


def test_seceded_task_keeps_its_key_and_result(client: Client) -> None:
    def seceding(x):
        secede()
        return x * 2

    fut = client.submit(seceding, 21, key="seceding-21")
    assert fut.result(timeout=30) == 42
    assert fut.key == "seceding-21"


def test_rejoin_waits_for_a_free_slot(one_thread: Client, tmp_path) -> None:
    gate = str(tmp_path / "gate")
    started = tmp_path / "blocker-started"
    rejoining = tmp_path / "rejoining"

    def blocker():
        started.touch()
        return gated(gate, "blocker done", timeout=60)

    def waiter():
        c = get_client()
        b = c.submit(blocker, pure=False)
        secede()
        deadline = time.monotonic() + 30
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        rejoining.touch()
        rejoin()  # the only slot is the blocker's until the gate opens
        return b.result()

    fut = one_thread.submit(waiter)
    wait_for(rejoining.exists, timeout=30)
    assert not fut.done()
    open(gate, "w").close()
    assert fut.result(timeout=30) == "blocker done"


def test_secede_and_rejoin_outside_a_task_raise_value_error() -> None:
    with pytest.raises(ValueError, match="outside a task"):
        secede()
    with pytest.raises(ValueError, match="outside a task"):
        rejoin()
    with pytest.raises(ValueError, match="outside a task"), worker_client():
        pass


# --- get_worker ----------------------------------------------------------------------------------


def test_get_worker_in_a_task(client: Client) -> None:
    x = client.submit(inc, 1, key="gw-input")
    address, name, nthreads, held, scheduler = client.submit(worker_facts, x).result(timeout=30)
    assert address in client.scheduler_info()["workers"]
    assert name in (0, 1)  # LocalCluster names its workers 0, 1 (ints), as dask
    assert nthreads == 1
    assert "gw-input" in held
    assert scheduler == client.scheduler_address


def current_task_key() -> object:
    return get_worker().get_current_task()


def test_get_current_task_is_the_running_tasks_key(client: Client) -> None:
    # dask's Worker.get_current_task(): tasks use it to label their logs and outputs.
    assert client.submit(current_task_key, key="who-am-i").result(timeout=30) == "who-am-i"
    keys = [("tupled", i) for i in range(3)]
    assert client.gather(client.map(lambda _: current_task_key(), range(3), key=keys)) == keys


def test_get_worker_outside_a_task_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="outside a task"):
        get_worker()


# --- fire_and_forget -------------------------------------------------------------------------------


def write_file(path, text):
    """Write ``text`` to ``path`` at once (a rename): a reader that sees the file sees all."""
    with open(path + ".part", "w") as f:
        f.write(text)
    os.replace(path + ".part", path)
    return path


def gated_write(gate, path, text):
    gated(gate, None, timeout=60)
    return write_file(path, text)


def test_fire_and_forget_runs_after_its_client_closed(tmp_path) -> None:
    gate, out = str(tmp_path / "gate"), str(tmp_path / "report.txt")
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster:
        first = Client(cluster)
        text = first.submit(str.upper, "report", pure=False)
        fire_and_forget(first.submit(gated_write, gate, out, text, pure=False))
        del text
        first.close()
        open(gate, "w").close()
        wait_for(lambda: os.path.exists(out), timeout=120)
        with open(out) as f:
            assert f.read() == "REPORT"
        # Finished and wanted by nobody: the scheduler lets go of it (and its input).
        wait_for(lambda: not cluster.scheduler.tasks, timeout=120)


def test_fire_and_forget_after_dropping_the_future(client: Client, tmp_path) -> None:
    out = str(tmp_path / "dropped.txt")
    fut = client.submit(write_file, out, "ok", pure=False)
    fire_and_forget([fut])
    del fut
    wait_for(lambda: os.path.exists(out), timeout=30)


def test_fire_and_forget_rejects_non_futures() -> None:
    with pytest.raises(TypeError, match="futures"):
        fire_and_forget(42)


# --- get_client() in an async def task (dask: the worker's client, asynchronous there) ---------


def boom(x):
    raise ValueError(f"boom {x}")


async def async_submits(x):
    c = get_client()
    first = await c.submit(inc, x)
    gathered = await c.gather([c.submit(inc, x + 10), c.submit(inc, x + 20)])
    return c.asynchronous, get_client() is c, first, gathered


async def async_inner_fails(x):
    c = get_client()
    return await c.submit(boom, x)


@pytest.mark.parametrize("processes", [True, False])
def test_get_client_in_an_async_task_is_asynchronous(make_client, processes) -> None:
    c = make_client(n_workers=2, processes=processes)
    assert c.submit(async_submits, 1).result(timeout=60) == (True, True, 2, [12, 22])
    with pytest.raises(ValueError, match="boom 3"):
        c.submit(async_inner_fails, 3).result(timeout=60)
    # A plain task of the same worker still gets the blocking face of that client.
    assert c.submit(client_facts, pure=False).result(timeout=60)[1] == c.scheduler_address


async def async_via_worker_and_closure(x):
    async def inner(y):
        return await get_client().submit(inc, y)

    return await get_worker().client.submit(inc, await inner(x))


def test_worker_client_and_a_nested_get_client_in_an_async_task(make_client) -> None:
    c = make_client(n_workers=2, processes=False)
    assert c.submit(async_via_worker_and_closure, 1).result(timeout=60) == 3


def helper_client():
    return get_client()


async def async_via_a_helper(x):
    return await helper_client().submit(inc, x)


def test_an_async_task_whose_helper_asks_for_the_client_first_says_what_to_do(make_client):
    # The client cannot be connected from the worker's loop; it is connected before the
    # task starts when the task's function names get_client, which this one does not.
    c = make_client(n_workers=2, processes=False)
    with pytest.raises(RuntimeError, match=r"get_client\(\) in the async function itself"):
        c.submit(async_via_a_helper, 1).result(timeout=60)
    c.submit(client_facts, pure=False).result(timeout=60)  # the worker's client is made
    assert c.submit(async_via_a_helper, 2, pure=False).result(timeout=60) == 3
