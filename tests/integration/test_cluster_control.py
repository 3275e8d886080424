"""Controlling a running cluster (issue 11): restart, restart_workers, retire_workers,
scale, adapt; Client(any cluster object), the scheduler address from dask's config, the
connect timeout and retries, the client's config reaching the workers, scheduler_info."""

from __future__ import annotations

import concurrent.futures
import operator
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import dask
import pytest

from shoal import Client, WorkerPlugin
from shoal.scheduler._server import Scheduler

from ._helpers import alive, gated, wait_for

pytestmark = pytest.mark.integration


def inc(x):
    return x + 1


def pid():
    return os.getpid()


def config_value(name):
    return dask.config.get(name, None)


def slow(x, seconds):
    time.sleep(seconds)
    return x


def worker_pids(c):
    return set(c.run(pid).values())


# --- restart -----------------------------------------------------------------------------------


@pytest.mark.timeout(300)  # 30-80 s at load 25 on 2 cores (starts processes)
def test_restart_cancels_every_future_and_runs_new_work_on_fresh_processes(make_client, gate):
    c = make_client(n_workers=2)
    before = worker_pids(c)
    done = c.submit(inc, 1)
    assert done.result(timeout=60) == 2
    running = c.submit(gated, gate.path, 5, pure=False)
    wait_for(lambda: running.key in c.cluster.scheduler.tasks
             and c.cluster.scheduler.tasks[running.key].state == "processing")
    c.restart()
    assert done.status == "cancelled" and running.status == "cancelled"
    with pytest.raises(concurrent.futures.CancelledError, match="restart"):
        done.result(timeout=5)
    assert c.cluster.scheduler.tasks == {}
    after = worker_pids(c)
    assert len(after) == 2 and not (after & before)
    # As dask's, the scheduler logs the old workers leaving and the new ones joining.
    said = [(m["action"], m["worker"]) for _, m in c.get_events("all")
            if m.get("action") in ("add-worker", "remove-worker")]
    assert [action for action, _ in said] == ["add-worker"] * 2 + ["remove-worker"] * 2 + [
        "add-worker"] * 2
    assert {a for _, a in said[:2]} == {a for _, a in said[2:4]}
    assert {a for _, a in said[4:]} == set(c.scheduler_info()["workers"])
    # the same key submitted again is computed afresh, and the old future dying later
    # does not release the new one
    again = c.submit(inc, 1)
    del done
    assert again.result(timeout=60) == 2
    assert c.submit(inc, 10).result(timeout=60) == 11


@pytest.mark.timeout(300)  # 30-80 s at load 25 on 2 cores (starts processes)
def test_restart_cancels_the_futures_of_every_client(make_client):
    c = make_client(n_workers=1)
    other = Client(c.cluster.scheduler_address, set_as_default=False)
    try:
        theirs = other.submit(inc, 5)
        assert theirs.result(timeout=60) == 6
        c.restart()
        wait_for(lambda: theirs.status == "cancelled")
        assert other.submit(inc, 6).result(timeout=60) == 7
    finally:
        other.close()


@pytest.mark.timeout(300)  # 30-80 s at load 25 on 2 cores (starts processes)
def test_restart_without_waiting_for_workers_returns_once_they_left(make_client):
    c = make_client(n_workers=2)
    c.restart(wait_for_workers=False)
    c.wait_for_workers(2, timeout=30)
    assert c.submit(inc, 1).result(timeout=60) == 2


def test_restart_of_in_process_workers_drops_their_data(make_client):
    c = make_client(n_workers=2, processes=False)
    f = c.submit(inc, 1)
    assert f.result(timeout=60) == 2
    c.restart()
    assert f.status == "cancelled"
    assert all(not w.data for w in c.cluster._inproc_workers)
    assert len(c.scheduler_info()["workers"]) == 2
    assert c.submit(inc, 2).result(timeout=60) == 3


@pytest.mark.timeout(300)  # 30-80 s at load 25 on 2 cores (starts processes)
def test_a_second_restart_activates_the_standby_prepared_after_the_first(make_client):
    c = make_client(n_workers=1)
    (nanny,) = c.cluster.nannies
    assert nanny._spare is None  # no standby before any restart: nothing to pay for
    c.restart()
    wait_for(lambda: nanny._spare is not None, timeout=120)
    standby = nanny._spare.pid
    c.restart()
    assert worker_pids(c) == {standby}
    assert c.submit(inc, 1).result(timeout=60) == 2
    wait_for(lambda: nanny._spare is not None, timeout=120)
    spare = nanny._spare.pid
    c.cluster.close()
    assert not alive(spare) and not alive(standby)


