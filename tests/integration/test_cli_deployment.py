"""dask's deployment flags on ``shoal scheduler`` / ``shoal worker``, with real processes on
loopback: worker lifetimes (``--lifetime``, ``--lifetime-restart``), preloads (``--preload``,
``--preload-nanny``), ``--no-nanny``, ``--pid-file`` and ``--idle-timeout``.

Every process a test starts is killed at its end (with its workers: they die with their
command); every wait has a deadline.
"""

from __future__ import annotations

import operator
import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal import Client, wait

from ._helpers import alive, process_tree, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]  # slow under load

CLI = str(Path(sys.executable).with_name("shoal"))


class Commands:
    """``shoal`` commands started by one test, each logging to its own file."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[subprocess.Popen] = []

    def start(self, *args: str, log: str, env: dict[str, str] | None = None
              ) -> tuple[subprocess.Popen, Path]:
        path = self.tmp_path / log
        with path.open("a") as out:
            proc = subprocess.Popen([CLI, *args], stdout=out, stderr=subprocess.STDOUT,
                                    env={**os.environ, **(env or {})}, cwd=self.tmp_path)
        self.started.append(proc)
        return proc, path

    def scheduler(self, *args: str, log: str = "scheduler.log") -> tuple[subprocess.Popen, str]:
        """A ``shoal scheduler`` on a free port, once it listens, and its address."""
        proc, path = self.start("scheduler", "--port", "0", "--no-dashboard", *args, log=log)
        wait_for(lambda: "Scheduler at:" in path.read_text() or proc.poll() is not None,
                 timeout=120)
        match = re.search(r"Scheduler at: (\S+)", path.read_text())
        assert proc.poll() is None and match, path.read_text()
        return proc, match.group(1)

    def close(self) -> None:
        tree = {pid for proc in self.started for pid in process_tree(proc.pid)}
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        wait_for(lambda: not any(alive(pid) for pid in tree), timeout=60)


@pytest.fixture
def commands(tmp_path: Path) -> Iterator[Commands]:
    c = Commands(tmp_path)
    yield c
    c.close()


def _workers(client: Client) -> dict[str, Any]:
    """Worker name -> info."""
    return {str(w["name"]): {**w, "address": a}
            for a, w in client.scheduler_info()["workers"].items()}


def _module(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return path


# --- lifetimes -------------------------------------------------------------------------------


def test_a_worker_whose_lifetime_is_over_leaves_and_its_data_stays_gatherable(commands):
    _, address = commands.scheduler()
    commands.start("worker", address, "--nworkers", "1", "--nthreads", "1", "--name", "stays", log="stays.log")
    with Client(address, timeout=120) as c:
        wait_for(lambda: "stays" in _workers(c), timeout=120)
        short, short_log = commands.start("worker", address, "--nworkers", "1", "--nthreads", "1", "--name",
                                          "short", "--lifetime", "20s", log="short.log")
        wait_for(lambda: "short" in _workers(c), timeout=120)
        where = _workers(c)["short"]["address"]
        # Scattered data cannot be recomputed: only a move keeps it.
        data = c.scatter(list(range(10)), workers=[where])
        computed = c.map(operator.add, range(10), [1] * 10, workers=[where], pure=False)
        wait(computed, timeout=60)
        assert set(c.who_has([*data, *computed]).values()) == {(where,)}
        wait_for(lambda: "short" not in _workers(c), timeout=120)
        assert c.gather(data) == list(range(10))
        assert c.gather(computed) == list(range(1, 11))
        stays = _workers(c)["stays"]["address"]
        assert set(c.who_has([*data, *computed]).values()) == {(stays,)}
        # Its only worker retired for good: the command ends, without error.
        assert short.wait(timeout=120) == 0
    assert "retired at the end of its lifetime" in short_log.read_text()


def test_a_worker_with_lifetime_restart_is_replaced_by_a_fresh_one(commands):
    _, address = commands.scheduler()
    proc, _ = commands.start("worker", address, "--nworkers", "1", "--nthreads", "1", "--name", "again",
                             "--lifetime", "3s", "--lifetime-restart", log="again.log")
    with Client(address, timeout=120) as c:
        wait_for(lambda: "again" in _workers(c), timeout=120)
        first = _workers(c)["again"]["pid"]
        wait_for(lambda: _workers(c).get("again", {}).get("pid", first) != first, timeout=120)
        assert c.submit(operator.add, 1, 2, pure=False).result(timeout=60) == 3
        assert proc.poll() is None  # the command keeps supervising


# --- preloads, pid file, idle timeout ----------------------------------------------------------


def test_a_scheduler_runs_its_preload_writes_its_pid_file_and_closes_when_idle(commands, tmp_path):
    preload = _module(tmp_path, "scheduler_setup", """
        import os

        def dask_setup(scheduler):
            with open(os.path.join(os.getcwd(), "setup.txt"), "w") as f:
                f.write(type(scheduler).__name__ + " " + scheduler.address)

        async def dask_teardown(scheduler):
            with open(os.path.join(os.getcwd(), "teardown.txt"), "w") as f:
                f.write("closed")
    """)
    pid_file = tmp_path / "scheduler.pid"
    proc, address = commands.scheduler("--preload", str(preload), "--pid-file", str(pid_file),
                                       "--idle-timeout", "3s")
    assert (tmp_path / "setup.txt").read_text() == f"Scheduler {address}"
    assert pid_file.read_text() == str(proc.pid)
    assert proc.wait(timeout=120) == 0  # nobody works: it closes itself
    assert (tmp_path / "teardown.txt").read_text() == "closed"
    assert not pid_file.exists()


def test_a_failing_scheduler_preload_fails_the_start_with_its_error(commands, tmp_path):
    preload = _module(tmp_path, "bad_scheduler_setup", """
        def dask_setup(scheduler):
            raise ValueError("no credentials found")
    """)
    proc, log = commands.start("scheduler", "--port", "0", "--no-dashboard", "--preload",
                               str(preload), log="scheduler.log")
    assert proc.wait(timeout=120) == 1
    text = log.read_text()
    assert "bad_scheduler_setup.py': dask_setup raised ValueError: no credentials found" in text
    assert "Traceback" not in text


def test_worker_and_nanny_preloads_run_in_their_processes(commands, tmp_path):
    _module(tmp_path, "nanny_setup", """
        def dask_setup(nanny):
            # What the nanny's worker processes start with.
            nanny.env = {**(nanny.env or {}), "FROM_NANNY_PRELOAD": type(nanny).__name__}
    """)
    worker_setup = _module(tmp_path, "worker_setup", """
        import os

        def dask_setup(worker):
            worker.preloaded = type(worker).__name__ + " " + worker.address

        def probe(dask_worker):
            return dask_worker.preloaded, os.environ.get("FROM_NANNY_PRELOAD")
    """)
    _, address = commands.scheduler()
    commands.start("worker", address, "--nworkers", "1", "--nthreads", "1", "--name", "pre", "--preload",
                   str(worker_setup), "--preload-nanny", "nanny_setup", log="worker.log",
                   env={"PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])})
    sys.path.insert(0, str(tmp_path))
    try:
        import worker_setup as module  # the probe pickles by reference to this module

        with Client(address, timeout=120) as c:
            wait_for(lambda: "pre" in _workers(c), timeout=120)
            where = _workers(c)["pre"]["address"]
            assert c.run(module.probe) == {where: (f"Worker {where}", "Nanny")}
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("worker_setup", None)


def test_a_failing_worker_preload_ends_the_worker_command_with_its_error(commands, tmp_path):
    preload = _module(tmp_path, "bad_worker_setup", """
        def dask_setup(worker):
            raise ValueError("no GPU here")
    """)
    _, address = commands.scheduler()
    proc, log = commands.start("worker", address, "--nworkers", "1", "--nthreads", "1", "--preload", str(preload),
                               log="worker.log")
    assert proc.wait(timeout=120) == 1  # not restarted: the same module would fail again
    text = log.read_text()
    assert "dask_setup raised ValueError: no GPU here" in text
    assert "a preload failed" in text


# --- no nanny ---------------------------------------------------------------------------------


def test_a_worker_without_a_nanny_runs_in_the_command_process(commands):
    _, address = commands.scheduler()
    proc, _ = commands.start("worker", address, "--no-nanny", "--nworkers", "1", "--nthreads", "1", "--name",
                             "solo", log="worker.log")
    with Client(address, timeout=120) as c:
        wait_for(lambda: "solo" in _workers(c), timeout=120)
        assert _workers(c)["solo"]["pid"] == proc.pid
        assert c.submit(operator.add, 2, 3, pure=False).result(timeout=60) == 5
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        wait_for(lambda: "solo" not in _workers(c), timeout=60)


# --- dask's command lines, drop-in ---------------------------------------------------------------


def test_dask_command_lines_start_one_worker_with_n_threads(commands):
    # dask worker's rules: --nthreads N alone is ONE worker process with N threads; the
    # scheduler from DASK_SCHEDULER_ADDRESS; a numeric name is an int. The scheduler's
    # --host carries scheme and port, its dashboard is under --dashboard-prefix, and its
    # dashboard line comes before its address.
    proc, path = commands.start("scheduler", "--host", "tcp://127.0.0.1:0", "--dashboard-address",
                                ":0", "--dashboard-prefix", "dask", log="scheduler.log")
    wait_for(lambda: "Scheduler at:" in path.read_text() or proc.poll() is not None, timeout=120)
    text = path.read_text()
    dashboard, address = re.search(r"Dashboard at: (\S+)\nScheduler at: (\S+)", text).groups()
    assert dashboard.endswith("/dask/status") and address.startswith("tcp://127.0.0.1:")
    commands.start("worker", "--nthreads", "2", "--name", "7", "--no-dashboard", log="worker.log",
                   env={"DASK_SCHEDULER_ADDRESS": address})
    with Client(address, timeout=120) as c:
        wait_for(lambda: c.scheduler_info()["workers"], timeout=120)
        (info,) = c.scheduler_info()["workers"].values()
        assert (info["name"], info["nthreads"]) == (7, 2)
