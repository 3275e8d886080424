"""The worker's actor host (the shell around the actor book): calls run on its one actor
thread and every call gets an answer, also when the actor or the worker goes away.
An event loop and threads, but no sockets or processes: the connection is a fake."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from shoal.protocol._errors import error_to_exception
from shoal.protocol._messages import ActorCall, ActorResult
from shoal.protocol._serialize import dumps, loads
from shoal.worker._actors import ActorHost

W = "tcp://127.0.0.1:4001"


class Box:
    def __init__(self) -> None:
        self.n = 0
        self.release = threading.Event()

    def add(self, k: int) -> int:
        self.n += k
        return self.n

    def block(self) -> str:
        assert self.release.wait(10)
        return "released"

    def exit(self) -> None:
        raise SystemExit(3)

    def thread(self) -> str:
        return threading.current_thread().name


class FakeConnection:
    def __init__(self) -> None:
        self.answers: dict[int, ActorResult] = {}
        self.changed = asyncio.Event()

    def send(self, msg: Any) -> None:
        assert isinstance(msg, ActorResult)
        self.answers[msg.request_id] = msg
        self.changed.set()

    async def answer(self, request_id: int) -> Any:
        async with asyncio.timeout(10):
            while request_id not in self.answers:
                self.changed.clear()
                await self.changed.wait()
        msg = self.answers[request_id]
        return loads(msg.value) if msg.ok else error_to_exception(msg.value)


def call(rid: int, key: str, name: str, *args: Any) -> ActorCall:
    return ActorCall(rid, key, name, dumps((args, {})))


def run(scenario: Any) -> Any:
    async def main() -> Any:
        host = ActorHost(W, asyncio.get_running_loop())
        try:
            return await scenario(host, FakeConnection())
        finally:
            host.close()

    return asyncio.run(main())


def adopt(host: ActorHost, key: str, obj: Any) -> None:
    host.adopt(key, obj)  # tells the book on the loop, soon


def test_calls_run_on_the_actor_thread_in_order_and_keep_state() -> None:
    async def scenario(host: ActorHost, conn: FakeConnection) -> list[Any]:
        adopt(host, "box", Box())
        await asyncio.sleep(0)
        for rid in (1, 2, 3):
            host.on_call(conn, call(rid, "box", "add", rid))  # type: ignore[arg-type]
        host.on_call(conn, call(4, "box", "thread"))  # type: ignore[arg-type]
        host.on_call(conn, ActorCall(5, "box", "n", None))  # type: ignore[arg-type]
        return [await conn.answer(r) for r in (1, 2, 3, 4, 5)]

    assert run(scenario) == [1, 3, 6, "shoal-actor", 6]


def test_a_call_to_an_unknown_actor_is_answered_with_an_error() -> None:
    async def scenario(host: ActorHost, conn: FakeConnection) -> Any:
        host.on_call(conn, call(1, "nope", "add", 1))  # type: ignore[arg-type]
        return await conn.answer(1)

    exc = run(scenario)
    assert isinstance(exc, RuntimeError) and "'nope'" in str(exc) and W in str(exc)


def test_a_method_raising_system_exit_is_an_error_and_the_thread_lives_on() -> None:
    async def scenario(host: ActorHost, conn: FakeConnection) -> list[Any]:
        adopt(host, "box", Box())
        await asyncio.sleep(0)
        host.on_call(conn, call(1, "box", "exit"))  # type: ignore[arg-type]
        host.on_call(conn, call(2, "box", "add", 5))  # type: ignore[arg-type]
        return [await conn.answer(1), await conn.answer(2)]

    first, second = run(scenario)
    assert isinstance(first, SystemExit) and second == 5


def test_releasing_an_actor_answers_its_waiting_calls_at_once() -> None:
    box = Box()

    async def scenario(host: ActorHost, conn: FakeConnection) -> list[Any]:
        adopt(host, "box", box)
        await asyncio.sleep(0)
        host.on_call(conn, call(1, "box", "block"))  # type: ignore[arg-type]
        host.on_call(conn, call(2, "box", "add", 1))  # type: ignore[arg-type]
        host.release(["box"])
        answers = [await conn.answer(1), await conn.answer(2)]
        box.release.set()
        return answers

    answers = run(scenario)
    assert all(isinstance(a, RuntimeError) and "released" in str(a) for a in answers)


def test_calls_after_the_worker_closed_are_refused() -> None:
    async def scenario(host: ActorHost, conn: FakeConnection) -> Any:
        adopt(host, "box", Box())
        await asyncio.sleep(0)
        host.close()
        host.on_call(conn, call(1, "box", "add", 1))  # type: ignore[arg-type]
        return await conn.answer(1)

    exc = run(scenario)
    assert isinstance(exc, RuntimeError) and "closing" in str(exc)


def test_an_unpicklable_result_is_an_error_naming_the_method() -> None:
    class Holder:
        def lock(self) -> Any:
            return threading.Lock()

    async def scenario(host: ActorHost, conn: FakeConnection) -> Any:
        adopt(host, "h", Holder())
        await asyncio.sleep(0)
        host.on_call(conn, call(1, "h", "lock"))  # type: ignore[arg-type]
        return await conn.answer(1)

    exc = run(scenario)
    assert isinstance(exc, TypeError)
    assert "lock of actor 'h'" in str(exc) and "cannot be sent" in str(exc)


def test_async_methods_run_on_the_loop() -> None:
    class Async:
        async def ping(self, x: int) -> int:
            await asyncio.sleep(0)
            return x + 1

    async def scenario(host: ActorHost, conn: FakeConnection) -> Any:
        adopt(host, "a", Async())
        await asyncio.sleep(0)
        host.on_call(conn, call(1, "a", "ping", 41))  # type: ignore[arg-type]
        return await conn.answer(1)

    assert run(scenario) == 42
