"""Workers under a memory limit (real processes): values spill to disk instead of the
worker being restarted; a worker whose process memory passes its pause threshold stops
taking work and resumes once it falls back."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask
import pytest

from shoal import Client

from ._helpers import wait_for

pytestmark = pytest.mark.integration

MB = 1_000_000


def _workers(client: Client) -> dict[str, Any]:
    return client.scheduler_info()["workers"]


def test_persisting_twice_the_memory_limit_spills_without_restarts(
    make_client: Callable[..., Client], tmp_path: Path
) -> None:
    da = pytest.importorskip("dask.array")
    client = make_client(n_workers=2, memory_limit="300MB", local_directory=str(tmp_path))
    pids = {w["pid"] for w in _workers(client).values()}
    x = (da.ones((75_000, 1_000), chunks=(2_500, 1_000)) * 2).persist()  # 600 MB, 20 MB chunks
    client.wait_for_workers(2)
    from shoal import wait

    wait(x, timeout=120)
    wait_for(lambda: sum(w["memory_spilled"] for w in _workers(client).values()) > 0, timeout=60)
    info = _workers(client)
    spilled = [w["metrics"]["spilled_bytes"] for w in info.values()]
    assert sum(s["disk"] for s in spilled) > 0
    # dask's meaning: "disk" is the files' bytes, "memory" the values'. lz4 (spill
    # compression "auto", in the dev extra) makes arrays of twos tiny; raw files are larger.
    disk, memory = sum(s["disk"] for s in spilled), sum(s["memory"] for s in spilled)
    from shoal.worker._spill import spill_compression

    assert disk < memory // 10 if spill_compression("auto") == "lz4" else disk > memory
    assert all(w["memory_process"] < 300 * MB for w in info.values())
    assert float(x.sum().compute()) == 2 * 75_000 * 1_000
    assert {w["pid"] for w in _workers(client).values()} == pids  # no worker was restarted
    # As in dask, under each worker's own directory, itself under local_directory.
    assert any(p.name.startswith("shoal-spill-") for p in tmp_path.glob("shoal-worker-space-*/*"))


def test_a_value_read_back_from_disk_is_equal_and_writable(
    make_client: Callable[..., Client], tmp_path: Path
) -> None:
    np = pytest.importorskip("numpy")
    # What is tested is the read-back, not the nanny: reading a value bigger than the
    # target back takes its size again, which may pass the terminate threshold.
    with dask.config.set({"distributed.worker.memory.terminate": False}):
        client = make_client(n_workers=1, memory_limit="400MB", local_directory=str(tmp_path))
    # Bigger than the target on its own (240 MB): on disk from the start.
    first = client.submit(np.arange, 32 * MB, dtype="i8", pure=False)
    wait_for(lambda: next(iter(_workers(client).values()))["memory_spilled"] > 0, timeout=120)

    def check(a: Any) -> tuple[bool, int, list[int]]:
        a[0] = -1  # writable in place
        return bool(a.flags.writeable), int(a.sum()), [int(v) for v in a[::4 * MB]]

    n = 32 * MB
    expected = (True, n * (n - 1) // 2 - 1, [-1, *range(4 * MB, n, 4 * MB)])
    assert client.submit(check, first).result(timeout=60) == expected


def _hold(nbytes: int) -> int:
    """Unmanaged memory (a module global) the worker cannot spill."""
    import shoal

    shoal._test_ballast = bytearray(nbytes)  # type: ignore[attr-defined]
    for i in range(0, nbytes, 4096):  # touch every page: it counts in RSS
        shoal._test_ballast[i] = 1  # type: ignore[attr-defined]
    return os.getpid()


def _release() -> None:
    import shoal

    shoal._test_ballast = None  # type: ignore[attr-defined]


def _max_spill(dask_worker: Any) -> int | None:
    return dask_worker.data.policy.limits.max_spill


def test_a_worker_past_its_pause_threshold_pauses_and_resumes(
    make_client: Callable[..., Client],
) -> None:
    # max-spill rides along (nothing here spills): the nanny hands dask's setting over.
    with dask.config.set({"distributed.worker.memory.terminate": False,
                          "distributed.worker.memory.max-spill": "1 MB"}):
        client = make_client(n_workers=1, memory_limit="600MB")
    assert list(client.run(_max_spill).values()) == [MB]
    (info,) = _workers(client).values()
    client.run(_hold, 600 * MB - info["memory_process"])  # past pause (480 MB)
    wait_for(lambda: next(iter(_workers(client).values()))["status"] == "paused", timeout=20)
    # Nothing to spill could end this pause: the worker says so, as dask's does.
    (logs,) = client.get_worker_logs().values()
    assert any("Unmanaged memory use is high" in text for _, text in logs)
    fut = client.submit(sum, [1, 2], pure=False)
    with pytest.raises(TimeoutError):
        fut.result(timeout=0.5)  # nothing starts while paused
    client.run(_release)
    assert fut.result(timeout=120) == 3
    wait_for(lambda: next(iter(_workers(client).values()))["status"] == "running", timeout=20)


def _fragment_heap(mib: int) -> None:
    """Leave ``mib`` MiB of freed malloc blocks resident under a live block: free() cannot
    give them back, only a trim of the heap can."""
    import ctypes
    import ctypes.util

    import shoal

    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(2**20) for _ in range(mib)]
    for b in blocks:
        ctypes.memset(b, 1, 2**20)
    shoal._test_pin = libc.malloc(2**20)  # type: ignore[attr-defined]  # at the top, after them
    for b in blocks:
        libc.free(b)


@pytest.mark.skipif(os.uname().sysname != "Linux", reason="malloc_trim is glibc's")
def test_freed_heap_memory_leaves_a_worker_past_its_spill_threshold(
    make_client: Callable[..., Client],
) -> None:
    with dask.config.set({"distributed.worker.memory.terminate": False}):
        client = make_client(n_workers=1, memory_limit="600MB")  # spill at 420 MB
    (info,) = _workers(client).values()
    client.run(_fragment_heap, (500 * MB - info["memory_process"]) // 2**20)
    wait_for(lambda: next(iter(_workers(client).values()))["memory_process"] < 300 * MB,
             timeout=20)
    # It may have paused while the blocks were still in use; it resumes once they are gone.
    wait_for(lambda: next(iter(_workers(client).values()))["status"] == "running", timeout=20)


def _spill_reads(dask_worker: Any) -> int:
    return int(dask_worker.data.read)


def _checksum(a: Any) -> tuple[int, int]:
    return int(a.nbytes), int(a[:: 1 << 20].sum())


def test_a_value_too_big_to_fit_is_streamed_from_its_file_to_a_peer(
    make_client: Callable[..., Client], tmp_path: Path
) -> None:
    np = pytest.importorskip("numpy")
    with dask.config.set({"distributed.worker.memory.terminate": False}):
        client = make_client(n_workers=2, memory_limit="300MB", local_directory=str(tmp_path))
    a, b = sorted(_workers(client))
    # 240 MB, over the 180 MB target: kept on disk from the start on worker a.
    big = client.submit(np.arange, 30 * MB, dtype="i8", workers=[a], pure=False)
    wait_for(lambda: _workers(client)[a]["memory_spilled"] >= 240 * MB, timeout=60)
    before = client.run(_spill_reads, workers=[a])[a]
    n = 30 * MB
    out = client.submit(_checksum, big, workers=[b], pure=False).result(timeout=120)
    assert out == (8 * n, sum(range(0, n, 1 << 20)))
    # Served from its file a chunk at a time: the serving worker never read it whole.
    assert client.run(_spill_reads, workers=[a])[a] - before < 10 * MB


def test_a_worker_past_its_terminate_threshold_is_restarted_by_its_nanny(
    make_client: Callable[..., Client],
) -> None:
    client = make_client(n_workers=1, memory_limit="600MB")  # terminate at 570 MB
    (info,) = _workers(client).values()
    pid = info["pid"]
    try:
        client.run(_hold, 600 * MB - info["memory_process"])
    except Exception as exc:  # the nanny may kill it before the answer leaves
        print("run ended with", type(exc).__name__, exc)
    wait_for(lambda: [w["pid"] for w in _workers(client).values()] not in ([], [pid]),
             timeout=30)
    assert client.submit(sum, [1, 2], pure=False).result(timeout=120) == 3
