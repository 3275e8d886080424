"""Copies of data on the cluster: ``client.replicate`` and ``client.rebalance``. Methods
attached to Client; the decisions are the scheduler's (``shoal.scheduler._rebalance``)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from shoal.client._future import Future
from shoal.client._structure import collect_futures
from shoal.protocol._errors import error_to_exception

if TYPE_CHECKING:
    from shoal.client._client import Client


def _keys(futures: Any) -> list[Any]:
    flat: list[Future] = []
    collect_futures(futures, flat, collections=True)
    return list(dict.fromkeys(f.key for f in flat))


async def _replicate(self: Client, futures: Any, n: int | None = None, workers: Any = None,
                     branching_factor: int = 2, **kwargs: Any) -> None:
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise ValueError(f"replicate: n is the number of copies wanted (>= 1), got {n!r}")
    keys = _keys(futures)
    await _settled(_flat(futures))
    if keys:
        ok, value = await self._request("replicate", keys=keys, n=n,
                                        workers=self._check_workers(workers))
        if not ok:
            raise error_to_exception(value)


def replicate(self: Client, futures: Any, n: int | None = None, workers: Any = None,
              branching_factor: int = 2, **kwargs: Any) -> None:
    """Copy the futures' data so that ``n`` workers (of ``workers``; all by default) hold
    each; fewer copies than there are is a reduction. Blocks until the copies are made:
    ``who_has`` shows them. ``branching_factor`` is accepted for dask compatibility
    (copies are fetched straight from the holders).

    Raises:
        ValueError: ``n`` below 1, unknown ``workers``, or a future that failed.
    """
    self._check_open()
    return self.sync(_replicate, self, futures, n, workers)


async def _rebalance(self: Client, futures: Any = None, workers: Any = None,
                     **kwargs: Any) -> None:
    keys = None if futures is None else _keys(futures)
    if futures is not None:
        await _settled(_flat(futures))
    ok, value = await self._request("rebalance", keys=keys, workers=self._check_workers(workers))
    if not ok:
        raise error_to_exception(value)


def rebalance(self: Client, futures: Any = None, workers: Any = None, **kwargs: Any) -> None:
    """Move data between workers (all, or ``workers``) so that the bytes each holds end
    close to each other: within ``distributed.worker.memory.rebalance.sender-recipient-gap``
    (a fraction, 0.1) of the mean, or as close as moving whole keys allows. Only the
    ``futures``' keys move when given. (dask balances process memory against memory
    limits; shoal balances the bytes of data held.)

    Raises:
        ValueError: unknown ``workers``, or a future that failed.
    """
    self._check_open()
    return self.sync(_rebalance, self, futures, workers)


async def _settled(futures: list[Future]) -> None:
    """Wait (on shoal's loop) until every future is finished.

    Raises:
        ValueError: one of them failed or was cancelled: there is no data to copy.
    """
    for f in futures:
        st = f._state
        if not st.done():
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

            def wake(done: asyncio.Future[None] = done) -> None:
                if not done.done():
                    done.set_result(None)

            if st.add_callback_if_pending(wake):
                await done
        if st.status != "finished":
            raise ValueError(f"future {f.key!r} is {st.status}: it has no data to copy")


def _flat(futures: Any) -> list[Future]:
    flat: list[Future] = []
    collect_futures(futures, flat, collections=True)
    return flat