def test_restart_of_shoal_worker_command_workers_over_tcp(tmp_path):
    from .test_worker_lifecycle import _free_port as free_port
    from .test_worker_lifecycle import _start, _start_scheduler, _stop

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    processes = [_start_scheduler(port, tmp_path / "scheduler.log")]
    try:
        processes.append(_start(["worker", address, "--nworkers", "2", "--nthreads", "1"],
                                tmp_path / "worker.log"))
        with Client(address, timeout=30, set_as_default=False) as c:
            c.wait_for_workers(2, timeout=30)
            # (these workers cannot import this test module: builtins only)
            before = set(c.run(os.getpid).values())
            f = c.submit(operator.add, 1, 1)
            assert f.result(timeout=60) == 2
            c.restart()
            assert f.status == "cancelled"
            after = set(c.run(os.getpid).values())
            assert len(after) == 2 and not (after & before)
            assert c.submit(operator.add, 2, 2).result(timeout=60) == 4
    finally:
        _stop(processes)


def test_restart_rejects_a_bad_timeout(client):
    with pytest.raises(ValueError, match="timeout"):
        client.restart(timeout=-1)


# --- restart_workers / retire_workers ------------------------------------------------------------


@pytest.mark.timeout(300)  # 30-80 s at load 25 on 2 cores (starts processes)
def test_restart_workers_replaces_only_those_workers(make_client):
    c = make_client(n_workers=2)
    pids = {a: w["pid"] for a, w in c.scheduler_info()["workers"].items()}
    first, second = sorted(pids)
    kept = c.submit(inc, 1, workers=[second])
    assert kept.result(timeout=60) == 2
    out = c.restart_workers([first])
    assert out == {first: "OK"}
    info = c.scheduler_info()["workers"]
    assert len(info) == 2
    assert second in info and info[second]["pid"] == pids[second]
    assert pids[first] not in {w["pid"] for w in info.values()}
    assert kept.status == "finished" and kept.result(timeout=60) == 2


def test_restart_workers_of_an_unknown_worker_names_the_workers_there_are(client):
    with pytest.raises(ValueError, match="no worker with address or name 'tcp://nowhere:1'"):
        client.restart_workers(["tcp://nowhere:1"])


@pytest.mark.timeout(300)  # 30-80 s at load 25 on 2 cores (starts processes)
def test_retire_workers_moves_a_wanted_result_off_before_closing(make_client):
    c = make_client(n_workers=2)
    first, second = sorted(c.scheduler_info()["workers"])
    held = c.submit(inc, 41, workers=[first])
    assert held.result(timeout=60) == 42
    assert c.who_has(held)[held.key] == (first,)
    retired = c.retire_workers([first])
    assert list(retired) == [first]
    assert retired[first]["status"] == "closed"
    assert c.who_has(held)[held.key] == (second,)
    assert list(c.scheduler_info()["workers"]) == [second]
    assert c.gather(held) == 42
    assert c.submit(inc, held).result(timeout=60) == 43
    # the retired worker's nanny does not bring it back
    # (its process may still be exiting when retire_workers returns: wait for the exit)
    def exited():
        return [n for n in c.cluster.nannies if n.process.returncode is not None]

    wait_for(exited, timeout=60)
    nanny = exited()[0]
    wait_for(lambda: nanny._supervisor is not None and nanny._supervisor.done(), timeout=60)
    assert len(c.scheduler_info()["workers"]) == 1


