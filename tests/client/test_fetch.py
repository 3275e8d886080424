"""The client's fetch loop against scripted holders: real sockets on this host, a scripted
scheduler, no processes. Every fetch ends: data, another holder, recompute, or an error
naming the key and the worker."""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import socket
import threading
from collections.abc import Callable
from typing import Any

import dask
import pytest

from shoal.client._fetch import fetch_async
from shoal.comm import Connection, listen
from shoal.protocol._messages import Data, GetData, Message
from shoal.protocol._serialize import dumps

DEADLINE = 20.0


class ScriptedClient:
    """What fetch_async needs of a Client; ``who_has`` answers from a script."""

    def __init__(self, who_has: Callable[[int], list[str]]) -> None:
        self.id = "client-1"
        self._timeout = 5.0
        self.security = None
        self._request_ids = itertools.count(1)
        self._requests: dict[int, asyncio.Future[Any]] = {}
        self._worker_conns: dict[str, Connection] = {}
        self._states: dict[Any, Any] = {}
        self.reports: list[list[Any]] = []
        self._who_has = who_has
        self._round = 0

    async def _request(self, op: str, **args: Any) -> Any:
        if op == "who_has":
            self._round += 1
            return [[k, self._who_has(self._round)] for k in args["keys"]]
        assert op == "missing_data", op
        self.reports.extend(args["pairs"])
        return None

    def close(self) -> None:
        for conn in self._worker_conns.values():
            conn.close()


async def holder(values: dict[Any, Any]) -> tuple[str, asyncio.base_events.Server]:
    """A data server answering GetData with ``values`` (keys it lacks reported missing)."""

    def on_batch(conn: Connection, batch: list[Message] | None) -> None:
        for msg in batch or []:
            if isinstance(msg, GetData):
                items = {k: dumps(values[k]) for k in msg.keys if k in values}
                missing = [k for k in msg.keys if k not in values]
                conn.send(Data(msg.request_id, items, missing, {}))

    server = await listen("127.0.0.1", 0, lambda conn: conn.set_handler(on_batch))
    return f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}", server


def dead_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"tcp://127.0.0.1:{port}"  # nothing listens there any more


def run(coro: Any) -> Any:
    async def main() -> Any:
        return await asyncio.wait_for(coro, DEADLINE)

    return asyncio.run(main())


def test_unreachable_holder_is_reported_and_another_holder_serves_the_key() -> None:
    dead = dead_address()

    async def main() -> tuple[dict[Any, Any], list[list[Any]]]:
        good, server = await holder({"k": 42})
        client = ScriptedClient(lambda _round: [dead, good])  # the dead one listed first
        try:
            out = await fetch_async(client, ["k"])  # type: ignore[arg-type]
        finally:
            client.close()
            server.close()
        return out, client.reports

    out, reports = run(main())
    assert out == {"k": 42}
    assert reports == [["k", dead]]


def test_holder_lacking_the_key_is_reported_and_the_recomputed_key_is_fetched() -> None:
    async def main() -> tuple[dict[Any, Any], list[list[Any]], str]:
        stale, s1 = await holder({})
        fresh, s2 = await holder({"k": "v"})
        # the scheduler lists the stale holder until told, then recomputes k elsewhere
        client = ScriptedClient(lambda r: [stale] if r == 1 else ([] if r == 2 else [fresh]))
        try:
            out = await fetch_async(client, ["k"])  # type: ignore[arg-type]
        finally:
            client.close()
            s1.close()
            s2.close()
        return out, client.reports, stale

    out, reports, stale = run(main())
    assert out == {"k": "v"}
    assert reports == [["k", stale]]


def test_holders_that_keep_failing_end_the_fetch_with_an_error_naming_key_and_worker() -> None:
    dead = dead_address()

    async def main() -> None:
        client = ScriptedClient(lambda _round: [dead])  # the scheduler never drops it
        try:
            await fetch_async(client, ["the-key"])  # type: ignore[arg-type]
        finally:
            client.close()

    with (
        dask.config.set({"distributed.comm.timeouts.tcp": "1s"}),
        pytest.raises(ConnectionError, match=rf"'the-key'.*{dead}"),
    ):
        run(main())


def test_a_silent_holder_ends_the_fetch_after_the_comm_timeout() -> None:
    async def main() -> tuple[dict[Any, Any], list[list[Any]], str]:
        silent = await listen("127.0.0.1", 0, lambda conn: conn.set_handler(lambda c, b: None))
        silent_addr = f"tcp://127.0.0.1:{silent.sockets[0].getsockname()[1]}"
        good, server = await holder({"k": 7})
        client = ScriptedClient(lambda _round: [silent_addr, good])
        try:
            out = await fetch_async(client, ["k"])  # type: ignore[arg-type]
        finally:
            client.close()
            silent.close()
            server.close()
        return out, client.reports, silent_addr

    with dask.config.set({"distributed.comm.timeouts.tcp": "1s"}):
        out, reports, silent_addr = run(main())
    assert out == {"k": 7}
    assert reports == [["k", silent_addr]]


def _forgotten_while_fetched(how: str) -> None:
    """The key is fetched, has no holder (being recomputed, as the scheduler says of a
    key it no longer knows), and its future is then cancelled: by ``client.cancel`` (the
    state settles cancelled) or ``client.restart()`` (also dropped from ``_states``)."""
    from shoal.client._control import on_restarted
    from shoal.client._future import FutureState

    async def main() -> None:
        st = FutureState()
        st.status = "finished"  # its result was too big to come inline

        def who_has(round_: int) -> list[str]:
            if round_ == 3:
                if how == "restart":
                    on_restarted(client, "test")  # type: ignore[arg-type]
                else:
                    st.status = "cancelled"
            return []

        client = ScriptedClient(who_has)
        client._lock = threading.Lock()  # type: ignore[attr-defined]
        client._dead = set()  # type: ignore[attr-defined]
        client._states["k"] = st
        await fetch_async(client, ["k"])  # type: ignore[arg-type]

    with pytest.raises(concurrent.futures.CancelledError, match="'k'"):
        run(main())


def test_a_fetch_whose_future_is_cancelled_meanwhile_ends_with_cancelled_error() -> None:
    _forgotten_while_fetched("cancel")


def test_a_fetch_cut_by_a_restart_ends_with_cancelled_error() -> None:
    _forgotten_while_fetched("restart")
