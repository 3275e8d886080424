"""Fetching results from the workers that hold them (results too big to ride along with
their key-done message). Functions attached to Client."""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any

from shoal import _loop
from shoal.client._future import failure_of_state
from shoal.client._returned import load_for, may_hold_futures
from shoal.comm import Connection, connect
from shoal.comm._handshake import HandshakeError
from shoal.comm._tcp import TCPConnection, comm_timeout, wait_reply
from shoal.protocol._errors import error_to_exception
from shoal.protocol._messages import PROTOCOL_VERSION, Data, GetData, Hello, Message
from shoal.protocol._pieces import whole
from shoal.protocol._serialize import Serialized, costly_to_load, loads

if TYPE_CHECKING:
    from shoal.client._core import ClientCore as Client  # the protocol: never the facade


def fetch(self: Client, keys: list[Any], timeout: float | None = None) -> dict[Any, Any]:
    """Bring values of finished keys from the workers holding them."""
    return _loop.run_sync(fetch_async(self, keys), timeout)

async def fetch_async(self: Client, keys: list[Any]) -> dict[Any, Any]:
    """Fetch from the holders. Each key is asked of a holder that has not failed it yet; a
    holder that lacks the key or cannot be reached (refused, closed, or silent for
    ``distributed.comm.timeouts.tcp``) is reported to the scheduler, which drops that
    replica and recomputes the key or lists another copy. Keys without a holder are waited
    for while the scheduler recomputes them (or until it reports them failed, which is
    raised). A key whose listed holders keep failing for that timeout raises
    ``ConnectionError`` naming the key and its holders."""
    loop = asyncio.get_running_loop()
    limit = comm_timeout()
    out: dict[Any, Any] = {}
    todo = list(keys)
    delay = 0.005
    failed: dict[Any, set[str]] = {}  # key -> holders that failed it (since listed again)
    failing_since: dict[Any, float] = {}  # key -> when all its listed holders had failed
    reported: dict[Any, set[str]] = {}  # key -> holders reported lacking it (since listed)
    # Each key's state as the fetch began: a restart drops it from ``_states`` (settled
    # cancelled), and a cancelled or forgotten key is never held again, so waiting for a
    # holder of it would never end.
    states = {key: self._states.get(key) for key in keys}
    while todo:
        who = await self._request("who_has", keys=todo)
        by_worker: dict[str, list[Any]] = {}
        waiting = []
        now = loop.time()
        for key, holders in who:
            if not holders:  # being recomputed: any holder may serve it afresh
                failed.pop(key, None)
                failing_since.pop(key, None)
                reported.pop(key, None)
                waiting.append(key)
                continue
            bad = failed.get(key, set())
            fresh = [h for h in holders if h not in bad]
            if not fresh:  # all failed; the scheduler has not acted on our reports yet
                since = failing_since.setdefault(key, now)
                if now - since > limit:
                    raise ConnectionError(
                        f"could not fetch {key!r}: its holder(s) {', '.join(sorted(holders))} "
                        f"failed to deliver it for {limit:g} s (unreachable, frozen, or "
                        "missing it). Check those workers' logs, or raise "
                        "'distributed.comm.timeouts.tcp'."
                    )
                failed[key] = set()  # try them again after the backoff
                waiting.append(key)
                continue
            by_worker.setdefault(fresh[0], []).append(key)
        results = await asyncio.gather(
            *(_get_data(self, w, ks, limit) for w, ks in by_worker.items()), return_exceptions=True
        )
        todo = waiting
        lacking: list[tuple[Any, str]] = []
        for (w, ks), res in zip(by_worker.items(), results, strict=False):
            if isinstance(res, (HandshakeError, ValueError)):
                raise res  # refused, or no credentials for it: retrying will not help
            if isinstance(res, BaseException):
                if not isinstance(res, Exception):
                    raise res
                lacking.extend((k, w) for k in ks)
                continue
            for key, ser in res.items.items():
                out[key] = await _load(self, ser)
            for error in res.errors.values():
                raise error_to_exception(error)
            lacking.extend((k, w) for k in res.missing)
        for key, w in lacking:
            failed.setdefault(key, set()).add(w)
            todo.append(key)
        news = [[k, w] for k, w in lacking if w not in reported.get(k, ())]
        if news:
            for k, w in news:
                reported.setdefault(k, set()).add(w)
            await self._request("missing_data", pairs=news)
        for key in todo:
            st = states.get(key) or self._states.get(key)
            if st is not None and st.status in ("error", "cancelled"):
                raise failure_of_state(key, st)
        if todo:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)
    return out

async def _load(self: Client, ser: Serialized) -> Any:
    """Unpickle a fetched value (Futures in it become this client's); a big one in a
    thread, so the loop (shared with an in-process scheduler) keeps running meanwhile."""
    if not may_hold_futures(ser):
        load: Any = loads
        args: tuple[Any, ...] = (ser,)
    else:
        load, args = load_for, (self, loads, ser)
    if not costly_to_load(ser):
        return load(*args)
    return await asyncio.get_running_loop().run_in_executor(None, load, *args)

async def _get_data(self: Client, worker: str, keys: list[Any], timeout: float) -> Data:
    conn = self._worker_conns.get(worker)
    if conn is None or conn.closed:
        # A holder silent for ``timeout`` (comm.timeouts.tcp) has failed the fetch, however
        # long the client's own connect timeout: a frozen process still accepts the TCP
        # connection, then never answers the handshake.
        conn = await connect(worker, timeout=min(self._timeout or timeout, timeout),
                             security=self.security)
        conn.info["requests"] = set()
        conn.set_handler(functools.partial(_on_worker_message, self))
        conn.send(Hello("client", PROTOCOL_VERSION, self.id))
        self._worker_conns[worker] = conn
    assert isinstance(conn, TCPConnection)
    rid = next(self._request_ids)
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    self._requests[rid] = fut
    conn.info["requests"].add(rid)
    conn.send(GetData(rid, keys))
    try:
        result: Data = await wait_reply(conn, fut, timeout, f"{len(keys)} key(s)")
    finally:
        conn.info["requests"].discard(rid)
        self._requests.pop(rid, None)
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
            whole_msg = whole(conn.info, msg)
            if whole_msg is None:
                continue  # more pieces of this reply follow
            msg = whole_msg
            fut = self._requests.pop(msg.request_id, None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