def test_a_worker_process_dying_as_it_is_retired_is_not_restarted_by_its_nanny(make_client):
    # dask tells the nanny before it closes a retired worker; shoal's nanny never learnt of
    # the retirement: a worker process dying before its Close arrived was reported retired
    # and came back as a fresh worker, one more than asked for.
    c = make_client(n_workers=3)
    first, second, third = sorted(c.scheduler_info()["workers"])
    pids = c.run(os.getpid)
    nanny_of = {n.pid: n for n in c.cluster.nannies}
    # Frozen, the process cannot read its Close: it dies after being reported retired.
    os.kill(pids[first], signal.SIGSTOP)
    try:
        assert list(c.retire_workers([first])) == [first]
    finally:
        os.kill(pids[first], signal.SIGKILL)
    nanny = nanny_of[pids[first]]
    wait_for(lambda: nanny.stopped, timeout=60)
    assert nanny.pid == pids[first]  # no fresh process
    # Killed just before the retirement: whichever the scheduler hears of first, the
    # answer and the nanny agree (retired and gone, or not retired and restarted).
    os.kill(pids[second], signal.SIGKILL)
    retired = c.retire_workers([second])
    nanny = nanny_of[pids[second]]
    if retired:
        assert list(retired) == [second]
        wait_for(lambda: nanny.stopped, timeout=60)
        assert nanny.pid == pids[second]
        wait_for(lambda: list(c.scheduler_info()["workers"]) == [third], timeout=60)
    else:
        wait_for(lambda: len(c.scheduler_info()["workers"]) == 2, timeout=60)
        assert not nanny.stopped


