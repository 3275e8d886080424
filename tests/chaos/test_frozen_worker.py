"""(b) SIGSTOP a worker that holds an input for longer than the fetch timeout: the
dependent finishes meanwhile (the input is recomputed, or fetched from another holder),
and after SIGCONT the cluster still computes."""

from __future__ import annotations

import os
import signal

import dask
import pytest

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

FETCH_TIMEOUT = "3s"  # dask's comm timeouts, for the worker processes
WORKER_TTL = "8s"  # silent this long, a worker is considered gone
FROZEN_FOR = 90.0  # far longer than both, even when a loaded machine slows the recovery


def make_input() -> bytes:
    return bytes(1000)


def measure(x: bytes) -> int:
    return len(x)


@pytest.mark.timeout(300)
def test_dependent_of_a_frozen_holder_finishes_while_it_is_frozen(
    chaos_cluster, monkeypatch
) -> None:
    monkeypatch.setenv("DASK_DISTRIBUTED__COMM__TIMEOUTS__TCP", FETCH_TIMEOUT)
    monkeypatch.setenv("DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT", FETCH_TIMEOUT)
    with dask.config.set({"distributed.scheduler.worker-ttl": WORKER_TTL,
                          "distributed.comm.timeouts.tcp": FETCH_TIMEOUT,
                          "distributed.comm.timeouts.connect": FETCH_TIMEOUT}):
        _cluster, client = chaos_cluster(n_workers=3)
    pids = client.run(os.getpid)
    first, second, reader = sorted(pids)
    # The input may live on either of two workers, never on the reader: once its holder
    # is frozen, it is recomputed on the other one (or found there) and fetched again.
    x = client.submit(make_input, workers=[first, second], pure=False)
    x.result(timeout=120)
    [holder] = client.who_has([x])[x.key]
    os.kill(pids[holder], signal.SIGSTOP)
    try:
        y = client.submit(measure, x, workers=[reader], pure=False)
        assert y.result(timeout=FROZEN_FOR) == 1000
    finally:
        os.kill(pids[holder], signal.SIGCONT)
    assert client.submit(measure, x, pure=False).result(timeout=120) == 1000
