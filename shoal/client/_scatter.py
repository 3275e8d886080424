"""``scatter``: data from the caller's process into cluster memory, as futures.

Owns: naming the keys of scattered values (a hash of the value, or a uuid), pickling them in
the caller's thread, the ``Scatter`` request, and waiting until a worker acknowledged
holding each value (or could not load it). The futures are made on the loop as the request
goes out, so they belong to the scheduler session that gets the data (one opened while
the request waited, if the connection dropped): futures made earlier would have been
cancelled by the loss, with the next session holding their data for no future. A mixin of ``Client`` (see ``_outbox``); this
module must not import the facade.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

from dask.base import tokenize

from shoal.client import _reconnect
from shoal.client._future import Future, settled
from shoal.client._outbox import Outbox
from shoal.protocol._messages import Scatter
from shoal.protocol._serialize import dumps
from shoal.protocol._typenames import type_name


class Scattering(Outbox):
    """scatter: local data into cluster memory."""

    def scatter(self, data: Any, workers: Any = None, broadcast: bool = False,
                direct: Any = None, hash: bool = True, timeout: Any = None,
                asynchronous: Any = None) -> Any:
        """Put local data into cluster memory; returns futures in the same structure
        (a single object gives a single future); an awaitable of them when asynchronous.
        The data is pickled here, in the caller's thread."""
        self._check_open()
        wl = self._check_workers(workers)
        # As dask's: exactly these containers are unpacked (one future per item, in a
        # container of the same type); anything else, a dict or list subclass too (a
        # scikit-learn Bunch, a Counter), travels whole as one future.
        kind = type(data)
        named = isinstance(data, tuple) and hasattr(data, "_fields")
        if kind is dict:
            items = list(data.items())
            keys = [k for k, _ in items]
            values = [v for _, v in items]
        elif kind in (list, tuple, set, frozenset) or named:
            values = list(data)
            keys = [
                f"{type(v).__name__}-{tokenize(v) if hash else uuid.uuid4().hex}" for v in values
            ]
        else:
            values = [data]
            keys = [f"{type(data).__name__}-{tokenize(data) if hash else uuid.uuid4().hex}"]
        from dask.sizeof import sizeof

        rows = [(k, dumps(v), int(sizeof(v)), type_name(type(v)))
                for k, v in zip(keys, values, strict=False)]

        def shape(futures: list[Future]) -> Any:
            if kind is dict:
                return dict(zip(keys, futures, strict=False))
            if named:
                return kind(*futures)
            if kind in (list, tuple, set, frozenset):
                return kind(futures)
            return futures[0]

        return self.sync(self._scatter, rows, wl, bool(broadcast), shape,
                         callback_timeout=timeout, asynchronous=asynchronous)

    async def _scatter(self, rows: list[Any], workers: list[str | int] | None, broadcast: bool,
                       shape: Callable[[list[Future]], Any]) -> Any:
        """Send ``rows`` (key, pickled value, size, type name); returns ``shape`` of their
        futures, made in the session the request goes to (no await between the two)."""
        conn = self._conn
        if conn is None or self.status != "running":  # reconnecting: wait for the session
            conn = await _reconnect.connection(self)
        futures = [Future(row[0], self) for row in rows]
        shaped = shape(futures)
        rid = next(self._request_ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._requests[rid] = fut
        conn.send(Scatter(rid, rows, workers, broadcast))
        try:
            await fut
        except RuntimeError as exc:
            from shoal.scheduler._server_messages import NO_WORKERS_TO_SCATTER

            if str(exc).startswith(NO_WORKERS_TO_SCATTER):
                raise TimeoutError(str(exc)) from None
            raise
        # Done once a worker acknowledged holding the data (or could not load it).
        await settled(f._state for f in futures)
        for f in futures:
            if f._state.status == "error":
                raise self._exception_of(f)
        return shaped
