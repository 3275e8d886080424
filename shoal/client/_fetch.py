"""Fetching results from the workers that hold them (results too big to ride along with
their key-done message). Functions attached to Client."""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any

from shoal import _loop
from shoal.comm import Connection, connect
from shoal.comm._handshake import HandshakeError
from shoal.protocol._errors import error_to_exception
from shoal.protocol._messages import PROTOCOL_VERSION, Data, GetData, Hello, Message
from shoal.protocol._serialize import loads

if TYPE_CHECKING:
    from shoal.client._client import Client


def fetch(self: Client, keys: list[Any], timeout: float | None = None) -> dict[Any, Any]:
    """Bring values of finished keys from the workers holding them."""
    return _loop.run_sync(fetch_async(self, keys), timeout)

async def fetch_async(self: Client, keys: list[Any]) -> dict[Any, Any]:
    """Fetch from the holders; keys whose holder died are waited for while the scheduler
    recomputes them (or until it reports them failed, which is raised)."""
    out: dict[Any, Any] = {}
    todo = list(keys)
    delay = 0.005
    while todo:
        who = await self._request("who_has", keys=todo)
        by_worker: dict[str, list[Any]] = {}
        waiting = []
        for key, holders in who:
            if holders:
                by_worker.setdefault(holders[0], []).append(key)
            else:
                waiting.append(key)
        results = await asyncio.gather(
            *(_get_data(self, w, ks) for w, ks in by_worker.items()), return_exceptions=True
        )
        todo = waiting
        for (_w, ks), res in zip(by_worker.items(), results, strict=False):
            if isinstance(res, (HandshakeError, ValueError)):
                raise res  # refused, or no credentials for it: retrying will not help
            if isinstance(res, BaseException):
                todo.extend(ks)
                continue
            for key, ser in res.items.items():
                out[key] = loads(ser)
            for error in res.errors.values():
                raise error_to_exception(error)
            todo.extend(res.missing)
        for key in todo:
            st = self._states.get(key)
            if st is not None and st.status == "error" and st.error is not None:
                raise error_to_exception(st.error)
        if todo:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)
    return out

async def _get_data(self: Client, worker: str, keys: list[Any]) -> Data:
    conn = self._worker_conns.get(worker)
    if conn is None or conn.closed:
        conn = await connect(worker, timeout=self._timeout, security=self.security)
        conn.info["requests"] = set()
        conn.set_handler(functools.partial(_on_worker_message, self))
        conn.send(Hello("client", PROTOCOL_VERSION, self.id))
        self._worker_conns[worker] = conn
    rid = next(self._request_ids)
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    self._requests[rid] = fut
    conn.info["requests"].add(rid)
    conn.send(GetData(rid, keys))
    try:
        result: Data = await fut
    finally:
        conn.info["requests"].discard(rid)
    return result

def _on_worker_message(self: Client, conn: Connection, batch: list[Message] | None) -> None:
    if batch is None:
        for rid in list(conn.info.get("requests", ())):
            fut = self._requests.pop(rid, None)
            if fut is not None and not fut.done():
                fut.set_exception(ConnectionError(f"worker {conn.peer} went away"))
        return
    for msg in batch:
        if isinstance(msg, Data):
            if msg.request_id not in conn.info.get("requests", ()):
                continue  # not a request sent on this connection: a peer cannot answer it
            fut = self._requests.pop(msg.request_id, None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
