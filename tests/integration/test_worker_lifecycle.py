"""Issue 9, items 6 and 16: workers stay until told to go, and never outlive their nanny.

- A worker whose scheduler connection drops reconnects (as a fresh worker) instead of exiting.
- Liveness uses a monotonic clock: a wall-clock jump (suspended laptop, paused VM, NTP step)
  evicts nobody.
- A second ``Register`` for an address that is still connected is refused.
- SIGKILL of the process that supervises workers (the ``shoal worker`` command, or a user's
  program running a LocalCluster) takes its worker processes with it.
- A ``client.run`` function that never returns does not keep a worker from exiting.
"""

from __future__ import annotations

import asyncio
import operator
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from shoal import Client, _loop
from shoal.comm import connect
from shoal.comm._connection import Connection
from shoal.protocol._messages import PROTOCOL_VERSION, Hello, Message, Register
from shoal.scheduler._server import Scheduler

from ._helpers import alive, gated, process_tree, wait_for

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).with_name("shoal"))


def _inbox(conn: Connection) -> list[list[Message] | None]:
    got: list[list[Message] | None] = []
    conn.set_handler(lambda _conn, batch: got.append(batch))
    return got


async def _register(scheduler: Scheduler, address: str) -> tuple[Connection, list[Any]]:
    conn = await connect(scheduler.address)
    inbox = _inbox(conn)
    conn.send(Hello("worker", PROTOCOL_VERSION, address))
    conn.send(Register(address, address, 1, 0, os.getpid(), "127.0.0.1"))
    return conn, inbox


