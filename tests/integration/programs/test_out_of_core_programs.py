"""Programs whose data is bigger than the workers' memory (clusters of their own, with small
``memory_limit``s): what completes by spilling, and what cannot fit fails with a clear error
and leaves nothing behind. Each outcome is the one dask.distributed gives on the same
program under the same limits (measured side by side; see the soak notes in the commits)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pytest

from shoal import Client, KilledWorker, wait

from .._helpers import wait_for

pytestmark = pytest.mark.integration

MB = 1_000_000


def _workers(client: Client) -> dict[str, Any]:
    return client.scheduler_info()["workers"]


def _hold(nbytes: int) -> int:
    """A task that leaks: unmanaged memory (a module global) the worker cannot spill."""
    import shoal

    shoal._test_leak = bytearray(nbytes)  # type: ignore[attr-defined]
    for i in range(0, nbytes, 4096):  # touch every page: it counts in RSS
        shoal._test_leak[i] = 1  # type: ignore[attr-defined]
    return os.getpid()


def _files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


def _fifty(i: int) -> np.ndarray:
    return np.full(50 * MB // 8, i, dtype="i8")


def _checksum(a: np.ndarray) -> int:
    return int(a[::1000].sum())


def test_futures_holding_more_than_the_cluster_memory_spill_and_leave_no_files_after_close(
    make_client: Callable[..., Client], tmp_path: Path
) -> None:
    client = make_client(n_workers=2, memory_limit="300MB", local_directory=str(tmp_path))
    pids = {w["pid"] for w in _workers(client).values()}
    futs = client.map(_fifty, range(14), pure=False)  # 700 MB held, 50 MB each
    wait(futs, timeout=120)
    # The scheduler learns what spilled from the workers' next heartbeats.
    wait_for(lambda: sum(w["memory_spilled"] for w in _workers(client).values()) > 300 * MB,
             timeout=30)
    n = len(range(0, 50 * MB // 8, 1000))
    assert client.gather(client.map(_checksum, futs, pure=False)) == [i * n for i in range(14)]
    assert int(futs[5].result(timeout=60)[-1]) == 5
    assert {w["pid"] for w in _workers(client).values()} == pids  # spilled, never restarted
    client.close()
    client.cluster.close()
    assert _files_under(tmp_path) == []


def test_spill_files_of_a_worker_killed_past_its_terminate_threshold_are_removed(
    make_client: Callable[..., Client], tmp_path: Path
) -> None:
    client = make_client(n_workers=1, memory_limit="300MB", local_directory=str(tmp_path))
    (pid,) = (w["pid"] for w in _workers(client).values())
    # Over the 180 MB target on its own: written to a spill file at once.
    spilled = client.submit(np.ones, 25 * MB, dtype="i8", pure=False)
    wait_for(lambda: any(w["memory_spilled"] for w in _workers(client).values()), timeout=60)
    (space,) = client.run(lambda dask_worker: dask_worker.local_directory).values()
    assert any(p.name.endswith(".spill") for p in Path(space).rglob("*"))
    try:  # past the 285 MB terminate threshold: its nanny kills it and starts another
        client.run(_hold, 300 * MB)
    except Exception as exc:  # the nanny may kill it before the answer leaves
        print("run ended with", type(exc).__name__, exc)
    wait_for(lambda: [w["pid"] for w in _workers(client).values()] not in ([], [pid]),
             timeout=60)
    # The dead worker's directory (its spill files) goes with it, as dask purges the
    # directories of dead workers; no process of its own is left to remove it.
    wait_for(lambda: not os.path.exists(space), timeout=30)
    assert client.submit(_checksum, spilled).result(timeout=60) == 25 * MB // 1000
    del spilled
    client.close()
    client.cluster.close()
    assert _files_under(tmp_path) == []


def _grow(path: str, step: int, cap: int) -> int:
    """A task whose memory grows fast (``step`` bytes every 10 ms, up to ``cap``), writing
    how far it got to ``path`` after each step."""
    import os
    import time

    blocks = []
    while len(blocks) * step < cap:  # ends: at cap, or when the nanny kills this process
        blocks.append(np.ones(step, dtype="u1"))  # written: every page counts in RSS
        # replaced whole: a kill between open(path, "w") and the write left it empty
        with open(path + ".part", "w") as f:
            f.write(str(len(blocks) * step))
        os.replace(path + ".part", path)
        time.sleep(0.01)
    return len(blocks) * step


def test_a_task_allocating_past_its_worker_limit_fails_with_killedworker_not_a_hang(
    make_client: Callable[..., Client], tmp_path: Path
) -> None:
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        client = make_client(n_workers=1, memory_limit="300MB")
    progress = tmp_path / "reached"
    fut = client.submit(_grow, str(progress), 20 * MB, 1500 * MB, pure=False)
    with pytest.raises(KilledWorker, match="_grow") as info:
        fut.result(timeout=60)
    # Says why (dask's message start, then its nanny's memory kill) and what to do.
    text = str(info.value)
    assert text.startswith(f"Attempted to run task {fut.key!r} on 1 different workers")
    assert "killed by its nanny for exceeding its memory limit" in text
    assert "of its 286 MiB memory_limit" in text and "smaller chunks" in text
    # Stopped by its nanny soon after the limit (it samples every 0.5 s, and the task grows
    # up to ~2 GB/s), well before its 1.5 GB: a task that outgrows its worker costs the
    # machine a bounded overshoot, not what the task would have taken.
    assert int(progress.read_text()) < 1000 * MB


def _grow_holding_the_gil() -> int:
    """A task that takes memory and never lets its worker's event loop run: the bytes
    are made, then a regular expression backtracks for ever, both in C with the GIL,
    with no Python code between them (where the loop could take the GIL)."""
    import re

    backtracks, text = re.compile(r"(a+)+$").match, "a" * 40 + "b"
    big = b"x" * (400 * MB)
    backtracks(text)  # ends: its nanny kills the process
    return len(big)


def test_a_worker_too_busy_to_answer_its_nanny_still_fails_its_task_as_killed_for_memory(
    make_client: Callable[..., Client],
) -> None:
    # The worker cannot say why it dies (its loop never gets the GIL within the nanny's
    # grace): its nanny, which measured it, says so itself before the kill.
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        client = make_client(n_workers=1, memory_limit="300MB")
    fut = client.submit(_grow_holding_the_gil, pure=False)
    with pytest.raises(KilledWorker, match="killed by its nanny for exceeding its memory limit"):
        fut.result(timeout=60)
