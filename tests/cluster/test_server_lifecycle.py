"""The life the public Scheduler/Worker/Nanny share (``ServerHandle``), on a fake server:
one start, one close, ``finished()``, and what a failed or cancelled start leaves (nothing).
The user's loop is ``asyncio.run``'s; the server side runs on shoal's loop thread."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shoal.cluster._server_lifecycle import ServerHandle

DEADLINE = 30.0


class Fake(ServerHandle):
    """A server whose start waits for ``go`` (or fails with ``fail``), and which records
    its closes; ``end()`` makes it close by itself."""

    _kind = "Fake"

    def __init__(self, fail: BaseException | None = None, hang: bool = False) -> None:
        super().__init__()
        self.fail = fail
        self.hang = hang
        self.closes = 0
        self.events: list[str] = []
        self._ended = asyncio.Event()

    async def _start_server(self) -> None:
        self._server = object()  # made before the start can fail, as the real ones do
        self.events.append("start")
        if self.hang:
            await asyncio.Event().wait()  # ends: cancelled (the test's point)
        if self.fail is not None:
            raise self.fail

    async def _close_server(self, timeout: float | None) -> None:
        self.closes += 1
        self.events.append("close")

    async def _server_ended(self) -> None:
        await self._ended.wait()  # ends: end(), or cancelled by finished()

    def end(self) -> None:
        from shoal import _loop

        _loop.call_soon(self._ended.set)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, DEADLINE))


def test_await_starts_once_and_close_closes_once() -> None:
    async def main() -> None:
        f = Fake()
        assert f.status == "init"
        assert await f is f
        assert await f is f
        assert f.status == "running" and f.events == ["start"]
        await asyncio.gather(f.close(), f.close())
        await f.close()
        assert f.status == "closed" and f.closes == 1

    run(main())


def test_async_with_closes_on_the_way_out_even_after_an_error() -> None:
    async def main() -> Fake:
        f = Fake()
        with pytest.raises(KeyError):
            async with f:
                raise KeyError("user code failed")
        return f

    f = run(main())
    assert f.status == "closed" and f.closes == 1


def test_a_failed_start_closes_what_it_made_and_raises_its_error() -> None:
    async def main() -> Fake:
        f = Fake(fail=OSError("port in use"))
        with pytest.raises(OSError, match="port in use"):
            await f
        with pytest.raises(RuntimeError, match="cannot start again"):
            await f
        return f

    f = run(main())
    assert f.status == "failed" and f.events == ["start", "close"]


def test_a_cancelled_start_closes_what_it_made() -> None:
    async def main() -> Fake:
        f = Fake(hang=True)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(f, 0.2)
        await f.finished()  # returns once that close has finished
        return f

    f = run(main())
    assert f.status == "failed" and f.events == ["start", "close"]


def test_close_during_the_start_cancels_it() -> None:
    async def main() -> tuple[Fake, list[BaseException | None]]:
        f = Fake(hang=True)
        starting = asyncio.ensure_future(_await(f))
        while "start" not in f.events:  # ends: the start runs on shoal's loop at once
            await asyncio.sleep(0.01)
        await f.close()
        outcome = await asyncio.gather(starting, return_exceptions=True)
        return f, outcome

    f, outcome = run(main())
    assert f.closes == 1 and f.status in ("closed", "failed")
    assert isinstance(outcome[0], RuntimeError)
    assert "closed before it had started" in str(outcome[0])


async def _await(f: Fake) -> Fake:
    result: Fake = await f
    return result


def test_finished_returns_when_the_server_ends_by_itself_and_closes_it() -> None:
    async def main() -> Fake:
        f = await Fake()
        waiting = asyncio.ensure_future(f.finished())
        await asyncio.sleep(0.05)
        assert not waiting.done()  # still running: finished() waits
        f.end()
        await asyncio.wait_for(waiting, DEADLINE)
        return f

    f = run(main())
    assert f.status == "closed" and f.closes == 1


def test_finished_returns_when_someone_closes_it() -> None:
    async def main() -> Fake:
        f = await Fake()
        waiting = asyncio.ensure_future(f.finished())
        await f.close()
        await asyncio.wait_for(waiting, DEADLINE)
        return f

    f = run(main())
    assert f.status == "closed" and f.closes == 1


def test_cancelling_finished_leaves_the_server_running() -> None:
    async def main() -> Fake:
        f = await Fake()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(f.finished(), 0.1)
        assert f.status == "running"
        await f.close()
        return f

    f = run(main())
    assert f.closes == 1
