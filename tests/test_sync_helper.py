"""dask's ``sync(loop, func, *args, callback_timeout=None, **kwargs)`` and
``CompatibleExecutor``: a loop in a thread of the test's own, no cluster."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from shoal import CompatibleExecutor, sync


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


async def _add(x: int, y: int = 0) -> tuple[int, str]:
    await asyncio.sleep(0)
    return x + y, threading.current_thread().name


async def _fail() -> None:
    raise KeyError("inside")


def test_sync_runs_the_coroutine_on_the_loop_and_returns_its_result(loop):
    total, thread = sync(loop, _add, 1, y=2)
    assert total == 3 and thread != threading.current_thread().name
    with pytest.raises(KeyError, match="inside"):
        sync(loop, _fail)


def test_sync_times_out_and_refuses_its_own_loop_thread(loop):
    with pytest.raises(TimeoutError, match=r"timed out after 0\.05 s"):
        sync(loop, asyncio.sleep, 30, callback_timeout="50ms")

    async def inside() -> None:
        sync(loop, _add, 1)

    with pytest.raises(RuntimeError, match="thread of running loop"):
        asyncio.run_coroutine_threadsafe(inside(), loop).result(10)
    closed = asyncio.new_event_loop()
    closed.close()
    with pytest.raises(RuntimeError, match="IOLoop is closed"):
        sync(closed, _add, 1)


def test_compatible_executor_points_at_get_executor_as_dask_does():
    with pytest.raises(Exception, match=r"Client.get_executor\(\)"):
        CompatibleExecutor()


@pytest.mark.parametrize("name", ["rpc", "connect"])
def test_dask_low_level_comm_names_say_what_to_use_instead(name):
    import shoal

    with pytest.raises(ImportError, match=f"shoal has no '{name}'.*Client"):
        exec(f"from shoal import {name}", {})
    with pytest.raises(ImportError, match="Client"):
        getattr(shoal, name)
    assert not hasattr(shoal, "no_such_name")  # other names: AttributeError, as before
