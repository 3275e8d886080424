"""Copies the scheduler asks a worker to make (``client.replicate``, ``client.rebalance``):
fetch keys from the workers holding them and keep them until the scheduler frees them."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from shoal.comm import Connection
from shoal.protocol._messages import CopyKeys, Data, GetData, Response
from shoal.protocol._serialize import loads
from shoal.protocol._sizeof import nbytes
from shoal.worker._state import DataStored

if TYPE_CHECKING:
    from shoal.worker._server import Worker

logger = logging.getLogger("shoal.worker")

COPY_TIMEOUT = 60.0  # seconds for one holder to answer; a key it does not send is not copied


async def copy_keys(worker: Worker, conn: Connection, msg: CopyKeys) -> None:
    """Fetch each key from one of its holders; answer ``[(key, nbytes)]`` for the keys now
    held here (a key none of its holders could send is left out: the scheduler keeps its
    old placement)."""
    session = worker._session
    got: dict[Any, int] = {}
    wanted: dict[str, list[Any]] = {}
    for key, holders in msg.keys:
        if key in worker.data:
            got[key] = nbytes(worker.data[key])
        elif holders:
            wanted.setdefault(holders[0], []).append(key)
    results = await asyncio.gather(*(_fetch(worker, peer, keys) for peer, keys in wanted.items()))
    if session != worker._session or worker.state is None:
        return  # a new scheduler session: this request belonged to the old one
    for values in results:
        for key, value in values.items():
            worker.data[key] = value
            got[key] = nbytes(value)
    worker._carry_out(worker.state.handle(*(DataStored(k, n) for k, n in got.items())))
    if not conn.closed:
        conn.send(Response(msg.request_id, True, [[k, n] for k, n in got.items()]))


async def _fetch(worker: Worker, peer: str, keys: list[Any]) -> dict[Any, Any]:
    try:
        pc = await worker._peer(peer)
        rid = next(worker._ids)
        fut: asyncio.Future[Data] = asyncio.get_running_loop().create_future()
        worker._requests[rid] = fut
        pc.send(GetData(rid, keys))
        try:
            reply = await asyncio.wait_for(fut, COPY_TIMEOUT)
        finally:
            worker._requests.pop(rid, None)
        return {k: loads(v) for k, v in reply.items.items()}
    except (OSError, asyncio.TimeoutError) as exc:
        logger.warning("worker %s could not copy %d keys from %s: %s", worker.address, len(keys),
                       peer, exc)
        return {}
