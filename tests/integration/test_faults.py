"""Issue 2, "Bad input and faults": unpicklable input, killed workers, garbage on the wire."""

from __future__ import annotations

import os
import random
import signal
import socket
import threading
import time

import dask
import pytest

from ._helpers import wait_for

pytestmark = pytest.mark.integration


def inc(x):
    return x + 1


def slow_inc(x):
    time.sleep(0.002)
    return x + 1


def _closure_over_a_lock():
    lock = threading.Lock()

    def uses_lock():
        return lock.locked()

    return uses_lock


def test_unpicklable_argument_raises_type_error_at_submit(client):
    with pytest.raises(TypeError):
        client.submit(inc, threading.Lock())
    assert client.submit(inc, 1, pure=False).result(timeout=10) == 2


def test_unpicklable_function_raises_type_error_at_submit(client):
    with pytest.raises(TypeError):
        client.submit(_closure_over_a_lock())
    assert client.submit(inc, 1, pure=False).result(timeout=10) == 2


def test_unpicklable_argument_error_names_the_object(client):
    with pytest.raises(TypeError, match=r"(?i)lock"):
        client.submit(inc, threading.Lock())


def test_unpicklable_function_error_names_the_function(client):
    with pytest.raises(TypeError, match="uses_lock"):
        client.submit(_closure_over_a_lock())


def test_sigkill_of_a_worker_during_a_map_still_gives_every_result(make_client):
    c = make_client(n_workers=2)
    futs = c.map(slow_inc, range(2_000))
    wait_for(lambda: sum(f.done() for f in futs) >= 100, timeout=60)
    pids = c.run(os.getpid)
    victim = sorted(pids.values())[0]
    os.kill(victim, signal.SIGKILL)

    assert c.gather(futs) == list(range(1, 2_001))

    # the nanny brings the worker back
    def two_fresh_workers():
        if len(c.scheduler_info()["workers"]) != 2:
            return False
        now = c.run(os.getpid)
        return len(now) == 2 and victim not in now.values()

    wait_for(two_fresh_workers, timeout=120)
    assert c.submit(inc, 1, pure=False).result(timeout=60) == 2


def test_losing_the_only_copy_of_scattered_data_gives_a_clear_error(make_client):
    c = make_client(n_workers=2)
    fut = c.scatter(41)
    [holder] = c.who_has([fut])[fut.key]
    os.kill(c.run(os.getpid)[holder], signal.SIGKILL)
    with pytest.raises(Exception) as info:
        fut.result(timeout=120)
    message = str(info.value)
    assert fut.key in message
    assert "lost" in message.lower()
    assert c.submit(inc, 1, pure=False).result(timeout=120) == 2


def _closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """Read (and drop) whatever the server sends until it closes the connection."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if sock.recv(65536) == b"":
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
    return False


@pytest.mark.parametrize(
    "payload",
    [
        random.Random(0).randbytes(4096),
        b"\xff" * 64,  # a frame header announcing an absurd length
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 4,
    ],
    ids=["random", "huge-length", "http"],
)
def test_garbage_on_the_scheduler_port_closes_that_connection_only(client, payload):
    host, port = client.cluster.scheduler_address.removeprefix("tcp://").rsplit(":", 1)
    workers = set(client.scheduler_info()["workers"])
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(payload)
        assert _closed_by_peer(sock, timeout=10)
    assert client.submit(inc, 1, pure=False).result(timeout=10) == 2
    assert set(client.scheduler_info()["workers"]) == workers


def _make_lock():
    return threading.Lock()


def _describe(x):
    return type(x).__name__


def test_a_result_that_cannot_be_sent_fails_its_dependents_with_a_clear_error(client):
    a, b = sorted(client.scheduler_info()["workers"])[:2]
    with dask.annotate(workers=[a]):
        lock = dask.delayed(_make_lock)(dask_key_name="unsendable-lock")
    with dask.annotate(workers=[b]):
        out = dask.delayed(_describe)(lock)
    with pytest.raises(TypeError, match=r"unsendable-lock.*cannot be sent to another process"):
        out.compute()
    assert client.submit(inc, 1, pure=False).result(timeout=10) == 2


def test_results_lost_with_a_worker_are_recomputed_from_lineage(make_client):
    import dask.array as da
    import numpy as np

    c = make_client(n_workers=2)
    x = c.persist(da.arange(40_000, chunks=1_000) * 2)
    futures = x.__dask_graph__().values()
    wait_for(lambda: all(f.done() for f in futures), timeout=120)
    who = c.who_has(list(futures))
    # Usually the chunks are spread over both workers; on a loaded machine one worker may
    # have computed them all (the tasks are tiny). Either way the victim holds chunks.
    victim_address = sorted(who[next(iter(futures)).key])[0]
    victim = c.run(os.getpid)[victim_address]
    os.kill(victim, signal.SIGKILL)

    # The chunks it held are gone with the worker; the scheduler recomputes them from their
    # tasks, and the sum is right.
    assert x.sum().compute() == (np.arange(40_000) * 2).sum()
    wait_for(lambda: all(f.status == "finished" for f in futures), timeout=120)
    assert victim_address not in {w for ws in c.who_has(list(futures)).values() for w in ws}
