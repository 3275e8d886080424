"""Fetching task inputs from peers: one connection per peer and one request at a time to
each (dask's gather rule: the keys asked for meanwhile go together in the next request, at
most ``distributed.worker.transfer.message-bytes-limit`` of them), at most
``distributed.worker.connections.outgoing`` requests at once, each bounded by the fetch
timeout and, under a memory limit, by the transfer budget. Every fetch ends by telling the
state machine (``FetchDone`` or ``FetchFailed``)."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from typing import Any

from shoal.comm import connect
from shoal.comm._tcp import TCPConnection, wait_reply
from shoal.protocol._messages import PROTOCOL_VERSION, Data, GetData, Hello
from shoal.worker._execute import unpickle
from shoal.worker._state import Fetch, FetchDone, FetchFailed
from shoal.worker._worker_base import WorkerBase

logger = logging.getLogger("shoal.worker")


class FetchingMixin(WorkerBase):
    """Fetching keys from the peers holding them."""

    async def _peer(self, address: str) -> TCPConnection:
        conn = self._peers.get(address)
        if conn is not None and not conn.closed:
            return conn
        lock = self._peer_lock.setdefault(address, asyncio.Lock())
        async with lock:
            conn = self._peers.get(address)
            if conn is not None and not conn.closed:
                return conn
            # dask's connect timeout, but a peer silent for fetch_timeout (comm.timeouts.tcp)
            # has failed: a frozen one accepts the TCP connection, then never answers.
            limit = min(self.connect_timeout, self.fetch_timeout)
            conn = await connect(address, timeout=limit, security=self.security, role="worker")
            conn.set_handler(self._on_peer_message)
            conn.send(Hello("peer", PROTOCOL_VERSION, self.address))
            self._peers[address] = conn
            return conn

    def _queue_fetch(self, cmd: Fetch) -> None:
        """Ask ``cmd.peer`` for ``cmd.keys``: at once if no request to that peer is under
        way, else together with the other keys asked for meanwhile, when it ends. Many
        requests to one peer at once made every input of every task assigned here arrive
        together, before any of those tasks could run and release theirs (a shuffle's
        joins held all their pieces at once: benchmarks/RESULTS.md, "where the peak comes
        from")."""
        pending = self._fetch_queues.get(cmd.peer)
        if pending is not None:  # its runner takes these next
            pending[0].extend(cmd.keys)
            pending[1].update(cmd.sizes)
            return
        pending = self._fetch_queues[cmd.peer] = (deque(cmd.keys), dict(cmd.sizes))
        self._spawn(self._fetch_from(cmd.peer, pending))

    async def _fetch_from(self, peer: str, pending: tuple[deque[Any], dict[Any, int]]) -> None:
        """The requests to ``peer``, one after another, until none is pending. Each takes
        the keys in the order asked, at most :func:`request_limit` known bytes of them (one
        key in any case)."""
        keys, sizes = pending
        limit = request_limit(self.message_bytes_limit, self._transfer_budget)
        try:
            while keys:
                batch, total = next_request(keys, sizes, limit)
                if not await self._fetch_within_budget(peer, batch, total):
                    # Unreachable or silent: the keys waiting their turn fail with it
                    # now, not each after its own timeout against the same peer.
                    rest = list(keys)
                    keys.clear()
                    sizes.clear()
                    if rest and self.state is not None:
                        self._carry_out(self.state.handle(FetchFailed(peer, rest),
                                                          now=time.time()))
        finally:
            if self._fetch_queues.get(peer) is pending:
                del self._fetch_queues[peer]

    async def _fetch_within_budget(self, peer: str, keys: list[Any], nbytes: int) -> bool:
        """Without a memory limit, the fetch at once. Under one, once the bytes in flight
        leave room for its ``nbytes`` within the transfer budget (dask's
        ``distributed.worker.memory.transfer``, 10% of the limit), or none are in flight:
        values arriving are memory before they can be spilled. False when the peer could
        not be reached or answered nothing (:meth:`_fetch`)."""
        budget = self._transfer_budget
        if not budget:
            return await self._fetch(peer, keys)
        room = self._transfer_room
        if room is None:
            room = self._transfer_room = asyncio.Condition()
        async with room:  # woken by each fetch that ends; every fetch has a deadline
            await room.wait_for(functools.partial(self._fits_in_flight, nbytes, budget))
            self._in_flight_bytes += nbytes
        try:
            return await self._fetch(peer, keys)
        finally:
            async with room:
                self._in_flight_bytes -= nbytes
                room.notify_all()

    def _fits_in_flight(self, nbytes: int, budget: int) -> bool:
        return self._in_flight_bytes == 0 or self._in_flight_bytes + nbytes <= budget

    async def _fetch(self, peer: str, keys: list[Any]) -> bool:
        """Fetch ``keys`` from ``peer``. Always ends by telling the state machine: the data
        (FetchDone), or FetchFailed when the peer is unreachable, closes the connection, or
        sends nothing for ``fetch_timeout`` seconds (frozen, or powered off); False then. At most
        ``distributed.worker.connections.outgoing`` fetches run at once; the others wait
        their turn (each of those waits ends when a running fetch ends, which has its own)."""
        assert self.state is not None
        if self._fetch_slots is None:
            self._fetch_slots = asyncio.Semaphore(self.connection_limits[0])
        start = time.time()
        try:
            async with self._fetch_slots:
                reply = await self._get_data(peer, keys)
            got: dict[Any, int] = {}
            errors = dict(reply.errors)
            from shoal.protocol._sizeof import nbytes

            for key, ser in reply.items.items():
                try:
                    value = unpickle(ser)
                except Exception as exc:  # fetching it again would fail the same way
                    errors[key] = self._unloadable(key, peer, exc)
                    continue
                self.data[key] = value
                got[key] = nbytes(value)
            events: list[Any] = [FetchDone(peer, got, list(reply.missing), start, time.time(), errors)]
        except (OSError, ConnectionError) as exc:
            logger.warning("worker %s could not fetch %d keys from %s: %s", self.address,
                           len(keys), peer, exc)
            events = [FetchFailed(peer, keys)]
        except Exception:
            logger.exception("worker %s: fetching %d keys from %s failed", self.address,
                             len(keys), peer)
            events = [FetchFailed(peer, keys)]
        self._carry_out(self.state.handle(*events, now=time.time()))
        return type(events[0]) is FetchDone

    async def _get_data(self, peer: str, keys: list[Any]) -> Data:
        conn = await self._peer(peer)
        rid = next(self._ids)
        fut: asyncio.Future[Data] = asyncio.get_running_loop().create_future()
        # Matched on this connection only: a peer cannot answer another's fetch.
        requests = conn.info.setdefault("requests", {})
        requests[rid] = fut
        conn.send(GetData(rid, keys))
        try:
            reply: Data = await wait_reply(conn, fut, self.fetch_timeout, f"{len(keys)} key(s)")
        finally:
            requests.pop(rid, None)
        return reply

    def _unloadable(self, key: Any, peer: str, exc: BaseException) -> dict[str, Any]:
        from shoal.protocol._errors import exception_to_error

        err = TypeError(
            f"input {key!r} fetched from {peer} cannot be loaded on worker {self.address}: "
            f"{type(exc).__name__}: {exc}. Install the same packages (and versions) on every "
            "worker."
        )
        return exception_to_error(err, exc.__traceback__, key, self.address, time.time())


# Known bytes asked for in one request, at most: each request's values exist two or three
# times while it travels (pickled at the peer, as frames here, then unpickled), and the
# tasks needing them wait for the whole of it. In the shuffle benchmark, 8 MiB requests
# left the fuller worker 199-233 MB of RSS beside its data at its peak against 225-285 MB
# with dask's 50 MB (benchmarks/RESULTS.md, issue 12), in the same wall time within noise.
REQUEST_BYTES = 8 * 2**20


def request_limit(message_bytes_limit: int, transfer_budget: int) -> int:
    """Known bytes one request may ask for: dask's ``transfer.message-bytes-limit``, at
    most :data:`REQUEST_BYTES`, and under a memory limit at most the transfer budget."""
    limit = min(message_bytes_limit, REQUEST_BYTES)
    if transfer_budget:
        limit = min(limit, transfer_budget)
    return limit


def next_request(keys: deque[Any], sizes: dict[Any, int], limit: int) -> tuple[list[Any], int]:
    """Take the next request's keys off the front of ``keys``: in order, at most ``limit``
    known bytes of them (``sizes``; a key bigger than that alone), and their total. Their
    sizes leave ``sizes``."""
    batch: list[Any] = []
    total = 0
    while keys:
        nbytes = max(sizes.get(keys[0], 0), 0)
        if batch and total + nbytes > limit:
            break
        batch.append(keys.popleft())
        total += nbytes
    for key in batch:
        sizes.pop(key, None)
    return batch, total
