"""The usage examples in dask.distributed's own docstrings, run against shoal.

Each test is one documented call (``future.result(timeout="1s")``, ``await Semaphore(...)``,
``client.set_metadata(["x", "y"], 123)``...) that behaved differently in shoal: it raised a
``TypeError`` or gave another result than the installed distributed gives for the same call.
They share the session's cluster.
"""

from __future__ import annotations

import asyncio

import pytest

import shoal
from shoal import Client, as_completed, wait

from ._helpers import gated

pytestmark = pytest.mark.integration


def inc(x: int) -> int:
    return x + 1


# --- timeouts as strings ("1s"), as dask's parse_timedelta takes them -------------------------


def test_timeouts_given_as_strings_wait_and_raise_timeout_error(client: Client, gate) -> None:
    fut = client.submit(gated, gate.path, 1, pure=False)
    for call in (lambda: fut.result(timeout="50ms"),
                 lambda: fut.exception(timeout="50ms"),
                 lambda: fut.traceback(timeout="50ms"),
                 lambda: wait([fut], timeout="50ms"),
                 lambda: list(as_completed([fut], timeout="50ms"))):
        with pytest.raises(TimeoutError):
            call()
    gate.open()
    assert fut.result(timeout="30s") == 1
    assert client.scatter(5, timeout="30s").result() == 5


# --- the primitives' asynchronous constructors and ``client`` ----------------------------------


def test_await_primitive_gives_it_back_and_client_property(client: Client) -> None:
    async def main() -> None:
        async with Client(client.scheduler_address, asynchronous=True,
                          set_as_default=False) as c:
            sem = await shoal.Semaphore(2, "parity-ex-sem", client=c)
            lock = await shoal.Lock("parity-ex-lock", client=c)
            assert isinstance(sem, shoal.Semaphore) and isinstance(lock, shoal.Lock)
            assert await sem.acquire() and await sem.release()
            queue = await shoal.Queue("parity-ex-q", client=c)
            event = await shoal.Event("parity-ex-e", client=c)
            assert (queue.client, event.client) == (c, c)
            assert shoal.Variable("parity-ex-v", client=c).client is c

    asyncio.run(main())
    assert shoal.Variable("parity-ex-v2").client is client  # the default client, as dask's
