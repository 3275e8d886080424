"""``client.amm``: start, stop, ask about or run once the scheduler's Active Memory Manager
(``shoal.scheduler._amm``), as dask's ``AMMClientProxy`` does. Blocking on a synchronous
client, awaitable on an asynchronous one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shoal.client._client import Client


async def _amm(client: Client, method: str) -> Any:
    client._check_open()
    return await client._request("amm", method=method)


class AMMClientProxy:
    """The scheduler's Active Memory Manager, seen from a client (``client.amm``). Each
    method returns at once on a synchronous client and an awaitable on an asynchronous one.
    """

    __slots__ = ("_client",)

    def __init__(self, client: Client) -> None:
        self._client = client

    def _run(self, method: str) -> Any:
        return self._client.sync(_amm, self._client, method)

    def start(self) -> Any:
        """Run the AMM every ``distributed.scheduler.active-memory-manager.interval``
        (2 s) from now on (it starts with the scheduler unless ``...start`` is False)."""
        return self._run("start")

    def stop(self) -> Any:
        """Stop running the AMM periodically."""
        return self._run("stop")

    def running(self) -> Any:
        """Whether the AMM runs periodically (a bool)."""
        return self._run("running")

    def run_once(self) -> Any:
        """Run the AMM's policies once now and return when the copies it chose to drop
        are taken off ``who_has`` (the workers free them right after)."""
        return self._run("run_once")

    def __repr__(self) -> str:
        return f"<AMMClientProxy of {self._client!r}>"
