"""Copies the scheduler asks a worker to make (``client.replicate``, ``client.rebalance``):
fetch keys from the workers holding them and keep them until the scheduler frees them
(``CopiesStored``: held like scattered data, but not acknowledged as a scatter)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from shoal.comm import Connection
from shoal.protocol._messages import CopyKeys, Response
from shoal.protocol._sizeof import nbytes
from shoal.worker._execute import unpickle
from shoal.worker._state import CopiesStored

if TYPE_CHECKING:
    from shoal.worker._server import Worker

logger = logging.getLogger("shoal.worker")

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
    worker._carry_out(worker.state.handle(CopiesStored(got), now=time.time()))
    if not conn.closed:
        conn.send(Response(msg.request_id, True, [[k, n] for k, n in got.items()]))


async def _fetch(worker: Worker, peer: str, keys: list[Any]) -> dict[Any, Any]:
    """The keys ``peer`` sent (``Worker._get_data``: bounded by the worker's fetch
    timeout); none when it could not be reached or answered."""
    try:
        reply = await worker._get_data(peer, keys)
        return {k: unpickle(v) for k, v in reply.items.items()}
    except Exception as exc:  # reported; the scheduler keeps the old placement of these keys
        logger.warning("worker %s could not copy %d keys from %s: %s", worker.address, len(keys),
                       peer, exc)
        return {}