class _StopsOnceAsItRetires(WorkerPlugin):
    """A worker plugin whose teardown (run as the worker closes) freezes the first process
    of the worker named "short" (SIGSTOP) after writing its pid: that process is then in
    the middle of its end-of-lifetime retirement, for the test to kill."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def teardown(self, worker) -> None:
        if worker.name != "short" or os.path.exists(self.marker):
            return
        with open(self.marker, "w") as f:
            f.write(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGSTOP)  # ends: the test's SIGKILL


@pytest.mark.timeout(300)  # starts two worker processes
def test_a_worker_killed_during_its_lifetime_retirement_is_restarted_with_lifetime_restart(
        make_client, tmp_path):
    # The nanny asks the scheduler before restarting a worker that died unasked, and the
    # scheduler says "retired" of one killed as its lifetime retired it: with
    # lifetime_restart (dask's distributed.worker.lifetime.restart) that retirement was the
    # lifetime's own, and a fresh worker must follow, as after a clean one.
    from shoal import _loop
    from shoal.worker._nanny import Nanny

    c = make_client(n_workers=1)
    marker = tmp_path / "stopped"
    c.register_plugin(_StopsOnceAsItRetires(str(marker)), name="stops-once")
    nanny = Nanny(c.scheduler_address, name="short", lifetime=2, lifetime_restart=True)
    _loop.run_sync(nanny.start(), 60)
    try:
        wait_for(lambda: marker.exists() and marker.read_text(), timeout=120)
        first = int(marker.read_text())
        assert nanny.pid == first
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: nanny.stopped or nanny.pid != first, timeout=60)
        assert not nanny.stopped
        names = lambda: [w["name"] for w in c.scheduler_info()["workers"].values()]  # noqa: E731
        wait_for(lambda: "short" in names(), timeout=120)
    finally:
        _loop.run_sync(nanny.close(), 60)


@pytest.mark.timeout(300)  # 30-80 s at load 25 on 2 cores (starts processes)
def test_scale_after_retire_workers_starts_a_worker_in_place_of_the_retired_one(make_client):
    # A nanny whose worker was retired supervises nothing any more: the cluster does not
    # count it (dask drops it from cluster.workers too), so scale(2) starts a new worker
    # instead of waiting for one that never comes back.
    c = make_client(n_workers=2)
    first, _ = sorted(c.scheduler_info()["workers"])
    assert list(c.retire_workers([first])) == [first]
    wait_for(lambda: len(c.cluster.workers) == 1, timeout=60)
    c.cluster.scale(2)
    assert len(c.scheduler_info()["workers"]) == 2
    assert len(c.cluster.workers) == 2
    assert c.submit(inc, 1, pure=False).result(timeout=60) == 2


def test_scale_right_after_retire_workers_keeps_the_workers_that_stay(make_client):
    # retire_workers returns once the scheduler has let the worker go; its nanny notices a
    # moment later. Counting that nanny meanwhile, scale(2) of the 2 workers left retired
    # one more (dask's SpecCluster drops the retired worker's spec first: 2 stay).
    c = make_client(n_workers=3)
    assert len(c.retire_workers(n=1)) == 1  # (right after the cluster started: see _add_workers)
    assert len(c.cluster.workers) == 2  # at once, not once its nanny has noticed
    c.cluster.scale(2)
    assert len(c.scheduler_info()["workers"]) == 2
    assert c.submit(inc, 1, pure=False).result(timeout=60) == 2
    assert len(c.scheduler_info()["workers"]) == 2


def _payload(n):
    return b"x" * n


def test_retire_workers_has_the_staying_worker_fetch_a_big_result_from_the_retiring_one(
        make_client):
    """The staying worker copies the value from its holder (CopyKeys), as replicate does;
    too big to ride along, the client then fetches it from the staying worker."""
    c = make_client(n_workers=2)
    first, second = sorted(c.scheduler_info()["workers"])
    big = c.submit(_payload, 300_000, workers=[first], pure=False)
    wait_for(lambda: c.who_has(big).get(big.key) == (first,), timeout=60)
    assert list(c.retire_workers([first])) == [first]
    assert c.who_has(big)[big.key] == (second,)
    assert big.result(timeout=120) == b"x" * 300_000


def test_retire_workers_keeps_a_worker_whose_data_nobody_can_take(make_client):
    c = make_client(n_workers=1)
    (only,) = c.scheduler_info()["workers"]
    f = c.submit(inc, 1)
    assert f.result(timeout=60) == 2
    assert c.retire_workers([only]) == {}
    assert f.result(timeout=60) == 2 and only in c.scheduler_info()["workers"]


# --- scale and adapt -----------------------------------------------------------------------------


@pytest.mark.timeout(300)  # 30-80 s at load 25 on 2 cores (starts processes)
def test_scale_up_and_down_keeps_wanted_results(make_client):
    c = make_client(n_workers=1)
    cluster = c.cluster
    cluster.scale(3)
    assert len(c.scheduler_info()["workers"]) == 3 and len(cluster.workers) == 3
    futs = c.map(inc, range(6))
    assert c.gather(futs) == list(range(1, 7))
    cluster.scale(1)
    assert len(c.scheduler_info()["workers"]) == 1 and len(cluster.workers) == 1
    assert c.gather(futs) == list(range(1, 7))
    with pytest.raises(ValueError, match="non-negative"):
        cluster.scale(-1)


@pytest.mark.timeout(300)  # 30-80 s at load 25 on 2 cores (starts processes)
def test_adapt_grows_on_a_queue_and_shrinks_when_idle(make_client):
    c = make_client(n_workers=1)
    cluster = c.cluster
    adaptive = cluster.adapt(minimum=1, maximum=3, interval="100ms", wait_count=2,
                             target_duration="50ms")
    try:
        futs = [c.submit(slow, i, 0.3, pure=False) for i in range(12)]
        wait_for(lambda: len(cluster.scheduler.state.workers) == 3, timeout=120)
        assert c.gather(futs) == list(range(12))
        wait_for(lambda: len(cluster.scheduler.state.workers) == 1, timeout=120)
        kinds = [what["status"] for _, what in adaptive.log]  # dask's (time, recommendation)
        assert kinds[:1] == ["up"] and "down" in kinds
    finally:
        adaptive.stop()


def test_adapt_rejects_a_maximum_below_the_minimum(make_client):
    c = make_client(n_workers=1)
    with pytest.raises(ValueError, match="below minimum"):
        c.cluster.adapt(minimum=3, maximum=1)


# --- connecting ----------------------------------------------------------------------------------


class _Deployment:
    """A cluster manager of someone else's making: dask accepts any object with a
    ``scheduler_address``."""

    def __init__(self, address):
        self.scheduler_address = address
        self.dashboard_link = "http://example.invalid/status"


def test_client_accepts_any_object_with_a_scheduler_address(client):
    with Client(_Deployment(client.scheduler_address), set_as_default=False) as other:
        assert other.submit(inc, 1).result(timeout=60) == 2
        assert other.dashboard_link == "http://example.invalid/status"


def test_client_without_address_uses_the_scheduler_address_config(client):
    with dask.config.set({"scheduler-address": client.scheduler_address}), \
            Client(set_as_default=False) as other:
        assert other.cluster is None
        assert other.submit(inc, 2).result(timeout=60) == 3


def test_dask_scheduler_address_environment_variable_is_used(client, tmp_path):
    script = tmp_path / "use_env.py"
    script.write_text(
        "from shoal import Client\n"
        "with Client() as c:\n"
        "    print(c.cluster is None, c.scheduler_address)\n"
    )
    env = dict(os.environ, DASK_SCHEDULER_ADDRESS=client.scheduler_address,
               PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", client.scheduler_address]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_client_retries_until_a_scheduler_starting_late_answers():
    import asyncio

    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    loop = asyncio.new_event_loop()
    scheduler = Scheduler("127.0.0.1", port)
    started = threading.Event()

    def serve():
        time.sleep(0.5)  # the scheduler comes up after the client started trying
        loop.run_until_complete(scheduler.start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with Client(address, timeout=20, set_as_default=False) as c:
            assert started.is_set()
            assert c.scheduler_info()["address"] == address
    finally:
        asyncio.run_coroutine_threadsafe(scheduler.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def test_default_connect_timeout_is_dasks_connect_timeout():
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        start = time.monotonic()
        with pytest.raises(OSError, match=r"tcp://127\.0\.0\.1:1\b"):
            Client("tcp://127.0.0.1:1")
        assert time.monotonic() - start < 20  # 1 s, not dask's 30 s default (slack for load)


def test_client_config_reaches_worker_processes(make_client):
    with dask.config.set({"shoal-test.h10": "forwarded", "distributed.scheduler.work-stealing": False}):
        c = make_client(n_workers=1)
        assert set(c.run(config_value, "shoal-test.h10").values()) == {"forwarded"}
        assert set(c.run(config_value, "distributed.scheduler.work-stealing").values()) == {False}


# --- scheduler_info ------------------------------------------------------------------------------


def test_scheduler_info_has_dasks_fields(client):
    info = client.scheduler_info()
    assert info["type"] == "Scheduler"
    assert info["id"].startswith("Scheduler-")
    assert info["address"] == client.scheduler_address
    assert isinstance(info["services"], dict) and isinstance(info["started"], float)
    assert info["n_workers"] == len(info["workers"]) == 2
    for address, w in info["workers"].items():
        assert w["type"] == "Worker" and w["address"] == address
        assert w["nthreads"] == 1 and w["memory_limit"] > 0
        assert w["host"] == "127.0.0.1" and w["resources"] == {}
        assert "local_directory" in w and isinstance(w["name"], int)  # 0, 1 as in dask
        assert {"cpu", "memory", "managed_bytes"} <= set(w["metrics"])
    assert len(client.scheduler_info(n_workers=1)["workers"]) == 1


_NO_DASK_AT_START = """
import asyncio, sys
from shoal.worker.__main__ import _configure_timeouts
_configure_timeouts(comm_timeout=30.0)
from shoal.comm._security import Security, set_default_security
security = Security.from_env()  # as python -m shoal.worker does, from what its nanny passed
set_default_security(security)
from shoal.worker._server import SchedulerGone, Worker