async def _until(predicate: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition still false after {timeout} s")
        await asyncio.sleep(0.01)


# --- scheduler side: clocks and registration ------------------------------------------------


def test_a_wall_clock_jump_does_not_evict_workers(monkeypatch):
    async def main() -> None:
        scheduler = Scheduler(worker_ttl=60)
        await scheduler.start()
        try:
            conn, _ = await _register(scheduler, "tcp://127.0.0.1:1")
            await _until(lambda: "tcp://127.0.0.1:1" in scheduler.state.workers)
            wall = time.time
            monkeypatch.setattr(time, "time", lambda: wall() + 3600)  # the laptop slept an hour
            ticks = len(scheduler._tps)
            await _until(lambda: len(scheduler._tps) >= ticks + 2)  # two liveness checks ran
            assert "tcp://127.0.0.1:1" in scheduler.state.workers
            conn.close()
        finally:
            await scheduler.close()

    asyncio.run(main())


def test_a_worker_shown_to_users_was_last_seen_on_the_wall_clock():
    async def main() -> None:
        scheduler = Scheduler()
        await scheduler.start()
        try:
            conn, _ = await _register(scheduler, "tcp://127.0.0.1:1")
            await _until(lambda: "tcp://127.0.0.1:1" in scheduler.state.workers)
            from shoal.scheduler._views import worker_info

            [info] = worker_info(scheduler)
            assert abs(info["last_seen"] - time.time()) < 30
            conn.close()
        finally:
            await scheduler.close()

    asyncio.run(main())


def test_a_second_register_for_a_connected_address_is_refused_with_a_reason():
    from shoal.protocol._messages import RegisterReply

    async def main() -> None:
        scheduler = Scheduler()
        await scheduler.start()
        try:
            first, first_inbox = await _register(scheduler, "tcp://127.0.0.1:1")
            await _until(lambda: "tcp://127.0.0.1:1" in scheduler.state.workers)
            _second, second_inbox = await _register(scheduler, "tcp://127.0.0.1:1")
            await _until(lambda: None in second_inbox)  # the scheduler closed it
            replies = [m for b in second_inbox if b for m in b if isinstance(m, RegisterReply)]
            assert [r.accepted for r in replies] == [False]
            assert "already connected" in replies[0].reason
            assert [m for b in first_inbox if b for m in b] == [RegisterReply(True, "")]
            assert not first.closed
            assert scheduler._workers["tcp://127.0.0.1:1"] is not None
            assert None not in first_inbox
            # The refused connection's close does not remove the registered worker.
            assert "tcp://127.0.0.1:1" in scheduler.state.workers
            first.close()
        finally:
            await scheduler.close()

    asyncio.run(main())


# --- worker side: reconnecting, giving up, dying with the nanny -----------------------------


def inc(x):
    return x + 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(args: list[str], log: Path) -> subprocess.Popen:
    with log.open("a") as out:
        return subprocess.Popen([CLI, *args], stdout=out, stderr=subprocess.STDOUT)


def _start_scheduler(port: int, log: Path) -> subprocess.Popen:
    """A ``shoal scheduler`` on ``port``, once it listens."""
    proc = _start(["scheduler", "--port", str(port), "--no-dashboard"], log)
    wait_for(lambda: "Scheduler at:" in log.read_text() or proc.poll() is not None, timeout=120)
    assert proc.poll() is None, log.read_text()
    return proc


def _stop(processes: list[subprocess.Popen]) -> None:
    for proc in processes:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _workers(client: Client) -> dict[str, Any]:
    return client.scheduler_info()["workers"]


def test_a_worker_whose_scheduler_connection_drops_reconnects_instead_of_exiting(make_client):
    c = make_client(n_workers=1)
    [(address, pid)] = c.run(os.getpid).items()
    held = c.submit(inc, 1)
    assert held.result(timeout=60) == 2
    scheduler = c.cluster.scheduler
    old = scheduler._workers[address]
    _loop.call_soon(old.close)  # no Close message: just a lost link
    wait_for(lambda: scheduler._workers.get(address) not in (None, old), timeout=60)
    assert [w["pid"] for w in _workers(c).values()] == [pid]
    assert alive(pid)
    # Its old data was dropped; the scheduler recomputes what it lost, and new work runs.
    assert held.result(timeout=60) == 2
    assert c.submit(inc, 10).result(timeout=60) == 11
    assert c.run(os.getpid) == {address: pid}


def test_a_worker_reconnects_with_tasks_running_and_queued_and_all_results_are_right(
    make_client, gate
):
    c = make_client(n_workers=1)
    [(address, pid)] = c.run(os.getpid).items()
    blocked = c.submit(gated, gate.path, "opened", pure=False)
    queued = c.map(inc, range(20))
    scheduler = c.cluster.scheduler
    wait_for(lambda: getattr(scheduler.tasks.get(blocked.key), "state", None) == "processing",
             timeout=60)
    old = scheduler._workers[address]
    _loop.call_soon(old.close)
    wait_for(lambda: scheduler._workers.get(address) not in (None, old), timeout=60)
    gate.open()
    assert blocked.result(timeout=60) == "opened"
    assert c.gather(queued) == list(range(1, 21))
    assert c.run(os.getpid) == {address: pid}


@pytest.mark.timeout(300)  # starts processes: slow at load 30 on 2 cores
def test_a_worker_evicted_for_silence_comes_back_as_a_fresh_worker(make_client):
    """dask restarts a worker that missed its TTL; shoal's comes back by reconnecting."""
    import dask

    with dask.config.set({"distributed.scheduler.worker-ttl": "3s"}):
        c = make_client(n_workers=1)
    [(address, pid)] = c.run(os.getpid).items()
    scheduler = c.cluster.scheduler
    process = psutil.Process(pid)
    process.suspend()  # SIGSTOP: no heartbeats
    try:
        wait_for(lambda: address not in scheduler.state.workers, timeout=120)
    finally:
        process.resume()
    wait_for(lambda: address in scheduler.state.workers, timeout=120)
    assert c.run(os.getpid) == {address: pid}
    assert c.submit(inc, 1).result(timeout=60) == 2


@pytest.mark.timeout(300)  # starts processes: slow at load 30 on 2 cores
def test_workers_reconnect_to_a_scheduler_restarted_on_the_same_port(tmp_path):
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    processes = [_start_scheduler(port, tmp_path / "scheduler.log")]
    try:
        processes.append(_start(["worker", address, "--nworkers", "1", "--nthreads", "1"],
                                tmp_path / "worker.log"))
        with Client(address, timeout=120) as c:
            wait_for(lambda: len(_workers(c)) == 1, timeout=120)
            [before] = _workers(c).values()
            assert c.submit(operator.add, 1, 1).result(timeout=60) == 2
        processes[0].kill()  # no Close reaches the worker: it must wait and reconnect
        processes[0].wait()
        processes[0] = _start_scheduler(port, tmp_path / "scheduler2.log")
        with Client(address, timeout=120) as c:
            wait_for(lambda: len(_workers(c)) == 1, timeout=120)
            [after] = _workers(c).values()
            assert after["pid"] == before["pid"]
            assert c.submit(operator.add, 2, 2).result(timeout=60) == 4
    finally:
        _stop(processes)


@pytest.mark.timeout(300)  # starts processes: slow at load 30 on 2 cores
def test_a_worker_started_before_its_scheduler_waits_for_it(tmp_path):
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    worker_log = tmp_path / "worker.log"
    processes = [_start(["worker", address, "--nworkers", "1", "--nthreads", "1"], worker_log)]
    try:
        wait_for(lambda: "retrying" in worker_log.read_text(), timeout=120)
        processes.append(_start_scheduler(port, tmp_path / "scheduler.log"))
        with Client(address, timeout=120) as c:
            wait_for(lambda: len(_workers(c)) == 1, timeout=120)
            assert c.submit(operator.add, 1, 1).result(timeout=60) == 2
    finally:
        _stop(processes)


@pytest.mark.timeout(300)  # starts processes: slow at load 30 on 2 cores
def test_a_worker_exits_for_good_after_its_death_timeout_without_a_scheduler(tmp_path):
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    processes = [_start_scheduler(port, tmp_path / "scheduler.log")]
    try:
        worker_cli = _start(
            ["worker", address, "--nworkers", "1", "--nthreads", "1", "--death-timeout", "2"],
            tmp_path / "worker.log",
        )
        processes.append(worker_cli)
        with Client(address, timeout=120) as c:
            wait_for(lambda: len(_workers(c)) == 1, timeout=120)
        tree = process_tree(worker_cli.pid)
        processes[0].kill()
        processes[0].wait()
        assert worker_cli.wait(timeout=120) == 0  # the command ends once its workers gave up
        wait_for(lambda: not any(alive(p) for p in tree), timeout=60)
        assert "death timeout" in (tmp_path / "worker.log").read_text()
    finally:
        _stop(processes)


@pytest.mark.timeout(300)  # starts processes: slow at load 30 on 2 cores
def test_sigkill_of_the_shoal_worker_command_takes_its_workers_with_it(tmp_path):
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    processes = [_start_scheduler(port, tmp_path / "scheduler.log")]
    try:
        worker_cli = _start(["worker", address, "--nworkers", "2", "--nthreads", "1"],
                            tmp_path / "worker.log")
        processes.append(worker_cli)
        with Client(address, timeout=120) as c:
            wait_for(lambda: len(_workers(c)) == 2, timeout=120)
            pids = {w["pid"] for w in _workers(c).values()}
        assert pids <= process_tree(worker_cli.pid)
        worker_cli.kill()
        worker_cli.wait()
        wait_for(lambda: not any(alive(p) for p in pids), timeout=60)
    finally:
        _stop(processes)


_PROGRAM = """
import sys, time
from shoal import LocalCluster
cluster = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None, timeout=180)
cluster.wait_for_workers(2, timeout=180)
print(*[n.pid for n in cluster.nannies], flush=True)
time.sleep(600)  # until the test kills this process
"""


@pytest.mark.timeout(300)  # starts processes: slow at load 30 on 2 cores
def test_sigkill_of_a_program_running_a_local_cluster_takes_its_workers_with_it(tmp_path):
    script = tmp_path / "program.py"
    script.write_text(_PROGRAM)
    program = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert program.stdout is not None
        pids = {int(p) for p in program.stdout.readline().split()}
        assert len(pids) == 2 and all(alive(p) for p in pids)
        program.kill()
        program.wait()
        wait_for(lambda: not any(alive(p) for p in pids), timeout=60)
    finally:
        _stop([program])


def _block_forever(started: str) -> None:
    Path(started).touch()
    threading.Event().wait()


@pytest.mark.timeout(300)  # 30-80 s at load 25 on 2 cores (starts processes)
def test_a_run_function_that_never_returns_does_not_keep_its_worker_from_exiting(
    make_client, tmp_path
):
    c = make_client(n_workers=1)
    [pid] = c.run(os.getpid).values()
    started = tmp_path / "started"
    outcome: list[BaseException | dict[str, Any]] = []

    def call() -> None:
        try:
            outcome.append(c.run(_block_forever, str(started)))
        except BaseException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    wait_for(started.exists, timeout=60)
    psutil.Process(pid).terminate()
    wait_for(lambda: not alive(pid), timeout=60)
    wait_for(lambda: outcome, timeout=60)
    [error] = outcome
    assert isinstance(error, Exception)
    assert "closed while the function given to client.run was still running" in str(error)


@pytest.mark.timeout(300)  # starts processes: slow at load 30 on 2 cores
def test_a_signalled_worker_command_says_goodbye_so_its_running_task_is_not_blamed(tmp_path):
    """SIGTERM asks ``python -m shoal.worker`` to close on purpose: the scheduler must hear
    its goodbye before the process exits, so the task it was running goes back to wait for a
    worker instead of counting as a crash (with ``allowed-failures: 0`` a crash would end it
    in KilledWorker at once)."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    log = tmp_path / "scheduler.log"
    env = {**os.environ, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}
    with log.open("a") as out:
        scheduler = subprocess.Popen([CLI, "scheduler", "--port", str(port), "--no-dashboard"],
                                     stdout=out, stderr=subprocess.STDOUT, env=env)
    processes = [scheduler]
    try:
        wait_for(lambda: "Scheduler at:" in log.read_text() or scheduler.poll() is not None,
                 timeout=120)
        worker = subprocess.Popen([sys.executable, "-m", "shoal.worker", address,
                                   "--memory-limit", str(4 << 30)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        processes.append(worker)
        with Client(address, timeout=120) as c:
            wait_for(lambda: len(_workers(c)) == 1, timeout=120)
            running = c.submit(time.sleep, 600, pure=False)  # stdlib: no shared sys.path
            wait_for(lambda: [w["processing"] for w in _workers(c).values()] == [1], timeout=60)
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=60) == 0
            wait_for(lambda: not _workers(c), timeout=60)
            c.scheduler_info()  # a later answer: a KilledWorker report would have come first
            assert running.status == "pending"
            running.cancel()
    finally:
        _stop(processes)


def test_a_second_close_of_a_worker_returns_only_once_the_first_has_finished():
    """``python -m shoal.worker`` awaits ``close()`` after ``wait_closed()``, then ends its
    loop: a second ``close()`` that returned while the first (started by a signal or by the
    scheduler) was still cancelling tasks would end the process before the goodbye left."""
    from shoal.worker._server import Worker

    async def go() -> None:
        scheduler = Scheduler()
        await scheduler.start()
        worker = Worker(scheduler.address, nthreads=1)
        try:
            await worker.start()
            worker._spawn(asyncio.sleep(3600))  # something to cancel: the first close yields
            first = asyncio.ensure_future(worker.close())
            await asyncio.sleep(0)
            assert not first.done()
            await worker.close()  # awaited directly: no extra loop turn for the first
            assert first.done()
            await asyncio.wait_for(worker.wait_closed(), timeout=1)
        finally:
            await worker.close()
            await scheduler.close()

    asyncio.run(go())
