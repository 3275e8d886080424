"""Issue 9, "Fetches that never end": every fetch ends with the data, another holder, a
recompute, or a clear error naming the key and the worker."""

from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor

import dask
import pytest

from shoal import wait

from ._helpers import gated, scheduler_tasks, wait_for

pytestmark = pytest.mark.integration


def _refuse_to_load() -> object:
    raise ValueError("this value refuses to be unpickled")


class Unloadable:
    """Pickles fine; unpickling it fails (as a value whose class a worker lacks would)."""

    def __reduce__(self):
        return (_refuse_to_load, ())


def _typename(x: object) -> str:
    return type(x).__name__


def _payload(n: int) -> bytes:
    return b"x" * n


def test_an_input_that_cannot_be_loaded_fails_its_dependent_instead_of_hanging(client):
    a, b = sorted(client.scheduler_info()["workers"])[:2]
    x = client.submit(Unloadable, workers=[a], pure=False)
    wait([x], timeout=10)
    y = client.submit(_typename, x, workers=[b], pure=False)
    with pytest.raises(TypeError, match=r"fetched from .* cannot be loaded.*refuses"):
        y.result(timeout=30)
    assert client.submit(len, "ok", workers=[b], pure=False).result(timeout=10) == 2


def test_a_fetch_from_a_frozen_worker_ends_and_the_computation_finishes(make_client):
    # The nanny reads these in this process and hands them to its workers (an environment
    # variable set now would come too late for dask's config, already loaded here).
    with dask.config.set({"distributed.comm.timeouts.tcp": "2s",
                          "distributed.comm.timeouts.connect": "2s"}):
        c = make_client(n_workers=2)
    a, b = sorted(c.scheduler_info()["workers"])
    x = c.submit(_payload, 300_000, workers=[a], pure=False)
    wait([x], timeout=60)
    frozen = c.run(os.getpid)[a]
    os.kill(frozen, signal.SIGSTOP)
    try:
        y = c.submit(len, x, workers=[b], pure=False)
        # b's fetch from the frozen a ends; b names a as the holder that failed it
        wait_for(lambda: a not in c.who_has([x]).get(x.key, ()), timeout=120)
    finally:
        os.kill(frozen, signal.SIGCONT)
    assert y.result(timeout=60) == 300_000


def test_a_client_fetch_from_a_frozen_holder_ends_and_the_key_is_recomputed(make_client):
    c = make_client(n_workers=1)
    (w,) = c.scheduler_info()["workers"]
    x = c.submit(_payload, 300_000, pure=False)  # too big to ride along: fetched from w
    wait([x], timeout=60)
    frozen = c.run(os.getpid)[w]
    with dask.config.set({"distributed.comm.timeouts.tcp": "2s"}), ThreadPoolExecutor(1) as pool:
        os.kill(frozen, signal.SIGSTOP)
        try:
            result = pool.submit(x.result, 60)
            # the client gives up on the silent holder and reports it; the scheduler drops
            # that replica and recomputes x
            wait_for(lambda: w not in c.who_has([x]).get(x.key, ()), timeout=120)
        finally:
            os.kill(frozen, signal.SIGCONT)
        assert result.result(timeout=60) == b"x" * 300_000


def _inc(x: int) -> int:
    return x + 1


def _dec(x: int) -> int:
    return x - 1


def test_a_task_freed_while_queued_and_sent_back_runs_with_its_inputs(make_client, gate):
    """t waits in w1's queue behind a gated task; t and its input a (w1's own result) are
    released, a is recomputed on w2 and t sent to w1 again. w1 revives the queued t, which
    must still find a (it failed with KeyError: a had been dropped)."""
    # Tasks pinned with workers= are sent while their worker has a free slot, or while the
    # tasks it runs are expected to end soon. Neither the blocker's prefix nor t's is ever
    # measured before t is sent (a's key has a prefix of its own), so an unknown prefix
    # assumed short sends t to w1 to queue behind the blocker, however slow the machine.
    with dask.config.set({"distributed.scheduler.unknown-task-duration": "1ms"}):
        c = make_client(n_workers=2)
    w1, w2 = sorted(c.scheduler_info()["workers"])
    a = c.submit(_inc, 1, key="revive_a", workers=[w1])
    wait([a], timeout=60)
    blocker = c.submit(gated, gate.path, 0, workers=[w1], pure=False)
    t = c.submit(_dec, a, key="revive_t", workers=[w1])
    wait_for(lambda: getattr(scheduler_tasks(c).get("revive_t"), "state", None) == "processing")
    del a, t
    wait_for(lambda: not {"revive_a", "revive_t"} & set(scheduler_tasks(c)), timeout=60)
    a = c.submit(_inc, 1, key="revive_a", workers=[w2])
    wait([a], timeout=60)
    t = c.submit(_dec, a, key="revive_t", workers=[w1])
    wait_for(lambda: getattr(scheduler_tasks(c).get("revive_t"), "state", None) == "processing")
    c.run(os.getpid, workers=[w1])  # w1 has handled everything sent before: t is revived
    gate.open()
    assert t.result(timeout=120) == 1
    assert blocker.result(timeout=120) == 0


def test_a_value_its_only_worker_cannot_load_ends_instead_of_livelocking(make_client):
    """One worker that cannot load a scattered value. The scheduler used to list the worker
    as holding it; the worker then reported the input missing without naming a holder, and
    the scheduler sent the dependent straight back, forever. Now the scatter itself fails
    with the worker's error (the store is acknowledged), a dependent ends, and the worker
    keeps serving (the livelock's own logic is pinned by the pure WorkerState tests)."""
    c = make_client(n_workers=1)
    with pytest.raises(Exception) as info:
        c.scatter(Unloadable(), timeout=30)
    assert not isinstance(info.value, TimeoutError), info.value
    assert c.submit(_typename, 1, pure=False).result(timeout=60) == "int"