async def main():
    # a server that accepts but never answers: the worker connects (keepalive is set up),
    # then gives up registering after its death timeout
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    # resources: what a nanny always passes (--resources), so the worker need not read
    # dask's config for them
    worker = Worker(f"tcp://127.0.0.1:{port}", death_timeout=0.3, connect_timeout=0.1,
                    security=security, resources="")
    try:
        await worker.start()
    except SchedulerGone:
        pass
    await worker.close()
    server.close()

asyncio.run(main())
print("dask imported:", "dask" in sys.modules)
"""


@pytest.mark.timeout(300)  # starts a process: slow at load 30 on 2 cores
def test_a_worker_process_starts_and_connects_without_importing_dask():
    # importing dask costs a worker ~0.3 s of CPU: on the path of every start and restart
    from shoal.comm._security import Security

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), **Security().to_env())
    out = subprocess.run([sys.executable, "-c", _NO_DASK_AT_START], capture_output=True,
                         text=True, timeout=180, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "dask imported: False", out.stderr


def _imports_were_ready():
    from shoal.worker._execute import imports_ready

    return imports_ready.is_set()


def test_client_run_waits_for_the_workers_dask_imports_like_tasks_do(make_client):
    # client.run right after a (re)start unpickles its function while the worker imports
    # dask in the background; importing dask from two threads at once can fail
    from shoal.worker._execute import imports_ready

    c = make_client(n_workers=1, processes=False)
    imports_ready.clear()
    opener = threading.Timer(0.3, imports_ready.set)
    opener.start()
    try:
        assert list(c.run(_imports_were_ready).values()) == [True]
    finally:
        opener.cancel()
        imports_ready.set()
