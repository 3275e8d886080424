"""Issue 9, items 2 and 12: a task's SystemExit ends the task, not its thread (in-process); closing an
in-process cluster with tasks queued stops every task thread."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import dask
import pytest

from shoal import Client, LocalCluster

from ._helpers import gated, scheduler_tasks, wait_for

pytestmark = pytest.mark.integration


def _exits(code: int) -> None:
    sys.exit(code)


def _inc(x: int) -> int:
    return x + 1


def test_a_task_calling_sys_exit_errs_and_its_in_process_worker_keeps_running(make_client):
    # In dask, SystemExit in a task of an in-process worker ends the client's event loop:
    # result() hangs. Here the task fails; in a worker process (a nanny's) it ends the
    # process, as in dask (test_killed_worker.py).
    client = make_client(n_workers=1, processes=False)
    w = sorted(client.scheduler_info()["workers"])[0]
    bad = client.submit(_exits, 3, workers=[w], pure=False)
    with pytest.raises(RuntimeError, match=r"SystemExit\(3\)"):
        bad.result(timeout=30)
    # the worker's only thread survived: the next task on it runs
    assert client.submit(_inc, 1, workers=[w], pure=False).result(timeout=30) == 2


def _task_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("shoal-task-")]


def _announce_then_wait(started: str, gate: str) -> object:
    Path(started).touch()
    return gated(gate, 0)


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_closing_an_in_process_cluster_with_tasks_queued_stops_its_task_threads(gate, tmp_path):
    started = str(tmp_path / "started")
    before = set(_task_threads())
    # Tasks are sent ahead only while the worker has room in expected seconds: neither kind
    # is measured before the five are sent, and unknown ones are assumed short, so they
    # queue on the worker behind the running one (no measured duration involved).
    with dask.config.set({"distributed.scheduler.unknown-task-duration": "1ms"}), \
            LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                         dashboard_address=None) as cluster, Client(cluster) as c:
        (w,) = c.scheduler_info()["workers"]
        running = c.submit(_announce_then_wait, started, gate.path, workers=[w], pure=False)
        wait_for(lambda: os.path.exists(started), timeout=60)
        queued = [c.submit(_inc, i, workers=[w], pure=False) for i in range(5)]
        wait_for(lambda: all(getattr(scheduler_tasks(c).get(q.key), "state", None) == "processing"
                             for q in queued), timeout=60)
        c.run(os.getpid)  # the worker has handled the Computes: they wait in its queue
        assert running.status == "pending"
    # closing raised TypeError (a float stop marker against tuple priorities) and left the
    # task thread alive, to run the queued tasks or die on the next comparison
    gate.open()
    wait_for(lambda: not set(_task_threads()) - before, timeout=60)
