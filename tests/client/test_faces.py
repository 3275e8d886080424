"""The two faces of a client operation (``_faces``) and the coroutine that waits for future
states (``_future.settled``), without a cluster: a stand-in client with ``sync``."""

from __future__ import annotations

import asyncio
import inspect
import threading
from typing import Any

import pytest

from shoal import _loop
from shoal.client._faces import Ready, answer, as_coroutine, queued, two_faced
from shoal.client._future import FutureState, settled


class StandIn:
    """What ``two_faced`` and ``queued`` use of a client: ``sync`` and ``asynchronous``."""

    def __init__(self, asynchronous: bool) -> None:
        self.asynchronous = asynchronous
        self.queued: list[Any] = []

    def sync(self, func: Any, *args: Any, asynchronous: bool | None = None,
             callback_timeout: float | None = None, **kwargs: Any) -> Any:
        if asynchronous is None:
            asynchronous = self.asynchronous
        if asynchronous:
            return _loop.run_async(func(*args, **kwargs), callback_timeout)
        return _loop.run_sync(func(*args, **kwargs), callback_timeout)


async def _where(client: StandIn, n: int, *, scale: int = 1) -> tuple[int, str]:
    """Doc of the operation."""
    await asyncio.sleep(0)
    return n * scale, threading.current_thread().name


def _queue(client: StandIn, msg: str) -> int:
    client.queued.append(msg)
    return len(client.queued)


StandIn.where = two_faced(_where)  # type: ignore[attr-defined]
StandIn.queue = queued(_queue)  # type: ignore[attr-defined]


def test_two_faced_blocks_a_synchronous_caller_and_runs_on_shoals_loop() -> None:
    assert StandIn(False).where(2, scale=3) == (6, "shoal-loop")  # type: ignore[attr-defined]


def test_two_faced_gives_an_asynchronous_caller_an_awaitable() -> None:
    async def main() -> Any:
        return await StandIn(True).where(4)  # type: ignore[attr-defined]

    assert asyncio.run(main()) == (4, "shoal-loop")


def test_two_faced_takes_a_per_call_asynchronous_override() -> None:
    async def main() -> Any:
        return await StandIn(False).where(5, asynchronous=True)  # type: ignore[attr-defined]

    assert asyncio.run(main()) == (5, "shoal-loop")
    assert StandIn(True).where(1, asynchronous=False) == (1, "shoal-loop")  # type: ignore[attr-defined]


def test_two_faced_keeps_the_operations_name_and_doc() -> None:
    method = StandIn.where  # type: ignore[attr-defined]
    assert method.__name__ == "_where" and method.__doc__ == "Doc of the operation."
    assert "scale" in inspect.signature(method).parameters


def test_queued_runs_at_once_and_answers_each_face() -> None:
    sync_client, async_client = StandIn(False), StandIn(True)
    assert sync_client.queue("a") == 1  # type: ignore[attr-defined]
    ready = async_client.queue("b")  # type: ignore[attr-defined]
    assert async_client.queued == ["b"]  # done before anything awaits it
    assert isinstance(ready, Ready)

    async def main() -> Any:
        return await ready

    assert asyncio.run(main()) == 1


def test_ready_needs_no_running_loop_and_can_be_dropped() -> None:
    assert answer(StandIn(True), 5).value == 5
    assert answer(StandIn(False), 5) == 5
    Ready(1)  # never awaited: no "coroutine was never awaited" warning to leak


def test_settled_returns_at_once_for_settled_states() -> None:
    st = FutureState()
    st.settle("finished")
    asyncio.run(settled([st]))


def test_settled_waits_for_every_state_settled_from_another_thread() -> None:
    a, b = FutureState(), FutureState()

    async def main() -> list[str]:
        waiting = asyncio.ensure_future(settled([a, b, a]))
        await asyncio.sleep(0)
        threading.Thread(target=a.settle, args=("finished",)).start()
        await asyncio.sleep(0.01)
        seen = [a.status, "done" if waiting.done() else "waiting"]
        threading.Thread(target=b.settle, args=("error",)).start()
        await asyncio.wait_for(waiting, 10)
        return seen

    assert asyncio.run(main()) == ["finished", "waiting"]


def test_settled_with_first_ends_at_the_first_state_it_accepts() -> None:
    a, b = FutureState(), FutureState()

    async def main() -> None:
        waiting = asyncio.ensure_future(settled([a, b], first=lambda st: st.status == "error"))
        await asyncio.sleep(0)
        b.settle("error")
        await asyncio.wait_for(waiting, 10)

    asyncio.run(main())
    assert a.status == "pending"


def test_cancelling_settled_leaves_the_state_usable() -> None:
    st = FutureState()

    async def main() -> None:
        waiting = asyncio.ensure_future(settled([st]))
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    asyncio.run(main())
    assert st.callbacks == []  # the cancelled waiter left nothing behind
    st.settle("finished")
    assert st.done()


def test_as_coroutine_takes_coroutines_other_awaitables_and_values() -> None:
    async def two() -> int:
        return 2

    assert _loop.run_sync(as_coroutine(two()), 5) == 2
    assert _loop.run_sync(as_coroutine(Ready(3)), 5) == 3
    assert _loop.run_sync(as_coroutine(4), 5) == 4
